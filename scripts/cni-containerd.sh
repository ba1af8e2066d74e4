#!/usr/bin/env bash
# containerd's `ctr run --cni` with pipework as the CNI plugin. ctr reads
# the first config in /etc/cni/net.d and plugins from /opt/cni/bin, so
# setup moves whatever is there aside and teardown puts it back.
#
#   cni-containerd.sh setup DIR PIPEWORK_BIN NET BRIDGE SUBNET
#   cni-containerd.sh ctr DIR ctr-args...        # ctr on the test socket, namespace pwc
#   cni-containerd.sh teardown DIR               # restore /etc/cni/net.d and /opt/cni/bin
#
# CONTAINERD_SOCK defaults to the containerd of scripts/env-up.sh's dockerd.
set -euo pipefail
cmd=${1:?usage: cni-containerd.sh setup|ctr|teardown DIR ...}
dir=${2:?DIR}
shift 2
sock=${CONTAINERD_SOCK:-${PW_ENV:-/tmp/pw-env}/docker/exec/containerd/containerd.sock}
conf_dir=/etc/cni/net.d
bin_dir=/opt/cni/bin

ctr_() { ctr -a "$sock" -n pwc "$@"; }

# Move $1 into the backup (or note that it did not exist).
save() {
  local what=$1 tag=$2
  if [ -e "$dir/backup/$tag.absent" ] || [ -e "$dir/backup/$tag" ]; then return; fi
  if [ -e "$what" ]; then mv "$what" "$dir/backup/$tag"; else touch "$dir/backup/$tag.absent"; fi
}

restore() {
  local what=$1 tag=$2
  if [ -e "$dir/backup/$tag" ]; then
    rm -rf "$what"; mv "$dir/backup/$tag" "$what"
  elif [ -e "$dir/backup/$tag.absent" ]; then
    rm -rf "$what"; rm -f "$dir/backup/$tag.absent"
  fi
}

case $cmd in
setup)
  bin=${1:?PIPEWORK_BIN}; net=${2:?NET}; bridge=${3:?BRIDGE}; subnet=${4:?SUBNET}
  [ -S "$sock" ] || { echo "cni-containerd: no containerd socket at $sock" >&2; exit 1; }
  mkdir -p "$dir/backup" "$dir/ipam"
  [ -d /opt/cni ] || { mkdir -p /opt/cni; touch "$dir/backup/optcni.created"; }
  save "$conf_dir" netd
  save "$bin_dir" bin
  mkdir -p "$conf_dir" "$bin_dir"
  ln -sf "$(readlink -f "$bin")" "$bin_dir/pipework"
  for p in host-local static loopback; do ln -sf "/usr/lib/cni/$p" "$bin_dir/$p"; done
  cat > "$conf_dir/10-$net.conflist" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "$net",
  "plugins": [
    {
      "type": "pipework",
      "mode": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/ipam",
        "subnet": "$subnet",
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
CONF
  if ! ctr_ images ls -q | grep -qx docker.io/library/bb:latest; then
    DOCKER_HOST=${DOCKER_HOST:-unix://${PW_ENV:-/tmp/pw-env}/docker/docker.sock} \
      docker save bb:latest | ctr_ images import - >/dev/null
  fi
  ;;
ctr)
  ctr_ "$@"
  ;;
teardown)
  [ -d "$dir/backup" ] || exit 0
  restore "$conf_dir" netd
  restore "$bin_dir" bin
  if [ -e "$dir/backup/optcni.created" ]; then rmdir /opt/cni 2>/dev/null || true; fi
  rm -rf "$dir"
  ;;
*)
  echo "cni-containerd.sh: unknown command $cmd" >&2; exit 2 ;;
esac
