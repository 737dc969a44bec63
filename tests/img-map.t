#!/bin/bash
# calf-img map against qemu-img map: range merging, depth, present/zero/
# data flags and offsets, human and JSON, start offset and max length.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

in_both qemu-img create -q -f raw m.raw 2M
in_both qemu-io -f raw -c 'write -P 1 0 4k' -c 'write -P 2 64k 128k' -c 'write -z 256k 64k' \
    -c 'write -P 3 1000k 4k' m.raw
in_both qemu-img create -q -f raw hole.raw 1M
in_both qemu-img create -q -f raw empty.raw 0
in_both qemu-img create -q -f raw -o preallocation=full full.raw 256k
# calf-io writes, both tools map
in_both qemu-img create -q -f raw w.raw 1M
qemu-io -f raw -c 'write -P 9 128k 64k' -c 'write -P 9 512k 4k' "$QDIR/w.raw" >/dev/null
"$CALF_IO" -f raw -c 'write -P 9 128k 64k' -c 'write -P 9 512k 4k' "$CDIR/w.raw" >/dev/null

opts=("" "--output=json" "--output=human" "--start-offset=1000 --max-length=70000"
      "--output=json --start-offset=65536" "--output=json --max-length=0"
      "--output=json --start-offset=4k --max-length=64k" "-f raw" "-U")
for f in m.raw hole.raw empty.raw full.raw w.raw; do
    for o in "${opts[@]}"; do
        same_img "map $o $f" map $o $f
    done
done
same_img "map --output=bogus" map --output=bogus m.raw
same_img "map --start-offset=x" map --start-offset=x m.raw
same_img "map of a missing file" map nonexist
same_img "map without a file" map

qcow2_setup() {
    in_both qemu-img create -q -f qcow2 base.qcow2 64M &&
    in_both qemu-io -c 'write -P 0xab 0 64k' -c 'write -P 1 1M 128k' -c 'write -z 2M 64k' \
        -c 'write -P 3 3M 4k' -c 'write -z -u 4M 1M' base.qcow2 &&
    in_both qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 &&
    in_both qemu-io -c 'write -P 5 128k 64k' -c 'write -z 1M 64k' top.qcow2 &&
    in_both qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 big.qcow2 128M &&
    in_both qemu-img create -q -f qcow2 -b m.raw -F raw onraw.qcow2 &&
    in_both qemu-img create -q -f qcow2 -o preallocation=metadata pre.qcow2 1M &&
    in_both qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k sub.qcow2 1M &&
    in_both qemu-io -c 'write -P 1 4k 4k' -c 'write -z 64k 4k' sub.qcow2
}
qfiles="base.qcow2 top.qcow2 big.qcow2 onraw.qcow2 pre.qcow2 sub.qcow2"
driver_check qcow2
if qcow2_setup; then
    for f in $qfiles; do
        for o in "${opts[@]}"; do
            same_img "map $o $f" map $o $f
        done
    done
    # data written by calf-io into an overlay shows up at depth 0
    qemu-io -c 'write -P 7 8M 64k' "$QDIR/top.qcow2" >/dev/null
    "$CALF_IO" -c 'write -P 7 8M 64k' "$CDIR/top.qcow2" >/dev/null
    same_img "map after calf-io write into overlay" map --output=json top.qcow2
else
    fail "the qcow2 test images: qemu-img or qemu-io failed to make them"
fi
done_testing
