#!/bin/sh
# Installs the Debian packages calf needs to build and test, when they are
# missing.  Run by the Makefile before anything else; does nothing when all
# packages are present.  Not root and something missing: one clear message.
#   setup-deps.sh build   - what the compiler needs, and seabios: `calf
#                           run` without --kernel boots it
#   setup-deps.sh linux   - plus what building the small Linux guest and
#                           its initramfs needs (make run)
#   setup-deps.sh test    - plus that and the peers the tests compare
#                           against (make test, make test-slow)
#   setup-deps.sh bench   - plus the benchmark peers
set -u
need="gcc make pkg-config zlib1g-dev libzstd-dev libssl-dev libsdl2-dev libslirp-dev seabios"
# strace: tests/qcow2-refblocks.t injects a failed fdatasync with it;
# tests/blk-protocol.t counts the syncs of a node that grows
peers="qemu-utils perl qemu-system-x86 xvfb xdotool strace"
# tests/nbd-*.t: libnbd's nbdinfo and nbdcopy, nbdkit as a peer server
nbd="libnbd-bin nbdkit"
# tests/img-convert-offload.t: convert's reflinks, on a loop-mounted XFS
reflink="xfsprogs"
# guest-tests/firmware-grub.t (grub-mkrescue) and the IDE CD tests (xorriso)
bootloader="grub-pc-bin grub-common xorriso mtools"
# guest-tests/linux/build-kernel.sh and make-initramfs.sh
linux="linux-source-6.1 bc flex bison libelf-dev cpio xz-utils busybox-static e2fsprogs"
case "${1:-build}" in
test)  need="$need $peers $bootloader $linux $reflink $nbd" ;;
linux) need="$need $linux" ;;
bench) need="$need $peers $nbd hyperfine" ;;
esac
missing=""
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "calf: missing Debian packages:$missing" >&2
    echo "calf: run as root (make installs them) or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "calf: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package list fails installs of anything new; refresh it once.
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q --no-install-recommends $missing >/dev/null || {
        echo "calf: apt-get install$missing failed" >&2; exit 1; }
}
