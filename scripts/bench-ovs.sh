#!/usr/bin/env bash
# Benchmark: attaching a network namespace to an Open vSwitch bridge with
# pipework, side by side with what users would otherwise run — `ovs-vsctl
# add-port` plus iproute2 doing the same steps (the original pipework's
# sequence, using `ip -n` rather than `ip netns exec` to be fair to it).
# Both sides run interleaved in the same loop, so machine noise hits both;
# we report medians and the ratio. Detach is timed the same way.
#
# Usage: scripts/bench-ovs.sh [ITERATIONS]   (default 30; needs root, OVS)
#   PIPEWORK=path/to/pipework  binary to test (default target/release, built if missing)
#   PIPEWORK_OVSDB=unix:/path  OVSDB socket (default /var/run/openvswitch/db.sock)
set -euo pipefail

N=${1:-30}
cd "$(dirname "$0")/.."
PW=${PIPEWORK:-target/release/pipework}
if [ ! -x "$PW" ]; then
  cargo build --release --quiet
fi
DB=${PIPEWORK_OVSDB:-unix:/var/run/openvswitch/db.sock}
case "$DB" in unix:*) ;; *) DB="unix:$DB" ;; esac
VS="ovs-vsctl --db=$DB"

BR=pwobench
NS=pwobench
HOSTIF=pwobh0
cleanup() {
  $VS --if-exists del-br "$BR" >/dev/null 2>&1 || true
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOSTIF" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
# The same existing bridge for both sides; the datapath this kernel has.
DP=netdev
[ -d /sys/module/openvswitch ] && DP=system
$VS add-br "$BR" -- set bridge "$BR" datapath_type=$DP
ip netns add "$NS"

now() { date +%s%N; }

theirs_attach() {
  ip link add name "$HOSTIF" mtu 1500 type veth peer name pwobg0 mtu 1500
  $VS add-port "$BR" "$HOSTIF" tag=10
  ip link set "$HOSTIF" up
  ip link set pwobg0 netns "$NS"
  ip -n "$NS" link set pwobg0 name eth1
  ip -n "$NS" addr add 10.88.0.2/24 dev eth1
  ip -n "$NS" link set eth1 up
}
theirs_detach() {
  $VS del-port "$BR" "$HOSTIF"
  ip link del "$HOSTIF"
}
ours_attach() { "$PW" -l "$HOSTIF" "$BR" "netns:$NS" 10.88.0.2/24 @10 >/dev/null 2>&1; }
ours_detach() { "$PW" detach "netns:$NS" >/dev/null 2>&1; }

declare -a TA TD OA OD
for ((i = 0; i < N; i++)); do
  # Alternate which side goes first so neither always runs on a warm cache.
  for side in $( ((i % 2)) && echo "ours theirs" || echo "theirs ours"); do
    t0=$(now); "${side}_attach"; t1=$(now); "${side}_detach"; t2=$(now)
    if [ "$side" = ours ]; then OA+=($((t1 - t0))); OD+=($((t2 - t1)));
    else TA+=($((t1 - t0))); TD+=($((t2 - t1))); fi
  done
done

# Verify once, outside the timed loop, that both sides build the same thing.
ours_attach
ours_tag=$($VS get Port "$HOSTIF" tag); ours_addr=$(ip -n "$NS" -o -4 addr show eth1 | awk '{print $4}')
ours_detach
theirs_attach
their_tag=$($VS get Port "$HOSTIF" tag); their_addr=$(ip -n "$NS" -o -4 addr show eth1 | awk '{print $4}')
theirs_detach
if [ "$ours_tag/$ours_addr" != "$their_tag/$their_addr" ]; then
  echo "bench-ovs: the two sides built different things: $ours_tag/$ours_addr vs $their_tag/$their_addr" >&2
  exit 1
fi

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v n="$1" 'BEGIN {printf "%.1f", n / 1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
ma=$(median "${OA[@]}"); ta=$(median "${TA[@]}")
md=$(median "${OD[@]}"); td=$(median "${TD[@]}")
echo "bench-ovs: $N interleaved runs, bridge $BR (datapath $DP), port tag 10, one address"
printf '  %-8s %14s %26s %8s\n' "" "pipework (ms)" "ovs-vsctl+iproute2 (ms)" "ratio"
printf '  %-8s %14s %26s %7sx\n' attach "$(ms "$ma")" "$(ms "$ta")" "$(ratio "$ma" "$ta")"
printf '  %-8s %14s %26s %7sx\n' detach "$(ms "$md")" "$(ms "$td")" "$(ratio "$md" "$td")"
