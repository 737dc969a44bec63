#!/bin/bash
# Live external snapshot and commit through QMP (vmm/qmp-block.c), driven
# by QEMU 7.2's Python client (guest-tests/qmp-client.py) while the test
# guest writes: with ct.vpat=128 it writes pass after pass over its
# virtio-blk disk's first 128 sectors, 4 KiB per request, each read back
# (firmware/testguest/virtio-blk.c), so whatever the disk holds at any
# moment is a prefix of that sequence of writes: pass P up to sector C,
# pass P-1 after (guest-tests/vpat-check.py finds P and C, or says the
# image is no such prefix: a write lost, torn or reordered).
# 1. blockdev-snapshot-sync mid-run: the disk switches to a new qcow2
#    overlay; the old image, read (shared) at once, is such a prefix
#    (P1, C1) and is no longer written (the same bytes after the run);
#    the overlay holds the writes made since (qemu-img map: its own
#    cluster), its view a later prefix (P2, C2) at the commit.  Then
#    block-commit as a job (JOB_STATUS_CHANGE created, running, ready,
#    BLOCK_JOB_READY, job-complete, waiting, pending,
#    BLOCK_JOB_COMPLETED, concluded, null, as QEMU 7.2 orders them): the
#    base alone then holds the final data, equal (qemu-img compare) to
#    the model of the last prefix (P3, C3) the guest wrote.  Both images
#    pass qemu-img check; the guest's own read-back checks pass.
# 2. The same on an IDE disk (PIO and DMA): snapshot and commit before
#    the guest runs, its IDE checks over the overlay while the job
#    mirrors them, auto-finalize=false then job-finalize, auto-dismiss=
#    false then job-dismiss; the base then
#    holds what the guest wrote.
# 3. Bad block commands (unknown devices, nodes and jobs, bad modes,
#    mutually exclusive arguments, a bad job ID, a commit into itself):
#    the answers, class and words, are QEMU 7.2's, recorded below and
#    compared with qemu-system-x86_64's live where it runs here; so are
#    the job events of a completed, a soft-cancelled (auto-finalize and
#    auto-dismiss off) and a force-cancelled commit.  A
#    client growing calf: overlays are capped at 64 images a chain, kept
#    (concluded) jobs at 64; a 64-image chain commits.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd python3 qemu-img qemu-io sha256sum
QEMU_PY=$(CALF_BUILD=$CALF_BUILD "$(dirname "$0")/../scripts/qemu-python.sh" 2>"$TMP/py.err") ||
    skip_all "no QEMU Python client: $(cat "$TMP/py.err")"
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENT=$HERE/qmp-client.py
VPAT=$HERE/vpat-check.py

# start, finish and fact: guest-tests/lib.sh (finish waits up to 60 s here)
# later P1 C1 P2 C2: whether (P2, C2) comes after (P1, C1) in the writes
later() { [ "$3" -gt "$1" ] || { [ "$3" = "$1" ] && [ "$4" -gt "$2" ]; }; }

N=128
qemu-img create -q -f qcow2 "$TMP/base.qcow2" 1M
start s --paused --kernel "$GUEST" --append "ct.vpat=$N" \
    --disk "$TMP/base.qcow2,format=qcow2" --timeout 280
PYTHONPATH=$QEMU_PY timeout 270 python3 "$CLIENT" snapcommit "$TMP/s.sock" "$TMP/s.out" \
    "$TMP/base.qcow2" "$TMP/ov.qcow2" "$TMP/dump.raw" >"$TMP/s.facts" 2>"$TMP/s.pyerr"
sed 's/^/#   /' "$TMP/s.pyerr"
finish "$pid" 60
is "$status" 0 "calf exits 0 after quit"
is "$(fact s writing)" True "the guest writes its pattern"
is "$(fact s block-after-snapshot)" "$TMP/ov.qcow2:qcow2" \
    "blockdev-snapshot-sync: query-block shows the overlay"
is "$(fact s base-dump)" 0 "the old image read (shared) right after the switch"
read -r p1 c1 < <(python3 "$VPAT" "$TMP/dump.raw" $N)
ok "it holds a prefix of the guest's writes (pass $p1 to sector $c1)" \
    later 1 "$N" "${p1:-0}" "${c1:-0}"
