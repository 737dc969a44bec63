#!/bin/bash
# stop and cont are threaded code: the monitor (main thread) parks and
# wakes every vCPU thread.  Two runs on 2 vCPUs, each checked against a
# model:
# 1. 3000 random stop / cont / query-status / system_reset through QEMU's
#    Python client while the test guest counts (ct.tick=1): every
#    query-status agrees with the model's run state (a reset while
#    stopped says "prelaunch" until cont, as QEMU), the STOP, RESUME
#    and RESET events match the transitions made, the guest counts on.
# 2. stop and cont a few ms apart for the whole of the test guest's
#    virtio-blk checks (ct.virtio=1 on a qcow2 disk), started --paused
#    so that the first cont starts the guest: the guest's checks
#    (its writes read back) pass and qemu-img check finds the image
#    clean, so no request in flight was lost or torn by a pause.
# In TSAN_TESTS: make test-tsan runs both under ThreadSanitizer.
. "$(dirname "$0")/lib.sh"
need_kvm
need_qemu_py
CLIENT=$(cd "$(dirname "$0")" && pwd)/qmp-client.py

start m --kernel "$GUEST" --cpus 2 --append "ct.tick=1" --timeout 280
PYTHONPATH=$QEMU_PY timeout 270 python3 "$CLIENT" stress "$TMP/m.sock" "$TMP/m.out" 3000 \
    >"$TMP/m.facts" 2>"$TMP/m.pyerr"
sed 's/^/#   /' "$TMP/m.pyerr"
grep '^#' "$TMP/m.facts"
finish "$pid" 60
echo "# $(grep -c 'booted via' "$TMP/m.out") boots, $(fact m rounds-per-s) rounds/s"
is "$(fact m model-mismatches)" 0 "3000 rounds: every query-status as the model says"
is "$(fact m events-match)" True "STOP, RESUME and RESET events match the transitions"
is "$(fact m ticks-after-stress)" True "the guest counts on after the stress"
is "$status" 0 "calf exits 0 after quit"
! grep -q "ThreadSanitizer\|calf: vCPU" "$TMP/m.err"; is $? 0 "nothing on stderr about races or vCPUs"
[ "$t_fail" = 0 ] || cat "$TMP/m.err" | head -30 | sed 's/^/#   /'

# --paused (QEMU's -S): the guest's checks take well under a second
# where KVM is fast, so the churn must begin before its first instruction
qemu-img create -q -f qcow2 "$TMP/io.qcow2" 64M
start io --kernel "$GUEST" --cpus 2 --disk "$TMP/io.qcow2,format=qcow2,serial=calf-disk-0" \
    --append "ct.virtio=1" --timeout 280 --paused
PYTHONPATH=$QEMU_PY timeout 285 python3 "$CLIENT" churn "$TMP/io.sock" "$TMP/io.out" \
    >"$TMP/io.facts" 2>"$TMP/io.pyerr"
grep '^#' "$TMP/io.facts"
finish "$pid" 60
is "$(fact io start-status)" prelaunch "--paused: query-status says prelaunch"
is "$(fact io start-hmp)" "VM status: paused (prelaunch)" "--paused: info status as QEMU's"
is "$(fact io serial-before-cont)" 0 "--paused: the guest printed nothing before cont"
is "$status" 1 "the guest's virtio-blk checks pass with stop/cont churning (status $status)"
ok "it was stopped and continued during its I/O ($(fact io cycles) times)" [ "$(fact io cycles)" -ge 5 ]
qemu-img check -q "$TMP/io.qcow2"; is $? 0 "qemu-img check: the image is clean"
[ "$t_fail" = 0 ] || { show io | tail -30; sed 's/^/#   /' "$TMP/io.pyerr"; }
done_testing
