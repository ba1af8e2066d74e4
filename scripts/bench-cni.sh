#!/usr/bin/env bash
# CNI ADD+DEL wall time: pipework vs the reference `bridge` plugin with
# `host-local` (containernetworking-plugins), in the same run, same shape
# of config, interleaved rounds. Runs inside a private "host" namespace so
# the machine's own bridges and firewall are not involved.
#
#   scripts/bench-cni.sh [ROUNDS] [PER_ROUND]     (default 10 x 20)
#   BIN=path/to/pipework scripts/bench-cni.sh
set -euo pipefail
rounds=${1:-10}
per=${2:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$here/target/release/pipework}
REF=${REF:-/usr/lib/cni}
[ -x "$BIN" ] || (cd "$here" && cargo build --release --bin pipework >&2)
[ -x "$REF/bridge" ] || { echo "bench-cni: $REF/bridge missing (apt-get install containernetworking-plugins)" >&2; exit 1; }

H=pwc-bench-host
C=pwc-bench-ctr
T=$(mktemp -d /tmp/pwc-bench.XXXXXX)
cleanup() {
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$H" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
ip netns del "$C" 2>/dev/null || true
ip netns del "$H" 2>/dev/null || true
ip netns add "$H"
# Created out here: a namespace added inside `ip netns exec` is only
# mounted in that exec's private mount namespace.
ip netns add "$C"

conf() { # plugin bridge ipam-json
  printf '{"cniVersion":"1.0.0","name":"pwcbench","type":"%s","bridge":"%s","isGateway":true,"ipam":%s}' "$1" "$2" "$3"
}
hostlocal() { printf '{"type":"host-local","dataDir":"%s","subnet":"10.231.40.0/24","routes":[{"dst":"0.0.0.0/0"}]}' "$1"; }
static='{"type":"static","addresses":[{"address":"10.231.41.5/24","gateway":"10.231.41.1"}],"routes":[{"dst":"0.0.0.0/0"}]}'
conf bridge   pwcbref "$(hostlocal "$T/ipam-ref")" > "$T/ref.json"
conf pipework pwcbhl  "$(hostlocal "$T/ipam-ours")" > "$T/ours-hl.json"
conf pipework pwcbst  "$static" > "$T/ours-static.json"

# The measured loop runs inside the private host namespace: one
# `ip netns exec` for the whole run, then plain fork+exec per call, the same
# for every plugin.
cat > "$T/loop.sh" <<'LOOP'
set -euo pipefail
plugin=$1 conf=$2 n=$3
export CNI_CONTAINERID=pwcbench CNI_NETNS=/run/netns/pwc-bench-ctr CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni
# EPOCHREALTIME is a bash builtin: timing adds no process of its own.
add=0 del=0
for ((i = 0; i < n; i++)); do
  t0=${EPOCHREALTIME/[.,]/}
  CNI_COMMAND=ADD "$plugin" < "$conf" > /dev/null
  t1=${EPOCHREALTIME/[.,]/}
  CNI_COMMAND=DEL "$plugin" < "$conf" > /dev/null
  t2=${EPOCHREALTIME/[.,]/}
  add=$(( add + t1 - t0 )) del=$(( del + t2 - t1 ))
done
echo "$(( add / n )) $(( del / n ))"
LOOP

one() { # key plugin conf
  local t a d
  t=$(ip netns exec "$H" bash "$T/loop.sh" "$2" "$3" "$per") || { echo "bench-cni: $1 failed" >&2; exit 1; }
  read -r a d <<< "$t"
  add[$1]=$(( add[$1] + a )) del[$1]=$(( del[$1] + d ))
}
declare -A add=([ref]=0 [hl]=0 [st]=0) del=([ref]=0 [hl]=0 [st]=0)
for ((r = 0; r < rounds; r++)); do
  one ref "$REF/bridge" "$T/ref.json"
  one hl "$BIN" "$T/ours-hl.json"
  one st "$BIN" "$T/ours-static.json"
done
ms() { awk -v us="$1" -v r="$rounds" 'BEGIN { printf "%6.2f", us / r / 1e3 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
line() { # label key
  local k=$2 sum=$(( add[$2] + del[$2] )) ref=$(( add[ref] + del[ref] ))
  printf '  %-32s ADD %s  DEL %s  ADD+DEL %s ms   ratio %sx\n' "$1" "$(ms "${add[$k]}")" "$(ms "${del[$k]}")" \
    "$(ms "$sum")" "$(ratio "$sum" "$ref")"
}
echo "CNI ADD+DEL wall time, mean over $rounds interleaved rounds x $per (ms per call):"
line "reference bridge + host-local" ref
line "pipework + host-local" hl
line "pipework + static (in-process)" st
