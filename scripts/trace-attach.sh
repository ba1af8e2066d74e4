#!/usr/bin/env bash
# Where one attach spends its time: uprobes on pipework's own functions plus
# a few scheduler and syscall tracepoints, recorded with `perf record` over
# N attaches (bridge + veth + /16 + gateway into a named namespace, as in
# scripts/bench-attach.sh), reported as the median milliseconds per phase.
# Only the listed events are traced, so the added cost is a few µs per hit,
# not strace's cost on every system call.
#
# The probes need symbols: BIN defaults to the static build of
# scripts/build-static.sh with strip = false (cargo's `profiling` profile,
# otherwise the release settings). Phases whose function was inlined away
# are folded into the next one.
#
# FIRST_ON_BRIDGE=1 removes pipework's firewall marker before each run, so
# every attach is the bridge's first on a Docker host (the iptables path).
#
# Usage: scripts/trace-attach.sh [runs]   (root, linux-perf, tracefs)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
if [ -z "${BIN:-}" ]; then
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --profile profiling -q --target x86_64-unknown-linux-gnu
  BIN=$PWD/target/x86_64-unknown-linux-gnu/profiling/pipework
fi
command -v perf >/dev/null || { echo "trace-attach: perf missing (apt-get install linux-perf)" >&2; exit 1; }
TR=/sys/kernel/tracing
[ -w "$TR/uprobe_events" ] || mount -t tracefs nodev "$TR" 2>/dev/null || true
[ -w "$TR/uprobe_events" ] || { echo "trace-attach: no tracefs with uprobes at $TR" >&2; exit 1; }
# shellcheck disable=SC1091
source /tmp/pw-env/env.sh 2>/dev/null || true

ID=$(printf '%x' $$)
X=pwb$ID
NS=${X}n
NSK=${X}k
BR=${X}b
G=pwb_trace_$ID          # our uprobe group; every probe of ours is in it
T=$(mktemp -d)
cleanup() {
  set +e
  "$BIN" detach "netns:$NS" >/dev/null 2>&1
  "$BIN" detach "netns:$NSK" >/dev/null 2>&1
  ip netns del "$NS" 2>/dev/null
  ip netns del "$NSK" 2>/dev/null
  ip link del "$BR" 2>/dev/null
  rm -f "/run/pipework/firewall/$BR"
  # Remove only our own probe definitions.
  grep -o "^[pr]:$G/[a-z0-9_]*" "$TR/uprobe_events" 2>/dev/null | sed 's/^[pr]:/-:/' |
    while read -r d; do echo "$d" >> "$TR/uprobe_events"; done
  rm -rf "$T"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "$NSK"
ip link add "$BR" type bridge && ip link set "$BR" up
"$BIN" "$BR" "netns:$NSK" -l "${X}r" 10.250.255.1/16 2>/dev/null

# --- probes: symbol -> file offset (through the PT_LOAD segments) ----------
python3 - "$BIN" "$G" > "$T/probes" <<'PY'
import re, subprocess, sys
binary, group = sys.argv[1], sys.argv[2]
segs = []
for l in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True).stdout.splitlines():
    f = l.split()
    if f and f[0] == "LOAD":
        segs.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))  # offset, vaddr, filesz
def offset(va):
    for off, v, sz in segs:
        if v <= va < v + sz:
            return va - v + off
    return None
# label, mangled-name pattern, also a return probe?
want = [
    ("main", r"^main$", False),
    ("cli_main", r"^_ZN8pipework3cli4main17h", False),
    ("privileged", r"^_ZN8pipework3cli10privileged17h", False),
    ("runtime", r"^_ZN8pipework3cli7runtime17h", True),
    ("resolve", r"^_ZN8pipework5guest7resolve17h", True),
    ("connect", r"^_ZN8pipework7netlink7connect17h", True),
    ("create_veth", r"^_ZN8pipework7netlink3ops3Net11create_veth", True),
    ("announce", r"^_ZN8pipework7address8announce5spawn17h", True),
    ("output", r"^_ZN8pipework3cli6output6attach17h", False),
]
syms = []
for l in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    f = l.split()
    if len(f) == 3 and f[1] in "tT":
        syms.append((f[2], int(f[0], 16)))
