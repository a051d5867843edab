# Shell functions shared by run.sh and h2load.sh; sourced, not run.
#
# The sourcing script sets BENCH_TAG (the log prefix) before sourcing, and
# HERE, ROOT, RESULTS_DIR, IDLE_CONNS and IDLE_WARM before calling the
# functions that use them. install_common_tools sets NGINX, raise_nofile
# NOFILE, setup_results CSV and TMP (and makes RESULTS_DIR absolute).

log() { printf '[%s %s] %s\n' "$BENCH_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
# nginx (NGINX: its path), curl, python3, pgrep and /usr/bin/time,
# installed when missing.
install_common_tools() {
    NGINX=${NGINX:-$(command -v nginx || true)}
    [ -n "$NGINX" ] || NGINX=/usr/sbin/nginx
    [ -x "$NGINX" ] || { log "installing nginx"; apt_install nginx-light || apt_install nginx; }
    [ -x "$NGINX" ] || die "nginx not found at $NGINX"
    command -v curl >/dev/null || { log "installing curl"; apt_install curl; }
    command -v python3 >/dev/null || { log "installing python3"; apt_install python3; }
    command -v pgrep >/dev/null || { log "installing procps"; apt_install procps; }
    [ -x /usr/bin/time ] || { log "installing time"; apt_install time; }
}

# Room for IDLE_CONNS sockets in the servers and in the idle client; sets NOFILE.
raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
    NOFILE=$(ulimit -n)
    [ "$NOFILE" -ge $((IDLE_CONNS + 200)) ] || die "ulimit -n is $NOFILE; IDLE_CONNS=$IDLE_CONNS needs more"
}

# setup_results TMP_PREFIX: creates RESULTS_DIR (made absolute), an empty
# CSV=RESULTS_DIR/results.csv and a scratch directory TMP; on exit every
# process in STARTED is stopped and TMP removed.
STARTED=()
setup_results() {
    mkdir -p "$RESULTS_DIR"
    RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
    CSV="$RESULTS_DIR/results.csv"
    : >"$CSV"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}

# ---------------------------------------------------------------- servers
# nginx_conf WORKERS PORT DIR LISTEN_PARAMS [SERVER_LINES...]: writes
# DIR/nginx.conf for a hello world server on 127.0.0.1:PORT.
nginx_conf() {
    local w=$1 port=$2 dir=$3 params=$4
    shift 4
    mkdir -p "$dir"
    {
        cat <<CONF
worker_processes $w;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$port$params backlog=4096;
CONF
        [ $# = 0 ] || printf '        %s\n' "$@"
        cat <<CONF
        location / { return 200 "Hello, World!"; }
    }
}
CONF
    } >"$dir/nginx.conf"
}
# nginx_start DIR OUT: starts nginx with DIR/nginx.conf in the background.
nginx_start() {
    "$NGINX" -p "$1" -e "$1/error.log" -c "$1/nginx.conf" >"$2" 2>&1 &
}

# started NAME: the process just started in the background is server NAME:
# sets PID_<NAME>; it is stopped on exit.
started() {
    STARTED+=("$!")
    printf -v "PID_$1" '%s' "$!"
}
# await_answer NAME OUT URL [curl flags...]: asks URL until server NAME
# answers (10 s at most) and leaves the answer, headers first, in ANSWER;
# dies with the server's output OUT if it exits.
await_answer() {
    local name=$1 out=$2 url=$3 var="PID_$1" i
    shift 3
    ANSWER=""
    for i in $(seq 1 100); do
        kill -0 "${!var}" 2>/dev/null || { cat "$out" >&2; die "$name exited at start"; }
        if ANSWER=$(curl -sk -m 2 "$@" -D - "$url" 2>/dev/null); then break; fi
        sleep 0.1
    done
}
# await_workers NAME WORKERS: waits (5 s at most) for WORKERS children of
# server NAME (nginx's worker processes).
await_workers() {
    local var="PID_$1" i
    for i in $(seq 1 50); do
        [ "$(pgrep -P "${!var}" | wc -l)" -ge "$2" ] && break
        sleep 0.1
    done
}

