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
command -v qemu-img >/dev/null || { echo "1..0 # SKIP qemu-img not installed"; exit 0; }
need_linux
KERNEL=$LINUX_KERNEL
APPEND=$LINUX_APPEND

qemu-img create -q -f qcow2 "$TMP/hda.qcow2" 64M
head -c $((1024 * 2048)) /dev/zero >"$TMP/cd.iso"
boot linux --kernel "$KERNEL" -m 256M --disk "$TMP/hda.qcow2,if=ide" --cdrom "$TMP/cd.iso" \
    --append "$APPEND" --expect "CD-ROM            CALF" --timeout 1200
echo "# how far it got:"; grep -aE "ata[0-9]|ata_piix|scsi" "$TMP/linux.out" | tr -d '\r' | tail -12 | sed 's/^/#   /'
sed 's/^/#   /' "$TMP/linux.err"
todo=""
# a TODO failure is reported, not counted
tok() { ok "$@"; [ -n "$todo" ] && [ "$1" != 0 ] && t_fail=$((t_fail - 1)); }
grep -aq "ata_piix: probe of 0000:00:01.1 failed with error -22" "$TMP/linux.out" &&
    todo=" # TODO ata_piix got no ISA IRQ 14 (a hardware-reduced FADT?)"
tok $(( status != 0 )) "ata_piix probes the controller and the kernel sees the CD-ROM (status $status)$todo"
grep -aq "ata1.00: ATA-7: CALF HARDDISK" "$TMP/linux.out" &&
    grep -aq "ata1.00: 131072 sectors, multi 16: LBA48" "$TMP/linux.out"
tok $? "libata: IDENTIFY DEVICE of the master (64 MiB, LBA48, READ/WRITE MULTIPLE)$todo"
grep -aq "ata2.00: ATAPI: CALF DVD-ROM" "$TMP/linux.out"
tok $? "libata: the ATAPI signature and IDENTIFY PACKET DEVICE of the secondary master$todo"
# (--expect ends the run right after the vendor field of the line)
grep -aqE "scsi 1:0:0:0: CD-ROM +CALF" "$TMP/linux.out"
tok $? "SCSI INQUIRY through PACKET: a CD-ROM (peripheral type 5) from vendor CALF$todo"
qemu-img check -q "$TMP/hda.qcow2"; ok $? "qemu-img check: the disk image is clean"
done_testing
