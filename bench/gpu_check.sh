#!/bin/bash
# On a bare GPU machine (CUDA torch, numpy, pandas, scipy, pytest there; no RecBole): install the wheels
# that bench/gpu_wheels.sh put in .whl/, then run the GPU check with its report under $OUT (or
# bench/results). One command, at most about 8 minutes on one H200:
#     bash bench/gpu_check.sh            # extra arguments go to bench/gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls .whl/*.whl > /dev/null 2>&1; then
  echo "error: no wheels in .whl/: run 'bash bench/gpu_wheels.sh' where PyPI is reachable and carry .whl" >&2
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/gpu_check.py --device cuda --out "${OUT:-bench/results}" "$@"
