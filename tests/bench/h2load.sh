#!/usr/bin/env bash
# pistachio HTTP/2 load: h2load (Debian's nghttp2-client) against the
# hello_server example, over h2c (prior knowledge) and TLS (ALPN h2).
#
#   bash tests/bench/h2load.sh            # short run (about 30 s plus the build)
#
# Environment (defaults in brackets):
#   REQUESTS [200000]   requests per run (h2load -n)
#   CLIENTS [16]        connections (h2load -c)
#   STREAMS [32]        concurrent streams per connection (h2load -m)
#   THREADS [1]         h2load threads (-t)
#   WORKERS [2]         server worker threads
#   PATHS ["/ /big"]    paths to load (/big: a 4 MiB file with serve_file;
#                       it gets REQUESTS/1000 requests)
#   PORT [18180]        plaintext port; TLS on PORT+1
#   SKIP_BUILD [0]      1: use the binary already built
#
# Everything listens on and connects to 127.0.0.1 only; the servers the
# script starts are stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-32}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-2}
PATHS=${PATHS:-"/ /big"}
PORT=${PORT:-18180}
CERT="$ROOT/tests/certs/server-chain.pem"
KEY="$ROOT/tests/certs/server.key"

log() { printf '[h2load %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! command -v h2load >/dev/null; then
    log "installing nghttp2-client (h2load)"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nghttp2-client >/dev/null
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p pistachio-rest --example hello_server)
fi
BIN="$ROOT/target/release/examples/hello_server"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$BIN" --addr "127.0.0.1:$PORT" --threads "$WORKERS" >/dev/null 2>&1 &
PIDS+=($!)
"$BIN" --addr "127.0.0.1:$((PORT + 1))" --threads "$WORKERS" \
    --tls-cert "$CERT" --tls-key "$KEY" >/dev/null 2>&1 &
PIDS+=($!)
for port in "$PORT" "$((PORT + 1))"; do
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

for path in $PATHS; do
    n=$REQUESTS
    [ "$path" = /big ] && n=$((REQUESTS / 1000))
    for scheme in http https; do
        port=$PORT
        [ "$scheme" = https ] && port=$((PORT + 1))
        log "$scheme $path: -n $n -c $CLIENTS -m $STREAMS -t $THREADS"
        h2load -n "$n" -c "$CLIENTS" -m "$STREAMS" -t "$THREADS" \
            "$scheme://127.0.0.1:$port$path" |
            grep -E '^(finished in|requests:|status codes:|traffic:|time for request:|req/s)' || true
    done
done