is "$(fact s written-after)" True "the guest writes on, into the overlay"
is "$(fact s busy)" "Node 'virtio0' is busy: block device is in use by block job: commit" \
    "a snapshot while a commit runs is refused"
is "$(fact s ready)" True "block-commit: BLOCK_JOB_READY"
is "$(fact s query-jobs)" "c1:commit:ready" "query-jobs: the job, ready"
is "$(fact s query-block-jobs)" "c1:True:True" \
    "query-block-jobs: ready, 0 < offset <= len (the guest's new writes in len)"
is "$(fact s events)" \
    "created,running,ready,BLOCK_JOB_READY,waiting,pending,BLOCK_JOB_COMPLETED,concluded,null" \
    "job events in QEMU 7.2's order"
is "$(fact s jobs-after)" 0 "query-jobs: none once dismissed"
is "$(fact s block-after-commit)" "$TMP/base.qcow2:qcow2" "query-block: the base again"
is "$(fact s written-after-commit)" True "the guest writes on, into the base"
is "$(fact s bad)" 0 "the guest's read-back checks all passed"
qemu-img check -q "$TMP/base.qcow2"; is $? 0 "qemu-img check: the base is clean"
qemu-img check -q "$TMP/ov.qcow2"; is $? 0 "qemu-img check: the overlay is clean"
is "$(qemu-img info "$TMP/ov.qcow2" | sed -n 's/^backing file: //p')" "$TMP/base.qcow2" \
    "the overlay's backing file is the old image"
qemu-img map --output=json "$TMP/ov.qcow2" >"$TMP/map.json"
ok "the overlay has the pattern's cluster itself (the writes after the switch)" \
    grep -q '"start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true' "$TMP/map.json"
qemu-img convert -f qcow2 -O raw "$TMP/ov.qcow2" "$TMP/ov.raw"
read -r p2 c2 < <(python3 "$VPAT" "$TMP/ov.raw" $N)
ok "the overlay's view is a later prefix (pass $p2 to sector $c2)" later "${p1:-0}" "${c1:-0}" "${p2:-0}" "${c2:-0}"
qemu-img convert -f qcow2 -O raw "$TMP/base.qcow2" "$TMP/final.raw"
read -r p3 c3 < <(python3 "$VPAT" "$TMP/final.raw" $N)
ok "after the commit the base alone holds a later prefix still (pass $p3 to sector $c3)" \
    later "${p2:-0}" "${c2:-0}" "${p3:-0}" "${c3:-0}"
python3 "$VPAT" --make "$TMP/model.raw" $N "${p3:-0}" "${c3:-0}" 1048576
qemu-img compare -q -f qcow2 -F raw "$TMP/base.qcow2" "$TMP/model.raw"
is $? 0 "qemu-img compare: the base equals the model of the guest's writes"
! grep -qE "Sanitizer|runtime error|calf: " "$TMP/s.err"; is $? 0 "nothing on stderr"
[ "$t_fail" = 0 ] || { show s | tail -20; sed 's/^/#   /' "$TMP/s.facts" "$TMP/s.err"; }

# IDE: the master with the sectors ide.c reads first, an 8 MiB qcow2
qemu-img create -q -f qcow2 "$TMP/ide.qcow2" 8M
qemu-io -f qcow2 -c 'write -P 0x11 0 512' -c 'write -P 0x22 581632 512' \
    -c 'write -P 0x33 53248 512' "$TMP/ide.qcow2" >/dev/null
start i --paused --kernel "$GUEST" --append "ct.ide=1 ct.idesize=16384 ct.hang=1" \
    --disk "$TMP/ide.qcow2,format=qcow2,if=ide" --timeout 280
PYTHONPATH=$QEMU_PY timeout 270 python3 "$CLIENT" idesnap "$TMP/i.sock" "$TMP/i.out" \
    "$TMP/ide-ov.qcow2" >"$TMP/i.facts" 2>"$TMP/i.pyerr"
