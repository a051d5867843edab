#!/usr/bin/env bash
# Rolling restart under load, with zero failed requests.
#
#   tests/deploy/rolling-restart.sh              # nginx in front of two instances
#   tests/deploy/rolling-restart.sh --reuseport  # no proxy: SO_REUSEPORT handover
#
# Builds the hello_server example in release and drives steady load with
# wrk for DURATION seconds (default 24) while the pistachio processes are
# restarted one after the other:
#
# * nginx mode: nginx (configuration generated in a temporary directory,
#   loopback high ports, upstream keep-alive, proxy_next_upstream error
#   timeout http_503) balances over two instances; each in turn gets
#   SIGTERM, drains (its listener closes at once, keep-alive connections are
#   served for --drain-grace and told Connection: close), exits, and a new
#   process takes the same port.
# * --reuseport mode: one port, no proxy. The new process binds the port
#   next to the old one (SO_REUSEPORT) and is listening before the old one
#   gets SIGTERM and drains.
#
# Half of the requests are POSTs, which a proxy must not send twice. Every
# request must succeed: the script exits non-zero if wrk saw a
# non-2xx answer or a socket error (connect, read, write, timeout), if no
# request was served, or if a drain cut a connection. nginx and wrk are
# installed from Debian's packages when missing. Everything started is
# stopped, and the temporary directory removed, on exit.
#
# Environment: DURATION (seconds of load), CONNECTIONS (wrk's, default 32),
# DRAIN_GRACE_MS (hello_server --drain-grace, default 1000; 0 makes both
# modes fail), PROFILE (release, or debug to reuse `cargo test`'s build).
set -euo pipefail

MODE=nginx
case "${1:-}" in
    "") ;;
    --reuseport) MODE=reuseport ;;
    -h | --help)
        sed -n '2,30p' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--reuseport]" >&2
        exit 2
        ;;
esac
DURATION=${DURATION:-24}
CONNECTIONS=${CONNECTIONS:-32}
# Keep-alive connections are still served this long in a drain.
DRAIN_GRACE_MS=${DRAIN_GRACE_MS:-1000}
# release, or debug to reuse the build `cargo test` made (CI).
PROFILE=${PROFILE:-release}

cd "$(dirname "$0")/../.."

# --- tools -----------------------------------------------------------------
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ "$MODE" = nginx ] && [ -z "$NGINX" ]; then need+=(nginx-light); fi
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
    echo "==> installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi

case "$PROFILE" in
release) build=(--release) ;;
debug) build=() ;;
*) echo "PROFILE is release or debug, not $PROFILE" >&2; exit 2 ;;
esac
echo "==> building hello_server ($PROFILE)"
cargo build -q "${build[@]}" -p pistachio-rest --example hello_server
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SERVER="$TARGET_DIR/$PROFILE/examples/hello_server"

