#!/usr/bin/env bash
# Lease acquisition time: pipework's built-in DHCP client vs `busybox udhcpc -q -n`
# vs `dhclient -1`, against the same dnsmasq in the same run, interleaved so
# machine noise hits all three alike. Reports medians and ratios.
#
# usage: sudo scripts/bench-dhcp.sh [RUNS]        (default 30)
#   PIPEWORK=path/to/pipework   (default target/release/pipework)
# Needs root, dnsmasq (dnsmasq-base), busybox (busybox-static), dhclient
# (isc-dhcp-client), nsenter (util-linux). Creates only network namespaces
# named pwdb-*-$$ and removes them on exit.
set -euo pipefail
RUNS=${1:-30}
cd "$(dirname "$0")/.."
PW=${PIPEWORK:-target/release/pipework}
[ -x "$PW" ] || { echo "bench-dhcp: $PW not found; run: cargo build --release" >&2; exit 1; }
for t in dnsmasq busybox dhclient nsenter; do
  command -v "$t" >/dev/null || { echo "bench-dhcp: $t is not installed" >&2; exit 1; }
done

SRV=pwdb-srv-$$ CLI=pwdb-cli-$$
D=$(mktemp -d /tmp/pwdb-XXXXXX)
cleanup() {
  [ -f "$D/dnsmasq.pid" ] && kill "$(cat "$D/dnsmasq.pid")" 2>/dev/null || true
  [ -f "$D/dhclient.pid" ] && kill "$(cat "$D/dhclient.pid")" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT

ip netns add "$SRV"; ip netns add "$CLI"
ip -n "$SRV" link add eth0 type veth peer name eth0 netns "$CLI"
ip -n "$SRV" addr add 10.232.0.1/24 dev eth0
ip -n "$SRV" link set eth0 up
ip -n "$CLI" link set eth0 up
ip netns exec "$SRV" dnsmasq --conf-file=/dev/null --port=0 --interface=eth0 --bind-interfaces \
  --except-interface=lo --dhcp-range=10.232.0.100,10.232.0.200,255.255.255.0,1h \
  --dhcp-option=option:router,10.232.0.1 --no-ping --dhcp-leasefile="$D/leases" \
  --pid-file="$D/dnsmasq.pid" --log-facility="$D/dnsmasq.log"
sleep 0.3

# Scripts that configure nothing: we time lease acquisition only, for all three.
printf '#!/bin/sh\nexit 0\n' > "$D/noop.sh"; chmod +x "$D/noop.sh"
NET=/run/netns/$CLI

ours()     { "$PW" dhcp-acquire --netns "$NET" -i eth0 >/dev/null; }
udhcpc()   { nsenter --net="$NET" busybox udhcpc -q -n -i eth0 -s "$D/noop.sh" >/dev/null 2>&1; }
dhclient_() {
  rm -f "$D/dhclient.leases"   # no remembered lease: a full DISCOVER like the others
  nsenter --net="$NET" dhclient -1 -sf "$D/noop.sh" -pf "$D/dhclient.pid" -lf "$D/dhclient.leases" eth0 >/dev/null 2>&1
}
dhclient_stop() { # dhclient -1 leaves a daemon; its pidfile appears just after the parent exits
  local pid="" i
  for i in $(seq 200); do
    pid=$(cat "$D/dhclient.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && break
    sleep 0.01
  done
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  rm -f "$D/dhclient.pid"
}

ms() { # run "$@" and print its wall time in ms
  local t0=$EPOCHREALTIME
  "$@" || { echo "bench-dhcp: $1 failed" >&2; exit 1; }
  local t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'
}

# Warm up page caches and dnsmasq's lease table.
ours; udhcpc; dhclient_; dhclient_stop

: > "$D/ours"; : > "$D/udhcpc"; : > "$D/dhclient"
for _ in $(seq "$RUNS"); do
  ms ours >> "$D/ours"
  ms udhcpc >> "$D/udhcpc"
  ms dhclient_ >> "$D/dhclient"
  dhclient_stop
done

median() { sort -n "$1" | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mo=$(median "$D/ours"); mu=$(median "$D/udhcpc"); md=$(median "$D/dhclient")
lo() { sort -n "$1" | head -1; }
hi() { sort -n "$1" | tail -1; }
echo "DHCP lease acquisition, $RUNS runs each, wall time (same dnsmasq, same run, interleaved):"
printf '  %-28s %8s %8s %8s\n' "" "median" "min" "max"
for c in "pipework (built-in client):ours" "busybox udhcpc -q -n:udhcpc" "dhclient -1:dhclient"; do
  f=$D/${c##*:}
  printf '  %-28s %8.2f %8.2f %8.2f ms\n' "${c%:*}" "$(median "$f")" "$(lo "$f")" "$(hi "$f")"
done
awk -v o="$mo" -v u="$mu" -v d="$md" 'BEGIN {
  printf "  ratios: udhcpc/pipework = %.1fx, dhclient/pipework = %.1fx\n", u / o, d / o }'
