#!/usr/bin/env bash
# pistachio HTTP/2 benchmark: h2load against pistachio's hello_server, nginx
# (Debian's package, HTTP/2 on) and hyper (hyper_hello --http2), in one run.
#
#   bash tests/bench/h2load.sh             # full run (~5 minutes on 2 cores, plus builds)
#   QUICK=1 bash tests/bench/h2load.sh     # smoke run (~1 minute, plus builds)
#
# For each worker count, each protocol (h2c: HTTP/2 with prior knowledge on
# plain TCP; tls: ALPN h2 over TLS 1.3) and each stream count (h2load -m 1,
# one request in flight per connection, and -m 100), the three servers are
# loaded alone in turn, ROUNDS times, the order rotating every round. Per
# run: the server's CPU time (utime+stime of its processes and threads,
# from /proc) over the h2load run, divided by the 2xx responses h2load
# counted. The report gives the medians and, per round, pistachio's CPU per
# request divided by nginx's and by hyper's (below 1: pistachio is cheaper).
# Then idle memory: with one worker, the RSS growth per idle HTTP/2
# connection (idle_conns.py --h2: preface, SETTINGS, one request, then idle).
#
# Environment (defaults in brackets; QUICK=1 changes the defaults):
#   ROUNDS [5, quick 1]        interleaved rounds per configuration
#   DURATION [4, quick 2]      seconds per h2load run (h2load -D)
#   WARMUP [1]                 seconds of h2load warm-up per server and configuration
#   WORKERS ["1"]              worker counts ("1 2" for both)
#   PROTOS ["h2c tls"]         protocols
#   STREAMS ["1 100"]          concurrent streams per connection (h2load -m)
#   CONNS_M1 [16]              connections (h2load -c) for -m 1: 16 requests in flight
#   CONNS_MN [4]               connections for the other stream counts: 4 x 100 in flight
#   SERVERS ["pistachio nginx hyper"]
#   IDLE_CONNS [2000, quick 500]   idle HTTP/2 connections per server and protocol
#   SKIP_BUILD / SKIP_LOAD / SKIP_IDLE [0]   1: skip that part
#   RESULTS_DIR [tests/bench/results/h2-DATE]   raw h2load output, logs, report.md
#   PORT_BASE [18180]          servers listen on 127.0.0.1:PORT_BASE+1..3 (h2c)
#                              and PORT_BASE+11..13 (TLS)
#
# h2load runs with one thread (-t 1), so that it and a one-worker server
# each have one of two cores. Everything listens on and connects to
# 127.0.0.1 only. Every process the script starts is stopped on exit. The
# functions it shares with run.sh are in common.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH_TAG=h2bench
# shellcheck source=common.sh
. "$HERE/common.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    : "${ROUNDS:=1}" "${DURATION:=2}" "${IDLE_CONNS:=500}"
fi
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
WORKERS=${WORKERS:-1}
PROTOS=${PROTOS:-"h2c tls"}
STREAMS=${STREAMS:-"1 100"}
CONNS_M1=${CONNS_M1:-16}
CONNS_MN=${CONNS_MN:-4}
SERVERS=${SERVERS:-"pistachio nginx hyper"}
IDLE_CONNS=${IDLE_CONNS:-2000}
IDLE_WARM=${IDLE_WARM:-200}
PORT_BASE=${PORT_BASE:-18180}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results/h2-$(date +%Y%m%d-%H%M%S)}

CERT="$ROOT/tests/certs/server-chain.pem"
KEY="$ROOT/tests/certs/server.key"

# ---------------------------------------------------------------- tools
command -v h2load >/dev/null || { log "installing nghttp2-client (h2load)"; apt_install nghttp2-client; }
install_common_tools
curl -V | grep -q HTTP2 || die "this curl has no HTTP/2 (needed to check the servers' answers)"

raise_nofile

# nginx before 1.25.1 turns HTTP/2 on with a listen parameter; from 1.25.1
# on with the `http2` directive (the listen parameter is deprecated).
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
if printf '%s\n1.25.1\n' "$NGINX_VERSION" | sort -V -C; then
    [ "$NGINX_VERSION" = 1.25.1 ] && NGINX_H2_DIRECTIVE=1 || NGINX_H2_DIRECTIVE=0
else
    NGINX_H2_DIRECTIVE=1
fi

# ---------------------------------------------------------------- build
TARGET=${CARGO_TARGET_DIR:-}
PIST_BIN=${PISTACHIO_BIN:-${TARGET:-$ROOT/target}/release/examples/hello_server}
PEER_DIR=${TARGET:-$HERE/target}/release
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building pistachio hello_server (release)"
    (cd "$ROOT" && cargo build --release --quiet -p pistachio-rest --example hello_server)
    log "building hyper_hello (release)"
    (cd "$HERE" && cargo build --release --quiet --bin hyper_hello)
fi
for b in "$PIST_BIN" "$PEER_DIR/hyper_hello"; do
    [ -x "$b" ] || die "missing binary $b"
done

setup_results pistachio-h2bench

# ---------------------------------------------------------------- processes
port_of() { # NAME PROTO
    local off
    case $1 in
        pistachio) off=1 ;; hyper) off=2 ;; nginx) off=3 ;;
        *) die "unknown server $1" ;;
    esac
    [ "$2" = tls ] && off=$((off + 10))
    echo $((PORT_BASE + off))
}
url_of() { # NAME PROTO
    local scheme=http
    [ "$2" = tls ] && scheme=https
    echo "$scheme://127.0.0.1:$(port_of "$1" "$2")/"
}

