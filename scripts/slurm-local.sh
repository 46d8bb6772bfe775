#!/usr/bin/env bash
# A private single-node SLURM on localhost, for the project's tests and CI.
#
#   scripts/slurm-local.sh install          apt-get install slurmctld slurmd slurm-client munge (if missing)
#   scripts/slurm-local.sh start  [DIR]     write the config under DIR and start munged, slurmctld, slurmd
#   scripts/slurm-local.sh stop   [DIR] [--rm]   scancel everything, stop the daemons by their recorded PIDs
#   scripts/slurm-local.sh status [DIR]     daemons, sinfo, squeue
#   scripts/slurm-local.sh env    [DIR] [--sacct-standin]   print the exports a client shell needs
#
# DIR defaults to $SLURM_LOCAL_DIR, else /tmp/slurm-local. Keep it short: the munge socket
# path must stay under 108 characters. Everything the cluster writes (config, munge key and
# socket, state, spool, logs, PIDs) stays in DIR; nothing is written to /etc/slurm.
#
# Must run as root (slurmd launches jobs as the submitting user). No systemd, no cgroups:
# proctrack/linuxproc, task/none, so --mem and CPU binding are bookkeeping only.
#
# Environment knobs for `start`:
#   SLURM_LOCAL_PORT   slurmctld port (default 6817); slurmd uses PORT+1
#   SLURM_LOCAL_CPUS   CPUs to advertise (default: what `slurmd -C` finds); more than the
#                      machine has is allowed (SlurmdParameters=config_overrides), e.g. so that
#                      an array's %N limit, not the node size, is what bounds concurrency
#   SLURM_LOCAL_GPUS   fake GPUs to advertise as gres gpu:N (default 0; /dev/null links)
#   SLURM_LOCAL_EXTRA  extra slurm.conf lines (newline separated)
#
# There is no accounting (no slurmdbd): `sacct` fails with "accounting storage is disabled",
# as on many small clusters. `env --sacct-standin` puts a small `sacct` that answers
# submitit's query from `squeue --states=all` first on PATH (see
# docs/sweeps.md, "A SLURM on your own machine"). The harness itself does not need it: its
# `status` falls back to squeue and the result files.
#
# Daemons run in the foreground under setsid; their PIDs go to DIR/pids/*.pid and `stop`
# signals exactly those PIDs (never by name). Configuration:
# cred_expire=5 and sched_interval=1 so a requeued job restarts within seconds,
# batch_sched_delay=0, MinJobAge=3600 so finished jobs stay visible to squeue, KillWait=5.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)

die() { echo "slurm-local: $*" >&2; exit 1; }
say() { echo "slurm-local: $*" >&2; }

