#!/usr/bin/env bash
# Install what is needed and run the main job on the built-in demo (tiny CLIP, demo suite).
# Usage: bash scripts/demo.sh [extra bench run flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# The paper's six methods (the README's demo table); `--methods all` adds the newer baselines,
# CoCoOp among them (batch 1, the text encoder per image: minutes per 16-shot cell on a CPU).
exec .venv/bin/bench run --methods zero_shot,linear_probe,coop,'clip_adapter_*' \
    --shots 1,2,4,8,16 "$@"
