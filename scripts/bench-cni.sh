#!/usr/bin/env bash
# CNI ADD+DEL wall time: pipework vs the reference `bridge` plugin with
# `host-local` (containernetworking-plugins), same run, same config shape,
# interleaved rounds.
#
# Plugins run in the host namespace, as runtimes run them. Each bridge keeps
# one resident attachment for the whole run, as on a node with other
# containers: the measured ADD/DEL is an ordinary one, not the bridge's
# first or last. All objects are named pwc*, and removed at the end.
#
#   scripts/bench-cni.sh [ROUNDS] [PER_ROUND]     (default 10 x 20)
#   BIN=path/to/pipework REF=/usr/lib/cni scripts/bench-cni.sh
set -euo pipefail
rounds=${1:-10}
per=${2:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$here/target/release/pipework}
REF=${REF:-/usr/lib/cni}
[ -x "$BIN" ] || (cd "$here" && cargo build --release --bin pipework >&2)
[ -x "$REF/bridge" ] || { echo "bench-cni: $REF/bridge missing (apt-get install containernetworking-plugins)" >&2; exit 1; }

C=pwc-bench-ctr
R=pwc-bench-res
T=$(mktemp -d /tmp/pwc-bench.XXXXXX)
export CNI_PATH=$REF CNI_IFNAME=eth0

conf() { # plugin bridge ipam-json
  printf '{"cniVersion":"1.0.0","name":"pwcbench-%s","type":"%s","bridge":"%s","isGateway":true,"ipam":%s}' \
    "$2" "$1" "$2" "$3"
}
hostlocal() { printf '{"type":"host-local","dataDir":"%s","subnet":"%s","routes":[{"dst":"0.0.0.0/0"}]}' "$1" "$2"; }
static='{"type":"static","addresses":[{"address":"10.231.43.5/24","gateway":"10.231.43.1"}],"routes":[{"dst":"0.0.0.0/0"}]}'
static_res='{"type":"static","addresses":[{"address":"10.231.43.6/24","gateway":"10.231.43.1"}],"routes":[{"dst":"0.0.0.0/0"}]}'
conf bridge   pwcbref "$(hostlocal "$T/ipam-ref" 10.231.41.0/24)" > "$T/ref.json"
conf pipework pwcbhl  "$(hostlocal "$T/ipam-ours" 10.231.42.0/24)" > "$T/hl.json"
conf pipework pwcbst  "$static" > "$T/st.json"
conf pipework pwcbst  "$static_res" > "$T/st-res.json"

plugin_of() { case $1 in ref) echo "$REF/bridge" ;; *) echo "$BIN" ;; esac; }
resident() { # VERB key: the attachment that stays on each bridge
  local c="$T/$2.json"
  [ "$2" = st ] && c="$T/st-res.json"
  CNI_COMMAND=$1 CNI_CONTAINERID=pwcbench-res CNI_NETNS=/run/netns/$R-$2 \
    "$(plugin_of "$2")" < "$c" > /dev/null
}
cleanup() {
  set +e
  for k in ref hl st; do resident DEL "$k" 2>/dev/null; done
  ip netns del "$C" 2>/dev/null
  for k in ref hl st; do ip netns del "$R-$k" 2>/dev/null; done
  for b in pwcbref pwcbhl pwcbst pwcbfloor; do ip link del "$b" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
ip netns del "$C" 2>/dev/null || true
ip netns add "$C"
for k in ref hl st; do
  ip netns del "$R-$k" 2>/dev/null || true
  ip netns add "$R-$k"
done
for k in ref hl st; do resident ADD "$k"; done

# EPOCHREALTIME is a bash builtin: the timing adds no process of its own.
loop() { # key n -> "add_us del_us" per call
  local plugin c add=0 del=0 t0 t1 t2 out
  plugin=$(plugin_of "$1") c="$T/$1.json"
  export CNI_CONTAINERID=pwcbench CNI_NETNS=/run/netns/$C
  for ((i = 0; i < $2; i++)); do
    t0=${EPOCHREALTIME/[.,]/}
    # Read stdout to EOF, as runtimes do (a process the plugin leaves
    # behind holding stdout would be counted).
    out=$(CNI_COMMAND=ADD "$plugin" < "$c")
    t1=${EPOCHREALTIME/[.,]/}
    out=$(CNI_COMMAND=DEL "$plugin" < "$c")
    t2=${EPOCHREALTIME/[.,]/}
    add=$(( add + t1 - t0 )) del=$(( del + t2 - t1 ))
  done
  echo "$(( add / $2 )) $(( del / $2 ))"
}

# The kernel's share, common to every plugin: create a veth pair with one
# end in the container and delete it again, through one `ip -batch` (no
# process per operation). Deleting a veth pair waits for RCU grace periods.
for ((i = 0; i < per; i++)); do
  echo "link add pwcbfloor type veth peer name eth0 netns $C"
  echo "link del pwcbfloor"
done > "$T/floor.batch"
floor() {
  local t0 t1
  t0=${EPOCHREALTIME/[.,]/}
  ip -batch "$T/floor.batch"
  t1=${EPOCHREALTIME/[.,]/}
  echo $(( (t1 - t0) / per ))
}

declare -A add=([ref]=0 [hl]=0 [st]=0) del=([ref]=0 [hl]=0 [st]=0)
kernel=0
for ((r = 0; r < rounds; r++)); do
  for k in ref hl st; do
    read -r a d <<< "$(loop "$k" "$per")"
    add[$k]=$(( add[$k] + a )) del[$k]=$(( del[$k] + d ))
  done
  kernel=$(( kernel + $(floor) ))
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
printf '  %-32s veth pair add+del %s ms (included in every line above)\n' "kernel floor" "$(ms "$kernel")"
above() { ratio $(( add[$1] + del[$1] - kernel )) $(( add[ref] + del[ref] - kernel )); }
echo "  above the kernel floor: pipework+host-local $(above hl)x, pipework+static $(above st)x of the reference"
