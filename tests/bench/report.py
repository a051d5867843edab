#!/usr/bin/env python3
"""Turn a run.sh results directory into the markdown report.

usage: report.py RESULTS_DIR [Cargo.lock]

Reads RESULTS_DIR/results.csv (written by run.sh), the wrk outputs it names
and RESULTS_DIR/machine.txt; prints markdown on stdout.
"""

import csv
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
from benchlib import fmt, fmt_lat, med, print_environment, print_targets_and_problems, read_machine  # noqa: E402

UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}
ORDER = ["pistachio", "pistachio_writer", "pistachio_rp", "hyper", "actix", "nginx", "ceiling", "floor"]


def parse_wrk(path):
    text = open(path).read()
    out = {"seconds": None, "requests": None, "rps": None, "p50": None, "p99": None, "errors": 0, "non2xx": 0}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = float(m.group(2)) * UNITS_US[m.group(3)] / 1e6
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+([\d.]+)(us|ms|s|m)\s*$" % pct, text, re.M)
        if m:
            out["p" + pct] = float(m.group(1)) * UNITS_US[m.group(2)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    return out


def order_key(name):
    return ORDER.index(name) if name in ORDER else len(ORDER)


def main():
    rdir = sys.argv[1]
    lock = sys.argv[2] if len(sys.argv) > 2 else None
    machine = read_machine(rdir)
    tck = int(machine.get("clk_tck", "100"))

    load, idle, hs, growth, pipe = [], [], [], [], []
    lists = {"load": load, "hs": hs, "growth": growth, "pipe": pipe}
    for row in csv.reader(open(os.path.join(rdir, "results.csv"))):
        if not row:
            continue
        if row[0] in lists:
            kind, rnd, w, proto, server, ticks, path = row[:7]
            wrk_cpu = float(row[7]) if len(row) > 7 else None
            busy = int(row[8]) if len(row) > 8 else None
            if not os.path.isabs(path):
                path = os.path.join(rdir, path)
            rec = dict(parse_wrk(path), round=int(rnd), workers=int(w), proto=proto,
                       server=server, ticks=int(ticks))
            reqs = rec["requests"]
            rec["cpu_us"] = (rec["ticks"] / tck * 1e6 / reqs) if reqs else None
            # CPU used by everything but this server and wrk, in cores: a
            # sign of other load on the machine during the run.
            rec["other"] = None
            if busy is not None and wrk_cpu is not None and rec["seconds"]:
                rec["other"] = max(0.0, (busy - rec["ticks"]) / tck - wrk_cpu) / rec["seconds"]
            lists[kind].append(rec)
        elif row[0] == "idle":
            _, proto, server, opened, failed, rss0, rss1 = row
            idle.append(dict(proto=proto, server=server, opened=int(opened), failed=int(failed),
                             rss0=int(rss0), rss1=int(rss1)))

    p = print
    print_environment(machine, "wrk", lock, ["hyper", "hyper-util", "tokio", "tokio-openssl", "openssl",
                                             "actix-web", "actix-http", "actix-server"],
                      "bash tests/bench/run.sh")
    p("*other load* is the CPU the machine spent, during a run, outside the server "
      "under test and wrk (kernel threads, other programs), in cores; near 0 means a quiet run.\n")

    problems = []
    for rec in load + hs + growth + pipe:
        if rec["errors"] or rec["non2xx"] or not rec["requests"]:
            problems.append("%s round %d, %d workers, %s: %s socket errors, %s non-2xx, %s requests"
                            % (rec["server"], rec["round"], rec["workers"], rec["proto"],
                               rec["errors"], rec["non2xx"], rec["requests"]))

    verdicts = []
    if load:
        p("## Keep-alive hello world (wrk -t1 -c64, medians over rounds)\n")
        p("CPU/req is server CPU time (utime+stime of all its threads and processes) "
          "over the run divided by the requests wrk completed; the ratio is to hyper's "
          "CPU/req in the same round and configuration (median of the per-round ratios; "
          "below 1 is better than hyper). The ceiling is a canned-response epoll loop "
          "that parses nothing (tests/bench/src/bin/ceiling.rs): the machine's limit for "
          "this request shape; ÷ ceiling is the median of per-round ratios to it. The floor "
          "is the same loop parsing each head with httparse and writing a Date and "
          "Content-Length head (ceiling --parse): what parsing and a correct head cost "
          "alone, with no request value, handler or router.\n")
        p("| workers | proto | server | req/s | p50 | p99 | CPU µs/req | CPU/req ÷ hyper | per-round ratios | CPU/req ÷ ceiling | per-round ratios | other load |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|")
        configs = sorted({(r["workers"], r["proto"]) for r in load}, key=lambda c: (c[0], c[1] != "http"))
        for w, proto in configs:
            recs = [r for r in load if r["workers"] == w and r["proto"] == proto]
            hyper = {r["round"]: r["cpu_us"] for r in recs if r["server"] == "hyper"}
            ceiling = {r["round"]: r["cpu_us"] for r in recs if r["server"] == "ceiling"}
            for server in sorted({r["server"] for r in recs}, key=order_key):
                mine = sorted((r for r in recs if r["server"] == server), key=lambda r: r["round"])
                ratios = [r["cpu_us"] / hyper[r["round"]] if hyper.get(r["round"]) and r["cpu_us"] else None
                          for r in mine]
                ratio = med(ratios)
                to_ceiling = [r["cpu_us"] / ceiling[r["round"]] if ceiling.get(r["round"]) and r["cpu_us"] else None
                              for r in mine]
                ratio_ceiling = med(to_ceiling)
                p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    w, proto, server,
                    fmt(med([r["rps"] for r in mine]), ",.0f"),
                    fmt_lat(med([r["p50"] for r in mine])),
                    fmt_lat(med([r["p99"] for r in mine])),
                    fmt(med([r["cpu_us"] for r in mine]), ".2f"),
                    fmt(ratio, ".3f"),
                    " / ".join(fmt(x, ".3f") for x in ratios),
                    fmt(ratio_ceiling, ".3f"),
                    " / ".join(fmt(x, ".3f") for x in to_ceiling),
                    fmt(med([r["other"] for r in mine]), ".2f")))
                if server == "pistachio" and w == 1 and ratio is not None:
                    verdicts.append(("1-worker keep-alive CPU/request over %s ≤ 0.95 × hyper" % proto.upper(),
                                     "%.3f × hyper" % ratio, ratio <= 0.95))
                if server in ("pistachio", "pistachio_writer") and ratio_ceiling is not None:
                    how = ("answers returned" if server == "pistachio"
                           else "answers through the writer")
                    verdicts.append(("%d-worker keep-alive CPU/request over %s ≤ 1.05 × ceiling (%s)"
                                     % (w, proto.upper(), how),
                                     "%.3f × ceiling" % ratio_ceiling, ratio_ceiling <= 1.05))
        p("")

    if idle:
        p("## Idle keep-alive connections (1 worker)\n")
        p("Server RSS (VmRSS, summed over nginx's master and workers) after a warm-up, "
          "then after N connections that each made one request and stay open.\n")
        p("| proto | server | connections | RSS before | RSS after | KiB per connection |")
        p("|---|---|---|---|---|---|")
        for rec in sorted(idle, key=lambda r: (r["proto"] != "http", order_key(r["server"]))):
            per = (rec["rss1"] - rec["rss0"]) / rec["opened"] if rec["opened"] else None
            note = "" if not rec["failed"] else " (%d failed)" % rec["failed"]
            p("| %s | %s | %d%s | %.1f MiB | %.1f MiB | %s |" % (
                rec["proto"], rec["server"], rec["opened"], note, rec["rss0"] / 1024,
                rec["rss1"] / 1024, fmt(per, ".2f")))
            if rec["server"] == "pistachio" and per is not None:
                limit = 1.0 if rec["proto"] == "http" else 15.0
                verdicts.append(("idle %s connection ≤ %g KiB" % (rec["proto"].upper(), limit),
                                 "%.2f KiB" % per, per <= limit))
        p("")

    if growth:
        p("## Growth: 1 worker over HTTP, by keep-alive connections (medians over rounds)\n")
        p("wrk -t1 -cN: CPU/req and p99 as the number of connections grows; "
          "÷ ceiling is the median of per-round ratios to the ceiling's CPU/req "
          "at the same N (with epoll the cost should stay flat).\n")
        p("| connections | server | req/s | p50 | p99 | CPU µs/req | CPU/req ÷ ceiling | per-round ratios | other load |")
        p("|---|---|---|---|---|---|---|---|---|")
        for n in sorted({r["workers"] for r in growth}):
            recs = [r for r in growth if r["workers"] == n]
            ceiling = {r["round"]: r["cpu_us"] for r in recs if r["server"] == "ceiling"}
            for server in sorted({r["server"] for r in recs}, key=order_key):
                mine = sorted((r for r in recs if r["server"] == server), key=lambda r: r["round"])
                ratios = [r["cpu_us"] / ceiling[r["round"]] if ceiling.get(r["round"]) and r["cpu_us"] else None
                          for r in mine]
                p("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    n, server, fmt(med([r["rps"] for r in mine]), ",.0f"),
                    fmt_lat(med([r["p50"] for r in mine])), fmt_lat(med([r["p99"] for r in mine])),
                    fmt(med([r["cpu_us"] for r in mine]), ".2f"), fmt(med(ratios), ".3f"),
                    " / ".join(fmt(x, ".3f") for x in ratios),
                    fmt(med([r["other"] for r in mine]), ".2f")))
        p("")

    if pipe:
        depth = re.search(r"pipe_depth=(\d+)", machine.get("settings", ""))
        p("## Pipelined requests (1 worker, depth %s, wrk -t1 -c64, medians over rounds)\n"
          % (depth.group(1) if depth else "?"))
        p("| proto | server | req/s | p50 (batch) | p99 (batch) | CPU µs/req | CPU/req ÷ nginx | per-round ratios | other load |")
        p("|---|---|---|---|---|---|---|---|---|")
        for proto in sorted({r["proto"] for r in pipe}, key=lambda x: x != "http"):
            recs = [r for r in pipe if r["proto"] == proto]
            ng = {r["round"]: r["cpu_us"] for r in recs if r["server"] == "nginx"}
            for server in sorted({r["server"] for r in recs}, key=order_key):
                mine = sorted((r for r in recs if r["server"] == server), key=lambda r: r["round"])
                ratios = [r["cpu_us"] / ng[r["round"]] if ng.get(r["round"]) and r["cpu_us"] else None
                          for r in mine]
                p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    proto, server, fmt(med([r["rps"] for r in mine]), ",.0f"),
                    fmt_lat(med([r["p50"] for r in mine])), fmt_lat(med([r["p99"] for r in mine])),
                    fmt(med([r["cpu_us"] for r in mine]), ".2f"), fmt(med(ratios), ".3f"),
                    " / ".join(fmt(x, ".3f") for x in ratios),
                    fmt(med([r["other"] for r in mine]), ".2f")))
        p("")

    if hs:
        p("## New TLS connections (one request per connection, `Connection: close`)\n")
        p("conn/s ÷ nginx is the handshake target; CPU/conn ÷ nginx (server CPU per "
          "connection, below 1 is better) separates the servers better when wrk and the "
          "server share 2 cores.\n")
        p("| workers | server | conn/s | p50 | p99 | CPU µs/conn | conn/s ÷ nginx | per-round ratios | CPU/conn ÷ nginx | other load |")
        p("|---|---|---|---|---|---|---|---|---|---|")
        for w in sorted({r["workers"] for r in hs}):
            recs = [r for r in hs if r["workers"] == w]
            ng = {r["round"]: r["rps"] for r in recs if r["server"] == "nginx"}
            ngcpu = {r["round"]: r["cpu_us"] for r in recs if r["server"] == "nginx"}
            for server in sorted({r["server"] for r in recs}, key=order_key):
                mine = sorted((r for r in recs if r["server"] == server), key=lambda r: r["round"])
                ratios = [r["rps"] / ng[r["round"]] if ng.get(r["round"]) and r["rps"] else None for r in mine]
                ratio = med(ratios)
                cpu_ratio = med([r["cpu_us"] / ngcpu[r["round"]] if ngcpu.get(r["round"]) and r["cpu_us"]
                                 else None for r in mine])
                p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    w, server, fmt(med([r["rps"] for r in mine]), ",.0f"),
                    fmt_lat(med([r["p50"] for r in mine])), fmt_lat(med([r["p99"] for r in mine])),
                    fmt(med([r["cpu_us"] for r in mine]), ".1f"), fmt(ratio, ".3f"),
                    " / ".join(fmt(x, ".3f") for x in ratios), fmt(cpu_ratio, ".3f"),
                    fmt(med([r["other"] for r in mine]), ".2f")))
                if server in ("pistachio", "pistachio_rp") and ratio is not None:
                    mode = ("accept thread" if server == "pistachio"
                            else "per-worker listeners")
                    verdicts.append(("new TLS connections/s with %d worker(s) ≥ nginx's (%s)"
                                     % (w, mode), "%.3f × nginx" % ratio, ratio >= 1.0))
        p("")

    print_targets_and_problems(verdicts, problems, "wrk")

if __name__ == "__main__":
    main()
