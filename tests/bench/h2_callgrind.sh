#!/usr/bin/env bash
# User-space instructions per HTTP/2 request of pistachio's hello_server,
# under valgrind's callgrind: exact and repeatable whatever else the machine
# does, so a change of the HTTP/2 path shows without a benchmark run.
#
#   bash tests/bench/h2_callgrind.sh
#
# For each case, hello_server --threads 1 runs under callgrind twice, loaded
# by h2load -t1 -c1 with N and with N/5 requests; the difference of the two
# totals divided by the difference of the request counts is the cost of a
# request, without the start, the connection and the exit.
#
# Environment (defaults in brackets):
#   CASES ["h2c:1 h2c:100"]   protocol (h2c or tls) and h2load -m, per case
#   REQUESTS [10000]          N (h2load -n of the larger run)
#   PORT [18290]              the server listens on 127.0.0.1:PORT
#   SKIP_BUILD [0]            1: use the binary already built
#
# Needs valgrind and h2load (Debian: valgrind, nghttp2-client), installed
# when missing. Everything listens on and connects to 127.0.0.1 only.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CASES=${CASES:-"h2c:1 h2c:100"}
REQUESTS=${REQUESTS:-10000}
PORT=${PORT:-18290}
BIN=${PISTACHIO_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hello_server}
CERT="$ROOT/tests/certs/server-chain.pem"
KEY="$ROOT/tests/certs/server.key"

log() { printf '[h2callgrind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need() { # COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    log "installing $2"
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
}
need valgrind valgrind
need h2load nghttp2-client

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p pistachio-rest --example hello_server)
fi
[ -x "$BIN" ] || { log "missing binary $BIN"; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pistachio-h2cg.XXXXXX")
SERVER=
cleanup() {
    [ -z "$SERVER" ] || kill -KILL "$SERVER" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# total PROTO STREAMS N: callgrind's instruction total for a run of N requests
total() {
    local proto=$1 m=$2 n=$3 tls=() scheme=http out="$TMP/callgrind.out" i
    if [ "$proto" = tls ]; then tls=(--tls-cert "$CERT" --tls-key "$KEY"); scheme=https; fi
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" --addr "127.0.0.1:$PORT" --threads 1 "${tls[@]}" >/dev/null 2>&1 &
    SERVER=$!
    for i in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    h2load -t1 -c1 -m"$m" -n"$n" "$scheme://127.0.0.1:$PORT/" >"$TMP/h2load.out"
    grep -q "^status codes: $n 2xx" "$TMP/h2load.out" || {
        log "not all $n requests answered with 2xx:"
        cat "$TMP/h2load.out" >&2
        exit 1
    }
    kill -INT "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}

small=$((REQUESTS / 5))
for c in $CASES; do
    proto=${c%%:*} m=${c##*:}
    a=$(total "$proto" "$m" "$small")
    b=$(total "$proto" "$m" "$REQUESTS")
    awk -v a="$a" -v b="$b" -v n=$((REQUESTS - small)) -v p="$proto" -v m="$m" \
        'BEGIN { printf "%s -m %s: %.0f instructions per request\n", p, m, (b - a) / n }'
done
