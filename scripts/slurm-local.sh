#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, started as a test service (like a test database).
#
#   scripts/slurm-local.sh start    # install the Debian packages if missing, start munged, slurmctld, slurmd
#   scripts/slurm-local.sh status   # the daemons' pids and the node's state; exit 3 when not running
#   scripts/slurm-local.sh stop     # cancel this cluster's jobs, stop exactly the daemons `start` began
#   eval "$(scripts/slurm-local.sh env)"   # SLURM_CONF and the sacct shim for sbatch/squeue/submitit
#
# Every file lives under $SLURM_LOCAL_DIR (default /tmp/wsm-slurm-local): its own munge key and
# socket, slurm.conf, spool, logs and pid files; nothing under /etc is used and no systemd is needed.
# Needs root (the daemons run as root) and, when the packages are missing, apt. Where this machine
# cannot host the cluster, `start` says why on stderr and exits 77 (the tests skip with that reason).
# There is no accounting database, so `env` puts scripts/slurm-shims (an sacct built on scontrol)
# first on PATH: submitit needs sacct to see a cancelled or failed job end.
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/wsm-slurm-local}"
SHIMS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/slurm-shims"
PACKAGES=(slurmctld slurmd slurm-client munge)
CANNOT_HOST=77
READY_TIMEOUT_S=60

die() { echo "slurm-local: $*" >&2; exit 1; }
cannot_host() { echo "slurm-local: cannot host a Slurm cluster here: $*" >&2; exit "$CANNOT_HOST"; }

ensure_packages() {
    local missing=()
    for tool in slurmctld slurmd sbatch munged; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || cannot_host "${missing[*]} missing and no apt-get to install ${PACKAGES[*]}"
    echo "slurm-local: installing ${PACKAGES[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${PACKAGES[@]}" >"$DIR/apt.log" 2>&1 \
        || { apt-get update >>"$DIR/apt.log" 2>&1 \
             && apt-get install -y --no-install-recommends "${PACKAGES[@]}" >>"$DIR/apt.log" 2>&1; } \
        || cannot_host "apt-get install ${PACKAGES[*]} failed (log: $DIR/apt.log)"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {  # the first port from $1 up that nothing listens on (another cluster may hold the default)
    local port=$1
    while port_in_use "$port"; do port=$((port + 1)); done
    echo "$port"
}

write_config() {
    local node ctld_port slurmd_port cpus mem_mb
    node="$(hostname -s)"
    ctld_port="$(free_port "${SLURM_LOCAL_PORT:-6817}")"
    slurmd_port="$(free_port $((ctld_port + 1)))"
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # leave slack: slurmd drains a node that reports less
    mkdir -p "$DIR"/{etc,munge,spool/ctld,spool/d,log,run}
    chmod 700 "$DIR/munge"
    cat >"$DIR/etc/slurm.conf" <<EOF
# written by scripts/slurm-local.sh: a one-node test cluster, state under $DIR
ClusterName=wsmlocal
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups in a container: track processes by parentage, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# a job that asks for no memory gets its CPUs' share, not the whole node
DefMemPerCPU=$((mem_mb / cpus))
# start a submitted job at once (the defaults wait ~3 s before scheduling)
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# finished jobs stay visible to scontrol for a day: the sacct shim reads their final state there
MinJobAge=86400
# a cancelled job is killed 1 s after its SIGTERM (submitit ignores SIGTERM; clusters wait 30 s)
KillWait=1
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/env.sh" <<EOF
export SLURM_CONF=$DIR/etc/slurm.conf
export PATH=$SHIMS:\$PATH
EOF
}

pid_of() { [[ -s "$DIR/run/$1.pid" ]] && cat "$DIR/run/$1.pid"; }

alive() {  # pid file $1 names a live process whose command is $1 (never another process reusing the pid)
    local pid
    pid="$(pid_of "$1")" || return 1
    [[ -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm")" == "$1" ]]
}

wait_until() {  # wait_until SECONDS COMMAND...: poll every 0.1 s
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        (( SECONDS < deadline )) || return 1
        sleep 0.1
    done
}

node_idle() { [[ "$(sinfo -h -N -o %T 2>/dev/null)" == idle ]]; }

start() {
    [[ $EUID -eq 0 ]] || cannot_host "the daemons run as root and this is uid $EUID"
    mkdir -p "$DIR"
    ensure_packages
    if alive slurmctld || alive slurmd || alive munged; then die "already running in $DIR (stop it first)"; fi
    write_config
    export SLURM_CONF="$DIR/etc/slurm.conf"
    [[ -s "$DIR/munge/munge.key" ]] || { head -c 1024 /dev/urandom >"$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; }
    # --force: the state folder may sit under a world-writable /tmp, which munged refuses otherwise
    munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start (log: $DIR/log/munged.log)"
    slurmctld -c -i || die "slurmctld did not start (log: $DIR/log/slurmctld.log)"
    slurmd || die "slurmd did not start (log: $DIR/log/slurmd.log)"
    wait_until "$READY_TIMEOUT_S" node_idle \
        || die "the node is not idle after ${READY_TIMEOUT_S} s: $(sinfo -h -N -o '%T %E' 2>&1) (logs: $DIR/log)"
    echo "slurm-local: one node ($(hostname -s), $(nproc) CPUs) idle; state in $DIR" >&2
    echo "slurm-local: use it with: source $DIR/env.sh" >&2
}

stop() {
    if alive slurmctld; then  # jobs first, so no job step outlives its slurmd
        SLURM_CONF="$DIR/etc/slurm.conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        SLURM_CONF="$DIR/etc/slurm.conf" wait_until 15 \
            bash -c '[[ -z "$(squeue -h -t running,completing,configuring -o %i 2>/dev/null)" ]]' || true
    fi
    local pids=()
    for daemon in slurmd slurmctld munged; do  # all at once: each takes ~2 s to shut down
        if alive "$daemon"; then pids+=("$(pid_of "$daemon")"); kill -TERM "${pids[-1]}"; fi
    done
    for pid in "${pids[@]}"; do
        wait_until 20 bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$DIR"/run/{slurmd,slurmctld,munged}.pid
    echo "slurm-local: stopped ($DIR)" >&2
}

status() {
    local down=0
    for daemon in munged slurmctld slurmd; do
        if alive "$daemon"; then echo "$daemon: running (pid $(pid_of "$daemon"))"; else echo "$daemon: stopped"; down=1; fi
    done
    if [[ $down -eq 0 ]]; then SLURM_CONF="$DIR/etc/slurm.conf" sinfo -N -o '%N %T %c %m' || down=1; fi
    return $((down * 3))
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) [[ -s "$DIR/env.sh" ]] || die "no cluster configured in $DIR (run start)"; cat "$DIR/env.sh" ;;
    *) echo "usage: $0 start|stop|status|env   (state folder: \$SLURM_LOCAL_DIR, default $DIR)" >&2; exit 2 ;;
esac
