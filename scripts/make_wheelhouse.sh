#!/usr/bin/env bash
# Build wheelhouse/ (git-ignored): the test stack for the GPU machine, which has no package index.
# pytest (+ pytest-timeout) for stage 1 of scripts/gpu_run.sh where a machine lacks them (the device
# image has both), and the notebook stack (nbval, ipykernel, ipywidgets) for stage 3, its own call.
# Wheels for the device's Python (3.12) and platform (manylinux x86_64); carry the folder along with
# stage 3's call (`carry: ["wheelhouse"]`), well under its 64 MiB (README: "The device run").
#   scripts/make_wheelhouse.sh [PYTHON_VERSION]   # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
ABI=cp${PYV/./}
rm -rf wheelhouse && mkdir wheelhouse
python3 -m pip download -q --dest wheelhouse --only-binary=:all: --python-version "$PYV" \
  --implementation cp --abi "$ABI" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any \
  pytest pytest-timeout nbval ipykernel ipywidgets
du -sh wheelhouse
