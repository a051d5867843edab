#!/usr/bin/env bash
# Builds upstream Pistache before the #1310 fix (2d9e29b0), at HEAD
# (a3185e0b) and at HEAD + the patch series in this folder, links
# hello.cc against each, and plays the tls-probe against them and against
# pistachio's own hello_server, on 1 and 2 threads. Prints one table:
# per-style ok/total, overall, and whether the server process survived.
#
#   docs/pistache-port/check.sh            (from anywhere in the repo)
#
# Needs the archives in ../shared/pistache/ (relative to the repo root).
# Builds go to target/pistache-port/ and are reused on the next run.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
archives=$(cd "$root/.." && pwd)/shared/pistache
out="$root/target/pistache-port"
certs="$root/tests/certs"
mkdir -p "$out"

if [ ! -d "$archives" ]; then
    echo "check.sh: $archives not found; nothing to check"
    exit 0
fi

# --- Debian packages (idempotent) -------------------------------------------
# shellcheck source=debian-packages.sh
source "$here/debian-packages.sh"
install_debian_packages meson ninja-build pkg-config g++ libssl-dev rapidjson-dev curl

# --- Pistache builds ----------------------------------------------------------
# build_pistache NAME COMMIT [PATCHES...]: unpack, patch, build, install,
# link hello.cc. Pistache is rebuilt only when the patches change, hello.cc
# is relinked when it changes.
build_pistache() {
    local name=$1 commit=$2; shift 2
    local dir="$out/$name" src="$out/$name/pistache-$commit"
    local built="$dir/.built"
    if [ ! -f "$built" ] || find "$here/patches" -newer "$built" -name '*.patch' | grep -q . ; then
        echo "==> building Pistache $name"
        rm -rf "$dir" && mkdir -p "$dir"
        tar xzf "$archives/pistache-$commit.tar.gz" -C "$dir"
        for p in "$@"; do
            (cd "$src" && patch -p1 -s < "$p") || { echo "patch $p failed"; return 1; }
        done
        meson setup "$dir/build" "$src" --prefix="$dir/inst" --libdir=lib \
            --buildtype=release --wrap-mode=nodownload -Db_lto=false \
            -DPISTACHE_USE_SSL=true -DPISTACHE_BUILD_TESTS=false \
            -DPISTACHE_BUILD_EXAMPLES=false -DPISTACHE_BUILD_DOCS=false \
            -DPISTACHE_USE_CONTENT_ENCODING_BROTLI=false \
            -DPISTACHE_USE_CONTENT_ENCODING_ZSTD=false \
            -DPISTACHE_USE_CONTENT_ENCODING_DEFLATE=false >"$dir/setup.log" 2>&1 \
            && ninja -C "$dir/build" -j2 >"$dir/build.log" 2>&1 \
            && meson install -C "$dir/build" >"$dir/install.log" 2>&1 \
            || { echo "build of $name failed, see $dir/*.log"; return 1; }
        touch "$built"
    fi
    # hello.cc is relinked whenever it changed, without rebuilding Pistache.
    if [ ! -x "$dir/hello" ] || [ "$here/hello.cc" -nt "$dir/hello" ] || [ "$built" -nt "$dir/hello" ]; then
        g++ -std=c++17 -O2 -o "$dir/hello" "$here/hello.cc" -I"$dir/inst/include" \
            -DPISTACHE_USE_SSL -L"$dir/inst/lib" -lpistache \
            -Wl,--disable-new-dtags,-rpath,"$dir/inst/lib" -pthread -lssl -lcrypto \
            || { echo "hello.cc against $name failed"; return 1; }
    fi
}

servers=()
build_pistache 2d9e29b0 2d9e29b0 && servers+=(2d9e29b0)
build_pistache a3185e0b a3185e0b && servers+=(a3185e0b)
build_pistache series a3185e0b "$here"/patches/*.patch && servers+=(series)

# --- Rust side: the probe and pistachio's hello_server ----------------------
# TLS_PROBE / HELLO_SERVER may name prebuilt binaries (e.g. from a tree
# where the probe already exists); otherwise both are built here.
probe="${TLS_PROBE:-}"
if [ -z "$probe" ]; then
    if cargo build -q --release -p pistachio-tests --bin tls-probe 2>"$out/probe-build.log"; then
        probe="$root/target/release/tls-probe"
    else
        echo "note: tls-probe does not build here (see $out/probe-build.log); cells show n/a"
    fi
fi
hello_server="${HELLO_SERVER:-}"
if [ -z "$hello_server" ] \
    && cargo build -q --release -p pistachio-rest --example hello_server 2>"$out/hello-build.log"; then
    hello_server="$root/target/release/examples/hello_server"
fi
[ -n "$hello_server" ] && servers+=(pistachio)
# The upstream servers once more with SIGPIPE ignored by hand (as many
# applications do): with the SIGPIPE deaths out of the way, what is left
# shows, e.g. the empty replies after an abrupt close (2d9e29b0, issue
# #1309) and the stalled handshake blocking the accept thread (HEAD).
for s in 2d9e29b0 a3185e0b; do
    [[ " ${servers[*]} " == *" $s "* ]] && servers+=("$s+SIG_IGN")
done

# --- Runs -------------------------------------------------------------------
styles=(no-close-notify rst-after-request rst-mid-handshake garbage-record
        curl-hostname-mismatch stalled-handshake rst-mid-download idle-client)
port=$((20000 + RANDOM % 20000))
rows=()

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

for server in "${servers[@]}"; do
    for threads in 1 2; do
        port=$((port + 1))
        log="$out/run-$server-$threads.log"
        if [ "$server" = pistachio ]; then
            "$hello_server" --tls-cert "$certs/server-chain.pem" \
                --tls-key "$certs/server.key" --threads "$threads" \
                --addr "127.0.0.1:$port" >"$out/server-$server-$threads.log" 2>&1 &
        elif [[ "$server" == *+SIG_IGN ]]; then
            "$out/${server%+SIG_IGN}/hello" "$port" "$threads" "$certs/server-chain.pem" \
                "$certs/server.key" --ignore-sigpipe >"$out/server-$server-$threads.log" 2>&1 &
        else
            "$out/$server/hello" "$port" "$threads" "$certs/server-chain.pem" \
                "$certs/server.key" >"$out/server-$server-$threads.log" 2>&1 &
        fi
        pid=$!
        wait_port "$port" || true
        if [ -n "$probe" ]; then
            timeout 120 "$probe" "https://127.0.0.1:$port/" --ca "$certs/ca.pem" \
                --download-path /big >"$log" 2>&1
            echo "    $server/$threads: probe exit $?"
        else
            : >"$log"
        fi
        sleep 0.5
        if kill -0 "$pid" 2>/dev/null; then
            alive=yes
            kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        else
            wait "$pid"; rc=$?
            alive="no (exit $rc)"
        fi
        row="| $server | $threads |"
        for s in "${styles[@]}"; do
            cell=$(sed -nE "s/^$s: ([0-9]+) ok of ([0-9]+).*/\1\/\2/p" "$log" | tail -1)
            row+=" ${cell:-n/a} |"
        done
        overall=$(sed -nE 's/^overall: ([0-9]+) ok of ([0-9]+).*/\1\/\2/p' "$log" | tail -1)
        row+=" ${overall:-n/a} | $alive |"
        rows+=("$row")
    done
done

header="| server | threads |"
sep="|---|---|"
for s in "${styles[@]}"; do header+=" $s |"; sep+="---|"; done
header+=" overall | server alive |"; sep+="---|---|"
echo
echo "$header"
echo "$sep"
printf '%s\n' "${rows[@]}"
