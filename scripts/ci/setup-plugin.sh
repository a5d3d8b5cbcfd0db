#!/usr/bin/env bash
# Install the example plugin (examples/bench-plugin-example) into .venv as a separate package,
# so tests/test_plugins.py runs it the way a user's external method runs: found through its
# `bench.methods` entry point, not through --include. Idempotent; no network: --no-deps (bench
# is already installed) and --no-build-isolation (the venv's setuptools builds it).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
if ! "$PY" -c "import setuptools" 2>/dev/null; then
    echo "setup-plugin: setuptools missing in .venv; run scripts/setup.sh first" >&2
    exit 1
fi
"$PY" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall \
    ./examples/bench-plugin-example
"$PY" - <<'PY'
from importlib.metadata import entry_points
names = [e.name for e in entry_points(group="bench.methods")]
assert "class_mean" in names, f"bench.methods entry points: {names}"
print("setup-plugin: bench-plugin-example installed (entry point class_mean)")
PY
