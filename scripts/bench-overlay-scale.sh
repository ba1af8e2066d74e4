#!/usr/bin/env bash
# The overlay at scale (issue #18): one real agent, etcd preloaded with N
# hosts x 20 endpoints written as agents write them (a host key, and per
# endpoint its key and its reservation, under a lease). Reports:
#  - start -> every entry programmed (observed in the kernel, and the
#    agent's own "synced" line: list + diff + writes);
#  - put -> kernel entry: from sending one new endpoint's put to etcd until
#    the neighbour entry's netlink notification, p50/p99 over PUTS puts
#    (the put's own round trip, etcd's commit included, is shown too);
#  - agent peak RSS (VmHWM);
#  - bytes the agent read from etcd per change (its client's counter);
#  - `pipework overlay status --json` wall time.
# The agent host and etcd are two network namespaces on a veth pair; the
# N simulated hosts exist only in etcd (their underlay addresses are never
# dialled: VXLAN entries only point at them).
# shellcheck disable=SC2086  # names and addresses made here, no spaces
# Usage: scripts/bench-overlay-scale.sh N [PUTS]   (root; etcd, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:?usage: bench-overlay-scale.sh N [PUTS]}
PUTS=${2:-50}
EPS=20
BIN=${PIPEWORK:-${CARGO_TARGET_DIR:-$PWD/target}/release/pipework}
[ -x "$BIN" ] || cargo build --release -q
P=pwvz$$
W=$(mktemp -d /tmp/$P.XXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for n in ${P}a ${P}e; do
    ino=$(stat -L -c %i "/run/netns/$n" 2>/dev/null || true)
    [ -n "$ino" ] && rm -rf "/run/pipework/overlay/$ino"
    ip netns del "$n" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add ${P}a; ip netns add ${P}e
ip link add ${P}x type veth peer name eth0 netns ${P}a
ip link set ${P}x netns ${P}e
ip -n ${P}e link set ${P}x name eth0
for n in a e; do ip -n ${P}$n link set lo up; ip -n ${P}$n link set eth0 up; done
ip -n ${P}e addr add 10.232.0.1/24 dev eth0
ip -n ${P}a addr add 10.232.0.2/24 dev eth0
E=http://10.232.0.1:2379
ip netns exec ${P}e etcd --name z --data-dir $W/etcd --listen-client-urls $E \
  --advertise-client-urls $E --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster z=http://127.0.0.1:2380 \
  --quota-backend-bytes 4294967296 >$W/etcd.log 2>&1 &
PIDS+=($!)
until ip netns exec ${P}a etcdctl --endpoints $E put /pwvz x >/dev/null 2>&1; do sleep 0.2; done
export PIPEWORK_ETCD=$E
ip netns exec ${P}a "$BIN" overlay create scale --subnet 10.64.0.0/14 --mtu 1450 >/dev/null

# The preload, 120 puts per transaction (etcd allows 128).
t0=$(date +%s%N)
ip netns exec ${P}a python3 - "$N" "$EPS" <<'PY'
import base64, json, http.client, sys, time
N, EPS = int(sys.argv[1]), int(sys.argv[2])
b = lambda s: base64.b64encode(s.encode()).decode()
c = http.client.HTTPConnection("10.232.0.1", 2379, timeout=60)
def post(path, body):
    c.request("POST", path, json.dumps(body))
    r = c.getresponse(); out = r.read()
    assert r.status == 200, out
    return json.loads(out)
lease = post("/v3/lease/grant", {"TTL": "7200"})["ID"]
now = int(time.time())
ops = []
def put(k, v):
    ops.append({"request_put": {"key": b(k), "value": b(json.dumps(v, separators=(",", ":"))), "lease": lease}})
    if len(ops) == 120: flush()
def flush():
    if ops: post("/v3/kv/txn", {"success": ops}); del ops[:]
for h in range(N):
    ul = "10.250.%d.%d" % (h // 250, h % 250 + 1)
    put("/pipework/overlay/host/s%d" % h, {"name": "s%d" % h, "underlay": ul,
        "underlay_if": "eth0", "underlay_mtu": 1500, "lease": int(lease)})
    for e in range(EPS):
        n = 0x0a400001 + h * EPS + e
        ip = "%d.%d.%d.%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)
        mac = "02:77:%02x:%02x:%02x:%02x" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)
        put("/pipework/overlay/ep/scale/" + ip, {"ip": ip, "mac": mac, "host": "s%d" % h,
            "container": "c%08x" % n, "ifname": "eth1", "hi": "pwv%05x" % e, "since": now})
        put("/pipework/overlay/resv/scale/" + ip, {"host": "s%d" % h, "container": "c%08x" % n, "since": now})
flush()
PY
t1=$(date +%s%N)
TOTAL=$((N * EPS))
echo "scale: $N hosts x $EPS endpoints = $TOTAL endpoints (+ reservations) preloaded in $(( (t1 - t0) / 1000000 )) ms"

# Start -> all programmed. --networks: build it without a local container.
t0=$(date +%s%N)
ip netns exec ${P}a env PIPEWORK_OVERLAY_STATS=$W/stats "$BIN" overlay agent --underlay eth0 \
  --name bench --ttl 10 --networks scale 2>$W/agent.log &
AGENT=$!; PIDS+=($AGENT)
until [ "$(ip -n ${P}a neigh show dev vx-scale 2>/dev/null | grep -c PERMANENT)" -ge "$TOTAL" ]; do
  sleep 0.1
  kill -0 $AGENT || { cat $W/agent.log; exit 1; }
done
t1=$(date +%s%N)
synced=$(grep -o 'programmed in [0-9]* ms' $W/agent.log | head -1 | grep -o '[0-9]*')
echo "start -> all $TOTAL entries programmed: $(( (t1 - t0) / 1000000 )) ms observed (agent: list + diff + writes ${synced} ms)"
rss_start=$(awk '/VmHWM/{print $2}' /proc/$AGENT/status)

# put -> kernel entry, one at a time, new endpoints of host s1.
sleep 1
ip netns exec ${P}a python3 - "$PUTS" "$W/stats" "$W/lat" <<'PY'
import base64, json, http.client, socket, struct, sys, time
PUTS, stats, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
b = lambda s: base64.b64encode(s.encode()).decode()
def read_bytes():
    for l in open(stats):
        k, v = l.split()
        if k == "etcd_bytes_read": return int(v)
    return 0
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
nl.bind((0, 4))  # RTMGRP_NEIGH
nl.settimeout(10)
c = http.client.HTTPConnection("10.232.0.1", 2379, timeout=10)
def seen(msg, want):
    off = 0
    while off + 16 <= len(msg):
        ln, typ = struct.unpack_from("=IH", msg, off)
        if ln < 16: break
        if typ == 28:  # RTM_NEWNEIGH
            fam = msg[off + 16]
            a = off + 16 + 12
            while fam == 2 and a + 4 <= off + ln:
                alen, atyp = struct.unpack_from("=HH", msg, a)
                if alen < 4: break
                if atyp == 1 and msg[a + 4:a + 8] == want: return True
                a += (alen + 3) & ~3
        off += (ln + 3) & ~3
    return False
lat, rtt, after = [], [], []
b0 = read_bytes()
for i in range(PUTS):
    ip = "10.67.200.%d" % (i + 1)
    ep = {"ip": ip, "mac": "", "host": "s1", "container": "new%d" % i, "ifname": "eth1", "hi": "x", "since": int(time.time())}
    body = json.dumps({"key": b("/pipework/overlay/ep/scale/" + ip), "value": b(json.dumps(ep))})
    want = socket.inet_aton(ip)
    t0 = time.monotonic()
    c.request("POST", "/v3/kv/put", body)
    r = c.getresponse(); r.read()
    t1 = time.monotonic()
    got = False
    # The notification may have come before the put's answer: it waits in the socket.
    while not got:
        got = seen(nl.recv(1 << 20), want)
    t2 = time.monotonic()
    lat.append((t2 - t0) * 1000); rtt.append((t1 - t0) * 1000); after.append(max(0.0, (t2 - t1) * 1000))
    time.sleep(0.02)
time.sleep(0.3)
b1 = read_bytes()
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
with open(out, "w") as f:
    f.write("%.2f %.2f %.2f %d %.2f %.2f\n" % (pct(lat, 50), pct(lat, 99), pct(rtt, 50), (b1 - b0) // PUTS, pct(after, 50), pct(after, 99)))
PY
read -r p50 p99 rtt bpc a50 a99 <$W/lat
echo "put -> kernel neighbour entry: p50 ${p50} ms, p99 ${p99} ms over $PUTS puts (the put's own round trip, etcd commit included: p50 ${rtt} ms; after the put's answer: p50 ${a50} ms, p99 ${a99} ms)"
echo "bytes read from etcd per change: $bpc"
rss=$(awk '/VmHWM/{print $2}' /proc/$AGENT/status)
echo "agent peak RSS: $((rss / 1024)) MiB (after start: $((rss_start / 1024)) MiB)"
t0=$(date +%s%N)
ip netns exec ${P}a "$BIN" overlay status --json >/dev/null
t1=$(date +%s%N)
# The same from a host without an agent (no drift against the kernel).
mkdir -p $W/nostate
ip netns exec ${P}a env PIPEWORK_STATE_DIR=$W/nostate "$BIN" overlay status --json >/dev/null
t2=$(date +%s%N)
t3=$(date +%s%N)
ip netns exec ${P}a etcdctl --endpoints $E get --prefix /pipework/overlay/ -w json >/dev/null
t4=$(date +%s%N)
echo "overlay status --json: $(( (t1 - t0) / 1000000 )) ms on the agent's host (drift included), $(( (t2 - t1) / 1000000 )) ms elsewhere; etcdctl get --prefix (one unpaged gRPC read, same keys): $(( (t4 - t3) / 1000000 )) ms"
