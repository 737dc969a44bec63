#!/bin/bash
# qemu-img check, map and write-zeroes as QEMU does them, on real images:
# each damaged or written image is made once and copied to both
# directories, then calf-img and qemu-img (calf-io and qemu-io) must
# print the same, exit the same and leave images that read the same.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 49

# poke FILE OFFSET HEX...: writes bytes at an offset
poke() {
    local f=$1 off=$2; shift 2
    printf "$(printf '\\x%s' "$@")" | dd of="$f" bs=1 seek=$((off)) conv=notrunc status=none
}
# twin NAME: the image $TMP/NAME copied into both directories
twin() { cp "$TMP/$1" "$QDIR/$1" && cp "$TMP/$1" "$CDIR/$1"; }
# same_file DESC NAME: both copies read the same as qemu-img sees them
same_file() {
    ok "$1" qemu-img compare -q "$QDIR/$2" "$CDIR/$2"
}

# ---- check: the region rule, the report-then-repair order ----
# 64 KiB clusters: refblock at 0x20000 (16-bit entries), L1 at 0x30000,
# L2 at 0x40000, data from 0x50000
mk() {
    qemu-img create -q -f qcow2 "$TMP/$1" 64M &&
        qemu-io -c "write -P 0x5a 0 128k" "$TMP/$1" >/dev/null
}

# an L2 entry pointing a whole cluster and more past the end of the file
qemu-img create -q -f qcow2 -o cluster_size=512 "$TMP/far.qcow2" 512
qemu-io -c "write 0 512" "$TMP/far.qcow2" >/dev/null
poke "$TMP/far.qcow2" $((2048 + 8)) 00 80 00 00 00 00 00 00
twin far.qcow2
same_img "check: reference past the end of the file" check far.qcow2

# a leak (the header's refcount 2) and a COPIED flag missing from the L1 entry
mk leak.qcow2
poke "$TMP/leak.qcow2" $((0x20000)) 00 02
poke "$TMP/leak.qcow2" $((0x30000)) 00
twin leak.qcow2
same_img "check: leak and COPIED reported" check leak.qcow2
same_img "check -r leaks: leak listed, then repaired" check -r leaks leak.qcow2
same_img "check -r all: the rest repaired" check -r all --output=json leak.qcow2
same_file "check -r all: same image as qemu-img's" leak.qcow2

# a refcount too low but not zero (the second data cluster): repaired in place
mk low.qcow2
qemu-img snapshot -c s1 "$TMP/low.qcow2"
poke "$TMP/low.qcow2" $((0x20000 + 2 * 6)) 00 01
twin low.qcow2
same_img "check: refcount below the references" check low.qcow2
same_img "check -r all: repaired in place" check -r all low.qcow2
same_file "check -r all: same image as qemu-img's (low refcount)" low.qcow2

# a used cluster with refcount 0: only a rebuild repairs that, which
# -r leaks must refuse
mk zero.qcow2
poke "$TMP/zero.qcow2" $((0x20000 + 2 * 5)) 00 00
twin zero.qcow2
same_img "check: referenced cluster without a refcount" check zero.qcow2
same_img "check -r leaks: needs a rebuild, check fails" check -r leaks zero.qcow2
same_img "check -r all: rebuilt, the old structure repaired as a leak" check -r all zero.qcow2
# the same header: the new refcount table where qemu-img puts it
ok "check -r all: the rebuilt structure is where qemu-img puts it" \
    cmp -n 104 "$QDIR/zero.qcow2" "$CDIR/zero.qcow2"
same_file "check -r all: the rebuilt image reads the same" zero.qcow2
# the same damage on a dirty image (lazy refcounts): opening it for
# writing repairs it the same way, and says so
qemu-img create -q -f qcow2 -o lazy_refcounts=on "$TMP/dirty.qcow2" 64M
qemu-io -c "write -P 0x5a 0 128k" "$TMP/dirty.qcow2" >/dev/null
poke "$TMP/dirty.qcow2" 72 00 00 00 00 00 00 00 01
poke "$TMP/dirty.qcow2" $((0x20000 + 2 * 5)) 00 00
twin dirty.qcow2
same_io "open for writing: a dirty image repaired as QEMU repairs it" \
    -c "write -P 0x6b 64k 64k" dirty.qcow2
ok "open for writing: the repaired structure is where QEMU puts it" \
    cmp -n 104 "$QDIR/dirty.qcow2" "$CDIR/dirty.qcow2"

# misaligned L2 entries: data is still counted where it points; one
# without data (a preallocated zero cluster) -r all makes a zero cluster
mk mis.qcow2
poke "$TMP/mis.qcow2" $((0x40000 + 6)) 02 00
twin mis.qcow2
same_img "check: a data cluster not aligned" check mis.qcow2
same_img "check -r all: a data cluster not aligned" check -r all mis.qcow2
# stdout and stderr in one stream: what the double check prints comes
# before the report, as qemu-img's stdout is buffered
cp "$TMP/mis.qcow2" "$QDIR/mis2.qcow2" && cp "$TMP/mis.qcow2" "$CDIR/mis2.qcow2"
is "$(cd "$CDIR" && "$CALF_IMG" check -r all mis2.qcow2 2>&1 | filter_names)" \
   "$(cd "$QDIR" && qemu-img check -r all mis2.qcow2 2>&1)" \
    "check -r all: lines and report in qemu-img's order"
