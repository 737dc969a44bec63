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
# auto-finalize=false with the guest writing before job-finalize (the
# copy goes on while the job is pending: its progress grows, so that
# job-finalize copies under hold only what the guest wrote last).
# Three times: cache=writeback on 4 vCPUs, cache=none (O_DIRECT) on 2,
# and an IDE disk the guest writes through PIO (ct.idepat: READ/WRITE
# SECTORS and MULTIPLE, the disk switched between and under its data
# transfers) on 2.  Then the
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

# run NAME CACHE CPUS CYCLES [ide]: one run, its checks named after NAME;
# ide: the disk on IDE, the guest's pattern through PIO (ct.idepat)
run() {
    local n=$1 cache=$2 cpus=$3 cycles=$4 t0 bad p c
    local pat=ct.vpat iface=virtio dev=virtio0
    [ "$5" = ide ] && pat=ct.idepat iface=ide dev=ide0-hd0
    qemu-img create -q -f qcow2 "$TMP/$n.qcow2" 1M
    t0=$(date +%s)
    "$CALF" run --qmp "unix:$TMP/$n.sock,server=on,wait=off" --paused --cpus "$cpus" \
        --kernel "$GUEST" --append "$pat=$N" \
        --disk "$TMP/$n.qcow2,format=qcow2,cache=$cache,if=$iface" \
        --timeout 280 >"$TMP/$n.out" 2>"$TMP/$n.err" </dev/null &
    pid=$!
    at_exit "kill -9 $pid 2>/dev/null"
    for ((i = 0; i < 300; i++)); do [ -S "$TMP/$n.sock" ] && break; sleep 0.1; done
    PYTHONPATH=$QEMU_PY timeout 270 python3 "$CLIENT" snapstress "$TMP/$n.sock" "$TMP/$n.out" \
        "$TMP/$n.qcow2" "$TMP/$n-ov" "$cycles" "$dev" >"$TMP/$n.facts" 2>"$TMP/$n.pyerr"
    sed 's/^/#   /' "$TMP/$n.pyerr"
    grep '^#' "$TMP/$n.facts"
    for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid"
    status=$?
    fact() { sed -n "s/^$1=//p" "$TMP/$n.facts" | head -1; }
    echo "# $n: $(fact overlays) overlays, $(fact passes) passes of the guest in $(( $(date +%s) - t0 )) s"
    is "$status" 0 "$n: calf exits 0 after quit"
    is "$(fact cycles)" "$cycles" "$n: $cycles cycles of snapshot and commit"
    is "$(fact bad-events)" 0 "$n: every job's events in QEMU 7.2's order"
    is "$(fact bad-file)" 0 "$n: query-block's file as the model of the chain after every step"
    is "$(fact pending-copied)" "$(fact manual)" \
        "$n: auto-finalize=false: the copy goes on while pending (progress grows)"
    echo "# $n: at most $(fact pending-left) bytes left to copy at a job-finalize"
    is "$(fact writing-after)" True "$n: the guest writes on afterwards"
    is "$(fact bad)" 0 "$n: the guest's read-back checks all passed"
    ! grep -qE "ThreadSanitizer|Sanitizer|runtime error|calf: " "$TMP/$n.err"
    is $? 0 "$n: nothing on stderr (no race report)"
    bad=0
    for f in "$TMP/$n.qcow2" "$TMP/$n-ov".*; do
        qemu-img check -q "$f" || { bad=$((bad + 1)); echo "# $f"; }
    done
    is "$bad" 0 "$n: qemu-img check: the base and every overlay are clean"
    qemu-img convert -f qcow2 -O raw "$TMP/$n.qcow2" "$TMP/$n.raw"
    read -r p c < <(python3 "$VPAT" "$TMP/$n.raw" $N)
    ok "$n: the base alone holds a prefix of the guest's writes (pass $p to sector $c)" \
        [ -n "$c" ]
    python3 "$VPAT" --make "$TMP/$n.model" $N "${p:-0}" "${c:-0}" 1048576
    qemu-img compare -q -f qcow2 -F raw "$TMP/$n.qcow2" "$TMP/$n.model"
    is $? 0 "$n: qemu-img compare: the base equals the model"
    is "$(qemu-img info "$TMP/$n.qcow2" | grep -c '^backing file')" 0 "$n: the base has no backing file"
    [ "$t_fail" = 0 ] || { tail -20 "$TMP/$n.out" | sed 's/^/#   /'; head -40 "$TMP/$n.err" | sed 's/^/#   /'; }
}

run writeback writeback 4 "$CYCLES"
run direct none 2 $(( (CYCLES + 1) / 2 ))
run ide-pio writeback 2 $(( (CYCLES + 1) / 2 )) ide
done_testing
