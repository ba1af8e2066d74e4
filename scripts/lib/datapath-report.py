"""Summary of a data-path benchmark run (scripts/lib/datapath.sh): per path the
median and spread over the rounds, ratios of medians against the baselines
present (Docker's DNAT and docker-proxy, or the VM tier's replicas of them),
and the levers, each as a ratio of two paths that differ in that one thing.

Usage: datapath-report.py T SECS ROUNDS NCPU  ($T/header.txt: lines to print first)
"""
import json
import math
import os
import re
import statistics
import sys

T, secs, rounds, ncpu = sys.argv[1:5]
done = [l.split() for l in open(f"{T}/results.txt") if l.strip()]
res = {}
for p, r in done:
    i1 = json.load(open(f"{T}/{p}.{r}.i1.json"))["end"]["sum_received"]["bits_per_second"] / 1e9
    i8 = json.load(open(f"{T}/{p}.{r}.i8.json"))["end"]["sum_received"]["bits_per_second"] / 1e9
    bulk_only = not os.path.exists(f"{T}/{p}.{r}.wrk")
    w = "" if bulk_only else open(f"{T}/{p}.{r}.wrk").read()
    m = None if bulk_only else re.search(r"Requests/sec:\s+([\d.]+)", w)
    rps = float(m.group(1)) if m else math.nan
    s = "" if bulk_only else open(f"{T}/{p}.{r}.sp").read()

    def pct(q):
        m = re.search(r"percentile %s\s*=\s*([\d.]+)" % re.escape(q), s)
        return float(m.group(1)) if m else float("nan")

    d = res.setdefault(p, {k: [] for k in ("i1", "i8", "cps", "p50", "p99")})
    for k, v in (("i1", i1), ("i8", i8), ("cps", rps), ("p50", pct("50.000")), ("p99", pct("99.000"))):
        d[k].append(v)
    errs = re.search(r"Socket errors: (.*)", w)
    if errs:
        d.setdefault("notes", []).append(f"round {r} wrk socket errors: {errs.group(1)}")
med = {p: {k: statistics.median(v) for k, v in d.items() if k != "notes"} for p, d in res.items()}
print(f"{rounds} interleaved rounds, {secs} s per measurement, {ncpu} CPUs; median (min-max) over the rounds")
if os.path.exists(f"{T}/header.txt"):
    print(open(f"{T}/header.txt").read().rstrip())
cols = [("i1", "1 stream Gb/s", "{:.2f}"), ("i8", "8 streams Gb/s", "{:.2f}"), ("cps", "new conn/s", "{:.0f}"),
        ("p50", "p50 RTT us", "{:.1f}"), ("p99", "p99 RTT us", "{:.1f}")]


def cell(p, k, f):
    v = res[p][k]
    if any(math.isnan(x) for x in v):
        return "-"
    return f"{f.format(med[p][k])} ({f.format(min(v))}-{f.format(max(v))})"


print("| path | " + " | ".join(c[1] for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
KNOWN = ("bridge", "bridge-ct", "bridge-gro", "bridge-tc", "bridge-tcr", "bridge-v6", "bridge-ct-v6", "macvlan", "ipvlan-l2", "ipvlan-l3",
         "ovs", "docker-dnat", "dnat", "docker-proxy", "proxy", "nd-bridge", "nd-bridge-mq")
order = [p for p in KNOWN if p in res] + sorted(p for p in res if p not in KNOWN)
for p in order:
    print(f"| {p} | " + " | ".join(cell(p, k, f) for k, _, f in cols) + " |")


def ratio(a, b, k, inv=False):
    if a not in med or b not in med or not med[a][k] or not med[b][k] or math.isnan(med[a][k] + med[b][k]):
        return "  -  "
    x = med[b][k] / med[a][k] if inv else med[a][k] / med[b][k]
    return f"{x:5.2f}"


for base in ("docker-dnat", "dnat", "docker-proxy", "proxy"):
    if base not in med:
        continue
    print(f"\nratios of medians against {base} (latency: {base}'s / the path's, so > 1 is better)")
    print(f"{'path':14} {'1 stream':>9} {'8 streams':>9} {'conn/s':>9} {'p50':>9} {'p99':>9}")
    for p in order:
        if p == base or p.endswith("-v6"):
            continue
        print(f"{p:14} {ratio(p, base, 'i1'):>9} {ratio(p, base, 'i8'):>9} {ratio(p, base, 'cps'):>9}"
              f" {ratio(p, base, 'p50', True):>9} {ratio(p, base, 'p99', True):>9}")
levers = [(n, a, b) for n, a, b in (
    ("conntrack skipped (bridge / bridge-ct)", "bridge", "bridge-ct"),
    ("IPv6 conntrack skipped (bridge-v6 / bridge-ct-v6)", "bridge-v6", "bridge-ct-v6"),
    ("GRO on veths (bridge-gro / bridge)", "bridge-gro", "bridge"),
    ("tc redirect past the bridge (bridge-tc / bridge)", "bridge-tc", "bridge"),
    ("pipework's --tc-redirect (bridge-tcr / bridge)", "bridge-tcr", "bridge"),
    ("multi-queue veth (nd-bridge-mq / nd-bridge)", "nd-bridge-mq", "nd-bridge"),
    ("no bridge-nf at all (nd-bridge / bridge)", "nd-bridge", "bridge"),
    ("no bridge at all (ipvlan-l2 / bridge)", "ipvlan-l2", "bridge"),
) if a in med and b in med]
if levers:
    print("\nlevers, each on its own (ratio of medians; > 1 is a gain)")
for name, a, b in levers:
    print(f"  {name:50} 1 stream {ratio(a, b, 'i1')}  8 streams {ratio(a, b, 'i8')}  conn/s {ratio(a, b, 'cps')}"
          f"  p99 {ratio(a, b, 'p99', True)}")
for p in order:
    for n in res[p].get("notes", []):
        print(f"note: {p}: {n}")
