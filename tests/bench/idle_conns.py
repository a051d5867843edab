#!/usr/bin/env python3
"""Open N keep-alive connections to a loopback server, one request each, and
hold them idle, so that run.sh and h2load.sh can read the server's RSS growth
per idle connection.

usage: idle_conns.py --port P [--tls] [--h2] [--n N] [--ready FILE] [--hold SECS]

Connections are opened one after another (bounded by --n, each step bounded
by a socket timeout); each sends `GET / HTTP/1.1` and reads the whole
response (head + Content-Length body), then stays open. With --h2 each is an
HTTP/2 connection instead (with --tls: ALPN h2; without: h2c with prior
knowledge): the client preface and an empty SETTINGS, one `GET /` on stream
1, read until the response ends, the server's SETTINGS acknowledged (so that
no settings timeout ends the connection). When all are open,
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

# HTTP/2 (RFC 9113): frame types and flags used here.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, GOAWAY, RST_STREAM = 0x0, 0x1, 0x4, 0x7, 0x3
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
AUTHORITY = b"127.0.0.1"


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_request(tls):
    # HPACK (RFC 7541, appendix A static table): :method GET (2), :scheme
    # http (6) or https (7), :path / (4), indexed; :authority (1) as a
    # literal without indexing.
    block = bytes([0x82, 0x87 if tls else 0x86, 0x84, 0x01, len(AUTHORITY)]) + AUTHORITY
    return (H2_PREFACE + h2_frame(SETTINGS, 0, 0)
            + h2_frame(HEADERS, END_STREAM | END_HEADERS, 1, block))


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed inside a frame")
        buf += chunk
    return buf


def h2_exchange(sock, tls):
    """One request on stream 1; returns once its response has ended and the
    server's SETTINGS have been acknowledged."""
    sock.sendall(h2_request(tls))
    status_ok = False
    ended = False
    acked = False
    while not (ended and acked):
        head = recv_exact(sock, 9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = recv_exact(sock, length)
        if kind == SETTINGS and not flags & ACK:
            sock.sendall(h2_frame(SETTINGS, ACK, 0))
            acked = True
        elif kind == GOAWAY:
            raise ConnectionError("GOAWAY, error code %d" % int.from_bytes(payload[4:8], "big"))
        elif kind == RST_STREAM and stream == 1:
            raise ConnectionError("stream 1 reset")
        elif kind == HEADERS and stream == 1:
            block = payload
            if flags & PADDED:
                block = block[1:len(block) - block[0]]
            if flags & PRIORITY:
                block = block[5:]
            # :status 200 is entry 8 of the static table; the three servers
            # measured send it indexed
            if not status_ok:
                if not block or block[0] != 0x88:
                    raise ConnectionError("response head does not start with :status 200")
                status_ok = True
            ended = ended or bool(flags & END_STREAM)
        elif kind == DATA and stream == 1:
            ended = ended or bool(flags & END_STREAM)
    if not status_ok:
        raise ConnectionError("no response head")


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
    ap.add_argument("--h2", action="store_true", help="HTTP/2 (ALPN h2 with --tls, else h2c)")
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
        if args.h2:
            ctx.set_alpn_protocols(["h2"])

    conns = []
    failures = 0
    started = time.monotonic()
    try:
        for _ in range(args.n):
            try:
                raw = socket.create_connection((HOST, args.port), timeout=args.timeout)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
                if args.h2:
                    if ctx and sock.selected_alpn_protocol() != "h2":
                        raise ConnectionError("ALPN: %r, not h2" % sock.selected_alpn_protocol())
                    h2_exchange(sock, args.tls)
                else:
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
