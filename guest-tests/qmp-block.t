#!/bin/bash
# The monitor's block commands (vmm/qmp-block.c), driven by QEMU 7.2's
# own Python client (guest-tests/qmp-client.py) and compared with
# qemu-system-x86_64's answers byte for byte:
# 1. query-blockstats: the test guest (ct.virtio=1) does its virtio-blk
#    requests and prints what they must count by QEMU's rules (its own
#    model); calf's counters for virtio0 must be exactly that.
# 2. query-blockstats of idle drives (calf --paused, QEMU -S, the same
#    -drive layout): the same bytes, automatic node names masked; a raw
#    disk and the CD, then a qcow2 overlay on a qcow2 (its "backing").
# 3. eject and blockdev-change-medium on the test guest's CD
#    (ct.idewatch=lock: it locks the tray, then polls GET EVENT STATUS
#    NOTIFICATION and reads every new disc): a locked tray refuses a
#    plain eject and the guest sees the eject request; force opens it
#    (DEVICE_TRAY_MOVED), the guest sees the tray open and no medium; a
#    new image goes in, the tray closes, the guest sees new media, NOT
#    READY then UNIT ATTENTION, and reads the new image's capacity and
#    pattern; a change with the tray closed (by qdev ID) moves it twice.
# 4. The same commands, their errors and events on a paused machine,
#    byte for byte as QEMU's (timestamps masked).
# 5. BLOCK_IO_ERROR: the test guest's disk is a qcow2 under blkdebug
#    rules that fail, once each, the read of guest offset 1 MiB (EIO) and
#    the write at 2 MiB - 4 KiB (ENOSPC); the guest sees both requests
#    fail, the client gets one event each with QEMU's fields, and
#    query-blockstats counts them as failed.  The read's event is the
#    one qemu-system-x86_64 sends for the same guest, disk and rules;
#    so is the one for the guest's write to a read-only disk (EPERM).
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd python3
QEMU_PY=$(CALF_BUILD=$CALF_BUILD "$(dirname "$0")/../scripts/qemu-python.sh" 2>"$TMP/py.err") ||
    skip_all "no QEMU Python client: $(cat "$TMP/py.err")"
CLIENT=$(cd "$(dirname "$0")" && pwd)/qmp-client.py
RAW=$(cd "$(dirname "$0")" && pwd)/qmp-raw.py
REQ=$(cd "$(dirname "$0")" && pwd)/qmp/blockstats.txt

# start, finish (10 s) and fact: guest-tests/lib.sh

# 1. counters against the guest's own model
truncate -s 4M "$TMP/disk.raw"
truncate -s 1M "$TMP/cd.iso"
start b --kernel "$GUEST" --cpus 2 --append "ct.virtio=1 ct.hang=1" \
    --disk "$TMP/disk.raw,format=raw" --cdrom "$TMP/cd.iso" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" blockstats "$TMP/b.sock" "$TMP/b.out" \
    >"$TMP/b.facts" 2>"$TMP/b.pyerr"
sed 's/^/#   /' "$TMP/b.pyerr"
finish "$pid"
is "$(fact b guest-done)" True "the guest did its virtio-blk requests"
guest=$(fact b guest-acct)
echo "# guest model: rd ops/bytes, wr ops/bytes, flush, invalid rd/wr, failed wr, highest write: $guest"
ok "the guest's requests count something" [ -n "$guest" ] && [ "${guest%% *}" -gt 0 ]
is "$(fact b host-acct)" "$guest" \
    "query-blockstats: reads, writes (write-zeroes too), flushes, invalid, failed, wr_highest_offset as the guest counted"
is "$(fact b timed)" True "rd/wr/flush_total_time_ns are counted"
is "$(fact b idle)" True "idle_time_ns once the drive was used"
is "$(fact b unmap)" "0 0 0" "a discard counts nothing (discard=ignore), no failed read"
is "$(fact b parent)" "file $(echo "$guest" | awk '{print $NF}') 0" \
    "parent: the file node, its highest write as the raw image's, no counters of its own"
