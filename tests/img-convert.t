#!/bin/bash
# calf-img convert against qemu-img convert: every format pair (raw,
# qcow2, qcow) with and without -c, -S 0, -B, -n, several sources, zstd,
# odd sizes; the guest view of each target equals qemu-img's conversion,
# qemu-img check is clean on every qcow2 target, compressed images
# written by calf are read by qemu-io and the other way round; option
# errors and exit codes match qemu-img's.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

# a source with data, compressible data, written zeros, holes, an odd tail
qemu-img create -q -f qcow2 src.qcow2 65M
qemu-io -c 'write -P 1 0 1M' -c 'write -z 4M 1M' -c 'write -P 7 10M 300k' \
    -c 'write -P 0 20M 64k' -c 'write -P 9 33333333 5000' -c 'write -P 3 65009k 3k' \
    src.qcow2 >/dev/null
head -c 3000000 /dev/urandom > rnd
qemu-io -f raw -c 'write -P 5 0 1' rnd >/dev/null
qemu-img convert -O raw src.qcow2 src.raw
qemu-img convert -O qcow src.qcow2 src.qcow
qemu-img create -q -f raw odd.raw 1M
truncate -s 1000999 odd.raw
qemu-io -f raw -c 'write -P 8 999424 1000' odd.raw >/dev/null

check_target() { # desc fmt file
    if [ "$2" = qcow2 ]; then
        ok "$1: qemu-img check" qemu-img check -q "$3"
    fi
}

# convert DESC SRCFMT SRC OUTFMT ARGS...: calf and qemu-img, same guest view
conv() {
    local desc=$1 sf=$2 src=$3 of=$4; shift 4
    convert_like_qemu "$desc" "$of" -f "$sf" "$@" "$src" || return
    ok "$desc: same as the source" qemu-img compare -f "$sf" -F "$of" "$src" c.out
    check_target "$desc" "$of" c.out
}

for sf in raw qcow2 qcow; do
    for of in raw qcow2 qcow; do
        conv "$sf->$of" $sf src.$sf $of
        conv "$sf->$of -S 0" $sf src.$sf $of -S 0
        conv "$sf->$of -m 1" $sf src.$sf $of -m 1
        conv "$sf->$of -W -m 16" $sf src.$sf $of -W -m 16
        if [ $of != raw ]; then
            conv "$sf->$of -c" $sf src.$sf $of -c
        fi
    done
done
conv "qcow2 -c zstd" qcow2 src.qcow2 qcow2 -c -o compression_type=zstd
conv "qcow2 -c 4k clusters" qcow2 src.qcow2 qcow2 -c -o cluster_size=4k
conv "qcow2 -c 2M clusters" qcow2 src.qcow2 qcow2 -c -o cluster_size=2M
conv "qcow2 -c extended_l2" qcow2 src.qcow2 qcow2 -c -o extended_l2=on
conv "qcow2 -c refcount_bits=1" qcow2 src.qcow2 qcow2 -c -o refcount_bits=1
conv "qcow2 -c compat=0.10" qcow2 src.qcow2 qcow2 -c -o compat=0.10
conv "random data -c (stored plain)" raw rnd qcow2 -c
conv "odd size raw->qcow2 -c" raw odd.raw qcow2 -c
conv "odd size raw->qcow2" raw odd.raw qcow2
conv "-S 64k" qcow2 src.qcow2 qcow2 -S 64k
# a sparse raw source whose 4k data blocks share 64k units with holes,
# after chunks full of data: the buffers' old bytes must not leak in
head -c 20M /dev/zero | tr '\0' '\252' > sp.raw
truncate -s 40M sp.raw
cmds=(); for i in $(seq 0 79); do cmds+=(-c "write -P 7 $((20971520 + i * 262144 + 8192)) 4k"); done
qemu-io -f raw "${cmds[@]}" sp.raw >/dev/null
conv "sparse raw -S 64k" raw sp.raw qcow2 -S 64k
conv "sparse raw -S 64k to raw" raw sp.raw raw -S 64k

# the file is as sparse as qemu-img's
"$CALF_IMG" convert -O raw src.qcow2 c.raw
qemu-img convert -O raw src.qcow2 q.raw
is "$(du -k c.raw | cut -f1)" "$(du -k q.raw | cut -f1)" "raw target: same disk usage as qemu-img"

