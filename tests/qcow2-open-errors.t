#!/bin/bash
# qcow2 open and create errors in QEMU's words and order (issue 16;
# iotests 036 049 054 080 103 112 114 305): images with data written by
# qemu-io, damaged on purpose the way the iotests do, then read back by
# calf's tools linked in as qemu-img and qemu-io and by QEMU's own; their
# output and exit status must be the same, byte for byte.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 49

qemu_names
# same DESC CMD...: calf in $CDIR and QEMU in $QDIR print and exit the same
same() { same_named "$@"; }

poke() { # file offset hexbytes...
    local f=$1 off=$2; shift 2
    printf "$(printf '\\x%s' "$@")" | dd of="$f" bs=1 seek=$((off)) conv=notrunc status=none
}
# be64 N: the 8 bytes of N, big-endian, as poke takes them
be64() { printf '%016x' "$1" | sed 's/../& /g'; }

# base: 64 MiB, data in its first cluster (read back by every open that
# works); the same image in both directories
qemu-img create -q -f qcow2 "$TMP/base.qcow2" 64M
qemu-io -c 'write -P 0x5a 0 64k' "$TMP/base.qcow2" >/dev/null
# case NAME OFFSET HEX...: base damaged at OFFSET, as NAME in both
case_() {
    local n=$1; shift
    cp "$TMP/base.qcow2" "$QDIR/$n" && cp "$TMP/base.qcow2" "$CDIR/$n" &&
        poke "$QDIR/$n" "$@" && poke "$CDIR/$n" "$@"
}
rd() { same "$1" qemu-io -c 'read -P 0x5a 0 64k' "$2"; }

ok "the base image reads back" qemu-io -c 'read -P 0x5a 0 64k' "$TMP/base.qcow2"
case_ good.qcow2 0 51
rd "a valid image opens and reads back" good.qcow2

# ---- the header fields (iotest 080) ----
case_ hl.qcow2 100 ff ff ff ff
rd "huge header length: exceeds the cluster size" hl.qcow2
case_ hs.qcow2 100 00 00 00 60
rd "header length 96: too short" hs.qcow2
case_ bo.qcow2 8 $(be64 0x10008)
rd "backing file offset past the cluster" bo.qcow2
case_ ex.qcow2 112 12 34 56 78 7f ff ff ff
rd "huge unknown header extension" ex.qcow2
case_ ex2.qcow2 112 12 34 56 78 00 00 00 00
poke "$QDIR/ex2.qcow2" 8 $(be64 116); poke "$CDIR/ex2.qcow2" 8 $(be64 116)
rd "backing file name inside an extension header" ex2.qcow2
case_ rt.qcow2 56 ff ff ff ff
rd "huge refcount table" rt.qcow2
case_ rt2.qcow2 48 $(be64 0x1234567890abcdef)
rd "misaligned refcount table" rt2.qcow2
case_ rt3.qcow2 48 $(be64 0xffffffffffff0000)
poke "$QDIR/rt3.qcow2" 56 00 00 00 7f; poke "$CDIR/rt3.qcow2" 56 00 00 00 7f
rd "refcount table offset near 2^64" rt3.qcow2
case_ rt4.qcow2 56 00 00 00 00
rd "no refcount table" rt4.qcow2
case_ sn.qcow2 60 ff ff ff ff
rd "huge snapshot count" sn.qcow2
case_ sn2.qcow2 64 $(be64 0x12345)
rd "misaligned snapshot table, no snapshots" sn2.qcow2
case_ l1.qcow2 36 7f ff ff ff
rd "huge L1 table" l1.qcow2
case_ l12.qcow2 40 $(be64 0x7fffffffffff0000)
poke "$QDIR/l12.qcow2" 36 00 00 ff ff; poke "$CDIR/l12.qcow2" 36 00 00 ff ff
rd "L1 table offset near 2^63" l12.qcow2
case_ l13.qcow2 40 $(be64 0x1234567890abcdef)
rd "misaligned L1 table" l13.qcow2
case_ l14.qcow2 36 00 00 00 00
same "L1 table too small (info)" qemu-img info l14.qcow2
case_ big.qcow2 24 $(be64 0x1000000000000000)
rd "virtual size 2^60: too big (iotest 054)" big.qcow2
case_ bn.qcow2 8 $(be64 0x1000)
poke "$QDIR/bn.qcow2" 16 ff ff ff ff; poke "$CDIR/bn.qcow2" 16 ff ff ff ff
rd "backing file name too long" bn.qcow2
case_ v4.qcow2 4 00 00 00 04
rd "version 4" v4.qcow2
case_ cb.qcow2 20 00 00 00 08
rd "cluster_bits 8" cb.qcow2
case_ ct.qcow2 104 01
rd "zstd without its feature bit" ct.qcow2
case_ ct2.qcow2 104 07
rd "unknown compression type" ct2.qcow2
case_ ro.qcow2 96 00 00 00 07
rd "refcount order 7" ro.qcow2

