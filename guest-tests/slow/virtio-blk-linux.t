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
need_cmd qemu-img qemu-io perl
need_linux

# vda: 32 MiB of raw base under a qcow2 layer that alone holds the MBR
make_mbr_disk "$TMP/vda.qcow2" "$TMP/base.raw"

boot legacy --kernel "$LINUX_KERNEL" -m 256M --disk "$TMP/vda.qcow2" \
    --append "$LINUX_APPEND acpi=off pci=nomsi virtio_pci.force_legacy=1" \
    --expect "vda: vda1 vda2" --timeout 900 --report "$TMP/legacy.json"
echo "# how far it got:"; grep -aE "virtio|vda|PCI|IRQ|MP" "$TMP/legacy.out" | tr -d '\r' | tail -12 | sed 's/^/#   /'
sed 's/^/#   /' "$TMP/legacy.err"
is "$status" 0 "acpi=off pci=nomsi, Linux's legacy virtio driver: the partition scan finds vda1 and vda2 (status $status)"
mmio=$(grep -o '"mmio": [0-9]*' "$TMP/legacy.json" | awk '{ print $2 }')
ok "and it went through the legacy I/O BAR ($mmio MMIO exits)" [ "${mmio:-x}" = 0 ]
done_testing
