#!/bin/bash
# Scatter/gather requests through the block layer on raw and qcow2 images
# (what virtio-blk sends), then qemu-img check on the qcow2 one.
. "$(dirname "$0")/tap.sh"
need_cmd qemu-img
plan 5
truncate -s 32M "$TMP/a.raw"
qemu-img create -q -f qcow2 -o cluster_size=4k "$TMP/a.qcow2" 32M
# iov FORMAT IMAGE: the results of tests/unit/blk-iov on IMAGE, as tests
# of this file named "FORMAT: ..."
iov() {
    local line
    while read -r line; do
        case $line in
            "ok "[0-9]*" - "*) pass "$1: ${line#* - }" ;;
            "not ok "[0-9]*" - "*) fail "$1: ${line#* - }" ;;
        esac
    done < <("$CALF_BUILD/tests/blk-iov" "$2")
}
iov raw "$TMP/a.raw"
iov qcow2 "$TMP/a.qcow2"
ok "qemu-img check clean" qemu-img check "$TMP/a.qcow2"
done_testing