is "$(fact b qdev)" "/machine/peripheral-anon/device[0]/virtio-backend" "qdev: QEMU's path"
is "$(fact b cd-idle)" "0 0 0 0 0 0 0 0 0" "the CD nobody read counts nothing"
is "$(fact b nodes)" "#block #block #block #block 0" "query-nodes: four nodes, no device"
is "$status" 0 "calf exits 0 after quit"

# 2. idle drives, byte for byte as QEMU
truncate -s 4M "$TMP/q.raw"
truncate -s 1M "$TMP/q.iso"
mask() { sed 's/#block[0-9]*/#blockN/g'; }
start i --kernel "$GUEST" --paused --disk "$TMP/disk.raw,format=raw" --cdrom "$TMP/cd.iso" --timeout 60
python3 "$RAW" transcript "$TMP/i.sock" "$REQ" 2>"$TMP/i.pyerr" | mask >"$TMP/calf.txt"
kill "$pid"; finish "$pid"
ok "calf answered the requests" grep -q '"id": 5' "$TMP/calf.txt"
if command -v qemu-system-x86_64 >/dev/null; then
    qemu-system-x86_64 -M pc -accel kvm -S -display none -nodefaults \
        -drive "file=$TMP/q.raw,format=raw,if=virtio" -cdrom "$TMP/q.iso" \
        -qmp "unix:$TMP/q.sock,server=on,wait=off" >"$TMP/q.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do [ -S "$TMP/q.sock" ] && break; sleep 0.1; done
    python3 "$RAW" transcript "$TMP/q.sock" "$REQ" 2>>"$TMP/q.err" | mask >"$TMP/qemu.txt"
    kill "$qpid"; wait "$qpid" 2>/dev/null
    if grep -q '"id": 5' "$TMP/qemu.txt"; then
        d=$(diff "$TMP/qemu.txt" "$TMP/calf.txt" | head -c 2000)
        is "$d" "" "query-blockstats (and query-nodes, and its argument errors) as QEMU 7.2's, byte for byte"
    else
        skip "qemu-system-x86_64 did not answer: $(tail -3 "$TMP/q.err")" "as QEMU's"
    fi
else
    skip "qemu-system-x86_64 is not installed" "as QEMU's"
fi
for x in c q; do
    "$CALF_BUILD/calf-img" create -q -f qcow2 "$TMP/$x-base.qcow2" 4M
    "$CALF_BUILD/calf-img" create -q -f qcow2 -b "$TMP/$x-base.qcow2" -F qcow2 \
        "$TMP/$x-top.qcow2"
done
start o --kernel "$GUEST" --paused --disk "$TMP/c-top.qcow2" --timeout 60
python3 "$RAW" transcript "$TMP/o.sock" "$REQ" 2>"$TMP/o.pyerr" | mask >"$TMP/calf-o.txt"
kill "$pid"; finish "$pid"
ok "calf answered for the overlay" grep -q '"backing"' "$TMP/calf-o.txt"
if command -v qemu-system-x86_64 >/dev/null; then
    qemu-system-x86_64 -M pc -accel kvm -S -display none -nodefaults \
        -drive "file=$TMP/q-top.qcow2,if=virtio" \
        -qmp "unix:$TMP/qo.sock,server=on,wait=off" >"$TMP/qo.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do [ -S "$TMP/qo.sock" ] && break; sleep 0.1; done
    python3 "$RAW" transcript "$TMP/qo.sock" "$REQ" 2>>"$TMP/qo.err" | mask >"$TMP/qemu-o.txt"
    kill "$qpid"; wait "$qpid" 2>/dev/null
    if grep -q '"id": 5' "$TMP/qemu-o.txt"; then
        d=$(diff "$TMP/qemu-o.txt" "$TMP/calf-o.txt" | head -c 2000)
        is "$d" "" "a qcow2 overlay: its backing nodes (and query-nodes' list) as QEMU's, byte for byte"
    else
        skip "qemu-system-x86_64 did not answer: $(tail -3 "$TMP/qo.err")" "overlay as QEMU's"
    fi
