#!/bin/bash
# commit empties a version 3 top image as qemu-img does (QEMU's
# make_completely_empty): a fresh header, refcount table, refcount block
# and L1 table in clusters 0 to 3, the file cut after them.  The steps go
# in QEMU's order, so a failure injected at each of their blkdebug events
# leaves the image qemu-img leaves: the commit says the same, the next
# open repairs the same leaks or rebuilds the refcounts with the same
# lines, and check then agrees (iotest 098).
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
events=(l1_update empty_image_prepare reftable_update refblock_alloc)
plan $(( 1 + ${#events[@]} * 3 + 3 * 5 ))
driver_check qcow2

chain() { # OPTS: b.qcow2 <- t.qcow2 with 64k of data in the top, both dirs
    in_both rm -f b.qcow2 t.qcow2
    in_both qemu-img create -q -f qcow2 -o "$1" b.qcow2 64M
    in_both qemu-img create -q -f qcow2 -o "$1" -b b.qcow2 -F qcow2 t.qcow2
    in_both qemu-io -c 'write -P 5 0 64k' t.qcow2
}

for ev in "${events[@]}"; do
    chain compat=1.1
    printf '[inject-error]\nevent = "%s"\n' "$ev" | tee "$QDIR/e.conf" >"$CDIR/e.conf"
    same_img "$ev: the emptying fails as with qemu-img" commit blkdebug:e.conf:t.qcow2
    same_io "$ev: the next open repairs as qemu-io's" -c close t.qcow2
    same_img "$ev: then check agrees" check t.qcow2
done

# Without failures: the same small file, clean, and it takes new data.
for opts in compat=1.1 lazy_refcounts=on cluster_size=4k; do
    chain "$opts"
    same_img "[$opts] commit" commit t.qcow2
    is "$(stat -c %s "$CDIR/t.qcow2")" "$(stat -c %s "$QDIR/t.qcow2")" \
        "[$opts] the emptied file is as long as qemu-img's"
    same_img "[$opts] check of the emptied image" check t.qcow2
    "$CALF_IO" -c 'write -P 7 64k 64k' "$CDIR/t.qcow2" >/dev/null
    ok "[$opts] new data reads back with qemu-io" \
        qemu-io -c 'read -P 5 0 64k' -c 'read -P 7 64k 64k' "$CDIR/t.qcow2"
    ok "[$opts] qemu-img check clean after the new write" qemu-img check -q "$CDIR/t.qcow2"
done
done_testing