# --- bookkeeping and cleanup -----------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pistachio-rolling.XXXXXX")
PIDS=()
cleanup() {
    local pid left
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # A second for graceful exits, then whatever is left is killed.
    for _ in $(seq 20); do
        left=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && left=1
        done
        [ "$left" -eq 0 ] && break
        sleep 0.05
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAIL: $*" >&2
    for log in "$WORK"/*.log; do
        [ -s "$log" ] || continue
        echo "--- $(basename "$log") (last lines)" >&2
        tail -n 15 "$log" >&2
    done
    exit 1
}

# Free loopback ports, chosen by the kernel.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# The status code of GET $2 on 127.0.0.1:$1 (000 if nothing answers).
http_status() {
    local status
    # In a subshell: its descriptor and redirections end with it.
    status=$(
        exec 7<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$2" >&7
        read -r -t 2 _ code _ <&7 && echo "$code"
    ) 2>/dev/null || true
    echo "${status:-000}"
}

# Starts an instance on port $1 (extra flags after it); sets STARTED_PID.
NEXT=0
start_instance() {
    local port=$1
    shift
    NEXT=$((NEXT + 1))
    local log="$WORK/instance-$NEXT.log"
    : >"$log"
    "$SERVER" --addr "127.0.0.1:$port" --threads 1 --drain-grace "$DRAIN_GRACE_MS" "$@" \
        >"$log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    echo "$STARTED_PID $log" >>"$WORK/instances"
    # Listening once the banner is out (connections wait in the backlog
    # until the workers accept them).
    for _ in $(seq 200); do
        grep -q "listening on" "$log" && return 0
        kill -0 "$STARTED_PID" 2>/dev/null || fail "instance on port $port died at start"
        sleep 0.05
    done
    fail "instance on port $port did not start"
}

# Waits until GET /readyz on port $1 answers 200.
wait_ready() {
    for _ in $(seq 100); do
        [ "$(http_status "$1" /readyz)" = 200 ] && return 0
        sleep 0.05
    done
    fail "port $1 never became ready"
}

# SIGTERM to $1, then waits for its graceful exit.
stop_instance() {
    local pid=$1 t0 t1
    t0=$(date +%s%N)
    kill -TERM "$pid"
    wait "$pid" || fail "instance $pid exited with status $?"
    t1=$(date +%s%N)
    local log
    log=$(awk -v p="$pid" '$1 == p { print $2 }' "$WORK/instances")
    local report
    report=$(grep -o "[0-9]* connections drained, [0-9]* cut" "$log" || echo "no report")
    echo "    pid $pid stopped after $(((t1 - t0) / 1000000)) ms: $report"
    case "$report" in
    *", 0 cut") ;;
    *) fail "instance $pid: $report" ;;
    esac
}

# --- the load --------------------------------------------------------------
cat >"$WORK/count.lua" <<'EOF'
-- Every other request is a POST, which nginx does not send again once it
-- went out (it may have been executed); counts answers that are not 2xx,
-- over all wrk threads.
local threads = {}
function setup(thread)
    table.insert(threads, thread)
end
function init(args)
    not_2xx = 0
    sent = 0
end
function request()
    sent = sent + 1
    if sent % 2 == 0 then
        return wrk.format("POST", nil, { ["Content-Type"] = "text/plain" }, "hello")
    end
    return wrk.format("GET")
end
function response(status, headers, body)
    if status < 200 or status > 299 then
        not_2xx = not_2xx + 1
    end
end
function done(summary, latency, requests)
    local bad = 0
    for _, thread in ipairs(threads) do
        bad = bad + thread:get("not_2xx")
    end
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d not_2xx=%d connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, bad, e.connect, e.read, e.write, e.timeout))
end
EOF

start_load() {
    wrk -t 1 -c "$CONNECTIONS" -d "${DURATION}s" -s "$WORK/count.lua" "http://127.0.0.1:$1/" \
        >"$WORK/wrk.out" 2>&1 &
    WRK_PID=$!
    PIDS+=("$WRK_PID")
}

finish_load() {
    wait "$WRK_PID" || fail "wrk exited with status $?"
    sed 's/^/    /' "$WORK/wrk.out" | grep -v '^    RESULT'
    local result
    result=$(grep '^RESULT' "$WORK/wrk.out") || fail "wrk printed no result"
    local requests=0 not_2xx=0 connect=0 read=0 write=0 timeout=0 kv
    for kv in ${result#RESULT }; do
        local "${kv?}"
    done
    local failures=$((not_2xx + connect + read + write + timeout))
    echo "==> $MODE: $requests requests served, $failures failed" \
        "(non-2xx $not_2xx, connect $connect, read $read, write $write, timeout $timeout)," \
        "$RESTARTS restarts"
    [ "$requests" -gt 0 ] || fail "no request was served"
    [ "$failures" -eq 0 ] || fail "$failures requests failed"
}

# Sleeps until $1 seconds after the load started.
until_second() {
    local left=$((LOAD_START + $1 * 1000 - $(date +%s%3N)))
    if [ "$left" -gt 0 ]; then sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"; fi
}

RESTARTS=0
# Restart points, in seconds into the load: spread over the run, the last
# one well before its end.
schedule() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do
        echo $((DURATION * i / (n + 1)))
    done
}

if [ "$MODE" = nginx ]; then
    read -r PROXY PORT_A PORT_B <<<"$(free_ports 3)"
    USER_LINE=""
    [ "$(id -u)" -eq 0 ] && USER_LINE="user root;"
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
$USER_LINE
# One process, no master: nothing is left behind if it is killed.
master_process off;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream pistachio {
        # max_fails=0: a refused connect (an instance restarting) is
        # retried on the other instance without marking this one down, so
        # the pool is never empty while the instances restart in turn.
        server 127.0.0.1:$PORT_A max_fails=0;
        server 127.0.0.1:$PORT_B max_fails=0;
        keepalive 32;
        # Shorter than pistachio's keepalive_timeout (60 s): nginx closes
        # idle pooled connections, not the backend.
        keepalive_timeout 30s;
    }
    server {
        listen 127.0.0.1:$PROXY;
        location / {
            proxy_pass http://pistachio;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Retried on the other instance: a refused or reset connection
            # and a 503. Not POST/PATCH/LOCK once sent (nginx's default,
            # no "non_idempotent"): those might have been executed.
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 5s;
            proxy_connect_timeout 1s;
        }
    }
}
EOF
    echo "==> nginx on 127.0.0.1:$PROXY in front of 127.0.0.1:$PORT_A and 127.0.0.1:$PORT_B"
    start_instance "$PORT_A"
    PID_A=$STARTED_PID
    start_instance "$PORT_B"
    PID_B=$STARTED_PID
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx-error.log" \
        >"$WORK/nginx.log" 2>&1 &
    PIDS+=($!)
    wait_ready "$PORT_A"
    wait_ready "$PORT_B"
    wait_ready "$PROXY"

    echo "==> ${DURATION}s of load ($CONNECTIONS connections) while each instance restarts twice"
    LOAD_START=$(date +%s%3N)
    start_load "$PROXY"
    turn=0
    for at in $(schedule 4); do
        until_second "$at"
        if ((turn % 2 == 0)); then
            echo "--> restarting the instance on port $PORT_A (t=${at}s)"
            stop_instance "$PID_A"
            start_instance "$PORT_A"
            PID_A=$STARTED_PID
            wait_ready "$PORT_A"
        else
            echo "--> restarting the instance on port $PORT_B (t=${at}s)"
            stop_instance "$PID_B"
            start_instance "$PORT_B"
            PID_B=$STARTED_PID
            wait_ready "$PORT_B"
        fi
        RESTARTS=$((RESTARTS + 1))
        turn=$((turn + 1))
    done
    finish_load
    if grep -E "\[(error|crit|alert|emerg)\]" "$WORK/nginx-error.log" | grep -qv "connect() failed"; then
        echo "    nginx noted (retried on the other instance):"
        grep -E "\[(error|crit|alert|emerg)\]" "$WORK/nginx-error.log" |
            sed -E 's/^.*\[(error|crit|alert|emerg)\] [0-9#*]+ //; s/, client.*$//' |
            sort | uniq -c | sed 's/^/      /'
    fi
    refused=$(grep -c "connect() failed" "$WORK/nginx-error.log" || true)
    echo "    connects refused by a restarting instance (retried): $refused"
else
    read -r PORT <<<"$(free_ports 1)"
    echo "==> one port, 127.0.0.1:$PORT, handed over with SO_REUSEPORT"
    start_instance "$PORT" --reuse-port
    OLD=$STARTED_PID
    wait_ready "$PORT"

    echo "==> ${DURATION}s of load ($CONNECTIONS connections) while the process is replaced 4 times"
    LOAD_START=$(date +%s%3N)
    start_load "$PORT"
    for at in $(schedule 4); do
        until_second "$at"
        echo "--> new process on port $PORT (t=${at}s), then SIGTERM to the old one"
        start_instance "$PORT" --reuse-port
        NEW=$STARTED_PID
        stop_instance "$OLD"
        OLD=$NEW
        wait_ready "$PORT"
        RESTARTS=$((RESTARTS + 1))
    done
    finish_load
fi
echo "PASS: every request succeeded across $RESTARTS restarts"
