#!/bin/bash
# Fill .whl/ (ignored by git) with the wheels a bare GPU machine lacks, for its Python 3.12: RecBole
# (without its ray pin) and the small packages it imports that such an image does not hold. Never torch,
# numpy, pandas or scipy: the machine has its own CUDA torch and those. Run here, where PyPI is reachable:
#     bash bench/gpu_wheels.sh && ls .whl
# then carry .whl to the machine and run bench/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PYVER=${GPU_PYTHON_VERSION:-3.12}
PACKAGES=(recbole==1.2.1 colorlog==4.7.2 texttable==1.7.2 thop==0.1.1.post2209072238)
mkdir -p .whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl "${PACKAGES[@]}"
ls -l .whl
