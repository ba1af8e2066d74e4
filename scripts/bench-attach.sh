#!/usr/bin/env bash
# Attach latency, side by side in one run:
#   - pipework vs the CNI reference bridge plugin (static IPAM) vs iproute2
#     doing the same steps (two ip -batch calls);
#   - the floor: /bin/true, `pipework --version`, and the kernel work alone
#     (a veth with its peer in the namespace, address, route), as one ip
#     exec per step and as a single `ip -batch`;
#   - attach by Docker name, and with 1,000 ports already on the bridge;
#   - detach vs a bare `ip link del` of the same pair;
#   - 64 attaches launched at once into 64 namespaces on one bridge, vs the
#     CNI bridge plugin doing the same 64 at once (total wall time);
#   - `pipework ls` with 1,000 attachments (1,000 namespaces) vs with 2;
#   - peak RSS of one attach (/usr/bin/time -v).
# Each command attaches into a running namespace; the undo step runs in
# --prepare, outside the timing.
#
# Every object is named pwb<hex pid>… (namespaces, bridges, veths, the
# Docker container, iptables comments) and removed on exit; the only
# exceptions are the random host-side veth names the CNI plugin picks, which
# go with their namespaces. eth0 and host routes are never touched.
# The numbers are noisy while other jobs use the CPUs: run it in one go.
#
# Usage: scripts/bench-attach.sh [runs]      (needs root; scripts/env-up.sh for Docker)
#        BIN=/usr/sbin/pipework scripts/bench-attach.sh   (time another binary;
#        the default is the static build of scripts/build-static.sh)
#        SKIP_MACVLAN=1 ...                  (leave out scripts/bench-macvlan.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
FEW=${FEW_RUNS:-10}      # runs for the slow rows (64 at once, ls over 1,000)
# The shipped binary: static, release profile (scripts/build-static.sh).
if [ -z "${BIN:-}" ]; then
  read -r BIN _ < <(scripts/build-static.sh)
fi
export BIN
P=$BIN
T=$(mktemp -d)
ID=$(printf '%x' $$)
X=pwb$ID                  # the prefix of everything we create
NS=${X}n                  # the guest of the single-attach rows
NSK=${X}k                 # holds the resident attachments
BR=${X}b
BR2=${X}c
BR3=${X}d                 # the bridge of the 1,000 attachments for ls
HV=${X}h                  # host end of the single attaches
CNI=/usr/lib/cni
PAR=${PAR:-64}            # attaches launched at once
LSN=${LSN:-1000}          # attachments listed by ls
for t in hyperfine python3 /usr/bin/time "$CNI/bridge" "$CNI/static"; do
  command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || {
    echo "bench-attach: $t missing (scripts/env-up.sh installs it)" >&2; exit 1; }
done
# shellcheck disable=SC1091
source /tmp/pw-env/env.sh 2>/dev/null || true

