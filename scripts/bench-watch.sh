#!/usr/bin/env bash
# Container start event -> interfaces ready, under `pipework watch`, side by
# side in one run with what users script today (the dreamcat4 way): a
# `docker events` pipe that runs `pipework` once per start. Both measure from
# the engine's own event time (timeNano) to the end of the attach, over N
# restarts of one labelled container on a private dockerd (own data root and
# socket, stopped by pid; the shared engine is never touched).
# Target (issue #13): p99 <= 20 ms.
# Usage: scripts/bench-watch.sh [restarts]   (needs root, dockerd, /tmp/pw-env/bb.tar)
#        BIN=path/to/pipework scripts/bench-watch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release/pipework
fi
D=$(mktemp -d /tmp/pwwbench.XXXX)
BR=brpwwb$$
export DOCKER_HOST=unix://$D/d.sock
DPID= WPID= EPID=
cleanup() {
  set +e
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
  [ -n "$EPID" ] && kill "$EPID" 2>/dev/null
  docker rm -f pwwbench >/dev/null 2>&1
  [ -n "$DPID" ] && kill "$DPID" && while kill -0 "$DPID" 2>/dev/null; do sleep 0.1; done
  ip link del "$BR" 2>/dev/null
  for c in DOCKER-USER FORWARD; do
    while iptables -D "$c" -i "$BR" -o "$BR" -m comment --comment "pipework:$BR" -j ACCEPT 2>/dev/null; do :; done
  done
  rm -f "/run/pipework/firewall/$BR"
  rm -rf "$D"
}
trap cleanup EXIT
# Its own network namespace: with --bridge=none dockerd deletes docker0,
# which in the host's namespace is the host engine's bridge.
unshare --net -- dockerd --data-root "$D/data" --exec-root "$D/exec" -H "$DOCKER_HOST" --pidfile "$D/d.pid" \
  --bridge=none --iptables=false >"$D/dockerd.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker import /tmp/pw-env/bb.tar bb:latest >/dev/null

restarts() {
  for _ in $(seq "$N"); do docker restart -t 0 pwwbench >/dev/null; sleep 0.2; done
  sleep 1
}
# p50 and p99 of the numbers on stdin, in ms.
pct() { sort -n | awk '{a[NR]=$1} END {p50=a[int((NR+1)/2)]; i=int(NR*0.99+0.999); if (i>NR) i=NR; printf "%d samples, p50 %.1f ms, p99 %.1f ms\n", NR, p50, a[i]}'; }

# 1. pipework watch: the label says it, the log line says when it was ready.
docker run -d --name pwwbench --network none --label "pipework.eth1=$BR 10.66.0.2/24" \
  bb:latest /bin/sleep 1d >/dev/null
"$BIN" watch 2>"$D/watch.log" &
WPID=$!
sleep 1
restarts
kill "$WPID"; WPID=
W=$(sed -n 's/.*(\([0-9.]*\) ms after the start event).*/\1/p' "$D/watch.log" | pct)

# 2. docker events | while read: one pipework process per start.
docker rm -f pwwbench >/dev/null
docker run -d --name pwwbench --network none bb:latest /bin/sleep 1d >/dev/null
"$BIN" "$BR" pwwbench 10.66.0.2/24 >/dev/null
docker events --filter event=start --filter container=pwwbench --format '{{.ID}} {{.TimeNano}}' 2>/dev/null |
  while read -r id t; do
    "$BIN" "$BR" "$id" 10.66.0.2/24 >/dev/null
    echo "$(( ($(date +%s%N) - t) / 1000 ))" | awk '{printf "%.3f\n", $1/1000}'
  done >"$D/events.ms" &
EPID=$!
sleep 1
restarts
kill "$EPID" 2>/dev/null; EPID=
E=$(pct <"$D/events.ms")

echo "bench-watch: $N restarts, start event -> interfaces ready"
echo "  pipework watch:                    $W"
echo "  docker events | pipework per start: $E"
p99w=$(echo "$W" | sed -n 's/.*p99 \([0-9.]*\).*/\1/p')
p99e=$(echo "$E" | sed -n 's/.*p99 \([0-9.]*\).*/\1/p')
awk -v a="$p99w" -v b="$p99e" 'BEGIN {if (b > 0) printf "  p99 ratio watch/events-pipe: %.2f (target: p99 <= 20 ms)\n", a/b}'
