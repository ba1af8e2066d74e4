#!/usr/bin/env bash
# The .deb end to end: build it (scripts/build-deb.sh), install it with apt,
# run the installed binary's built-in demo, check the man page and the
# completions landed, then remove the package so the machine is as before.
# Called from scripts/test.sh. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "test-deb: installs a package: run as root" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' pipework 2>/dev/null | grep -q "ok installed"; then
  echo "test-deb: a pipework package is already installed; not replacing it" >&2
  exit 1
fi
start=$(date +%s)
DEB=$(scripts/build-deb.sh)
built=$(date +%s)

export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
INSTALLED=0
cleanup() {
  set +e
  [ "$INSTALLED" = 1 ] && apt-get remove -y -qq pipework >/dev/null
}
trap cleanup EXIT

# The package depends on nothing, so this works without a network.
INSTALLED=1
apt-get install -y -qq --no-install-recommends "./$DEB" >/dev/null

fail() { echo "test-deb: $*" >&2; exit 1; }
[ -x /usr/sbin/pipework ] || fail "/usr/sbin/pipework missing"
file -b /usr/sbin/pipework | grep -Eq "statically linked|static-pie linked" ||
  fail "/usr/sbin/pipework is not static"
[ "$(readlink -f /usr/lib/cni/pipework)" = /usr/sbin/pipework ] ||
  fail "/usr/lib/cni/pipework does not lead to /usr/sbin/pipework"
CNI_COMMAND=VERSION /usr/lib/cni/pipework < /dev/null | grep -q supportedVersions ||
  fail "/usr/lib/cni/pipework does not answer CNI VERSION"
for f in /usr/share/bash-completion/completions/pipework \
         /usr/share/zsh/vendor-completions/_pipework \
         /usr/share/fish/vendor_completions.d/pipework.fish \
         /usr/share/doc/pipework/copyright \
         /usr/lib/systemd/system/pipework-watch.service; do
  [ -s "$f" ] || fail "$f missing or empty"
done
grep -qx 'License: Apache-2.0' /usr/share/doc/pipework/copyright ||
  fail "/usr/share/doc/pipework/copyright does not name Apache-2.0"
# dpkg may be told to drop man pages (path-exclude in dpkg.cfg.d, as in
# slim images); then only the package contents can be checked.
MAN=/usr/share/man/man1/pipework.1.gz
if [ -f "$MAN" ]; then
  if command -v man >/dev/null; then
    [ "$(man -w pipework)" = "$MAN" ] || fail "man -w pipework does not find $MAN"
  fi
  zcat "$MAN" | grep -q '^\.TH' || fail "$MAN is not a man page"
else
  dpkg-deb -c "$DEB" | grep -q "\./usr/share/man/man1/pipework.1.gz" ||
    fail "the package has no man page"
  echo "test-deb: dpkg excluded $MAN on this machine; checked the package instead" >&2
fi

/usr/sbin/pipework demo

apt-get remove -y -qq pipework >/dev/null
INSTALLED=0
[ ! -e /usr/sbin/pipework ] || fail "/usr/sbin/pipework left after remove"
[ ! -e /usr/lib/cni/pipework ] || fail "/usr/lib/cni/pipework left after remove"
end=$(date +%s)
echo "test-deb: ok ($DEB; build $((built - start)) s, install+demo+remove $((end - built)) s)" >&2