cleanup() {
  set +e
  # Detach the resident attachments first: that also removes the Docker
  # FORWARD rule pipework added for each bridge.
  "$P" detach "netns:$NSK" >/dev/null 2>&1
  "$P" detach "netns:$NS" >/dev/null 2>&1
  [ -n "${CID:-}" ] && docker rm -f "$CID" >/dev/null 2>&1
  if [ -f "$T/bulk.del" ]; then ip -force -batch "$T/bulk.del" 2>/dev/null; fi
  # Every namespace of ours; their veths (ours and the CNI plugin's) go too.
  ip netns list 2>/dev/null | awk -v x="$X" 'index($1, x) == 1 { print "netns del " $1 }' > "$T/ns.del"
  ip -force -batch "$T/ns.del" 2>/dev/null
  for b in "$BR" "$BR2" "$BR3"; do ip link del "$b" 2>/dev/null; done
  # The kernel removes a dead namespace's veths in the background: give it
  # a few seconds, then delete whatever of ours is left, in one ip process.
  ours() { ip -o link show 2>/dev/null | awk -F': ' -v x="$X" 'index($2, x) == 1 { sub(/@.*/, "", $2); print $2 }'; }
  for _ in $(seq 1 100); do [ -z "$(ours)" ] && break; sleep 0.2; done
  ours | sed 's/^/link del /' > "$T/links.del"
  ip -force -batch "$T/links.del" 2>/dev/null
  # A bridge whose guests went with their namespaces (no detach) keeps its
  # pipework:BRIDGE rule: remove any rule that names our prefix.
  for chain in DOCKER-USER FORWARD; do
    iptables -S "$chain" 2>/dev/null | grep -F -- "$X" | sed -e 's/^-A /-D /' -e 's/"//g' |
      while read -ra rule; do iptables -w "${rule[@]}" 2>/dev/null; done
  done
  rm -f /run/pipework/firewall/"$X"*
  rm -rf "$T"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "$NSK"
ip link add "$BR" type bridge && ip link set "$BR" up
ip link add "$BR2" type bridge && ip link set "$BR2" up
# A resident attachment keeps each bridge "in use", as on a real host: the
# one-time Docker FORWARD rule is then not re-added on every iteration.
$P "$BR" "netns:$NSK" -l "${X}r1" 10.250.255.1/16 2>/dev/null
$P "$BR2" "netns:$NSK" -i eth2 -l "${X}r2" 10.251.255.1/16 2>/dev/null

# --- iproute2: the same steps as pipework, two ip -batch calls -------------
cat > "$T/host.batch" <<B
link add $HV mtu 1500 type veth peer name eth1 netns $NS
link set $HV master $BR
link set $HV up
B
cat > "$T/ns.batch" <<B
link set eth1 up
addr add 10.250.0.2/16 dev eth1
route replace default via 10.250.0.1 dev eth1
B
# --- the floor: the kernel work alone (no bridge, host end left down) ------
# One ip process inside the namespace; the peer goes to pid 1's namespace.
cat > "$T/floor.batch" <<B
link add eth1 type veth peer name $HV netns 1
link set eth1 up
addr add 10.250.0.2/16 dev eth1
route add default via 10.250.0.1
B
FLOOR_EXECS="ip link add $HV type veth peer name eth1 netns $NS && ip -n $NS link set eth1 up && ip -n $NS addr add 10.250.0.2/16 dev eth1 && ip -n $NS route add default via 10.250.0.1"

# --- CNI reference bridge plugin with static IPAM ---------------------------
cni_conf() { # address
  cat <<J
{"cniVersion":"1.0.0","name":"$X","type":"bridge","bridge":"$BR","isGateway":false,
 "ipam":{"type":"static","addresses":[{"address":"$1","gateway":"10.250.0.1"}],
         "routes":[{"dst":"0.0.0.0/0","gw":"10.250.0.1"}]}}
J
}
cni_conf 10.250.0.2/16 > "$T/cni.json"
CNIENV="CNI_CONTAINERID=$X CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth1 CNI_PATH=$CNI"
UNDO="$P detach netns:$NS >/dev/null 2>&1; env CNI_COMMAND=DEL $CNIENV $CNI/bridge < $T/cni.json >/dev/null 2>&1; ip -n $NS link del eth1 2>/dev/null; ip link del $HV 2>/dev/null; true"

printf '#!/bin/sh\n%s\n' "$UNDO" > "$T/undo.sh"
chmod +x "$T/undo.sh"

# Single programs without a shell (-N): hyperfine's shell-start correction
# is as large as /bin/true itself, so the floor is timed exec to exit.
hyperfine -N --runs "$RUNS" --warmup 5 --export-json "$T/n.json" \
  -n bin-true --prepare "$T/undo.sh" "/bin/true" \
  -n pipework-version --prepare "$T/undo.sh" "$P --version" \
  -n floor-ip-batch --prepare "$T/undo.sh" "ip -n $NS -batch $T/floor.batch" \
  -n pipework-netns-N --prepare "$T/undo.sh" \
     "$P $BR netns:$NS -l $HV 10.250.0.2/16@10.250.0.1" >/dev/null
# Command lines (&&, stdin), through the shell as before.
hyperfine --runs "$RUNS" --warmup 5 --export-json "$T/a.json" \
  -n floor-ip-execs --prepare "$UNDO" "$FLOOR_EXECS" \
  -n pipework-netns --prepare "$UNDO" \
     "$P $BR netns:$NS -l $HV 10.250.0.2/16@10.250.0.1" \
  -n cni-bridge --prepare "$UNDO" \
     "env CNI_COMMAND=ADD $CNIENV $CNI/bridge < $T/cni.json >/dev/null" \
  -n iproute2-batch --prepare "$UNDO" \
     "ip -batch $T/host.batch && ip -n $NS -batch $T/ns.batch" >/dev/null
sh -c "$UNDO"

# --- detach vs a bare ip link del of the same pair ---------------------------
hyperfine --runs "$RUNS" --warmup 5 --export-json "$T/del.json" \
  -n pipework-detach --prepare "$UNDO; $P $BR netns:$NS -l $HV 10.250.0.2/16@10.250.0.1 >/dev/null" \
     "$P detach netns:$NS" \
  -n ip-link-del --prepare "$UNDO; ip -batch $T/host.batch && ip -n $NS -batch $T/ns.batch" \
     "ip link del $HV" >/dev/null
sh -c "$UNDO"

# --- peak RSS of one attach (and of the alternatives, for scale) -------------
rss() { # label, command...: the largest of 5 runs, KiB
  local label=$1 max=0 r
  shift
  for _ in 1 2 3 4 5; do
    sh -c "$UNDO"
    /usr/bin/time -v -o "$T/time.out" "$@" >/dev/null 2>&1 < "${STDIN:-/dev/null}"
    r=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$T/time.out")
    [ "$r" -gt "$max" ] && max=$r
  done
  echo "$label $max" >> "$T/rss.txt"
}
: > "$T/rss.txt"
rss pipework-attach "$P" "$BR" "netns:$NS" -l "$HV" 10.250.0.2/16@10.250.0.1
STDIN=$T/cni.json rss cni-bridge-add env CNI_COMMAND=ADD "CNI_CONTAINERID=$X" "CNI_NETNS=/run/netns/$NS" \
  CNI_IFNAME=eth1 "CNI_PATH=$CNI" "$CNI/bridge"
rss floor-ip-batch ip -n "$NS" -batch "$T/floor.batch"
sh -c "$UNDO"

# --- by Docker name ---------------------------------------------------------
if docker info >/dev/null 2>&1 && docker image inspect bb:latest >/dev/null 2>&1; then
  CID=${X}-ctr
  docker run -d --name "$CID" --network none bb:latest /bin/sleep 3600 >/dev/null
  hyperfine --runs "$RUNS" --warmup 5 --export-json "$T/d.json" \
    -n pipework-docker-name --prepare "$P detach $CID >/dev/null 2>&1 || true" \
       "$P $BR $CID -l ${X}dk 10.250.0.3/16@10.250.0.1" >/dev/null
  "$P" detach "$CID" >/dev/null 2>&1 || true
fi

# --- 64 attaches at once, 64 namespaces, one bridge --------------------------
: > "$T/par-ns.add"
for i in $(seq 1 "$PAR"); do
  echo "netns add ${X}p$i" >> "$T/par-ns.add"
  cni_conf "10.250.1.$i/16" > "$T/cni-$i.json"
done
ip -batch "$T/par-ns.add"
cat > "$T/par.sh" <<'S'
#!/usr/bin/env bash
# par.sh pipework|cni|undo: all at once, fail if any one fails.
set -euo pipefail
pids=()
for i in $(seq 1 "$PAR"); do
  case $1 in
    pipework) "$P" "$BR" "netns:${X}p$i" -l "${X}p$i" "10.250.1.$i/16@10.250.0.1" >/dev/null & ;;
    cni) env CNI_COMMAND=ADD "CNI_CONTAINERID=${X}p$i" "CNI_NETNS=/run/netns/${X}p$i" \
           CNI_IFNAME=eth1 "CNI_PATH=$CNI" "$CNI/bridge" < "$T/cni-$i.json" >/dev/null & ;;
    undo) { ip -n "${X}p$i" link del eth1 2>/dev/null || true; } & ;;
  esac
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
S
chmod +x "$T/par.sh"
export P BR X T PAR CNI
hyperfine --runs "$FEW" --warmup 1 --export-json "$T/par.json" \
  -n "pipework-${PAR}-at-once" --prepare "$T/par.sh undo" "$T/par.sh pipework" \
  -n "cni-bridge-${PAR}-at-once" --prepare "$T/par.sh undo" "$T/par.sh cni" >/dev/null
