#!/usr/bin/env bash
# Create .venv and install bench with the pinned CPU-capable torch/torchvision pair.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.bench-installed
want=$(cat requirements-cpu.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-cpu.txt 2>&1 \
        | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 \
        | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, torchvision, open_clip, bench" \
        || { echo "setup: the install is broken (see above)"; exit 1; }
    echo "$want" > "$stamp"
fi
