#!/usr/bin/env bash
# What the overlay costs those who never use it, side by side in one run:
#   - the static binary's size with the overlay (default features) and
#     without it (--no-default-features);
#   - attach latency of both binaries, interleaved rounds on one bridge
#     (attach timed, detach in between untimed), medians and their ratio;
#   - with COLD=1, the CPU time (user+sys) of a cold static build of each,
#     in fresh target folders (CPU time, not wall time: this 2-core machine
#     is rarely idle, and CPU time barely moves with the load).
# Objects are named pwe<hex pid>… and removed on exit.
# Usage: scripts/bench-build.sh [rounds]        (root; default 100 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-100}
TARGET=x86_64-unknown-linux-gnu
OUT=$(mktemp -d /tmp/pwe.XXXX)
ID=$(printf '%x' $$)
BR=brpwe$ID NS=pwe${ID}n
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$BR" 2>/dev/null || true
  rm -f "/run/pipework/firewall/$BR"
  rm -rf "$OUT"
}
trap cleanup EXIT

build() { # name, extra cargo args...
  local name=$1; shift
  local tgt=${CARGO_TARGET_DIR:-$PWD/target}
  if [ "${COLD:-0}" = 1 ]; then tgt=$OUT/target-$name; fi
  /usr/bin/time -f "%U %S" -o "$OUT/time-$name" env CARGO_TARGET_DIR="$tgt" \
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked -q --target "$TARGET" "$@"
  cp "$tgt/$TARGET/release/pipework" "$OUT/pipework-$name"
  echo "$name: $(stat -c %s "$OUT/pipework-$name") bytes; build cpu $(awk '{printf "%.0f s", $1+$2}' "$OUT/time-$name")"
}
build overlay
build lean --no-default-features

ip netns add "$NS"
ip link add "$BR" type bridge && ip link set "$BR" up
for name in overlay lean; do : > "$OUT/lat-$name"; done
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which binary goes first, so neither always meets a warm cache.
  if [ $((r % 2)) = 0 ]; then order="overlay lean"; else order="lean overlay"; fi
  for name in $order; do
    b=$OUT/pipework-$name
    t0=$(date +%s%N)
    "$b" "$BR" -i eth1 "netns:$NS" 10.239.0.2/24 >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) >> "$OUT/lat-$name"
    "$b" detach "netns:$NS" >/dev/null 2>&1
  done
done
python3 - "$OUT" <<'PY'
import statistics, sys
d = sys.argv[1]
m = {}
for n in ("overlay", "lean"):
    v = [int(x) for x in open(f"{d}/lat-{n}")]
    m[n] = statistics.median(v)
    print(f"attach {n}: median {m[n]/1000:.2f} ms over {len(v)} rounds")
print(f"ratio overlay/lean: {m['overlay']/m['lean']:.3f}")
PY
