#!/usr/bin/env bash
# pistachio benchmark: hello world against hyper, actix-web and nginx.
#
#   bash tests/bench/run.sh             # full run (~40 minutes on 2 cores, plus builds)
#   QUICK=1 bash tests/bench/run.sh     # smoke run (~1 minute, plus builds)
#
# Environment (defaults in brackets; QUICK=1 changes the defaults):
#   ROUNDS [3, quick 1]          interleaved rounds per configuration
#   DURATION [10, quick 2]       seconds per keep-alive wrk run
#   HS_DURATION [=DURATION]      seconds per handshake wrk run
#   WARMUP [2, quick 1]          seconds of wrk warm-up after a server starts
#   WORKERS ["1 2", quick "1"]   worker counts
#   PROTOS ["http https"]        protocols
#   SERVERS ["pistachio pistachio_writer hyper actix nginx ceiling floor"]
#                                (pistachio: hello_server, whose answers are returned
#                                from Handler::respond; pistachio_writer: hello_server
#                                --writer, every answer sent through its ResponseWriter,
#                                Pistache's way; ceiling: a canned-response
#                                epoll loop that parses nothing, the machine's limit;
#                                floor: the same loop parsing each head with httparse and
#                                writing a Date and Content-Length head, `ceiling --parse`)
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
#   PORT_BASE [18080]            servers listen on 127.0.0.1:PORT_BASE+1..8
#
# Everything listens on and connects to 127.0.0.1 only. Every process the
# script starts is stopped on exit. The functions it shares with h2load.sh
# are in common.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH_TAG=bench
# shellcheck source=common.sh
. "$HERE/common.sh"

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
SERVERS=${SERVERS:-"pistachio pistachio_writer hyper actix nginx ceiling floor"}
HS_SERVERS=${HS_SERVERS:-"pistachio pistachio_rp nginx"}
CONNS=${CONNS:-64}
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_WARM=${IDLE_WARM:-200}
PORT_BASE=${PORT_BASE:-18080}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results/$(date +%Y%m%d-%H%M%S)}

CERT="$ROOT/tests/certs/server-chain.pem"
KEY="$ROOT/tests/certs/server.key"

# ---------------------------------------------------------------- tools
command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
install_common_tools

raise_nofile
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

setup_results pistachio-bench

# ---------------------------------------------------------------- processes
port_of() {
    case $1 in
        pistachio) echo $((PORT_BASE + 1)) ;; hyper) echo $((PORT_BASE + 2)) ;;
        actix) echo $((PORT_BASE + 3)) ;; nginx) echo $((PORT_BASE + 4)) ;;
        pistachio_rp) echo $((PORT_BASE + 5)) ;; ceiling) echo $((PORT_BASE + 6)) ;;
        floor) echo $((PORT_BASE + 7)) ;; pistachio_writer) echo $((PORT_BASE + 8)) ;;
        *) die "unknown server $1" ;;
    esac
}

# start_server NAME WORKERS PROTO: starts it, waits until it answers, checks
# the answer, and sets PID_<NAME>.
start_server() {
    local name=$1 w=$2 proto=$3 port tlsargs=()
    port=$(port_of "$name")
    [ "$proto" = https ] && tlsargs=(--tls-cert "$CERT" --tls-key "$KEY")
    local out="$RESULTS_DIR/server-$name-w$w-$proto.log"
    case $name in
        pistachio) "$PIST_BIN" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        pistachio_rp) "$PIST_BIN" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" \
            --per-worker-listeners >"$out" 2>&1 & ;;
        pistachio_writer) "$PIST_BIN" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" \
            --writer >"$out" 2>&1 & ;;
        hyper) "$PEER_DIR/hyper_hello" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        actix) "$PEER_DIR/actix_hello" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        ceiling) "$PEER_DIR/ceiling" --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        floor) "$PEER_DIR/ceiling" --parse --addr "127.0.0.1:$port" --threads "$w" "${tlsargs[@]}" >"$out" 2>&1 & ;;
        nginx)
            local ssl="" tls=""
            if [ "$proto" = https ]; then
                ssl=" ssl"
                tls="ssl_certificate $CERT; ssl_certificate_key $KEY; ssl_protocols TLSv1.3;"
            fi
            nginx_conf "$w" "$port" "$TMP/nginx-$w-$proto" "$ssl" "$tls"
            nginx_start "$TMP/nginx-$w-$proto" "$out" ;;
    esac
    started "$name"
    local url="$proto://127.0.0.1:$port/" resp
    await_answer "$name" "$out" "$url"
    resp=$ANSWER
    case $resp in *"Hello, World!") ;; *) die "$name at $url answered: ${resp:-nothing}";; esac
    printf '%s' "$resp" | grep -qi '^content-length: *13' || die "$name sent no Content-Length: $resp"
    if [ "$name" = nginx ]; then await_workers "$name" "$w"; fi  # every worker process
}

url_of() { echo "$2://127.0.0.1:$(port_of "$1")/"; }

# ---------------------------------------------------------------- machine
{
    machine_common
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*: //')"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }')"
    echo "python=$(python3 --version 2>&1)"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "command=$(env | grep -E '^(QUICK|ROUNDS|DURATION|HS_DURATION|WARMUP|WORKERS|PROTOS|SERVERS|HS_SERVERS|CONNS|IDLE_CONNS|GROWTH_CONNS|GROWTH_SERVERS|GROWTH_ROUNDS|GROWTH_DURATION|PIPE_DEPTH|PIPE_SERVERS|PIPE_ROUNDS|SKIP_[A-Z]+)=' | tr '\n' ' ')bash tests/bench/run.sh"
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
                    m=$(measure wrk "$out" "$(url_of "$s" "$proto")" -t1 -c"$CONNS" -d"${DURATION}s" --latency)
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
                m=$(measure wrk "$out" "$(url_of "$s" http)" -t1 -c"$n" -d"${GROWTH_DURATION}s" --latency --timeout 10s)
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
                m=$(measure wrk "$out" "$(url_of "$s" "$proto")" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$pipe_lua")
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
            measure_idle "$s" "$proto" "$(port_of "$s")" "${tlsflag[@]}"
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
                m=$(measure wrk "$out" "$(url_of "$s" https)" -t1 -c"$CONNS" -d"${HS_DURATION}s" \
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
