#!/bin/bash
# calf-img resize against qemu-img resize: grow (L1 growth and relocation,
# preallocation modes, zeros over a longer backing file), --shrink (clusters
# past the end freed, file tail cut), raw images, and qemu-img's messages.
# After every calf resize qemu-img check is clean and the guest view is
# byte for byte what qemu-img's resize of a copy gives.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
driver_check qcow2

clean() { ok "$1: qemu-img check clean" qemu-img check -q "$2"; }
same_view() { ok "$1: same guest view as qemu-img" qemu-img compare -q "$2" "$3"; }
vsize() { qemu-img info --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }

# resize_both DESC FILE SIZE [OPTIONS...]: both tools resize their copy,
# successfully
resize_both() {
    local desc=$1 f=$2 size=$3; shift 3
    (cd "$QDIR" && qemu-img resize "$@" "$f" "$size" >/dev/null 2>&1)
    local q=$?
    (cd "$CDIR" && "$CALF_IMG" resize "$@" "$f" "$size" >"$TMP/out" 2>&1)
    local c=$?
    is "$c $q" "0 0" "$desc: both resized"
    clean "$desc" "$CDIR/$f"
    same_view "$desc" "$CDIR/$f" "$QDIR/$f"
    is "$(vsize "$CDIR/$f")" "$(vsize "$QDIR/$f")" "$desc: same virtual size"
}
# data DIR FILE: the same guest data in both copies
fill() {
    in_both qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 5 2M 64k' -c 'write -z 3M 64k' \
        -c 'write -P 3 30M 3M' -c 'write -P 4 60M 4M' "$1"
}

for opts in "cluster_size=64k" "cluster_size=4k" "compat=0.10" "lazy_refcounts=on" \
            "extended_l2=on"; do
    rm -f "$QDIR"/* "$CDIR"/*
    in_both qemu-img create -q -f qcow2 -o "$opts" g.qcow2 64M
    fill g.qcow2
    resize_both "[$opts] grow +64M" g.qcow2 +64M
    resize_both "[$opts] grow to 1G (L1 moves with 4k clusters)" g.qcow2 1G
    in_both qemu-io -c 'write -P 6 900M 1M' g.qcow2
    ok "[$opts] data written after the grow reads back" qemu-io -c 'read -P 6 900M 1M' \
        -c 'read -P 1 0 1M' "$CDIR/g.qcow2"
    resize_both "[$opts] shrink to 100M" g.qcow2 100M --shrink
    resize_both "[$opts] shrink to an unaligned size" g.qcow2 31000k --shrink
    resize_both "[$opts] grow back over the cut" g.qcow2 64M
    resize_both "[$opts] shrink to 1M" g.qcow2 1M --shrink
    resize_both "[$opts] shrink by 512k" g.qcow2 -512k --shrink
    ok "[$opts] what is left reads back" qemu-io -c 'read -P 1 0 512k' "$CDIR/g.qcow2"
    s=$(stat -c %s "$CDIR/g.qcow2"); qs=$(stat -c %s "$QDIR/g.qcow2")
    [ "$s" -le "$qs" ] && pass "[$opts] file not larger than qemu-img's ($s <= $qs)" ||
        fail "[$opts] file not larger than qemu-img's" "$s > $qs bytes"
done

# preallocation on grow
for p in off metadata falloc full; do
    rm -f "$QDIR"/* "$CDIR"/*
    in_both qemu-img create -q -f qcow2 p.qcow2 64M
    fill p.qcow2
    resize_both "preallocation=$p" p.qcow2 100M --preallocation=$p
done

# snapshots: v3 images resize, v2 images refuse
rm -f "$QDIR"/* "$CDIR"/*
in_both qemu-img create -q -f qcow2 sn.qcow2 64M
fill sn.qcow2
in_both qemu-img snapshot -c s sn.qcow2
resize_both "shrink under a snapshot" sn.qcow2 8M --shrink
resize_both "grow under a snapshot" sn.qcow2 128M
in_both qemu-img snapshot -a s sn.qcow2
same_view "snapshot applied after resizes" "$CDIR/sn.qcow2" "$QDIR/sn.qcow2"
clean "snapshot applied after resizes" "$CDIR/sn.qcow2"
# whole L2 tables shared with a snapshot dropped (2 MiB per table at 4k)
in_both qemu-img create -q -f qcow2 -o cluster_size=4k sn4.qcow2 64M
fill sn4.qcow2
in_both qemu-img snapshot -c s sn4.qcow2
resize_both "4k clusters: shrink under a snapshot" sn4.qcow2 3M --shrink
in_both qemu-img snapshot -a s sn4.qcow2
same_view "4k clusters: snapshot applied after the shrink" "$CDIR/sn4.qcow2" "$QDIR/sn4.qcow2"
clean "4k clusters: snapshot applied after the shrink" "$CDIR/sn4.qcow2"
in_both qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
in_both qemu-img snapshot -c s v2.qcow2
same_img "v2 image with snapshots" resize v2.qcow2 2M

# a longer backing file: the new area reads as zeros, not as its data
rm -f "$QDIR"/* "$CDIR"/*
in_both qemu-img create -q -f qcow2 b.qcow2 64M
in_both qemu-io -c 'write -P 7 0 64M' b.qcow2
in_both qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2 16M
resize_both "grow over a longer backing file" t.qcow2 40M
ok "the grown area reads zeros" qemu-io -c 'read -P 0 16M 24M' -c 'read -P 7 0 16M' "$CDIR/t.qcow2"
in_both qemu-img create -q -f qcow2 -o compat=0.10 -b b.qcow2 -F qcow2 t2.qcow2 16M
same_img "v2 image over a longer backing file: refused" resize t2.qcow2 40M
clean "v2 grow refused" "$CDIR/t2.qcow2"
same_view "v2 grow refused" "$CDIR/t2.qcow2" "$QDIR/t2.qcow2"

# raw
rm -f "$QDIR"/* "$CDIR"/*
in_both qemu-img create -q -f raw r.raw 1M
in_both qemu-io -f raw -c 'write -P 1 0 1M' r.raw
same_img "raw grow" resize -f raw r.raw 3M
same_img "raw shrink refused" resize -f raw r.raw 1M
same_img "raw shrink" resize -f raw --shrink r.raw 100000
is "$(stat -c %s "$CDIR/r.raw")" "$(stat -c %s "$QDIR/r.raw")" "raw: same file size"
same_img "raw preallocation=full" resize -f raw --preallocation=full r.raw 2M
ok "raw: same content" cmp "$CDIR/r.raw" "$QDIR/r.raw"

# messages
rm -f "$QDIR"/* "$CDIR"/*
in_both qemu-img create -q -f qcow2 m.qcow2 64M
same_img "shrink without --shrink" resize m.qcow2 32M
same_img "negative without --" resize m.qcow2 -1M
same_img "to zero" resize --shrink m.qcow2 0
same_img "below zero" resize --shrink m.qcow2 -- -1G
same_img "not a multiple of 512" resize m.qcow2 100000
same_img "bad preallocation" resize --preallocation=bogus m.qcow2 128M
same_img "preallocation when shrinking" resize --preallocation=full --shrink m.qcow2 1M
same_img "no size" resize m.qcow2
same_img "quiet" resize -q m.qcow2 +1M
same_img "missing file" resize nonexist 1M

done_testing