"$T/par.sh" undo

# --- scaling: 10 ports vs 1,000 ports already on the bridge -----------------
scale() { # $1 = number of existing ports, $2 = output json
  : > "$T/bulk.add"; : > "$T/bulk.del"
  for i in $(seq 1 "$1"); do
    echo "link add ${X}k$i type veth peer name ${X}q$i" >> "$T/bulk.add"
    echo "link set ${X}k$i master $BR2 up" >> "$T/bulk.add"
    echo "link del ${X}k$i" >> "$T/bulk.del"
  done
  ip -batch "$T/bulk.add"
  hyperfine --runs "$RUNS" --warmup 5 --export-json "$2" \
    -n "pipework-with-$1-ports" --prepare "$P detach netns:$NS >/dev/null 2>&1 || true" \
       "$P $BR2 netns:$NS -l $HV 10.251.0.2/16@10.251.0.1" >/dev/null
  $P detach "netns:$NS" >/dev/null 2>&1 || true
  ip -force -batch "$T/bulk.del"
}
scale 10 "$T/s10.json"
scale 1000 "$T/s1000.json"

# --- ls: the 2 resident attachments, then 1,000 more in 1,000 namespaces ----
hyperfine --runs "$FEW" --warmup 2 --export-json "$T/ls2.json" \
  -n "pipework-ls-2" "$P ls" >/dev/null
