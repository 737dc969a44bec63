#!/bin/bash
# The virtual fds of block/proto.c (tests/unit/blk-vfd.c): a stale fd
# after its slot is reused, a vector write of nothing past the end, ends
# near 2^64, and a grow-only resize.
. "$(dirname "$0")/tap.sh"
need_cmd qemu-img
[ -x "$CALF_BUILD/tests/blk-vfd" ] || skip_all "blk-vfd is not built"
plan 9
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 1M
relay "" "$CALF_BUILD/tests/blk-vfd" "$TMP/a.qcow2"
