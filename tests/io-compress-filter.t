#!/bin/bash
# QEMU's "compress" filter over qcow2 ("driver=compress,file.driver=qcow2,
# ..." with --image-opts, and the json: form): calf-io and qemu-io run the
# same writes on twin images (aligned, unaligned ones padded to whole
# clusters, write-zeroes with partial clusters at its ends, discard,
# overwrites of compressed clusters, which the format refuses); they must print
# the same, the images must read the same, qemu-io must read calf's
# patterns back, qemu-img map must show the same extents with no host
# offset (compressed) and qemu-img check count the same compressed
# clusters.  Then the refusals: an image size that is not a multiple of
# the cluster size (for writing), the filter over a host file or under a
# format.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 21

opts() { echo "driver=compress,file.driver=qcow2,file.file.driver=file,file.file.filename=$1"; }
in_both qemu-img create -q -f qcow2 -o cluster_size=64k t.qcow2 1M
same_io "writes through the filter (--image-opts)" --image-opts \
    -c 'write -P 0x11 1000 3000' -c 'write -P 0x22 64k 64k' -c 'write -P 0x33 64k 64k' \
    -c 'write -P 0x44 960k 40k' -c 'write -z 192k 64k' -c 'write -P 0x66 256k 64k' \
    -c 'write -z 330k 10k' -c 'write -P 0x55 400k 512' -c 'discard 384k 64k' \
    -c 'read -P 0x11 1000 3000' -c 'read -P 0 0 1000' -c 'map' "$(opts t.qcow2)"
same_io "writes through the filter (json:)" -c 'write -P 0x77 500k 100k' -c 'write -z 650k 10k' \
    -c 'read -P 0x77 500k 100k' -c 'read -P 0 600k 40k' \
    "json:{'driver': 'compress', 'file': {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': 't.qcow2'}}}"

ok "calf's image reads the same as qemu-io's" qemu-img compare "$CDIR/t.qcow2" "$QDIR/t.qcow2"
# what calf wrote, read back by qemu-io
out=$(qemu-io -r -c 'read -P 0 0 1000' -c 'read -P 0x11 1000 3000' -c 'read -P 0 4000 61536' \
      -c 'read -P 0x22 64k 64k' -c 'read -P 0 128k 128k' -c 'read -P 0x66 256k 64k' \
      -c 'read -P 0 320k 180k' -c 'read -P 0x77 500k 100k' -c 'read -P 0 600k 360k' \
      -c 'read -P 0x44 960k 40k' -c 'read -P 0 1000k 24k' \
      -f qcow2 "$CDIR/t.qcow2" 2>&1)
if echo "$out" | grep -q 'failed\|Pattern'; then fail "qemu-io reads calf's patterns" "$out"
else pass "qemu-io reads calf's patterns"; fi
cmap=$(qemu-img map --output=json "$CDIR/t.qcow2"); qmap=$(qemu-img map --output=json "$QDIR/t.qcow2")
is "$cmap" "$qmap" "qemu-img map: the same extents as qemu-io's image"
# compressed data clusters have no host offset in the map
data=$(echo "$cmap" | grep -c '"data": true')
plain=$(echo "$cmap" | grep '"data": true' | grep -c '"offset"')
ok "qemu-img map: $data data extents, none with a host offset" test "$data" -ge 4 -a "$plain" = 0
count() { qemu-img check --output=json "$1" | sed -n 's/.*"compressed-clusters": \([0-9]*\).*/\1/p'; }
is "$(count "$CDIR/t.qcow2")" "$(count "$QDIR/t.qcow2")" "qemu-img check: as many compressed clusters"
is "$(count "$CDIR/t.qcow2")" 9 "qemu-img check: 9 compressed clusters"
ok "qemu-img check is clean" qemu-img check -q "$CDIR/t.qcow2"

# a write over a compressed cluster, unaligned and aligned: refused
same_io "overwriting a compressed cluster fails" --image-opts \
    -c 'write -P 0x99 100 100' -c 'write -P 0x99 64k 64k' -c 'read -P 0x11 1000 3000' "$(opts t.qcow2)"
# a larger cluster and an odd number of them, in one request
in_both qemu-img create -q -f qcow2 -o cluster_size=128k,compression_type=zstd z.qcow2 2M
same_io "zstd, 128 KiB clusters, one write over five clusters" --image-opts \
    -c 'write -P 0xab 100k 500k' -c 'read -P 0xab 100k 500k' -c 'read -P 0 0 100k' \
    -c 'read -P 0 600k 40k' "$(opts z.qcow2)"
is "$(count "$CDIR/z.qcow2")" 5 "zstd: 5 compressed clusters"

# refusals
in_both qemu-img create -q -f qcow2 -o cluster_size=64k odd.qcow2 1000k
same_io "size not a multiple of the cluster size: refused for writing" --image-opts \
    -c 'write 0 64k' "$(opts odd.qcow2)"
same_io "... and read-only it opens" -r --image-opts -c 'read -P 0 0 64k' "$(opts odd.qcow2)"
same_io "the filter straight over a host file" -c 'write 0 512' \
    "json:{'driver': 'compress', 'file': {'driver': 'file', 'filename': 't.qcow2'}}"
same_io "the filter under a format" --image-opts -c 'write 0 512' \
    "driver=qcow2,file.driver=compress,file.file.driver=file,file.file.filename=t.qcow2"

# convert -n into the filter: every data cluster compressed, as qemu-img
# convert's (calf's mapped copy would bypass the filter)
qemu-img create -q -f raw "$TMP/src.raw" 1M
qemu-io -f raw -c 'write -P 0x5a 0 256k' -c 'write -P 0xa5 512k 64k' "$TMP/src.raw" >/dev/null
in_both qemu-img create -q -f qcow2 -o cluster_size=64k cv.qcow2 1M
(cd "$CDIR" && "$CALF_IMG" convert -n -f raw "$TMP/src.raw" --target-image-opts "$(opts cv.qcow2)")
(cd "$QDIR" && qemu-img convert -n -f raw "$TMP/src.raw" --target-image-opts "$(opts cv.qcow2)")
ok "convert -n into the filter: reads as the source" qemu-img compare -f raw -F qcow2 "$TMP/src.raw" "$CDIR/cv.qcow2"
is "$(count "$CDIR/cv.qcow2")" "$(count "$QDIR/cv.qcow2")" "convert -n into the filter: as many compressed clusters as qemu-img's"
is "$(qemu-img map --output=json "$CDIR/cv.qcow2")" "$(qemu-img map --output=json "$QDIR/cv.qcow2")" \
    "convert -n into the filter: qemu-img map as qemu-img convert's (no host offsets)"

# a vectored write past the gather buffer (4 MiB) in one request: its
# segments must not be compressed one by one (the second would land in
# the first one's cluster)
in_both qemu-img create -q -f qcow2 -o cluster_size=64k big.qcow2 8M
same_io "writev of 4 MiB and more through the filter" --image-opts \
    -c 'writev -P 0x11 0 1000 4193305' -c 'writev -P 0x22 4259840 3M 64k' \
    -c 'read -P 0x11 0 4194305' -c 'read -P 0x22 4259840 3211264' "$(opts big.qcow2)"
is "$(count "$CDIR/big.qcow2")" "$(count "$QDIR/big.qcow2")" "writev: as many compressed clusters as qemu-io's"
