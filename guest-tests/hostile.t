#!/bin/bash
# A hostile guest against the devices without a hostile test of their
# own (firmware/testguest/hostile.c, ct.hostile=1): garbage selectors,
# reads past item ends and wild DMA to fw_cfg (a --kernel machine has
# fw_cfg too, as QEMU's do); every PCI function's configuration space written
# with garbage at every offset and width, BARs over RAM, over another
# BAR, at all ones and over the local APIC, an I/O BAR over COM1, MSI-X
# enabled with no table and its table and PBA full of garbage; every
# UART register, the divisor latch and a FIFO overrun; every i8042
# command but the reset pulse, every output-port value with the reset
# line high, every command byte and keyboard byte, 200 unread bytes; the
# RTC through every CMOS index (with the NMI bit too), bad BCD, 12-hour
# garbage, the largest year and past it, the fastest periodic rate.
# Each part ends with the device still answering sanely (the guest
# checks).  Here: the guest's verdict, calf's exit status, no sanitizer
# report, and calf's peak RSS (VmHWM, sampled while it runs) under a
# bound.
. "$(dirname "$0")/lib.sh"
need_kvm

# Peak RSS bound: the guest touches a few MiB of its 64 MiB and calf
# itself needs a few more; a device that allocated per guest access, or
# mapped something huge, goes past it.  Sanitizer builds carry shadow
# memory: their bound is the runtime's, larger.
RSS_MAX_KIB=$((48 * 1024))
if ldd "$CALF" 2>/dev/null | grep -qE 'lib(a|t)san'; then
    RSS_MAX_KIB=$((1024 * 1024))
fi

# hostile NAME ARGS...: boot with ct.hostile=1, sampling calf's VmHWM
# every 20 ms while it runs; leaves $status and $hwm (KiB).
hostile() {
    local name=$1 t0 t1 pid h
    shift
    t0=$(date +%s%N)
    "$CALF" run --kernel "$GUEST" --memory 64M --append "ct.hostile=1" \
        --timeout 30 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
    pid=$!
    hwm=0
    while kill -0 $pid 2>/dev/null; do
        h=$(awk '/^VmHWM:/ { print $2 }' /proc/$pid/status 2>/dev/null)
        [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
        sleep 0.02
    done
    wait $pid
    status=$?
    t1=$(date +%s%N)
    echo "# $name: status $status after $(( (t1 - t0) / 1000000 )) ms, peak RSS $hwm KiB"
}

survived() {
    [ "$status" = 1 ] && has "$1" "calf-test: hostile: survived" &&
        has "$1" "calf-test: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

truncate -s 1M "$TMP/v.raw" "$TMP/i.raw"
for run in "virtio --disk $TMP/v.raw,format=raw --vga std" \
           "ide --disk $TMP/i.raw,format=raw,if=ide --cpus 2"; do
    set -- $run
    name=$1
    shift
    hostile "$name" "$@"
    survived "$name"; r=$?
    is $r 0 "$name: the guest survives every hostile part and says so (status $status)"
    [ $r = 0 ] || show "$name"
    for part in uart rtc i8042 pci; do
        has "$name" "calf-test: hostile: $part: ok"
        is $? 0 "$name: $part: the device still answers sanely after the garbage"
    done
    has "$name" "calf-test: hostile: fw_cfg: ok"
    is $? 0 "$name: fw_cfg: sane after garbage selectors, reads past the end, wild DMA"
    has "$name" "16 of 40 looped-back bytes kept"
    is $? 0 "$name: a FIFO overrun keeps 16 bytes, no more"
    ! grep -qE "Sanitizer|runtime error" "$TMP/$name.err"
    is $? 0 "$name: no sanitizer report"
    [ "$hwm" -gt 0 ] && [ "$hwm" -lt "$RSS_MAX_KIB" ]
    is $? 0 "$name: calf's peak RSS $hwm KiB stays under $RSS_MAX_KIB KiB"
done
ok "virtio: the MSI-X function got the table and PBA garbage" has virtio "with MSI-X"
done_testing
