#!/usr/bin/env bash
# The data path in the VM tier (issue #22): the kinds this host's kernel
# lacks, ipvlan and Open vSwitch's kernel datapath, side by side with a
# pipework bridge, macvlan and replicas of Docker's two published-port
# paths, in interleaved rounds of one run (scripts/lib/datapath.sh measures
# and reports as scripts/bench-datapath.sh does). Everything runs inside
# Debian's stock kernel under QEMU (scripts/vmtest.sh, TCG: absolute numbers
# are an emulated CPU's; read the ratios, and only against each other).
#
# Paths (client namespace -> one server namespace; the VM's root namespace
# plays a Docker host: br_netfilter loaded, bridge-nf-call-iptables=1,
# ip_forward=1):
#   bridge     a pipework bridge as attach makes it (conntrack skipped within it)
#   bridge-ct  the same with --keep-conntrack
#   macvlan    pipework macvlan children of one dummy parent (bridge mode)
#   ipvlan-l2, ipvlan-l3
#              pipework --ipvlan l2 / l3 children of another dummy
#   ovs        a pipework Open vSwitch port on the kernel datapath
#              (ovsdb-server and ovs-vswitchd of our own, in the VM)
#   dnat       Docker's -p path rebuilt by hand: the server behind a bridge
#              that is its gateway, reached through a veth to the "host"
#              and iptables DNAT in PREROUTING (Docker's rules, less its
#              chains), MASQUERADE on the way out
#   proxy      docker-proxy (Docker's own binary, from this host) on the
#              VM's loopback, client in the root namespace
#   nd-bridge  a bridge in a namespace with bridge-nf-call-iptables=0 (a host
#              without dockerd), made by pipework run in that namespace
#
# Usage: scripts/bench-datapath-vm.sh   (root; scripts/env-up.sh first, for
#        OVS and the client tools) ROUNDS=3 SECS=3 by default;
#        PATHS="bridge ipvlan-l2" to run only some. About 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-3}
ROUNDS=${ROUNDS:-3}
CACHE=${PIPEWORK_VM_CACHE:-/var/cache/pipework-vm}
BIN=${PIPEWORK:-${CARGO_TARGET_DIR:-$PWD/target}/debug/pipework}
NGINX_ROOT=$CACHE/nginx-root

if [ -z "${PIPEWORK_IN_VM:-}" ]; then
  # On the host: what the VM cannot fetch (its root is this host's, read-only).
  need=()
  for t in iperf3 wrk sockperf; do command -v "$t" >/dev/null || need+=("$t"); done
  if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null ||
      { echo "bench-datapath-vm: apt-get install ${need[*]} failed" >&2; exit 1; }
  fi
  for t in ovs-vswitchd ovsdb-server docker-proxy; do
    command -v "$t" >/dev/null || { echo "bench-datapath-vm: $t missing (scripts/env-up.sh)" >&2; exit 1; }
  done
  if [ ! -x "$NGINX_ROOT/usr/sbin/nginx" ]; then
    d=$(mktemp -d)
    trap 'rm -rf "$d"' EXIT
    (cd "$d" && apt-get download -q nginx >/dev/null 2>&1) ||
      { echo "bench-datapath-vm: apt-get download nginx failed" >&2; exit 1; }
    mkdir -p "$CACHE"
    dpkg-deb -x "$d"/nginx_*.deb "$NGINX_ROOT"
  fi
  if [ ! -x "$BIN" ]; then
    [ -z "${PIPEWORK:-}" ] || { echo "bench-datapath-vm: PIPEWORK=$BIN is not an executable" >&2; exit 1; }
    cargo build -q
  fi
  # br_netfilter and what iptables (nf_tables flavour) needs for the notrack,
  # DNAT, MASQUERADE and FORWARD rules: the VM loads only what it is told.
  mods="br_netfilter nf_tables nft_compat nft_chain_nat nft_ct nft_nat nft_masq"
  mods="$mods xt_CT xt_comment xt_conntrack xt_nat xt_MASQUERADE xt_addrtype xt_tcpudp xt_physdev"
  PIPEWORK_VM_MODULES="${PIPEWORK_VM_MODULES:-} $mods" PIPEWORK_IN_VM=1 PIPEWORK=$BIN \
    PIPEWORK_VM_TIMEOUT=${PIPEWORK_VM_TIMEOUT:-2400} PIPEWORK_VM_MEM=${PIPEWORK_VM_MEM:-2048} \
    PIPEWORK_SECS=$SECS PIPEWORK_ROUNDS=$ROUNDS PIPEWORK_PATHS="${PATHS:-}" \
    exec scripts/vmtest.sh bash scripts/bench-datapath-vm.sh
