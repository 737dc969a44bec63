#!/bin/bash
# Data written by one tool must read back through the other: calf-io
# writes, qemu-io verifies, and the other way round; raw and qcow2
# (including backing files, zero writes and discards).
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

# verify TOOL IMG FMTOPTS CMD...: every command must succeed quietly
verify() {
    local tool=$1 img=$2 opts=$3; shift 3
    local args=() c
    for c in "$@"; do args+=(-c "$c"); done
    local out
    out=$("$tool" $opts "${args[@]}" "$img" 2>&1)
    local rc=$?
    if [ $rc -eq 0 ] && ! echo "$out" | grep -q "failed"; then return 0; fi
    echo "$out"; return 1
}

writes=('write -P 0x11 0 64k' 'write -P 0x22 100k 3k' 'write -P 0x33 1M 1M'
        'writev -P 0x44 3M 512 1k 4k' 'write -z 1M 64k' 'write -z -u 1600k 128k'
        'aio_write -P 0x55 5M 4k')
reads=('read -q -P 0x11 0 64k' 'read -q -P 0 64k 36k' 'read -q -P 0x22 100k 3k'
       'read -q -P 0 1M 64k' 'read -q -P 0x33 1088k 512k' 'read -q -P 0 1600k 128k'
       'read -q -P 0x33 1728k 320k' 'read -q -P 0x44 3M 5632' 'read -q -P 0x55 5M 4k'
       'read -q -P 0 6M 2M')

roundtrip() {
    local fmt=$1 name=$2
    local img=$TMP/rt-$name
    qemu-img create -q -f $fmt $3 "$img" 8M
    ok "$name: calf-io writes" verify "$CALF_IO" "$img" "-f $fmt" "${writes[@]}"
    ok "$name: qemu-io reads calf's data" verify qemu-io "$img" "-f $fmt" "${reads[@]}"
    ok "$name: calf-io reads its own data" verify "$CALF_IO" "$img" "-f $fmt" "${reads[@]}"
    local img2=$TMP/rt2-$name
    qemu-img create -q -f $fmt $3 "$img2" 8M
    ok "$name: qemu-io writes" verify qemu-io "$img2" "-f $fmt" "${writes[@]}"
    ok "$name: calf-io reads qemu's data" verify "$CALF_IO" "$img2" "-f $fmt" "${reads[@]}"
    is "$(qemu-img compare -f $fmt -F $fmt "$img" "$img2" 2>&1)" "Images are identical." \
       "$name: both images hold the same data"
    # a wrong pattern must be caught: the check can fail
    ok "$name: a wrong pattern is reported" bash -c \
       "'$CALF_IO' -f $fmt -c 'read -P 0x12 0 64k' '$img' | grep -q 'Pattern verification failed at offset 0, 65536 bytes'"
    if [ "$fmt" = qcow2 ]; then
        ok "$name: qemu-img check after calf-io" qemu-img check -q "$img"
    fi
}

roundtrip raw raw ""
driver_check qcow2
roundtrip qcow2 qcow2 ""
roundtrip qcow2 qcow2-v2-512 "-o compat=0.10,cluster_size=512"
roundtrip qcow2 qcow2-sub "-o extended_l2=on"
# overlay over a qcow2 base: reads fall through, writes stay on top
qemu-img create -q -f qcow2 "$TMP/base.qcow2" 8M
qemu-io -c 'write -P 0x66 0 1M' "$TMP/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$TMP/top.qcow2"
ok "overlay: calf-io writes over the backing file" verify "$CALF_IO" "$TMP/top.qcow2" "" \
   'write -P 0x77 64k 4k' 'write -z 128k 64k' 'read -q -P 0x66 0 64k'
ok "overlay: qemu-io sees both layers" verify qemu-io "$TMP/top.qcow2" "" \
   'read -q -P 0x66 0 64k' 'read -q -P 0x77 64k 4k' 'read -q -P 0x66 68k 60k' \
   'read -q -P 0 128k 64k' 'read -q -P 0x66 192k 832k'
ok "overlay: backing file untouched" verify qemu-io "$TMP/base.qcow2" "" 'read -q -P 0x66 0 1M'
ok "overlay: qemu-img check" qemu-img check -q "$TMP/top.qcow2"
done_testing
