#!/usr/bin/env bash
# Run a command with torch's CPU kernels capped to an older instruction set, to reproduce on this
# machine the float path of another CPU (see CONTRIBUTING.md, "Stored outputs hold on every CPU").
#   bash tools/cpu_caps.sh avx2 .venv/bin/python -m pytest notebooks     # an AVX2-only CPU
#   bash tools/cpu_caps.sh sse4 .venv/bin/python -m pytest notebooks     # an SSE4-only CPU
#   bash tools/cpu_caps.sh other CMD...   # avx2 on an AVX-512 machine, sse4 otherwise (what CI runs)
set -euo pipefail
cap=${1:?"usage: tools/cpu_caps.sh avx2|sse4|other COMMAND..."}
shift
if [ "$cap" = other ]; then
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then cap=avx2; else cap=sse4; fi
fi
case "$cap" in
  avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
  sse4) export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 ;;
  *) echo "tools/cpu_caps.sh: unknown cap '$cap'; use avx2, sse4 or other" >&2; exit 2 ;;
esac
echo "CPU kernels capped to $cap (ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY)" >&2
exec "$@"