fi

# ---- inside the VM -------------------------------------------------------------
SECS=${PIPEWORK_SECS:-$SECS}
ROUNDS=${PIPEWORK_ROUNDS:-$ROUNDS}
PATHS=${PIPEWORK_PATHS:-}
P=$BIN
NCPU=$(getconf _NPROCESSORS_ONLN)
X=pwv$$
CLI=${X}cl; SNS=${X}sv; RNS=${X}r
T=$(mktemp -d /tmp/$X.XXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "${OVS_DIR:-}" ] && for f in "$OVS_DIR"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  for n in "$CLI" "$SNS" "$RNS"; do ip netns del "$n" 2>/dev/null; done
}
trap cleanup EXIT
echo "kernel $(uname -r), $NCPU CPUs"
ulimit -n 65536
sysctl -q -w net.ipv4.ip_forward=1
sysctl -q -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
ip link set lo up
for n in "$CLI" "$SNS" "$RNS"; do ip netns add "$n"; ip -n "$n" link set lo up; done
for n in "$CLI" "$SNS"; do
  ip netns exec "$n" sysctl -q -w net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
done

# dnat: Docker's published-port path, rebuilt (docker0 plays pwd0).
ip link add ${X}d0 type bridge
ip addr add 172.31.250.1/24 dev ${X}d0
ip link set ${X}d0 up
ip link add ${X}ds type veth peer name eth0 netns "$SNS"
ip link set ${X}ds master ${X}d0 up
ip -n "$SNS" addr add 172.31.250.2/24 dev eth0
ip -n "$SNS" link set eth0 up
ip -n "$SNS" route add default via 172.31.250.1
ip link add ${X}h type veth peer name eth9 netns "$CLI"
ip addr add 10.254.77.1/30 dev ${X}h
ip link set ${X}h up
ip -n "$CLI" addr add 10.254.77.2/30 dev eth9
ip -n "$CLI" link set eth9 up
ip -n "$CLI" route add default via 10.254.77.1
for pp in 5201:5201 11111:11111 8080:80; do
  iptables -w -t nat -A PREROUTING -d 10.254.77.1 -p tcp --dport "${pp%:*}" -j DNAT --to-destination "172.31.250.2:${pp#*:}"
done
iptables -w -t nat -A POSTROUTING -s 172.31.250.0/24 ! -o ${X}d0 -j MASQUERADE
iptables -w -A FORWARD -o ${X}d0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
iptables -w -A FORWARD -i ${X}d0 ! -o ${X}d0 -j ACCEPT
iptables -w -A FORWARD -o ${X}d0 -d 172.31.250.2 -p tcp -j ACCEPT

# proxy: docker-proxy on loopback, one per port. It reports that it listens
# on fd 3 (as dockerd expects) and stops if it cannot.
LP=(15201 21111 18080)
TP=(5201 11111 80)
for i in 0 1 2; do
  docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port "${LP[$i]}" \
    -container-ip 172.31.250.2 -container-port "${TP[$i]}" >/dev/null 2>&1 3>"$T/proxy$i.ready" & PIDS+=($!)
done

# pipework paths
ip link add ${X}b type bridge; ip link set ${X}b up
ip link add ${X}k type bridge; ip link set ${X}k up
ip link add ${X}m type dummy; ip link set ${X}m up
ip link add ${X}i type dummy; ip link set ${X}i up
ip link add ${X}j type dummy; ip link set ${X}j up
# shellcheck disable=SC2086  # P may be a command with its namespace prefix
pw() { $P "$@" >/dev/null 2>>"$T/attach.log" || { echo "bench-datapath-vm: pipework $*: $(tail -n1 "$T/attach.log")" >&2; exit 1; }; }
pw ${X}b "netns:$SNS" -i eth1 10.254.1.2/24
pw ${X}b "netns:$CLI" -i eth1 10.254.1.3/24
pw ${X}k "netns:$SNS" -i eth4 --keep-conntrack 10.254.4.2/24
pw ${X}k "netns:$CLI" -i eth4 --keep-conntrack 10.254.4.3/24
pw ${X}m "netns:$SNS" -i eth2 10.254.2.2/24
pw ${X}m "netns:$CLI" -i eth2 10.254.2.3/24
pw --ipvlan l2 ${X}i "netns:$SNS" -i eth5 10.254.5.2/24
pw --ipvlan l2 ${X}i "netns:$CLI" -i eth5 10.254.5.3/24
pw --ipvlan l3 ${X}j "netns:$SNS" -i eth6 10.254.6.2/24
pw --ipvlan l3 ${X}j "netns:$CLI" -i eth6 10.254.6.3/24
NOTRACK=$(iptables -w -t raw -S PREROUTING 2>/dev/null | grep -c -- "-i ${X}b .*pipework:${X}b" || true)
NOTRACK_CT=$(iptables -w -t raw -S PREROUTING 2>/dev/null | grep -c -- "-i ${X}k .*pipework:${X}k" || true)

