#!/bin/bash
# Hostile images: valid images made by qemu-img (qcow2 v2 and v3, backing
# file, internal snapshots, compressed clusters, extended L2, lazy
# refcounts; qcow v1), then damaged on purpose with tests/unit/qcow2-poke.c
# (the cases of QEMU's iotest 080 and more).  For each one, `calf-img info`,
# a full read (tests/unit/blk-read.c) and a write attempt must: fail where
# the image is bad (with damage only I/O reaches, on that I/O) with exactly
# one error line that names the file, never crash or hang, and leave the
# file as it was, except that a write attempt may set the corrupt bit
# (qemu-img must then report the image corrupt).  `calf-img check`, `check
# -r all` on a copy and `calf-io` read must not crash or hang either.
# Valid images must still work.
. "$(dirname "$0")/tap.sh"
need_cmd qemu-img qemu-io
for t in calf-img calf-io tests/blk-read tests/qcow2-poke; do
    [ -x "$CALF_BUILD/$t" ] || skip_all "$CALF_BUILD/$t is not built (run make)"
done
# private copies: a rebuild while this runs must not pull binaries away
mkdir "$TMP/bin"
cp "$CALF_BUILD/calf-img" "$CALF_BUILD/calf-io" "$CALF_BUILD/tests/blk-read" \
    "$CALF_BUILD/tests/qcow2-poke" "$TMP/bin/"
IMG=$TMP/bin/calf-img RD=$TMP/bin/blk-read P=$TMP/bin/qcow2-poke CIO=$TMP/bin/calf-io
qi() { qemu-io -f qcow2 "$@" >/dev/null || echo "# qemu-io $* failed"; }
cr() { qemu-img create -q -f qcow2 "$@" || echo "# qemu-img create $* failed"; }

# calf-io is checked for crashes and hangs on every image; first, that it
# reads a valid one at all
cr "$TMP/probe.qcow2" 1M
ok "calf-io reads a valid qcow2 image" "$CIO" -r -c 'read 0 512' "$TMP/probe.qcow2"

# ---- the valid images everything starts from ----
SIZE=$((8 << 20))
cr -o compat=1.1 "$TMP/v3.qcow2" 8M
qi -c 'write -P 0x11 0 1M' -c 'write -P 0x22 5M 64k' -c 'write -z 6M 128k' "$TMP/v3.qcow2"
cr -o compat=0.10 "$TMP/v2.qcow2" 8M
qi -c 'write -P 0x11 0 1M' -c 'write -P 0x22 5M 64k' "$TMP/v2.qcow2"
head -c $SIZE /dev/zero | tr '\0' '\125' > "$TMP/base.raw"
cr -b base.raw -F raw "$TMP/bk.qcow2"
qi -c 'write -P 0x33 0 128k' "$TMP/bk.qcow2"
cp "$TMP/v3.qcow2" "$TMP/snap.qcow2"
qemu-img snapshot -c first "$TMP/snap.qcow2"
qi -c 'write -P 0x44 0 64k' -c 'write -P 0x45 7M 64k' "$TMP/snap.qcow2"
qemu-img snapshot -c second "$TMP/snap.qcow2"
{ for i in $(seq 1 4096); do printf 'calf compressible line %08d\n' $i; done; } > "$TMP/text"
head -c $SIZE /dev/zero > "$TMP/craw"
dd if="$TMP/text" of="$TMP/craw" conv=notrunc status=none
dd if="$TMP/text" of="$TMP/craw" bs=1M seek=3 conv=notrunc status=none
qemu-img convert -c -f raw -O qcow2 "$TMP/craw" "$TMP/comp.qcow2"
cr -o extended_l2=on "$TMP/xl2.qcow2" 8M
qi -c 'write -P 0x66 0 4k' -c 'write -P 0x67 8k 2k' -c 'write -z 64k 4k' -c 'write -P 0x68 1M 64k' "$TMP/xl2.qcow2"
qemu-img convert -c -f raw -O qcow2 -o extended_l2=on "$TMP/craw" "$TMP/xl2c.qcow2"
qemu-img create -q -f qcow "$TMP/v1.qcow" 8M
qemu-io -f qcow -c 'write -P 0x91 0 64k' -c 'write -P 0x92 3M 4k' "$TMP/v1.qcow" >/dev/null
qemu-img create -q -f qcow -b base.raw -F raw "$TMP/v1b.qcow"
cr -o lazy_refcounts=on "$TMP/lazy.qcow2" 8M
qi -c 'write -P 0x77 0 256k' "$TMP/lazy.qcow2"
cr -o cluster_size=512 "$TMP/c512.qcow2" 8M
qi -c 'write -P 0x12 0 200k' "$TMP/c512.qcow2"
cr -o cluster_size=2M,refcount_bits=1 "$TMP/c2m.qcow2" 8M
qi -c 'write -P 0x13 1M 3M' "$TMP/c2m.qcow2"
cr -o refcount_bits=64,compression_type=zstd "$TMP/zstd.qcow2" 8M
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd "$TMP/craw" "$TMP/zcomp.qcow2"

