#!/usr/bin/env bash
# `pipework doctor A B` on a healthy local pair, side by side in one run
# with what a user would otherwise type to check the same path by hand:
# route, links (both namespaces and the host), bridge ports, iptables,
# the bridge-netfilter sysctl, the way back, one ping and the neighbour
# entry (iproute2 + iptables + busybox ping; this host has no iputils). Interleaved rounds; medians and
# their ratio. Target: doctor under 2 s, and not slower than by hand.
# Usage: scripts/bench-doctor.sh [rounds]   (needs root)
#        BIN=path/to/pipework scripts/bench-doctor.sh   (time another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-30}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release/pipework
fi
A=pwyba$$; B=pwybb$$; BR=brpwyb$$
cleanup() {
  set +e
  ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null
  ip link del "$BR" 2>/dev/null
  iptables -w -D DOCKER-USER -i "$BR" -o "$BR" -m comment --comment "pipework:$BR" -j ACCEPT 2>/dev/null
  iptables -w -D FORWARD -i "$BR" -o "$BR" -m comment --comment "pipework:$BR" -j ACCEPT 2>/dev/null
  rm -f "/run/pipework/firewall/$BR"
}
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
"$BIN" "$BR" "netns:$A" 10.216.0.2/24 2>/dev/null
"$BIN" "$BR" "netns:$B" 10.216.0.3/24 2>/dev/null
sleep 1
python3 - "$BIN" "$A" "$B" "$BR" "$ROUNDS" <<'PY'
import subprocess, sys, time, statistics
bin_, a, b, br, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def doctor():
    r = subprocess.run([bin_, "doctor", f"netns:{a}", f"netns:{b}"], capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr
def by_hand():
    for cmd in (
        ["ip", "-n", a, "route", "get", "10.216.0.3"],
        ["ip", "-n", a, "-d", "link", "show"],
        ["ip", "-n", a, "addr", "show"],
        ["ip", "-d", "link", "show", "master", br],
        ["bridge", "link", "show"],
        ["iptables", "-w", "-S"],
        ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"],
        ["ip", "-n", b, "-d", "link", "show"],
        ["ip", "-n", b, "addr", "show"],
        ["ip", "-n", b, "route", "get", "10.216.0.2"],
        ["ip", "netns", "exec", a, "busybox", "ping", "-c", "1", "-W", "1", "10.216.0.3"],
        ["ip", "-n", a, "neigh", "show", "10.216.0.3"],
    ):
        subprocess.run(cmd, capture_output=True, check=True)
t = {"doctor": [], "by hand": []}
for _ in range(rounds):
    for name, f in (("doctor", doctor), ("by hand", by_hand)):
        s = time.perf_counter(); f(); t[name].append(time.perf_counter() - s)
m = {k: statistics.median(v) * 1e3 for k, v in t.items()}
for k, v in m.items():
    print(f"{k:8s} median {v:7.1f} ms  (min {min(t[k])*1e3:.1f}, max {max(t[k])*1e3:.1f}, {rounds} rounds)")
print(f"ratio doctor / by hand: {m['doctor'] / m['by hand']:.2f}")
PY
