#!/usr/bin/env bash
# Set up and run the whole test suite: real engines on tiny models, real sockets on 127.0.0.1,
# the dashboard page in headless Chromium (Debian's package; installed here when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,llamacpp,mlx
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