mk pre.qcow2
qemu-io -c "write -z 0 64k" "$TMP/pre.qcow2" >/dev/null
poke "$TMP/pre.qcow2" $((0x40000 + 6)) 02
twin pre.qcow2
same_img "check: a preallocated zero cluster not aligned" check pre.qcow2
same_img "check -r all: repaired into a zero cluster" check -r all pre.qcow2
same_file "check -r all: the same entry as qemu-img writes" pre.qcow2

# ---- write -z: a partly covered subcluster whose rest reads as zeros
# gets the zero flag; the last, partial cluster of an image is whole ----
# map_json DESC IMG: map --output=json, host offsets left out
map_json() {
    local d; for d in "$QDIR" "$CDIR"; do
        (cd "$d" && qemu-img map --output=json "$2" | sed 's/, "offset": [0-9]*//') >"$d/.map"
    done
    is "$(cat "$CDIR/.map")" "$(cat "$QDIR/.map")" "$1"
}
in_both qemu-img create -f qcow2 -o cluster_size=512 zb.qcow2 1M
in_both qemu-img create -f qcow2 -o cluster_size=4k -b zb.qcow2 -F qcow2 zt.qcow2
in_both qemu-io -c "write -P 0x11 33k 1k" zb.qcow2
same_io "write -z: partial clusters over a backing file" \
    -c "write -z 0 2k" -c "write -z 10k 2k" -c "write -z 27k 2k" -c "write -z 34k 1k" zt.qcow2
map_json "map: the partial clusters that read as zeros are zero clusters" zt.qcow2
same_io "write -z: the data around them still reads" \
    -c "read -P 0x11 33k 1k" -c "read -P 0 34k 30k" zt.qcow2
# subclusters: the request's head and tail subclusters
in_both qemu-img create -f qcow2 -o extended_l2=on zs.qcow2 2083k
same_io "write -z: subclusters, up to an end that is not aligned" \
    -c "write -P 0x22 64k 64k" -c "write -z 65k 3k" -c "write -z 130k 1k" \
    -c "write -z 2048k 35k" zs.qcow2
map_json "map: subclusters zeroed as qemu-img does" zs.qcow2
same_file "write -z: subcluster image reads the same" zs.qcow2
# compressed clusters cannot be zeroed in part: QEMU writes zeros instead
in_both qemu-io -c "write -c -P 0x33 1344k 64k" -c "write -c -P 0x33 1408k 64k" \
    -c "write -c -P 0x33 1472k 64k" zs.qcow2
same_io "write -z: part of compressed clusters" -c "write -z 1376k 128k" zs.qcow2
map_json "map: compressed clusters zeroed in part hold data" zs.qcow2
# discard of the last, partial cluster
in_both qemu-img create -f qcow2 zd.qcow2 100k
in_both qemu-io -c "write -P 0x44 0 100k" zd.qcow2
same_io "discard: the last, partial cluster reads as zeros" \
    -c "discard 64k 36k" -c "read -P 0 64k 36k" -c "read -P 0x44 0 64k" zd.qcow2
map_json "map: the discarded last cluster" zd.qcow2

# ---- where clusters go: freed ones first, refcount blocks after the run ----
# a discard frees clusters that the next writes reuse (host offsets shown)
in_both qemu-img create -f qcow2 -o cluster_size=1M,preallocation=metadata rd.qcow2 2100M
same_io "discard, then writes" \
    -c "discard 0 10M" -c "discard 2090M 10M" -c "write 2090M 10M" -c "write 0 10M" rd.qcow2
same_img "map: clusters freed by a discard are used again" map rd.qcow2
# a write that needs a new refcount block: the block follows the data
in_both qemu-img create -f qcow2 -o cluster_size=4k,refcount_bits=64 rb.qcow2 8347648
same_io "a write over several refcount blocks' ranges" -c "write -P 1 0 8347648" rb.qcow2
same_img "map: refcount blocks placed as qemu-img places them" map rb.qcow2
same_img "check: same image end offset" check rb.qcow2

# ---- commit and rebase write zeros as qemu-img does ----
in_both qemu-img create -f qcow2 -o cluster_size=4k,refcount_bits=64 -b rb.qcow2 -F qcow2 ro.qcow2
in_both qemu-io -c "write -z 0 8347648" ro.qcow2
same_img "commit: zeros over data" commit ro.qcow2
same_img "commit: the base's clusters are deallocated" check rb.qcow2
map_json "commit: the base reads zeros" rb.qcow2
in_both qemu-img create -f qcow2 rn.qcow2 384k
in_both qemu-img create -f qcow2 rnb.qcow2 384k
in_both qemu-io -c "write -P 0x11 128k 64k" -c "write -P 0x11 256k 64k" rnb.qcow2
in_both qemu-io -c "write -P 0x22 0 192k" rn.qcow2
same_img "rebase onto a base from none" rebase -b rnb.qcow2 -F qcow2 rn.qcow2
map_json "rebase: where there was no backing file, zeros" rn.qcow2