sum() { md5sum < "$1"; }

# run NAME CMD...: sets rc and err (stderr), with a hang guard.
run() {
    local name=$1; shift
    err=$(timeout 20 "$@" 2>&1 >/dev/null); rc=$?
}

# A failure must be a plain error: exit 1..123, one line, naming the file.
expect_fail() { # desc what match
    local desc=$1 what=$2 match=$3 lines
    # the line QEMU, and so calf, prints when it finds corruption comes on
    # top of the error
    err=$(printf '%s\n' "$err" | grep -Ev '^qcow2: (Marking image as corrupt|Image is corrupt): ')
    # so do QEMU's hints to repair with check -r all, and check's report
    # of the snapshot table it could not read before "Check failed"
    # (for one file: check names none, like QEMU's)
    local all=$err
    err=$(printf '%s\n' "$err" | grep -Ev '^You can force-remove .* check -r all$' |
          grep -Ev '^calf-img: ERROR ')
    [ "$all" != "$err" ] && [ "$what" = check ] && match=""
    lines=$(printf '%s\n' "$err" | grep -c .)
    if [ $rc -eq 124 ]; then fail "$desc: $what hangs"
    elif [ $rc -ge 128 ]; then fail "$desc: $what crashes (exit $rc): $err"
    elif [ $rc -eq 0 ]; then fail "$desc: $what succeeds on a bad image"
    elif [ "$lines" -ne 1 ]; then fail "$desc: $what prints $lines error lines: $(echo $err)"
    elif [[ "$err" != *"$match"* ]]; then fail "$desc: $what error does not name '$match': $err"
    else pass "$desc: $what fails cleanly: $err"; fi
}
expect_ok() {
    local desc=$1 what=$2
    if [ $rc -eq 0 ]; then pass "$desc: $what works"
    elif [ $rc -eq 124 ]; then fail "$desc: $what hangs"
    else fail "$desc: $what fails (exit $rc): $err"; fi
}

# After a failed write attempt: unchanged, or marked corrupt.
expect_unchanged_or_corrupt() { # desc file sum
    if [ "$(sum "$2")" = "$3" ]; then pass "$1: file unchanged"
    elif qemu-img info "$2" 2>/dev/null | grep -q 'corrupt: true'; then
        pass "$1: file changed only to be marked corrupt"
    else fail "$1: file changed by a failed write and is not marked corrupt"; fi
}

