#!/usr/bin/env python3
"""Turn an h2load.sh results directory into the markdown report.

usage: h2report.py RESULTS_DIR [Cargo.lock]

Reads RESULTS_DIR/results.csv (written by h2load.sh), the h2load outputs it
names and RESULTS_DIR/machine.txt; prints markdown on stdout.
"""

import csv
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
from benchlib import fmt, fmt_lat, med, print_environment, print_targets_and_problems, read_machine  # noqa: E402

ORDER = ["pistachio", "nginx", "hyper"]
PROTO_NAME = {"h2c": "h2c", "tls": "TLS (h2)"}


def order_key(name):
    return ORDER.index(name) if name in ORDER else len(ORDER)


def parse_h2load(path):
    text = open(path).read()
    out = {"seconds": None, "ok2xx": None, "rps": None, "failed": 0, "errored": 0,
           "non2xx": 0, "mean_us": None}
    m = re.search(r"^finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text, re.M)
    if m:
        out["seconds"] = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        out["rps"] = float(m.group(3))
    m = re.search(r"^requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored",
                  text, re.M)
    if m:
        out["failed"], out["errored"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m:
        out["ok2xx"] = int(m.group(1))
        out["non2xx"] = sum(int(x) for x in m.groups()[1:])
    m = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", text, re.M)
    if m:
        out["mean_us"] = float(m.group(1)) * {"us": 1.0, "ms": 1e3, "s": 1e6}[m.group(2)]
    return out


def main():
    rdir = sys.argv[1]
    lock = sys.argv[2] if len(sys.argv) > 2 else None
    machine = read_machine(rdir)
    tck = int(machine.get("clk_tck", "100"))

    load, idle = [], []
    for row in csv.reader(open(os.path.join(rdir, "results.csv"))):
        if not row:
            continue
        if row[0] == "h2":
            _, rnd, w, proto, m, c, server, ticks, path, hcpu, busy = row
            if not os.path.isabs(path):
                path = os.path.join(rdir, path)
            rec = dict(parse_h2load(path), round=int(rnd), workers=int(w), proto=proto,
                       streams=int(m), conns=int(c), server=server, ticks=int(ticks))
            ok = rec["ok2xx"]
            rec["cpu_us"] = (rec["ticks"] / tck * 1e6 / ok) if ok else None
            # CPU the machine spent outside the server and h2load, in cores
            rec["other"] = None
            if rec["seconds"]:
                rec["other"] = max(0.0, (int(busy) - rec["ticks"]) / tck - float(hcpu)) / rec["seconds"]
            load.append(rec)
        elif row[0] == "idle":
            _, proto, server, opened, failed, rss0, rss1 = row
            idle.append(dict(proto=proto, server=server, opened=int(opened), failed=int(failed),
                             rss0=int(rss0), rss1=int(rss1)))

    p = print
    print_environment(machine, "h2load", lock, ["hyper", "hyper-util", "h2", "tokio", "tokio-openssl", "openssl"],
                      "bash tests/bench/h2load.sh")

    verdicts, problems = [], []
    for rec in load:
        if rec["failed"] or rec["errored"] or rec["non2xx"] or not rec["ok2xx"]:
            problems.append("%s round %d, %d workers, %s -m %d: %s failed, %s errored, %s non-2xx, %s 2xx"
                            % (rec["server"], rec["round"], rec["workers"], rec["proto"], rec["streams"],
                               rec["failed"], rec["errored"], rec["non2xx"], rec["ok2xx"]))

    if load:
        p("## HTTP/2 hello world (h2load -t1, medians over rounds)\n")
        p("CPU/req is the server's CPU time (utime+stime of all its threads and "
          "processes) over the h2load run divided by the 2xx responses h2load "
          "counted. ÷ nginx and ÷ hyper are the medians of the per-round ratios of "
          "pistachio's CPU/req to that server's in the same round (below 1: "
          "pistachio is cheaper); the per-round ratios follow. *other load* is the "
          "CPU the machine spent outside the server and h2load, in cores (near 0: "
          "a quiet run).\n")
        p("| workers | proto | streams × conns | server | req/s | mean latency | CPU µs/req "
          "| pistachio ÷ nginx | per-round | pistachio ÷ hyper | per-round | other load |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|")
        configs = sorted({(r["workers"], r["proto"], r["streams"], r["conns"]) for r in load},
                         key=lambda c: (c[0], c[1] != "h2c", c[2]))
        for w, proto, m, c in configs:
            recs = [r for r in load if (r["workers"], r["proto"], r["streams"], r["conns"]) == (w, proto, m, c)]
            by = {}
            for r in recs:
                by.setdefault(r["server"], {})[r["round"]] = r
            pist = by.get("pistachio", {})

            def ratios(peer):
                peer_rounds = by.get(peer, {})
                out = []
                for rnd in sorted(pist):
                    a = pist[rnd]["cpu_us"]
                    b = peer_rounds.get(rnd, {}).get("cpu_us")
                    out.append(a / b if a and b else None)
                return out

            to_nginx, to_hyper = ratios("nginx"), ratios("hyper")
            for server in sorted(by, key=order_key):
                mine = [by[server][k] for k in sorted(by[server])]
                cells = ["—"] * 4
                if server == "pistachio":
                    cells = [fmt(med(to_nginx), ".3f"), " / ".join(fmt(x, ".2f") for x in to_nginx),
                             fmt(med(to_hyper), ".3f"), " / ".join(fmt(x, ".2f") for x in to_hyper)]
                p("| %d | %s | %d × %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    w, PROTO_NAME.get(proto, proto), m, c, server,
                    fmt(med([r["rps"] for r in mine]), ",.0f"),
                    fmt_lat(med([r["mean_us"] for r in mine])),
                    fmt(med([r["cpu_us"] for r in mine]), ".2f"),
                    *cells, fmt(med([r["other"] for r in mine]), ".2f")))
            for peer, rs in (("nginx", to_nginx), ("hyper", to_hyper)):
                r = med(rs)
                if r is not None:
                    verdicts.append(("%d worker(s), %s, -m %d: CPU/request < %s's"
                                     % (w, PROTO_NAME.get(proto, proto), m, peer),
                                     "%.3f × %s" % (r, peer), r < 1.0))
        p("")

    if idle:
        p("## Idle HTTP/2 connections (1 worker)\n")
        p("Server RSS (VmRSS, summed over nginx's master and workers) after a warm-up, "
          "then after N HTTP/2 connections that each sent the preface and SETTINGS, "
          "completed one request, acknowledged the server's SETTINGS and stay open.\n")
        p("| proto | server | connections | RSS before | RSS after | KiB per connection |")
        p("|---|---|---|---|---|---|")
        per = {}
        for rec in sorted(idle, key=lambda r: (r["proto"] != "h2c", order_key(r["server"]))):
            x = (rec["rss1"] - rec["rss0"]) / rec["opened"] if rec["opened"] else None
            per[(rec["proto"], rec["server"])] = x
            note = "" if not rec["failed"] else " (%d failed)" % rec["failed"]
            p("| %s | %s | %d%s | %.1f MiB | %.1f MiB | %s |" % (
                PROTO_NAME.get(rec["proto"], rec["proto"]), rec["server"], rec["opened"], note,
                rec["rss0"] / 1024, rec["rss1"] / 1024, fmt(x, ".2f")))
        for proto in sorted({r["proto"] for r in idle}, key=lambda x: x != "h2c"):
            mine, ng = per.get((proto, "pistachio")), per.get((proto, "nginx"))
            if mine is not None and ng is not None:
                verdicts.append(("idle %s connection ≤ nginx's" % PROTO_NAME.get(proto, proto),
                                 "%.2f KiB vs %.2f KiB" % (mine, ng), mine <= ng))
        p("")

    print_targets_and_problems(verdicts, problems, "h2load")

if __name__ == "__main__":
    main()
