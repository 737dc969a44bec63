#!/bin/bash
# Firmware boot: without --kernel, calf boots SeaBIOS, which finds a
# virtio-blk qcow2 disk, loads the boot sector of firmware/bootsector/
# and runs it.  The boot sector reads a pattern through int 13h with an
# LBA extended read and with CHS reads and prints both sums over int 10h
# (sercon puts them on the serial console); the host sums the same bytes
# and they must agree.  --boot picks the disk, a disk without a boot
# sector ends with SeaBIOS's "No bootable device" and its reset, which
# --no-reboot makes the end of the run (reset.t: the restart), and a
# bad --firmware is one clear error.  The boot sector also pokes fw_cfg
# the way a careless guest would.
. "$(dirname "$0")/lib.sh"
need_kvm
BOOTSECTOR=$CALF_BUILD/firmware/bootsector.bin
SEABIOS=/usr/share/seabios/bios-256k.bin
[ -e "$BOOTSECTOR" ] || skip_all "$BOOTSECTOR not built (run make)"
[ -e "$SEABIOS" ] || skip_all "$SEABIOS missing (Debian package seabios)"
need_cmd qemu-img perl

# The boot sector's pattern: 64 sectors at LBA 64 (boot.S).
PAT_LBA=64
PAT_SECTORS=64

# sum32 FILE: the 32-bit sum of the file's little-endian dwords, as the
# boot sector computes it.
sum32() {
    perl -e 'local $/; open my $f, "<", $ARGV[0] or die; printf "%08x", unpack("%32V*", <$f>)' "$1"
}

# make_disk NAME: a bootable qcow2 disk with its own random pattern;
# sets SUM_NAME to the pattern's sum.
make_disk() {
    local raw=$TMP/$1.raw
    truncate -s 8M "$raw"
    dd if="$BOOTSECTOR" of="$raw" conv=notrunc status=none
    head -c $((PAT_SECTORS * 512)) /dev/urandom >"$TMP/$1.pat"
    dd if="$TMP/$1.pat" of="$raw" bs=512 seek=$PAT_LBA conv=notrunc status=none
    qemu-img convert -f raw -O qcow2 "$raw" "$TMP/$1.qcow2"
    eval "SUM_$1=$(sum32 "$TMP/$1.pat")"
}

make_disk a
make_disk b
[ "$SUM_a" != "$SUM_b" ] || { echo "Bail out! two random patterns with one sum"; exit 1; }

# booted NAME SUM: the boot sector ran to its end on a disk whose pattern
# sums to SUM: both reads printed that sum, it reported PASS and ended
# the VM with status 0 (calf's status 1), no sanitizer report.
booted() {
    [ "$status" = 1 ] && has "$1" "calf-boot: lba sum $2 chs sum $2" &&
        has "$1" "calf-boot: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

# ---- SeaBIOS boots the boot sector from a virtio-blk qcow2 disk ----
boot one --disk "$TMP/a.qcow2" --timeout 120 --report "$TMP/one.json"
booted one "$SUM_a"; r=$?
is $r 0 "SeaBIOS boots a virtio-blk qcow2 disk; both int 13h reads return the host's pattern (sum $SUM_a)"
[ $r = 0 ] || show one
ok "the SeaBIOS banner is on the serial console (sercon)" has one "SeaBIOS (version"
ok "the boot menu prompt is on the serial console" has one "Press ESC for boot menu."
ok "SeaBIOS says it boots from the hard disk" has one "Booting from Hard Disk..."
ok "int 13h AH=08h reports a geometry (the CHS reads cross a track)" has one "calf-boot: geometry heads"
has one "calf-boot: fw_cfg ok"
is $? 0 "fw_cfg from the guest: signature, DMA into RAM; DMA outside RAM gets the error bit, a request block outside RAM is ignored"
has one "calf-boot: int 15h wait ok"
is $? 0 "int 15h AH=86h waits 20 ms and returns (SeaBIOS counts the RTC's periodic interrupts on IRQ 8)"
ok "the run ended through the debug-exit port" grep -q '"exit_reason": "debug-exit"' "$TMP/one.json"

# ---- the boot order ----
boot first --disk "$TMP/a.qcow2" --disk "$TMP/b.qcow2" --timeout 120 --bios-log "$TMP/bios.log"
booted first "$SUM_a"; r=$?; is $r 0 "two disks, no --boot: the first disk boots"; [ $r = 0 ] || show first
grep -q "^SeaBIOS (version" "$TMP/bios.log" && grep -q "found virtio-blk at 00:03.0" "$TMP/bios.log"
is $? 0 "--bios-log: SeaBIOS's debug log (port 0x402) lands in the file"
boot second --disk "$TMP/a.qcow2" --disk "$TMP/b.qcow2" --boot disk1 --timeout 120
booted second "$SUM_b"; r=$?; is $r 0 "--boot disk1: the second disk boots (sum $SUM_b)"; [ $r = 0 ] || show second

# ---- nothing bootable: SeaBIOS gives up and calf ends cleanly ----
qemu-img create -q -f qcow2 "$TMP/blank.qcow2" 8M
boot blank --disk "$TMP/blank.qcow2" --no-reboot --timeout 120 --report "$TMP/blank.json"
has blank "No bootable device"; r=$?; is $r 0 "a disk without a boot sector: SeaBIOS prints 'No bootable device'"
[ $r = 0 ] || show blank
[ "$status" = 0 ]; r=$?; is $r 0 "calf ends with status 0 after the firmware's reset (status $status)"
[ $r = 0 ] || show blank
ok "the run ended because the firmware reset the machine through port 0xCF9, not by the timeout" grep -q '"exit_reason": "reset"' "$TMP/blank.json"
! has_err blank "triple fault"; is $? 0 "the reset is a clean one (no triple fault)"

# ---- bad firmware files and options ----
boot missing --firmware "$TMP/no-such.bin" --timeout 20
[ "$status" = 2 ] && has_err missing "no-such.bin" && has_err missing "No such file"
is $? 0 "--firmware with a missing file: status 2, the error names it (status $status)"
head -c 100000 "$SEABIOS" >"$TMP/short.bin"
boot short --firmware "$TMP/short.bin" --timeout 20
[ "$status" = 2 ] && has_err short "short.bin" && has_err short "not a BIOS ROM"
is $? 0 "--firmware with a truncated ROM: status 2, a clear error (status $status)"
truncate -s 1M "$TMP/big.bin"
boot big --firmware "$TMP/big.bin" --timeout 20
[ "$status" = 2 ] && has_err big "not a BIOS ROM"; is $? 0 "--firmware with a 1 MiB file: refused (status $status)"
boot badboot --disk "$TMP/a.qcow2" --boot x --timeout 20
[ "$status" = 2 ] && has_err badboot "bad --boot"; is $? 0 "--boot x: refused with a usage hint (status $status)"
boot mixed --kernel "$GUEST" --firmware "$SEABIOS" --timeout 20
[ "$status" = 2 ] && has_err mixed "firmware boot"; is $? 0 "--kernel with --firmware: refused (status $status)"

done_testing