ip link add "$BR3" type bridge && ip link set "$BR3" up
: > "$T/ls-ns.add"
for i in $(seq 1 "$LSN"); do echo "netns add ${X}l$i" >> "$T/ls-ns.add"; done
ip -batch "$T/ls-ns.add"
lsstart=$(date +%s.%N)
seq 1 "$LSN" | xargs -P 2 -I{} sh -c \
  "$P $BR3 netns:${X}l{} -l ${X}l{} 10.253.\$(({} / 250)).\$(({} % 250 + 1))/16 >/dev/null"
lsend=$(date +%s.%N)
n=$($P ls | grep -c "${X}l")
[ "$n" = "$LSN" ] || { echo "bench-attach: ls shows $n of $LSN attachments" >&2; exit 1; }
hyperfine --runs "$FEW" --warmup 1 --export-json "$T/ls1000.json" \
  -n "pipework-ls-$((LSN + 2))" "$P ls" >/dev/null
echo "$LSN serial-ish attaches (xargs -P 2) took $(echo "$lsend - $lsstart" | bc) s" > "$T/ls-setup.txt"

python3 - "$T" "$PAR" "$LSN" <<'PY'
import json, sys, os
T, PAR, LSN = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
for f in ["n.json", "a.json", "del.json", "d.json", "par.json", "s10.json", "s1000.json", "ls2.json", "ls1000.json"]:
    p = os.path.join(T, f)
    if os.path.exists(p):
        for r in json.load(open(p))["results"]:
            rows.append((r["command"], r["median"] * 1e3, r["mean"] * 1e3, (r["stddev"] or 0) * 1e3))
med = {n: m for n, m, _, _ in rows}
print(f"{'what':28} {'median ms':>10} {'mean ms':>9} {'stddev':>8}")
for n, m, mean, sd in rows:
    print(f"{n:28} {m:10.2f} {mean:9.2f} {sd:8.2f}")
def ratio(a, b):
    if med.get(a) and med.get(b):
        print(f"ratio {a} / {b}: {med[a] / med[b]:.2f}x")
# Within one hyperfine mode each: -N rows with -N rows, shell with shell.
for other in ["floor-ip-batch", "bin-true"]:
    ratio("pipework-netns-N", other)
for other in ["cni-bridge", "iproute2-batch", "floor-ip-execs"]:
    ratio("pipework-netns", other)
ratio("pipework-version", "bin-true")
ratio("pipework-detach", "ip-link-del")
ratio(f"pipework-{PAR}-at-once", f"cni-bridge-{PAR}-at-once")
ratio("pipework-with-1000-ports", "pipework-with-10-ports")
ratio(f"pipework-ls-{LSN + 2}", "pipework-ls-2")
print("peak RSS (largest of 5 runs):")
for line in open(os.path.join(T, "rss.txt")):
    name, kib = line.rsplit(" ", 1)
    print(f"  {name:26} {int(kib) / 1024:6.1f} MiB")
print(open(os.path.join(T, "ls-setup.txt")).read().strip())
PY

# --- macvlan beside the CNI reference macvlan plugin (same run) -------------
if [ -x scripts/bench-macvlan.sh ] && [ -z "${SKIP_MACVLAN:-}" ]; then
  echo
  scripts/bench-macvlan.sh "$RUNS"
fi
