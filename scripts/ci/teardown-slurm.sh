#!/usr/bin/env bash
# CI: stop what scripts/ci/setup-slurm.sh started (scripts/slurm_down.sh: exactly the recorded
# daemons) and remove the "SLURM required" mark. Optional: CI machines end anyway.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
STATE=${BENCH_SLURM_STATE:-/var/tmp/bench-slurm}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo --preserve-env=BENCH_SLURM_STATE"; fi
$SUDO rm -f "$STATE/required"
$SUDO "$here/slurm_down.sh"