# check DESC FILE KIND [WRITE_AT [MATCH]]
# KIND: header  open fails everywhere
#       io      info works, the read and the write attempt fail
#       wio     info and read work, the write attempt fails
#       chain   info (without backing) works, read and write fail
#       ro      info and read work, opening for writing is refused
#       dirty   info and read work, the write works or fails cleanly
#       any     like dirty, without judging the result (damage QEMU ignores)
#       ok      everything works, qemu-img check is clean afterwards
check() {
    local desc=$1 f=$2 kind=$3 wat=${4:-512:70000} match=${5:-$(basename "$2")}
    local s0 s; s0=$(sum "$f")
    run info "$IMG" info "$f"
    case $kind in header) expect_fail "$desc" info "$match";; *) expect_ok "$desc" info;; esac
    run read "$RD" "$f"
    case $kind in header|io|chain) expect_fail "$desc" read "$match";; *) expect_ok "$desc" read;; esac
    run check "$IMG" check "$f"
    if [ $kind = header ]; then expect_fail "$desc" check "$match"
    elif [ $rc -eq 124 ] || [ $rc -ge 128 ]; then fail "$desc: check crashes or hangs (exit $rc): $(echo $err | head -c 300)"
    else pass "$desc: check survives (exit $rc)"; fi
    s=$(sum "$f")
    if [ "$s" = "$s0" ]; then pass "$desc: info, read and check leave the file alone"
    else fail "$desc: info, read or check changed the file"; fi
    cp "$f" "$TMP/repair.img"
    run repair "$IMG" check -r all "$TMP/repair.img"
    if [ $rc -eq 124 ] || [ $rc -ge 128 ]; then fail "$desc: check -r all on a copy crashes or hangs (exit $rc): $(echo $err | head -c 300)"
    else pass "$desc: check -r all on a copy survives (exit $rc)"; fi
    rm -f "$TMP/repair.img"
    run calf-io "$CIO" -r -c "read 0 $SIZE" "$f"
    if [ $rc -eq 124 ] || [ $rc -ge 128 ]; then fail "$desc: calf-io read crashes or hangs (exit $rc): $err"
    else pass "$desc: calf-io read survives (exit $rc)"; fi
    # the model of a good write: qemu-io writes blk-read's pattern (0xcd)
    # into a copy
    [ $kind = ok ] && cp "$f" "$TMP/model.img"
    run write "$RD" -w "$wat" "$f"
    case $kind in
    ok)
        expect_ok "$desc" write
        local c cr; c=$(qemu-img check "$f" 2>&1); cr=$?
        if [ $cr -eq 0 ]; then pass "$desc: qemu-img check is clean after the write"
        elif [ $cr -eq 63 ] &&
             c=$(qemu-io -c "write -P 0xcd ${wat%%:*} ${wat#*:}" "$TMP/model.img" 2>&1 &&
                 qemu-img compare "$TMP/model.img" "$f" 2>&1); then
            pass "$desc: qemu-img reads the write as qemu-io's own (no check for this format)"
        else fail "$desc: qemu-img check or compare after the write: $(echo $c | head -c 300)"; fi
        rm -f "$TMP/model.img" ;;
    any)
        if [ $rc -eq 0 ]; then pass "$desc: write works"
        else expect_fail "$desc" write "$match"; expect_unchanged_or_corrupt "$desc" "$f" "$s"; fi ;;
    dirty)
        if [ $rc -eq 0 ]; then
            if qemu-img check "$f" >/dev/null 2>&1; then pass "$desc: write works, image is clean"
            else fail "$desc: write works but qemu-img check fails"; fi
        else
            expect_fail "$desc" write "$match"
        fi ;;
    *)
        expect_fail "$desc" write "$match"
        expect_unchanged_or_corrupt "$desc" "$f" "$s" ;;
    esac
}

c=0
# new BASE: a fresh copy of a valid image as $F
new() { c=$((c+1)); F=$TMP/case$c.qcow2; cp "$TMP/$1.qcow2" "$F"; }
poke() { "$P" "$F" "$@" || echo "# qcow2-poke $* failed"; }
get() { "$P" "$F" "$@"; }
hdr() { # desc base poke-args...: header damage
    local d=$1; new "$2"; shift 2; poke "$@"; check "$d" "$F" header
}
hex() { printf '0x%x' "$1"; }

# ---- no false positives ----
for b in v3 v2 bk snap comp xl2 xl2c lazy c512 c2m zstd zcomp; do
    new $b; check "valid $b image" "$F" ok
done
for b in v1 v1b; do
    c=$((c+1)); F=$TMP/case$c.qcow; cp "$TMP/$b.qcow" "$F"; check "valid qcow $b image" "$F" ok
done
new snap; check "valid image, write over snapshot-shared clusters" "$F" ok 0:4096

