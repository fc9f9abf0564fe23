#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a GPU machine that has PyTorch and no network: what the
# project adds to PyTorch travels as wheels in .whl/ (benchmarks/gpu_wheels.sh downloads them here),
# and the demo's frames, where carried, in data/frames/. At most 5 minutes.
#
#   bash benchmarks/gpu_check.sh [OUT]      # OUT: where gpu_check.json goes (default: $OUT or .)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 290 python3 benchmarks/gpu_check.py --device cuda --out "$out"
