#!/usr/bin/env bash
# One command for a lent NVIDIA GPU machine: the unit tests on CUDA, GPT-2 124M's training-step
# speed and MFU, a short training run and the KV cache; results in benchmarks/results/gpu_check.md
# (see benchmarks/README.md). Installs nothing: uses .venv/bin/python if there is one, else python3.
# Extra arguments go to benchmarks/gpu_check.py (e.g. --skip-tests). Exit status 0: every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export LESSONS_OFFLINE=1  # nothing outside the machine is reachable: never wait on a download
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch; make .venv (tools/bootstrap.sh) or use a Python that has it." >&2
  exit 2
fi
echo "gpu_check with $PY ($("$PY" --version 2>&1))"
exec "$PY" benchmarks/gpu_check.py "$@"
