#!/usr/bin/env bash
# `pipework lab up` / `lab down` of a 20-node, 30-link lab on containers
# that already run, side by side with the same lab built and removed by a
# shell script of `ip` commands (one process per step, as such scripts do;
# containerlab cannot be installed here). Ratios in one run.
# Target (issue #13): up <= 0.5x the ip script.
# Usage: scripts/bench-lab.sh [runs]   (needs root, hyperfine, dockerd: source /tmp/pw-env/env.sh)
#        BIN=path/to/pipework scripts/bench-lab.sh   (time another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
for t in hyperfine python3 docker; do
  command -v "$t" >/dev/null 2>&1 || { echo "bench-lab: $t missing" >&2; exit 1; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release/pipework
fi
T=$(mktemp -d)
LAB=pwlb$$
N=20

cleanup() {
  set +e
  "$BIN" lab down "$LAB" >/dev/null 2>&1
  for i in $(seq 1 $N); do
    docker rm -f "$LAB-c$i" >/dev/null 2>&1
    ip netns del "$LAB-c$i" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT

# 20 running containers, each also reachable as a named namespace for `ip -n`.
for i in $(seq 1 $N); do
  docker run -d --name "$LAB-c$i" --network none bb:latest /bin/sleep 3600 >/dev/null
  pid=$(docker inspect -f '{{.State.Pid}}' "$LAB-c$i")
  ip netns attach "$LAB-c$i" "$pid"
done

# 30 links: a ring of 20 plus 10 chords; a /30 each.
links=()
for i in $(seq 1 $N); do links+=("$i $(( i % N + 1 ))"); done
for i in $(seq 1 10); do links+=("$i $(( (i + 9) % N + 1 ))"); done
{
  echo "name = \"$LAB\""
  for i in $(seq 1 $N); do printf '[nodes.c%d]\ncontainer = "%s-c%d"\n' "$i" "$LAB" "$i"; done
} > "$T/lab.toml"
: > "$T/up.sh"; : > "$T/down.sh"
declare -A used
k=0
for l in "${links[@]}"; do
  set -- $l
  a=$1 b=$2
  ia=$(( ${used[$a]:-0} + 1 )); used[$a]=$ia
  ib=$(( ${used[$b]:-0} + 1 )); used[$b]=$ib
  o=$(( k * 4 ))
  ipa="10.$(( 80 + o / 65536 )).$(( (o / 256) % 256 )).$(( o % 256 + 1 ))/30"
  ipb="10.$(( 80 + o / 65536 )).$(( (o / 256) % 256 )).$(( o % 256 + 2 ))/30"
  printf '[[links]]\nendpoints = ["c%d:eth%d", "c%d:eth%d"]\nips = ["%s", "%s"]\n' \
    "$a" "$ia" "$b" "$ib" "$ipa" "$ipb" >> "$T/lab.toml"
  cat >> "$T/up.sh" <<S
ip link add pwlbtmp$k netns $LAB-c$a type veth peer name pwlbtmq$k netns $LAB-c$b
ip -n $LAB-c$a link set pwlbtmp$k name eth$ia
ip -n $LAB-c$b link set pwlbtmq$k name eth$ib
ip -n $LAB-c$a addr add $ipa dev eth$ia
ip -n $LAB-c$b addr add $ipb dev eth$ib
ip -n $LAB-c$a link set eth$ia up
ip -n $LAB-c$b link set eth$ib up
S
  echo "ip -n $LAB-c$a link del eth$ia" >> "$T/down.sh"
  k=$(( k + 1 ))
done

P=$BIN
hyperfine --runs "$RUNS" --warmup 1 --export-json "$T/r.json" \
  -n pipework-lab-up --prepare "$P lab down $LAB >/dev/null 2>&1; sh $T/down.sh >/dev/null 2>&1; true" \
     "$P lab up $T/lab.toml >/dev/null" \
  -n ip-script-up --prepare "$P lab down $LAB >/dev/null 2>&1; sh $T/down.sh >/dev/null 2>&1; true" \
     "sh -e $T/up.sh" \
  -n pipework-lab-down --prepare "sh $T/down.sh >/dev/null 2>&1; $P lab up $T/lab.toml >/dev/null" \
     "$P lab down $LAB >/dev/null" \
  -n ip-script-down --prepare "$P lab down $LAB >/dev/null 2>&1; sh $T/down.sh >/dev/null 2>&1; sh $T/up.sh" \
     "sh -e $T/down.sh" >/dev/null

python3 - "$T/r.json" <<'PY'
import json, sys
rows = [(r["command"], r["median"] * 1e3, r["mean"] * 1e3, r["stddev"] * 1e3)
        for r in json.load(open(sys.argv[1]))["results"]]
med = {n: m for n, m, _, _ in rows}
print(f"{'what':20} {'median ms':>10} {'mean ms':>9} {'stddev':>8}")
for n, m, mean, sd in rows:
    print(f"{n:20} {m:10.1f} {mean:9.1f} {sd:8.1f}")
up = med["pipework-lab-up"] / med["ip-script-up"]
down = med["pipework-lab-down"] / med["ip-script-down"]
print(f"ratio lab up / ip script:   {up:.2f}x")
print(f"ratio lab down / ip script: {down:.2f}x")
print(f"target up <= 0.50x: {'met' if up <= 0.5 else 'NOT met'} ({up:.2f}x)")
PY
