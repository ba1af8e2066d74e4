#!/usr/bin/env bash
# Attach latency, side by side in one run: pipework vs the CNI reference
# bridge plugin (static IPAM) vs iproute2 doing the same steps, plus attach
# by Docker name and attach with 1,000 ports already on the bridge.
# Each command attaches bridge + veth + static /16 + default gateway into a
# running namespace; the undo step runs in --prepare, outside the timing.
# Usage: scripts/bench-attach.sh [runs]   (needs root; scripts/env-up.sh for Docker)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
cargo build --release -q
P=$PWD/target/release/pipework
T=$(mktemp -d)
NS=pwbench$$
BR=brpwb$$
BR2=brpwk$$
CNI=/usr/lib/cni
source /tmp/pw-env/env.sh 2>/dev/null || true

cleanup() {
  set +e
  # Detach the resident attachments first: that also removes the Docker
  # FORWARD rule pipework added for each bridge.
  "$P" detach "netns:${NS}k" >/dev/null 2>&1
  "$P" detach "netns:$NS" >/dev/null 2>&1
  ip netns del "$NS" 2>/dev/null
  ip netns del "${NS}k" 2>/dev/null
  ip link del "$BR" 2>/dev/null
  ip link del "$BR2" 2>/dev/null
  [ -n "${CID:-}" ] && docker rm -f "$CID" >/dev/null 2>&1
  if [ -f "$T/bulk.del" ]; then ip -force -batch "$T/bulk.del" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "${NS}k"
ip link add "$BR" type bridge && ip link set "$BR" up
ip link add "$BR2" type bridge && ip link set "$BR2" up
# A resident attachment keeps each bridge "in use", as on a real host: the
# one-time Docker FORWARD rule is then not re-added on every iteration.
$P "$BR" "netns:${NS}k" 10.250.255.1/16 2>/dev/null
$P "$BR2" "netns:${NS}k" -i eth2 10.251.255.1/16 2>/dev/null

# --- iproute2: the same steps, two ip -batch calls -------------------------
cat > "$T/host.batch" <<B
link add vb$$ mtu 1500 type veth peer name eth1 netns $NS
link set vb$$ master $BR
link set vb$$ up
B
cat > "$T/ns.batch" <<B
link set eth1 up
addr add 10.250.0.2/16 dev eth1
route replace default via 10.250.0.1 dev eth1
B

# --- CNI reference bridge plugin with static IPAM ---------------------------
cat > "$T/cni.json" <<J
{"cniVersion":"1.0.0","name":"bench","type":"bridge","bridge":"$BR","isGateway":false,
 "ipam":{"type":"static","addresses":[{"address":"10.250.0.2/16","gateway":"10.250.0.1"}],
         "routes":[{"dst":"0.0.0.0/0","gw":"10.250.0.1"}]}}
J
CNIENV="CNI_CONTAINERID=bench CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth1 CNI_PATH=$CNI"

hyperfine -N --version >/dev/null 2>&1 || true
hyperfine --runs "$RUNS" --warmup 5 --export-json "$T/a.json" \
  -n pipework-netns --prepare "$P detach netns:$NS >/dev/null 2>&1 || true" \
     "$P $BR netns:$NS 10.250.0.2/16@10.250.0.1" \
  -n cni-bridge --prepare "$P detach netns:$NS >/dev/null 2>&1; ip -n $NS link del eth1 2>/dev/null; env CNI_COMMAND=DEL $CNIENV $CNI/bridge < $T/cni.json >/dev/null 2>&1 || true" \
     "env CNI_COMMAND=ADD $CNIENV $CNI/bridge < $T/cni.json >/dev/null" \
  -n iproute2-batch --prepare "env CNI_COMMAND=DEL $CNIENV $CNI/bridge < $T/cni.json >/dev/null 2>&1; ip -n $NS link del eth1 2>/dev/null || true" \
     "ip -batch $T/host.batch && ip -n $NS -batch $T/ns.batch" >/dev/null
ip -n "$NS" link del eth1 2>/dev/null || true

# --- by Docker name ---------------------------------------------------------
DOCKER_ROW=""
if docker info >/dev/null 2>&1 && docker image inspect bb:latest >/dev/null 2>&1; then
  CID=pwbench-c$$
  docker run -d --name "$CID" --network none bb:latest /bin/sleep 3600 >/dev/null
  hyperfine --runs "$RUNS" --warmup 5 --export-json "$T/d.json" \
    -n pipework-docker-name --prepare "$P detach $CID >/dev/null 2>&1 || true" \
       "$P $BR $CID 10.250.0.3/16@10.250.0.1" >/dev/null
  DOCKER_ROW=$T/d.json
fi

# --- scaling: 10 ports vs 1,000 ports already on the bridge -----------------
scale() { # $1 = number of existing ports, $2 = output json
  : > "$T/bulk.add"; : > "$T/bulk.del"
  for i in $(seq 1 "$1"); do
    echo "link add pwk$$-$i type veth peer name pwq$$-$i" >> "$T/bulk.add"
    echo "link set pwk$$-$i master $BR2 up" >> "$T/bulk.add"
    echo "link del pwk$$-$i" >> "$T/bulk.del"
  done
  ip -batch "$T/bulk.add"
  hyperfine --runs "$RUNS" --warmup 5 --export-json "$2" \
    -n "pipework-with-$1-ports" --prepare "$P detach netns:$NS >/dev/null 2>&1 || true" \
       "$P $BR2 netns:$NS 10.251.0.2/16@10.251.0.1" >/dev/null
  $P detach "netns:$NS" >/dev/null 2>&1 || true
  ip -force -batch "$T/bulk.del"
}
scale 10 "$T/s10.json"
scale 1000 "$T/s1000.json"

python3 - "$T" "$DOCKER_ROW" <<'PY'
import json, sys, os
T, drow = sys.argv[1], sys.argv[2]
rows = []
for f in ["a.json", "d.json", "s10.json", "s1000.json"]:
    p = os.path.join(T, f)
    if os.path.exists(p):
        for r in json.load(open(p))["results"]:
            rows.append((r["command"], r["median"] * 1e3, r["mean"] * 1e3, r["stddev"] * 1e3))
med = {n: m for n, m, _, _ in rows}
print(f"{'what':28} {'median ms':>10} {'mean ms':>9} {'stddev':>8}")
for n, m, mean, sd in rows:
    print(f"{n:28} {m:10.2f} {mean:9.2f} {sd:8.2f}")
base = med.get("pipework-netns")
if base:
    for other in ["cni-bridge", "iproute2-batch"]:
        if other in med:
            print(f"ratio pipework/{other}: {base / med[other]:.2f}x")
if "pipework-with-1000-ports" in med and "pipework-with-10-ports" in med:
    print(f"ratio 1000 ports / 10 ports: {med['pipework-with-1000-ports'] / med['pipework-with-10-ports']:.2f}x")
PY

# --- macvlan beside the CNI reference macvlan plugin (same run) -------------
if [ -x scripts/bench-macvlan.sh ]; then
  echo
  scripts/bench-macvlan.sh "$RUNS"
fi
