#!/bin/bash
# calf-img amend against qemu-img amend on copies of the same images:
# compat both ways (zero clusters expanded on the way down, in snapshots
# too), lazy_refcounts, refcount_bits (the refcount structure rewritten),
# size, and qemu-img's errors for what cannot be amended.  After every
# calf amend qemu-img check is clean, the guest view and the format
# options match qemu-img's result.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
driver_check qcow2

clean() { ok "$1: qemu-img check clean" qemu-img check -q "$2"; }
same_view() { ok "$1: same guest view as qemu-img" qemu-img compare -q "$2" "$3"; }
fmtinfo() { qemu-img info -U "$1" | grep -E '^(virtual size|    compat|    lazy refcounts|    refcount bits|    extended l2)'; }

# amend_both DESC FILE OPTS: both tools amend their copy, successfully
amend_both() {
    local desc=$1 f=$2 o=$3
    local qout out
    qout=$(cd "$QDIR" && qemu-img amend -o "$o" "$f" 2>&1)
    local q=$?
    out=$(cd "$CDIR" && "$CALF_IMG" amend -o "$o" "$f" 2>&1)
    local c=$?
    if [ $q = 0 ]; then
        is "$c" 0 "$desc: amended"
        [ -n "$out" ] && fail "$desc: no output" "$out"
    else # refused by both, with the same message (a cluster shared 16 times...)
        is "$(echo "$out" | filter_names)" "$qout" "$desc: refused like qemu-img"
    fi
    clean "$desc" "$CDIR/$f"
    same_view "$desc" "$CDIR/$f" "$QDIR/$f"
    is "$(fmtinfo "$CDIR/$f")" "$(fmtinfo "$QDIR/$f")" "$desc: same format options"
}