else
    skip "qemu-system-x86_64 is not installed" "overlay as QEMU's"
fi
[ "$t_fail" = 0 ] || { tail -20 "$TMP/b.out"; cat "$TMP/b.facts"; }

# 3. media changes the guest sees
python3 -c "
open('$TMP/a.iso', 'wb').write(b'\xa1' * 2048 * 512)
open('$TMP/b.iso', 'wb').write(b'\xb2' * 2048 * 1024)
open('$TMP/c.iso', 'wb').write(b'\xc3' * 2048 * 300)"
start m --kernel "$GUEST" --append "ct.idewatch=lock" --disk "$TMP/disk.raw,format=raw" \
    --cdrom "$TMP/a.iso" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" media "$TMP/m.sock" "$TMP/m.out" \
    "$TMP/b.iso" "$TMP/c.iso" >"$TMP/m.facts" 2>"$TMP/m.pyerr"
sed 's/^/#   /' "$TMP/m.pyerr"
finish "$pid"
is "$(fact m watching)" "['watching: capacity 512 byte 0xa1']" "the guest reads the first disc"
is "$(fact m locked)" True "the guest locked the tray"
is "$(fact m block-locked)" "False:True:$TMP/a.iso" "query-block: locked, tray closed, the disc in"
is "$(fact m eject-locked)" \
    "Device 'ide1-cd0' is locked and force was not specified, wait for tray to open and try again" \
    "eject of a locked tray: QEMU's error"
is "$(fact m eject-request)" "media 2 event 1" "and the guest gets an eject request (media event 1)"
is "$(fact m eject-event)" "ide1-cd0:True" "eject force: DEVICE_TRAY_MOVED, tray open"
is "$(fact m ejected)" "media 1 event 0 tur 0x2/0x3a" \
    "the guest sees the tray open; TEST UNIT READY: NOT READY, medium not present"
is "$(fact m block-ejected)" "True:False:-" "query-block: tray open, unlocked, nothing inserted"
is "$(fact m change-event)" "ide1-cd0:False" "blockdev-change-medium: the tray closes"
is "$(fact m changed)" "media 2 event 2" "the guest sees new media"
is "$(fact m changed-read)" "ready after 0x2/0x3a 0x6/0x28 ok: capacity 1024 byte 0xb2" \
    "NOT READY, UNIT ATTENTION (medium changed), then ready: the new image's capacity and data"
is "$(fact m block-changed)" "False:False:$TMP/b.iso" "query-block: the new image"
is "$(fact m change2-events)" "True,False" "a change with the tray closed opens and closes it"
is "$(fact m change2-read)" "ready after 0x2/0x3a 0x6/0x28 ok: capacity 300 byte 0xc3" \
    "and the guest reads the third image"
is "$(fact m eject-virtio)" "Device 'virtio0' is not removable" "a virtio disk cannot be ejected"
is "$status" 0 "calf exits 0 after quit"
[ "$t_fail" = 0 ] || grep 'cd:' "$TMP/m.out" | tail -20

# 4. the same on a paused machine, as QEMU answers
cp "$TMP/a.iso" "$TMP/qa.iso"
mkdir -p "$TMP/c" "$TMP/q"
cp "$TMP/b.iso" "$TMP/c/cd2.iso"
cp "$TMP/b.iso" "$TMP/q/cd2.iso"
cp "$TMP/a.iso" "$TMP/c/cd.iso"
cp "$TMP/a.iso" "$TMP/q/cd.iso"
MED=$(cd "$(dirname "$0")" && pwd)/qmp/media.txt
tsmask() { sed 's/"seconds": [0-9]*, "microseconds": [0-9]*/TIME/; s/#block[0-9]*/#blockN/g'; }
(cd "$TMP/c" && exec "$CALF" run --kernel "$GUEST" --paused --disk "$TMP/disk.raw,format=raw" \
    --cdrom cd.iso --qmp "unix:$TMP/p.sock,server=on,wait=off" --timeout 60) \
    >"$TMP/p.out" 2>"$TMP/p.err" </dev/null &
