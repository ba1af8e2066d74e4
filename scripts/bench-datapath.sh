#!/usr/bin/env bash
# Data path, side by side in one run, in interleaved rounds: a client in its
# own network namespace talks to servers inside one Docker container
# (busybox bb:latest) over
#   bridge        a pipework Linux bridge as attach makes it by default:
#                 conntrack skipped within the bridge (raw-table notrack
#                 rule) where that is safe
#   bridge-ct     the same with --keep-conntrack: every frame through
#                 conntrack (bridge-nf-call-iptables=1, dockerd's setting)
#   bridge-v6, bridge-ct-v6
#                 the same two bridges over IPv6 (ULA addresses), bulk only
#                 (iperf3): the ip6tables notrack rule against none. IPv6
#                 conntrack runs only where a rule asks for it (dockerd with
#                 ip6tables, a firewall): for the run, one that matches no
#                 frame turns it on, as those would
#   bridge-gro    `bridge` plus GRO on all four veth ends (turns on veth's
#                 NAPI receive path; ethtool here, a lever under test)
#   bridge-tc     `bridge` plus a tc redirect on each host-side veth end:
#                 a frame for the other guest's MAC goes straight to its
#                 veth (clsact ingress, u32 `ether dst`, mirred), past the
#                 bridge and bridge-nf (tc here, a lever under test)
#   bridge-tcr    the same lever as pipework builds it: both ends attached
#                 with --tc-redirect (its own rules, through rtnetlink)
#   macvlan       pipework macvlan children of one veth parent (bridge mode)
#   ovs           a pipework Open vSwitch port (env-up's OVS runs the
#                 userspace netdev datapath: no kernel module here)
#   docker-dnat   Docker's published port, reached from the client namespace
#                 through a veth to the host: DNAT in PREROUTING
#   docker-proxy  Docker's published port on host loopback, client on the
#                 host: the userland docker-proxy
# and, with no dockerd influence at all, in a namespace of our own that
# plays the host (no iptables rules, bridge-nf-call-iptables=0 there: the
# sysctl is per network namespace) with a second set of servers:
#   nd-bridge     bridge + single-queue veths, as pipework makes them
#   nd-bridge-mq  the same with one queue per CPU on every veth end
#                 (PIPEWORK_VETH_QUEUES=cpus; the multi-queue lever)
# Per path: one TCP stream and 8 streams (iperf3), new connections per
# second (wrk, Connection: close, against nginx with one worker: a
# non-forking server), and the p50/p99 round trip of a 64-byte TCP
# request/response (sockperf). Every round runs every path in a new random
# order; the summary gives the median and the spread (min-max) over the
# rounds, and ratios of medians against docker-dnat and docker-proxy.
#
# The servers are host binaries started inside the server namespaces
# (nsenter --net): iperf3 -s, sockperf sr, and nginx from Debian's package,
# unpacked into a temporary directory (apt-get download; not installed,
# no service). Missing client tools (iperf3, wrk, sockperf) are installed
# from Debian's packages. Every object is named pwb<hex pid>... and removed
# on exit; processes are stopped by pid. Traffic stays in our namespaces,
# on our veths and on loopback; the published ports bind to our veth's
# address and 127.0.0.1 only; eth0 and the host's routes are never touched.
# The client, the servers and any forwarder share the machine's CPUs, so
# the numbers are noisy while others work: the load (uptime) is printed
# before and after.
#
# Usage: scripts/bench-datapath.sh          (root; scripts/env-up.sh first)
#        ROUNDS=3 SECS=3 by default (about 8 minutes); LONG=1 for 5 rounds
#        of 5 s; BIN=target/debug/pipework to skip the static build (the
#        data path is the kernel's either way); PATHS="bridge docker-dnat"
#        to run only some paths.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${LONG:-}" ]; then SECS=${SECS:-5}; ROUNDS=${ROUNDS:-5}; fi
SECS=${SECS:-3}
ROUNDS=${ROUNDS:-3}
[ "$SECS" -le 10 ] || { echo "bench-datapath: SECS is at most 10" >&2; exit 1; }
[ "$ROUNDS" -ge 1 ] || { echo "bench-datapath: ROUNDS is at least 1" >&2; exit 1; }
need=()
for t in iperf3 wrk sockperf; do command -v "$t" >/dev/null || need+=("$t"); done
if [ "${#need[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null ||
    { echo "bench-datapath: apt-get install ${need[*]} failed" >&2; exit 1; }
fi
for t in docker iperf3 wrk sockperf nsenter python3 apt-get dpkg-deb ethtool; do
  command -v "$t" >/dev/null || {
    echo "bench-datapath: $t missing (scripts/env-up.sh)" >&2; exit 1; }
done
# shellcheck disable=SC1091
source /tmp/pw-env/env.sh
docker image inspect bb:latest >/dev/null 2>&1 || { echo "bench-datapath: no bb:latest image (scripts/env-up.sh)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  read -r BIN _ < <(scripts/build-static.sh)
fi
P=$BIN
echo "load before: $(uptime)"
ID=$(printf '%x' $$)
X=pwb$ID
CLI=${X}cl               # the client's namespace
BRA=${X}b                # pipework bridge (defaults)
BRC=${X}k                # pipework bridge, --keep-conntrack
BRG=${X}g                # pipework bridge, GRO on its veths
BRT=${X}t                # pipework bridge, tc redirect past it
BRR=${X}r                # pipework bridge, --tc-redirect
PAR=${X}m                # the macvlan parent: one end of a veth pair
OVS=ovs${X}              # pipework creates an OVS bridge for an ovs* name
HV=${X}h                 # host end of the client-to-host veth (Docker paths)
RNS=${X}r                # no-dockerd paths: the namespace that plays the host
SNS=${X}sv               # ... and the one its servers live in
CT=${X}-srv
T=$(mktemp -d /tmp/pwb-datapath.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  "$P" detach "netns:$CLI" >/dev/null 2>&1
  [ -n "${CPID:-}" ] && "$P" detach "$CT" >/dev/null 2>&1
  docker rm -f "$CT" >/dev/null 2>&1
  ip netns del "$CLI" 2>/dev/null
  ip netns del "$RNS" 2>/dev/null
  ip netns del "$SNS" 2>/dev/null
  ip link del "$HV" 2>/dev/null
  ip6tables -w -t raw -D PREROUTING -i "${X}none" -m conntrack --ctstate NEW -m comment --comment "$X" 2>/dev/null
  ip link del "$PAR" 2>/dev/null
  for b in "$BRA" "$BRC" "$BRG" "$BRT" "$BRR"; do ip link del "$b" 2>/dev/null; done
  [ -n "${PIPEWORK_OVSDB:-}" ] && ovs-vsctl --db="$PIPEWORK_OVSDB" --if-exists del-br "$OVS" 2>/dev/null
  if [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "kept $T" >&2; fi
}
trap cleanup EXIT

# nginx for the connection rate: Debian's build, unpacked, never installed.
NGINX=$(command -v nginx || true)
if [ -z "$NGINX" ]; then
  (cd "$T" && apt-get download -q nginx >/dev/null 2>&1) ||
    { echo "bench-datapath: apt-get download nginx failed" >&2; exit 1; }
  dpkg-deb -x "$T"/nginx_*.deb "$T/nginx-root"
  NGINX=$T/nginx-root/usr/sbin/nginx
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
LP_IPERF=$(free_port); LP_SOCK=$(free_port); LP_HTTP=$(free_port)
NCPU=$(getconf _NPROCESSORS_ONLN)

# --- the client namespace and its way to the host (for the DNAT path) ------
ip netns add "$CLI"
ip link add "$HV" type veth peer name eth9 netns "$CLI"
ip addr add 10.254.77.1/30 dev "$HV"
ip link set "$HV" up
ip -n "$CLI" link set lo up
ip -n "$CLI" link set eth9 up
ip -n "$CLI" addr add 10.254.77.2/30 dev eth9
ip -n "$CLI" route add default via 10.254.77.1

# --- the server container: Docker's bridge plus published ports -------------
docker run -d --name "$CT" \
  -p "10.254.77.1:5201:5201" -p "10.254.77.1:11111:11111" -p "10.254.77.1:8080:80" \
  -p "127.0.0.1:$LP_IPERF:5201" -p "127.0.0.1:$LP_SOCK:11111" -p "127.0.0.1:$LP_HTTP:80" \
  bb:latest /bin/sleep 3600 >/dev/null
CPID=$(docker inspect -f '{{.State.Pid}}' "$CT")
SRVNS=/proc/$CPID/ns/net
# Container-side TIME_WAIT from the connection-rate runs must not run out
# of ports; this sysctl is per namespace (ours).
nsenter --net="$SRVNS" sysctl -q -w net.ipv4.tcp_tw_reuse=1
ip netns exec "$CLI" sysctl -q -w net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
# IPv6 in both (Docker turns it off in a container without an IPv6
# network), without duplicate address detection so addresses work at once.
for k in all default; do
  nsenter --net="$SRVNS" sysctl -q -w "net.ipv6.conf.$k.disable_ipv6=0" "net.ipv6.conf.$k.accept_dad=0"
  ip netns exec "$CLI" sysctl -q -w "net.ipv6.conf.$k.accept_dad=0"
done
ip6tables -w -t raw -A PREROUTING -i "${X}none" -m conntrack --ctstate NEW -m comment --comment "$X"

# --- pipework paths ----------------------------------------------------------
for b in "$BRA" "$BRC" "$BRG" "$BRT" "$BRR"; do ip link add "$b" type bridge; ip link set "$b" up; done
"$P" "$BRA" "$CT" -i eth1 10.254.1.2/24 --ip fd77:1::2/64 >/dev/null 2>"$T/attach.log"
"$P" "$BRA" "netns:$CLI" -i eth1 -l "${X}c1" 10.254.1.3/24 --ip fd77:1::3/64 >/dev/null 2>>"$T/attach.log"
"$P" "$BRC" "$CT" -i eth4 --keep-conntrack 10.254.4.2/24 --ip fd77:4::2/64 >/dev/null 2>>"$T/attach.log"
"$P" "$BRC" "netns:$CLI" -i eth4 -l "${X}c4" --keep-conntrack 10.254.4.3/24 --ip fd77:4::3/64 >/dev/null 2>>"$T/attach.log"
"$P" "$BRG" "$CT" -i eth5 -l "${X}s5" 10.254.5.2/24 >/dev/null 2>>"$T/attach.log"
"$P" "$BRG" "netns:$CLI" -i eth5 -l "${X}c5" 10.254.5.3/24 >/dev/null 2>>"$T/attach.log"
# GRO on every end of the bridge-gro path: a veth with GRO on receives
# through NAPI (one instance per queue) instead of the sender's backlog.
for d in "${X}s5" "${X}c5"; do ethtool -K "$d" gro on >/dev/null 2>&1; done
nsenter --net="$SRVNS" ethtool -K eth5 gro on >/dev/null 2>&1
ip netns exec "$CLI" ethtool -K eth5 gro on >/dev/null 2>&1
"$P" "$BRT" "$CT" -i eth8 -l "${X}s8" 10.254.8.2/24 >/dev/null 2>>"$T/attach.log"
"$P" "$BRT" "netns:$CLI" -i eth8 -l "${X}c8" 10.254.8.3/24 >/dev/null 2>>"$T/attach.log"
mac_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])'; }
MAC_S8=$(nsenter --net="$SRVNS" ip -j link show eth8 | mac_of)
MAC_C8=$(ip -n "$CLI" -j link show eth8 | mac_of)
TC_OK=0
if tc qdisc add dev "${X}s8" clsact 2>>"$T/attach.log" && tc qdisc add dev "${X}c8" clsact 2>>"$T/attach.log" &&
   tc filter add dev "${X}c8" ingress protocol all u32 match ether dst "$MAC_S8" \
     action mirred egress redirect dev "${X}s8" 2>>"$T/attach.log" &&
   tc filter add dev "${X}s8" ingress protocol all u32 match ether dst "$MAC_C8" \
     action mirred egress redirect dev "${X}c8" 2>>"$T/attach.log"; then
  TC_OK=1
else
  echo "bench-datapath: no bridge-tc path (tc u32/mirred; see $T/attach.log)" >&2
fi
TCR_OK=0
if "$P" "$BRR" "$CT" -i eth10 -l "${X}s10" --tc-redirect 10.254.10.2/24 >/dev/null 2>>"$T/attach.log" &&
   "$P" "$BRR" "netns:$CLI" -i eth10 -l "${X}c10" --tc-redirect 10.254.10.3/24 >/dev/null 2>>"$T/attach.log"; then
  TCR_OK=1
else
  echo "bench-datapath: no bridge-tcr path (attach --tc-redirect refused; see $T/attach.log)" >&2
fi
ip link add "$PAR" type veth peer name "${X}n"
ip link set "$PAR" up
ip link set "${X}n" up
"$P" "$PAR" "$CT" -i eth2 10.254.2.2/24 >/dev/null 2>>"$T/attach.log"
"$P" "$PAR" "netns:$CLI" -i eth2 10.254.2.3/24 >/dev/null 2>>"$T/attach.log"
OVS_OK=0
if [ -n "${PIPEWORK_OVSDB:-}" ] &&
   "$P" "$OVS" "$CT" -i eth3 10.254.3.2/24 >/dev/null 2>>"$T/attach.log" &&
   "$P" "$OVS" "netns:$CLI" -i eth3 -l "${X}c3" 10.254.3.3/24 >/dev/null 2>>"$T/attach.log"; then
  OVS_OK=1
else
  echo "bench-datapath: no OVS path (see $T/attach.log)" >&2
  cat "$T/attach.log" >&2
fi
NOTRACK=$(iptables -w -t raw -S PREROUTING 2>/dev/null | grep -c -- "-i $BRA .*pipework:$BRA" || true)
NOTRACK_CT=$(iptables -w -t raw -S PREROUTING 2>/dev/null | grep -c -- "-i $BRC .*pipework:$BRC" || true)
NOTRACK6=$(ip6tables -w -t raw -S PREROUTING 2>/dev/null | grep -c -- "-i $BRA .*pipework:$BRA" || true)
NOTRACK6_CT=$(ip6tables -w -t raw -S PREROUTING 2>/dev/null | grep -c -- "-i $BRC .*pipework:$BRC" || true)

# --- no dockerd influence: a namespace that plays the host -------------------
ip netns add "$RNS"
ip netns add "$SNS"
ip -n "$RNS" link set lo up
ip -n "$SNS" link set lo up
ND_NF=$(ip netns exec "$RNS" sh -c 'sysctl -q -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 && sysctl -n net.bridge.bridge-nf-call-iptables' 2>/dev/null || echo "?")
nd_path() { # bridge, ifname, subnet, queues
  local q="numtxqueues $4 numrxqueues $4"
  ip -n "$RNS" link add "$1" type bridge
  ip -n "$RNS" link set "$1" up
  # shellcheck disable=SC2086
  ip -n "$RNS" link add "$1s" $q type veth peer name "$2" $q netns "$SNS"
  # shellcheck disable=SC2086
  ip -n "$RNS" link add "$1c" $q type veth peer name "$2" $q netns "$CLI"
  for e in "$1s" "$1c"; do ip -n "$RNS" link set "$e" master "$1" up; done
  ip -n "$SNS" addr add "$3.2/24" dev "$2"; ip -n "$SNS" link set "$2" up
  ip -n "$CLI" addr add "$3.3/24" dev "$2"; ip -n "$CLI" link set "$2" up
}
nd_path nb eth6 10.254.6 1
nd_path nbq eth7 10.254.7 "$NCPU"
ip netns exec "$SNS" sysctl -q -w net.ipv4.tcp_tw_reuse=1

# --- servers inside the two server namespaces --------------------------------
servers() { # tag, namespace path
  mkdir -p "$T/ng$1/logs" "$T/ng$1/tmp"
  cat > "$T/ng$1/nginx.conf" <<C
worker_processes 1;
pid $T/ng$1/nginx.pid;
error_log $T/ng$1/logs/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $T/ng$1/tmp; proxy_temp_path $T/ng$1/tmp; fastcgi_temp_path $T/ng$1/tmp;
  uwsgi_temp_path $T/ng$1/tmp; scgi_temp_path $T/ng$1/tmp;
  server { listen 80 backlog=4096; location / { default_type text/plain; return 200 "ok\n"; } }
}
C
  nsenter --net="$2" iperf3 -s -p 5201 >"$T/iperf3$1.log" 2>&1 & PIDS+=($!)
  nsenter --net="$2" sockperf sr --tcp -p 11111 >"$T/sockperf$1.log" 2>&1 & PIDS+=($!)
  nsenter --net="$2" "$NGINX" -p "$T/ng$1" -e "$T/ng$1/logs/error.log" -c "$T/ng$1/nginx.conf" & PIDS+=($!)
}
servers d "$SRVNS"
servers n "/run/netns/$SNS"

