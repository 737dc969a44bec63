#!/bin/bash
# Zeroing compressed clusters and subclusters of extended-L2 images, as
# QEMU does it (iotest 271's cases and more): calf-io and qemu-io run the
# same commands, one process each as a user would, on twin images (with
# and without a backing file); the L2 entries (host offsets and subcluster
# bitmaps) must be QEMU's byte for byte, qemu-img map and check must agree,
# and qemu-io must read back what a raw twin of the image holds.  Then the
# entries QEMU reads where calf refused before (bit 0 set, a compressed
# cluster with a bitmap), and growing with preallocation over a longer
# backing file.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 21

# l2off IMG: the host offset of the first L2 table
l2off() {
    local l1 e
    l1=$(od -An -tx8 --endian=big -j 40 -N 8 "$1" | tr -d ' ')
    e=$(od -An -tx8 --endian=big -j $((0x$l1)) -N 8 "$1" | tr -d ' ')
    echo $((0x$e & 0xfffffffffe00))
}
# l2 IMG FIRST N: raw L2 entries FIRST..FIRST+N-1 of the first L2 table
l2() {
    od -An -tx8 --endian=big -v -j $(( $(l2off "$1") + $2 * 16 )) -N $(($3 * 16)) "$1"
}
# io CMD...: the qemu-io command on each twin (and the raw twin, -c off)
io() {
    local out
    out=$("$CALF_IO" -c "$1" "$CDIR/t.qcow2" 2>&1) || { echo "calf-io $1: $out"; return 1; }
    qemu-io -c "$1" "$QDIR/t.qcow2" >/dev/null 2>&1 || { echo "qemu-io $1 failed"; return 1; }
    qemu-io -f raw -c "${1/ -c / }" "$TMP/t.raw" >/dev/null 2>&1
}
judge() { # judge DESC FIRST N
    local desc=$1 bad=""
    is "$(l2 "$CDIR/t.qcow2" "$2" "$3")" "$(l2 "$QDIR/t.qcow2" "$2" "$3")" "$desc: L2 entries are QEMU's"
    for d in "$CDIR" "$QDIR"; do
        qemu-img check -q "$d/t.qcow2" || bad="$bad check($d)"
        qemu-img compare -q "$d/t.qcow2" "$TMP/t.raw" || bad="$bad compare($d)"
    done
    is "$(qemu-img map --output=json "$CDIR/t.qcow2")$bad" \
       "$(qemu-img map --output=json "$QDIR/t.qcow2")" "$desc: same map, clean, reads as the raw twin"
}

for backing in yes no; do
    rm -f "$TMP/t.raw" "$TMP/base.raw" "$QDIR/t.qcow2" "$CDIR/t.qcow2"
    qemu-img create -q -f raw "$TMP/t.raw" 2083k
    if [ $backing = yes ]; then
        qemu-img create -q -f raw "$TMP/base.raw" 2083k
        qemu-io -f raw -c 'write -q -P 0xff 0 2083k' "$TMP/base.raw"
        qemu-io -f raw -c 'write -q -P 0xff 0 2083k' "$TMP/t.raw"
        in_both qemu-img create -q -f qcow2 -o extended_l2=on -F raw -b "$TMP/base.raw" t.qcow2 2083k
    else
        in_both qemu-img create -q -f qcow2 -o extended_l2=on t.qcow2 2083k
    fi
    err=""
    # normal clusters with partly zeroed subclusters, then compressed ones
    for c in 1 2 3 4; do io "write -q -P $c $((c * 64))k 64k" || err="$err x"; done
    io 'write -q -z 65k 3k' && io 'write -q -z 130k 4k' && io 'write -q -z -u 192k 64k' || err="$err z"
    for c in $(seq 18 28); do io "write -q -c -P $((c + 0x20)) $((c * 64))k 64k" || err="$err c$c"; done
    is "$err" "" "backing $backing: setup writes"
    judge "backing $backing: subclusters zeroed" 0 6
    io 'write -q -z -u 1152k 192k' || err=u1
    io 'write -q -z -u 1376k 128k' || err=u2
    judge "backing $backing: compressed clusters zeroed whole and in part" 18 6
    io 'write -q -z -u 1567k 129k' || err=u3
    io 'write -q -z -u 1759k 128k' || err=u4
    io 'write -q -z 1824k 33k' || err=u5
    is "$err" "" "backing $backing: zero writes"
    judge "backing $backing: unaligned zeroes over compressed clusters" 18 12
done
# what calf wrote, read back by qemu-io: the patterns around the zeros
out=$(qemu-io -r -c 'read -P 1 64k 1k' -c 'read -P 0 65k 3k' -c 'read -P 1 68k 60k' \
      -c 'read -P 2 128k 2k' -c 'read -P 0 130k 4k' -c 'read -P 0 192k 64k' \
      -c 'read -P 0x35 1344k 32k' -c 'read -P 0 1376k 128k' -c 'read -P 0x37 1504k 32k' \
      -c 'read -P 0x38 1536k 31k' -c 'read -P 0 1567k 129k' -c 'read -P 0x3a 1696k 32k' \
      "$CDIR/t.qcow2" 2>&1)
if echo "$out" | grep -q 'failed\|Pattern'; then fail "qemu-io reads calf's data back" "$out"
else pass "qemu-io reads calf's data back"; fi

# entries QEMU reads and writes without complaint
in_both qemu-img create -q -f qcow2 -o extended_l2=on t.qcow2 1M
in_both qemu-io -c 'write -q -P 0x11 0 2k' -c 'write -q -c -P 0x22 64k 64k' t.qcow2
for d in "$CDIR" "$QDIR"; do
    off=$(l2off "$d/t.qcow2")
    printf '\x01' | dd of="$d/t.qcow2" bs=1 seek=$((off + 7)) conv=notrunc status=none
    printf '\x01\x80' | dd of="$d/t.qcow2" bs=1 seek=$((off + 16 + 11)) conv=notrunc status=none
done
same_io "bit 0 and a compressed cluster's bitmap are ignored" \
    -c 'read -P 0x11 0 2k' -c 'write -P 0x33 1k 1k' -c 'read -P 0x22 64k 64k' -c 'write -P 0x44 64k 4k' t.qcow2
is "$(l2 "$CDIR/t.qcow2" 0 2)" "$(l2 "$QDIR/t.qcow2" 0 2)" "... and the entries are then QEMU's"

# growing over a longer backing file with preallocation: zeros there
qemu-img create -q -f raw "$TMP/base.raw" 1M
qemu-io -f raw -c 'write -q -P 0xff 0 1M' "$TMP/base.raw"
for m in metadata falloc; do
    rm -f "$CDIR/r.qcow2"
    qemu-img create -q -f qcow2 -o extended_l2=on -F raw -b "$TMP/base.raw" "$CDIR/r.qcow2" 503k
    "$CALF_IMG" resize -q --preallocation=$m "$CDIR/r.qcow2" 1013k
    out=$(qemu-io -r -c 'read -P 0xff 0 503k' -c 'read -P 0 503k 510k' "$CDIR/r.qcow2" 2>&1)
    if echo "$out" | grep -q 'failed\|Pattern'; then fail "resize --preallocation=$m: new area reads zeros" "$out"
    else pass "resize --preallocation=$m: new area reads zeros"; fi
done
