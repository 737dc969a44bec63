#!/bin/bash
# calf run --qmp driven by QEMU 7.2's own Python QMP client (qemu.qmp,
# unpacked from Debian's qemu source by scripts/qemu-python.sh): the
# greeting and negotiation, the query commands, stop and cont on a
# running test guest (ct.tick=1 prints a TSC-paced counter: it must not
# advance while stopped and must advance again after cont),
# system_reset (RESET event, the guest boots again, --report counts it)
# and quit (SHUTDOWN event, calf exits 0); system_powerdown (POWERDOWN
# event, the guest sees the ACPI power button and powers off).  guest-tests/qmp-client.py
# does the talking and prints what it saw.
. "$(dirname "$0")/lib.sh"
need_kvm
need_qemu_py
CLIENT=$(cd "$(dirname "$0")" && pwd)/qmp-client.py

truncate -s 4M "$TMP/disk.raw"
truncate -s 1M "$TMP/cd.iso"
start s --kernel "$GUEST" --cpus 2 --append "ct.tick=1" --name calf-qmp \
    --disk "$TMP/disk.raw,format=raw" --cdrom "$TMP/cd.iso" \
    --timeout 300 --report "$TMP/s.json"
ok "calf made its QMP socket" [ -S "$TMP/s.sock" ]
t0=$(date +%s)
PYTHONPATH=$QEMU_PY timeout 280 python3 "$CLIENT" session "$TMP/s.sock" "$TMP/s.out" \
    >"$TMP/s.facts" 2>"$TMP/s.pyerr"
echo "# client: status $? after $(( $(date +%s) - t0 )) s"
sed 's/^/#   /' "$TMP/s.pyerr"
# calf ends with quit; a client that failed first leaves it running
finish "$pid"
is "$(fact s greeting)" 7.2 "the greeting names QEMU 7.2's protocol"
is "$(fact s status)" running "query-status: running"
is "$(fact s name)" calf-qmp "query-name: the --name"
is "$(fact s kvm)" True "query-kvm: enabled"
is "$(fact s cpus)" 0,1 "query-cpus-fast: both vCPUs"
is "$(fact s cpu-threads)" True "each with its thread's ID"
is "$(fact s has-commands)" True "query-commands lists stop, cont, quit, system_reset"
is "$(fact s block)" "virtio0:raw:False:False,ide1-cd0:raw:True:True" \
    "query-block: the disk and the CD, with QEMU's device names"
is "$(fact s hmp-status)" "VM status: running" "human-monitor-command: info status"
is "$(fact s hmp-block)" "virtio0: $TMP/disk.raw (raw)|    Cache mode:       writeback||ide1-cd0: $TMP/cd.iso (raw, read-only)|    Removable device: not locked, tray closed|    Cache mode:       writeback|" \
    "info block: both drives, as QEMU words them"
is "$(fact s ticking)" True "the guest's counter advances"
is "$(fact s stop-event)" True "stop: STOP event"
is "$(fact s stopped-status)" paused "query-status after stop: paused"
is "$(fact s ticks-while-stopped)" 0 "no tick in 2 s while stopped"
is "$(fact s hmp-stopped)" "VM status: paused" "info status: paused"
is "$(fact s resume-event)" True "cont: RESUME event"
is "$(fact s ticks-after-cont)" True "the counter advances again after cont"
is "$(fact s reset-event)" "False:host-qmp-system-reset" "system_reset: RESET event from the host"
is "$(fact s rebooted)" True "the guest boots again after system_reset"
is "$(fact s ticks-after-reset)" True "and counts again"
is "$(fact s shutdown-event)" "False:host-qmp-quit" "quit: SHUTDOWN event"
is "$status" 0 "calf exits 0 after quit"
is "$(grep -o '"resets": [0-9]*' "$TMP/s.json")" '"resets": 1' "--report counts the reset"
ok "the socket is gone after the run" [ ! -e "$TMP/s.sock" ]
[ "$t_fail" = 0 ] || { show s | grep -v "calf-test: tick" | tail -40; }

# system_powerdown: the ACPI power button of the PIIX4 PM function; the
# test guest (ct.pwrbtn=1) waits for it, then powers off through S5
start p --kernel "$GUEST" --append "ct.pwrbtn=1 ct.poweroff=1" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" powerdown "$TMP/p.sock" "$TMP/p.out" \
    >"$TMP/p.facts" 2>"$TMP/p.pyerr"
sed 's/^/#   /' "$TMP/p.pyerr"
finish "$pid"
is "$(fact p waiting)" True "the guest enabled the power button's event"
is "$(fact p powerdown-event)" True "system_powerdown: POWERDOWN event"
is "$(fact p pressed)" True "the guest saw PWRBTN_STS"
is "$(fact p shutdown-event)" "True:guest-shutdown" "it powered off: SHUTDOWN from the guest"
is "$status" 0 "calf exits 0 (status $status)"
[ "$t_fail" = 0 ] || show p | tail -20

