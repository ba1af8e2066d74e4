#!/usr/bin/env bash
# Run one command inside Debian's stock kernel under QEMU, for the tests that
# need kernel features this host lacks (8021q, ipvlan, dummy, openvswitch).
#
#   scripts/vmtest.sh                      # the VM tier: scripts/vm-tier.sh
#   scripts/vmtest.sh CMD [ARGS...]
#   scripts/vmtest.sh target/debug/deps/vm_kernel-0123abcd --test-threads=1
#
# How it works: the kernel package is downloaded (never installed) and
# extracted into a cache; an initramfs holds a static busybox and the needed
# modules in dependency order. The guest mounts the host's root read-only over
# 9p, binds fresh proc/sys/dev and tmpfs for /run and /tmp over it, chroots
# and runs CMD from the same working directory. Host-built binaries therefore
# run unchanged. CMD's output is streamed back over the serial console and its
# exit status comes back through a marker line, so this script exits with it.
#
# Both the extracted kernel and the initramfs are cached; a second run only
# boots (about 13 s under TCG). KVM is deliberately not used: on this kind of
# host /dev/kvm is a paravirtual implementation in which the guest hangs.
#
# Environment:
#   PIPEWORK_VM_CACHE    cache directory          (default /var/cache/pipework-vm)
#   PIPEWORK_VM_KPKG     kernel package name      (default: what linux-image-amd64 depends on)
#   PIPEWORK_VM_MODULES  extra modules to load    (space separated)
#   PIPEWORK_VM_TIMEOUT  seconds before giving up (default 1200)
#   PIPEWORK_VM_MEM      guest memory in MiB      (default 1024)
#   PIPEWORK_VM_VERBOSE  1: show the whole console, kernel messages included
#   PIPEWORK_VM_SRIOV    1: add an emulated Intel 82576 (QEMU's igb, 7 VFs;
#                        QEMU >= 8) behind a PCIe root port, its wire a UDP
#                        socket on loopback (without a backend it has no carrier)
# Variables named PIPEWORK_*, RUST_*, CARGO_* and TEST_* are passed to CMD.
#
# Exit status: CMD's own; 125 if the VM could not be prepared or CMD's status
# never arrived (timeout, panic): the console log is then printed.
set -euo pipefail

die() { echo "vmtest: $*" >&2; exit 125; }

# Without a command: run the whole VM tier (what scripts/test.sh calls).
[ $# -ge 1 ] || exec "$(dirname "$0")/vm-tier.sh"
[ "$(id -u)" = 0 ] || die "must run as root (9p export of / and network namespaces in the guest)"

CACHE=${PIPEWORK_VM_CACHE:-/var/cache/pipework-vm}
TIMEOUT=${PIPEWORK_VM_TIMEOUT:-1200}
MEM=${PIPEWORK_VM_MEM:-1024}
BASE_MODULES="8021q ipvlan dummy macvlan veth bridge vxlan openvswitch tun sch_tbf sch_htb sch_ingress sch_netem virtio_pci 9pnet_virtio 9p igb igbvf"
MODULES="$BASE_MODULES ${PIPEWORK_VM_MODULES:-}"

need() {
    # The tools come from Debian packages; name the package in the error.
    local bin=$1 pkg=$2
    command -v "$bin" >/dev/null 2>&1 || die "$bin not found: apt-get install -y --no-install-recommends $pkg"
}
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need depmod kmod
need modprobe kmod
need dpkg-deb dpkg
BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi
done
[ -n "$BUSYBOX" ] || die "no static busybox: apt-get install -y busybox-static"

mkdir -p "$CACHE"
# One preparer at a time: parallel CI jobs share the cache.
exec 9>"$CACHE/.lock"
flock 9

# ---- kernel: download and extract once --------------------------------------
KPKG=${PIPEWORK_VM_KPKG:-}
if [ -z "$KPKG" ]; then
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9.]*-[0-9]*-amd64\)$/\1/p' | head -n1)
    # A fresh machine may have no package lists yet.
    if [ -z "$KPKG" ] && apt-get update -qq >/dev/null 2>&1; then
        KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[0-9.]*-[0-9]*-amd64\)$/\1/p' | head -n1)
    fi
    # Offline fallback: whatever we extracted before.
    if [ -z "$KPKG" ]; then
        KPKG=$(ls -1 "$CACHE" 2>/dev/null | sed -n 's/^kernel-\(linux-image-.*\)$/\1/p' | sort -V | tail -n1)
    fi
    [ -n "$KPKG" ] || die "cannot find Debian's kernel package (apt-get update?); set PIPEWORK_VM_KPKG"