mkimg() { # OPTS [snapshot]
    rm -f "$QDIR"/* "$CDIR"/*
    in_both qemu-img create -q -f qcow2 base.qcow2 64M
    in_both qemu-io -c 'write -P 7 0 64M' base.qcow2
    in_both qemu-img create -q -f qcow2 $1 a.qcow2 64M
    in_both qemu-img create -q -f qcow2 $1 -b base.qcow2 -F qcow2 t.qcow2
    for f in a.qcow2 t.qcow2; do
        in_both qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 5 2M 64k' -c 'write -z 4M 128k' \
            -c 'write -P 3 30M 4M' -c 'write -P 6 8M 64k' -c 'write -z 8M 64k' \
            -c 'write -z -u 12M 64k' $f
        if [ -n "$2" ]; then
            in_both qemu-img snapshot -c s $f
            in_both qemu-io -c 'write -z 0 64k' -c 'write -P 8 30M 64k' -c 'write -z 16M 64k' $f
        fi
    done
}

for opts in "-o compat=1.1" "-o lazy_refcounts=on" "-o cluster_size=4k" "-o compat=0.10"; do
    for sn in "" snapshot; do
        for f in a.qcow2 t.qcow2; do
            p="[$opts${sn:+ +snapshot} $f]"
            mkimg "$opts" $sn
            amend_both "$p compat=0.10" $f compat=0.10
            ok "$p data after the downgrade" qemu-io -c 'read -P 1 64k 960k' -c 'read -P 0 4M 128k' \
                -c 'read -P 0 8M 64k' -c 'read -P 3 31M 64k' -c 'read -P 5 2M 64k' "$CDIR/$f"
            amend_both "$p compat=1.1" $f compat=1.1
            amend_both "$p lazy_refcounts=on" $f lazy_refcounts=on
            in_both qemu-io -c 'write -P 9 40M 1M' $f
            amend_both "$p lazy_refcounts=off" $f lazy_refcounts=off
            for rb in 1 8 64 16; do
                if [ -n "$sn" ] && [ $rb = 1 ]; then continue; fi
                amend_both "$p refcount_bits=$rb" $f refcount_bits=$rb
            done
            amend_both "$p size=128M" $f size=128M
            amend_both "$p size=40M" $f size=40M
            if [ -n "$sn" ]; then
                in_both qemu-img snapshot -a s $f
                clean "$p snapshot applied after the amends" "$CDIR/$f"
                same_view "$p snapshot applied after the amends" "$CDIR/$f" "$QDIR/$f"
            fi
        done
    done
done

# several options at once, applied in qemu's order
mkimg ""
amend_both "compat=0.10 with lazy refcounts on" a.qcow2 lazy_refcounts=on
amend_both "compat=0.10,size=100M" a.qcow2 compat=0.10,size=100M
amend_both "compat=1.1,refcount_bits=4,lazy_refcounts=on" a.qcow2 compat=1.1,refcount_bits=4,lazy_refcounts=on

# what cannot be amended, and bad values
mkimg ""
in_both qemu-img create -q -f qcow2 -o refcount_bits=8 r8.qcow2 1M
in_both qemu-img create -q -f qcow2 -o extended_l2=on x.qcow2 1M
in_both qemu-img create -q -f raw r.raw 1M
in_both qemu-img snapshot -c s a.qcow2
for o in cluster_size=4k encryption=on preallocation=full extended_l2=on compression_type=zstd \
         bogus=1 compat=0.9 refcount_bits=3 refcount_bits=1 lazy_refcounts=maybe \
         compat=0.10,refcount_bits=8 compat=0.10,lazy_refcounts=on backing_file=other.qcow2 \
         data_file=x size=foo; do
    same_img "amend -o $o" amend -o $o a.qcow2
done
same_img "compat=0.10 with 8-bit refcounts" amend -o compat=0.10 r8.qcow2
same_img "compat=0.10 with extended L2" amend -o compat=0.10 x.qcow2
same_img "raw" amend -f raw -o size=2M r.raw
same_img "no -o" amend a.qcow2
same_img "no file" amend -o compat=1.1
same_img "missing file" amend -o compat=1.1 nonexist.qcow2
clean "after the refused amends" "$CDIR/a.qcow2"
same_view "after the refused amends" "$CDIR/a.qcow2" "$QDIR/a.qcow2"

# progress
out=$("$CALF_IMG" amend -p -o compat=0.10 "$CDIR/t.qcow2" | od -An -c | tr -d ' \n')
case $out in "(0.00/100%)\r"*"(100.00/100%)\r\n") pass "amend -p progress" ;;
*) fail "amend -p progress" "$out" ;; esac

# refcount_bits with -p: real steps while the refcounts are counted and the
# new structure is written, rising to 100
in_both qemu-img create -q -f qcow2 -o cluster_size=4k p.qcow2 64M
in_both qemu-io -c 'write -P 3 0 64M' p.qcow2
steps=$("$CALF_IMG" amend -p -o refcount_bits=8 "$CDIR/p.qcow2" | tr '\r' '\n' |
        sed -n 's/^ *(\([0-9.]*\)\/100%)$/\1/p')
nsteps=$(sort -un <<<"$steps" | wc -l)
if [ "$nsteps" -ge 10 ] && [ "$(sort -n <<<"$steps")" = "$steps" ] &&
   [ "$(tail -n1 <<<"$steps")" = 100.00 ]; then
    pass "refcount_bits -p: $nsteps rising steps to 100%"
else
    fail "refcount_bits -p: rising steps to 100%" "$steps"
fi
clean "refcount_bits -p" "$CDIR/p.qcow2"
in_both qemu-img amend -o refcount_bits=8 p.qcow2
is "$(fmtinfo "$CDIR/p.qcow2")" "$(fmtinfo "$QDIR/p.qcow2")" "refcount_bits -p: same format options"

# backing_file/backing_fmt: qemu-img 7.2 refuses every change (also a name
# or a format given alone) and accepts both given as they are
mkimg ""
for o in backing_file=base.qcow2 backing_fmt=qcow2 backing_file=base.qcow2,backing_fmt=qcow2 \
         backing_file=base.qcow2,backing_fmt=raw backing_file=other.qcow2,backing_fmt=qcow2 \
         backing_file= backing_file=,backing_fmt= backing_fmt=raw; do
    same_img "amend -o $o, on a backing file" amend -o "$o" t.qcow2
    same_img "amend -o $o, standalone" amend -o "$o" a.qcow2
done
binfo() { qemu-img info -U "$1" | grep backing | sed 's/ (actual path.*//'; }
is "$(binfo "$CDIR/t.qcow2")" "$(binfo "$QDIR/t.qcow2")" "backing link as qemu-img leaves it"
clean "after the backing amends" "$CDIR/t.qcow2"

done_testing
