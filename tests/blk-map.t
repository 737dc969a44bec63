#!/bin/bash
# Zero-copy reads: blk_map_read (tests/unit/blk-map.c) on raw and qcow2
# images, clusters in and out of order in the file, compressed clusters
# (never mapped), and with the file cut short under its mapping (no
# SIGBUS: those ranges come back unmapped).  Then calf-img convert, which
# reads data that way, on sources whose mapped and unmapped parts meet
# inside an -S unit and on concatenated sources meeting inside one,
# against qemu-img's own conversion.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
MAP=$CALF_BUILD/tests/blk-map
[ -x "$MAP" ] || skip_all "$MAP is not built"
cd "$TMP" || exit 1

# 512-byte clusters written out of order: the file holds them scattered
qemu-img create -q -f qcow2 -o cluster_size=512 small.qcow2 4M
for k in 7 3 11 5 2 9 64 65 66 100 200 3000 1 4095; do
    qemu-io -f qcow2 -c "write -P $((k % 250 + 1)) $((k * 1024)) 1536" small.qcow2 >/dev/null
done
qemu-io -f qcow2 -c "write -z 66k 1k" small.qcow2 >/dev/null
qemu-img create -q -f qcow2 big.qcow2 8M
qemu-io -f qcow2 -c "write -P 7 0 1M" -c "write -P 9 3M 1M" -c "write -P 0 5M 64k" big.qcow2 >/dev/null
truncate -s 2M r.raw
qemu-io -f raw -c "write -P 7 4096 100000" -c "write -P 9 1048576 8192" r.raw >/dev/null
qemu-img convert -c -O qcow2 big.qcow2 comp.qcow2

# map_check NAME: the unit test on a copy of NAME (it cuts the file)
map_check() {
    cp "$1" "m.$1"
    "$MAP" "m.$1" >map.out 2>&1
    local i=0
    while read -r line; do
        case $line in
        "ok "*) i=$((i + 1)); pass "$1: ${line#ok [0-9] - }" ;;
        "not ok "*) i=$((i + 1)); fail "$1: ${line#not ok [0-9] - }" "$(cat map.out)" ;;
        esac
    done <map.out
    [ $i = 2 ] || fail "$1: blk-map ran both checks" "$(cat map.out)"
}
for f in r.raw small.qcow2 big.qcow2 comp.qcow2; do
    map_check $f
done
# the bytes mapped of the whole image, before the cut (check 1: after the
# cut nothing of comp.qcow2 is readable, its L1 table lies past the cut)
mapped_whole() { sed -n 's/^\(not \)\{0,1\}ok 1 - .*(\([-0-9]*\) bytes mapped.*/\2/p' "$1"; }
is "$(mapped_whole map.out)" 0 "compressed clusters are never mapped"
cp big.qcow2 m2.qcow2
"$MAP" m2.qcow2 >map2.out 2>&1
n=$(mapped_whole map2.out)
[ "${n:-0}" -gt 0 ] && pass "plain clusters are ($n bytes)" || fail "plain clusters are" "$(cat map2.out)"

# convert DESC SRC OUTFMT ARGS...: calf and qemu-img, same guest view
conv() {
    local desc=$1 of=$3; shift 3
    convert_like_qemu "$desc" "$of" "$@" || return
    [ "$of" = qcow2 ] && ok "$desc: qemu-img check" qemu-img check -q c.out
}
for s in 4k 512 0 8k; do
    for of in raw qcow2; do
        conv "512-byte clusters -S $s -> $of" small.qcow2 $of -S $s small.qcow2
        conv "raw -S $s -> $of" r.raw $of -S $s -f raw r.raw
    done
done
# three sources meeting at 1536 and 3584 bytes, inside 4 KiB units
qemu-img create -q -f qcow2 -o cluster_size=512 a.qcow2 1536
qemu-io -f qcow2 -c "write -P 5 512 512" a.qcow2 >/dev/null
qemu-img create -q -f raw b.raw 2048
qemu-io -f raw -c "write -P 6 0 1024" b.raw >/dev/null
for of in raw qcow2; do
    conv "three sources -> $of" a.qcow2 $of a.qcow2 b.raw small.qcow2
done

done_testing