stop_server() { # NAME
    local var="PID_$1" pid i
    pid=${!var:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf -v "PID_$1" '%s' ""
}

# ---------------------------------------------------------------- measuring
# The server's processes: the one started plus its children (nginx workers);
# /proc/PID/stat of a process already sums all of its threads.
server_pids() { local var="PID_$1"; echo "${!var}"; pgrep -P "${!var}" || true; }
cpu_ticks() { # PIDS... -> utime+stime (fields 14+15) summed, in clock ticks
    local p files=()
    for p in "$@"; do files+=("/proc/$p/stat"); done
    awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }' "${files[@]}"
}
machine_busy_ticks() { # all CPUs' non-idle time (user nice system irq softirq steal)
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
# measure TOOL OUT URL [TOOL flags...]: one run of the load generator TOOL
# (wrk, h2load) against the server whose pids are in the array `pids`;
# prints "server_ticks,OUT,tool_cpu_s,busy_ticks". TOOL's exit status is
# ignored: its output (OUT) tells what went wrong, and the report lists it.
measure() {
    local tool=$1 out=$2 url=$3 t0 t1 b0 b1 cpu
    shift 3
    b0=$(machine_busy_ticks)
    t0=$(cpu_ticks "${pids[@]}")
    /usr/bin/time -f '%U %S' -o "$out.time" "$tool" "$@" "$url" >"$out" 2>&1 || true
    t1=$(cpu_ticks "${pids[@]}")
    b1=$(machine_busy_ticks)
    cpu=$(awk 'END { print $1 + $2 }' "$out.time")
    echo "$((t1 - t0)),$out,$cpu,$((b1 - b0))"
}
rss_kib() { # PIDS... -> VmRSS summed, in KiB
    local p files=()
    for p in "$@"; do files+=("/proc/$p/status"); done
    awk '/^VmRSS:/ { t += $2 } END { print t + 0 }' "${files[@]}"
}

# measure_idle NAME PROTO PORT [idle_conns.py flags...]: against the running
# server NAME (one worker): IDLE_WARM connections opened and closed first,
# then RSS, then IDLE_CONNS connections that each make one request and stay
# open, then RSS again; appends "idle,PROTO,NAME,opened,failed,rss0,rss1" to CSV.
measure_idle() {
    local s=$1 proto=$2 port=$3 pids rss0 rss1 ready cpid i opened failed
    shift 3
    python3 "$HERE/idle_conns.py" --port "$port" "$@" --n "$IDLE_WARM" --hold 0 2>/dev/null
    sleep 1
    mapfile -t pids < <(server_pids "$s")
    rss0=$(rss_kib "${pids[@]}")
    ready="$TMP/idle-ready"
    rm -f "$ready"
    python3 "$HERE/idle_conns.py" --port "$port" "$@" --n "$IDLE_CONNS" \
        --ready "$ready" --hold 600 2>>"$RESULTS_DIR/idle-client.log" &
    cpid=$!
    STARTED+=("$cpid")
    for i in $(seq 1 1800); do
        [ -f "$ready" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    [ -f "$ready" ] || die "idle client against $s ($proto) did not finish"
    sleep 2
    mapfile -t pids < <(server_pids "$s")
    rss1=$(rss_kib "${pids[@]}")
    read -r opened failed <"$ready"
    kill -TERM "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    echo "idle,$proto,$s,$opened,$failed,$rss0,$rss1" >>"$CSV"
    log "idle $proto $s: $opened open ($failed failed), RSS $rss0 -> $rss1 KiB"
}

# The first lines of machine.txt, common to both benchmarks.
machine_common() {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "tree=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "kernel=$(uname -sr)"
    echo "openssl=$(openssl version 2>/dev/null || echo unknown)"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
}
