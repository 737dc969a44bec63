#!/bin/bash
# Four threads read, write (4 KiB-aligned and not), zero, discard and
# flush one image at once, on their own ranges and on shared ones, and a
# model of a disk (tests/unit/blk-stress.c) accepts only what a real disk
# may return for concurrent requests.  Every image layout: cluster sizes
# 512 B to 2 MiB, extended L2, raw and qcow2 backing files (one ending
# part-way through a cluster), compressed clusters, clusters shared with
# an internal snapshot, lazy refcounts, version 2, encryption,
# cache=writeback and cache=none, qcow v1 and raw, a qcow2 image stored
# in a qcow2 node that grows under the writers and raw over a qcow2 node
# (block/proto.c), and a qcow2 image over a quorum of three files.
# After each run
# qemu-img check judges the image and qemu-img compare reads back what
# calf read at the end.  BLK_STRESS_RUNS=N runs each layout N times with
# new seeds (the soak of `make test-slow`); BLK_STRESS_OPS sets the
# requests per thread.  A failure keeps its evidence: the seed, the
# command and the first lines of what went wrong go to stderr too (prove
# shows them without -v), and the image, its starting content and the
# whole output are kept in a blk-stress-fail.* directory under
# $BLK_STRESS_KEEP (default: $TMPDIR or /tmp), named on stderr.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
STRESS=$CALF_BUILD/tests/blk-stress
[ -x "$STRESS" ] || skip_all "blk-stress is not built"
RUNS=${BLK_STRESS_RUNS:-1}
OPS=${BLK_STRESS_OPS:-1000}
SEED0=${BLK_STRESS_SEED:-$(date +%s)}
echo "# seeds from $SEED0"

# O_DIRECT needs a filesystem that has it (not tmpfs)
direct=yes
dd if=/dev/zero of="$TMP/d" bs=4096 count=1 oflag=direct 2>/dev/null || direct=no

head -c 4M /dev/urandom > "$TMP/base.raw"
head -c 1052672 /dev/urandom > "$TMP/short.raw"   # 1 MiB + 4 KiB: ends inside a cluster
qemu-img convert -q -f raw -O qcow2 "$TMP/short.raw" "$TMP/short.qcow2"

# stress_fail DESC SEED OUT [FILE...]: one failed test, DESC, with the
# command that ran and OUT as diagnostics; the first lines of it on
# stderr as well, and FILE... and OUT kept out of $TMP
stress_fail() {
    local desc=$1 seed=$2 out=$3 keep f; shift 3
    keep=$(mktemp -d "${BLK_STRESS_KEEP:-${TMPDIR:-/tmp}}/blk-stress-fail.XXXXXX" 2>/dev/null)
    if [ -n "$keep" ]; then
        for f in "$@"; do [ -f "$f" ] && cp "$f" "$keep/"; done
        printf '%s\n%s\n' "$cmd" "$out" > "$keep/output"
    fi
    fail "$desc" "$(printf 'command: %s\n%s' "$cmd" "$out")"
    {
        echo "# blk-stress.t: $desc"
        echo "#   seed $seed, $OPS requests per thread; command: $cmd"
        head -n 40 <<<"$out" | sed 's/^/#   /'
        [ -n "$keep" ] && echo "#   image, starting content and whole output kept in $keep"
    } >&2
}

