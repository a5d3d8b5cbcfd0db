#!/usr/bin/env bash
# Create .venv and install bench with the pinned CPU-capable torch/torchvision pair.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
# Says what it does on stderr (a first install takes a few minutes; pip itself stays quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
say() { echo "setup: $*" >&2; }
pinned() { grep -E "^$1==" requirements-cpu.txt | cut -d= -f3; }
if [ ! -x .venv/bin/python ]; then
    say "creating the virtual environment .venv with $("$PY" --version 2>&1)"
    "$PY" -m venv .venv
fi
stamp=.venv/.bench-installed
want=$(cat requirements-cpu.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    n=$(grep -cE '^[A-Za-z0-9_.-]+==' requirements-cpu.txt)
    say "installing the $n pinned packages of requirements-cpu.txt into .venv: torch $(pinned torch)," \
        "torchvision $(pinned torchvision), open_clip_torch $(pinned open_clip_torch) and the rest" \
        "(about 6 GB in .venv; a first install takes a few minutes) ..."
    t0=$SECONDS
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-cpu.txt 2>&1 \
        | grep -v "^WARNING: Location" || true
    say "installing bench itself into .venv (editable: this checkout's code) ..."
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 \
        | grep -v "^WARNING: Location" || true
    say "checking that torch, torchvision, open_clip and bench import ..."
    .venv/bin/python -c "import torch, torchvision, open_clip, bench" \
        || { say "the install is broken (see above)"; exit 1; }
    echo "$want" > "$stamp"
    say "done in $((SECONDS - t0)) s; .venv/bin/bench is ready"
else
    say ".venv is up to date with requirements-cpu.txt and pyproject.toml (nothing to install)"
fi
