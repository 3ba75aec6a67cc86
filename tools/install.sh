#!/usr/bin/env bash
# Install xvfa_ext with its dependencies into python3's environment (or $PYTHON's).
#
# torch and torchvision come from PyPI as one matching pair. --isolated makes pip ignore local pip
# configuration (config files, PIP_FIND_LINKS) that may offer a CPU-only torch wheel with which
# PyPI's torchvision fails to import. setuptools stays below 81: detrex imports pkg_resources.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --isolated --disable-pip-version-check "torch>=2.1" "torchvision>=0.16" "setuptools<81"
"$PYTHON" -m pip install --isolated --disable-pip-version-check -e ".[test]"
"$PYTHON" - <<'PY'
import torch, torchvision
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
import xvfa_ext
print(f"xvfa_ext ready: torch {torch.__version__}, torchvision {torchvision.__version__}")
PY