# shellcheck source=scripts/lib/datapath.sh
source scripts/lib/datapath.sh
NSX=(ip netns exec "$CLI")
ALL=(bridge bridge-ct bridge-gro macvlan)
add_path bridge ns 10.254.1.2 5201 11111 80
add_path bridge-ct ns 10.254.4.2 5201 11111 80
add_path bridge-gro ns 10.254.5.2 5201 11111 80
if [ "$TC_OK" = 1 ]; then ALL+=(bridge-tc); add_path bridge-tc ns 10.254.8.2 5201 11111 80; fi
if [ "$TCR_OK" = 1 ]; then ALL+=(bridge-tcr); add_path bridge-tcr ns 10.254.10.2 5201 11111 80; fi
add_path macvlan ns 10.254.2.2 5201 11111 80
if [ "$OVS_OK" = 1 ]; then ALL+=(ovs); add_path ovs ns 10.254.3.2 5201 11111 80; fi
ALL+=(bridge-v6 bridge-ct-v6 docker-dnat docker-proxy nd-bridge nd-bridge-mq)
add_path bridge-v6 ns fd77:1::2 5201 - -
add_path bridge-ct-v6 ns fd77:4::2 5201 - -
add_path docker-dnat ns 10.254.77.1 5201 11111 8080
add_path docker-proxy host 127.0.0.1 "$LP_IPERF" "$LP_SOCK" "$LP_HTTP"
add_path nd-bridge ns 10.254.6.2 5201 11111 80
add_path nd-bridge-mq ns 10.254.7.2 5201 11111 80
if [ -n "${PATHS:-}" ]; then read -r -a SEL <<< "$PATHS"; else SEL=("${ALL[@]}"); fi
wait_paths
run_rounds
LOAD_AFTER=$(uptime)
cat > "$T/header.txt" <<H
notrack rule on the default bridge: $([ "$NOTRACK" != 0 ] && echo yes || echo NO); on bridge-ct: $([ "$NOTRACK_CT" != 0 ] && echo yes || echo no); bridge-nf-call-iptables in the no-dockerd namespace: $ND_NF
IPv6 notrack rule on the default bridge: $([ "$NOTRACK6" != 0 ] && echo yes || echo NO); on bridge-ct: $([ "$NOTRACK6_CT" != 0 ] && echo yes || echo no); IPv6 conntrack on for the run (a rule that matches nothing)
H
report
if [ "$TC_OK" = 1 ]; then
  echo "bridge-tc: frames the tc rules sent past the bridge: $(tc -s filter show dev "${X}c8" ingress | awk '/Sent/ {print $2; exit}') bytes"
fi
if [ "$TCR_OK" = 1 ]; then
  echo "bridge-tcr: frames pipework's rules sent past the bridge: $(tc -s filter show dev "${X}c10" ingress | awk '/Sent/ {print $2; exit}') bytes"
fi
echo "load after: $LOAD_AFTER"