fi
KVER=${KPKG#linux-image-}
KDIR=$CACHE/kernel-$KPKG
if [ ! -e "$KDIR/.done" ]; then
    echo "vmtest: fetching $KPKG (once)" >&2
    rm -rf "$KDIR" "$CACHE/dl"
    mkdir -p "$CACHE/dl"
    # apt's sandbox user cannot write into root's cache: download as root quietly.
    (cd "$CACHE/dl" && apt-get download -q "$KPKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
        die "apt-get download $KPKG failed"
    mkdir -p "$KDIR"
    dpkg-deb -x "$CACHE"/dl/"$KPKG"_*.deb "$KDIR"
    # The .deb ships no modules.dep (the postinst makes it): build it here.
    depmod -b "$KDIR" "$KVER"
    rm -rf "$CACHE/dl"
    touch "$KDIR/.done"
fi
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
[ -r "$VMLINUZ" ] || die "$VMLINUZ missing; remove $KDIR to re-extract"

# ---- initramfs ----------------------------------------------------------------
# The guest's /init. It stays outside the chroot, so it only uses busybox.
IFS= read -r -d '' INIT <<'EOF' || true
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
while read -r mod args; do
    insmod "$mod" $args 2>/dev/null || echo "vmtest-init: insmod $mod failed"
done </modules.order
job=; tag=; wdir=
for w in $(cat /proc/cmdline); do
    case $w in
    pwjob=*) job=${w#pwjob=} ;;
    pwtag=*) tag=${w#pwtag=} ;;
    pwdir=*) wdir=${w#pwdir=} ;;
    esac
done
rc=125
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /mnt; then
    mount -t proc proc /mnt/proc
    mount -t sysfs sys /mnt/sys
    mount -t devtmpfs dev /mnt/dev
    mkdir -p /mnt/dev/pts /mnt/dev/shm
    mount -t devpts devpts /mnt/dev/pts 2>/dev/null
    mount -t tmpfs shm /mnt/dev/shm 2>/dev/null
    mount -t tmpfs run /mnt/run
    mkdir -p /mnt/run/netns /mnt/run/lock
    # /var/run is a symlink to /run on Debian; a real directory gets its own tmpfs.
    [ -L /mnt/var/run ] || mount -t tmpfs varrun /mnt/var/run
    mkdir -p /mnt/var/run/netns
    mount -t tmpfs tmp /mnt/tmp
    mount -t tmpfs vartmp /mnt/var/tmp 2>/dev/null
    mount -t bpf bpf /mnt/sys/fs/bpf 2>/dev/null
    # The working directory is shared on its own: under /tmp (where a CI
    # clone may live) the root share is hidden by the guest's tmpfs.
    if [ -n "$wdir" ]; then
        mkdir -p "/mnt$wdir" 2>/dev/null
        mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose workdir "/mnt$wdir" ||
            echo "vmtest-init: cannot mount the working directory $wdir"
    fi
    ip link set lo up
    hostname pipework-vm
    # ovs-vswitchd (3.1) counts CPU cores through a cache that is only
    # filled once the monotonic clock passes 10 s: started earlier, it runs
    # with zero upcall handlers and the kernel datapath loses every miss.
    while [ "$(cut -d. -f1 /proc/uptime)" -lt 11 ]; do sleep 0.5; done
    echo "@@PWVM-BEGIN-$tag@@"
    # Through a pipe, not the console tty: no colour codes or CRLF in logs.
    set -o pipefail
    chroot /mnt /bin/bash "$job" </dev/null 2>&1 | cat
    rc=$?
else
    echo "vmtest-init: cannot mount the host root over 9p"
fi
echo "@@PWVM-EXIT-$tag $rc@@"
sync
poweroff -f
EOF

# Cache key: kernel, module list and init script.
KEY=$(printf '%s\n%s\n%s\n' "$KPKG" "$MODULES" "$INIT" | sha256sum | cut -c1-16)
INITRD=$CACHE/initramfs-$KVER-$KEY.cpio.gz
if [ ! -s "$INITRD" ]; then
    echo "vmtest: building initramfs for $KVER (once)" >&2
    STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
    trap 'rm -rf "$STAGE"' EXIT
    mkdir -p "$STAGE"/{bin,dev,proc,sys,mnt,modules}
    cp "$BUSYBOX" "$STAGE/bin/busybox"
    # The kernel opens /dev/console before /init runs.
    mknod -m 600 "$STAGE/dev/console" c 5 1
    mknod -m 666 "$STAGE/dev/null" c 1 3
    printf '%s\n' "$INIT" >"$STAGE/init"
    chmod 755 "$STAGE/init"
    : >"$STAGE/modules.order"
    seen=" "
    for m in $MODULES; do
        deps=$(modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" 2>&1) ||
            die "module $m: $deps"
        while read -r kind path args; do
            [ "$kind" = insmod ] || continue # "builtin X": nothing to load
            name=$(basename "$path")
            case $seen in *" $name "*) continue ;; esac
            seen="$seen$name "
            case $name in
            *.ko.xz) xz -dc "$path" >"$STAGE/modules/${name%.xz}"; name=${name%.xz} ;;
            *.ko.zst) zstd -qdc "$path" >"$STAGE/modules/${name%.zst}"; name=${name%.zst} ;;
            *) cp "$path" "$STAGE/modules/$name" ;;
            esac
            echo "/modules/$name $args" >>"$STAGE/modules.order"
        done <<<"$deps"
    done
    (cd "$STAGE" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    rm -rf "$STAGE"
    trap - EXIT
    # Old initramfs images for other keys are dead weight.
    find "$CACHE" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "$(basename "$INITRD")" -delete
fi
flock -u 9

# ---- the job -------------------------------------------------------------------
# The job file lives in the cache, which the guest sees through the shared
# root (not in /tmp: the guest mounts a tmpfs there).
mkdir -p "$CACHE/run"
RUN=$(mktemp -d "$CACHE/run/job.XXXXXX")
TAG=$(basename "$RUN" | tr -dc 'A-Za-z0-9')$RANDOM
cleanup() { rm -rf "$RUN"; }
trap cleanup EXIT
{
    echo "cd $(printf '%q' "$PWD") || exit 125"
    echo "export PIPEWORK_VM=1"
    echo "export PATH=$(printf '%q' "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")"
    env | grep -E '^(PIPEWORK|RUST|CARGO|TEST)[A-Z0-9_]*=' | grep -v '^PIPEWORK_VM' |
        while IFS= read -r kv; do echo "export $(printf '%q' "$kv")"; done
    # Resolve CMD to an absolute path on the host so relative paths work too.
    cmd=$1
    [[ $cmd == */* ]] && cmd=$(readlink -f "$cmd")
    shift
    printf 'exec'
    printf ' %q' "$cmd" "$@"
    echo
} >"$RUN/job.sh"

APPEND="console=ttyS0 panic=-1 quiet loglevel=1 pwjob=$RUN/job.sh pwtag=$TAG"
WORKDIR_SHARE=()
case $PWD in
*[[:space:]]*) echo "vmtest: the working directory has a space in it; the VM will not see it" >&2 ;;
*)
    APPEND="$APPEND pwdir=$PWD"
    WORKDIR_SHARE=(-virtfs "local,path=$PWD,mount_tag=workdir,security_model=none,readonly=on,multidevs=remap")
    ;;
esac
[ "${PIPEWORK_VM_VERBOSE:-0}" = 1 ] && APPEND=${APPEND/ quiet loglevel=1/ loglevel=7}

# The SR-IOV NIC. Its "wire" sends to a loopback port nobody listens on; the
# local port is picked free so parallel VMs do not collide.
SRIOV=()
if [ "${PIPEWORK_VM_SRIOV:-0}" = 1 ]; then
    qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"' ||
        die "this QEMU has no igb device (needs QEMU >= 8): scripts/env-up.sh installs QEMU 10 from bookworm-backports"
    used=$(ss -Huln 2>/dev/null | awk '{print $4}' | sed -n 's/.*:\([0-9]*\)$/\1/p' | tr '\n' ' ')
    port=
    for _ in $(seq 1 50); do
        p=$((40000 + RANDOM % 20000))
        case " $used " in *" $p "* | *" $((p + 1)) "*) continue ;; esac
        port=$p
        break
    done
    [ -n "$port" ] || die "no free UDP port on loopback for the igb backend"
    SRIOV=(-device pcie-root-port,id=rp1,slot=1 -device igb,bus=rp1,netdev=n0
        -netdev "socket,id=n0,udp=127.0.0.1:$((port + 1)),localaddr=127.0.0.1:$port")
fi

set +e
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -machine q35 -cpu max -smp 2,sockets=1,cores=2,threads=1 -m "$MEM" \
    -nodefaults -display none -no-reboot \
    -kernel "$VMLINUZ" -initrd "$INITRD" -append "$APPEND" \
    -chardev stdio,id=con,signal=off -serial chardev:con \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    "${WORKDIR_SHARE[@]}" \
    -nic none "${SRIOV[@]}" \
    </dev/null 2>"$RUN/qemu.err" |
    tee "$RUN/console.log" |
    awk -v tag="$TAG" -v rcfile="$RUN/rc" -v verbose="${PIPEWORK_VM_VERBOSE:-0}" '
        { sub(/\r$/, "") }
        $0 == "@@PWVM-BEGIN-" tag "@@" { on = 1; fflush(); next }
        index($0, "@@PWVM-EXIT-" tag " ") == 1 {
            rc = substr($0, length("@@PWVM-EXIT-" tag " ") + 1); sub(/@@$/, "", rc)
            print rc > rcfile; close(rcfile); on = 0; next
        }
        on || verbose == 1 { print; fflush() }'
qstatus=${PIPESTATUS[0]}
set -e

if [ -s "$RUN/rc" ]; then
    exit "$(cat "$RUN/rc")"
fi
{
    echo "vmtest: no exit status from the guest (qemu status $qstatus; 124 = timeout after ${TIMEOUT}s)"
    echo "---- qemu stderr"
    cat "$RUN/qemu.err"
    echo "---- console (last 60 lines)"
    tr -d '\r' <"$RUN/console.log" | tail -n 60
} >&2
exit 125