sed 's/^/#   /' "$TMP/i.pyerr"
finish "$pid" 60
is "$status" 0 "IDE: calf exits 0 after quit"
is "$(fact i block-after-snapshot)" "$TMP/ide-ov.qcow2" "IDE: query-block shows the overlay"
is "$(fact i ide-ok)" True "IDE: the guest's IDE checks pass over the overlay"
is "$(fact i pending)" "ide0-hd0:pending" "auto-finalize=false: the job waits, pending"
is "$(fact i concluded)" "ide0-hd0:concluded" "auto-dismiss=false: after job-finalize it stays, concluded"
is "$(fact i events)" \
    "created,running,ready,BLOCK_JOB_READY,waiting,pending,BLOCK_JOB_PENDING,BLOCK_JOB_COMPLETED,concluded,null" \
    "IDE: the job's events, BLOCK_JOB_PENDING, null at job-dismiss"
is "$(fact i block-after-commit)" "$TMP/ide.qcow2" "IDE: query-block shows the base again"
qemu-img check -q "$TMP/ide.qcow2"; is $? 0 "IDE: qemu-img check: the base is clean"
qemu-img check -q "$TMP/ide-ov.qcow2"; is $? 0 "IDE: qemu-img check: the overlay is clean"
ok "IDE: the guest's writes (PIO, MULTIPLE, DMA) went to the overlay" \
    qemu-io -f qcow2 -c 'read -P 0x5a 1M 4K' -c 'read -P 0x6b 1052672 16K' \
    -c 'read -P 0x7c 2M 64K' "$TMP/ide-ov.qcow2"
ok "IDE: and the commit put them in the base" \
    qemu-io -f qcow2 -c 'read -P 0x5a 1M 4K' -c 'read -P 0x6b 1052672 16K' \
    -c 'read -P 0x7c 2M 64K' -c 'read -P 0x11 0 512' -c 'read -P 0x22 581632 512' \
    "$TMP/ide.qcow2"
qemu-img compare -q "$TMP/ide.qcow2" "$TMP/ide-ov.qcow2"
is $? 0 "IDE: the base alone reads as the overlay over it"
[ "$t_fail" = 0 ] || { show i | tail -20; sed 's/^/#   /' "$TMP/i.facts" "$TMP/i.err"; }

# Bad commands: what QEMU 7.2 answers (qmp-client.py errors), line for line
mkdir "$TMP/dir"
cat >"$TMP/errors.want" <<WANT
GenericError: Cannot find device='nosuch' nor node-name=''
GenericError: Cannot find device='' nor node-name='nosuch'
GenericError: Parameter 'mode' does not accept value 'bogus'
GenericError: Parameter 'snapshot-file' is missing
GenericError: Invalid parameter type for 'snapshot-file', expected: string
DeviceNotFound: Device 'nosuch' not found
GenericError: cannot commit an image into itself
GenericError: Parameter 'device' is missing
GenericError: Job not found
GenericError: Job not found
GenericError: Job not found
GenericError: Job not found
DeviceNotActive: Block job 'nosuch' not found
DeviceNotActive: Block job 'nosuch' not found
DeviceNotActive: Block job 'nosuch' not found
DeviceNotActive: Block job 'nosuch' not found
ok
ok
GenericError: Error: Trying to create an image with the same filename as the backing file
GenericError: Failed to get "write" lock
GenericError: Could not create '/nonexistent/x.qcow2': No such file or directory
GenericError: Could not create '$TMP/dir': Is a directory
ok
GenericError: New overlay node-name already in use
GenericError: Invalid job ID '1bad'
GenericError: Top image file nosuch.qcow2 not found
GenericError: Can't find 'nosuch.qcow2' in the backing chain
GenericError: 'top-node' and 'top' are mutually exclusive
GenericError: 'base-node' and 'base' are mutually exclusive
GenericError: Cannot find device='' nor node-name='nosuch'
GenericError: cannot commit an image into itself
GenericError: 'backing-file' specified, but 'top' is the active layer
GenericError: Parameter 'speed' expects a non-negative value
GenericError: Parameter 'bogus' is unexpected
WANT
qemu-img create -q -f qcow2 "$TMP/e.qcow2" 1M
qemu-img create -q -f qcow2 "$TMP/e1.qcow2" 1M
sum_other=$(sha256sum <"$TMP/e1.qcow2")
start e --paused --kernel "$GUEST" --disk "$TMP/e.qcow2,format=qcow2" \
    --disk "$TMP/e1.qcow2,format=qcow2" --timeout 120