# a longer header than QEMU writes today (a future field, kept)
new v3; dd if="$F" of="$TMP/ext" bs=1 skip=112 count=4000 status=none
dd if="$TMP/ext" of="$F" bs=1 seek=120 conv=notrunc status=none
poke fill 112 8 0; poke field header_length 120
check "header_length 120 (unknown header field)" "$F" ok
new snap; o=$(get snap 1 id_len); poke set "$o" 2 0xffff; poke set $((o + 2)) 2 0xffff
truncate -s +1M "$F"
check "snapshot with 64 KiB id and name (inside the file)" "$F" any

# ---- header fields (iotest 080 and more) ----
hdr "version 1" v3 field version 1
hdr "version 4" v3 field version 4
hdr "version 0xffffffff" v2 field version 0xffffffff
hdr "huge header_length" v3 field header_length 0xfffffff8
hdr "header_length past the cluster" v3 field header_length 0x10008
hdr "header_length not a multiple of 8" v3 field header_length 105
hdr "header_length too small" v3 field header_length 100
hdr "cluster_bits 8" v3 field cluster_bits 8
hdr "cluster_bits 22" v3 field cluster_bits 22
hdr "cluster_bits 0xffffffff" v3 field cluster_bits 0xffffffff
hdr "cluster_bits 13 with extended L2" xl2 field cluster_bits 13
hdr "huge L1 size" v3 field l1_size 0x10000000
hdr "L1 size 0xffffffff" v3 field l1_size 0xffffffff
hdr "L1 table too small for the virtual size" v3 field l1_size 0
hdr "virtual size 2^63" v3 field size 0x8000000000000000
hdr "virtual size 2^64-512" v3 field size 0xfffffffffffffe00
hdr "L1 offset unaligned" v3 field l1_table_offset 0x30001
hdr "L1 offset zero" v3 field l1_table_offset 0
hdr "L1 offset past EOF" v3 field l1_table_offset 0x100000000
hdr "L1 offset near 2^64" v3 field l1_table_offset 0xffffffffffff0000
hdr "refcount table offset unaligned" v3 field refcount_table_offset 0x10200
hdr "refcount table offset zero" v3 field refcount_table_offset 0
hdr "refcount table offset past EOF" v3 field refcount_table_offset 0x100000000
hdr "refcount table offset near 2^64" v2 field refcount_table_offset 0xffffffffffff0000
hdr "huge refcount_table_clusters" v3 field refcount_table_clusters 0xffffffff
hdr "refcount_table_clusters past EOF" v3 field refcount_table_clusters 0x1000
hdr "refcount_table_clusters zero" v3 field refcount_table_clusters 0
hdr "refcount_order 7" v3 field refcount_order 7
hdr "refcount_order 0xffffffff" v3 field refcount_order 0xffffffff
hdr "crypt_method 3" v3 field crypt_method 3
hdr "compression type 2" zstd field compression_type 2
hdr "zstd type without its feature bit" zstd andnot 72 8 8
hdr "too many snapshots" snap field nb_snapshots 0x10001
hdr "nb_snapshots 0xffffffff" snap field nb_snapshots 0xffffffff
hdr "snapshot count past the table" snap field nb_snapshots 200
hdr "snapshot table offset unaligned" snap field snapshots_offset 0x12345
hdr "snapshot table offset past EOF" snap field snapshots_offset 0x100000000
hdr "snapshot table offset zero" snap field snapshots_offset 0
new snap; poke set "$(get snap 1 l1_size)" 4 0x10000000
check "snapshot L1 too large" "$F" header
new snap; poke set "$(get snap 0 l1_offset)" 8 0x30200
check "snapshot L1 offset unaligned" "$F" header
new snap; poke set "$(get snap 0 l1_offset)" 8 0x7fff0000
check "snapshot L1 offset past EOF" "$F" header
new snap; poke set "$(get snap 0 extra_size)" 4 0xffffffff
check "snapshot extra data huge" "$F" header
new snap; poke set "$(get snap 1 name_len)" 2 0xffff
check "snapshot name past EOF" "$F" header

