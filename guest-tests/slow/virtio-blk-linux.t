#!/bin/bash
# Linux's own virtio-blk driver on calf's virtio-pci device (make test-slow):
#  - a qcow2 disk over a raw base whose MBR lives in the qcow2 layer: the
#    kernel's partition scan must print "vda: vda1 vda2" (a read through
#    PCI enumeration from the ACPI DSDT, virtio-pci and the qcow2 engine);
#  - an ext2 filesystem on a second disk mounted as root read-write
#    (root=/dev/vdb rw, no initramfs): ext2 writes its superblock on mount,
#    so the host must see the mount count go up, and qemu-img check clean;
#  - Linux's legacy virtio-pci driver on the transitional device, booted
#    without ACPI and without MSI: the partition scan needs the INTx pin
#    the MP table gives the slot.
# Guest userspace cannot run on the kvm_pvm backend (shared/PLATFORM.md),
# so the kernel panics for want of /sbin/init afterwards: that is fine.
# About 70 s of guest time on an idle machine here; the timeout is generous
# because a loaded 2-core host stretches that several times.
. "$(dirname "$0")/../lib.sh"
need_kvm
KERNEL=$CALF_BUILD/linux/vmlinux
[ -e "$KERNEL" ] || { echo "1..0 # SKIP $KERNEL not built (make linux-guest)"; exit 0; }
for tool in qemu-img qemu-io mke2fs dumpe2fs python3; do
    command -v $tool >/dev/null || { echo "1..0 # SKIP $tool not installed"; exit 0; }
done

APPEND="console=ttyS0 panic=-1"
if [ -e /sys/module/kvm_pvm ]; then
    khz=$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
    APPEND="$APPEND clearcpuid=154,308,151,156,293,304,153,129,147,148,137,140,150,157,158 nofsgsbase tsc_early_khz=$khz"
fi

# The MBR: two Linux partitions, written into the qcow2 layer only.
python3 - "$TMP/mbr.bin" <<'EOF'
import struct, sys
mbr = bytearray(512)
for i, (start, count) in enumerate([(2048, 16384), (18432, 47104)]):
    mbr[446 + 16 * i:462 + 16 * i] = struct.pack('<B3sB3sII', 0, b'\xff' * 3, 0x83, b'\xff' * 3, start, count)
mbr[510:512] = b'\x55\xaa'
open(sys.argv[1], 'wb').write(mbr)
EOF
truncate -s 32M "$TMP/base.raw"
qemu-img create -q -f qcow2 -b "$TMP/base.raw" -F raw "$TMP/vda.qcow2"
qemu-io -f qcow2 -c "write -s $TMP/mbr.bin 0 512" "$TMP/vda.qcow2" >/dev/null

# The root filesystem, converted to qcow2.
truncate -s 16M "$TMP/root.raw"
mke2fs -q -t ext2 -F "$TMP/root.raw"
qemu-img convert -f raw -O qcow2 "$TMP/root.raw" "$TMP/vdb.qcow2"
count() { qemu-img convert -f qcow2 -O raw "$TMP/vdb.qcow2" "$TMP/peek.raw" &&
          dumpe2fs -h "$TMP/peek.raw" 2>/dev/null | awk '/^Mount count:/ { print $3 }'; }
before=$(count)

boot linux --kernel "$KERNEL" -m 256M --disk "$TMP/vda.qcow2" --disk "$TMP/vdb.qcow2" \
    --append "$APPEND root=/dev/vdb rw rootfstype=ext2" \
    --expect "VFS: Mounted root (ext2 filesystem)" --timeout 900
echo "# how far it got:"; grep -aE "virtio|vda|vdb|VFS|PCI" "$TMP/linux.out" | tr -d '\r' | tail -12 | sed 's/^/#   /'
sed 's/^/#   /' "$TMP/linux.err"
ok $(( status != 0 )) "Linux mounts an ext2 root from a virtio disk read-write (status $status)"
grep -aq "vda: vda1 vda2" "$TMP/linux.out"; ok $? "the partition scan through virtio-blk and qcow2 finds vda1 and vda2"
after=$(count)
ok $(( ${after:-0} <= ${before:-0} )) "the host sees the superblock's mount count go up ($before -> $after)"
qemu-img check -q "$TMP/vdb.qcow2"; ok $? "qemu-img check: the root image is clean"
qemu-img check -q "$TMP/vda.qcow2"; ok $? "and so is the partitioned one"

# virtio_pci.force_legacy=1: I/O BAR 0, no VERSION_1; acpi=off: the I/O
# APIC pin of the slot's INTA comes from the MP table only; pci=nomsi:
# completions ride that pin.  A wrong pin leaves the scan waiting forever.
# The legacy driver touches no MMIO at all (the modern one would), which
# tells the two apart: Linux falls back to modern silently.
boot legacy --kernel "$KERNEL" -m 256M --disk "$TMP/vda.qcow2" \
    --append "$APPEND acpi=off pci=nomsi virtio_pci.force_legacy=1" \
    --expect "vda: vda1 vda2" --timeout 900 --report "$TMP/legacy.json"
echo "# how far it got:"; grep -aE "virtio|vda|PCI|IRQ|MP" "$TMP/legacy.out" | tr -d '\r' | tail -12 | sed 's/^/#   /'
sed 's/^/#   /' "$TMP/legacy.err"
ok $(( status != 0 )) "acpi=off pci=nomsi, Linux's legacy virtio driver: the partition scan finds vda1 and vda2 (status $status)"
mmio=$(grep -o '"mmio": [0-9]*' "$TMP/legacy.json" | awk '{ print $2 }')
[ "${mmio:-x}" = 0 ]; ok $? "and it went through the legacy I/O BAR ($mmio MMIO exits)"
done_testing
