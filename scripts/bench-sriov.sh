#!/usr/bin/env bash
# Attach and detach of one SR-IOV VF: pipework against iproute2 doing the
# same steps (`ip link set PF vf N mac … vlan … spoofchk … trust …`, move
# and rename into the namespace, address, up; and back), side by side in one
# run, inside the VM tier with QEMU's emulated Intel 82576 (igb, igbvf).
#
#   scripts/bench-sriov.sh                 (N=20 rounds each)
#   PIPEWORK_BENCH_N=50 scripts/bench-sriov.sh
#   PIPEWORK_BENCH_BIN=/usr/sbin/pipework scripts/bench-sriov.sh
#
# The NIC is emulated and the VM runs under TCG (no KVM here): absolute
# times are those of an emulator; only the ratio says anything. pipework
# also keeps a signed state file and restores the VF netdev's own MAC,
# which the iproute2 steps do not.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${PIPEWORK_BENCH_N:-20}

if [ "${PIPEWORK_VM:-}" != 1 ]; then
    # On the host: the shipped (static, release) binary, then the VM.
    if [ -z "${PIPEWORK_BENCH_BIN:-}" ]; then
        read -r PIPEWORK_BENCH_BIN _ < <(scripts/build-static.sh)
    fi
    export PIPEWORK_BENCH_BIN PIPEWORK_BENCH_N=$N
    PIPEWORK_VM_SRIOV=1 exec scripts/vmtest.sh "$PWD/scripts/bench-sriov.sh"
fi

# ---- inside the VM -----------------------------------------------------------
P=$PIPEWORK_BENCH_BIN
export PIPEWORK_STATE_DIR=/tmp/pwsb-state
PF=
for d in /sys/class/net/*/device/sriov_totalvfs; do
    [ -e "$d" ] && PF=$(basename "$(dirname "$(dirname "$d")")") && break
done
[ -n "$PF" ] || { echo "bench-sriov: no SR-IOV NIC in the VM (QEMU >= 8 with igb?)" >&2; exit 1; }
echo 1 >"/sys/class/net/$PF/device/sriov_numvfs"
ip link set "$PF" up
for _ in $(seq 1 50); do ls /sys/class/net/"$PF"/device/virtfn0/net/ >/dev/null 2>&1 && break; sleep 0.2; done
VF=$(ls /sys/class/net/"$PF"/device/virtfn0/net/)
NS=pwsb
ip netns add $NS
trap 'ip netns del $NS 2>/dev/null || true' EXIT

now() { date +%s%N; }
MAC=02:5a:00:00:0b:01

pw_attach() { "$P" "vf:$PF:0" "netns:$NS" -i eth1 10.9.9.1/24 "$MAC@10" --spoofchk off --trust on >/dev/null 2>&1; }
pw_detach() { "$P" detach "netns:$NS" -i eth1 >/dev/null 2>&1; }
ip_attach() {
    ip link set "$PF" vf 0 mac $MAC vlan 10 spoofchk off trust on
    ip link set "$VF" netns $NS name eth1
    ip -n $NS addr add 10.9.9.1/24 dev eth1
    ip -n $NS link set eth1 up
}
ip_detach() {
    ip -n $NS link set eth1 down
    ip -n $NS link set eth1 netns 1 name "$VF"
    ip link set "$PF" vf 0 mac 00:00:00:00:00:00 vlan 0 spoofchk on trust off
}

# One warm-up round each, then N timed rounds; attach and detach timed apart.
round() { # $1: pw or ip; prints attach_ns detach_ns
    local a b c
    a=$(now); "$1_attach"; b=$(now); "$1_detach"; c=$(now)
    echo $((b - a)) $((c - b))
}
pw_round() { round pw; }
ip_round() { round ip; }
pw_round >/dev/null; ip_round >/dev/null
res=$(for _ in $(seq 1 "$N"); do echo "pw $(pw_round)"; echo "ip $(ip_round)"; done)
echo "bench-sriov: $N rounds each, interleaved; emulated NIC (QEMU igb under TCG): compare ratios, not times"
echo "$res" | awk -v n="$N" '
    { a[$1] += $2; d[$1] += $3 }
    END {
        printf "%-28s %10s %10s\n", "", "attach ms", "detach ms"
        printf "%-28s %10.2f %10.2f\n", "iproute2 (4 + 3 ip execs)", a["ip"]/n/1e6, d["ip"]/n/1e6
        printf "%-28s %10.2f %10.2f\n", "pipework", a["pw"]/n/1e6, d["pw"]/n/1e6
        printf "%-28s %10.2f %10.2f\n", "ratio pipework/iproute2", a["pw"]/a["ip"], d["pw"]/d["ip"]
    }'
