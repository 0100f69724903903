#!/usr/bin/env bash
# Installs what hisa needs from Debian 12 (when run as root with apt-get) and builds it into ./build.
# CUDA kernels are built too when nvcc is found; the CPU-only build needs nothing beyond these packages.
# The notebooks' packages (pandas, matplotlib, a Jupyter kernel) and headless Chromium are for the tests
# that execute every notebook and render `hisa report` in a browser; pybind11 and Python's headers build the
# Python module (import hisa), and pytest tests it. clang, libFuzzer's runtime
# (libclang-rt-14-dev) and clang's OpenMP (libomp-dev) are for scripts/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential cmake libhdf5-dev libeigen3-dev libcli11-dev nlohmann-json3-dev libgtest-dev libopenmpi-dev openmpi-bin \
    python3 python3-h5py python3-numpy python3-dev pybind11-dev python3-pytest \
    python3-pandas python3-matplotlib python3-nbformat python3-nbclient python3-ipykernel jupyter-nbconvert \
    chromium fonts-dejavu-core \
    clang libclang-rt-14-dev libomp-dev >/dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
