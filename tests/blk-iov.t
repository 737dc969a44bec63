#!/bin/bash
# Scatter/gather requests through the block layer on raw and qcow2 images
# (what virtio-blk sends), then qemu-img check on the qcow2 one.
. "$(dirname "$0")/tap.sh"
need_cmd qemu-img
plan 5
truncate -s 32M "$TMP/a.raw"
qemu-img create -q -f qcow2 -o cluster_size=4k "$TMP/a.qcow2" 32M
# the results of tests/unit/blk-iov on each image, named "FORMAT: ..."
relay "raw: " "$CALF_BUILD/tests/blk-iov" "$TMP/a.raw"
relay "qcow2: " "$CALF_BUILD/tests/blk-iov" "$TMP/a.qcow2"
ok "qemu-img check clean" qemu-img check "$TMP/a.qcow2"
done_testing
