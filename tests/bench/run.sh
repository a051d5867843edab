#!/usr/bin/env bash
# pistachio benchmark: hello world against hyper, actix-web and nginx.
#
#   bash tests/bench/run.sh             # full run (~12 minutes on 2 cores, plus builds)
#   QUICK=1 bash tests/bench/run.sh     # smoke run (~1 minute, plus builds)
#
# Environment (defaults in brackets; QUICK=1 changes the defaults):
#   ROUNDS [3, quick 1]          interleaved rounds per configuration
#   DURATION [10, quick 2]       seconds per keep-alive wrk run
#   HS_DURATION [=DURATION]      seconds per handshake wrk run
#   WARMUP [2, quick 1]          seconds of wrk warm-up after a server starts
#   WORKERS ["1 2", quick "1"]   worker counts
#   PROTOS ["http https"]        protocols
#   SERVERS ["pistachio hyper actix nginx ceiling"]   (ceiling: a canned-response
#                                epoll loop that parses nothing, the machine's limit)
#   HS_SERVERS ["pistachio pistachio_rp nginx"]   servers in the handshake test
#                                (pistachio_rp: hello_server --per-worker-listeners,
#                                each worker accepting on its own SO_REUSEPORT
#                                socket, as nginx's workers accept for themselves)
#   CONNS [64]                   wrk connections (wrk -t1 -cCONNS)
#   GROWTH_CONNS ["1 64 1000 10000", quick "1 64"]   keep-alive connection counts of the
#                                growth test (1 worker, HTTP): how CPU/req and p99 grow
#   GROWTH_SERVERS ["pistachio ceiling nginx"]   GROWTH_ROUNDS [3, quick 1]
#   GROWTH_DURATION [5, quick 2] seconds per growth wrk run
#   PIPE_DEPTH [8]               requests per pipelined batch (1 worker, HTTP and HTTPS)
#   PIPE_SERVERS ["pistachio hyper nginx"]   PIPE_ROUNDS [3, quick 1]
#   SKIP_GROWTH / SKIP_PIPE [0]  1: skip that part
#   IDLE_CONNS [5000, quick 1000]    idle keep-alive connections per server
#   SKIP_BUILD [0]               1: use the binaries already built
#   SKIP_LOAD / SKIP_IDLE / SKIP_HS [0]   1: skip that part
#   RESULTS_DIR [tests/bench/results/DATE]   raw wrk output, logs, report.md
#   PORT_BASE [18080]            servers listen on 127.0.0.1:PORT_BASE+1..6
#
# Everything listens on and connects to 127.0.0.1 only. Every process the
# script starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    : "${ROUNDS:=1}" "${DURATION:=2}" "${WARMUP:=1}" "${IDLE_CONNS:=1000}" "${WORKERS:=1}"
    : "${GROWTH_CONNS:=1 64}" "${GROWTH_ROUNDS:=1}" "${GROWTH_DURATION:=2}" "${PIPE_ROUNDS:=1}"
fi
ROUNDS=${ROUNDS:-5}
GROWTH_CONNS=${GROWTH_CONNS:-"1 64 1000 10000"}
GROWTH_SERVERS=${GROWTH_SERVERS:-"pistachio ceiling nginx"}
GROWTH_ROUNDS=${GROWTH_ROUNDS:-3}
GROWTH_DURATION=${GROWTH_DURATION:-5}
PIPE_DEPTH=${PIPE_DEPTH:-8}
PIPE_SERVERS=${PIPE_SERVERS:-"pistachio hyper nginx"}
PIPE_ROUNDS=${PIPE_ROUNDS:-3}
DURATION=${DURATION:-10}
HS_DURATION=${HS_DURATION:-$DURATION}
WARMUP=${WARMUP:-2}
WORKERS=${WORKERS:-"1 2"}
PROTOS=${PROTOS:-"http https"}
SERVERS=${SERVERS:-"pistachio hyper actix nginx ceiling"}
HS_SERVERS=${HS_SERVERS:-"pistachio pistachio_rp nginx"}
CONNS=${CONNS:-64}
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_WARM=${IDLE_WARM:-200}
PORT_BASE=${PORT_BASE:-18080}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results/$(date +%Y%m%d-%H%M%S)}

