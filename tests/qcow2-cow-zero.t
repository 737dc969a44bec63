#!/bin/bash
# Copy-on-write over a backing file (block/qcow2-cluster.c, write_with_cow):
# where the backing chain holds nothing under the rest of a new cluster,
# that rest is allocated, not read and written as zeros; where it holds
# data, the data is copied.  Checked by reading back through qemu-io, by
# qemu-img check, and by the host blocks against qemu-io's.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 8

mk() { # DIR: a 4 KiB-cluster base with data at 0 and 60k only, a 64 KiB-cluster overlay
    qemu-img create -q -f qcow2 -o cluster_size=4k "$1/base.qcow2" 1M
    qemu-io -c 'write -q -P 0x11 0 4k' -c 'write -q -P 0x22 60k 4k' "$1/base.qcow2"
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$1/top.qcow2"
}
mk "$CDIR"; mk "$QDIR"
w=(-c 'write -q -P 0x33 16k 4k' -c 'write -q -P 0x44 528k 4k' -c 'write -q -P 0x55 900k 64k')
"$CALF_IO" "${w[@]}" "$CDIR/top.qcow2" > "$TMP/out" 2>&1
is "$(cat "$TMP/out")" "" "calf-io writes into new clusters over the base"
qemu-io "${w[@]}" "$QDIR/top.qcow2" >/dev/null 2>&1

ok "the backing data beside the write is copied" qemu-io -c 'read -q -P 0x11 0 4k' \
    -c 'read -q -P 0 4k 12k' -c 'read -q -P 0x33 16k 4k' -c 'read -q -P 0 20k 40k' \
    -c 'read -q -P 0x22 60k 4k' "$CDIR/top.qcow2"
ok "a cluster over nothing reads zeros beside the write" qemu-io -c 'read -q -P 0 512k 16k' \
    -c 'read -q -P 0x44 528k 4k' -c 'read -q -P 0 532k 44k' "$CDIR/top.qcow2"
ok "the same guest view as qemu-io's" qemu-img compare -q "$CDIR/top.qcow2" "$QDIR/top.qcow2"
ok "qemu-img check is clean" qemu-img check -q "$CDIR/top.qcow2"
# without the base, only what the overlay holds
qemu-img rebase -u -b '' "$CDIR/top.qcow2"
ok "the overlay itself holds the copied backing data" qemu-io -c 'read -q -P 0x11 0 4k' \
    -c 'read -q -P 0x22 60k 4k' -c 'read -q -P 0 512k 16k' "$CDIR/top.qcow2"
is "$(qemu-img map --output=json "$CDIR/top.qcow2" | grep -c '"data": true')" \
    "$(qemu-img rebase -u -b '' "$QDIR/top.qcow2"; qemu-img map --output=json "$QDIR/top.qcow2" |
       grep -c '"data": true')" "as many mapped extents as qemu-io's"
c=$(stat -c %b "$CDIR/top.qcow2"); q=$(stat -c %b "$QDIR/top.qcow2")
[ "$c" -eq "$q" ] && pass "as many host blocks as qemu-io's ($c)" ||
    fail "as many host blocks as qemu-io's" "calf $c, qemu $q"