PYTHONPATH=$QEMU_PY timeout 110 python3 "$CLIENT" errors "$TMP/e.sock" "$TMP/e-ov.qcow2" \
    "$TMP/e.qcow2" "$TMP/e1.qcow2" "$TMP/dir" >"$TMP/e.txt" 2>"$TMP/e.pyerr"
finish "$pid" 60
is "$(cat "$TMP/e.txt")" "$(cat "$TMP/errors.want")" "bad block commands: QEMU 7.2's answers"
is "$status" 0 "calf exits 0 after them"
qemu-img check -q "$TMP/e.qcow2"; is $? 0 "the disk's image is intact (not made its own overlay)"
is "$(sha256sum <"$TMP/e1.qcow2")" "$sum_other" "the other disk's image is untouched"
# Job events of three commits of an idle disk (completed; soft-cancelled
# with auto-finalize and auto-dismiss off; forced off), as QEMU 7.2 sends
# them: recorded here, and compared with qemu-system-x86_64's live below
cat >"$TMP/jobs.want" <<WANT
created running ready BLOCK_JOB_READY waiting pending BLOCK_JOB_COMPLETED concluded null
created running ready BLOCK_JOB_READY waiting pending BLOCK_JOB_PENDING b:pending BLOCK_JOB_COMPLETED concluded b:concluded null
created running ready BLOCK_JOB_READY aborting BLOCK_JOB_CANCELLED concluded null
$TMP/jov.2
WANT
qemu-img create -q -f qcow2 "$TMP/j.qcow2" 1M
start j --paused --kernel "$GUEST" --disk "$TMP/j.qcow2,format=qcow2" --timeout 120
PYTHONPATH=$QEMU_PY timeout 110 python3 "$CLIENT" jobevents "$TMP/j.sock" "$TMP/jov" \
    >"$TMP/j.txt" 2>"$TMP/j.pyerr"
finish "$pid" 60
is "$(cat "$TMP/j.txt")" "$(cat "$TMP/jobs.want")" \
    "job events: complete, soft cancel (manual finalize, dismiss), forced cancel as QEMU 7.2"

# A client that grows calf: the chain and the kept jobs are capped
qemu-img create -q -f qcow2 "$TMP/l.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0x42 0 64K' "$TMP/l.qcow2" >/dev/null
start l --paused --kernel "$GUEST" --disk "$TMP/l.qcow2,format=qcow2" --timeout 280
PYTHONPATH=$QEMU_PY timeout 270 python3 "$CLIENT" limits "$TMP/l.sock" "$TMP/l-ov" \
    >"$TMP/l.facts" 2>"$TMP/l.pyerr"
sed 's/^/#   /' "$TMP/l.pyerr"
finish "$pid" 60
is "$(fact l overlays)" 63 "63 overlays over the disk's image"
is "$(fact l refused)" "7:calf: the chain of 'virtio0' has 64 images already (at most 64): commit first" \
    "then snapshots are refused"
is "$(fact l deep-commit)" True "one commit of the 64-image chain"
is "$(fact l kept)" "64:calf: 64 jobs kept already: dismiss the concluded ones (job-dismiss)" \
    "64 concluded jobs kept, then commits are refused"
is "$(fact l after-dismiss)" 0 "job-dismiss frees them"
is "$(fact l file)" "$TMP/l.qcow2" "a commit goes again: the disk is on its image again"
is "$status" 0 "calf exits 0"
qemu-img check -q "$TMP/l.qcow2"; is $? 0 "qemu-img check: the image is clean"
ok "its data is intact" qemu-io -f qcow2 -c 'read -P 0x42 0 64K' "$TMP/l.qcow2"

# A mode=existing overlay larger than the disk, with data past the disk's
# end: an active commit copies up to the disk's end only; the base keeps
# its size and the data the guest sees.
qemu-img create -q -f qcow2 "$TMP/g.qcow2" 1M
qemu-img create -q -f qcow2 -b "$TMP/g.qcow2" -F qcow2 "$TMP/g-ov.qcow2" 2M
qemu-io -f qcow2 -c 'write -P 0x66 960K 64K' -c 'write -P 0x77 1M 512K' \
    "$TMP/g-ov.qcow2" >/dev/null
