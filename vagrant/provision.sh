#!/usr/bin/env bash
# The overlay lab's provisioning, for the Vagrant VMs (vagrant/Vagrantfile)
# and, unchanged, for tests/overlay.rs (hosts as network namespaces).
#
#   provision.sh up   --name h1 --addr 192.168.56.11 --cluster h1=A1,h2=A2,h3=A3 [options]
#   provision.sh demo --name h1 --addr 192.168.56.11 --cluster ...             [options]
#   provision.sh lab  --name h1 --addr 192.168.56.11 --cluster ...             [options]
#
# up:   install etcd (and pipework), start this host's etcd member and its
#       overlay agent (underlay = --addr, never the NAT NIC's 10.0.2.15).
# demo: create network "vlab" (10.60.0.0/24) if absent, attach a container
#       namespace on this host at 10.60.0.<host number + 10> (.1 is the
#       gateway), and ping every other
#       host's demo container that exists. Prints "demo: NAME reached ..."
# lab:  one lab file across hosts (pipework lab up FILE --host NAME): node n1
#       on the first host, n2 on the second, joined by an overlay link on
#       "vlab" (10.60.0.101 and .102). Each host builds its own node's part;
#       the second to come up pings across. Prints "lab: NAME nN reached ..."
#       (a host with no node prints "lab: NAME has no node").
#
# Options:
#   --bin PATH     pipework to use (default: /usr/local/bin/pipework, installed
#                  from /vagrant/target/x86_64-unknown-linux-gnu/release/pipework,
#                  as built by scripts/build-static.sh)
#   --state DIR    where etcd data, logs and pid files go (default /var/lib/pipework-lab)
#   --prefix P     prefix of the demo container namespace (default lab)
#   --no-install   do not apt-get install (tests: env-up.sh installed everything)
#   --no-systemd   start etcd and the agent as background processes with pid
#                  files in --state (tests), instead of systemd units (VMs)
set -euo pipefail
cmd=${1:-}; shift || true
NAME='' ADDR='' CLUSTER='' BIN=/usr/local/bin/pipework STATE=/var/lib/pipework-lab PREFIX=lab
INSTALL=1 SYSTEMD=1 TTL=10
while [ $# -gt 0 ]; do
  case $1 in
    --name) NAME=$2; shift 2 ;;
    --addr) ADDR=$2; shift 2 ;;
    --cluster) CLUSTER=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --state) STATE=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --ttl) TTL=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-systemd) SYSTEMD=0; shift ;;
    *) echo "provision.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$NAME" ] || [ -z "$ADDR" ] || [ -z "$CLUSTER" ]; then
  echo "provision.sh: give --name, --addr and --cluster NAME=ADDR,..." >&2; exit 2
fi
mkdir -p "$STATE"
PEERS=$(echo "$CLUSTER" | tr ',' '\n' | sed 's|^\([^=]*\)=\(.*\)$|\1=http://\2:2380|' | paste -sd,)
CLIENTS=$(echo "$CLUSTER" | tr ',' '\n' | sed 's|^[^=]*=\(.*\)$|http://\1:2379|' | paste -sd,)
export PIPEWORK_ETCD=$CLIENTS
num() { echo "$CLUSTER" | tr ',' '\n' | grep -n "^$1=" | cut -d: -f1; }

up() {
  if [ "$INSTALL" = 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    dpkg-query -W etcd-server etcd-client busybox-static >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq etcd-server etcd-client busybox-static >/dev/null; }
    if [ ! -x "$BIN" ]; then
      install -m 0755 /vagrant/target/x86_64-unknown-linux-gnu/release/pipework "$BIN"
    fi
  fi
  local etcd_args=(--name "$NAME" --data-dir "$STATE/etcd"
    --listen-peer-urls "http://$ADDR:2380" --listen-client-urls "http://$ADDR:2379"
    --advertise-client-urls "http://$ADDR:2379" --initial-advertise-peer-urls "http://$ADDR:2380"
    --initial-cluster "$PEERS" --initial-cluster-state new)
  local agent_args=(overlay agent --underlay "$ADDR" --name "$NAME" --ttl "$TTL")
  if [ "$SYSTEMD" = 1 ]; then
    # Debian's etcd.service starts a single local member on install: replace it.
    systemctl disable --now etcd >/dev/null 2>&1 || true
    cat >/etc/systemd/system/pipework-etcd.service <<UNIT
[Unit]
Description=etcd member $NAME for the pipework overlay lab
After=network-online.target
[Service]
ExecStart=/usr/bin/etcd ${etcd_args[*]}
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
    # The agent runs from the unit the .deb ships (contrib/, in the
    # synced /vagrant), configured through its environment file.
    sed "s|/usr/sbin/pipework|$BIN|" /vagrant/contrib/pipework-overlay-agent.service \
      >/etc/systemd/system/pipework-overlay-agent.service
    mkdir -p /etc/pipework
    cat >/etc/pipework/overlay-agent.env <<ENV
PIPEWORK_ETCD=$CLIENTS
PIPEWORK_OVERLAY_UNDERLAY=$ADDR
PIPEWORK_OVERLAY_NAME=$NAME
PIPEWORK_OVERLAY_TTL=$TTL
ENV
    systemctl daemon-reload
    # No waiting: the first member has no quorum until the second is up.
    systemctl enable --now --no-block pipework-etcd.service pipework-overlay-agent.service
    return
  fi
  if ! { [ -f "$STATE/etcd.pid" ] && kill -0 "$(cat "$STATE/etcd.pid")" 2>/dev/null; }; then
    etcd "${etcd_args[@]}" >"$STATE/etcd.log" 2>&1 </dev/null &
    echo $! >"$STATE/etcd.pid"
  fi
  # Without systemd to restart it, start the agent once etcd has a quorum.
  for _ in $(seq 1 300); do
    etcdctl --endpoints "$CLIENTS" --command-timeout=1s put /pipework-lab/up "$NAME" >/dev/null 2>&1 && break
    sleep 0.2
  done
  if ! { [ -f "$STATE/agent.pid" ] && kill -0 "$(cat "$STATE/agent.pid")" 2>/dev/null; }; then
    "$BIN" "${agent_args[@]}" >"$STATE/agent.log" 2>&1 </dev/null &
    echo $! >"$STATE/agent.pid"
  fi
}