# OVS on the kernel datapath: our own ovsdb-server and ovs-vswitchd.
OVS_DIR=$T/ovs
mkdir -p "$OVS_DIR"
ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server "$OVS_DIR/conf.db" --remote="punix:$OVS_DIR/db.sock" --pidfile="$OVS_DIR/ovsdb.pid" \
  --unixctl="$OVS_DIR/ovsdb.ctl" --log-file="$OVS_DIR/ovsdb.log" --detach
export PIPEWORK_OVSDB=unix:$OVS_DIR/db.sock
ovs-vsctl --db="$PIPEWORK_OVSDB" --no-wait init
OVS_RUNDIR=$OVS_DIR ovs-vswitchd "$PIPEWORK_OVSDB" --pidfile="$OVS_DIR/vswitchd.pid" \
  --unixctl="$OVS_DIR/vswitchd.ctl" --log-file="$OVS_DIR/vswitchd.log" --detach
pw ovs${X} "netns:$SNS" -i eth3 10.254.3.2/24
pw ovs${X} "netns:$CLI" -i eth3 10.254.3.3/24

# nd-bridge: pipework run inside a namespace whose bridge-nf is off.
ip netns exec "$RNS" sysctl -q -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
ip netns exec "$RNS" ip link add ${X}n type bridge
ip netns exec "$RNS" ip link set ${X}n up
pw_in() { # namespace, pipework args...: pipework run as that namespace's own tool
  local n=$1
  shift
  P="ip netns exec $n $P" pw "$@"
}
pw_in "$RNS" ${X}n "netns:$SNS" -i eth7 10.254.7.2/24
pw_in "$RNS" ${X}n "netns:$CLI" -i eth7 10.254.7.3/24

# Servers, in the server namespace (nginx: Debian's build, unpacked on the host).
mkdir -p "$T/ng/logs" "$T/ng/tmp"
cat > "$T/ng/nginx.conf" <<C
worker_processes 1;
pid $T/ng/nginx.pid;
error_log $T/ng/logs/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $T/ng/tmp; proxy_temp_path $T/ng/tmp; fastcgi_temp_path $T/ng/tmp;
  uwsgi_temp_path $T/ng/tmp; scgi_temp_path $T/ng/tmp;
  server { listen 80 backlog=4096; location / { default_type text/plain; return 200 "ok\n"; } }
}
C
ip netns exec "$SNS" iperf3 -s -p 5201 >"$T/iperf3.log" 2>&1 & PIDS+=($!)
ip netns exec "$SNS" sockperf sr --tcp -p 11111 >"$T/sockperf.log" 2>&1 & PIDS+=($!)
ip netns exec "$SNS" "$NGINX_ROOT/usr/sbin/nginx" -p "$T/ng" -e "$T/ng/logs/error.log" -c "$T/ng/nginx.conf" & PIDS+=($!)

# shellcheck source=scripts/lib/datapath.sh
source scripts/lib/datapath.sh
NSX=(ip netns exec "$CLI")
ALL=(bridge bridge-ct macvlan ipvlan-l2 ipvlan-l3 ovs dnat proxy nd-bridge)
add_path bridge ns 10.254.1.2 5201 11111 80
add_path bridge-ct ns 10.254.4.2 5201 11111 80
add_path macvlan ns 10.254.2.2 5201 11111 80
add_path ipvlan-l2 ns 10.254.5.2 5201 11111 80
add_path ipvlan-l3 ns 10.254.6.2 5201 11111 80
add_path ovs ns 10.254.3.2 5201 11111 80
add_path dnat ns 10.254.77.1 5201 11111 8080
add_path proxy host 127.0.0.1 "${LP[0]}" "${LP[1]}" "${LP[2]}"
add_path nd-bridge ns 10.254.7.2 5201 11111 80
if [ -n "$PATHS" ]; then read -r -a SEL <<< "$PATHS"; else SEL=("${ALL[@]}"); fi
wait_paths
run_rounds
cat > "$T/header.txt" <<H
in the VM tier (TCG): kernel $(uname -r); notrack rule on bridge: $([ "$NOTRACK" != 0 ] && echo yes || echo NO); on bridge-ct: $([ "$NOTRACK_CT" != 0 ] && echo yes || echo no)
dnat and proxy are replicas of Docker's paths (iptables DNAT as Docker writes it; Docker's docker-proxy binary)
H
report
