#!/bin/bash
# calf-img info against qemu-img info: human and JSON output, backing
# chains, missing backing files, open errors.  actual-size/disk size come
# from st_blocks, which both read from the same kind of file.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

in_both qemu-img create -q -f raw a.raw 64M
in_both qemu-io -f raw -c 'write -P 0xab 0 64k' -c 'write -P 1 1M 128k' a.raw
in_both qemu-img create -q -f raw empty.raw 0
in_both qemu-img create -q -f raw odd.raw 1536
# a quote, a tab and a non-ASCII letter in one name
WEIRD=$'we"ird\tname é.raw'
in_both cp a.raw "$WEIRD"
for f in a.raw empty.raw odd.raw "$WEIRD"; do
    for o in "" --output=json --output=human --backing-chain "--backing-chain --output=json" -U; do
        same_img "info $o $f" info $o "$f"
    done
done
same_img "info -f raw" info -f raw a.raw
same_img "info of a missing file" info nonexist
same_img "info without a file" info
same_img "info with two files" info a.raw a.raw
same_img "info --output=xml" info --output=xml a.raw
same_img "info --bogus" info --bogus a.raw
ok "info -f qcow2 on a raw file fails" bash -c "! '$CALF_IMG' info -f qcow2 '$CDIR/a.raw'"
ok "info of a directory fails" bash -c "! '$CALF_IMG' info /"
same_img "info -f qcow2 on a raw file: message" info -f qcow2 a.raw
TODO="block layer open errors are worded differently from QEMU's"
same_img "info of a directory: message" info /
TODO=

# Tells apart what we wrote: sizes after a write through calf-io.
"$CALF_IO" -f raw -c 'write -P 7 70M 1M' a.raw >/dev/null 2>&1 # past the end: fails
"$CALF_IO" -f raw -c 'truncate 80M' "$CDIR/a.raw" >/dev/null
qemu-io -f raw -c 'truncate 80M' "$QDIR/a.raw" >/dev/null
same_img "info after calf-io truncate" info --output=json a.raw

qcow2_setup() {
    in_both qemu-img create -q -f qcow2 base.qcow2 64M &&
    in_both qemu-io -c 'write -P 0xab 0 64k' -c 'write -z 2M 64k' base.qcow2 &&
    in_both qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 &&
    in_both qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 32M &&
    in_both qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M &&
    in_both qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k,refcount_bits=64 v3.qcow2 1M &&
    in_both qemu-img create -q -f qcow2 -o extended_l2=on,compression_type=zstd x.qcow2 1M &&
    in_both qemu-img create -q -f qcow2 -u -b nonexist -F qcow2 lost.qcow2 1M &&
    in_both qemu-img create -q -f qcow2 -b a.raw -F raw onraw.qcow2 &&
    qemu-img create -q -f qcow2 "$TMP/snap.qcow2" 1M &&
    qemu-io -c 'write -P 1 0 64k' "$TMP/snap.qcow2" >/dev/null &&
    qemu-img snapshot -c first "$TMP/snap.qcow2" &&
    qemu-img snapshot -c "second snapshot" "$TMP/snap.qcow2" &&
    cp --sparse=always "$TMP/snap.qcow2" "$QDIR/snap.qcow2" &&
    cp --sparse=always "$TMP/snap.qcow2" "$CDIR/snap.qcow2"
}
qcow2_files="base.qcow2 mid.qcow2 top.qcow2 v2.qcow2 v3.qcow2 x.qcow2 lost.qcow2 onraw.qcow2"
driver_check qcow2
if qcow2_setup; then
    for f in $qcow2_files; do
        for o in "" --output=json --backing-chain "--backing-chain --output=json"; do
            same_img "info $o $f" info $o $f
        done
    done
    # one image with snapshots, copied: the dates are the same in both
    same_img "info with snapshots" info snap.qcow2
    same_img "info --output=json with snapshots" info --output=json snap.qcow2
else
    fail "the qcow2 test images: qemu-img or qemu-io failed to make them"
fi
done_testing
