#!/usr/bin/env bash
# CI step for the C++ Pistache port: builds upstream HEAD (a3185e0b) + the
# patch series in this folder with its gtest suite, runs the series' TLS
# tests and upstream's https_server_test, and plays the tls-probe against
# hello.cc linked to it. Without ../shared/pistache/ it says why and exits 0.
#
# Work goes to target/pistache-port/ci (reused between runs). About 3-4
# minutes on 2 cores from scratch (libcurl included): a release build
# without examples, docs or LTO, and only the two test programs it runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
archives=$(cd "$root/.." && pwd)/shared/pistache
out="$root/target/pistache-port/ci"
certs="$root/tests/certs"

if [ ! -f "$archives/pistache-a3185e0b.tar.gz" ]; then
    echo "pistache-port: $archives/pistache-a3185e0b.tar.gz not present; skipping the C++ port checks"
    exit 0
fi

# shellcheck source=debian-packages.sh
source "$here/debian-packages.sh"
install_debian_packages meson ninja-build pkg-config g++ libssl-dev rapidjson-dev libgtest-dev libgmock-dev cmake
mkdir -p "$out"

# libcurl >= 8.9 (the version that drops the connection without
# close_notify after a failed hostname check). Debian 12 ships 7.88 and has
# no backport, so build the curl sources vendored in the curl-sys crate
# (already in the cargo registry: the Rust test suite uses it) into a
# prefix, HTTP(S)-only, and point pkg-config at it.
if ! pkg-config --atleast-version=8.9 libcurl 2>/dev/null; then
    curl_prefix="$out/curl"
    if [ ! -f "$curl_prefix/lib/pkgconfig/libcurl.pc" ]; then
        src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/curl-sys-*/curl 2>/dev/null | sort -V | tail -1)
        if [ -z "$src" ]; then
            cargo fetch -q --manifest-path "$root/Cargo.toml"
            src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/curl-sys-*/curl | sort -V | tail -1)
        fi
        echo "==> building libcurl from $src"
        rm -rf "$out/curl-src" "$out/curl-build"
        cp -r "$src" "$out/curl-src" && chmod -R u+w "$out/curl-src"
        # curl-sys ships no docs/ folder, which curl's CMakeLists expects.
        mkdir -p "$out/curl-src/docs" && : >"$out/curl-src/docs/CMakeLists.txt"
        cmake -S "$out/curl-src" -B "$out/curl-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_INSTALL_PREFIX="$curl_prefix" -DCMAKE_INSTALL_LIBDIR=lib \
            -DBUILD_CURL_EXE=OFF -DBUILD_SHARED_LIBS=ON -DBUILD_STATIC_LIBS=OFF \
            -DBUILD_TESTING=OFF -DBUILD_LIBCURL_DOCS=OFF -DBUILD_MISC_DOCS=OFF \
            -DENABLE_CURL_MANUAL=OFF -DBUILD_EXAMPLES=OFF -DCURL_USE_OPENSSL=ON \
            -DHTTP_ONLY=ON -DCURL_USE_LIBPSL=OFF -DUSE_LIBIDN2=OFF -DCURL_USE_LIBSSH2=OFF \
            -DCURL_ZLIB=OFF -DCURL_BROTLI=OFF -DCURL_ZSTD=OFF -DUSE_NGHTTP2=OFF \
            -DCURL_DISABLE_LDAP=ON >"$out/curl-cmake.log" 2>&1
        ninja -C "$out/curl-build" -j2 install >"$out/curl-build.log" 2>&1
    fi
    export PKG_CONFIG_PATH="$curl_prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    curl_rpath="-Wl,-rpath,$curl_prefix/lib"
else
    curl_rpath=""
fi
echo "==> libcurl $(pkg-config --modversion libcurl)"

src="$out/pistache-a3185e0b"
stamp="$out/.patched"
if [ ! -f "$stamp" ] || find "$here/patches" -newer "$stamp" -name '*.patch' | grep -q .; then
    echo "==> unpacking a3185e0b and applying the series"
    rm -rf "$src" "$out/build"
    tar xzf "$archives/pistache-a3185e0b.tar.gz" -C "$out"
    for p in "$here"/patches/*.patch; do
        (cd "$src" && patch -p1 -s <"$p")
    done
    touch "$stamp"
fi
if [ ! -d "$out/build" ]; then
    meson setup "$out/build" "$src" --prefix="$out/inst" --libdir=lib \
        --buildtype=release --wrap-mode=nodownload -Db_lto=false \
        -DPISTACHE_USE_SSL=true -DPISTACHE_BUILD_TESTS=true \
        -DPISTACHE_BUILD_EXAMPLES=false -DPISTACHE_BUILD_DOCS=false \
        -DPISTACHE_USE_CONTENT_ENCODING_BROTLI=false \
        -DPISTACHE_USE_CONTENT_ENCODING_ZSTD=false \
        -DPISTACHE_USE_CONTENT_ENCODING_DEFLATE=false \
        ${curl_rpath:+-Dcpp_link_args=$curl_rpath} >"$out/setup.log" 2>&1
fi
echo "==> building libpistache + the TLS tests"
# Only the two test programs (they pull in libpistache), nothing else.
ninja -C "$out/build" -j2 tests/run_https_tls_hygiene_test tests/run_https_server_test \
    >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }

echo "==> C++ tests"
meson test -C "$out/build" --no-rebuild https_tls_hygiene_test https_server_test --print-errorlogs

echo "==> hello.cc + tls-probe"
g++ -std=c++17 -O2 -o "$out/hello" "$here/hello.cc" -I"$src/include" -I"$out/build/include" \
    -DPISTACHE_USE_SSL -L"$out/build/src" -lpistache \
    -Wl,--disable-new-dtags,-rpath,"$out/build/src" -pthread -lssl -lcrypto
# The debug probe: it shares the artifacts of the workspace's debug build
# (cargo test), where a release build would cost minutes; the probe is the
# client here, its speed does not matter.
probe="${TLS_PROBE:-$root/target/debug/tls-probe}"
[ -n "${TLS_PROBE:-}" ] || cargo build -q -p pistachio-tests --bin tls-probe
port=$((30000 + RANDOM % 20000))
"$out/hello" "$port" 2 "$certs/server-chain.pem" "$certs/server.key" >"$out/hello.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1
status=0
"$probe" "https://127.0.0.1:$port/" --ca "$certs/ca.pem" \
    --download-path /big | sed 's/^/    /' || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || echo "FAIL: the hello server died (exit $?)"
    exit 1
fi
[ "$status" -eq 0 ] || { echo "FAIL: tls-probe exit $status against HEAD + series"; exit 1; }
echo "    HEAD + series: every good request answered, server alive"