pid=$!
at_exit "kill -9 $pid 2>/dev/null"
for ((i = 0; i < 300; i++)); do [ -S "$TMP/p.sock" ] && break; sleep 0.1; done
python3 "$RAW" transcript "$TMP/p.sock" "$MED" 2>>"$TMP/p.err" | tsmask >"$TMP/calf-m.txt"
kill "$pid"; finish "$pid"
ok "calf answered the media requests" grep -q '"id": 20' "$TMP/calf-m.txt"
if command -v qemu-system-x86_64 >/dev/null; then
    (cd "$TMP/q" && exec qemu-system-x86_64 -M pc -accel kvm -S -display none -nodefaults \
        -drive "file=$TMP/q.raw,format=raw,if=virtio" -cdrom cd.iso \
        -qmp "unix:$TMP/qm.sock,server=on,wait=off") >"$TMP/qm.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do [ -S "$TMP/qm.sock" ] && break; sleep 0.1; done
    python3 "$RAW" transcript "$TMP/qm.sock" "$MED" 2>>"$TMP/qm.err" | tsmask >"$TMP/qemu-m.txt"
    kill "$qpid"; wait "$qpid" 2>/dev/null
    if grep -q '"id": 20' "$TMP/qemu-m.txt"; then
        d=$(diff "$TMP/qemu-m.txt" "$TMP/calf-m.txt" | head -c 2000)
        is "$d" "" "eject, blockdev-change-medium, DEVICE_TRAY_MOVED and the errors as QEMU 7.2's ($(wc -l <"$TMP/calf-m.txt") lines)"
    else
        skip "qemu-system-x86_64 did not answer: $(tail -3 "$TMP/qm.err")" "media as QEMU's"
    fi
else
    skip "qemu-system-x86_64 is not installed" "media as QEMU's"
fi