# incompatible features
hdr "unknown incompatible bit 10, unnamed" v3 or 72 8 0x400
new v3; read -r fo fl < <(get ext 0x6803f857)
poke set "$fo" 1 0; poke set $((fo + 1)) 1 10; poke fill $((fo + 2)) 46 0
poke str $((fo + 2)) "calf test feature"; poke or 72 8 0x400
check "unknown incompatible bit 10, named in the feature table" "$F" header 0 "calf test feature"
hdr "unknown incompatible bit 63" v3 or 72 8 0x8000000000000000
# as QEMU: info shows it, opening it for I/O needs the data-file option
new v3; poke or 72 8 4
check "external data file bit without the extension" "$F" io 512:70000 \
    "'data-file' is required for this image"
new lazy; poke or 72 8 2; check "corrupt bit" "$F" ro
new lazy; poke or 72 8 1; check "dirty bit" "$F" dirty
new v3; poke or 72 8 1; check "dirty bit without lazy refcounts" "$F" dirty
new v3; poke or 88 8 0x8000000000000000; check "unknown autoclear bit" "$F" ok

# header extensions
new v3; read -r fo fl < <(get ext 0x6803f857)
poke set $((fo - 4)) 4 0xfffffff0; check "extension longer than the cluster" "$F" header
new bk; read -r fo fl < <(get ext 0xe2792aca)
poke set $((fo - 4)) 4 200; check "backing format name too long" "$F" header
new v3; read -r fo fl < <(get ext 0x6803f857)
poke set $((fo - 8)) 4 0xe2792aca; poke set $((fo - 4)) 4 8; poke str "$fo" "qcow2xxx"
poke set $((fo + 8)) 4 0xe2792aca; poke set $((fo + 12)) 4 3; poke str $((fo + 16)) "raw"
poke set $((fo + 24)) 8 0
# QEMU takes the last of two backing formats (iotest 114)
check "extension twice" "$F" any

# backing file name
hdr "backing name too long" bk field backing_file_size 1024
hdr "backing name size 0xffffffff" bk field backing_file_size 0xffffffff
hdr "backing name outside cluster 0" bk field backing_file_offset 0xfffc
hdr "backing name offset near 2^64" bk field backing_file_offset 0xfffffffffffffff8
new bk; poke set "$(get field backing_file_offset)" 1 0
check "backing name with a NUL byte" "$F" header
new bk; poke field backing_file_size 3
check "backing file missing" "$F" chain 0:512 bas
cr -u -b b.qcow2 -F qcow2 "$TMP/a.qcow2" 8M
cr -u -b a.qcow2 -F qcow2 "$TMP/b.qcow2" 8M
check "backing loop a -> b -> a" "$TMP/a.qcow2" chain 0:512 .qcow2
cr -u -b self.qcow2 -F qcow2 "$TMP/self.qcow2" 8M
check "backing loop onto itself" "$TMP/self.qcow2" chain 0:512 self.qcow2
mkfifo "$TMP/fifo"
cr -u -b fifo -F raw "$TMP/onfifo.qcow2" 8M
check "backing file is a FIFO" "$TMP/onfifo.qcow2" chain 0:512 fifo
cr -u -b /dev/zero -F raw "$TMP/onzero.qcow2" 8M
check "backing file is /dev/zero" "$TMP/onzero.qcow2" chain 0:512 /dev/zero
cr -u -b ./self2.qcow2 -F qcow2 "$TMP/self2.qcow2" 8M
check "backing loop onto itself through ./" "$TMP/self2.qcow2" chain 0:512 self2.qcow2

