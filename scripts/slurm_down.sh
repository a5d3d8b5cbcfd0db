#!/usr/bin/env bash
# Stop exactly the daemons scripts/slurm_up.sh started: the PIDs recorded in
# $BENCH_SLURM_STATE/pids (default /var/tmp/bench-slurm/pids), each checked against its recorded
# start time so a recycled PID is never signalled. Daemons the up script found already running
# were not recorded and are left alone.
#
# Jobs still queued or running on the cluster are cancelled first (they belong to this cluster
# and would otherwise outlive their slurmd). Configuration, logs and the accounting database are
# kept, so the next slurm_up.sh starts in 2-5 s. Pass --purge to also delete the state folder
# and the accounting database (a fresh start: job ids begin at 1 again).
set -uo pipefail

STATE=${BENCH_SLURM_STATE:-/var/tmp/bench-slurm}
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1

log() { echo "slurm_down: $*"; }
starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# The cluster is going away: SLURM is no longer expected by the tests (see setup-slurm.sh).
rm -f "$STATE/required"

if [ ! -d "$STATE/pids" ]; then
    log "nothing recorded in $STATE/pids: nothing to stop"
    exit 0
fi

recorded_pid() {  # prints the PID if the recorded process is still alive, else nothing
    local f="$STATE/pids/$1.pid" pid st
    [ -f "$f" ] || return 1
    read -r pid st < "$f" || return 1
    [ -n "$pid" ] && [ "$(starttime "$pid")" = "$st" ] && echo "$pid"
}

# Cancel the jobs while slurmctld still runs, and give slurmd a moment to kill them.
if recorded_pid slurmctld >/dev/null && command -v squeue >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        scancel $jobs 2>/dev/null
        for _ in $(seq 1 40); do
            [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi

STOPPED_SLURMD=0
# Reverse start order: compute node, controller, accounting, database, munge.
for name in slurmd slurmctld slurmdbd mariadb munge; do
    pid=$(recorded_pid "$name") || pid=""
    if [ -z "$pid" ]; then
        rm -f "$STATE/pids/$name.pid"
        continue
    fi
    if [ "$name" = mariadb ] && [ "$PURGE" = 1 ]; then
        # job ids restart at 1 with a fresh state folder: drop the old accounting with it
        mariadb --protocol=socket -S /run/mysqld/mysqld.sock -uroot \
            -e 'DROP DATABASE IF EXISTS slurm_acct_db' && log "dropped the accounting database"
    fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do  # up to 20 s (MariaDB flushes on shutdown)
        [ "$(starttime "$pid")" ] || break
        sleep 0.2
    done
    if [ "$(starttime "$pid")" ]; then
        log "$name (pid $pid) ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$STATE/pids/$name.pid"
    [ "$name" = slurmd ] && STOPPED_SLURMD=1
    log "stopped $name (pid $pid)"
done

# slurmstepd processes of jobs our slurmd started outlive it when a job was still being killed.
[ "$STOPPED_SLURMD" = 1 ] && for p in $(pgrep -x slurmstepd 2>/dev/null); do
    log "killing leftover slurmstepd $p"
    kill -KILL "$p" 2>/dev/null
done

if [ "$PURGE" = 1 ]; then
    rm -rf "$STATE"
    log "removed $STATE"
fi
