#!/usr/bin/env bash
# Create .venv (if missing) with lessons_lib and everything the lessons and tests need.
# Torch is installed first, on its own: a bare `torch` requirement on a machine without torch
# pulls several GB of CUDA wheels. Override with TORCH_SPEC, e.g.
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu" bash tools/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  .venv/bin/pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
