#!/usr/bin/env bash
# Runs the test suite in .venv. `./test.sh --slow` runs only the tests marked `slow`: VGG16-size networks, the full
# models × methods matrices and the third-party model zoos (timm, transformers, keras_hub).
set -uo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--slow" ]; then
  shift
  set -- -m slow "$@"
fi
if [ "$#" -eq 0 ]; then
  # the documentation site (docs/, mkdocs.yml) must build without warnings: links and anchors included
  NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d build/site || { echo "docs build failed"; exit 1; }
  # lint (ruff: pyproject [tool.ruff]) and types of the framework-neutral core and the method catalog (mypy)
  .venv/bin/ruff check -q . || { echo "ruff found problems"; exit 1; }
  .venv/bin/mypy || { echo "mypy found problems"; exit 1; }
fi
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
# pytest exits 5 when no test was collected: a selection without tests is not a failure of the code.
[ $status -eq 5 ] && { echo "pytest collected no tests for this selection"; exit 0; }
exit $status
