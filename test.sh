#!/usr/bin/env bash
# Runs the test suite in .venv. `./test.sh --slow` runs only the VGG16-size suites (marker `slow`).
set -uo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--slow" ]; then
  shift
  set -- -m slow "$@"
fi
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
# pytest exits 5 when no test was collected: a selection without tests is not a failure of the code.
[ $status -eq 5 ] && { echo "pytest collected no tests for this selection"; exit 0; }
exit $status
