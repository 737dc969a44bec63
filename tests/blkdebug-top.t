#!/bin/bash
# blkdebug as the top node over a format ("driver=blkdebug,image.driver=
# qcow2", QEMU's iotests 177, 197, 204) and its request limits (align,
# max-transfer, opt/max-write-zero, opt/max-discard): the same options
# on the same images give calf-io what they give qemu-io, and what calf
# wrote reads back (and maps) as what qemu-io wrote.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 35

fresh() { # a new image, the same in both dirs
    in_both rm -f t.qcow2
    in_both qemu-img create -q -f qcow2 -o "cluster_size=${2:-512}" t.qcow2 "${1:-1M}"
}

# same_result DESC: the images read and map the same
same_result() {
    is "$(cd "$CDIR" && qemu-io -c 'read -v 0 16k' t.qcow2 | filter_io)" \
        "$(cd "$QDIR" && qemu-io -c 'read -v 0 16k' t.qcow2 | filter_io)" "$1: same data"
    is "$(cd "$CDIR" && qemu-img map --output=json t.qcow2)" \
        "$(cd "$QDIR" && qemu-img map --output=json t.qcow2)" "$1: same allocation"
}

top=driver=blkdebug,image.driver=qcow2

fresh
same_io "blkdebug: name under a top blkdebug: writes and reads" \
    -c "open -o $top,align=4k,max-transfer=8k blkdebug::t.qcow2" \
    -c 'write -P 0x33 1000 20k' -c 'read -P 0x33 1000 20k' -c map
same_result "top blkdebug, align 4k"

# Writes inside one align block, and scattered ones, keep the rest of it.
fresh
in_both qemu-io -c 'write -P 0x22 0 16k' t.qcow2
same_io "small writes under align=4k" \
    -c "open -o $top,align=4k blkdebug::t.qcow2" -c 'write -P 0x55 4100 100' \
    -c 'writev -P 0x66 9000 300 700' -c 'write -z 13000 50' -c map
same_result "small writes under align 4k"

# A piece of a write-zeroes request below opt-write-zero is written as
# zeroed data: only the aligned middle is left unallocated.
fresh
in_both qemu-io -c 'write -P 0x22 0 16k' t.qcow2
same_io "write-zeroes cut by opt-write-zero" \
    -c "open -o $top,opt-write-zero=3k blkdebug::t.qcow2" -c 'write -z 1k 10k' -c map
same_result "opt-write-zero 3k"

fresh
in_both qemu-io -c 'write -P 0x22 0 16k' t.qcow2
same_io "write-zeroes cut by max-write-zero" \
    -c "open -o $top,align=1k,opt-write-zero=2k,max-write-zero=4k blkdebug::t.qcow2" \
    -c 'write -z 1536 9k' -c map
same_result "max-write-zero 4k"

# A discard below the alignment does nothing; a larger one is cut at
# opt-discard boundaries.
fresh
in_both qemu-io -c 'write -P 0x44 0 16k' t.qcow2
same_io "discards under align=4k" \
    -c "open -o $top,align=4k blkdebug::t.qcow2" -c 'discard 0 2k' -c 'discard 4k 3k' \
    -c 'read -P 0x44 0 2k' -c map
same_result "discard under align 4k"

fresh
in_both qemu-io -c 'write -P 0x44 0 16k' t.qcow2
same_io "discard cut by opt-discard and max-discard" \
    -c "open -o $top,align=1k,opt-discard=3k,max-discard=6k blkdebug::t.qcow2" \
    -c 'discard 512 14k' -c map
same_result "opt-discard 3k"

# A plain file name and a config file: the rules act on the image.
fresh
printf '[inject-error]\nevent = "write_aio"\nerrno = "28"\n' | tee "$QDIR/e.conf" >"$CDIR/e.conf"
same_io "plain name with config= under a top blkdebug" \
    -c "open -o $top,config=e.conf t.qcow2" -c 'read -P 0 0 4k'

# A top blkdebug sees QEMU's block layer events and the guest's
# requests, not the format's code points or its host file.
for ev in write_aio l2_update pwritev pwritev_zero pwritev_done cor_write; do
    printf '[inject-error]\nevent = "%s"\nerrno = "28"\n' $ev | tee "$QDIR/e.conf" >"$CDIR/e.conf"
    fresh
    same_io "top blkdebug, rule on $ev" -c "open -o $top,config=e.conf t.qcow2" \
        -c 'write -P 1 0 4k' -c 'write -z 8k 4k' -c 'read -P 1 0 4k' -c flush
done

# Under align, the padding reads and the writes they pad: QEMU's events
# in its order, a failed padding read that does not fail the write, and
# write-zeroes whose partial blocks are written as data.
for ev in pwritev_rmw_head pwritev_rmw_after_head pwritev_rmw_tail pwritev_rmw_after_tail \
    pwritev pwritev_zero; do
    printf '[inject-error]\nevent = "%s"\nerrno = "28"\nonce = "on"\n' $ev |
        tee "$QDIR/e.conf" >"$CDIR/e.conf"
    fresh
    same_io "align=4k, once rule on $ev" -c "open -o $top,config=e.conf,align=4k t.qcow2" \
        -c 'write 0 4k' -c 'write 4k 1k' -c 'write 7k 2k' -c 'write 13k 8k' \
        -c 'write -z 3k 2k' -c 'write -z 12k 8k' -c 'write -z 21k 8k' -c 'read 0 4k'
done

# Copy-on-read (iotest 197): a rule armed by cor_write on the sector of
# an allocated cluster does not touch its copy, and the read of that
# cluster came before it.
fresh
in_both qemu-img create -q -f qcow2 -b t.qcow2 -F qcow2 w.qcow2
in_both qemu-io -c 'write -P 5 64k 64k' t.qcow2
in_both qemu-io -c 'write -z -u 0 512' w.qcow2
printf '[inject-error]\nevent = "cor_write"\nsector = "0"\n' | tee "$QDIR/c.conf" >"$CDIR/c.conf"
same_io "cor_write rule after the allocated cluster's read" \
    -c "open -C -o $top,config=c.conf w.qcow2" -c 'read 0 128k' -c 'read -P 5 64k 4k' \
    -c 'read -P 0 0 512'
is "$(cd "$CDIR" && qemu-img map --output=json w.qcow2)" \
    "$(cd "$QDIR" && qemu-img map --output=json w.qcow2)" "copy-on-read: same allocation"

# Rules of the "none" event are active from the open; block-status ones
# fail map and alloc as qemu-io's do.
fresh
in_both qemu-io -c 'write 0 64k' t.qcow2
printf '[inject-error]\nevent = "none"\niotype = "block-status"\nsector = "8"\n' |
    tee "$QDIR/s.conf" >"$CDIR/s.conf"
same_io "event none, iotype block-status" -c "open -o $top,config=s.conf t.qcow2" -c map \
    -c 'alloc 0 512' -c 'alloc 4k 512' -c 'read 0 4k'

# QEMU's checks of the limits, in its words.
bad=(align=3000 align=4k,max-transfer=1000 opt-write-zero=3k,max-write-zero=4k
     align=1k,opt-discard=1536 align=1k,opt-discard=2k,max-discard=3k align=x max-transfer=4G)
out_c= out_q=
for o in "${bad[@]}"; do
    out_c+=$(run_capture "$CDIR" "$CALF_IO" -c "open -o $top,$o blkdebug::t.qcow2")$'\n'
    out_q+=$(run_capture "$QDIR" qemu-io -c "open -o $top,$o blkdebug::t.qcow2")$'\n'
done
is "$out_c" "$out_q" "bad limits refused with qemu-io's messages"
