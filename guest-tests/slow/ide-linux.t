#!/bin/bash
# Linux's own ata_piix driver on calf's PIIX3 IDE function (make
# test-slow): an IDE qcow2 disk as primary master and an ISO as ATAPI
# CD-ROM on the secondary master.  libata resets both channels, reads the
# signatures, IDENTIFY (PACKET) DEVICE, sets the transfer mode, and sends
# the CD an INQUIRY through PACKET; the kernel prints what it found.  The
# small kernel has no sd/sr drivers, so no data is read (guest-tests/ide.t
# covers reads and writes).  About 6 minutes of guest time here.
#
# Linux requests ISA IRQ 14/15 for a legacy-mode controller: under a
# hardware-reduced FADT it has no legacy IRQs and the probe fails with
# -22 (i8042 the same); should the ACPI tables go back to that, the
# failure is reported as a TODO naming the cause.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_cmd qemu-img
need_linux
KERNEL=$LINUX_KERNEL
APPEND=$LINUX_APPEND

qemu-img create -q -f qcow2 "$TMP/hda.qcow2" 64M
head -c $((1024 * 2048)) /dev/zero >"$TMP/cd.iso"
boot linux --kernel "$KERNEL" -m 256M --disk "$TMP/hda.qcow2,if=ide" --cdrom "$TMP/cd.iso" \
    --append "$APPEND" --expect "CD-ROM            CALF" --timeout 1200
echo "# how far it got:"; grep -aE "ata[0-9]|ata_piix|scsi" "$TMP/linux.out" | tr -d '\r' | tail -12 | sed 's/^/#   /'
sed 's/^/#   /' "$TMP/linux.err"
# a TODO failure is reported, not counted
grep -aq "ata_piix: probe of 0000:00:01.1 failed with error -22" "$TMP/linux.out" &&
    TODO="ata_piix got no ISA IRQ 14 (a hardware-reduced FADT?)"
is "$status" 0 "ata_piix probes the controller and the kernel sees the CD-ROM (status $status)"
grep -aq "ata1.00: ATA-7: CALF HARDDISK" "$TMP/linux.out" &&
    grep -aq "ata1.00: 131072 sectors, multi 16: LBA48" "$TMP/linux.out"
is $? 0 "libata: IDENTIFY DEVICE of the master (64 MiB, LBA48, READ/WRITE MULTIPLE)"
ok "libata: the ATAPI signature and IDENTIFY PACKET DEVICE of the secondary master" \
    grep -aq "ata2.00: ATAPI: CALF DVD-ROM" "$TMP/linux.out"
# (--expect ends the run right after the vendor field of the line)
ok "SCSI INQUIRY through PACKET: a CD-ROM (peripheral type 5) from vendor CALF" \
    grep -aqE "scsi 1:0:0:0: CD-ROM +CALF" "$TMP/linux.out"
TODO=
qemu-img check -q "$TMP/hda.qcow2"; is $? 0 "qemu-img check: the disk image is clean"
done_testing
