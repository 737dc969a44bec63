#!/bin/bash
# Linux's own virtio-blk driver on calf's virtio-pci device, with the
# small kernel of linux.t (no initramfs):
#  - vda: a qcow2 disk over a raw base whose MBR lives in the qcow2
#    layer only: the kernel's partition scan must print "vda: vda1 vda2"
#    (a read through PCI enumeration from the ACPI DSDT, virtio-pci and
#    the qcow2 engine);
#  - vdb: an ext2 filesystem mounted as root read-write (root=/dev/vdb
#    rw): ext2 writes its superblock on mount, so the host must see the
#    mount count go up, and qemu-img check must find both images clean.
# The run ends at the mount message (on hardware KVM the kernel would go
# on to look for /sbin/init, which this root lacks).  On hardware KVM a
# third case boots a busybox initramfs that writes vda with dd.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd qemu-img qemu-io mke2fs dumpe2fs perl
need_linux

# vda: 32 MiB of raw base under a qcow2 layer that alone holds the MBR
make_mbr_disk "$TMP/vda.qcow2" "$TMP/base.raw"

# The root filesystem, converted to qcow2.
truncate -s 16M "$TMP/root.raw"
mke2fs -q -t ext2 -F "$TMP/root.raw"
qemu-img convert -f raw -O qcow2 "$TMP/root.raw" "$TMP/vdb.qcow2"
count() { qemu-img convert -f qcow2 -O raw "$TMP/vdb.qcow2" "$TMP/peek.raw" &&
          dumpe2fs -h "$TMP/peek.raw" 2>/dev/null | awk '/^Mount count:/ { print $3 }'; }
before=$(count)

boot linux --kernel "$LINUX_KERNEL" -m 256M --disk "$TMP/vda.qcow2" --disk "$TMP/vdb.qcow2" \
    --append "$LINUX_APPEND root=/dev/vdb rw rootfstype=ext2" \
    --expect "VFS: Mounted root (ext2 filesystem)" --timeout 900
echo "# how far it got:"; grep -aE "virtio|vda|vdb|VFS|PCI" "$TMP/linux.out" | tr -d '\r' | tail -12 | sed 's/^/#   /'
sed 's/^/#   /' "$TMP/linux.err"
is "$status" 0 "Linux mounts an ext2 root from a virtio disk read-write (status $status)"
ok "the partition scan through virtio-blk and qcow2 finds vda1 and vda2" grep -aq "vda: vda1 vda2" "$TMP/linux.out"
after=$(count)
is $(( ${after:-0} <= ${before:-0} )) 0 "the host sees the superblock's mount count go up ($before -> $after)"
qemu-img check -q "$TMP/vdb.qcow2"; is $? 0 "qemu-img check: the root image is clean"
qemu-img check -q "$TMP/vda.qcow2"; is $? 0 "and so is the partitioned one"
cmp -s <(head -c 512 "$TMP/base.raw") <(head -c 512 /dev/zero); is $? 0 "the raw base under the MBR was not written"

# Guest userspace writes the disk: /init (calf.dd) dd's the first 64 KiB of
# its busybox to 1 MiB of vda; the host reads the same bytes out of the
# qcow2 layer.  Needs guest userspace: hardware KVM only.
if [ -e /sys/module/kvm_pvm ]; then
    skip "guest userspace cannot run on kvm_pvm (docs/ARCHITECTURE.md)" \
        "/init writes /dev/vda with dd and powers off" "the host reads the guest's bytes out of the qcow2 image"
else
    need_initramfs
    boot dd --kernel "$LINUX_KERNEL" --initrd "$LINUX_INITRD" -m 256M --disk "$TMP/vda.qcow2" \
        --append "$LINUX_APPEND rdinit=/init calf.dd" --timeout 120 --report "$TMP/dd.json"
    has dd "calf-linux: dd done" && [ $status = 0 ]
    is $? 0 "/init writes /dev/vda with dd and powers off (status $status)"
    qemu-img convert -f qcow2 -O raw "$TMP/vda.qcow2" "$TMP/vda.raw"
    cmp -s <(tail -c +$((1048576 + 1)) "$TMP/vda.raw" | head -c 65536) <(head -c 65536 "$LINUX_BUSYBOX")
    is $? 0 "the host reads the guest's bytes out of the qcow2 image"
    qemu-img check -q "$TMP/vda.qcow2"; is $? 0 "qemu-img check: clean after the guest's write"
fi
done_testing
