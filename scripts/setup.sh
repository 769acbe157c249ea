#!/usr/bin/env bash
# Create .venv (if missing) and install the package with the given extras.
# Usage: scripts/setup.sh EXTRAS   e.g. scripts/setup.sh test,llamacpp,mlx
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-llamacpp}"

python3 -m venv .venv 2>/dev/null || true
[ -x .venv/bin/pip ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip

# llama-cpp-python builds from source (about 10 minutes; pip caches the wheel). On x86_64 Linux
# build for AVX2 without AVX-512, so the same build also runs under valgrind (bench/).
if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
fi
.venv/bin/python -m pip install --quiet --progress-bar off -e ".[${extras}]"