start g --paused --kernel "$GUEST" --disk "$TMP/g.qcow2,format=qcow2" --timeout 120
PYTHONPATH=$QEMU_PY timeout 110 python3 "$CLIENT" bigger "$TMP/g.sock" "$TMP/g-ov.qcow2" \
    >"$TMP/g.facts" 2>"$TMP/g.pyerr"
sed 's/^/#   /' "$TMP/g.pyerr"
finish "$pid" 60
is "$status" 0 "larger overlay: calf exits 0"
is "$(fact g events)" \
    "created,running,ready,BLOCK_JOB_READY,waiting,pending,BLOCK_JOB_COMPLETED,concluded,null" \
    "larger overlay: the commit completes"
is "$(fact g file)" "$TMP/g.qcow2" "larger overlay: the disk is on its base again"
is "$(qemu-img info --output=json "$TMP/g.qcow2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')" \
    1048576 "larger overlay: the base keeps the disk's size"
qemu-img check -q "$TMP/g.qcow2"; is $? 0 "larger overlay: qemu-img check: the base is clean"
ok "larger overlay: the base holds the overlay's data up to the disk's end" \
    qemu-io -f qcow2 -c 'read -P 0x66 960K 64K' "$TMP/g.qcow2"
! grep -qE "Sanitizer|runtime error|calf: " "$TMP/g.err"; is $? 0 "larger overlay: nothing on stderr"

# A READY commit on a 64 TiB sparse disk, the guest idle: the job's
# write tracking (1 Gi units) is looked at every 20 ms and counted by
# query-block-jobs; neither may walk it (once 1.4 s of CPU per 5 s).
qemu-img create -q -f qcow2 "$TMP/h.qcow2" 64T
start h --paused --kernel "$GUEST" --disk "$TMP/h.qcow2,format=qcow2" --timeout 120
PYTHONPATH=$QEMU_PY timeout 110 python3 "$CLIENT" bigidle "$TMP/h.sock" "$pid" \
    "$TMP/h-ov.qcow2" >"$TMP/h.facts" 2>"$TMP/h.pyerr"
sed 's/^/#   /' "$TMP/h.pyerr"
finish "$pid" 60
is "$(fact h events)" \
    "created,running,ready,BLOCK_JOB_READY,waiting,pending,BLOCK_JOB_COMPLETED,concluded,null" \
    "64 TiB disk: the commit completes"
ticks=$(fact h ready-ticks)
echo "# 64 TiB disk: $ticks ticks of CPU (1/100 s) in 3 s READY"
ok "64 TiB disk: READY and idle, calf takes under 0.3 s of CPU in 3 s" [ "${ticks:-999}" -lt 30 ]

# A commit below the active image, in a chain in a subdirectory of the
# directory calf runs in, its base named relatively: backing-file is what
# the image above top then names (QEMU writes it as given), and the job's
# progress counts the whole disk (QEMU's commit_run: 1 MiB of 1 MiB, even
# with nothing allocated in top).  Then the same with qemu-system-x86_64.
below() { # NAME DIR CMD...: facts in $TMP/NAME.facts
    local n=$1 d=$2
    shift 2
    mkdir -p "$d/sub"
    qemu-img create -q -f qcow2 "$d/base.qcow2" 1M
    qemu-io -f qcow2 -c 'write -P 0x5c 0 64K' "$d/base.qcow2" >/dev/null
    (cd "$d" && exec "$@" >"$TMP/$n.out" 2>"$TMP/$n.err" </dev/null) &
    pid=$!
    at_exit "kill -9 $pid 2>/dev/null"
    for ((i = 0; i < 300; i++)); do [ -S "$d/s.sock" ] && break; sleep 0.1; done
    PYTHONPATH=$QEMU_PY timeout 110 python3 "$CLIENT" below "$d/s.sock" "$d/sub" \
        ../base.qcow2 >"$TMP/$n.facts" 2>"$TMP/$n.pyerr"
    sed 's/^/#   /' "$TMP/$n.pyerr"
    finish "$pid" 60
}
below_facts() { # NAME DIR: one line to compare
    echo "$(fact "$1" progress) $(fact "$1" events)" \
        "$(qemu-img info "$2/sub/o2.qcow2" | sed -n 's/^backing file: \([^ ]*\).*/\1/p')"
}
below bf "$TMP/bf" "$CALF" run --qmp "unix:$TMP/bf/s.sock,server=on,wait=off" --paused \
    --kernel "$GUEST" --disk base.qcow2,format=qcow2 --timeout 120