# ---- tables: damage only I/O reaches ----
new v3; l1=$(get field l1_table_offset); poke or "$l1" 8 0x200
check "L1 entry with an unaligned L2 offset" "$F" io 512:512
new v3; l1=$(get field l1_table_offset); poke set "$l1" 8 0x8000000100000000
check "L1 entry pointing past EOF" "$F" io 512:512
new v3; l1=$(get field l1_table_offset); poke set "$l1" 8 0x8000000000010000
check "L1 entry pointing at the refcount table" "$F" wio 512:512
new v3; poke or "$(get l2e 0)" 8 0x200
check "L2 entry with an unaligned offset" "$F" io 512:512
new v3; poke set "$(get l2e 0)" 8 0x8000000100000000
check "L2 entry pointing past EOF" "$F" wio 512:512
new v3; poke set "$(get l2e 0)" 8 0x8000000000030000
check "L2 entry pointing at the L1 table" "$F" wio 512:512
new v3; poke set "$(get l2e 65536)" 8 0x8000000000010000
check "L2 entry pointing at the refcount table" "$F" wio 65536:512
new v2; poke or "$(get l2e 65536)" 8 1
check "zero flag in a v2 image" "$F" io 65536:512
new v2; poke set "$(get l2e $((3 << 20)))" 8 1
check "zero flag in an unallocated v2 entry" "$F" io $((3 << 20)):512
new v3; poke or "$(get l2e 0)" 8 0x3f00000000000000
check "L2 entry with reserved bits" "$F" any 512:512
new xl2; poke or $(( $(get l2e 0) + 8 )) 8 0x100000000
check "extended L2: subcluster allocated and zero" "$F" io 512:512
new xl2; poke set $(( $(get l2e $((2 << 20))) + 8 )) 8 1
check "extended L2: alloc bit on an unallocated cluster" "$F" io $((2 << 20)):512
new xl2; poke or "$(get l2e 0)" 8 1
check "extended L2: zero flag in the standard entry" "$F" ok 512:512
e=$("$P" "$TMP/comp.qcow2" l2e 0); l2e=$("$P" "$TMP/comp.qcow2" get "$e" 8)
coff=$(( l2e & ((1 << 54) - 1) ))
new comp; poke set "$e" 8 "$(hex $(( (l2e & ~((1 << 54) - 1)) | 0x10000000000 )))"
check "compressed cluster past EOF" "$F" io 512:512
new comp; poke set "$e" 8 "$(hex $(( l2e | (0xff << 54) )))"
poke set "$(get l2e 65536)" 8 "$(hex $(( (l2e & ~((1 << 54) - 1)) | ($(stat -c %s "$F") - 100) )))"
check "compressed cluster running past EOF" "$F" io 65536:512
new comp; poke random "$coff" 200 7
check "compressed cluster with garbage data" "$F" io 512:512
new comp; poke fill "$coff" 200 0
check "compressed cluster of zero bytes" "$F" io 512:512
new zcomp; e=$(get l2e 0); coff=$(( $(get get "$e" 8) & ((1 << 54) - 1) ))
poke random "$coff" 100 9
check "zstd cluster with garbage data" "$F" io 512:512
new v3; rt=$(get field refcount_table_offset); poke set "$rt" 8 0x100000000
check "refcount table entry past EOF" "$F" wio $((3 << 20)):512
new v3; rt=$(get field refcount_table_offset); poke set "$rt" 8 0x10200
check "refcount table entry unaligned" "$F" wio $((3 << 20)):512
new v3; rt=$(get field refcount_table_offset); poke set "$rt" 8 0
check "refcount table entry missing (all refcounts zero)" "$F" wio $((3 << 20)):512
new v3; rt=$(get field refcount_table_offset)
poke fill "$(( $(get get "$rt" 8) ))" 65536 0
check "refcount block of zeros" "$F" wio $((3 << 20)):512

new xl2c; e=$(get l2e 0); poke or $((e + 8)) 8 1
check "extended L2: compressed cluster with a bitmap" "$F" ok 512:512

