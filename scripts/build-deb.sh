#!/usr/bin/env bash
# Build target/debian/pipework_<version>_amd64.deb from a staged tree with
# plain dpkg-deb (no cargo-deb: nothing extra to install in CI).
#
# Contents:
#   /usr/sbin/pipework                    the static binary (scripts/build-static.sh)
#   /usr/lib/cni/pipework                 symlink: Debian's CNI plugin directory
#   /usr/share/man/man1/pipework.1.gz     from `pipework man`
#   bash, zsh and fish completions        from `pipework completions SHELL`
#   /usr/share/doc/pipework/              copyright, changelog.gz
#   /usr/lib/systemd/system/pipework-watch.service  (installed, not enabled)
#   /usr/lib/systemd/system/pipework-overlay-agent.service  (installed, not
#     enabled; reads /etc/pipework/overlay-agent.env, whose example is in
#     /usr/share/doc/pipework/examples/)
#   /usr/share/lintian/overrides/pipework one override: a static PIE is no library
#
# /usr/sbin, not /usr/bin: attach, detach, ls and the CNI verbs need
# CAP_NET_ADMIN and refuse to run without it, so this is a system
# administration command (FHS 4.10), next to dockerd, ovs-vswitchd and
# brctl. Users who only run `pipework ambassador` call it by full path.
#
# Usage: scripts/build-deb.sh   (no root needed; prints the .deb path)
set -euo pipefail
cd "$(dirname "$0")/.."
read -r BIN _ < <(scripts/build-static.sh)
VERSION=$("$BIN" --version | awk '{print $2}')
ARCH=amd64
OUT=target/debian
DEB=$OUT/pipework_${VERSION}_${ARCH}.deb
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
# Reproducible: file times, gzip headers and the archive take one date.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

install -D -m 0755 "$BIN" "$R/usr/sbin/pipework"
mkdir -p "$R/usr/lib/cni"
ln -s ../../sbin/pipework "$R/usr/lib/cni/pipework"

install -D -m 0644 contrib/pipework-watch.service \
  "$R/usr/lib/systemd/system/pipework-watch.service"
install -D -m 0644 contrib/pipework-overlay-agent.service \
  "$R/usr/lib/systemd/system/pipework-overlay-agent.service"
install -D -m 0644 contrib/overlay-agent.env \
  "$R/usr/share/doc/pipework/examples/overlay-agent.env"

mkdir -p "$R/usr/share/man/man1"
"$BIN" man | gzip -9n > "$R/usr/share/man/man1/pipework.1.gz"

install -d "$R/usr/share/bash-completion/completions" \
  "$R/usr/share/zsh/vendor-completions" "$R/usr/share/fish/vendor_completions.d"
"$BIN" completions bash > "$R/usr/share/bash-completion/completions/pipework"
"$BIN" completions zsh > "$R/usr/share/zsh/vendor-completions/_pipework"
"$BIN" completions fish > "$R/usr/share/fish/vendor_completions.d/pipework.fish"

DOC=$R/usr/share/doc/pipework
install -d "$DOC"
YEAR=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
# Debian copyright-format 1.0. Apache-2.0 is one of Debian's common
# licenses, so the stanza points there instead of repeating the full text
# (the source tree's LICENSE holds it).
cat > "$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pipework
Comment: Apache-2.0, the license of the original pipework shell script.

Files: *
Copyright: $YEAR the pipework maintainers
License: Apache-2.0

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License");
 you may not use this file except in compliance with the License.
 You may obtain a copy of the License at
 .
 https://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS,
 WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 See the License for the specific language governing permissions and
 limitations under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in "/usr/share/common-licenses/Apache-2.0".
EOF
DATE=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cat <<EOF | gzip -9n > "$DOC/changelog.gz"
pipework ($VERSION) unstable; urgency=medium

  * Built from commit $COMMIT with scripts/build-deb.sh.

 -- pipework maintainers <maintainers@users.noreply.h-seed-0f404945.example>  $DATE
EOF

# A static PIE is an ET_DYN file without DT_NEEDED, which lintian takes for
# a shared library. PIE stays (ASLR for a privileged tool); say why here.
install -d "$R/usr/share/lintian/overrides"
cat > "$R/usr/share/lintian/overrides/pipework" <<'EOF'
# /usr/sbin/pipework is a static-pie executable, not a shared library.
pipework: shared-library-lacks-prerequisites [usr/sbin/pipework]
EOF

# Everything root-owned and world-readable, whatever the umask.
find "$R" -type d -exec chmod 0755 {} +
find "$R" -type f ! -path "$R/usr/sbin/pipework" -exec chmod 0644 {} +

install -d "$R/DEBIAN"
SIZE_KB=$(du -k -s --exclude=DEBIAN "$R" | cut -f1)
cat > "$R/DEBIAN/control" <<EOF
Package: pipework
Version: $VERSION
Architecture: $ARCH
Maintainer: pipework maintainers <maintainers@users.noreply.h-seed-0f404945.example>
Installed-Size: $SIZE_KB
Section: net
Priority: optional
Recommends: iproute2
Suggests: iptables, openvswitch-switch
Description: put containers straight onto host networks
 pipework enters a container's network namespace and builds the plumbing
 you ask for: a Linux bridge and veth, an Open vSwitch port, macvlan,
 ipvlan, an 802.1Q sub-interface, the physical NIC itself, dummy or IPoIB,
 with static, gateway or DHCP addresses. It is also a CNI plugin and a TCP
 and UDP ambassador. The binary is statically linked.
EOF
(cd "$R" && find usr -type f -exec md5sum {} + | sort -k2) > "$R/DEBIAN/md5sums"
chmod 0644 "$R/DEBIAN/control" "$R/DEBIAN/md5sums"
find "$R" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$R" "$DEB" >/dev/null
echo "build-deb: $(stat -c %s "$DEB") bytes, $(dpkg-deb -c "$DEB" | wc -l) entries" >&2
echo "$DEB"