# ---- unknown features and the feature name table (iotest 036) ----
# the table qemu-img writes: its first entry is "dirty bit" (type 0, bit 0)
ft=$(od -An -tx1 -v -j112 -N1024 "$TMP/base.qcow2" | tr -d ' \n' | grep -bo 6803f857 | head -1)
ft=$(( 112 + ${ft%%:*} / 2 + 8 ))
case_ f1.qcow2 72 80 00 00 00 00 00 00 00
rd "unknown feature bit 63, unnamed" f1.qcow2
case_ f2.qcow2 72 e0 00 00 00 00 00 00 00
poke "$QDIR/f2.qcow2" $((ft + 1)) 3e; poke "$CDIR/f2.qcow2" $((ft + 1)) 3e
rd "bits 61-63, the table names bit 62" f2.qcow2
# a table of one short entry (14 bytes): the rest reads as zeros
case_ f3.qcow2 72 a0 00 00 00 00 00 00 00
poke "$QDIR/f3.qcow2" $((ft - 4)) 00 00 00 0e; poke "$CDIR/f3.qcow2" $((ft - 4)) 00 00 00 0e
poke "$QDIR/f3.qcow2" $((ft + 1)) 3f; poke "$CDIR/f3.qcow2" $((ft + 1)) 3f
rd "bits 61 and 63, a short table entry names 63" f3.qcow2

# ---- the corrupt bit ----
case_ k.qcow2 79 02
rd "corrupt bit: no read/write open" k.qcow2
same "corrupt bit: read-only open reads back" qemu-io -r -c 'read -P 0x5a 0 64k' k.qcow2

# ---- cache options (iotest 103) ----
io_opts() { same "$1" qemu-io -c 'read -P 0x5a 0 64k' --image-opts "driver=qcow2,file.filename=good.qcow2,$2"; }
io_opts "cache-size, l2 and refcount all set" cache-size=1M,l2-cache-size=512k,refcount-cache-size=256k
io_opts "l2-cache-size over cache-size" cache-size=1M,l2-cache-size=2M
io_opts "refcount-cache-size over cache-size" cache-size=1M,refcount-cache-size=2M
io_opts "l2-cache-entry-size not a power of two" l2-cache-entry-size=1000
io_opts "l2-cache-entry-size over the cluster" l2-cache-entry-size=128k
io_opts "valid cache options read back" cache-size=1M,l2-cache-size=512k,l2-cache-entry-size=4k

# ---- a backing format given twice: the last one counts (iotest 114) ----
bk() {
    qemu-img create -q -f qcow2 b.qcow2 64M && qemu-io -c 'write -P 0x5a 0 64k' b.qcow2 >/dev/null &&
        qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 o.qcow2 64M &&
        # the feature table's extension header becomes a second backing
        # format, "foo", followed by the end of the extensions
        poke o.qcow2 128 e2 79 2a ca 00 00 00 03 66 6f 6f 00 00 00 00 00 00 00 00 00 00 00 00 00
}
(cd "$QDIR" && bk) && (cd "$CDIR" && bk) || fail "making the backing chain"
same "backing format twice: info shows the last" qemu-img info o.qcow2
rd "backing format twice: 'foo' is unknown" o.qcow2

# ---- create options (iotests 049, 112) ----
cr() { same "create: $1" qemu-img create -f qcow2 -o "$1" n.qcow2 64M; }
cr compat=0.42
cr preallocation=1234
cr compression_type=foo
cr compat=0.10,lazy_refcounts=on
cr compat=0.10,refcount_bits=8
cr refcount_bits=-1

# ---- corruption found at run time (iotest 305): same writes, same
# layout, the same line when the second refcount block is damaged ----
mk305() {
    qemu-img create -q -f qcow2 -o refcount_bits=64,cluster_size=1k r.qcow2 1M &&
        qemu-io -c 'write -P 0x33 0 124k' r.qcow2 >/dev/null &&
        qemu-io -c 'discard 121k 1k' -c 'discard 123k 1k' r.qcow2 >/dev/null &&
        poke r.qcow2 $(( $(od -An -tu8 --endian=big -j48 -N8 r.qcow2) + 14 )) 06
}
(cd "$QDIR" && PATH=$QPATH mk305) && (cd "$CDIR" && PATH=$CPATH mk305) || fail "making the 305 images"
same "a damaged refblock: the write marks the image corrupt" qemu-io -c 'write 121k 3k' r.qcow2
same "the data written before reads back, read-only" qemu-io -r -c 'read -P 0x33 0 120k' r.qcow2

# ---- snapshot -c reports the errno (iotest 112) ----
mk112() {
    qemu-img create -q -f qcow2 -o refcount_bits=1 s.qcow2 64M &&
        qemu-io -c 'write -P 0x44 0 64k' s.qcow2 >/dev/null
}
(cd "$QDIR" && mk112) && (cd "$CDIR" && mk112) || fail "making the refcount_bits=1 images"
same "snapshot with refcount_bits=1: -22" qemu-img snapshot -c foo s.qcow2

# ---- a compressed cluster that does not decompress (iotest 214): the
# read fails, nothing is marked, check finds nothing ----
mk214() {
    qemu-img create -q -f qcow2 -o cluster_size=2M,compression_type=zlib z.qcow2 8M &&
        qemu-io -c 'write -c -P 0x11 0 2M' -c 'write -c -P 0x11 2M 2M' z.qcow2 >/dev/null &&
        poke z.qcow2 $((0x800000)) 40 06
}
(cd "$QDIR" && mk214) && (cd "$CDIR" && mk214) || fail "making the compressed images"
same "a bad compressed cluster: the read fails" qemu-io -c 'read -P 0x11 0 4M' z.qcow2
same "a bad compressed cluster: not marked corrupt" sh -c 'qemu-img info z.qcow2 | grep corrupt'
cr cluster_size=0x10000

done_testing
