#!/bin/bash
# The virtual fds of block/proto.c (tests/unit/blk-vfd.c): a stale fd
# after its slot is reused, a vector write of nothing past the end, ends
# near 2^64, a grow-only resize, and a write through an fd released
# while it waits for the slot's lock (checked with qemu-io too).
. "$(dirname "$0")/tap.sh"
need_cmd qemu-img qemu-io
[ -x "$CALF_BUILD/tests/blk-vfd" ] || skip_all "blk-vfd is not built"
plan 12
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 1M
qemu-img create -q -f qcow2 "$TMP/c.qcow2" 1M
qemu-io -c "write -P 0xbb 0 512" "$TMP/c.qcow2" >/dev/null
relay "" "$CALF_BUILD/tests/blk-vfd" "$TMP/a.qcow2" "$TMP/c.qcow2"
out=$(qemu-io -c "read -P 0xbb 0 512" "$TMP/c.qcow2" 2>&1)
if echo "$out" | grep -q "Pattern verification failed\|Could not\|error"; then
    fail "qemu-io reads the other image as it was" "$out"
else pass "qemu-io reads the other image as it was"; fi
