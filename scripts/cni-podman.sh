#!/usr/bin/env bash
# A private Podman 4 (CNI backend) whose network NET uses pipework as its CNI
# plugin. Everything lives under DIR; nothing touches the host's podman.
#
#   cni-podman.sh setup DIR PIPEWORK_BIN NET BRIDGE SUBNET   # writes config, imports bb image
#   cni-podman.sh run DIR podman-args...                     # podman with DIR's config
#   cni-podman.sh teardown DIR                               # remove containers and DIR
#
# The image is a busybox rootfs tar (PW_ENV/bb.tar from scripts/env-up.sh).
set -euo pipefail
cmd=${1:?usage: cni-podman.sh setup|run|teardown DIR ...}
dir=${2:?DIR}
shift 2

pod() {
  CONTAINERS_CONF="$dir/containers.conf" podman --root "$dir/root" --runroot "$dir/runroot" \
    --cgroup-manager cgroupfs --events-backend file "$@"
}

case $cmd in
setup)
  bin=${1:?PIPEWORK_BIN}; net=${2:?NET}; bridge=${3:?BRIDGE}; subnet=${4:?SUBNET}
  mkdir -p "$dir/plugins" "$dir/net.d" "$dir/root" "$dir/runroot" "$dir/ipam"
  # The runtime execs the plugin named by "type" from cni_plugin_dirs.
  ln -sf "$(readlink -f "$bin")" "$dir/plugins/pipework"
  cat > "$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["$dir/plugins", "/usr/lib/cni"]
network_config_dir = "$dir/net.d"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat > "$dir/net.d/$net.conflist" <<CONF
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
  img=${PW_ENV:-/tmp/pw-env}/bb.tar
  [ -f "$img" ] || { echo "cni-podman: $img missing (run scripts/env-up.sh)" >&2; exit 1; }
  pod import "$img" localhost/bb >/dev/null
  ;;
run)
  pod "$@"
  ;;
teardown)
  if [ -d "$dir/root" ]; then
    pod rm -a -f -t 0 >/dev/null 2>&1 || true
    pod rmi -a -f >/dev/null 2>&1 || true
  fi
  # Podman's storage may leave read-only overlay dirs; unmount what is ours.
  { grep -F " $dir/" /proc/mounts || true; } | awk '{print $2}' | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || true; done
  rm -rf "$dir"
  ;;
*)
  echo "cni-podman.sh: unknown command $cmd" >&2; exit 2 ;;
esac
