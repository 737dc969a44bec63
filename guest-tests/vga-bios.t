#!/bin/bash
# Firmware boot with a screen: SeaBIOS runs vgabios-stdvga as the std
# VGA's option ROM, prints its banner on the VGA text screen (seen in the
# --screenshot PNG), and a boot sector (firmware/vgaboot/boot.S) sets a
# 640x480x32 VBE mode through it and draws into the linear framebuffer:
# the framebuffer address the VGA BIOS reports must be the BAR0 SeaBIOS
# gave the device, and the pixels must be in the screenshot.
. "$(dirname "$0")/lib.sh"
need_kvm
CHECK=$CALF_BUILD/tests/png-check
VGABOOT=$CALF_BUILD/firmware/vgaboot.bin
for f in "$CHECK" "$VGABOOT" /usr/share/seabios/bios-256k.bin /usr/share/seabios/vgabios-stdvga.bin; do
    [ -e "$f" ] || skip_all "$f missing (make test builds it; Debian package seabios)"
done
# firmware boot is calf's own feature: a calf without it fails, not skips
"$CALF" run --help 2>&1 | grep -q -- "--firmware"
is $? 0 "calf run --help offers firmware boot (--firmware)"

# ---- the BIOS banner on the text screen ----
truncate -s 1M "$TMP/empty.raw"
boot banner --disk "$TMP/empty.raw,format=raw" --no-reboot --screenshot "$TMP/banner.png" --timeout 120
[ "$status" = 0 ] && has banner "No bootable device"
r=$?; is $r 0 "SeaBIOS with the VGA BIOS runs to 'No bootable device' (status $status)"; [ $r = 0 ] || show banner
# "SeaBIOS" in light grey on black at the top left, glyph by glyph
cells=()
col=0
for ch in 53 65 61 42 49 4f 53; do cells+=(cell $col,0 $ch aaaaaa 000000); col=$((col + 1)); done
"$CHECK" "$TMP/banner.png" size 640x400 "${cells[@]}" 2>"$TMP/banner.check"
r=$?; is $r 0 "the screenshot shows the SeaBIOS banner on an 80x25 text screen"; sed 's/^/#   /' "$TMP/banner.check"

# ---- a VBE mode set through the VGA BIOS ----
truncate -s 1M "$TMP/vbe.raw"
dd if="$VGABOOT" of="$TMP/vbe.raw" conv=notrunc status=none
boot vbe --disk "$TMP/vbe.raw,format=raw" --screenshot "$TMP/vbe.png" --timeout 120
[ "$status" = 1 ]; r=$?; is $r 0 "the boot sector sets 640x480x32 through VBE and draws (status $status)"; [ $r = 0 ] || show vbe
lfb=$(grep -o "calf-vga: lfb [0-9a-f]* bar0 [0-9a-f]*" "$TMP/vbe.out")
echo "# $lfb"
set -- $lfb
[ -n "$lfb" ] && [ "$3" = "$5" ]; is $? 0 "the VGA BIOS reports the framebuffer at BAR0 ($3 = $5)"
"$CHECK" "$TMP/vbe.png" size 640x480 rect 256,256,64,64 ff0000 pixel 255,256 000000 \
    pixel 639,479 123456 2>"$TMP/vbe.check"
r=$?; is $r 0 "the screenshot is the VBE mode with the boot sector's pixels"; sed 's/^/#   /' "$TMP/vbe.check"

done_testing
