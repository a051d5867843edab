#!/usr/bin/env python3
"""Open N keep-alive connections to a loopback server, one request each, and
hold them idle, so that run.sh can read the server's RSS growth per idle
connection.

usage: idle_conns.py --port P [--tls] [--n N] [--ready FILE] [--hold SECS]

Connections are opened one after another (bounded by --n, each step bounded
by a socket timeout); each sends `GET / HTTP/1.1` and reads the whole
response (head + Content-Length body), then stays open. When all are open,
the count is written to --ready, the connections are held for --hold seconds
(or until the process is terminated) and closed. Only 127.0.0.1 is ever
contacted.
"""

import argparse
import os
import signal
import socket
import ssl
import sys
import time

HOST = "127.0.0.1"  # fixed: this client talks to loopback only
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle_conns\r\n\r\n"


def read_response(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 200"):
        raise ConnectionError("unexpected status: %r" % lines[0])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ConnectionError("no Content-Length")
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--ready", help="file to write the open count to once all are open")
    ap.add_argument("--hold", type=float, default=120.0)
    ap.add_argument("--timeout", type=float, default=10.0, help="per-step socket timeout")
    args = ap.parse_args()
    if not 0 < args.n <= 100_000:
        sys.exit("--n must be in 1..100000")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    ctx = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3

    conns = []
    failures = 0
    started = time.monotonic()
    try:
        for _ in range(args.n):
            try:
                raw = socket.create_connection((HOST, args.port), timeout=args.timeout)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
                sock.sendall(REQUEST)
                read_response(sock)
                conns.append(sock)
            except (OSError, ConnectionError) as e:
                failures += 1
                if failures == 1:
                    print("idle_conns: first failure: %s" % e, file=sys.stderr)
                if failures > max(10, args.n // 100):
                    print("idle_conns: too many failures, stopping", file=sys.stderr)
                    break
        took = time.monotonic() - started
        print("idle_conns: %d open, %d failed, %.1fs" % (len(conns), failures, took), file=sys.stderr)
        if args.ready:
            with open(args.ready + ".tmp", "w") as f:
                f.write("%d %d\n" % (len(conns), failures))
            # rename so the reader never sees a half-written file
            os.replace(args.ready + ".tmp", args.ready)
        time.sleep(max(0.0, args.hold))
    finally:
        for s in conns:
            try:
                s.close()
            except OSError:
                pass


if __name__ == "__main__":
    main()
