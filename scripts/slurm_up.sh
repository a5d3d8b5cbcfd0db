#!/usr/bin/env bash
# Bring up a real single-node SLURM on localhost, without systemd, idempotently:
#   munge -> MariaDB (--skip-networking) -> slurmdbd -> slurmctld -> slurmd
# then wait until `sinfo` shows the node idle and `sacct` answers (submitit reads job states
# only through sacct, so accounting is not optional).
#
# Usage: scripts/slurm_up.sh            (run as root; about 20 s from nothing, 2-5 s later)
#   BENCH_SLURM_STATE  state folder (default /var/tmp/bench-slurm): spool, logs, PID files
#   BENCH_SLURM_CPUS   CPUs the node advertises (default 8; may exceed the real count)
#
# Running it again while the cluster is up does nothing. Daemons already running that this
# script did not start (another munged, another MariaDB on the default socket) are used, never
# restarted, and not recorded, so scripts/slurm_down.sh stops exactly what this script started.
# Configuration goes where the SLURM clients look for it (/etc/slurm/slurm.conf and
# slurmdbd.conf), marked as written by this script; a hand-written slurm.conf is never replaced.
set -euo pipefail

STATE=${BENCH_SLURM_STATE:-/var/tmp/bench-slurm}
CPUS=${BENCH_SLURM_CPUS:-8}
CONF_DIR=/etc/slurm
MARKER="# written by bench scripts/slurm_up.sh"
HOST=$(hostname -s)
CLUSTER=bench
DB_USER=slurm
DB_PASS=bench-slurm
MYSQL_SOCK=/run/mysqld/mysqld.sock
MUNGE_SOCK=/run/munge/munge.socket.2

