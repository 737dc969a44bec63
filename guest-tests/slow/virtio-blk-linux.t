#!/bin/bash
# Linux's legacy virtio-pci driver on calf's transitional virtio-blk
# (make test-slow; the modern driver's cases are guest-tests/linux-virtio.t):
# virtio_pci.force_legacy=1: I/O BAR 0, no VERSION_1; acpi=off: the I/O
# APIC pin of the slot's INTA comes from the MP table only; pci=nomsi:
# completions ride that pin.  A wrong pin leaves the partition scan
# waiting forever.  The legacy driver touches no MMIO at all (the modern
# one would), which tells the two apart: Linux falls back to modern
# silently.  About 70 s of guest time on an idle machine here.
. "$(dirname "$0")/../lib.sh"
need_kvm
for tool in qemu-img qemu-io perl; do
    command -v $tool >/dev/null || { echo "1..0 # SKIP $tool not installed"; exit 0; }
done
need_linux

# The MBR: two Linux partitions, written into the qcow2 layer only.
perl -e 'my $m = "\0" x 446;
         $m .= pack("CA3CA3VV", 0, "\xff" x 3, 0x83, "\xff" x 3, @$_) for [2048, 16384], [18432, 47104];
         $m .= "\0" x 32 . "\x55\xaa"; print $m' >"$TMP/mbr.bin"
truncate -s 32M "$TMP/base.raw"
qemu-img create -q -f qcow2 -b "$TMP/base.raw" -F raw "$TMP/vda.qcow2"
qemu-io -f qcow2 -c "write -s $TMP/mbr.bin 0 512" "$TMP/vda.qcow2" >/dev/null

boot legacy --kernel "$LINUX_KERNEL" -m 256M --disk "$TMP/vda.qcow2" \
    --append "$LINUX_APPEND acpi=off pci=nomsi virtio_pci.force_legacy=1" \
    --expect "vda: vda1 vda2" --timeout 900 --report "$TMP/legacy.json"
echo "# how far it got:"; grep -aE "virtio|vda|PCI|IRQ|MP" "$TMP/legacy.out" | tr -d '\r' | tail -12 | sed 's/^/#   /'
sed 's/^/#   /' "$TMP/legacy.err"
ok $(( status != 0 )) "acpi=off pci=nomsi, Linux's legacy virtio driver: the partition scan finds vda1 and vda2 (status $status)"
mmio=$(grep -o '"mmio": [0-9]*' "$TMP/legacy.json" | awk '{ print $2 }')
[ "${mmio:-x}" = 0 ]; ok $? "and it went through the legacy I/O BAR ($mmio MMIO exits)"
done_testing
