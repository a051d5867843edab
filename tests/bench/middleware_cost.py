#!/usr/bin/env python3
"""What one middleware costs per request, side by side in one run.

    python3 tests/bench/middleware_cost.py [--rounds N] [--duration S] [--callgrind]

Starts `hello_server --threads 1` twice on loopback: without middleware and
with `--trivial-middleware` (one middleware whose `on_complete` counts 2xx
answers, declaring `Hooks::ON_COMPLETE`). Both answer through the
`ResponseWriter` (`--writer`; behind middleware the writer is used anyway),
so that the difference is the middleware's. Each round loads one server, then
the other (the order alternates from round to round), with `wrk -t1 -c16`,
and reads the loaded server's CPU time (user + system, every thread, from
/proc/PID/task/*/schedstat, in nanoseconds) before and after. Prints every
round's CPU per request and ratio, then the median ratio. Run it on a quiet
machine.

`--side-by-side` loads both servers at once instead, so that other load
weighs on both alike; but then the two compete for the same cores, how many
requests each wakeup finds differs between them, and that (not their code)
moves CPU per request by several percent: use it only to compare builds.

`--callgrind` also counts user-space instructions per keep-alive request under
valgrind (exact and repeatable whatever the machine does): 20 000 requests on
one connection, minus an idle run; for the answer returned from
`Handler::respond` (hello_server's default) too.

Needs wrk (Debian: wrk) and, for --callgrind, valgrind. Everything listens on
and connects to 127.0.0.1 only; every process started is stopped on exit.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "examples", "hello_server")


def build():
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "pistachio-rest", "--example", "hello_server"],
        cwd=ROOT,
        check=True,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server on port {port} did not listen within {timeout} s")


def start(port, flags, prefix=()):
    proc = subprocess.Popen(
        [*prefix, BIN, "--addr", f"127.0.0.1:{port}", "--threads", "1", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, proc)
    return proc


def cpu_ns(pid):
    """CPU time of every thread of `pid`, in nanoseconds."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def requests_of(wrk_output):
    m = re.search(r"(\d+) requests in", wrk_output)
    if not m:
        sys.exit(f"unexpected wrk output:\n{wrk_output}")
    return int(m.group(1))


def wall_rounds(rounds, duration, side_by_side=False):
    servers = {}
    try:
        for name, flags in (("plain", ["--writer"]), ("middleware", ["--trivial-middleware"])):
            port = free_port()
            servers[name] = (start(port, flags), port)
        # Warm up both.
        for _, port in servers.values():
            subprocess.run(["wrk", "-t1", "-c16", "-d1s", f"http://127.0.0.1:{port}/"],
                           capture_output=True, check=True)
        ratios = []
        print(f"{'round':>5} {'plain ns/req':>13} {'middleware ns/req':>18} {'ratio':>7}")
        for r in range(1, rounds + 1):
            # One after the other, alternating which goes first; or both at once.
            order = list(servers) if r % 2 else list(servers)[::-1]
            groups = [order] if side_by_side else [[n] for n in order]
            per = {}
            for group in groups:
                before = {n: cpu_ns(servers[n][0].pid) for n in group}
                loads = {
                    n: subprocess.Popen(
                        ["wrk", "-t1", "-c16", f"-d{duration}s",
                         f"http://127.0.0.1:{servers[n][1]}/"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    for n in group
                }
                done = {n: requests_of(w.communicate()[0]) for n, w in loads.items()}
                for n in group:
                    per[n] = (cpu_ns(servers[n][0].pid) - before[n]) / done[n]
            ratio = per["middleware"] / per["plain"]
            ratios.append(ratio)
            print(f"{r:>5} {per['plain']:>13.1f} {per['middleware']:>18.1f} {ratio:>7.4f}")
        median = statistics.median(ratios)
        print(f"median ratio (middleware / plain CPU per request): {median:.4f} "
              f"({(median - 1) * 100:+.1f} %) over {rounds} rounds")
        return median
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()


def keep_alive_client(port, n):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for _ in range(n):
            s.sendall(req)
            buf = b""
            while not buf.endswith(b"Hello, World!"):
                d = s.recv(4096)
                if not d:
                    sys.exit("server closed the connection")
                buf += d


def callgrind_total(flags, n, tmp):
    port = free_port()
    out = os.path.join(tmp, f"cg.{port}.out")
    proc = start(port, flags, ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
    try:
        if n:
            keep_alive_client(port, n)
        time.sleep(0.5)
    finally:
        proc.send_signal(2)
        proc.wait()
    text = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True).stdout
    m = re.search(r"([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", text)
    return int(m.group(1).replace(",", ""))


def callgrind(n=20000):
    with tempfile.TemporaryDirectory() as tmp:
        per = {}
        for name, flags in (("returned", []), ("plain", ["--writer"]),
                            ("middleware", ["--trivial-middleware"])):
            busy = callgrind_total(flags, n, tmp)
            idle = callgrind_total(flags, 0, tmp)
            per[name] = (busy - idle) / n
        extra = per["middleware"] - per["plain"]
        print(f"callgrind user-space instructions per request: returned {per['returned']:.1f}, "
              f"plain (writer) {per['plain']:.1f}, middleware {per['middleware']:.1f} "
              f"({extra:+.1f}, {extra / per['plain'] * 100:+.1f} % over plain)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--duration", type=int, default=5, help="seconds per round")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--side-by-side", action="store_true",
                    help="load both servers at once (see the module doc)")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found (Debian: apt-get install wrk)")
    if not args.skip_build:
        build()
    wall_rounds(args.rounds, args.duration, args.side_by_side)
    if args.callgrind:
        if not shutil.which("valgrind"):
            sys.exit("valgrind not found (Debian: apt-get install valgrind)")
        callgrind()


if __name__ == "__main__":
    main()
