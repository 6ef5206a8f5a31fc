#!/usr/bin/env bash
# Creates .venv at the repository root with everything needed to run and test signxai.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch/torchvision first, then TensorFlow and the rest, all under the pinned constraints.
.venv/bin/python -m pip install --quiet -c constraints.txt torch torchvision
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[torch,onnx,dev,ecg]' tensorflow-cpu keras
# LXT 2.1, a test-only oracle of the attention rules (tests/test_lxt_oracle.py, slow tier; docs/transformers.md#lxt),
# without its dependencies (model zoos signxai does not need); signxai itself never imports it.
.venv/bin/python -m pip install --quiet --no-deps lxt==2.1
# triton (pulled by the CUDA torch build, and again by timm/transformers) segfaults when imported after TensorFlow; it is useless on CPU machines.
.venv/bin/python -m pip uninstall --quiet -y triton || true
.venv/bin/python -c "import torch, torchvision, zennit, timm, transformers, tensorflow, keras, keras_hub, wfdb, scipy; print('signxai environment ready: torch', torch.__version__, 'tensorflow', tensorflow.__version__, 'keras', keras.__version__)"
