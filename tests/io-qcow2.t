#!/bin/bash
# calf-io's view of qcow2 images against qemu-io's: map, alloc, info,
# length, and writes into overlays.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

setup() {
    in_both qemu-img create -q -f qcow2 base.qcow2 64M &&
    in_both qemu-io -c 'write -P 0xab 0 64k' -c 'write -P 1 1M 128k' -c 'write -z 2M 64k' \
        -c 'write -P 3 3M 4k' base.qcow2 &&
    in_both qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 &&
    in_both qemu-io -c 'write -P 5 128k 64k' top.qcow2 &&
    in_both qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 3M &&
    in_both qemu-img create -q -f qcow2 -o extended_l2=on,lazy_refcounts=on,refcount_bits=8 x.qcow2 100M
}
cmds=('map' 'alloc 0 256k' 'alloc 64k 1M' 'alloc 128k' 'alloc 0 64M' 'info' 'length'
      'read -P 0xab 0 64k' 'read -P 5 128k 64k' 'read -v 2M 32')
files="base.qcow2 top.qcow2 v2.qcow2 x.qcow2"
driver_check qcow2
if setup; then
    for f in $files; do
        for c in "${cmds[@]}"; do
            same_io "$c on $f" -c "$c" $f
        done
    done
    same_io "calf-io writes into the overlay, then map" \
        -c 'write -P 8 4M 64k' -c 'write -z 5M 64k' -c 'map' top.qcow2
    same_io "discard in the overlay, then map" -c 'discard 128k 64k' -c 'map' top.qcow2
    in_both qemu-img create -q -f qcow2 comp.qcow2 1M
    same_io "compressed writes" -c 'write -c 0 64k' -c 'write -c 1 512' -c 'write -c 0 100' \
        -c 'write -c -P 3 128k 64k' -c 'map' -c 'read -P 3 128k 64k' -c 'read -P 0xcd 0 64k' \
        comp.qcow2
    ok "compressed writes: qemu-img check" qemu-img check -q "$CDIR/comp.qcow2"
    is "$(qemu-img compare "$QDIR/comp.qcow2" "$CDIR/comp.qcow2" 2>&1)" "Images are identical." \
       "compressed writes: same content as qemu-io's"
else
    fail "the qcow2 test images: qemu-img or qemu-io failed to make them"
fi
done_testing
