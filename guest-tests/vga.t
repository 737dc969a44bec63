#!/bin/bash
# The std VGA end to end: the test guest (firmware/testguest/vga.c) draws
# a text screen and a 640x480x32 framebuffer, calf writes --screenshot,
# and tests/unit/png-check.c decodes the PNG and checks pixels (glyphs in
# their colours, the cursor, the framebuffer pattern).  The guest also
# drives the i8042 command protocol and checks the answers itself.
. "$(dirname "$0")/lib.sh"
need_kvm
CHECK=$CALF_BUILD/tests/png-check
[ -x "$CHECK" ] || skip_all "$CHECK not built (make test builds it)"

passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

png_ok() {  # png_ok NAME CHECK...: png-check on $TMP/NAME.png
    local name=$1
    shift
    "$CHECK" "$TMP/$name.png" "$@" 2>"$TMP/$name.check"
    local r=$?
    sed 's/^/#   /' "$TMP/$name.check"
    return $r
}

# ---- text mode: 80x25, 8x16 cells, the EGA palette of mode 3 ----
boot text --kernel "$GUEST" --append "ct.vga=text" --screenshot "$TMP/text.png" --timeout 60
passed text; r=$?; is $r 0 "text: the guest's register checks pass (status $status)"; [ $r = 0 ] || show text
png_ok text size 640x400; is $? 0 "text: an 80x25 screen is 640x400"
png_ok text cell 4,2 48 ffff55 0000aa cell 5,2 65 ffff55 0000aa cell 9,2 2c ffff55 0000aa
is $? 0 "text: 'Hello, VGA' in yellow on blue at row 2, column 4 (glyph by glyph)"
png_ok text cell 0,0 db ff5555 000000; is $? 0 "text: attribute 0x0c is light red"
png_ok text cell 0,4 db ff00ff 000000; is $? 0 "text: a reprogrammed DAC entry (7 -> magenta)"
png_ok text cell 1,4 db ffffff 000000; is $? 0 "text: a reprogrammed attribute palette entry (2 -> white)"
png_ok text cursor 5,3 14,15 ffff55 cursor 5,3 0,13 000000
is $? 0 "text: the cursor covers scan lines 14-15 at row 3, column 5 in the cell's colour"
png_ok text cell 79,24 00 000000 000000 cell 4,2 41 ffff55 0000aa
ok "text: the checker fails on a wrong glyph" [ $? = 1 ]

# ---- Bochs VBE: 640x480x32 in the linear framebuffer ----
boot lfb --kernel "$GUEST" --append "ct.vga=lfb" --screenshot "$TMP/lfb.png" --timeout 60
passed lfb; r=$?; is $r 0 "lfb: DISPI, BAR sizing, BAR0 move and BAR2 checks pass (status $status)"; [ $r = 0 ] || show lfb
png_ok lfb size 640x480; is $? 0 "lfb: the screen is the DISPI mode, 640x480"
png_ok lfb rect 0,0,64,64 ff0000 rect 64,0,64,64 00ff00 rect 128,0,64,64 0000ff
is $? 0 "lfb: red, green and blue squares (BGRX byte order)"
png_ok lfb pixel 200,100 ffffff pixel 399,299 ffffff pixel 201,100 000000 pixel 639,479 123456
is $? 0 "lfb: the diagonal and the last pixel"
png_ok lfb pixel 320,240 abcdef; is $? 0 "lfb: a pixel written after BAR0 moved reaches the same framebuffer"

# ---- the keyboard controller protocol ----
boot kbd --kernel "$GUEST" --append "ct.vga=kbd"
passed kbd; r=$?; is $r 0 "i8042: self test, command byte, reset, identify, echo, LEDs, scan code sets, IRQ 1 (status $status)"; [ $r = 0 ] || show kbd

# ---- a hostile guest: absurd modes are drawn bounded, never read past ----
boot hdispi --kernel "$GUEST" --append "ct.vga=hdispi" --screenshot "$TMP/hdispi.png" --timeout 60
passed hdispi; is $? 0 "hostile DISPI values (a mode larger than video memory, offsets past its end): calf runs on"
png_ok hdispi size 2560x1600 rect 0,0,2560,1600 000000
is $? 0 "and draws that mode black instead of reading past the framebuffer"
boot htext --kernel "$GUEST" --append "ct.vga=htext" --screenshot "$TMP/htext.png" --timeout 60
passed htext; is $? 0 "hostile CRTC values in text mode: calf runs on"
png_ok htext size 2048x512; is $? 0 "and draws 256 columns of double-scanned 1-line cells"
boot hchain4 --kernel "$GUEST" --append "ct.vga=hchain4" --screenshot "$TMP/hchain4.png" --timeout 60
passed hchain4; is $? 0 "hostile CRTC values in a chain-4 mode: calf runs on"
png_ok hchain4 size 1024x1024; is $? 0 "and draws the largest chain-4 screen the CRTC can describe"

# ---- options ----
boot novga --kernel "$GUEST" --append "ct.vga=lfb" --timeout 60
[ "$status" = 3 ] && has novga "no PCI function 1234:1111"
is $? 0 "no VGA without --display/--screenshot/--vga std (status $status)"
boot vgastd --kernel "$GUEST" --vga std --append "ct.vga=lfb" --timeout 60
passed vgastd; is $? 0 "--vga std alone adds the VGA"
boot badvga --kernel "$GUEST" --vga none --screenshot "$TMP/x.png"
[ "$status" = 2 ] && has_err badvga "--vga none"; is $? 0 "--vga none with --screenshot is a setup error"
boot baddisp --kernel "$GUEST" --display vnc
[ "$status" = 2 ] && has_err baddisp "bad --display"; is $? 0 "an unknown --display is a setup error"
boot badshot --kernel "$GUEST" --screenshot "$TMP/no/such/dir.png"
[ "$status" != 0 ] && has_err badshot "screenshot"; is $? 0 "an unwritable screenshot path is reported (status $status)"

done_testing