log() { echo "slurm_up: $*"; }
die() { echo "slurm_up: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (the daemons need it; try sudo $0)"

# --- 1. Debian packages ----------------------------------------------------------------------
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$STATE"/{pids,log,ctld,slurmd,run}

# --- helpers: PID files record "PID STARTTIME" so a recycled PID is never mistaken for ours ----
starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
ours_alive() {  # ours_alive NAME -> 0 if the daemon we recorded is still that process
    local f="$STATE/pids/$1.pid" pid st
    [ -f "$f" ] || return 1
    read -r pid st < "$f" || return 1
    [ -n "$pid" ] && [ "$(starttime "$pid")" = "$st" ]
}
record() { echo "$2 $(starttime "$2")" > "$STATE/pids/$1.pid"; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local t=$1 what=$2; shift 2
    local end=$((SECONDS + t))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.3
    done
}
start_daemon() {  # start_daemon NAME LOGFILE COMMAND... (foreground command; we background it)
    local name=$1 logf=$2; shift 2
    setsid "$@" </dev/null >>"$logf" 2>&1 &
    local pid=$!
    sleep 0.2
    kill -0 "$pid" 2>/dev/null || { tail -20 "$logf" >&2; die "$name exited at once (log: $logf)"; }
    record "$name" "$pid"
    log "started $name (pid $pid)"
}

# --- 2. configuration -------------------------------------------------------------------------
write_conf() {  # write_conf PATH MODE (content on stdin); refuses to replace a foreign file
    local path=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat > "$tmp"
    if [ -f "$path" ] && ! head -1 "$path" | grep -qF "$MARKER"; then
        rm -f "$tmp"
        die "$path exists and was not written by this script; move it away to use this cluster"
    fi
    if ! cmp -s "$tmp" "$path" 2>/dev/null; then
        install -m "$mode" -o root -g root "$tmp" "$path"
        CONF_CHANGED=1
    fi
    rm -f "$tmp"
}
CONF_CHANGED=0
mkdir -p "$CONF_DIR"
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
write_conf "$CONF_DIR/slurm.conf" 644 <<EOF
$MARKER; state in $STATE
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Requeue waits for the job credential to expire: 10 s instead of 120 s.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups: plain process tracking, no task containment, no accounting gatherer.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
# submitit ignores SIGTERM: kill a cancelled job 5 s later, not 30.
KillWait=5
MinJobAge=300
ReturnToService=2
MpiDefault=none
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
write_conf "$CONF_DIR/slurmdbd.conf" 600 <<EOF
$MARKER; state in $STATE
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
if [ "$CONF_CHANGED" = 1 ] && ours_alive slurmctld; then
    log "configuration changed while the cluster runs: run scripts/slurm_down.sh, then this again"
fi

# --- 3. munge ---------------------------------------------------------------------------------
munge_ok() { munge -n </dev/null | unmunge >/dev/null; }
if munge_ok 2>/dev/null; then
    ours_alive munge && log "munge already running (ours)" || log "munge already running (not ours; used as is)"
else
    [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 755 /run/munge
    start_daemon munge "$STATE/log/munged.out" \
        setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
    wait_for 15 munge munge_ok || die "munge does not answer (log: /var/log/munge/munged.log)"
fi

# --- 4. MariaDB, unix socket only -----------------------------------------------------------
mysql_ok() { mariadb --protocol=socket -S "$MYSQL_SOCK" -uroot -e 'select 1'; }
if mysql_ok >/dev/null 2>&1; then
    ours_alive mariadb && log "MariaDB already running (ours)" || log "MariaDB already running (not ours; used as is)"
else
    if [ ! -d /var/lib/mysql/mysql ]; then
        log "initialising the MariaDB data folder"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    mkdir -p /run/mysqld "$STATE/mysql"; chown mysql:root /run/mysqld "$STATE/mysql"
    start_daemon mariadb "$STATE/mysql/mariadb.out" \
        /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
        --socket="$MYSQL_SOCK" --pid-file=/run/mysqld/mariadb-bench.pid \
        --log-error="$STATE/mysql/mariadb.log"
    wait_for 60 mariadb mysql_ok || die "MariaDB does not answer (log: $STATE/mysql/mariadb.log)"
fi
mariadb --protocol=socket -S "$MYSQL_SOCK" -uroot <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';
EOF

# --- 5. slurmdbd ------------------------------------------------------------------------------
dbd_ok() { sacctmgr -n -P list cluster format=cluster; }
if ours_alive slurmdbd; then
    log "slurmdbd already running (ours)"
else
    pgrep -x slurmdbd >/dev/null && die "a slurmdbd not started by this script is running; stop it first"
    start_daemon slurmdbd "$STATE/log/slurmdbd.out" /usr/sbin/slurmdbd -D
    wait_for 30 slurmdbd dbd_ok || die "slurmdbd does not answer (log: $STATE/log/slurmdbd.log)"
fi
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
# An account users can pass with --account (nothing is enforced, but sacct shows it).
if ! sacctmgr -n -P list account format=account | grep -qx bench; then
    sacctmgr -i add account bench cluster="$CLUSTER" description=bench organization=bench >/dev/null
    sacctmgr -i add user root account=bench cluster="$CLUSTER" >/dev/null || true
fi

# --- 6. slurmctld, slurmd ---------------------------------------------------------------------
if ours_alive slurmctld; then
    log "slurmctld already running (ours)"
else
    pgrep -x slurmctld >/dev/null && die "a slurmctld not started by this script is running; stop it first"
    start_daemon slurmctld "$STATE/log/slurmctld.out" /usr/sbin/slurmctld -D
fi
wait_for 30 slurmctld scontrol ping || die "slurmctld does not answer (log: $STATE/log/slurmctld.log)"
if ours_alive slurmd; then
    log "slurmd already running (ours)"
else
    pgrep -x slurmd >/dev/null && die "a slurmd not started by this script is running; stop it first"
    start_daemon slurmd "$STATE/log/slurmd.out" /usr/sbin/slurmd -D
fi

# --- 7. ready? --------------------------------------------------------------------------------
node_idle() {
    local s
    s=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null)
    case "$s" in
        idle|mixed|allocated) return 0 ;;
        down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1; return 1 ;;
        *) return 1 ;;
    esac
}
wait_for 60 node node_idle || { sinfo -N >&2; die "node $HOST is not idle (log: $STATE/log/slurmd.log)"; }
wait_for 30 sacct sacct -n -X -S now-1minutes || die "sacct does not answer (log: $STATE/log/slurmdbd.log)"
# slurmctld has registered with slurmdbd (else job records reach accounting only later)
registered() { [ -n "$(sacctmgr -n -P list cluster "$CLUSTER" format=controlhost 2>/dev/null)" ]; }
wait_for 30 registration registered || die "slurmctld did not register with slurmdbd (log: $STATE/log/slurmctld.log)"
log "ready: cluster $CLUSTER, node $HOST ($(sinfo -h -N -o '%T, %c CPUs'), partition debug); state in $STATE"
