#!/usr/bin/env bash
# Encrypted vs clear overlay throughput (issue #19, `overlay create
# --encrypt`): one TCP stream (iperf3) container -> container across two
# host namespaces, over a WireGuard-encrypted network and over a clear one
# between the same two hosts, in interleaved rounds of one run; reports the
# median of each and their ratio.
#
# WireGuard is needed in the kernel: on a host without it the script runs
# itself inside Debian's kernel under QEMU (scripts/vmtest.sh, TCG: the
# absolute numbers are an emulated CPU's, the ratio is what to read).
#   scripts/bench-overlay-wg.sh [ROUNDS] [SECONDS]   (root; etcd, iperf3, busybox)
# shellcheck disable=SC2086  # names and addresses made here, no spaces
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-3}
BIN=${PIPEWORK:-${CARGO_TARGET_DIR:-$PWD/target}/debug/pipework}
if [ ! -d /sys/module/wireguard ] && ! modprobe -q wireguard 2>/dev/null; then
  [ -x "$BIN" ] || cargo build -q
  echo "bench-overlay-wg: no WireGuard here: running in the VM" >&2
  PIPEWORK_VM_MODULES="${PIPEWORK_VM_MODULES:-} wireguard nf_tables" PIPEWORK=$BIN \
    exec scripts/vmtest.sh bash scripts/bench-overlay-wg.sh "$ROUNDS" "$SECS"
fi
[ -x "$BIN" ] || { echo "build pipework first (cargo build)" >&2; exit 1; }
P=pwwb$$
W=$(mktemp -d /tmp/$P.XXXX)
# Keys and agent state in /tmp (the VM's root is read-only).
export PIPEWORK_STATE_DIR=$W/state
NS=()
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkns() { ip netns add "$1"; NS+=("$1"); }

mkns ${P}ul
ip -n ${P}ul link add ulbr type bridge && ip -n ${P}ul link set ulbr up
for i in 1 2; do
  mkns ${P}h$i
  ip link add ${P}u$i type veth peer name eth0 netns ${P}h$i
  ip link set ${P}u$i netns ${P}ul
  ip -n ${P}ul link set ${P}u$i master ulbr up
  ip -n ${P}h$i addr add 10.231.210.$i/24 dev eth0
  ip -n ${P}h$i link set eth0 up; ip -n ${P}h$i link set lo up
done
export PIPEWORK_ETCD=http://10.231.210.1:2379
ip netns exec ${P}h1 etcd --data-dir $W/etcd \
  --listen-client-urls $PIPEWORK_ETCD --advertise-client-urls $PIPEWORK_ETCD \
  --listen-peer-urls http://127.0.0.1:2380 >/dev/null 2>&1 &
PIDS+=($!)
until ip netns exec ${P}h1 etcdctl --endpoints $PIPEWORK_ETCD put /pwwb x >/dev/null 2>&1; do sleep 0.2; done
for i in 1 2; do
  ip netns exec ${P}h$i "$BIN" overlay agent --underlay eth0 --name h$i --ttl 10 2>$W/agent$i.log &
  PIDS+=($!)
done
until [ "$(ip netns exec ${P}h1 etcdctl --endpoints $PIPEWORK_ETCD get --prefix --keys-only /pipework/overlay/host/ | grep -c host/)" = 2 ]; do sleep 0.2; done
pw() { local h=$1; shift; ip netns exec ${P}h$h "$BIN" "$@"; }
pw 1 overlay create sec --subnet 10.71.0.0/24 --encrypt
pw 1 overlay create clr --subnet 10.72.0.0/24
for n in sec clr; do
  mkns ${P}${n}a; mkns ${P}${n}b
  pw 1 $n netns:${P}${n}a auto >/dev/null
  pw 2 $n netns:${P}${n}b auto >/dev/null
done
ipof() { ip -n "$1" -4 -o addr show dev eth1 | awk '{print $4}' | cut -d/ -f1; }
# Both paths answer before measuring (peers, FDB entries in place).
for n in sec clr; do
  dst=$(ipof ${P}${n}b)
  for _ in $(seq 1 100); do
    ip netns exec ${P}${n}a busybox ping -c 1 -W 1 "$dst" >/dev/null 2>&1 && break
    sleep 0.2
  done
done
# One iperf3 run from namespace $1 to $2 at $3: "Mbit/s retransmits".
iperf() {
  ip netns exec "$2" iperf3 -s -D -1 >/dev/null 2>&1
  sleep 0.3
  ip netns exec "$1" iperf3 -c "$3" -t "$SECS" -J |
    python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]; print(int(e["sum_received"]["bits_per_second"]/1e6), e["sum_sent"].get("retransmits", 0))'
}
run() { iperf ${P}$1a ${P}$1b "$(ipof ${P}$1b)"; }
# WireGuard alone, host to host over the tunnel addresses: what the
# encryption costs without VXLAN inside it.
inner2=$(ip -n ${P}h2 -6 -o addr show dev pw-wg | awk '{print $4}' | cut -d/ -f1)
enc=(); clr=(); bare=()
for r in $(seq 1 "$ROUNDS"); do
  # Interleaved, and the order turns each round.
  if [ $((r % 2)) = 1 ]; then
    e=$(run sec); c=$(run clr); w=$(iperf ${P}h1 ${P}h2 "$inner2")
  else
    w=$(iperf ${P}h1 ${P}h2 "$inner2"); c=$(run clr); e=$(run sec)
  fi
  enc+=("${e% *}"); clr+=("${c% *}"); bare+=("${w% *}")
  echo "round $r: encrypted ${e% *} Mbit/s (${e#* } retransmits), clear ${c% *} (${c#* }), WireGuard alone ${w% *} (${w#* })"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
me=$(median "${enc[@]}"); mc=$(median "${clr[@]}"); mw=$(median "${bare[@]}")
echo "kernel $(uname -r), $(nproc) CPUs, $ROUNDS rounds of ${SECS}s, one TCP stream"
echo "encrypted network (VXLAN in WireGuard) median: $me Mbit/s"
echo "clear network (VXLAN) median:                  $mc Mbit/s"
echo "WireGuard alone (host to host) median:         $mw Mbit/s"
awk -v e="$me" -v c="$mc" 'BEGIN { printf "ratio encrypted/clear:                         %.2f\n", e / c }'
