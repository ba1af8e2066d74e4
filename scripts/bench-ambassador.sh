#!/usr/bin/env bash
# Side-by-side benchmark of `pipework ambassador` against the forwarders people
# use instead (docker-proxy, haproxy in tcp mode, socat), all on loopback, in
# one run, reported as ratios. Needs: iperf3, haproxy, socat, docker-proxy
# (from docker.io; skipped if absent).
#
#   scripts/bench-ambassador.sh   # BENCH_SECS=3 per measurement, BENCH_ROUNDS=3, BENCH_IDLE=9000
#
# Every process started here is stopped by pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECS:-3}
ROUNDS=${BENCH_ROUNDS:-3}
IDLE=${BENCH_IDLE:-9000}
CONC=${BENCH_CONC:-32}

cargo build --release --quiet --bin pipework --example ambassador_bench
PW=$PWD/target/release/pipework
LG=$PWD/target/release/examples/ambassador_bench
W=$(mktemp -d /tmp/pwa-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
bg() { "$@" & PIDS+=($!); }
wait_port() { for _ in $(seq 1 100); do (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

IPERF=27301 ECHO=27302
# Each forwarder listens twice: in front of iperf3 (P) and of the echo server (P+10).
OURS=27311 DPROXY=27312 HAPROXY=27313 SOCAT=27314

bg iperf3 -s -p $IPERF >"$W/iperf3.log" 2>&1
bg "$LG" echo 127.0.0.1:$ECHO
wait_port $IPERF; wait_port $ECHO

# Forwarder pids per target, to charge each its CPU time (the machine is
# shared and noisy: CPU per unit of work is the steadier comparison).
declare -A PID_I PID_E
for t in $IPERF $ECHO; do
  o=$((t == IPERF ? 0 : 10))
  bg "$PW" ambassador --listen 127.0.0.1:$((OURS + o)) --to 127.0.0.1:$t --health-interval 0 2>>"$W/ours.log"
  ours=$!
  bg socat TCP-LISTEN:$((SOCAT + o)),bind=127.0.0.1,reuseaddr,fork,backlog=4096 TCP:127.0.0.1:$t
  soc=$!
  dp=
  if [ -x /usr/sbin/docker-proxy ]; then
    bg /usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port $((DPROXY + o)) \
      -container-ip 127.0.0.1 -container-port $t 3>/dev/null
    dp=$!
  fi
  if [ $t = $IPERF ]; then PID_I=([ours]=$ours [socat]=$soc [docker-proxy]=$dp)
  else PID_E=([ours]=$ours [socat]=$soc [docker-proxy]=$dp); fi
done
cat >"$W/haproxy.cfg" <<EOF
global
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen iperf
  bind 127.0.0.1:$HAPROXY
  server s1 127.0.0.1:$IPERF
listen echo
  bind 127.0.0.1:$((HAPROXY + 10))
  server s1 127.0.0.1:$ECHO
EOF
bg haproxy -db -f "$W/haproxy.cfg"
PID_I[haproxy]=$! PID_E[haproxy]=$!
# utime+stime+cutime+cstime in clock ticks (children: socat forks per connection).
ticks() { [ -n "$1" ] && awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" || echo 0; }
HZ=$(getconf CLK_TCK)
for p in $OURS $SOCAT $HAPROXY; do wait_port $p; wait_port $((p + 10)); done
[ -x /usr/sbin/docker-proxy ] && { wait_port $DPROXY; wait_port $((DPROXY + 10)); }

declare -A PORT=([direct]=$IPERF [ours]=$OURS [docker-proxy]=$DPROXY [haproxy]=$HAPROXY [socat]=$SOCAT)
NAMES=(direct ours docker-proxy haproxy socat)
[ -x /usr/sbin/docker-proxy ] || NAMES=(direct ours haproxy socat)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# The machine is shared: every measurement runs ROUNDS times, forwarders
# interleaved, and the median is reported.
declare -A G_ALL GB_ALL T_I EP_I C_ALL CT_ALL E_ALL P50_ALL P99_ALL
# A single stream through any forwarder needs a third busy process next to
# iperf3's two: on a 2-core machine that others load, the ratio to direct
# follows the load, not the forwarder. So the load is printed, and the
# forwarder's CPU per GByte (steady across loads) with it.
echo "load before: $(uptime)"
for r in $(seq 1 "$ROUNDS"); do
  for n in "${NAMES[@]}"; do
    pid=${PID_I[$n]:-}; c0=$(ticks "$pid")
    # GBytes (2^30), Gbit/s, and iperf3's own CPU seconds in its client
    # and server (the two ends of the stream, kernel time included).
    read -r gbytes gbps ends < <(iperf3 -c 127.0.0.1 -p "${PORT[$n]}" -t "$SECS" -J | python3 -c '
import json, sys
e = json.load(sys.stdin)["end"]
r, c = e["sum_received"], e["cpu_utilization_percent"]
print("%.3f %.2f %.3f" % (r["bytes"] / 2**30, r["bits_per_second"] / 1e9,
                         (c["host_total"] + c["remote_total"]) / 100 * r["seconds"]))')
    sleep 0.3 # let socat reap its per-connection child, so its CPU is counted
    G_ALL[$n]+="$gbps "; GB_ALL[$n]+="$gbytes "; T_I[$n]=$(( ${T_I[$n]:-0} + $(ticks "$pid") - c0 ))
    EP_I[$n]=$(awk -v a="${EP_I[$n]:-0}" -v b="$ends" 'BEGIN { print a + b }')
  done
  for n in "${NAMES[@]}"; do
    p=$((${PORT[$n]} + 10)); [ "$n" = direct ] && p=$ECHO
    pid=${PID_E[$n]:-}; c0=$(ticks "$pid")
    out=$("$LG" rate 127.0.0.1:$p "$SECS" "$CONC")
    C_ALL[$n]+="$(awk '{ print $2 }' <<<"$out") "; CT_ALL[$n]=$(( ${CT_ALL[$n]:-0} + $(ticks "$pid") - c0 ))
    E_ALL[$n]=$(( ${E_ALL[$n]:-0} + $(awk '{ print $4 }' <<<"$out") ))
  done
  for n in "${NAMES[@]}"; do
    p=$((${PORT[$n]} + 10)); [ "$n" = direct ] && p=$ECHO
    out=$("$LG" lat 127.0.0.1:$p 20000)
    P50_ALL[$n]+="$(awk '{ print $2 }' <<<"$out") "; P99_ALL[$n]+="$(awk '{ print $4 }' <<<"$out") "
  done
done

echo "load after: $(uptime)"
echo "== single TCP stream (iperf3 -t $SECS, median of $ROUNDS), Gbit/s"
declare -A GBPS PATHCPU
for n in "${NAMES[@]}"; do
  GBPS[$n]=$(median <<<"${G_ALL[$n]}")
  total_gb=$(tr ' ' '\n' <<<"${GB_ALL[$n]}" | awk '{ s += $1 } END { print s }')
  cpu=$(awk -v t="${T_I[$n]}" -v hz="$HZ" -v g="$total_gb" 'BEGIN { printf "%.3f", t / hz / g }')
  [ -z "${PID_I[$n]:-}" ] && cpu=-
  # Every CPU second the stream cost (iperf3's two ends plus the
  # forwarder): on a machine whose cores are all busy, the ratio to direct
  # cannot beat direct's figure over this one.
  path=$(awk -v e="${EP_I[$n]}" -v t="${T_I[$n]}" -v hz="$HZ" -v g="$total_gb" 'BEGIN { printf "%.3f", (e + t / hz) / g }')
  PATHCPU[$n]=$path
  printf "  %-13s %6s   (%s of direct)   all runs: %s  forwarder CPU %s s/GByte, whole path %s s/GByte\n" "$n" \
    "${GBPS[$n]}" "$(ratio "${GBPS[$n]}" "${GBPS[direct]}")" "${G_ALL[$n]}" "$cpu" "$path"
done

echo "== new short connections per second ($CONC concurrent clients, connect + 1-byte ping-pong + close, ${SECS}s, median of $ROUNDS)"
declare -A CPS
for n in "${NAMES[@]}"; do
  CPS[$n]=$(median <<<"${C_ALL[$n]}")
  total=$(tr ' ' '\n' <<<"${C_ALL[$n]}" | awk -v s="$SECS" '{ t += $1 * s } END { print t }')
  cpu=$(awk -v t="${CT_ALL[$n]}" -v hz="$HZ" -v c="$total" 'BEGIN { if (c > 0) printf "%.1f", t / hz * 1e6 / c; else print "n/a" }')
  [ -z "${PID_E[$n]:-}" ] && cpu=-
  printf "  %-13s %8s conns/s  errors %s   all runs: %s  forwarder CPU %s us/conn\n" "$n" "${CPS[$n]}" \
    "${E_ALL[$n]}" "${C_ALL[$n]}" "$cpu"
done
echo "  ours/haproxy $(ratio "${CPS[ours]}" "${CPS[haproxy]}")   ours/socat $(ratio "${CPS[ours]}" "${CPS[socat]}")"

echo "== small request/response latency (64-byte ping-pong, 20000 rounds on one connection, median of $ROUNDS)"
declare -A P99
for n in "${NAMES[@]}"; do
  P99[$n]=$(median <<<"${P99_ALL[$n]}")
  added=$(awk -v a="${P99[$n]}" -v b="${P99[direct]}" 'BEGIN { printf "%.1f", a - b }')
  printf "  %-13s p50 %6s us  p99 %7s us   added p99 %7s us   (p99 runs: %s)\n" "$n" \
    "$(median <<<"${P50_ALL[$n]}")" "${P99[$n]}" "$added" "${P99_ALL[$n]}"
done


echo "== $IDLE concurrent idle connections through a fresh ambassador"
HOLD=27331
bg "$PW" ambassador --listen 127.0.0.1:$HOLD --to 127.0.0.1:$ECHO --health-interval 0 2>>"$W/hold.log"
AMB=$!
wait_port $HOLD
sleep 0.5
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
rss0=$(rss $AMB) fd0=$(fds $AMB)
mkfifo "$W/hold.in"
"$LG" hold 127.0.0.1:$HOLD "$IDLE" <"$W/hold.in" >"$W/hold.out" &
HOLDER=$!; PIDS+=($HOLDER)
exec 8>"$W/hold.in"
for _ in $(seq 1 600); do grep -q '^held' "$W/hold.out" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
rss1=$(rss $AMB) fd1=$(fds $AMB)
held=$(awk '/^held/ { print $2 }' "$W/hold.out")
exec 8>&-
wait $HOLDER || true
alive=$(awk '/^alive/ { print $2 }' "$W/hold.out")
printf "  held %s (failed %s), still alive after holding: %s\n" "$held" "$(awk '/^held/ { print $4 }' "$W/hold.out")" "$alive"
printf "  ambassador fds %s -> %s (ulimit -n %s), pipes while idle: %s\n" "$fd0" "$fd1" "$(ulimit -n)" \
  "$(( fd1 - fd0 - 2 * held ))"
per=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n; else print "n/a" }')
printf "  RSS %s KiB -> %s KiB: %s KiB per connection (target <= 10)\n" "$rss0" "$rss1" "$per"

echo "== summary (targets: stream >= 0.80 of direct and >= 1.5x docker-proxy, conns/s >= haproxy and >= 3x socat, RSS <= 10 KiB/conn)"
[ -n "${GBPS[docker-proxy]:-}" ] && printf "  stream ours/docker-proxy %s (CPU-bound ceiling, whole-path CPU docker-proxy/ours: %s)\n" \
  "$(ratio "${GBPS[ours]}" "${GBPS[docker-proxy]}")" "$(ratio "${PATHCPU[docker-proxy]}" "${PATHCPU[ours]}")"
printf "  stream ours/direct ceiling when every core is busy (whole-path CPU direct/ours): %s\n" \
  "$(ratio "${PATHCPU[direct]}" "${PATHCPU[ours]}")"
printf "  stream ours/direct %s   conns/s ours/haproxy %s ours/socat %s   RSS/conn %s KiB   added p99 %s us\n" \
  "$(ratio "${GBPS[ours]}" "${GBPS[direct]}")" "$(ratio "${CPS[ours]}" "${CPS[haproxy]}")" \
  "$(ratio "${CPS[ours]}" "${CPS[socat]}")" "$per" \
  "$(awk -v a="${P99[ours]}" -v b="${P99[direct]}" 'BEGIN { printf "%.1f", a - b }')"