# 5. I/O errors the guest is told of
"$CALF_BUILD/calf-img" create -q -f qcow2 "$TMP/e.qcow2" 4M
"$CALF_BUILD/calf-io" -c 'write -P 0x11 0 4M' "$TMP/e.qcow2" >/dev/null
cp "$TMP/e.qcow2" "$TMP/eq.qcow2"
# the host sectors of guest offsets 1 MiB and 2 MiB - 4 KiB
host=$("$CALF_BUILD/calf-img" map --output=json "$TMP/e.qcow2" |
    python3 -c 'import json, sys; m = json.load(sys.stdin)[0]
print((m["offset"] + (1 << 20)) // 512, (m["offset"] + (2 << 20) - 4096) // 512)')
printf '[inject-error]\nevent = "read_aio"\niotype = "read"\nerrno = "5"\nsector = "%s"\nonce = "on"\n\n[inject-error]\nevent = "write_aio"\niotype = "write"\nerrno = "28"\nsector = "%s"\nonce = "on"\n' \
    $host >"$TMP/e.conf"
# QEMU's default werror=enospc would stop the VM at the write: it gets
# the read's rule only (calf reports every error to the guest)
sed '/^$/,$d' "$TMP/e.conf" >"$TMP/eq.conf"
start e --kernel "$GUEST" --paused --append "ct.virtio=1 ct.hang=1" \
    --disk "blkdebug:$TMP/e.conf:$TMP/e.qcow2" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" ioerror "$TMP/e.sock" "$TMP/e.out" \
    >"$TMP/e.facts" 2>"$TMP/e.pyerr"
sed 's/^/#   /' "$TMP/e.pyerr"
finish "$pid"
is "$(fact e event0)" \
    "action=report device=virtio0 node-name=#blockN nospace=False operation=read reason=Input/output error" \
    "a failed read: BLOCK_IO_ERROR, operation read, reason EIO's"
is "$(fact e event1)" \
    "action=report device=virtio0 node-name=#blockN nospace=True operation=write reason=No space left on device" \
    "a write failing with ENOSPC: operation write, nospace"
is "$(fact e guest-done)" True "the guest ran on"
is "$(fact e guest-saw)" 2 "and saw both requests fail"
is "$(fact e failed)" "1 1" "query-blockstats: one failed read, one failed write"
is "$status" 0 "calf exits 0 after quit"
if command -v qemu-system-x86_64 >/dev/null; then
    qemu-system-x86_64 -M pc -accel kvm -m 256 -S -display none -nodefaults \
        -kernel "$GUEST" -append "ct.virtio=1 ct.hang=1" \
        -drive "file=blkdebug:$TMP/eq.conf:$TMP/eq.qcow2,if=virtio,format=qcow2" \
        -serial "file:$TMP/eq.out" -qmp "unix:$TMP/eq.sock,server=on,wait=off" \
        >"$TMP/eq.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do [ -S "$TMP/eq.sock" ] && break; sleep 0.1; done
    PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" ioerror "$TMP/eq.sock" "$TMP/eq.out" 1 \
        >"$TMP/eq.facts" 2>>"$TMP/eq.err"
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
    if [ -n "$(fact eq event0)" ]; then
        is "$(fact e event0) $(fact e event0-keys)" "$(fact eq event0) $(fact eq event0-keys)" \
            "the read's event is QEMU's: the same fields, values and order"
    else
        skip "qemu-system-x86_64 sent no event: $(tail -3 "$TMP/eq.err")" "as QEMU's event"
    fi
else
    skip "qemu-system-x86_64 is not installed" "as QEMU's event"
fi
truncate -s 4M "$TMP/ro.raw" "$TMP/qro.raw"
start r --kernel "$GUEST" --paused --append "ct.virtio=1 ct.hang=1" \
    --disk "$TMP/ro.raw,format=raw,readonly" --timeout 200
PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" ioerror "$TMP/r.sock" "$TMP/r.out" 1 \
    >"$TMP/r.facts" 2>"$TMP/r.pyerr"
finish "$pid"
is "$(fact r event0)" \
    "action=report device=virtio0 node-name=#blockN nospace=False operation=write reason=Operation not permitted" \
    "a write to a read-only disk: BLOCK_IO_ERROR, EPERM"
if command -v qemu-system-x86_64 >/dev/null; then
    qemu-system-x86_64 -M pc -accel kvm -m 256 -S -display none -nodefaults \
        -kernel "$GUEST" -append "ct.virtio=1 ct.hang=1" \
        -drive "file=$TMP/qro.raw,format=raw,if=virtio,readonly=on" \
        -serial "file:$TMP/qr.out" -qmp "unix:$TMP/qr.sock,server=on,wait=off" \
        >"$TMP/qr.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do [ -S "$TMP/qr.sock" ] && break; sleep 0.1; done
    PYTHONPATH=$QEMU_PY timeout 190 python3 "$CLIENT" ioerror "$TMP/qr.sock" "$TMP/qr.out" 1 \
        >"$TMP/qr.facts" 2>>"$TMP/qr.err"
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
    if [ -n "$(fact qr event0)" ]; then
        is "$(fact r event0) $(fact r event0-keys)" "$(fact qr event0) $(fact qr event0-keys)" \
            "and it is QEMU's"
    else
        skip "qemu-system-x86_64 sent no event: $(tail -3 "$TMP/qr.err")" "read-only as QEMU's"
    fi
else
    skip "qemu-system-x86_64 is not installed" "read-only as QEMU's"
fi
done_testing