demo() {
  local n c i peer
  n=$(num "$NAME")
  for _ in $(seq 1 150); do
    # (No `| grep -q`: with pipefail, an early grep exit fails the pipe.)
    [ -n "$(etcdctl --endpoints "$CLIENTS" --command-timeout=1s get "/pipework/overlay/host/$NAME" 2>/dev/null)" ] && break
    sleep 0.2
  done
  [ -n "$(etcdctl --endpoints "$CLIENTS" get /pipework/overlay/net/vlab 2>/dev/null)" ] ||
    "$BIN" overlay create vlab --subnet 10.60.0.0/24 >/dev/null 2>&1 || true
  c=${PREFIX}demo$n
  [ -e "/run/netns/$c" ] || ip netns add "$c"
  ip -n "$c" link show eth1 >/dev/null 2>&1 || "$BIN" vlab "netns:$c" "10.60.0.$((n + 10))/24" >/dev/null
  local reached=()
  for i in $(seq 1 "$(echo "$CLUSTER" | tr ',' '\n' | wc -l)"); do
    [ "$i" = "$n" ] && continue
    peer=10.60.0.$((i + 10))
    [ -n "$(etcdctl --endpoints "$CLIENTS" get "/pipework/overlay/ep/vlab/$peer" 2>/dev/null)" ] || continue
    for _ in $(seq 1 20); do
      if ip netns exec "$c" busybox ping -c 1 -W 1 "$peer" >/dev/null 2>&1; then
        reached+=("$peer"); break
      fi
    done
  done
  echo "demo: $NAME (10.60.0.$((n + 10))) reached ${reached[*]:-nobody yet}"
}

lab() {
  local n file node peer
  n=$(num "$NAME")
  if [ "$n" -gt 2 ]; then
    echo "lab: $NAME has no node"
    return
  fi
  # The network the demo makes; made here too, so `lab` works on its own.
  [ -n "$(etcdctl --endpoints "$CLIENTS" get /pipework/overlay/net/vlab 2>/dev/null)" ] ||
    "$BIN" overlay create vlab --subnet 10.60.0.0/24 >/dev/null 2>&1 || true
  file=$STATE/across.toml
  # The same file on every host: which host a node is on is in the file.
  cat >"$file" <<LAB
name = "${PREFIX}across"
[nodes.n1]
netns = "${PREFIX}node1"
host = "$(echo "$CLUSTER" | tr ',' '\n' | sed -n 1p | cut -d= -f1)"
[nodes.n2]
netns = "${PREFIX}node2"
host = "$(echo "$CLUSTER" | tr ',' '\n' | sed -n 2p | cut -d= -f1)"
[[links]]
kind = "overlay"
network = "vlab"
endpoints = ["n1:eth1", "n2:eth1"]
ips = ["10.60.0.101/24", "10.60.0.102/24"]
LAB
  node=${PREFIX}node$n
  [ -e "/run/netns/$node" ] || ip netns add "$node"
  ip -n "$node" link set lo up
  "$BIN" lab up "$file" --host "$NAME" >/dev/null
  peer=10.60.0.$((103 - n))
  local reached=()
  if [ -n "$(etcdctl --endpoints "$CLIENTS" get "/pipework/overlay/ep/vlab/$peer" 2>/dev/null)" ]; then
    for _ in $(seq 1 20); do
      if ip netns exec "$node" busybox ping -c 1 -W 1 "$peer" >/dev/null 2>&1; then
        reached+=("$peer"); break
      fi
    done
  fi
  echo "lab: $NAME n$n (10.60.0.$((100 + n))) reached ${reached[*]:-nobody yet}"
}

case $cmd in
  up) up ;;
  demo) demo ;;
  lab) lab ;;
  *) echo "usage: provision.sh up|demo|lab --name N --addr A --cluster N1=A1,N2=A2,N3=A3 [options]" >&2; exit 2 ;;
esac