CERT="$ROOT/tests/certs/server-chain.pem"
KEY="$ROOT/tests/certs/server.key"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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
command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
NGINX=${NGINX:-$(command -v nginx || true)}
[ -n "$NGINX" ] || NGINX=/usr/sbin/nginx
[ -x "$NGINX" ] || { log "installing nginx"; apt_install nginx-light || apt_install nginx; }
[ -x "$NGINX" ] || die "nginx not found at $NGINX"
command -v curl >/dev/null || { log "installing curl"; apt_install curl; }
command -v python3 >/dev/null || { log "installing python3"; apt_install python3; }
command -v pgrep >/dev/null || { log "installing procps"; apt_install procps; }
[ -x /usr/bin/time ] || { log "installing time"; apt_install time; }

# Room for IDLE_CONNS sockets in the servers and in the idle client.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
NOFILE=$(ulimit -n)
[ "$NOFILE" -ge $((IDLE_CONNS + 200)) ] || die "ulimit -n is $NOFILE; IDLE_CONNS=$IDLE_CONNS needs more"
for n in $GROWTH_CONNS; do
    [ "$NOFILE" -ge $((n + 200)) ] || die "ulimit -n is $NOFILE; GROWTH_CONNS=$n needs more"
done

# ---------------------------------------------------------------- build
TARGET=${CARGO_TARGET_DIR:-}
PIST_BIN=${PISTACHIO_BIN:-${TARGET:-$ROOT/target}/release/examples/hello_server}
PEER_DIR=${TARGET:-$HERE/target}/release
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building pistachio hello_server (release)"
    (cd "$ROOT" && cargo build --release --quiet -p pistachio-rest --example hello_server)
    log "building hyper_hello, actix_hello and ceiling (release)"
    (cd "$HERE" && cargo build --release --quiet --bins)
fi
for b in "$PIST_BIN" "$PEER_DIR/hyper_hello" "$PEER_DIR/actix_hello" "$PEER_DIR/ceiling"; do
    [ -x "$b" ] || die "missing binary $b"
done

mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
CSV="$RESULTS_DIR/results.csv"
: >"$CSV"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pistachio-bench.XXXXXX")

# ---------------------------------------------------------------- processes
STARTED=()
cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_of() {
    case $1 in
        pistachio) echo $((PORT_BASE + 1)) ;; hyper) echo $((PORT_BASE + 2)) ;;
        actix) echo $((PORT_BASE + 3)) ;; nginx) echo $((PORT_BASE + 4)) ;;
        pistachio_rp) echo $((PORT_BASE + 5)) ;; ceiling) echo $((PORT_BASE + 6)) ;;
        *) die "unknown server $1" ;;
    esac
}

nginx_conf() { # workers proto port dir
    local w=$1 proto=$2 port=$3 dir=$4 ssl="" tls=""
    if [ "$proto" = https ]; then
        ssl=" ssl"
        tls="ssl_certificate $CERT; ssl_certificate_key $KEY; ssl_protocols TLSv1.3;"
    fi
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<CONF
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
        listen 127.0.0.1:$port$ssl backlog=4096;
        $tls
        location / { return 200 "Hello, World!"; }
    }
}
CONF
}

# start_server NAME WORKERS PROTO: starts it, waits until it answers, checks
# the answer, and sets PID_<NAME>.
start_server() {
    local name=$1 w=$2 proto=$3 port pid tlsargs=() i
    port=$(port_of "$name")
    [ "$proto" = https ] && tlsargs=(--tls-cert "$CERT" --tls-key "$KEY")
    local out="$RESULTS_DIR/server-$name-w$w-$proto.log"
    case $name in
        pistachio) "$PIST_BIN" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        pistachio_rp) "$PIST_BIN" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" \
            --per-worker-listeners >"$out" 2>&1 & ;;
        hyper) "$PEER_DIR/hyper_hello" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        actix) "$PEER_DIR/actix_hello" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        ceiling) "$PEER_DIR/ceiling" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        nginx)
            nginx_conf "$w" "$proto" "$port" "$TMP/nginx-$w-$proto"
            "$NGINX" -p "$TMP/nginx-$w-$proto" -e "$TMP/nginx-$w-$proto/error.log" \
                -c "$TMP/nginx-$w-$proto/nginx.conf" >"$out" 2>&1 & ;;
    esac
    pid=$!
    STARTED+=("$pid")
    printf -v "PID_$name" '%s' "$pid"
    local url="$proto://127.0.0.1:$port/" resp=""
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; die "$name exited at start"; }
        if resp=$(curl -sk -m 2 -D - "$url" 2>/dev/null); then break; fi
        sleep 0.1
    done
    case $resp in *"Hello, World!") ;; *) die "$name at $url answered: ${resp:-nothing}";; esac
    printf '%s' "$resp" | grep -qi '^content-length: *13' || die "$name sent no Content-Length: $resp"
    if [ "$name" = nginx ]; then  # wait for every worker process
        for i in $(seq 1 50); do
            [ "$(pgrep -P "$pid" | wc -l)" -ge "$w" ] && break
            sleep 0.1
        done
    fi
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
# measure OUT URL [wrk flags...]: one wrk run against the server whose pids
# are in the array `pids`; prints "server_ticks,wrk_output,wrk_cpu_s,busy_ticks".
measure() {
    local out=$1 url=$2 t0 t1 b0 b1 wcpu
    shift 2
    b0=$(machine_busy_ticks)
    t0=$(cpu_ticks "${pids[@]}")
    /usr/bin/time -f '%U %S' -o "$out.time" wrk "$@" "$url" >"$out" 2>&1
    t1=$(cpu_ticks "${pids[@]}")
    b1=$(machine_busy_ticks)
    wcpu=$(awk 'END { print $1 + $2 }' "$out.time")
    echo "$((t1 - t0)),$out,$wcpu,$((b1 - b0))"
}
rss_kib() { # PIDS... -> VmRSS summed, in KiB
    local p files=()
    for p in "$@"; do files+=("/proc/$p/status"); done
    awk '/^VmRSS:/ { t += $2 } END { print t + 0 }' "${files[@]}"
}

