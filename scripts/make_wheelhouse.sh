#!/usr/bin/env bash
# Build wheelhouse/ (git-ignored): the test stack for the GPU machine, which has no package index.
# pytest for stage 1 of scripts/gpu_run.sh, and the notebook stack (nbval, ipykernel, ipywidgets)
# for its optional stage 3. Wheels for the device's Python (3.12) and platform (manylinux x86_64);
# carry the folder along with the device run (`carry: ["wheelhouse"]`), well under its 64 MiB.
#   scripts/make_wheelhouse.sh [PYTHON_VERSION]   # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
ABI=cp${PYV/./}
rm -rf wheelhouse && mkdir wheelhouse
python3 -m pip download -q --dest wheelhouse --only-binary=:all: --python-version "$PYV" \
  --implementation cp --abi "$ABI" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any \
  pytest nbval ipykernel ipywidgets
du -sh wheelhouse