resolve_dir() {
    local d="${1:-${SLURM_LOCAL_DIR:-/tmp/slurm-local}}"
    d="${d%/}"
    [[ "$d" == /* ]] || d="$(pwd)/$d"
    (( ${#d} <= 60 )) || die "directory $d is too long (munge socket paths must stay under 108 characters); use a short one under /tmp"
    echo "$d"
}

have_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null && command -v mungekey >/dev/null
}

cmd_install() {
    if have_packages; then
        say "packages already installed ($(slurmctld -V 2>/dev/null || echo slurm))"
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "installing needs root"
    # Keep the packages' init scripts from starting system-wide daemons on the default ports.
    local made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    [[ -n "$made_policy" ]] && rm -f /usr/sbin/policy-rc.d
    have_packages || die "packages installed but slurmctld/slurmd/munged not found on PATH"
    say "installed $(slurmctld -V)"
}

# alive PID: exists and is not a zombie (killed daemons linger as <defunct> for a moment)
alive() {
    local st
    st="$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ')" || return 1
    [[ -n "$st" && "$st" != Z* ]]
}

pid_of() { [[ -s "$1/pids/$2.pid" ]] && cat "$1/pids/$2.pid" || true; }

write_config() {
    local d="$1" port="$2"
    local hw cpus boards sockets cores threads mem real_cpus overrides="" gres_line="" gpus
    hw="$(slurmd -C | head -1)"
    field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
    real_cpus="$(field CPUs)"; boards="$(field Boards)"; sockets="$(field SocketsPerBoard)"
    cores="$(field CoresPerSocket)"; threads="$(field ThreadsPerCore)"
    mem=$(( $(field RealMemory) * 9 / 10 ))
    cpus="${SLURM_LOCAL_CPUS:-$real_cpus}"
    gpus="${SLURM_LOCAL_GPUS:-0}"
    local node="NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1"
    if [[ "$cpus" != "$real_cpus" || "$gpus" != 0 ]]; then
        overrides="SlurmdParameters=config_overrides"
        # advertised topology must multiply out to CPUs
        node+=" CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1"
    else
        node+=" CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
    fi
    node+=" RealMemory=$mem"
    if [[ "$gpus" != 0 ]]; then
        node+=" Gres=gpu:$gpus"
        gres_line="GresTypes=gpu"
        mkdir -p "$d/dev"
        for (( i = 0; i < gpus; i++ )); do
            ln -sfn /dev/null "$d/dev/fakegpu$i"
        done
        printf 'AutoDetect=off\nNodeName=localhost Name=gpu File=%s/dev/fakegpu[0-%d]\n' "$d" $((gpus - 1)) \
            > "$d/etc/gres.conf"
    fi
    cat > "$d/etc/slurm.conf" <<EOF
# generated by scripts/slurm-local.sh; do not edit (rewrite with stop + start)
ClusterName=local$(printf '%s' "$d" | cksum | cut -c1-6)
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/run/munge.socket.2,cred_expire=5
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/slurmd-%n
SlurmctldPidFile=$d/pids/slurmctld.daemon.pid
SlurmdPidFile=$d/pids/slurmd.daemon.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=60
$overrides
$gres_line
${SLURM_LOCAL_EXTRA:-}
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

write_sacct_standin() {
    local d="$1"
    cat > "$d/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct stand-in for a cluster without accounting (scripts/slurm-local.sh): answers
# submitit's `sacct -o JobID,State,NodeList --parsable2 -j ID ...` from squeue --states=all.
ids=()
while (( $# )); do
    case "$1" in
        -j|--jobs) ids+=("${2//,/ }"); shift 2 ;;
        -j*) ids+=("${1#-j}"); shift ;;
        --jobs=*) ids+=("${1#--jobs=}"); shift ;;
        *) shift ;;
    esac
done
echo "JobID|State|NodeList"
for id in ${ids[*]}; do
    squeue --states=all -h -r -j "$id" -o "%i|%T|%N" 2>/dev/null || true
done
exit 0
EOF
    chmod 755 "$d/bin/sacct"
}

wait_idle() {
    local d="$1" i state
    for (( i = 0; i < 300; i++ )); do
        state="$(SLURM_CONF="$d/etc/slurm.conf" sinfo -h -n localhost -o %T 2>/dev/null || true)"
        [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]] && return 0
        for name in munged slurmctld slurmd; do
            local p; p="$(pid_of "$d" "$name")"
            if [[ -n "$p" ]] && ! alive "$p"; then
                tail -n 20 "$d/log/$name."* >&2 2>/dev/null || true
                die "$name exited during start-up; see $d/log/"
            fi
        done
        sleep 0.1
    done
    die "node did not become idle within 30 s (state '${state:-?}'); see $d/log/"
}

cmd_start() {
    local d; d="$(resolve_dir "${1:-}")"
    [[ $EUID -eq 0 ]] || die "must run as root (slurmd launches jobs as the submitting user)"
    have_packages || die "SLURM packages missing; run: $0 install"
    if [[ -d "$d/pids" ]]; then
        say "stopping the cluster already in $d first"
        cmd_stop "$d"
    fi
    local port="${SLURM_LOCAL_PORT:-6817}"
    local t0; t0="$(date +%s.%N)"
    rm -rf "$d"
    mkdir -p "$d"/{etc,state,spool,log,pids,bin,munge/etc,munge/run,munge/lib}
    chmod 700 "$d/munge/etc" "$d/munge/lib"
    chmod 755 "$d/munge/run" "$d"
    mkdir -p "$d/spool/slurmd-localhost"
    mungekey -c -k "$d/munge/etc/munge.key" 2>/dev/null
    chmod 600 "$d/munge/etc/munge.key"
    write_config "$d" "$port"
    write_sacct_standin "$d"
    local conf="$d/etc/slurm.conf"

    setsid munged -F --socket="$d/munge/run/munge.socket.2" --key-file="$d/munge/etc/munge.key" \
        --pid-file="$d/munge/run/munged.pid" --seed-file="$d/munge/lib/munged.seed" \
        --origin=127.0.0.1 </dev/null >"$d/log/munged.stdout" 2>&1 &
    echo $! > "$d/pids/munged.pid"
    local i
    for (( i = 0; i < 100; i++ )); do [[ -S "$d/munge/run/munge.socket.2" ]] && break; sleep 0.05; done
    [[ -S "$d/munge/run/munge.socket.2" ]] || { cat "$d/log/munged.stdout" >&2; die "munged did not start"; }

    SLURM_CONF="$conf" setsid slurmctld -D -i -f "$conf" </dev/null >"$d/log/slurmctld.stdout" 2>&1 &
    echo $! > "$d/pids/slurmctld.pid"
    SLURM_CONF="$conf" setsid slurmd -D -N localhost -f "$conf" </dev/null >"$d/log/slurmd.stdout" 2>&1 &
    echo $! > "$d/pids/slurmd.pid"
    wait_idle "$d"
    local t1; t1="$(date +%s.%N)"
    say "cluster up in $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s: $d (slurmctld port $port, $(slurmctld -V))"
    say "clients: export SLURM_CONF=$conf"
}

stop_pids() {
    local d="$1"; shift
    local name p pids=() i
    for name in "$@"; do
        p="$(pid_of "$d" "$name")"
        if [[ -n "$p" ]] && alive "$p"; then
            kill -TERM "$p" 2>/dev/null || true
            pids+=("$p")
        fi
    done
    for (( i = 0; i < 150; i++ )); do
        local left=()
        for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
        (( ${#left[@]} )) || return 0
        pids=("${left[@]}")
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        say "PID $p did not exit within 15 s of SIGTERM; sending SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
    done
}

cmd_stop() {
    local d rm_dir=""
    local args=()
    for a in "$@"; do [[ "$a" == --rm ]] && rm_dir=1 || args+=("$a"); done
    d="$(resolve_dir "${args[0]:-}")"
    [[ -d "$d" ]] || { say "nothing to stop in $d"; return 0; }
    local conf="$d/etc/slurm.conf"
    local ctld; ctld="$(pid_of "$d" slurmctld)"
    if [[ -f "$conf" && -n "$ctld" ]] && alive "$ctld"; then
        # cancel every job of this private cluster so the slurmstepd processes exit by themselves
        local jobs i
        jobs="$(SLURM_CONF="$conf" timeout 10 squeue -h -o %A 2>/dev/null | sort -u || true)"
        if [[ -n "$jobs" ]]; then
            # shellcheck disable=SC2086
            SLURM_CONF="$conf" timeout 10 scancel $jobs 2>/dev/null || true
            for (( i = 0; i < 300; i++ )); do
                [[ -z "$(SLURM_CONF="$conf" timeout 5 squeue -h -t R,CG,PD,S -o %A 2>/dev/null || true)" ]] && break
                sleep 0.1
            done
        fi
        # ... and until every slurmstepd has finished (each removes its job directory and
        # step sockets from the spool): stopping slurmd under them would orphan them
        local spool="$d/spool/slurmd-localhost"
        for (( i = 0; i < 300; i++ )); do
            compgen -G "$spool/job[0-9]*" >/dev/null || compgen -G "$spool/localhost_*" >/dev/null || break
            sleep 0.1
        done
        if compgen -G "$spool/job[0-9]*" >/dev/null || compgen -G "$spool/localhost_*" >/dev/null; then
            say "job steps still finishing after 30 s: $(cd "$spool" && echo job[0-9]* localhost_*)"
        fi
    fi
    stop_pids "$d" slurmd slurmctld
    stop_pids "$d" munged
    rm -rf "$d/pids"
    # report (never kill) anything that still mentions the directory
    local left
    left="$(ps -eo pid=,args= | grep -F -- "$d/" | grep -v -e grep -e "slurm-local.sh" || true)"
    [[ -n "$left" ]] && say "still running and mentioning $d (not killed):"$'\n'"$left"
    if [[ -n "$rm_dir" ]]; then rm -rf "$d"; say "stopped and removed $d"; else say "stopped $d"; fi
}

cmd_status() {
    local d; d="$(resolve_dir "${1:-}")"
    local name p
    for name in munged slurmctld slurmd; do
        p="$(pid_of "$d" "$name")"
        if [[ -n "$p" ]] && alive "$p"; then echo "$name: running (PID $p)"; else echo "$name: not running"; fi
    done
    [[ -f "$d/etc/slurm.conf" ]] || return 0
    SLURM_CONF="$d/etc/slurm.conf" timeout 10 sinfo || true
    SLURM_CONF="$d/etc/slurm.conf" timeout 10 squeue || true
}

cmd_env() {
    local d standin=""
    local args=()
    for a in "$@"; do [[ "$a" == --sacct-standin ]] && standin=1 || args+=("$a"); done
    d="$(resolve_dir "${args[0]:-}")"
    echo "export SLURM_CONF=$d/etc/slurm.conf"
    [[ -n "$standin" ]] && echo "export PATH=$d/bin:\$PATH"
    return 0
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    env) shift; cmd_env "$@" ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