# layout NAME FORMAT SIZE SETUP [blk-stress options]: SETUP makes $img
# and sets $init (what the disk holds at the start, "" for zeros)
layout() {
    local name=$1 fmt=$2 size=$3 setup=$4; shift 4
    local run seed out cmd
    for run in $(seq 1 "$RUNS"); do
        seed=$((SEED0 + run))
        img=$TMP/img.$fmt init=
        rm -f "$img"
        eval "$setup"
        local iopt=()
        [ -n "$init" ] && iopt=(-i "$init")
        cmd="$STRESS -s $seed -n $OPS -f $fmt ${iopt[*]} -o $TMP/final.raw $* $img"
        if out=$("$STRESS" -s $seed -n "$OPS" -f "$fmt" "${iopt[@]}" -o "$TMP/final.raw" "$@" "$img" 2>&1); then
            [ "$RUNS" = 1 ] && pass "$name: every read allowed by the model (seed $seed)"
        else
            stress_fail "$name: a read the model does not allow (seed $seed)" $seed "$out" \
                "$img" "$init"
            return
        fi
        local chk=(qemu-img check -q "$img") cmp=(qemu-img compare -q -f raw -F "$fmt" "$TMP/final.raw" "$img")
        if [ "$fmt" = qcow2 ] && [ -n "$KEY" ]; then
            chk=(qemu-img check -q --object secret,id=s0,data=$KEY --image-opts
                 "driver=qcow2,file.filename=$img,encrypt.key-secret=s0")
            cmp=(qemu-img compare -q --object secret,id=s0,data=$KEY --image-opts
                 "driver=raw,file.filename=$TMP/final.raw"
                 "driver=qcow2,file.filename=$img,encrypt.key-secret=s0")
        fi
        if [ -n "$NEST" ]; then
            # the image is a node over a node: both are checked, and the
            # data read through the same nesting
            local node="driver=$fmt,file.driver=$NEST,file.file.filename=$img"
            chk=(qemu-img check -q --image-opts "$node")
            cmp=(qemu-img compare -q --image-opts "driver=raw,file.filename=$TMP/final.raw" "$node")
            if ! out=$(qemu-img check -q "$img" 2>&1); then
                stress_fail "$name: qemu-img check of the outer image (seed $seed)" $seed "$out" \
                    "$img" "$init"
                return
            fi
        fi
        if [ "$fmt" = qcow2 ] && ! out=$("${chk[@]}" 2>&1); then
            stress_fail "$name: qemu-img check (seed $seed)" $seed "$out" "$img" "$init"; return
        fi
        if ! out=$("${cmp[@]}" 2>&1); then
            stress_fail "$name: qemu-img reads what calf read (seed $seed)" $seed "$out" \
                "$img" "$init" "$TMP/final.raw"
            return
        fi
    done
    if [ "$RUNS" = 1 ]; then pass "$name: qemu-img check clean, qemu-img compare agrees"
    else pass "$name: $RUNS runs, every read allowed, check clean, compare agrees"; fi
}

Q="qemu-img create -q -f qcow2"
KEY= NEST=
for cs in 512 4k 64k 2M; do
    size=8M; [ $cs = 2M ] && size=16M
    layout "qcow2 cluster_size=$cs" qcow2 $size "$Q -o cluster_size=$cs \$img $size"
done
layout "qcow2 extended_l2=on" qcow2 8M "$Q -o extended_l2=on \$img 8M"
layout "qcow2 extended_l2=on, 512 B subclusters" qcow2 8M "$Q -o extended_l2=on,cluster_size=16k \$img 8M"
layout "qcow2 over a raw backing file" qcow2 4M \
    "$Q -b $TMP/base.raw -F raw \$img 4M; init=$TMP/base.raw"
layout "qcow2 over a qcow2 backing file ending inside a cluster" qcow2 4M \
    "$Q -b $TMP/short.qcow2 -F qcow2 \$img 4M; init=$TMP/short.raw"
layout "extended L2 over a backing file ending inside a cluster" qcow2 4M \
    "$Q -o extended_l2=on -b $TMP/short.qcow2 -F qcow2 \$img 4M; init=$TMP/short.raw"
layout "compressed clusters" qcow2 4M \
    "qemu-img convert -q -c -f raw -O qcow2 $TMP/base.raw \$img; init=$TMP/base.raw"
layout "clusters shared with a snapshot" qcow2 4M \
    "qemu-img convert -q -f raw -O qcow2 -o cluster_size=4k $TMP/base.raw \$img; qemu-img snapshot -c s1 \$img; init=$TMP/base.raw"
layout "lazy refcounts" qcow2 8M "$Q -o lazy_refcounts=on \$img 8M"
layout "compat=0.10 over a backing file" qcow2 4M \
    "$Q -o compat=0.10 -b $TMP/base.raw -F raw \$img 4M; init=$TMP/base.raw"