# ---- snapshot table: version 3 wants 24 bytes of extra data ----
# sn_extra IMG: each entry's extra data size
sn_extra() {
    local f=$1 n off i il nl el
    n=$(od -An -tu4 --endian=big -j60 -N4 "$f" | tr -d ' ')
    off=$(od -An -tu8 --endian=big -j64 -N8 "$f" | tr -d ' ')
    for ((i = 0; i < n; i++)); do
        il=$(od -An -tu2 --endian=big -j$((off + 12)) -N2 "$f" | tr -d ' ')
        nl=$(od -An -tu2 --endian=big -j$((off + 14)) -N2 "$f" | tr -d ' ')
        el=$(od -An -tu4 --endian=big -j$((off + 36)) -N4 "$f" | tr -d ' ')
        printf '%s ' "$el"
        off=$(( (off + 40 + el + il + nl + 7) / 8 * 8 ))
    done
}
# a version 2 image whose entries have no extra data (as old QEMU wrote)
qemu-img create -q -f qcow2 -o compat=0.10 "$TMP/v2.qcow2" 1M
qemu-img snapshot -c a "$TMP/v2.qcow2" && qemu-img snapshot -c b "$TMP/v2.qcow2"
off=$(od -An -tu8 --endian=big -j64 -N8 "$TMP/v2.qcow2" | tr -d ' ')
ent=$(( (40 + 24 + 2 + 7) / 8 * 8 ))
: >"$TMP/table"
for e in 0 1; do
    # each entry: its header saying 0 bytes of extra data, id and name
    o=$((off + e * ent))
    dd if="$TMP/v2.qcow2" of="$TMP/ent" bs=1 skip=$o count=40 status=none
    poke "$TMP/ent" 36 00 00 00 00
    dd if="$TMP/v2.qcow2" bs=1 skip=$((o + 64)) count=2 status=none >>"$TMP/ent"
    truncate -s 48 "$TMP/ent"
    cat "$TMP/ent" >>"$TMP/table"
done
dd if="$TMP/table" of="$TMP/v2.qcow2" bs=1 seek=$off conv=notrunc status=none
twin v2.qcow2
same_img "amend compat=1.1 with incomplete snapshot entries" amend -o compat=1.1 v2.qcow2
is "$(sn_extra "$CDIR/v2.qcow2")" "$(sn_extra "$QDIR/v2.qcow2")" \
    "amend: the entries get the extra data qemu-img writes"
cp "$TMP/v2.qcow2" "$TMP/v2d.qcow2"
twin v2d.qcow2
same_img "snapshot -d on version 2" snapshot -d a v2d.qcow2
is "$(sn_extra "$CDIR/v2d.qcow2")" "$(sn_extra "$QDIR/v2d.qcow2")" \
    "snapshot -d: the table rewritten with qemu-img's extra data, version 2 too"
cp "$TMP/v2.qcow2" "$TMP/v3bad.qcow2"
poke "$TMP/v3bad.qcow2" 4 00 00 00 03
poke "$TMP/v3bad.qcow2" 100 00 00 00 68
poke "$TMP/v3bad.qcow2" 96 00 00 00 04
twin v3bad.qcow2
same_img "check: version 3 snapshot entries without their extra data" check v3bad.qcow2
same_img "check -r all: the snapshot table completed" check -r all v3bad.qcow2
is "$(sn_extra "$CDIR/v3bad.qcow2")" "$(sn_extra "$QDIR/v3bad.qcow2")" \
    "check -r all: the same extra data as qemu-img writes"

# iotest 250's discards and writes on a 1 MiB-cluster image with metadata
# preallocated, then a shrink: each tool on its own copy allocates the
# same host ranges as the other (du may still differ by a block of the
# host file system's own extent tree, which depends on fragmentation)
host_map() { qemu-img map -f raw --output=json "$1"; }
for d in "$QDIR" "$CDIR"; do
    if [ "$d" = "$QDIR" ]; then img=qemu-img io=qemu-io; else img=$CALF_IMG io=$CALF_IO; fi
    rm -f "$d/p.qcow2"
    "$img" create -q -f qcow2 -o cluster_size=1M,preallocation=metadata "$d/p.qcow2" 2100M
    "$io" -c 'discard 0 10M' -c 'discard 2090M 10M' -c 'write 2090M 10M' -c 'write 0 10M' \
        "$d/p.qcow2" >/dev/null
    host_map "$d/p.qcow2" >"$d/p.before"
    "$img" resize -q --shrink "$d/p.qcow2" 5M
    host_map "$d/p.qcow2" >"$d/p.after"
done
is "$(cat "$CDIR/p.before" "$CDIR/p.after")" "$(cat "$QDIR/p.before" "$QDIR/p.after")" \
    "discards, writes, shrink: same host allocation as qemu-img's"
rm -f "$QDIR/p.qcow2" "$CDIR/p.qcow2"
