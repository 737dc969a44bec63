#!/bin/bash
# How a run ends: --expect, --timeout, the debug-exit port, a guest reset
# under --no-reboot (restarts: reset.t), ACPI power-off.
. "$(dirname "$0")/lib.sh"
need_kvm

boot exit5 --kernel "$GUEST" --append "ct.exit=5" --timeout 60
is "$status" 11 "debug-exit: guest writes 5, status is (5<<1)|1 = 11 (got $status)"

boot exit0 --kernel "$GUEST" --append "ct.exit=0" --timeout 60
is "$status" 1 "debug-exit: guest writes 0, status 1 (got $status)"

boot expect --kernel "$GUEST" --append "ct.hang=1" --expect "calf-test: PASS" --timeout 60
is "$status" 0 "--expect: status 0 once the text is on the console (got $status)"
ok "the expected text was printed" has expect "calf-test: PASS"

boot expect_split --kernel "$GUEST" --append "ct.hang=1" --expect "booted via linux64" --timeout 60
is "$status" 0 "--expect matches text arriving byte by byte (got $status)"

# (BOOT_GUARD: a --timeout that never fires fails here instead of hanging)
BOOT_GUARD=120 boot timeout --kernel "$GUEST" --append "ct.hang=1" --timeout 1.5 --report "$TMP/t.json"
ms=$(perl -ne 'print int($1) if /"wall_ms_total": ([0-9.]+)/' "$TMP/t.json")
is "$status" 124 "--timeout: status 124 when the guest keeps running (got $status)"
# No upper bound (a loaded host stretches any): calf's own clock must
# show the 1.5 s asked for, and its message the fraction.
is $(( ${ms:-0} < 1500 )) 0 "--timeout 1.5 does not end the run early (report: $ms ms)"
ok "timeout says so on stderr" has_err timeout "timeout"
ok "and names the 1.5 s" has_err timeout "guest still running after 1.5 s"
ok "report says timeout" grep -q '"exit_reason": "timeout"' "$TMP/t.json"

boot noexpect --kernel "$GUEST" --append "ct.reset=1" --no-reboot --expect "never printed" --timeout 60
is "$status" 6 "guest ends without the --expect text: status 6 (got $status)"
ok "and says what it missed" has_err noexpect "without printing 'never printed'"

boot reset --kernel "$GUEST" --append "ct.reset=1" --no-reboot --timeout 60 --report "$TMP/r.json"
is "$status" 0 "--no-reboot: i8042 reset ends the run with status 0 (got $status)"
ok "report says reset" grep -q '"exit_reason": "reset"' "$TMP/r.json"

boot poweroff --kernel "$GUEST" --append "ct.poweroff=1" --timeout 60 --report "$TMP/p.json"
is "$status" 0 "ACPI S5 through the FADT's PM1a control ends the run with status 0 (got $status)"
ok "the guest found a full FADT, a FACS and a counting PM timer" has poweroff "poweroff via S5"
ok "report says poweroff" grep -q '"exit_reason": "poweroff"' "$TMP/p.json"
[ $status = 0 ] || show poweroff

BOOT_GUARD=120 boot expect_timeout --kernel "$GUEST" --append "ct.hang=1" --expect "never printed" --timeout 1
is "$status" 124 "--expect text never seen and guest hangs: timeout status (got $status)"

for cpus in 1 2; do
    boot halt$cpus --kernel "$GUEST" --cpus $cpus --append "ct.halt=1" --timeout 60 --report "$TMP/h.json"
    is "$status" 0 "--cpus $cpus: every vCPU halted with interrupts off ends the run, status 0 (got $status)"
    ok "report says halt" grep -q '"exit_reason": "halt"' "$TMP/h.json"
done

"$CALF" run --kernel "$GUEST" --append "ct.hang=1" --timeout 60 --report "$TMP/s.json" \
    >"$TMP/sig.out" 2>&1 </dev/null &
pid=$!
# SIGTERM once the guest runs, spinning after its verdict: no time assumed
wait_out $pid sig "calf-test: PASS"
ok "the guest runs (its verdict is on the console)" has sig "calf-test: PASS"
kill -TERM $pid
wait $pid
status=$?
is "$status" 143 "SIGTERM ends the run cleanly with status 128+15 (got $status)"
ok "report says signal" grep -q '"exit_reason": "signal"' "$TMP/s.json"

# The kernel destroys the VM after calf has exited, in a child that keeps
# only KVM's descriptors (vm_teardown_detached): the image's lock must be
# free the moment calf returns, and the child must go away by itself.
# CALF_SYNC_TEARDOWN=1 keeps the destruction in calf's own exit.
if command -v qemu-io >/dev/null; then
    qemu-img create -q -f qcow2 "$TMP/d.qcow2" 1M
    for sync in 0 1; do
        tag="ct.tag=$$-$sync-$RANDOM"
        CALF_SYNC_TEARDOWN=$sync "$CALF" run --kernel "$GUEST" --disk "$TMP/d.qcow2" \
            --append "ct.exit=0 $tag" --timeout 60 </dev/null >"$TMP/td.out" 2>&1
        status=$?
        is "$status" 1 "CALF_SYNC_TEARDOWN=$sync: the guest passes with a disk attached (status $status)"
        qemu-io -f qcow2 -c "write -P 0x5a 0 4k" "$TMP/d.qcow2" >"$TMP/td.io" 2>&1
        is $? 0 "CALF_SYNC_TEARDOWN=$sync: qemu-io takes the image's write lock as soon as calf returns"
        for ((i = 0; i < 100; i++)); do
            pgrep -f -- "$tag" >/dev/null || break
            sleep 0.1
        done
        is $(( i == 100 )) 0 "CALF_SYNC_TEARDOWN=$sync: no process of the run is left after it ($((i * 100)) ms)"
    done
else
    skip "qemu-io is not installed" "the image lock is free as soon as calf returns" "no process of the run is left"
fi

done_testing