layout "qcow v1" qcow 4M "qemu-img create -q -f qcow \$img 4M"
layout "qcow v1 over a backing file" qcow 4M \
    "qemu-img create -q -f qcow -b $TMP/base.raw -F raw \$img 4M; init=$TMP/base.raw"
layout "raw" raw 4M "truncate -s 4M \$img"
# format over format (block/proto.c): the inner image's host file is a
# qcow2 node, which grows under the writers (it starts as small as the
# inner image's bytes); and raw over a qcow2 node
NEST=qcow2
layout "qcow2 stored in a qcow2 node (driver=qcow2,file.driver=qcow2)" qcow2 4M \
    "qemu-img create -q -f qcow2 -o cluster_size=4k $TMP/inner.qcow2 4M; qemu-img convert -q -f raw -O qcow2 -o cluster_size=4k $TMP/inner.qcow2 \$img" -F qcow2
layout "raw over a qcow2 node (driver=raw,file.driver=qcow2)" raw 4M \
    "$Q -o cluster_size=4k \$img 4M" -F qcow2
NEST=
# qcow2 over a quorum of three files (block/quorum.c): afterwards every
# child is the same file, a clean qcow2 image of what calf read
quorum_layout() {
    local run seed out c j cmd
    for run in $(seq 1 "$RUNS"); do
        seed=$((SEED0 + run))
        for c in a b c; do
            rm -f "$TMP/q$c.qcow2"; qemu-img create -q -f qcow2 -o cluster_size=4k "$TMP/q$c.qcow2" 4M
        done
        j="json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':2,'children':["
        j+="{'driver':'file','filename':'$TMP/qa.qcow2'},{'driver':'file','filename':'$TMP/qb.qcow2'},"
        j+="{'driver':'file','filename':'$TMP/qc.qcow2'}]}}"
        cmd="$STRESS -s $seed -n $OPS -f qcow2 -o $TMP/final.raw $j"
        if ! out=$("$STRESS" -s $seed -n "$OPS" -f qcow2 -o "$TMP/final.raw" "$j" 2>&1); then
            stress_fail "qcow2 over a quorum: a read the model does not allow (seed $seed)" $seed \
                "$out" "$TMP"/q[abc].qcow2
            return
        fi
        for c in a b c; do
            if ! out=$(qemu-img check -q "$TMP/q$c.qcow2" 2>&1 &&
                       qemu-img compare -q -f raw -F qcow2 "$TMP/final.raw" "$TMP/q$c.qcow2" 2>&1 &&
                       cmp "$TMP/qa.qcow2" "$TMP/q$c.qcow2" 2>&1); then
                stress_fail "qcow2 over a quorum: child $c (seed $seed)" $seed "$out" \
                    "$TMP"/q[abc].qcow2 "$TMP/final.raw"
                return
            fi
        done
    done
    pass "qcow2 over a quorum of three files: every read allowed, the children identical and clean"
}
quorum_layout
if [ $direct = yes ]; then
    layout "cache=none, qcow2 cluster_size=512" qcow2 4M "$Q -o cluster_size=512 \$img 4M" -N
    layout "cache=none, qcow2 cluster_size=4k over a backing file" qcow2 4M \
        "$Q -o cluster_size=4k -b $TMP/base.raw -F raw \$img 4M; init=$TMP/base.raw" -N
    layout "cache=none, qcow2 extended_l2=on" qcow2 4M "$Q -o extended_l2=on \$img 4M" -N
    layout "cache=none, raw" raw 4M "truncate -s 4M \$img" -N
    layout "cache=none, qcow v1" qcow 4M "qemu-img create -q -f qcow \$img 4M" -N
else
    for n in 1 2 3 4 5; do skip "this filesystem has no O_DIRECT" "cache=none"; done
fi
KEY=calf
layout "encrypted (aes), 4k clusters" qcow2 4M \
    "$Q --object secret,id=s0,data=calf -o encrypt.format=aes,encrypt.key-secret=s0,cluster_size=4k \$img 4M" -k calf
KEY=
done_testing
