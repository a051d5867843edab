"""Helpers shared by the benchmark reporters (report.py, h2report.py).

Not a script: report.py and h2report.py import it from their own directory.
"""

import os
import re
import statistics


def med(xs):
    """Median of the values that are not None; None if there are none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def fmt_lat(us):
    if us is None:
        return "—"
    return "%.0f µs" % us if us < 1000 else "%.2f ms" % (us / 1000)


def lock_versions(lock_path, names):
    versions = {}
    if not lock_path or not os.path.exists(lock_path):
        return versions
    name = None
    for line in open(lock_path):
        m = re.match(r'name = "(.*)"', line)
        if m:
            name = m.group(1)
        m = re.match(r'version = "(.*)"', line)
        if m and name in names:
            versions.setdefault(name, []).append(m.group(1))
    return versions


def read_machine(rdir):
    """RESULTS_DIR/machine.txt as a dict of its key=value lines."""
    machine = {}
    for line in open(os.path.join(rdir, "machine.txt")):
        k, _, v = line.rstrip("\n").partition("=")
        machine[k] = v
    return machine


def print_environment(machine, tool, lock, crates, command):
    """The environment table; TOOL is the load generator's machine.txt key
    (also its label), CRATES the peer crates whose Cargo.lock versions are
    listed, COMMAND the command shown when machine.txt names none."""
    p = print
    p("## Environment\n")
    p("| | |\n|---|---|")
    for k, label in [("cpu", "CPU"), ("nproc", "cores (nproc)"), ("kernel", "kernel"),
                     ("openssl", "OpenSSL"), ("rustc", "rustc"), ("nginx", "nginx"),
                     (tool, tool), ("python", "idle client"), ("date", "date (UTC)"),
                     ("settings", "settings"), ("elapsed", "run time")]:
        if k in machine:
            p("| %s | %s |" % (label, machine[k]))
    vers = lock_versions(lock, set(crates))
    if vers:
        p("| peer crates | %s |" % ", ".join("%s %s" % (c, "/".join(vers[c])) for c in crates if c in vers))
    if "tree" in machine:
        p("| pistachio tree | %s |" % machine["tree"])
    p("\nCommand: `%s`\n" % machine.get("command", command))


def print_targets_and_problems(verdicts, problems, tool):
    """The targets table (what, measured, met) and the errors TOOL saw."""
    p = print
    if verdicts:
        p("## Targets\n")
        p("| target | measured | met |")
        p("|---|---|---|")
        for what, measured, ok in verdicts:
            p("| %s | %s | %s |" % (what, measured, "yes" if ok else "**no**"))
        p("")
    if problems:
        p("## Errors seen by %s\n" % tool)
        for line in problems:
            p("- " + line)
        p("")
