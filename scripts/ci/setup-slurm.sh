#!/usr/bin/env bash
# CI: bring up the single-node SLURM cluster the `slurm`-marked tests use (scripts/slurm_up.sh,
# idempotent; about 20 s on a fresh machine, mostly apt, 2-5 s when installed), and leave a mark
# that SLURM is expected: with it, tests/test_slurm.py fails instead of skipping when the
# cluster is unreachable, so a broken cluster can never pass CI as "skipped".
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
STATE=${BENCH_SLURM_STATE:-/var/tmp/bench-slurm}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo --preserve-env=BENCH_SLURM_STATE,BENCH_SLURM_CPUS"; fi
$SUDO "$here/slurm_up.sh"
$SUDO touch "$STATE/required"
echo "setup-slurm: cluster up; slurm tests required (mark: $STATE/required)"
