# Measuring and reporting for the data-path benchmarks
# (scripts/bench-datapath.sh on this host, scripts/bench-datapath-vm.sh in the
# VM tier): sourced, not run. The caller sets T (a scratch directory), SECS,
# ROUNDS, NSX (the command prefix that runs a client in its namespace) and
# declares its paths with add_path; then calls wait_paths, run_rounds and
# report. Header lines for the report go in $T/header.txt.
# shellcheck shell=bash

# Client commands per path: where it runs, and the address and ports it uses.
declare -A WHERE HOST PIPERF PSOCK PHTTP
add_path() { WHERE[$1]=$2; HOST[$1]=$3; PIPERF[$1]=$4; PSOCK[$1]=$5; PHTTP[$1]=$6; }

run_in() { # path, command...
  local w=${WHERE[$1]}
  shift
  if [ "$w" = ns ]; then "${NSX[@]}" "$@"; else "$@"; fi
}

answers() { # path, tries: a TCP connect to its HTTP port (iperf3's on a bulk-only path) succeeds
  local i port=${PHTTP[$1]}
  [ "$port" = - ] && port=${PIPERF[$1]}
  for ((i = 0; i < $2; i++)); do
    run_in "$1" timeout 2 python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' \
      "${HOST[$1]}" "$port" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

wait_paths() { # every selected path (SEL) answers: ARP, flow set-up, proxy start
  local p
  for p in "${SEL[@]}"; do
    [ -n "${WHERE[$p]:-}" ] || { echo "bench-datapath: no path $p (${ALL[*]})" >&2; exit 1; }
    answers "$p" 100 || { echo "bench-datapath: $p (${HOST[$p]}:${PHTTP[$p]}) never answered" >&2; exit 1; }
  done
}

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

measure() { # path, round: one file per measure, results.txt names what finished
  local p=$1 r=$2 h=${HOST[$1]}
  # A path can stop forwarding under us, e.g. when another job on a shared
  # host deletes the DOCKER-USER rule a bridge needs: say so, go on.
  if ! answers "$p" 20; then
    echo "bench-datapath: $p stopped answering in round $r; skipped (a FORWARD rule gone?)" >&2
    return 0
  fi
  iperf "$p" 1 > "$T/$p.$r.i1.json" || return 0
  iperf "$p" 8 > "$T/$p.$r.i8.json" || return 0
  # Bulk-only paths (IPv6: nginx and sockperf listen on IPv4 here).
  if [ "${PHTTP[$p]}" = - ]; then echo "$p $r" >> "$T/results.txt"; return 0; fi
  run_in "$p" timeout "$LIMIT" wrk -t 2 -c 32 -d "${SECS}s" --timeout 2s -H "Connection: close" \
    "http://$h:${PHTTP[$p]}/" > "$T/$p.$r.wrk" || return 0
  run_in "$p" timeout "$LIMIT" sockperf pp --tcp -i "$h" -p "${PSOCK[$p]}" -m 64 -t "$SECS" --full-rtt \
    > "$T/$p.$r.sp" 2>&1 || return 0
  echo "$p $r" >> "$T/results.txt"
}

run_rounds() { # ROUNDS rounds, each over SEL in a new random order
  local r p order
  : > "$T/results.txt"
  for r in $(seq 1 "$ROUNDS"); do
    # No process substitution: the VM tier's /dev has no /dev/fd.
    read -r -a order <<< "$(shuf -e "${SEL[@]}" | tr '\n' ' ')"
    echo "round $r/$ROUNDS: ${order[*]}" >&2
    for p in "${order[@]}"; do measure "$p" "$r"; done
  done
}

report() { # the summary table and ratios, from $T
  python3 "$(dirname "${BASH_SOURCE[0]}")/datapath-report.py" "$T" "$SECS" "$ROUNDS" "$NCPU"
}
