#!/bin/bash
# --display sdl: the window renders what --screenshot sees, first on
# SDL's offscreen driver, then in a real X server (Xvfb), where xdotool
# types into the window and the test guest (ct.vga=keys) prints the scan
# codes it reads from the i8042: the whole way from a host key press to
# the guest.  Then SeaBIOS's own PS/2 driver: ESC typed into the window
# opens its boot menu.
. "$(dirname "$0")/lib.sh"
need_kvm
# Under ASan, SDL's video drivers (X11, D-Bus) leak at SDL_Quit from
# libraries they unload again, where no suppression can name them; leak
# checks of calf's own code run in guest-tests/vga.t.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
CHECK=$CALF_BUILD/tests/png-check
[ -x "$CHECK" ] || skip_all "$CHECK not built (make test builds it)"
if SDL_VIDEODRIVER=dummy "$CALF" run --kernel "$GUEST" --display sdl --timeout 30 2>&1 >/dev/null |
        grep -q "built without SDL2"; then
    skip_all "calf was built without SDL2"
fi

passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

SDL_VIDEODRIVER=offscreen boot off --kernel "$GUEST" --display sdl --append "ct.vga=text" \
    --screenshot "$TMP/off.png" --timeout 60
passed off; r=$?; is $r 0 "offscreen SDL window: the guest runs to its verdict (status $status)"; [ $r = 0 ] || show off
"$CHECK" "$TMP/off.png" size 640x400 cell 4,2 48 ffff55 0000aa; is $? 0 "and the screen is the text screen"

SDL_VIDEODRIVER=nosuchdriver boot nodrv --kernel "$GUEST" --display sdl
[ "$status" = 2 ] && has_err nodrv "--display sdl:"; is $? 0 "no usable video driver: one clear setup error (status $status)"

# ---- a real X server ----
if ! command -v Xvfb >/dev/null || ! command -v xdotool >/dev/null; then
    skip "Xvfb or xdotool not installed"
    done_testing
fi
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>"$TMP/dpy" 2>"$TMP/xvfb.err" &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -rf "$TMP"' EXIT
for i in $(seq 100); do [ -s "$TMP/dpy" ] && break; sleep 0.1; done
export DISPLAY=:$(cat "$TMP/dpy")
t0=$(date +%s%N)
SDL_VIDEODRIVER=x11 "$CALF" run --kernel "$GUEST" --display sdl --append "ct.vga=keys" \
    --screenshot "$TMP/x11.png" --timeout 60 >"$TMP/x11.out" 2>"$TMP/x11.err" </dev/null &
calf=$!
for i in $(seq 300); do has x11 "keyboard ready" && break; sleep 0.1; done
wid=$(timeout 20 xdotool search --sync --name '^calf$' | head -1)
ok "Xvfb: calf opens a window named calf" [ -n "$wid" ]
timeout 10 xdotool windowfocus --sync "$wid"
timeout 10 xdotool key --delay 100 a Return
wait $calf; status=$?
echo "# x11: status $status after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
grep -o "calf-test: key .." "$TMP/x11.out" | tr '\n' ' ' | sed 's/^/# /'; echo
[ "$(grep -o 'calf-test: key ..' "$TMP/x11.out" | cut -c16- | tr '\n' ' ')" = "1e 9e 1c 9c " ]
r=$?; is $r 0 "Xvfb: 'a' and Return typed into the window reach the guest as set-1 1e 9e 1c 9c"; [ $r = 0 ] || show x11
passed x11; is $? 0 "and the guest ends normally (status $status)"
"$CHECK" "$TMP/x11.png" size 640x400; is $? 0 "the screenshot of that run is the text screen"

# ---- SeaBIOS's own keyboard driver: ESC opens the boot menu, 1 picks ----
# (firmware boot is calf's own: only SeaBIOS's files may be missing)
if [ -e /usr/share/seabios/bios-256k.bin ] && [ -e /usr/share/seabios/vgabios-stdvga.bin ]; then
    truncate -s 1M "$TMP/empty.raw"
    t0=$(date +%s%N)
    SDL_VIDEODRIVER=x11 "$CALF" run --disk "$TMP/empty.raw,format=raw" --no-reboot --display sdl \
        --timeout 120 >"$TMP/menu.out" 2>"$TMP/menu.err" </dev/null &
    calf=$!
    wid=$(timeout 20 xdotool search --sync --name '^calf$' | head -1)
    timeout 10 xdotool windowfocus --sync "$wid"
    # SeaBIOS empties the controller, prints the prompt and waits 2.5 s
    # for ESC (keys typed before would fill the keyboard's buffer while
    # nobody reads it, and SeaBIOS gives up on a controller it cannot
    # flush): ESC five times a second once the prompt shows.  Repeats in
    # the menu are ignored for 1.5 s; a later one boots the same disk as
    # '1' does.
    for i in $(seq 600); do
        has menu "Press ESC for boot menu" && break; kill -0 $calf 2>/dev/null || break; sleep 0.1
    done
    xdotool key --delay 200 $(for i in $(seq 50); do echo Escape; done) &
    keys=$!
    for i in $(seq 300); do
        has menu "Select boot device" && break; kill -0 $calf 2>/dev/null || break; sleep 0.1
    done
    kill $keys 2>/dev/null; wait $keys 2>/dev/null
    timeout 10 xdotool key 1
    wait $calf; status=$?
    echo "# menu: status $status after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    has menu "Select boot device"; r=$?
    is $r 0 "SeaBIOS: ESC typed into the window opens the boot menu (its PS/2 driver and the i8042)"
    [ $r = 0 ] || show menu
    has menu "Booting from Hard Disk" && [ "$status" = 0 ]
    is $? 0 "and '1' boots the first disk, which is not bootable: the run ends (status $status)"
else
    skip "no SeaBIOS or vgabios-stdvga.bin (Debian package seabios)" "SeaBIOS boot menu" \
        "'1' boots the first disk"
fi

done_testing