is "$status" 0 "below the active image: calf exits 0"
is "$(fact bf file)" "$TMP/bf/sub/o2.qcow2" "the disk stays on its image"
ok "backing-file: the image above top names the base as given (../base.qcow2)" \
    [ "$(qemu-img info "$TMP/bf/sub/o2.qcow2" | sed -n 's/^backing file: \([^ ]*\).*/\1/p')" = ../base.qcow2 ]
ok "and the chain opens: the base's data through the overlay" \
    qemu-io -r -f qcow2 -c 'read -P 0x5c 0 64K' "$TMP/bf/sub/o2.qcow2"
is "$(fact bf progress)" 1048576/1048576 "progress: the whole disk, as QEMU's commit counts it"
qemu-img check -q "$TMP/bf/sub/o2.qcow2"; is $? 0 "qemu-img check: the overlay is clean"
if command -v qemu-system-x86_64 >/dev/null; then
    below qbf "$TMP/qbf" qemu-system-x86_64 -enable-kvm -S -display none -nodefaults \
        -drive if=virtio,file=base.qcow2,format=qcow2 \
        -qmp "unix:$TMP/qbf/s.sock,server=on,wait=off"
    if [ -n "$(fact qbf progress)" ]; then
        is "$(below_facts bf "$TMP/bf")" "$(below_facts qbf "$TMP/qbf")" \
            "below the active image: progress, events, backing file as qemu-system-x86_64"
    else
        skip "qemu-system-x86_64 ran no job: $(tail -2 "$TMP/qbf.err")" "below as on QEMU"
    fi
else
    skip "qemu-system-x86_64 is not installed" "below as on QEMU"
fi

if command -v qemu-system-x86_64 >/dev/null; then
    qemu-img create -q -f qcow2 "$TMP/q.qcow2" 1M
    qemu-img create -q -f qcow2 "$TMP/q1.qcow2" 1M
    qemu-system-x86_64 -enable-kvm -S -display none -nodefaults \
        -drive "if=virtio,file=$TMP/q.qcow2,format=qcow2" \
        -drive "if=virtio,file=$TMP/q1.qcow2,format=qcow2" \
        -qmp "unix:$TMP/q.sock,server=on,wait=off" >"$TMP/q.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do [ -S "$TMP/q.sock" ] && break; sleep 0.1; done
    PYTHONPATH=$QEMU_PY timeout 110 python3 "$CLIENT" errors "$TMP/q.sock" "$TMP/q-ov.qcow2" \
        "$TMP/q.qcow2" "$TMP/q1.qcow2" "$TMP/dir" >"$TMP/q.txt" 2>>"$TMP/q.err"
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
    if grep -q '^ok' "$TMP/q.txt"; then
        is "$(cat "$TMP/q.txt")" "$(cat "$TMP/errors.want")" \
            "qemu-system-x86_64 answers them so too"
    else
        skip "qemu-system-x86_64 gave no answers: $(tail -2 "$TMP/q.err")" "as on QEMU"
    fi
    rm -f "$TMP"/jov.*
    qemu-img create -q -f qcow2 "$TMP/qj.qcow2" 1M
    qemu-system-x86_64 -enable-kvm -S -display none -nodefaults \
        -drive "if=virtio,file=$TMP/qj.qcow2,format=qcow2" \
        -qmp "unix:$TMP/qj.sock,server=on,wait=off" >"$TMP/qj.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do [ -S "$TMP/qj.sock" ] && break; sleep 0.1; done
    PYTHONPATH=$QEMU_PY timeout 110 python3 "$CLIENT" jobevents "$TMP/qj.sock" "$TMP/jov" \
        >"$TMP/qj.txt" 2>>"$TMP/qj.err"
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
    if grep -q '^created' "$TMP/qj.txt"; then
        is "$(cat "$TMP/qj.txt")" "$(cat "$TMP/jobs.want")" \
            "qemu-system-x86_64 sends the same job events"
    else
        skip "qemu-system-x86_64 ran no job: $(tail -2 "$TMP/qj.err")" "job events as on QEMU"
    fi
else
    skip "qemu-system-x86_64 is not installed" "as on QEMU" "job events as on QEMU"
fi
done_testing