# screendump: the test guest's text screen (guest-tests/vga.t's), as PNG
# (checked by tests/unit/png-check.c) and as PPM (the same pixels)
CHECK=$CALF_BUILD/tests/png-check
start v --kernel "$GUEST" --vga std --append "ct.vga=text ct.hang=1" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" screen "$TMP/v.sock" "$TMP/v.out" \
    "$TMP/v.png" "$TMP/v.ppm" >"$TMP/v.facts" 2>"$TMP/v.pyerr"
sed 's/^/#   /' "$TMP/v.pyerr"
finish "$pid"
is "$(fact v drawn)" True "the guest drew its text screen"
if [ -x "$CHECK" ]; then
    "$CHECK" "$TMP/v.png" size 640x400 cell 4,2 48 ffff55 0000aa cell 5,2 65 ffff55 0000aa \
        cell 0,0 db ff5555 000000 cell 0,4 db ff00ff 000000 2>"$TMP/v.check"
    is $? 0 "screendump format=png: the guest's glyphs in their colours"
    sed 's/^/#   /' "$TMP/v.check"
else
    skip "$CHECK not built (make test builds it)" "screendump format=png"
fi
is "$(fact v ppm-header)" True "screendump: a PPM, P6 640x400"
is "$(fact v ppm-is-png)" True "with the same pixels as the PNG"
echo "# screendump to a FIFO, read whole: same PPM as the file: $(fact v fifo-same)"
is "$(fact v fifo-cut)" True "a FIFO reader gone after 16 bytes: failed to write"
is "$(fact v fifo-kept)" True "and the path is not removed"

# send-key: the test guest (ct.vga=keys26) prints the set-1 codes it reads
start k --kernel "$GUEST" --append "ct.vga=keys26" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" keys "$TMP/k.sock" "$TMP/k.out" \
    >"$TMP/k.facts" 2>"$TMP/k.pyerr"
sed 's/^/#   /' "$TMP/k.pyerr"
finish "$pid"
is "$(fact k codes)" "1e 9e 1c 9c" "send-key qcode a, then number 0x1c: make and break of A and Return"
is "$(fact k chord)" "2a 1e 30 2e 20 12 21 22 23 a3 a2 a1 92 a0 ae b0 9e aa" \
    "send-key shift+abcdefgh to a stopped guest: all pressed in order, all released in reverse"
is "$(fact k more)" "54 59 d9 d4" \
    "send-key again (no scancode), sysrq, kp_equals: QEMU's names, sent as set 1 54 59 d9 d4"

# info registers: the test guest's ELF (PVH entry) counting, stopped, on
# calf and on qemu-system-x86_64: the lines the guest itself decides
# (its segments, GDT, paging, EFER) are the same text
start r --kernel "$GUEST_ELF" --append "ct.tick=1" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" regs "$TMP/r.sock" "$TMP/r.out" \
    >"$TMP/r.regs" 2>"$TMP/r.pyerr"
finish "$pid"
sed 's/^/#   /' "$TMP/r.pyerr"
guest_lines() { grep -E '^(CS|SS|DS|ES) =|^GDT=|^CR0=|^EFER=' "$1"; }
ok "info registers: the CPU dump, 64-bit" grep -q '^RIP=' "$TMP/r.regs"
if command -v qemu-system-x86_64 >/dev/null; then
    qemu-system-x86_64 -enable-kvm -m 256 -display none -nodefaults \
        -serial "file:$TMP/q.out" -kernel "$GUEST_ELF" -append "ct.tick=1" \
        -qmp "unix:$TMP/q.sock,server=on,wait=off" >"$TMP/q.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    wait_sock "$TMP/q.sock" 10
    PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" regs "$TMP/q.sock" "$TMP/q.out" \
        >"$TMP/q.regs" 2>>"$TMP/q.err"
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
    if grep -q '^RIP=' "$TMP/q.regs"; then
        is "$(guest_lines "$TMP/r.regs")" "$(guest_lines "$TMP/q.regs")" \
            "the guest's segments, GDT, CR0/CR3/CR4 and EFER read as on QEMU"
        is "$(cut -c1-4 "$TMP/r.regs" | tr '\n' ' ')" "$(cut -c1-4 "$TMP/q.regs" | tr '\n' ' ')" \
            "line for line the layout of QEMU's dump"
    else
        skip "qemu-system-x86_64 gave no dump: $(tail -2 "$TMP/q.err")" "as on QEMU" "QEMU's layout"
    fi
else
    skip "qemu-system-x86_64 is not installed" "as on QEMU" "QEMU's layout"
fi
[ "$t_fail" = 0 ] || sed 's/^/#   /' "$TMP/r.regs"
done_testing
