#!/bin/bash
# Live snapshot and commit are threaded code (a commit's copy thread, the
# disk's I/O threads, the monitor on the main thread switching the disk's
# image under them): many cycles of blockdev-snapshot-sync and
# block-commit through QEMU's Python client while the test guest writes
# its pattern (ct.vpat=16, each write read back; 4 vCPUs, so 4 virtio-blk
# queue threads), checked against models (guest-tests/qmp-client.py
# snapstress): the disk's chain after every step (query-block's file),
# each job's events in QEMU 7.2's order, across active commits, commits
# of an image below the active one, soft and forced cancels,
# auto-finalize=false with the guest writing before job-finalize.  Then the
# images: every overlay and the base pass qemu-img check, and the base
# alone holds a prefix of the guest's writes (guest-tests/vpat-check.py),
# equal to its model (qemu-img compare).  In TSAN_TESTS: make test-tsan
# runs it under ThreadSanitizer.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd python3 qemu-img
QEMU_PY=$(CALF_BUILD=$CALF_BUILD "$(dirname "$0")/../scripts/qemu-python.sh" 2>"$TMP/py.err") ||
    skip_all "no QEMU Python client: $(cat "$TMP/py.err")"
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENT=$HERE/qmp-client.py
VPAT=$HERE/vpat-check.py
CYCLES=${QMP_SNAP_CYCLES:-24}
N=16

qemu-img create -q -f qcow2 "$TMP/base.qcow2" 1M
t0=$(date +%s)
"$CALF" run --qmp "unix:$TMP/s.sock,server=on,wait=off" --paused --cpus 4 \
    --kernel "$GUEST" --append "ct.vpat=$N" --disk "$TMP/base.qcow2,format=qcow2" \
    --timeout 580 >"$TMP/s.out" 2>"$TMP/s.err" </dev/null &
pid=$!
at_exit "kill -9 $pid 2>/dev/null"
for ((i = 0; i < 300; i++)); do [ -S "$TMP/s.sock" ] && break; sleep 0.1; done
PYTHONPATH=$QEMU_PY timeout 570 python3 "$CLIENT" snapstress "$TMP/s.sock" "$TMP/s.out" \
    "$TMP/base.qcow2" "$TMP/ov" "$CYCLES" >"$TMP/s.facts" 2>"$TMP/s.pyerr"
sed 's/^/#   /' "$TMP/s.pyerr"
grep '^#' "$TMP/s.facts"
for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null
wait "$pid"
status=$?
fact() { sed -n "s/^$1=//p" "$TMP/s.facts" | head -1; }
echo "# $(fact overlays) overlays, $(fact passes) passes of the guest in $(( $(date +%s) - t0 )) s"
is "$status" 0 "calf exits 0 after quit"
is "$(fact cycles)" "$CYCLES" "$CYCLES cycles of snapshot and commit"
is "$(fact bad-events)" 0 "every job's events in QEMU 7.2's order"
is "$(fact bad-file)" 0 "query-block's file as the model of the chain after every step"
is "$(fact writing-after)" True "the guest writes on afterwards"
is "$(fact bad)" 0 "the guest's read-back checks all passed"
! grep -qE "ThreadSanitizer|Sanitizer|runtime error|calf: " "$TMP/s.err"
is $? 0 "nothing on stderr (no race report)"
bad=0
for f in "$TMP/base.qcow2" "$TMP"/ov.*; do
    qemu-img check -q "$f" || { bad=$((bad + 1)); echo "# $f"; }
done
is "$bad" 0 "qemu-img check: the base and every overlay are clean"
qemu-img convert -f qcow2 -O raw "$TMP/base.qcow2" "$TMP/final.raw"
read -r p c < <(python3 "$VPAT" "$TMP/final.raw" $N)
ok "the base alone holds a prefix of the guest's writes (pass $p to sector $c)" \
    [ -n "$c" ]
python3 "$VPAT" --make "$TMP/model.raw" $N "${p:-0}" "${c:-0}" 1048576
qemu-img compare -q -f qcow2 -F raw "$TMP/base.qcow2" "$TMP/model.raw"
is $? 0 "qemu-img compare: the base equals the model"
is "$(qemu-img info "$TMP/base.qcow2" | grep -c '^backing file')" 0 "the base has no backing file"
[ "$t_fail" = 0 ] || { tail -20 "$TMP/s.out" | sed 's/^/#   /'; head -40 "$TMP/s.err" | sed 's/^/#   /'; }
done_testing