url_of() { echo "$2://127.0.0.1:$(port_of "$1")/"; }

# ---------------------------------------------------------------- machine
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "tree=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "kernel=$(uname -sr)"
    echo "openssl=$(openssl version 2>/dev/null || echo unknown)"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*: //')"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }')"
    echo "python=$(python3 --version 2>&1)"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "command=$(env | grep -E '^(QUICK|ROUNDS|DURATION|HS_DURATION|WARMUP|WORKERS|PROTOS|SERVERS|HS_SERVERS|CONNS|IDLE_CONNS)=' | tr '\n' ' ')bash tests/bench/run.sh"
    echo "settings=rounds=$ROUNDS duration=${DURATION}s hs_duration=${HS_DURATION}s warmup=${WARMUP}s conns=$CONNS idle_conns=$IDLE_CONNS growth_conns=${GROWTH_CONNS// /,} growth_rounds=$GROWTH_ROUNDS growth_duration=${GROWTH_DURATION}s pipe_depth=$PIPE_DEPTH pipe_rounds=$PIPE_ROUNDS"
} >"$RESULTS_DIR/machine.txt"

START_TIME=$(date +%s)

# ---------------------------------------------------------------- keep-alive
# For each (workers, protocol): all servers are started, warmed up, then
# measured in turn, A B C D, for ROUNDS rounds; they stay up through the
# rounds and are stopped together.
if [ "${SKIP_LOAD:-0}" != 1 ]; then
    for w in $WORKERS; do
        for proto in $PROTOS; do
            for s in $SERVERS; do start_server "$s" "$w" "$proto"; done
            for s in $SERVERS; do
                wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$(url_of "$s" "$proto")" >/dev/null 2>&1
            done
            for r in $(seq 1 "$ROUNDS"); do
                for s in $SERVERS; do
                    mapfile -t pids < <(server_pids "$s")
                    out="$RESULTS_DIR/load-r$r-w$w-$proto-$s.wrk"
                    m=$(measure "$out" "$(url_of "$s" "$proto")" -t1 -c"$CONNS" -d"${DURATION}s" --latency)
                    echo "load,$r,$w,$proto,$s,$m" >>"$CSV"
                    log "keep-alive round $r workers $w $proto $s: $(awk '/Requests\/sec/ { print $2 }' "$out") req/s, ${m%%,*} ticks"
                done
            done
            for s in $SERVERS; do stop_server "$s"; done
        done
    done
fi

# ---------------------------------------------------------------- growth
# One worker over HTTP; for each connection count, every server measured
# in turn per round: how CPU per request and p99 latency grow with the
# number of keep-alive connections.
if [ "${SKIP_GROWTH:-0}" != 1 ]; then
    for s in $GROWTH_SERVERS; do start_server "$s" 1 http; done
    for n in $GROWTH_CONNS; do
        for s in $GROWTH_SERVERS; do
            wrk -t1 -c"$n" -d"${WARMUP}s" "$(url_of "$s" http)" >/dev/null 2>&1
        done
        for r in $(seq 1 "$GROWTH_ROUNDS"); do
            for s in $GROWTH_SERVERS; do
                mapfile -t pids < <(server_pids "$s")
                out="$RESULTS_DIR/growth-r$r-c$n-$s.wrk"
                m=$(measure "$out" "$(url_of "$s" http)" -t1 -c"$n" -d"${GROWTH_DURATION}s" --latency --timeout 10s)
                echo "growth,$r,$n,http,$s,$m" >>"$CSV"
                log "growth round $r $n connections $s: $(awk '/Requests\/sec/ { print $2 }' "$out") req/s"
            done
        done
    done
    for s in $GROWTH_SERVERS; do stop_server "$s"; done
