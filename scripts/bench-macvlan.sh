#!/usr/bin/env bash
# macvlan attach latency, side by side in one run: pipework vs the CNI
# reference macvlan plugin (static IPAM) vs iproute2 doing the same steps.
# Each command creates a macvlan child of the same parent inside a running
# namespace, with a static /16 and a default gateway; the undo step runs in
# --prepare, outside the timing. Target: pipework <= 0.3x the CNI plugin.
# Usage: scripts/bench-macvlan.sh [runs]   (needs root, hyperfine, containernetworking-plugins)
#        BIN=path/to/pipework scripts/bench-macvlan.sh   (time another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
CNI=/usr/lib/cni
for t in hyperfine python3 "$CNI/macvlan" "$CNI/static"; do
  command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || {
    echo "bench-macvlan: $t missing (apt-get install hyperfine containernetworking-plugins)" >&2; exit 1; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release/pipework
fi
P=$BIN
T=$(mktemp -d)
NS=pwpbg$$          # the guest
LAN=pwpbl$$         # the far end of the parent's cable
UP=pwpb$$           # the parent NIC: a veth whose peer sits in $LAN

cleanup() {
  set +e
  ip netns del "$NS" 2>/dev/null
  ip netns del "$LAN" 2>/dev/null
  ip link del "$UP" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "$LAN"
ip link add "$UP" type veth peer name lan0 netns "$LAN"
ip link set "$UP" up
ip -n "$LAN" link set lan0 up
ip -n "$LAN" addr add 10.252.0.1/16 dev lan0

# --- iproute2: the same steps ---------------------------------------------------
cat > "$T/ns.batch" <<B
link set eth1 up
addr add 10.252.0.2/16 dev eth1
route replace default via 10.252.0.1 dev eth1
B

# --- CNI reference macvlan plugin with static IPAM ---------------------------------
cat > "$T/cni.json" <<J
{"cniVersion":"1.0.0","name":"benchmv","type":"macvlan","master":"$UP","mode":"bridge",
 "ipam":{"type":"static","addresses":[{"address":"10.252.0.2/16","gateway":"10.252.0.1"}],
         "routes":[{"dst":"0.0.0.0/0","gw":"10.252.0.1"}]}}
J
CNIENV="CNI_CONTAINERID=benchmv CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth1 CNI_PATH=$CNI"
UNDO="$P detach netns:$NS >/dev/null 2>&1; env CNI_COMMAND=DEL $CNIENV $CNI/macvlan < $T/cni.json >/dev/null 2>&1; ip -n $NS link del eth1 2>/dev/null; true"

hyperfine --runs "$RUNS" --warmup 5 --export-json "$T/m.json" \
  -n pipework-macvlan --prepare "$UNDO" \
     "$P $UP netns:$NS 10.252.0.2/16@10.252.0.1" \
  -n cni-macvlan --prepare "$UNDO" \
     "env CNI_COMMAND=ADD $CNIENV $CNI/macvlan < $T/cni.json >/dev/null" \
  -n iproute2-macvlan --prepare "$UNDO" \
     "ip link add link $UP name eth1 netns $NS type macvlan mode bridge && ip -n $NS -batch $T/ns.batch" >/dev/null
sh -c "$UNDO"

python3 - "$T/m.json" <<'PY'
import json, sys
rows = [(r["command"], r["median"] * 1e3, r["mean"] * 1e3, r["stddev"] * 1e3)
        for r in json.load(open(sys.argv[1]))["results"]]
med = {n: m for n, m, _, _ in rows}
print(f"{'what':20} {'median ms':>10} {'mean ms':>9} {'stddev':>8}")
for n, m, mean, sd in rows:
    print(f"{n:20} {m:10.2f} {mean:9.2f} {sd:8.2f}")
base = med["pipework-macvlan"]
for other in ["cni-macvlan", "iproute2-macvlan"]:
    print(f"ratio pipework/{other}: {base / med[other]:.2f}x")
r = base / med["cni-macvlan"]
print(f"target pipework/cni-macvlan <= 0.30x: {'met' if r <= 0.30 else 'NOT met'} ({r:.2f}x)")
PY
