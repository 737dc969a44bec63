#!/bin/bash
# calf-img dd against qemu-img dd: operands, errors, output sizes and
# contents.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

in_both qemu-img create -q -f raw in.raw 2M
in_both qemu-io -f raw -c 'write -P 1 0 4k' -c 'write -P 2 64k 128k' -c 'write -P 3 1000k 4k' in.raw
cases=(
    "if=in.raw of=o1"
    "if=in.raw of=o2 bs=4k count=3"
    "if=in.raw of=o3 bs=64k skip=1"
    "if=in.raw of=o4 bs=1k skip=1 count=2"
    "-f raw -O raw if=in.raw of=o5 bs=1M"
    "if=in.raw of=o6 bs=1.5k count=1"
    "if=in.raw of=o7 count=2 count=3"
    "if=in.raw of=o8 count=0"
    "if=in.raw of=o9 skip=10000"
    "if=in.raw of=o10 bs=1M count=10"
    "if=in.raw of=o11 bs=64k count=3 skip=1"
    "foo=1 if=in.raw of=e1"
    "foo if=in.raw of=e2"
    "if=in.raw of=e3 skip=-1"
    "-O bogus if=in.raw of=e4"
    "if=nonexist of=e5"
    "if=in.raw"
    "of=e6"
    "bs=0 if=in.raw of=e7"
    "count=x if=in.raw of=e8"
    "-x if=in.raw of=e9"
)
for c in "${cases[@]}"; do
    same_img "dd $c" dd $c
    out=$(echo "$c" | sed -n 's/.*of=\([^ ]*\).*/\1/p')
    if [ -n "$out" ] && { [ -e "$QDIR/$out" ] || [ -e "$CDIR/$out" ]; }; then
        ok "dd $c: same output file" cmp "$QDIR/$out" "$CDIR/$out"
    fi
done
same_img "dd with a size that is not a multiple of 512" dd if=in.raw of=o20 bs=3000 skip=7
ok "dd bs=3000 skip=7: same output file" cmp "$QDIR/o20" "$CDIR/o20"

driver_check qcow2
in_both qemu-img create -q -f qcow2 -b in.raw -F raw ov.qcow2
in_both qemu-io -c 'write -P 9 64k 4k' ov.qcow2
same_img "dd from a qcow2 overlay" dd if=ov.qcow2 of=o30 bs=64k count=4
ok "dd from a qcow2 overlay: same output" cmp "$QDIR/o30" "$CDIR/o30"
same_img "dd to qcow2" dd -O qcow2 if=in.raw of=o31.qcow2 bs=64k skip=1
is "$(qemu-img compare -f qcow2 -F qcow2 "$QDIR/o31.qcow2" "$CDIR/o31.qcow2")" \
   "Images are identical." "dd to qcow2: same content"
ok "dd to qcow2: qemu-img check" qemu-img check -q "$CDIR/o31.qcow2"
done_testing