fi

# ---------------------------------------------------------------- pipelined
# One worker; wrk sends PIPE_DEPTH requests per write (the ceiling answers
# per read, not per request, so it is not in this test).
if [ "${SKIP_PIPE:-0}" != 1 ]; then
    pipe_lua="$TMP/pipeline.lua"
    cat >"$pipe_lua" <<LUA
init = function(args)
    local r = {}
    for i = 1, $PIPE_DEPTH do r[i] = wrk.format(nil, "/") end
    req = table.concat(r)
end
request = function() return req end
LUA
    for proto in $PROTOS; do
        for s in $PIPE_SERVERS; do start_server "$s" 1 "$proto"; done
        for s in $PIPE_SERVERS; do
            wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$pipe_lua" "$(url_of "$s" "$proto")" >/dev/null 2>&1
        done
        for r in $(seq 1 "$PIPE_ROUNDS"); do
            for s in $PIPE_SERVERS; do
                mapfile -t pids < <(server_pids "$s")
                out="$RESULTS_DIR/pipe-r$r-$proto-$s.wrk"
                m=$(measure "$out" "$(url_of "$s" "$proto")" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$pipe_lua")
                echo "pipe,$r,1,$proto,$s,$m" >>"$CSV"
                log "pipelined round $r $proto $s: $(awk '/Requests\/sec/ { print $2 }' "$out") req/s"
            done
        done
        for s in $PIPE_SERVERS; do stop_server "$s"; done
    done
fi

# ---------------------------------------------------------------- idle
# One worker; IDLE_WARM connections opened and closed first, then RSS,
# then IDLE_CONNS connections that each make one request and stay open.
if [ "${SKIP_IDLE:-0}" != 1 ]; then
    for proto in $PROTOS; do
        tlsflag=()
        [ "$proto" = https ] && tlsflag=(--tls)
        for s in $SERVERS; do
            start_server "$s" 1 "$proto"
            port=$(port_of "$s")
            python3 "$HERE/idle_conns.py" --port "$port" "${tlsflag[@]}" --n "$IDLE_WARM" --hold 0 2>/dev/null
            sleep 1
            mapfile -t pids < <(server_pids "$s")
            rss0=$(rss_kib "${pids[@]}")
            ready="$TMP/idle-ready"
            rm -f "$ready"
            python3 "$HERE/idle_conns.py" --port "$port" "${tlsflag[@]}" --n "$IDLE_CONNS" \
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
            stop_server "$s"
        done
    done
fi

# ---------------------------------------------------------------- handshakes
# New TLS connections per second: one request per connection.
if [ "${SKIP_HS:-0}" != 1 ]; then
    for w in $WORKERS; do
        for s in $HS_SERVERS; do
            start_server "$s" "$w" https
            # wrk reconnects only when the response says Connection: close
            # (over HTTP/1.1, as wrk speaks: with ALPN curl would pick h2)
            curl -sk --http1.1 -m 2 -D - -o /dev/null -H "Connection: close" "$(url_of "$s" https)" |
                grep -qi '^connection: *close' || die "$s does not answer Connection: close"
        done
        for s in $HS_SERVERS; do
            wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Connection: close" "$(url_of "$s" https)" >/dev/null 2>&1
        done
        for r in $(seq 1 "$ROUNDS"); do
            for s in $HS_SERVERS; do
                mapfile -t pids < <(server_pids "$s")
                out="$RESULTS_DIR/hs-r$r-w$w-$s.wrk"
                m=$(measure "$out" "$(url_of "$s" https)" -t1 -c"$CONNS" -d"${HS_DURATION}s" \
                    --latency -H "Connection: close")
                echo "hs,$r,$w,https,$s,$m" >>"$CSV"
                log "handshakes round $r workers $w $s: $(awk '/Requests\/sec/ { print $2 }' "$out") conn/s"
            done
        done
        for s in $HS_SERVERS; do stop_server "$s"; done
    done
fi

echo "elapsed=$(( $(date +%s) - START_TIME ))s" >>"$RESULTS_DIR/machine.txt"
python3 "$HERE/report.py" "$RESULTS_DIR" "$HERE/Cargo.lock" >"$RESULTS_DIR/report.md"
cat "$RESULTS_DIR/report.md"
log "raw results and report: $RESULTS_DIR"
