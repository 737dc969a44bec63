#!/bin/bash
# Firmware boot from IDE: SeaBIOS finds the PIIX3 IDE drives, boots the
# boot sector of firmware/bootsector/ from an IDE qcow2 disk (it reads a
# pattern through int 13h, CHS and LBA, and prints the sums) and the
# no-emulation El Torito image of firmware/cdboot/ from an ISO on the
# ATAPI CD-ROM (it reads the first 128 KiB of the disc through int 13h
# extensions, 2048-byte sectors, and prints their sum).  The host sums
# the same bytes.  --boot picks between IDE devices through the
# OpenFirmware paths of the "bootorder" file.
. "$(dirname "$0")/lib.sh"
need_kvm
BOOTSECTOR=$CALF_BUILD/firmware/bootsector.bin
CDBOOT=$CALF_BUILD/firmware/cdboot.bin
SEABIOS=/usr/share/seabios/bios-256k.bin
[ -e "$SEABIOS" ] || skip_all "$SEABIOS missing (Debian package seabios)"
need_cmd qemu-img perl

# sum32 FILE [BYTES]: the 32-bit sum of the file's first BYTES (default
# all) as little-endian dwords, as the boot code computes it.
sum32() {
    perl -e 'open my $f, "<", $ARGV[0] or die; local $/;
        my $d = <$f>; $d = substr($d, 0, $ARGV[1]) if $ARGV[1];
        printf "%08x", unpack("%32V*", $d)' "$1" "${2:-0}"
}

passed() {  # passed NAME TEXT: status 1 (the guest wrote 0), TEXT seen
    [ "$status" = 1 ] && has "$1" "$2" && ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

# ---- an IDE qcow2 disk with the boot sector ----
# make_disk NAME: a qcow2 disk with the boot sector and its own random
# pattern (64 sectors at LBA 64, boot.S); sets SUM_NAME.
make_disk() {
    truncate -s 8M "$TMP/$1.raw"
    dd if="$BOOTSECTOR" of="$TMP/$1.raw" conv=notrunc status=none
    head -c 32768 /dev/urandom >"$TMP/$1.pat"
    dd if="$TMP/$1.pat" of="$TMP/$1.raw" bs=512 seek=64 conv=notrunc status=none
    qemu-img convert -f raw -O qcow2 "$TMP/$1.raw" "$TMP/$1.qcow2"
    eval "sum_$1=$(sum32 "$TMP/$1.pat")"
}

if [ -e "$BOOTSECTOR" ]; then
    make_disk d
    make_disk e
    boot disk --disk "$TMP/d.qcow2,if=ide" --timeout 120 --bios-log "$TMP/disk.log"
    passed disk "calf-boot: lba sum $sum_d chs sum $sum_d"; r=$?
    is $r 0 "SeaBIOS boots an IDE qcow2 disk; int 13h CHS and LBA reads return the host's pattern ($sum_d)"
    [ $r = 0 ] || show disk
    ok "SeaBIOS's ATA driver finds the primary master" grep -q "ata0-0: CALF HARDDISK" "$TMP/disk.log"
    qemu-img check -q "$TMP/d.qcow2"; is $? 0 "the image is clean"
    # "c" boots disks in --disk order, whichever bus they are on
    boot mixed1 --disk "$TMP/e.qcow2" --disk "$TMP/d.qcow2,if=ide" --timeout 120
    passed mixed1 "calf-boot: lba sum $sum_e"; r=$?
    is $r 0 "a virtio disk, then an IDE disk, no --boot: the virtio disk boots"; [ $r = 0 ] || show mixed1
    boot mixed2 --disk "$TMP/d.qcow2,if=ide" --disk "$TMP/e.qcow2" --timeout 120
    passed mixed2 "calf-boot: lba sum $sum_d"; r=$?
    is $r 0 "an IDE disk, then a virtio disk, no --boot: the IDE disk boots"; [ $r = 0 ] || show mixed2
else
    echo "# $BOOTSECTOR not built: no IDE disk boot case"
fi

# ---- El Torito from the ATAPI CD ----
if ! command -v xorriso >/dev/null; then
    echo "# xorriso not installed (Debian package xorriso): no CD boot cases"
elif [ ! -e "$CDBOOT" ]; then
    echo "# $CDBOOT not built: no CD boot cases"
else
    mkdir -p "$TMP/iso"
    cp "$CDBOOT" "$TMP/iso/cdboot.bin"
    head -c 65536 /dev/urandom >"$TMP/iso/pattern.bin"
    xorriso -as mkisofs -quiet -V CALF_IDE_BOOT -o "$TMP/boot.iso" -b cdboot.bin \
        -no-emul-boot -boot-load-size 4 "$TMP/iso" 2>"$TMP/xorriso.err"
    is $? 0 "xorriso builds a no-emulation El Torito ISO"
    sum_cd=$(sum32 "$TMP/boot.iso" 131072)
    boot cd --cdrom "$TMP/boot.iso" --timeout 120 --bios-log "$TMP/cd.log"
    passed cd "calf-cdboot: sum $sum_cd"; r=$?
    is $r 0 "SeaBIOS boots the ISO from the ATAPI CD; int 13h extended reads return the disc's bytes ($sum_cd)"
    [ $r = 0 ] || show cd
    ok "the boot image saw 2048-byte sectors and every read worked" has cd "calf-cdboot: PASS"
    ok "SeaBIOS's ATAPI driver finds the secondary master" grep -q "DVD/CD \[ata1-0: CALF DVD-ROM" "$TMP/cd.log"

    if [ -e "$BOOTSECTOR" ]; then
        # ---- the boot order between IDE devices ----
        boot order_c --disk "$TMP/d.qcow2,if=ide" --cdrom "$TMP/boot.iso" --timeout 120
        passed order_c "calf-boot: PASS"; r=$?
        is $r 0 "an IDE disk and a CD, no --boot: the disk boots first"; [ $r = 0 ] || show order_c
        boot order_d --disk "$TMP/d.qcow2,if=ide" --cdrom "$TMP/boot.iso" --boot d --timeout 120
        passed order_d "calf-cdboot: PASS"; r=$?
        is $r 0 "--boot d: the CD boots"; [ $r = 0 ] || show order_d
        boot order_n --disk "$TMP/d.qcow2" --cdrom "$TMP/boot.iso" --boot disk1 --timeout 120
        passed order_n "calf-cdboot: PASS"; r=$?
        is $r 0 "a virtio disk and an IDE CD, --boot disk1: the second drive on the command line (the CD) boots"
        [ $r = 0 ] || show order_n
        boot order_s --disk "$TMP/boot.iso,if=ide,media=cdrom,index=1" \
            --disk "$TMP/d.qcow2,if=ide,index=3" --boot disk0 --timeout 120
        passed order_s "calf-cdboot: PASS"; r=$?
        is $r 0 "a CD as primary slave and a disk as secondary slave, --boot disk0: the CD boots (drive@0/disk@1)"
        [ $r = 0 ] || show order_s
    fi
fi

[ "$t_num" -gt 0 ] || skip_all "nothing to boot (see the comments above)"
# firmware boot is calf's own feature: a calf without it fails here too
"$CALF" run --help 2>&1 | grep -q -- "--firmware"
is $? 0 "calf run --help offers firmware boot (--firmware)"
done_testing