# ---- qcow (v1): header fields (magic 0, version 4, backing_file_offset 8,
# backing_file_size 16, mtime 20, size 24, cluster_bits 32, l2_bits 33,
# crypt_method 36, l1_table_offset 40) and tables ----
v1() { c=$((c+1)); F=$TMP/case$c.qcow; cp "$TMP/v1.qcow" "$F"; }
v1; poke set 32 1 8; check "qcow v1: cluster_bits 8" "$F" header
v1; poke set 32 1 0xff; check "qcow v1: cluster_bits 255" "$F" header
v1; poke set 33 1 0; check "qcow v1: l2_bits 0" "$F" header
v1; poke set 33 1 60; check "qcow v1: l2_bits 60" "$F" header
v1; poke set 24 8 0x8000000000000000; check "qcow v1: size 2^63" "$F" header
v1; poke set 40 8 0x100000000; check "qcow v1: L1 offset past EOF" "$F" header
v1; poke set 40 8 0xfffffffffffffe00; check "qcow v1: L1 offset near 2^64" "$F" header
v1; poke set 36 4 7; check "qcow v1: crypt_method 7" "$F" header
v1b() { c=$((c+1)); F=$TMP/case$c.qcow; cp "$TMP/v1b.qcow" "$F"; }
v1b; poke set 16 4 2000; check "qcow v1: backing name too long" "$F" header
v1b; poke set 8 8 0xfffffffffffffff0; check "qcow v1: backing name offset near 2^64" "$F" header
v1; poke set "$(get get 40 8)" 8 0x100000000
check "qcow v1: L1 entry past EOF" "$F" io 512:512
v1; poke set "$(get get 40 8)" 8 0xffffffffffffff00
check "qcow v1: L1 entry near 2^64" "$F" io 512:512
v1; l2=$(get get "$(get get 40 8)" 8); poke set "$l2" 8 0xc000000000001000
check "qcow v1: compressed entry with garbage" "$F" io 512:512
v1; poke set 20 4 0xffffffff; check "qcow v1: any mtime is fine" "$F" ok

# ---- truncated, empty and random files ----
new v3; truncate -s 100 "$F"; check "truncated to 100 bytes" "$F" header
new v3; truncate -s 71 "$F"; check "truncated to 71 bytes" "$F" header
new v3; truncate -s 65536 "$F"; check "truncated to the header cluster" "$F" header
new v3; truncate -s $((3 << 16)) "$F"; check "truncated before the L1 table" "$F" header
new v3; l2=$(( $(get get "$(get field l1_table_offset)" 8) & 0xfffffffffe00 ))
truncate -s "$l2" "$F"; check "truncated before an L2 table" "$F" io 512:512
new snap; truncate -s $(( $(get field snapshots_offset) + 20 )) "$F"
check "truncated inside the snapshot table" "$F" header
# not regular files
run info "$IMG" info "$TMP/fifo"; expect_fail "a FIFO as the image" info fifo
run read "$RD" "$TMP/fifo"; expect_fail "a FIFO as the image" read fifo
run info "$IMG" info --backing-chain "$TMP/onfifo.qcow2"
if [ $rc -lt 124 ]; then pass "info --backing-chain over a FIFO backing file ends (exit $rc)"
else fail "info --backing-chain over a FIFO backing file: exit $rc"; fi
mkdir "$TMP/dir.qcow2"
run info "$IMG" info "$TMP/dir.qcow2"; expect_fail "a directory as the image" info dir.qcow2
: > "$TMP/empty.qcow2"
run info "$IMG" info -f qcow2 "$TMP/empty.qcow2"; expect_fail "empty file as qcow2" info empty.qcow2
run read "$RD" -f qcow2 "$TMP/empty.qcow2"; expect_fail "empty file as qcow2" read empty.qcow2
run write "$RD" -f qcow2 -w 0:512 "$TMP/empty.qcow2"; expect_fail "empty file as qcow2" write empty.qcow2
if [ -s "$TMP/empty.qcow2" ]; then fail "empty file was written"; else pass "empty file stays empty"; fi
for seed in 1 2 3 4 5 6 7 8; do
    F=$TMP/random$seed.qcow2; rm -f "$F"
    "$P" "$F" random 0 $((256 << 10)) $seed
    "$P" "$F" set 0 4 0x514649fb; "$P" "$F" set 4 4 $((2 + seed % 2))
    check "random bytes with the qcow2 magic (seed $seed)" "$F" header
done
# header fields kept valid, every table random
for seed in 11 12 13 14; do
    new v3; poke random 0x10000 $(( $(stat -c %s "$F") - 0x10000 )) $seed
    check "random tables behind a valid header (seed $seed)" "$F" io 512:512
done

done_testing