# several sources are concatenated
"$CALF_IMG" convert -O qcow2 src.qcow2 odd.raw src.qcow c.multi
qemu-img convert -O qcow2 src.qcow2 odd.raw src.qcow q.multi
ok "three sources: same as qemu-img" qemu-img compare c.multi q.multi
ok "three sources: qemu-img check" qemu-img check -q c.multi

# -n into an existing image (with stale data: zeros must be written)
qemu-img create -q -f qcow2 c.n 70M
qemu-io -c 'write -P 0xaa 0 70M' c.n >/dev/null
cp c.n q.n
"$CALF_IMG" convert -n -O qcow2 src.qcow2 c.n
qemu-img convert -n -O qcow2 src.qcow2 q.n
ok "-n: same as qemu-img" qemu-img compare c.n q.n
ok "-n: qemu-img check" qemu-img check -q c.n
# a raw target is written by all workers at once: stale data, 35 chunks
head -c 70M /dev/zero | tr '\0' '\252' > c.nr
cp c.nr q.nr
"$CALF_IMG" convert -n -O raw src.qcow2 c.nr
qemu-img convert -n -O raw src.qcow2 q.nr
ok "-n raw: same bytes as qemu-img" cmp c.nr q.nr

# -B: only what differs from the backing file is written
qemu-img create -q -f qcow2 base.qcow2 65M
qemu-io -c 'write -P 1 0 1M' -c 'write -P 0x55 30M 2M' base.qcow2 >/dev/null
"$CALF_IMG" convert -O qcow2 -B base.qcow2 -F qcow2 src.qcow2 c.b
qemu-img convert -O qcow2 -B base.qcow2 -F qcow2 src.qcow2 q.b
ok "-B: same guest view as qemu-img" qemu-img compare c.b q.b
ok "-B: same guest view as the source" qemu-img compare src.qcow2 c.b
ok "-B: qemu-img check" qemu-img check -q c.b
is "$(qemu-img info --output=json c.b | grep '"backing-filename"')" \
   "$(qemu-img info --output=json q.b | grep '"backing-filename"')" "-B: backing file name"
cmap=$(qemu-img map --output=json c.b | grep -c '"depth": 0, "present": true, "zero": false, "data": true')
[ "$cmap" -ge 1 ] && ! qemu-img map --output=json c.b | grep -q '"start": 0, "length": 1048576, "depth": 0' \
    && pass "-B: clusters equal to the backing file are not copied" \
    || fail "-B: clusters equal to the backing file are not copied" "$(qemu-img map --output=json c.b)"
# an overlay converted onto its own base: only the overlay's clusters
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2
qemu-io -c 'write -P 2 5M 1M' ov.qcow2 >/dev/null
"$CALF_IMG" convert -O qcow2 -B base.qcow2 -F qcow2 ov.qcow2 c.ob
ok "-B overlay: same guest view" qemu-img compare ov.qcow2 c.ob
is "$(qemu-img map --output=json c.ob | grep -c '"depth": 0, "present": true')" 1 \
   "-B overlay: only the overlay's data is in the target"
# a convert without -B flattens the chain
conv "overlay flattened" qcow2 ov.qcow2 qcow2

# compressed images: calf's read by qemu-io, qemu's read by calf
qemu-img create -q -f qcow2 pat.qcow2 8M
qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x22 3M 64k' -c 'write -P 0x33 5M 1M' pat.qcow2 >/dev/null
"$CALF_IMG" convert -c -O qcow2 pat.qcow2 c.comp
out=$(qemu-io -c 'read -P 0x11 0 3M' -c 'read -P 0x22 3M 64k' -c 'read -P 0 4M 1M' \
      -c 'read -P 0x33 5M 1M' c.comp 2>&1)
echo "$out" | grep -qi "fail\|error" && fail "qemu-io reads calf's compressed image" "$out" \
    || pass "qemu-io reads calf's compressed image"
is "$("$CALF_IMG" info --output=json c.comp 2>&1)" "$(qemu-img info --output=json c.comp 2>&1)" \
   "info works: calf-img info reads it as qemu-img info does"
# (qemu-img 7.2's map has no "compressed" field; its check counts them:
# every data cluster of pat.qcow2, a pattern, compresses)
j=$(qemu-img check --output=json c.comp 2>&1)
comp=$(sed -n 's/.*"compressed-clusters": \([0-9]*\).*/\1/p' <<<"$j")
alloc=$(sed -n 's/.*"allocated-clusters": \([0-9]*\).*/\1/p' <<<"$j")
[ -n "$comp" ] && [ "$comp" -gt 0 ] && [ "$comp" = "$alloc" ] &&
    pass "target clusters are compressed ($comp of $alloc)" ||
    fail "target clusters are compressed" "$j"
