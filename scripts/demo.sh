#!/usr/bin/env bash
# Set up and run the main job: Gemma 3 270M on llama.cpp, reporting to a local Octomil API.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh llamacpp,demo
.venv/bin/python examples/serve_with_telemetry.py
