#!/usr/bin/env bash
# Set up and run the whole test suite: real engines on tiny models, real sockets on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,llamacpp,mlx
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
