#!/usr/bin/env bash
# Data path, side by side in one run: a client in its own network namespace
# talks to servers inside one Docker container (busybox bb:latest) over
#   bridge        a pipework Linux bridge (veth - bridge - veth)
#   macvlan       pipework macvlan children of one veth parent (bridge mode)
#   ovs           a pipework Open vSwitch port (env-up's OVS runs the
#                 userspace netdev datapath: no kernel module here)
#   docker-dnat   Docker's published port, reached from the client namespace
#                 through a veth to the host: DNAT in PREROUTING
#   docker-proxy  Docker's published port on host loopback, client on the
#                 host: the userland docker-proxy
# and reports, per path: one TCP stream and 8 streams (iperf3), new
# connections per second (wrk with Connection: close against nginx), and
# the p50/p99 round trip of a 64-byte TCP request/response (sockperf).
# Ratios are against the pipework bridge.
#
# The servers are host binaries started inside the container's namespace
# (nsenter --net): iperf3 -s, sockperf sr, and nginx from Debian's package,
# unpacked into a temporary directory (apt-get download; not installed,
# no service). Every object is named pwb<hex pid>… and removed on exit;
# processes are stopped by pid. Traffic stays in our namespaces, on our
# veths and on loopback; the published ports bind to our veth's address and
# 127.0.0.1 only. Each measurement is bounded (SECS, default 5 s). The
# client, the servers and any forwarder share the machine's 2 CPUs, so the
# numbers are noisy while others build: run it in one go.
#
# Usage: scripts/bench-datapath.sh     (root; scripts/env-up.sh first)
#        SECS=3 BIN=/usr/sbin/pipework scripts/bench-datapath.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}
[ "$SECS" -le 10 ] || { echo "bench-datapath: SECS is at most 10" >&2; exit 1; }
for t in docker iperf3 wrk sockperf nsenter python3 apt-get dpkg-deb; do
  command -v "$t" >/dev/null || {
    echo "bench-datapath: $t missing (scripts/env-up.sh; apt-get install wrk sockperf)" >&2; exit 1; }