# start_server NAME WORKERS PROTO: starts it, waits until it answers over
# HTTP/2, checks the answer, and sets PID_<NAME>.
start_server() {
    local name=$1 w=$2 proto=$3 port tlsargs=()
    port=$(port_of "$name" "$proto")
    [ "$proto" = tls ] && tlsargs=(--tls-cert "$CERT" --tls-key "$KEY")
    local out="$RESULTS_DIR/server-$name-w$w-$proto.log"
    case $name in
        pistachio) "$PIST_BIN" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        hyper) "$PEER_DIR/hyper_hello" --http2 --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" \
            >"$out" 2>&1 & ;;
        nginx)
            local params="" tls="" h2=""
            [ "$proto" = tls ] && params=" ssl"
            if [ "$NGINX_H2_DIRECTIVE" = 1 ]; then h2="http2 on;"; else params="$params http2"; fi
            if [ "$proto" = tls ]; then
                tls="ssl_certificate $CERT; ssl_certificate_key $KEY; ssl_protocols TLSv1.3;"
            fi
            nginx_conf "$w" "$port" "$TMP/nginx-$w-$proto" "$params" "$h2" "$tls"
            nginx_start "$TMP/nginx-$w-$proto" "$out" ;;
    esac
    started "$name"
    local url curlh2=(--http2-prior-knowledge) resp
    url=$(url_of "$name" "$proto")
    [ "$proto" = tls ] && curlh2=(--http2)
    await_answer "$name" "$out" "$url" "${curlh2[@]}"
    resp=$ANSWER
    case $resp in "HTTP/2 200"*"Hello, World!") ;; *) die "$name at $url answered: ${resp:-nothing}" ;; esac
    if [ "$name" = nginx ]; then await_workers "$name" "$w"; fi # every worker process
}

conns_for() { if [ "$1" = 1 ]; then echo "$CONNS_M1"; else echo "$CONNS_MN"; fi; }
# the servers in round R's order: SERVERS rotated left by R-1
rotated() {
    local r=$1 list
    read -r -a list <<<"$SERVERS"
    local n=${#list[@]} i
    for ((i = 0; i < n; i++)); do printf '%s ' "${list[$(((i + r - 1) % n))]}"; done
}

# ---------------------------------------------------------------- machine
{
    machine_common
    echo "nginx=$NGINX_VERSION"
    echo "h2load=$(h2load --version 2>&1 | head -1)"
    echo "python=$(python3 --version 2>&1)"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "command=$(env | grep -E '^(QUICK|ROUNDS|DURATION|WARMUP|WORKERS|PROTOS|STREAMS|CONNS_M1|CONNS_MN|SERVERS|IDLE_CONNS)=' | tr '\n' ' ')bash tests/bench/h2load.sh"
    echo "settings=rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s streams=${STREAMS// /,} conns_m1=$CONNS_M1 conns_mn=$CONNS_MN h2load_threads=1 idle_conns=$IDLE_CONNS"
} >"$RESULTS_DIR/machine.txt"

START_TIME=$(date +%s)

# ---------------------------------------------------------------- load
# For each (workers, protocol): the servers are started together and stay
# up; for each stream count, each is warmed up, then all are measured in
# turn for ROUNDS rounds, round r starting with the r-th server.
if [ "${SKIP_LOAD:-0}" != 1 ]; then
    for w in $WORKERS; do
        for proto in $PROTOS; do
            for s in $SERVERS; do start_server "$s" "$w" "$proto"; done
            for m in $STREAMS; do
                c=$(conns_for "$m")
                for s in $SERVERS; do
                    h2load -t1 -c"$c" -m"$m" -D"$WARMUP" "$(url_of "$s" "$proto")" >/dev/null 2>&1 || true
                done
                for r in $(seq 1 "$ROUNDS"); do
                    for s in $(rotated "$r"); do
                        mapfile -t pids < <(server_pids "$s")
                        out="$RESULTS_DIR/h2-r$r-w$w-$proto-m$m-$s.h2load"
                        res=$(measure h2load "$out" "$(url_of "$s" "$proto")" -t1 -c"$c" -m"$m" -D"$DURATION")
                        echo "h2,$r,$w,$proto,$m,$c,$s,$res" >>"$CSV"
                        log "round $r workers $w $proto -m $m -c $c $s:" \
                            "$(awk '/^finished in/ { print $4, "req/s" }' "$out"), ${res%%,*} ticks"
                    done
                done
            done
            for s in $SERVERS; do stop_server "$s"; done
        done
    done
fi

# ---------------------------------------------------------------- idle
# One worker; IDLE_WARM connections opened and closed first, then RSS, then
# IDLE_CONNS HTTP/2 connections that each complete one request and stay open.
if [ "${SKIP_IDLE:-0}" != 1 ]; then
    for proto in $PROTOS; do
        flags=(--h2)
        [ "$proto" = tls ] && flags+=(--tls)
        for s in $SERVERS; do
            start_server "$s" 1 "$proto"
            measure_idle "$s" "$proto" "$(port_of "$s" "$proto")" "${flags[@]}"
            stop_server "$s"
        done
    done
fi

echo "elapsed=$(($(date +%s) - START_TIME))s" >>"$RESULTS_DIR/machine.txt"
python3 "$HERE/h2report.py" "$RESULTS_DIR" "$HERE/Cargo.lock" >"$RESULTS_DIR/report.md"
cat "$RESULTS_DIR/report.md"
log "raw results and report: $RESULTS_DIR"
