#!/usr/bin/env bash
# Install what is needed and run the main job on the built-in demo (tiny CLIP, demo suite).
# Usage: bash scripts/demo.sh [extra bench run flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/bench run --methods all --shots 1,2,4,8,16 "$@"
