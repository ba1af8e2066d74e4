#!/usr/bin/env bash
# Install and start everything the test suite needs, on a fresh Debian 12 machine.
# Idempotent: services already running (by pidfile) are left alone.
# Everything lives under $PW_ENV (default /tmp/pw-env) so it can be torn down by pid.
set -Eeuo pipefail
# No silent exits: any failing step names itself in one line (the script,
# the line and the command); the known steps below add what to do about it.
# Printed once, from the top-level shell (a failing $(...) would repeat it).
trap 'rc=$?; [ "$BASH_SUBSHELL" != 0 ] || echo "env-up.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $rc)" >&2' ERR
die() { echo "env-up: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "installs packages and starts daemons: run as root"
PW_ENV=${PW_ENV:-/tmp/pw-env}
mkdir -p "$PW_ENV"

# Installed exactly as on the development machines: the first group with
# its recommends (docker.io's include cgroupfs-mount and apparmor), the
# second without (podman's recommends pull in rootless tooling we do not use).
pkgs=(docker.io busybox-static iptables iproute2 openvswitch-switch dnsmasq-base
      containernetworking-plugins isc-dhcp-client iperf3 hyperfine socat haproxy ethtool kmod
      strace file openssl nftables)
lean=(podman cpio chromium)
# The overlay (#11): etcd for its store and its tests.
pkgs+=(etcd-server etcd-client)
lean+=(vagrant)  # vagrant: `vagrant validate` of the overlay lab
# The installed version of package $1, empty when it is not installed. A
# package dpkg has never heard of makes dpkg-query exit 1: that is an answer
# here, not a failure (under pipefail it used to end the script silently).
installed_version() {
  local v
  v=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null) || true
  case "$v" in "installed "*) echo "${v#installed }" ;; esac
}
missing() {
  for p in "$@"; do
    [ -n "$(installed_version "$p")" ] || echo "$p"
  done
}
# Waits for another apt/dpkg run instead of failing on its lock.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "$@" >/dev/null
}
m1=$(missing "${pkgs[@]}")
m2=$(missing "${lean[@]}")
if [ -n "$m1$m2" ]; then
  echo "env-up: installing" $m1 $m2 >&2
  apt-get update -qq || die "apt-get update failed: check the network and /etc/apt/sources.list.d"
  # shellcheck disable=SC2086
  [ -z "$m1" ] || apt_install $m1 || die "apt-get install failed for:" $m1
  # shellcheck disable=SC2086
  [ -z "$m2" ] || apt_install --no-install-recommends $m2 || die "apt-get install --no-install-recommends failed for:" $m2
fi

# QEMU 10 from bookworm-backports: Debian 12's QEMU 7.2 has no emulated igb
# (82576), the SR-IOV NIC the VM tier's sriov tests run on. The suite uses
# the same mirror and keyring as the existing Debian sources.
BP=/etc/apt/sources.list.d/pipework-bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirror=$(sed -n 's/^URIs: *\(.*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "${mirror:-http://deb.debian.org/debian}" >"$BP"
  apt-get update -qq || die "apt-get update failed after adding bookworm-backports ($BP)"
fi
# The major version, without the epoch ("1:10.0.2+ds-1~bpo12+1" -> 10);
# 0 when QEMU is not installed at all.
qemu_major() {
  local v
  v=$(installed_version qemu-system-x86)
  v=${v#*:}
  v=${v%%.*}
  echo "${v:-0}"
}
if [ "$(qemu_major)" -lt 10 ]; then
  echo "env-up: installing qemu-system-x86 from bookworm-backports" >&2
  apt_install --no-install-recommends -t bookworm-backports qemu-system-x86 ||
    die "installing qemu-system-x86 from bookworm-backports failed"
  [ "$(qemu_major)" -ge 10 ] || die "qemu-system-x86 is $(installed_version qemu-system-x86), the VM tier needs 10 or later"
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- dockerd on a private socket -------------------------------------------
DK=$PW_ENV/docker
mkdir -p "$DK"
if ! alive "$DK/docker.pid"; then
  # The socket path is short on purpose: sun_path is limited to 108 bytes.
  setsid dockerd --data-root "$DK/data" --exec-root "$DK/exec" -H "unix://$DK/docker.sock" \
    --pidfile "$DK/docker.pid" >"$DK/log" 2>&1 < /dev/null &
fi
export DOCKER_HOST=unix://$DK/docker.sock
for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null || { echo "env-up: dockerd did not start, see $DK/log" >&2; exit 1; }

# Test image: busybox and its applets in an imported rootfs, no registry needed.
if ! docker image inspect bb:latest >/dev/null 2>&1; then
  R=$(mktemp -d)
  mkdir -p "$R/bin" "$R/etc" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
  cp /bin/busybox "$R/bin/"
  for a in sh ip ping sleep cat udhcpc nc httpd ifconfig route ls echo; do ln -s busybox "$R/bin/$a"; done
  tar -C "$R" -c . | docker import - bb:latest >/dev/null || die "docker import of the bb:latest test image failed, see $DK/log"
  tar -C "$R" -cf "$PW_ENV/bb.tar" .
  rm -rf "$R"
fi

# --- Open vSwitch, userspace datapath (no kernel module here) ---------------
OV=$PW_ENV/ovs
mkdir -p "$OV"
if ! alive "$OV/ovsdb.pid"; then
  [ -f "$OV/conf.db" ] || ovsdb-tool create "$OV/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server "$OV/conf.db" --remote="punix:$OV/db.sock" --pidfile="$OV/ovsdb.pid" \
    --unixctl="$OV/ovsdb.ctl" --log-file="$OV/ovsdb.log" --detach ||
    die "ovsdb-server did not start, see $OV/ovsdb.log"
  ovs-vsctl --db="unix:$OV/db.sock" --no-wait init
  # Without userspace TSO, TCP over veth ports is dropped by the netdev datapath.
  ovs-vsctl --db="unix:$OV/db.sock" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
fi
if ! alive "$OV/vswitchd.pid"; then
  OVS_RUNDIR=$OV ovs-vswitchd "unix:$OV/db.sock" --pidfile="$OV/vswitchd.pid" \
    --unixctl="$OV/vswitchd.ctl" --log-file="$OV/vswitchd.log" --detach ||
    die "ovs-vswitchd did not start, see $OV/vswitchd.log"
fi
ovs-vsctl --db="unix:$OV/db.sock" --timeout=10 show >/dev/null ||
  die "OVS does not answer on $OV/db.sock, see $OV/ovsdb.log and $OV/vswitchd.log"

# What the suite needs and nothing above started: say which one is missing
# here rather than in the middle of the tests.
for c in etcd etcdctl nft iptables dnsmasq podman chromium vagrant qemu-system-x86_64; do
  command -v "$c" >/dev/null || die "$c not found after the install above"
done

cat > "$PW_ENV/env.sh" <<ENV
export DOCKER_HOST=unix://$DK/docker.sock
export PIPEWORK_OVSDB=unix:$OV/db.sock
export PW_ENV=$PW_ENV
ENV
echo "env-up: ready; source $PW_ENV/env.sh" >&2
