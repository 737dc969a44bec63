#!/bin/bash
# qemu-img check, map and write-zeroes as QEMU does them, on real images:
# each damaged or written image is made once and copied to both
# directories, then calf-img and qemu-img (calf-io and qemu-io) must
# print the same, exit the same and leave images that read the same.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 10

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
mk() { qemu-img create -q -f qcow2 "$TMP/$1" "${2:-64M}" && qemu-io -c "write -P 0x5a 0 128k" "$TMP/$1" >/dev/null; }

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