for label, pat, ret in want:
    rx = re.compile(pat)
    seen = set()
    for name, va in syms:
        if rx.search(name) and va not in seen:
            seen.add(va)
            off = offset(va)
            if off is None:
                continue
            n = f"{label}_{len(seen)}"
            print(f"p:{group}/{n} {binary}:{off:#x}")
            if ret:
                print(f"r:{group}/{n}_ret {binary}:{off:#x}")
PY
[ -s "$T/probes" ] || { echo "trace-attach: no symbols in $BIN (stripped?)" >&2; exit 1; }
while read -r p; do echo "$p" >> "$TR/uprobe_events"; done < "$T/probes"

# Two passes, interleaved run by run: "probed" with the uprobes (phase
# boundaries inside pipework), "plain" with tracepoints only. A uprobe'd
# text is slower to fork (the child's copy gets the breakpoints too) and
# each hit costs a trap, so forks, threads and the total come from "plain".
TP="-e sched:sched_process_exec -e sched:sched_process_fork -e sched:sched_process_exit
  -e syscalls:sys_enter_exit_group -e syscalls:sys_enter_sendto -e syscalls:sys_enter_sendmsg
  -e syscalls:sys_enter_execve -e syscalls:sys_exit_wait4 -e syscalls:sys_enter_clone3"
for i in $(seq 1 "$RUNS"); do
  for pass in probed plain; do
    "$BIN" detach "netns:$NS" >/dev/null 2>&1 || true
    [ -n "${FIRST_ON_BRIDGE:-}" ] && rm -f "/run/pipework/firewall/$BR"
    ev=$TP
    [ "$pass" = probed ] && ev="-e $G:* $TP"
    # shellcheck disable=SC2086
    perf record -q -o "$T/$pass$i.data" $ev -- \
      "$BIN" "$BR" "netns:$NS" -l "${X}h" 10.250.0.2/16@10.250.0.1 >/dev/null 2>"$T/err"
    perf script -i "$T/$pass$i.data" -F comm,pid,tid,time,event > "$T/$pass$i.txt" 2>/dev/null
  done
done

python3 - "$T" "$RUNS" <<'PY'
import re, statistics, sys
T, runs = sys.argv[1], int(sys.argv[2])
line = re.compile(r"^\s*(\S+)\s+(\d+)/(\d+)\s+([\d.]+):\s+([^:]+:[^:\s]+):")

def events(path):
    """(comm, pid, tid, seconds, event) of the traced pipework and its children."""
    out, main = [], None
    for l in open(path):
        m = line.match(l)
        if not m:
            continue
        e = (m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5))
        if main is None:
            if e[4] == "sched:sched_process_exec" and e[0] != "perf-exec":
                main = e[1]
            else:
                continue
        out.append(e)
    return out, main

