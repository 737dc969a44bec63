#!/bin/bash
# A guest reset restarts the machine (as QEMU does), --no-reboot ends the
# run instead.  The test guest's ct.reset mode (firmware/testguest/reset.c)
# marks a CMOS NVRAM byte, spoils its own image data, command line, e820
# count and initrd, and resets; the boot after it finds the mark and
# passes only if the VMM reloaded all of that and reset the vCPUs (the AP
# must answer INIT/SIPI again) and devices.
. "$(dirname "$0")/lib.sh"
need_kvm

json() { grep -o "\"$2\": [^,}]*" "$TMP/$1.json" | head -1 | sed 's/.*: //; s/"//g'; }
boots() { grep -c "calf-test: booted via" "$TMP/$1.out"; }

head -c 8192 /dev/urandom >"$TMP/initrd"
crc=$(crc32_of "$TMP/initrd")

boot i8042 --kernel "$GUEST" --cpus 2 --initrd "$TMP/initrd" \
    --append "ct.reset=1 ct.cpus=2 ct.mem=256 ct.initrd=$crc" \
    --timeout 60 --report "$TMP/i8042.json"
is "$status" 1 "i8042 reset restarts the machine; the second boot passes (status $status)"
[ "$status" = 1 ] || show i8042
has i8042 "reset: first boot, i8042 reset" && has i8042 "reset: second boot"
is $? 0 "the guest saw both boots"
is $(( $(boots i8042) != 2 )) 0 "two boots on one console ($(boots i8042))"
! has i8042 "calf-test: FAIL"; is $? 0 "kernel, command line, e820, initrd and both CPUs right after the reset"
is $(( $(json i8042 resets) != 1 )) 0 "report counts one reset ($(json i8042 resets))"
ok "and ends by debug-exit" [ "$(json i8042 exit_reason)" = debug-exit ]

boot triple --kernel "$GUEST" --append "ct.reset=triple" --timeout 60 --report "$TMP/triple.json"
is "$status" 1 "a triple fault restarts the machine too (status $status)"
ok "the guest booted again after it" has triple "reset: second boot"
ok "the triple fault is reported on stderr" has_err triple "triple fault"
is $(( $(json triple resets) != 1 )) 0 "report counts one reset"

boot pvh --kernel "$GUEST_ELF" --append "ct.reset=1" --timeout 60 --report "$TMP/pvh.json"
is "$status" 1 "the PVH entry is taken again after a reset (status $status)"
is $(( $(grep -c "booted via pvh" "$TMP/pvh.out") != 2 )) 0 "both boots through PVH"

qemu-img create -q -f qcow2 "$TMP/d.qcow2" 64M 2>/dev/null || truncate -s 64M "$TMP/d.qcow2"
fmt=qcow2; command -v qemu-img >/dev/null || fmt=raw
boot virtio --kernel "$GUEST" --disk "$TMP/d.qcow2,format=$fmt,snapshot" \
    --append "ct.virtio=1 ct.reset=1" --timeout 60 --report "$TMP/virtio.json"
is "$status" 1 "a virtio-blk disk (snapshot overlay) works again after a reset (status $status)"
is $(( $(grep -c "virtio-blk disks: 1" "$TMP/virtio.out") != 2 )) 0 "the guest drove it in both boots"

boot noreboot --kernel "$GUEST" --append "ct.reset=1" --no-reboot --timeout 60 --report "$TMP/noreboot.json"
is "$status" 0 "--no-reboot: the i8042 reset ends the run with status 0 (got $status)"
ok "report says reset" [ "$(json noreboot exit_reason)" = reset ]
is $(( $(boots noreboot) != 1 )) 0 "one boot only"
is $(( $(json noreboot resets) != 0 )) 0 "no reset counted"

boot noreboot3 --kernel "$GUEST" --append "ct.reset=triple" --no-reboot --timeout 60 --report "$TMP/noreboot3.json"
is "$status" 0 "--no-reboot: a triple fault ends the run with status 0 (got $status)"
ok "report says triple-fault" [ "$(json noreboot3 exit_reason)" = triple-fault ]

# A guest that resets forever: --timeout stops it (BOOT_GUARD: one that
# never fires fails here instead of hanging); how many resets fit in
# the 10 s depends on the host's load, and is not checked here.
BOOT_GUARD=120 boot loop --kernel "$GUEST" --append "ct.reset=loop" --timeout 10 --report "$TMP/loop.json"
is "$status" 124 "a guest that resets forever is stopped by --timeout (status $status)"
echo "# loop: $(json loop resets) resets, $(boots loop) boots before the timeout"
# The count: watched until its third boot (two resets), then stopped by
# SIGTERM: no timing assumed.
"$CALF" run --kernel "$GUEST" --append "ct.reset=loop" --timeout 600 --report "$TMP/loop3.json" \
    >"$TMP/loop3.out" 2>"$TMP/loop3.err" </dev/null &
pid=$!
wait_out $pid loop3 "calf-test: booted via" 3
kill -TERM $pid 2>/dev/null
wait $pid
n=$(json loop3 resets)
is $(( ${n:-0} < 2 )) 0 "report counts its resets ($n; $(boots loop3) boots seen)"
[ "${n:-0}" -ge 2 ] || show loop3

# Firmware boot: SeaBIOS finds nothing to boot and resets; the restart
# must run it again from the real-mode reset vector.  (calf also copies
# the ROM back below 1 MiB, as a PC's chipset shows the ROM there after a
# reset; SeaBIOS would cope without that, restoring itself from the high
# mapping, so this does not prove the copy.)  Watched until the second
# round, then stopped: no timing assumed.
if [ -e /usr/share/seabios/bios-256k.bin ] && command -v qemu-img >/dev/null; then
    qemu-img create -q -f qcow2 "$TMP/blank.qcow2" 8M
    "$CALF" run --disk "$TMP/blank.qcow2" --timeout 600 --report "$TMP/fw.json" \
        >"$TMP/fw.out" 2>"$TMP/fw.err" </dev/null &
    pid=$!
    for i in $(seq 6000); do
        [ "$(grep -c "No bootable device" "$TMP/fw.out")" -ge 2 ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM $pid 2>/dev/null
    wait $pid
    n=$(grep -c "SeaBIOS (version" "$TMP/fw.out")
    is $(( n < 2 )) 0 "SeaBIOS resets for want of a boot disk and runs again from its reset vector ($n banners)"
    [ "$n" -ge 2 ] || show fw
    n=$(json fw resets)
    is $(( ${n:-0} < 1 )) 0 "report counts the firmware's resets ($n)"
else
    skip "seabios or qemu-img missing" "firmware reset" "firmware reset count"
fi

! grep -qE "Sanitizer|runtime error" "$TMP"/*.err; is $? 0 "no sanitizer report on any run's stderr"

done_testing