done
# shellcheck disable=SC1091
source /tmp/pw-env/env.sh
docker image inspect bb:latest >/dev/null 2>&1 || { echo "bench-datapath: no bb:latest image (scripts/env-up.sh)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  read -r BIN _ < <(scripts/build-static.sh)
fi
P=$BIN

ID=$(printf '%x' $$)
X=pwb$ID
CLI=${X}cl               # the client's namespace
BRA=${X}b                # pipework bridge
PAR=${X}m                # the macvlan parent: one end of a veth pair
OVS=ovs${X}              # pipework creates an OVS bridge for an ovs* name
HV=${X}h                 # host end of the client-to-host veth (Docker paths)
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
  ip link del "$HV" 2>/dev/null
  ip link del "$PAR" 2>/dev/null
  ip link del "$BRA" 2>/dev/null
  [ -n "${PIPEWORK_OVSDB:-}" ] && ovs-vsctl --db="$PIPEWORK_OVSDB" --if-exists del-br "$OVS" 2>/dev/null
  rm -f "/run/pipework/firewall/$BRA"
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

# --- pipework paths ----------------------------------------------------------
ip link add "$BRA" type bridge
ip link set "$BRA" up
"$P" "$BRA" "$CT" -i eth1 10.254.1.2/24 >/dev/null 2>"$T/attach.log"
"$P" "$BRA" "netns:$CLI" -i eth1 -l "${X}c1" 10.254.1.3/24 >/dev/null 2>>"$T/attach.log"
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

# --- servers inside the container's namespace --------------------------------
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
nsenter --net="$SRVNS" iperf3 -s -p 5201 >"$T/iperf3.log" 2>&1 & PIDS+=($!)
nsenter --net="$SRVNS" sockperf sr --tcp -p 11111 >"$T/sockperf.log" 2>&1 & PIDS+=($!)
nsenter --net="$SRVNS" "$NGINX" -p "$T/ng" -e "$T/ng/logs/error.log" -c "$T/ng/nginx.conf" & PIDS+=($!)

# Client commands per path: where it runs, and the address and ports it uses.
declare -A WHERE HOST PIPERF PSOCK PHTTP
add_path() { WHERE[$1]=$2; HOST[$1]=$3; PIPERF[$1]=$4; PSOCK[$1]=$5; PHTTP[$1]=$6; }
NSX=(ip netns exec "$CLI")
PATHS=(bridge macvlan)
add_path bridge ns 10.254.1.2 5201 11111 80
add_path macvlan ns 10.254.2.2 5201 11111 80
if [ "$OVS_OK" = 1 ]; then PATHS+=(ovs); add_path ovs ns 10.254.3.2 5201 11111 80; fi
PATHS+=(docker-dnat docker-proxy)
add_path docker-dnat ns 10.254.77.1 5201 11111 8080
add_path docker-proxy host 127.0.0.1 "$LP_IPERF" "$LP_SOCK" "$LP_HTTP"
run_in() { # path, command...
  local w=${WHERE[$1]}
  shift
  if [ "$w" = ns ]; then "${NSX[@]}" "$@"; else "$@"; fi
}

answers() { # path, tries: a TCP connect to its HTTP port succeeds
  local i
  for ((i = 0; i < $2; i++)); do
    run_in "$1" timeout 2 python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' \
      "${HOST[$1]}" "${PHTTP[$1]}" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# Wait until every path answers (ARP, OVS flow set-up, docker-proxy start).
for p in "${PATHS[@]}"; do
  answers "$p" 100 || { echo "bench-datapath: $p (${HOST[$p]}:${PHTTP[$p]}) never answered" >&2; exit 1; }
done

# Every client is bounded: its own duration plus a margin for set-up.
LIMIT=$((SECS + 20))
iperf() { # path, streams: the JSON; iperf3 -s takes one test at a time and
  # may still be finishing the previous one ("server is busy"): try again.
  local out
  for _ in 1 2 3 4 5; do
    out=$(run_in "$1" timeout "$LIMIT" iperf3 -c "${HOST[$1]}" -p "${PIPERF[$1]}" -t "$SECS" -P "$2" \
            --connect-timeout 3000 -J || true)
    if python3 -c 'import json,sys; sys.exit("error" in json.loads(sys.stdin.read()))' <<< "$out" 2>/dev/null; then
      echo "$out"
      return 0
    fi
    sleep 1
  done
  echo "bench-datapath: iperf3 on $1 failed: $out" >&2
  return 1
}

: > "$T/results.txt"
for p in "${PATHS[@]}"; do
  h=${HOST[$p]}
  # A path can stop forwarding under us, e.g. when another job on a shared
  # host deletes the DOCKER-USER rule a bridge needs: say so, go on.
  if ! answers "$p" 20; then
    echo "bench-datapath: $p stopped answering; skipped (iptables -S DOCKER-USER?)" >&2
    continue
  fi
  iperf "$p" 1 > "$T/$p.i1.json" || continue
  iperf "$p" 8 > "$T/$p.i8.json" || continue
  run_in "$p" timeout "$LIMIT" wrk -t 2 -c 32 -d "${SECS}s" --timeout 2s -H "Connection: close" \
    "http://$h:${PHTTP[$p]}/" > "$T/$p.wrk" || continue
  run_in "$p" timeout "$LIMIT" sockperf pp --tcp -i "$h" -p "${PSOCK[$p]}" -m 64 -t "$SECS" --full-rtt \
    > "$T/$p.sp" 2>&1 || continue
  echo "$p" >> "$T/results.txt"
done

python3 - "$T" "$SECS" <<'PY'
import json, re, sys
T, secs = sys.argv[1], sys.argv[2]
paths = [l.strip() for l in open(f"{T}/results.txt") if l.strip()]
res = {}
for p in paths:
    i1 = json.load(open(f"{T}/{p}.i1.json"))["end"]["sum_received"]["bits_per_second"] / 1e9
    i8 = json.load(open(f"{T}/{p}.i8.json"))["end"]["sum_received"]["bits_per_second"] / 1e9
    w = open(f"{T}/{p}.wrk").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
    errs = re.search(r"Socket errors: (.*)", w)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
    s = open(f"{T}/{p}.sp").read()
    def pct(q):
        m = re.search(r"percentile %s\s*=\s*([\d.]+)" % re.escape(q), s)
        return float(m.group(1)) if m else float("nan")
    res[p] = dict(i1=i1, i8=i8, cps=rps, p50=pct("50.000"), p99=pct("99.000"),
                  note=", ".join(x for x in [errs and "wrk socket errors: " + errs.group(1),
                                              non2xx and "non-2xx: " + non2xx.group(1)] if x))
print(f"{secs} s per measurement; ratios against the pipework bridge")
print(f"{'path':14} {'1 stream':>15} {'8 streams':>15} {'new conn/s':>17} {'p50 RTT us':>11} {'p99 RTT us':>17}")
b = res.get("bridge", {})
def r(v, base):
    return f"({v / base:4.2f}x)" if base else ""
for p in paths:
    x = res[p]
    print(f"{p:14} {x['i1']:6.2f} Gb/s {r(x['i1'], b.get('i1')):>7} {x['i8']:6.2f} Gb/s {r(x['i8'], b.get('i8')):>7}"
          f" {x['cps']:9.0f} {r(x['cps'], b.get('cps')):>7} {x['p50']:11.1f} {x['p99']:9.1f} {r(x['p99'], b.get('p99')):>7}")
    if x["note"]:
        print(f"{'':14} {x['note']}")
PY
