#!/bin/bash
# calf-img commit against qemu-img commit on copies of the same chain:
# default base, -d, -b (top or middle layer), a smaller base that grows,
# zero and compressed clusters, -p progress and qemu-img's messages.
# After every commit each layer is clean under qemu-img check and reads
# byte for byte like qemu-img's result.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
driver_check qcow2

clean() { ok "$1: qemu-img check clean" qemu-img check -q "$2"; }
same_view() { ok "$1: same guest view as qemu-img" qemu-img compare -q "$2" "$3"; }

mkchain() { # OPTS
    rm -f "$QDIR"/* "$CDIR"/*
    in_both qemu-img create -q -f qcow2 -o "$1" base.qcow2 32M
    in_both qemu-io -c 'write -P 1 0 4M' -c 'write -P 11 20M 1M' base.qcow2
    in_both qemu-img create -q -f qcow2 -o "$1" -b base.qcow2 -F qcow2 mid.qcow2 64M
    in_both qemu-io -c 'write -P 2 1M 1M' -c 'write -z 3M 64k' -c 'write -P 9 40M 64k' mid.qcow2
    in_both qemu-img create -q -f qcow2 -o "$1" -b mid.qcow2 -F qcow2 top.qcow2
    in_both qemu-io -c 'write -P 3 1536k 1M' -c 'write -c -P 4 8M 64k' -c 'write -z 0 64k' \
        -c 'write -P 5 62M 2M' -c 'write -z 20M 512k' top.qcow2
}

for opts in "compat=1.1" "compat=0.10" "cluster_size=4k" "extended_l2=on"; do
    for args in "" "-d" "-b base.qcow2" "-b mid.qcow2"; do
        d="[$opts] commit $args"
        mkchain "$opts"
        qemu-img convert -O raw "$CDIR/top.qcow2" "$TMP/before.raw"
        (cd "$QDIR" && qemu-img commit -q $args top.qcow2)
        out=$(cd "$CDIR" && "$CALF_IMG" commit $args top.qcow2 2>&1)
        is "$out" "Image committed." "$d: output"
        for f in base mid top; do
            clean "$d: $f" "$CDIR/$f.qcow2"
            same_view "$d: $f" "$CDIR/$f.qcow2" "$QDIR/$f.qcow2"
        done
        ok "$d: the top still reads as before" qemu-img compare -q "$CDIR/top.qcow2" "$TMP/before.raw"
    done
done
# the committed data read back through qemu-io from the base
mkchain compat=1.1
"$CALF_IMG" commit -q -b "$CDIR/base.qcow2" "$CDIR/top.qcow2"
ok "base holds the top's data" qemu-io -c 'read -P 3 1536k 1M' -c 'read -P 4 8M 64k' \
    -c 'read -P 5 62M 2M' -c 'read -P 0 0 64k' -c 'read -P 9 40M 64k' "$CDIR/base.qcow2"
is "$(qemu-img info "$CDIR/base.qcow2" | grep 'virtual size')" \
    "virtual size: 64 MiB (67108864 bytes)" "the smaller base grew to the top's size"

# emptied top: smaller file, nothing allocated
mkchain compat=1.1
"$CALF_IMG" commit -q "$CDIR/top.qcow2"
is "$(qemu-img map --output=json "$CDIR/top.qcow2" | grep -c '"depth": 0')" 0 \
    "commit without -d leaves nothing allocated in the top"
s=$(stat -c %s "$CDIR/top.qcow2")
[ "$s" -le 327680 ] && pass "emptied top is small ($s bytes)" || fail "emptied top is small" "$s"

# snapshots in the top survive the emptying
mkchain compat=1.1
in_both qemu-img snapshot -c s top.qcow2
(cd "$QDIR" && qemu-img commit -q top.qcow2); (cd "$CDIR" && "$CALF_IMG" commit -q top.qcow2)
clean "commit with a snapshot in the top" "$CDIR/top.qcow2"
in_both qemu-img snapshot -a s top.qcow2
same_view "snapshot applied after commit" "$CDIR/top.qcow2" "$QDIR/top.qcow2"

# progress: qemu-img's "    (x.xx/100%)\r" lines, ending with 100 and a newline
mkchain compat=1.1
out=$(cd "$CDIR" && "$CALF_IMG" commit -p top.qcow2 | od -An -c | tr -d ' \n')
case $out in "(0.00/100%)\r"*"(100.00/100%)\r\nImagecommitted.\n") pass "commit -p progress" ;;
*) fail "commit -p progress" "$out" ;; esac

# messages
mkchain compat=1.1
same_img "no backing file" commit base.qcow2
same_img "base not in the chain" commit -b nope.qcow2 top.qcow2
same_img "no file" commit
same_img "missing file" commit nonexist.qcow2
same_img "quiet" commit -q -d top.qcow2

# -b from another directory: a relative base is relative to the overlays
# (as their backing names are), not to the working directory
for d in "$QDIR" "$CDIR"; do
    rm -rf "$d/sub" && mkdir "$d/sub"
    (cd "$d" && qemu-img create -q -f qcow2 sub/b.qcow2 1M &&
        qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 sub/m.qcow2 &&
        qemu-img create -q -f qcow2 -b m.qcow2 -F qcow2 sub/t.qcow2 &&
        qemu-io -c 'write -P 7 0 64k' sub/t.qcow2 >/dev/null)
done
same_img "-b relative to the overlay" commit -b m.qcow2 sub/t.qcow2
ok "the data reached the middle layer" qemu-io -c 'read -P 7 0 64k' "$CDIR/sub/m.qcow2"
same_img "-b relative to the working directory" commit -b sub/m.qcow2 sub/t.qcow2
is "$(cd "$CDIR" && "$CALF_IMG" commit -b "$CDIR/sub/m.qcow2" sub/t.qcow2 2>&1)" \
    "Image committed." "-b absolute from elsewhere"
same_img "-b relative to the image file under blkdebug" commit -b m.qcow2 blkdebug::sub/t.qcow2

done_testing