# Phases in program order: (name, the uprobe that ends it). The first hit
# counts, the last one for NAME$ (an async fn's poll function returns once
# per poll); a phase whose end was not seen (inlined) folds into the next.
order = [
    ("exec to main: kernel exec, static-pie start, libc init", "main"),
    ("Rust std start", "cli_main"),
    ("clap + classic grammar + request", "privileged"),
    ("capability check + tokio runtime", "runtime_ret"),
    ("guest resolution (open the namespace)", "resolve_ret"),
    ("host netlink socket", "connect_ret#1"),
    ("namespace netlink socket (thread + setns)", "connect_ret#2"),
    ("link lookups, driver select, firewall marker", "create_veth"),
    ("create veth (RTM_NEWLINK, peer in the netns)", "create_veth_ret$"),
    ("alias + up + address + route (netlink)", "announce"),
    ("announcer fork (GARP grandchild)", "announce_ret"),
    ("report output", "output"),
    ("to exit_group", "exit_group"),
    ("exit", "exit"),
]
probed = {n: [] for n, _ in order}
plain = {"total": [], "thread": [], "fork": [], "helpers": [], "execve": [], "sends": []}
totals_probed = []
for i in range(1, runs + 1):
    ev, main = events(f"{T}/probed{i}.txt")
    if main is None:
        continue
    at = {"exec": ev[0][3]}
    for comm, pid, tid, t, e in ev:
        kind = e.split(":")[1]
        if pid != main:
            continue
        if kind == "sys_enter_exit_group":
            at.setdefault("exit_group", t)
        elif e == "sched:sched_process_exit" and tid == pid:
            at.setdefault("exit", t)
        elif e.startswith("pwb_trace_"):
            label = re.sub(r"_\d+(_ret)?$", lambda m: m.group(1) or "", kind)
            if label == "connect_ret":
                k = 1
                while f"connect_ret#{k}" in at:
                    k += 1
                at[f"connect_ret#{k}"] = t
            else:
                at.setdefault(label, t)
                at[label + "$"] = t
    if "exit" not in at:
        continue
    prev = at["exec"]
    for name, end in order:
        if end in at and at[end] >= prev:
            probed[name].append((at[end] - prev) * 1e3)
            prev = at[end]
        else:
            probed[name].append(0.0)
    totals_probed.append((at["exit"] - at["exec"]) * 1e3)

    ev, main = events(f"{T}/plain{i}.txt")
    if main is None:
        continue
    forks = [e for e in ev if e[1] == main and e[4] == "sched:sched_process_fork"]
    c3 = [e[3] for e in ev if e[1] == main and e[2] == main and e[4] == "syscalls:sys_enter_clone3"]
    texit = [e[3] for e in ev if e[1] == main and e[2] != main and e[4] == "sched:sched_process_exit"]
    waits = [e[3] for e in ev if e[1] == main and e[4] == "syscalls:sys_exit_wait4"]
    mexit = [e[3] for e in ev if e[1] == main and e[2] == main and e[4] == "sched:sched_process_exit"]
    pfork = [e[3] for e in forks if e[2] == main]
    if c3 and texit:
        plain["thread"].append((texit[0] - c3[0]) * 1e3)
    if waits:
        # the announcer: the last fork before the first wait4 return
        f = [t for t in pfork if t < waits[-1]]
        if f:
            plain["fork"].append((waits[-1] - f[-1]) * 1e3)
    if mexit:
        plain["total"].append((mexit[0] - ev[0][3]) * 1e3)
    plain["helpers"].append(sum(1 for e in ev if e[1] != main and e[4] == "sched:sched_process_exec"))
    plain["execve"].append(sum(1 for e in ev if e[1] != main and e[4] == "syscalls:sys_enter_execve"))
    plain["sends"].append(sum(1 for e in ev if e[1] == main and e[4].startswith(("syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg"))))

def stat(v):
    v = sorted(v)
    return (statistics.median(v), v[len(v) // 10]) if v else (float("nan"), float("nan"))
print(f"{len(totals_probed)} attaches per pass; ms, median and 10th percentile (the quiet-machine figure)")
print(f"  {'phase (probed pass)':56} {'median':>7} {'p10':>7}")
for name, _ in order:
    m, p = stat(probed[name])
    print(f"  {name:56} {m:7.3f} {p:7.3f}")
m, p = stat(totals_probed)
print(f"  {'exec to exit, probed':56} {m:7.3f} {p:7.3f}")
print(f"  {'tracepoints only (plain pass)':56}")
for key, label in [("thread", "namespace thread: clone3 to its exit"),
                   ("fork", "announcer: fork to wait4 return"),
                   ("total", "exec to exit, plain")]:
    m, p = stat(plain[key])
    print(f"  {label:56} {m:7.3f} {p:7.3f}")
print(f"netlink sends per attach: {statistics.median(plain['sends']):.0f}; "
      f"programs run by pipework: {statistics.median(plain['helpers']):.0f} "
      f"({statistics.median(plain['execve']):.0f} execve calls: a PATH search tries each directory)")
PY
