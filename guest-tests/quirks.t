#!/bin/bash
# The instructions the kvm_pvm emulator cannot run (docs/ARCHITECTURE.md):
# calf completes int3 and fwait itself, and reports any other emulation
# failure in one message.  On hardware KVM all three simply run.
. "$(dirname "$0")/lib.sh"
need_kvm

if [ -e /sys/module/kvm_pvm ]; then
    echo "# backend: kvm_pvm (software): emulator workarounds active"
    pvm=1
else
    echo "# backend: hardware KVM: the workarounds stay inert"
    pvm=0
fi

boot int3 --kernel "$GUEST" --append "ct.int3=1" --timeout 60 --report "$TMP/int3.json"
is "$status" 1 "int3 in long mode reaches the guest's #BP handler (status $status)"
ok "guest saw exactly one #BP" has int3 "calf-test: int3 trapped"
[ $status = 1 ] || show int3

boot fwait --kernel "$GUEST" --append "ct.fwait=1" --timeout 60
is "$status" 1 "fwait runs (status $status)"
ok "guest went past fwait" has fwait "calf-test: fwait ran"

boot cx16 --kernel "$GUEST" --append "ct.cx16=1" --timeout 60
if [ $pvm = 1 ]; then
    is "$status" 4 "lock cmpxchg16b: emulation failure ends the run with status 4 (got $status)"
    ok "message names the exit" has_err cx16 "KVM_EXIT_INTERNAL_ERROR"
    ok "message names the suberror" has_err cx16 "suberror 1"
    grep -qE "at RIP 0x[0-9a-f]+; bytes at RIP: f0 48 0f c7" "$TMP/cx16.err"
    is $? 0 "message gives RIP and the instruction bytes"
    sed 's/^/#   /' "$TMP/cx16.err"
else
    is "$status" 1 "lock cmpxchg16b runs on hardware (status $status)"
fi

done_testing