qemu-img convert -c -O qcow2 pat.qcow2 q.comp
out=$("$CALF_IO" -c 'read -P 0x11 0 3M' -c 'read -P 0x22 3M 64k' -c 'read -P 0 4M 1M' \
      -c 'read -P 0x33 5M 1M' q.comp 2>&1)
echo "$out" | grep -qi "fail\|error" && fail "calf-io reads qemu's compressed image" "$out" \
    || pass "calf-io reads qemu's compressed image"
# calf's compressed image, written again by qemu-io, stays consistent
qemu-io -c 'write -P 0x44 100k 8k' c.comp >/dev/null
ok "qemu-io overwrite of calf's compressed cluster: check" qemu-img check -q c.comp
out=$(qemu-io -c 'read -P 0x11 0 100k' -c 'read -P 0x44 100k 8k' -c 'read -P 0x11 108k 100k' c.comp 2>&1)
echo "$out" | grep -qi "fail\|error" && fail "data around the overwrite" "$out" || pass "data around the overwrite"

# -p prints qemu-img's progress lines
p=$("$CALF_IMG" convert -p -O raw src.qcow2 c.p | tr '\r' '\n' | grep -c '(100.00/100%)')
[ "$p" -ge 1 ] && pass "-p reaches 100%" || fail "-p reaches 100%"
is "$("$CALF_IMG" convert -p -O raw src.qcow2 c.p | head -c 16)" "    (0.00/100%)$(printf '\r')" "-p starts at 0.00"

# option errors and exit codes, as qemu-img
errcase() { # desc args...
    local desc=$1; shift
    rm -f e.out
    local a b
    a=$("$CALF_IMG" convert "$@" 2>&1; echo "rc=$?")
    rm -f e.out
    b=$(qemu-img convert "$@" 2>&1 | filter_names; echo "rc=${PIPESTATUS[0]}")
    is "$(echo "$a" | filter_names)" "$b" "error: $desc"
}
errcase "-c to raw" -O raw -c src.qcow2 e.out
errcase "-B to raw" -O raw -B src.qcow2 src.qcow2 e.out
errcase "-m 17" -m 17 -O raw src.qcow2 e.out
errcase "-S 100" -S 100 -O raw src.qcow2 e.out
errcase "--target-is-zero without -n" --target-is-zero -O raw src.qcow2 e.out
errcase "bad -o" -O qcow2 -o foo=1 src.qcow2 e.out
errcase "no such source" -O raw nonexist e.out
errcase "no target" -O raw src.qcow2
errcase "-n without target" -n -O raw src.qcow2 e.out
errcase "bad format" -O bogus src.qcow2 e.out
errcase "bad cache" -t foo -O raw src.qcow2 e.out
errcase "-B without -F" -O qcow2 -B base.qcow2 src.qcow2 e.out
# checked after the sources are open, the concatenation first (iotest 122)
errcase "-B with two sources" -O qcow2 -B src.qcow2 src.qcow2 src.qcow2 e.out
errcase "-B with two sources, one missing" -O qcow2 -B src.qcow2 src.qcow2 nonexist e.out
errcase "-c -B with two sources" -O qcow2 -c -B src.qcow2 src.qcow2 src.qcow2 e.out
qemu-img create -q -f raw small.raw 1M
a=$("$CALF_IMG" convert -n -O raw src.qcow2 small.raw 2>&1; echo "rc=$?")
is "$a" "calf-img: output file is smaller than input file
rc=1" "error: -n into a smaller target"
# -c -S 0 keeps the target fully allocated: zero clusters are written
# compressed too, as qemu-img does (iotest 122)
qemu-img create -q -f qcow2 s0.qcow2 8M
qemu-io -c 'write -P 0x22 0 1M' -c 'write -P 0 1M 1M' s0.qcow2 >/dev/null
"$CALF_IMG" convert -O qcow2 -c -S 0 s0.qcow2 s0c.qcow2
qemu-img convert -O qcow2 -c -S 0 s0.qcow2 s0q.qcow2
is "$(qemu-img map --output=json s0c.qcow2)" "$(qemu-img map --output=json s0q.qcow2)" \
    "-c -S 0: every cluster allocated, as with qemu-img"
ok "-c -S 0: the data reads back" qemu-img compare s0c.qcow2 s0.qcow2
done_testing
