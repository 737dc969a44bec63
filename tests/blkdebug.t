#!/bin/bash
# blkdebug fault injection (block/blkdebug.c): QEMU's "blkdebug:CONF:IMG"
# filenames, config syntax and event names.  The same rules on the same
# images make calf-io fail where qemu-io fails, with the same words; the
# image calf leaves behind has no corruption (leaks allowed) and what it
# wrote reads back with qemu-io.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

# conf FILE SECTION KEY=VALUE...: a one-section config in both dirs
conf() {
    local f=$1 sec=$2 kv
    shift 2
    {
        echo "[$sec]"
        for kv in "$@"; do echo "${kv%%=*} = \"${kv#*=}\""; done
    } | tee "$QDIR/$f" >"$CDIR/$f"
}

fresh() { # a new image, the same in both dirs
    in_both rm -f t.qcow2
    in_both qemu-img create -q -f qcow2 -o "cluster_size=${2:-1k}" t.qcow2 "${1:-1G}"
}

no_corruption() { # DESC: calf's image passes qemu-img check, leaks allowed
    if consistent "$CDIR/t.qcow2"; then pass "$1 ($why)"; else fail "$1" "$why"; fi
}

events=(l1_update l2_alloc_write l2_update write_aio refblock_load refblock_update_part
        cluster_alloc)
grow=(l1_grow_alloc_table l1_grow_write_table l1_grow_activate_table)
plan $(( ${#events[@]} * 2 * 2 + ${#grow[@]} * 2 * 2 + 29 ))

# Every code point, a one-off failure and a lasting one: the write fails
# (or the flush at close does) exactly as with qemu-io, and the image
# stays consistent.
for ev in "${events[@]}" "${grow[@]}"; do
    for once in on off; do
        for e in 5 28; do
            [ "$e" = 28 ] && [ "$once" = off ] && continue
            [ "$e" = 5 ] && [ "$once" = on ] && continue
            conf b.conf inject-error event=$ev errno=$e once=$once
            fresh
            [ "$ev" = l2_update ] && in_both qemu-io -c 'write 0 512' t.qcow2
            b=""
            [[ $ev == l1_grow* ]] && b=-b
            same_io "$ev, once=$once, errno $e: same outcome as qemu-io" \
                -c "write $b -P 0x5a 0 128k" blkdebug:b.conf:t.qcow2
            no_corruption "$ev, once=$once: no corruption"
        done
    done
done

# A rule with a sector fails only requests that cover it: sector 643 of
# the file is the fourth of the data cluster (at 320k, after the header,
# refcount table and block, L1 and L2 tables).
conf s.conf inject-error event=read_aio sector=643 errno=5
fresh 1M 64k
in_both qemu-io -c 'write -P 0x11 0 64k' t.qcow2
same_io "sector=643 fails reads over that host sector only" -c 'read -P 0x11 0 1k' \
    -c 'read -P 0x11 1k 1k' -c 'read -P 0x11 1536 1024' blkdebug:s.conf:t.qcow2

# errno 0 injects nothing, and a once rule with it stays in front of the
# rules after it.
{ printf '[inject-error "quiet"]\nevent = "read_aio"\nerrno = "0"\nonce = "on"\n'
  printf '[inject-error]\nevent = "read_aio"\nerrno = "5"\n'; } |
    tee "$QDIR/z.conf" >"$CDIR/z.conf"
same_io "errno=0 masks the rules after it" -c 'read -P 0x11 0 4k' -c 'read -P 0x11 0 4k' \
    blkdebug:z.conf:t.qcow2

# set-state: the first data write moves to state 2, where the rule arms.
{ printf '[set-state]\nevent = "write_aio"\nstate = "1"\nnew_state = "2"\n'
  printf '[inject-error]\nevent = "write_aio"\nstate = "2"\nerrno = "28"\n'; } |
    tee "$QDIR/st.conf" >"$CDIR/st.conf"
fresh 1M 64k
same_io "set-state arms a rule on the second write" -c 'write -P 1 0 4k' \
    -c 'write -P 2 64k 4k' -c 'write -P 3 128k 4k' blkdebug:st.conf:t.qcow2

# An overwrite of clusters that lie one after the other in the file, a
# preallocated zero one among them, is one data write as with qemu-io:
# the rule that the first write_aio arms never fires (iotest 066).
fresh 1M 64k
in_both qemu-io -c 'write -P 1 0 192k' -c 'write -z 64k 64k' t.qcow2
same_io "an overwrite of clusters in a row is one write" -c 'write -P 2 0 192k' \
    -c 'read -P 2 0 192k' blkdebug:st.conf:t.qcow2
same_img "the overwrite keeps the clusters where they were" map --output=json t.qcow2

# iotype=flush: the data lands, the writethrough flush fails the write.
conf f.conf inject-error event=write_aio iotype=flush errno=5 once=on
fresh 1M 64k
same_io "iotype=flush fails the flush of a writethrough write" \
    -c 'write -P 7 0 4k' -c 'read -P 7 0 4k' blkdebug:f.conf:t.qcow2

# A one-off data write failure leaks nothing: the retry reuses the space.
conf w.conf inject-error event=write_aio errno=5 once=on
fresh 64M 64k
same_io "write_aio once: the retry succeeds" -c 'write 0 1M' -c 'write 0 1M' \
    blkdebug:w.conf:t.qcow2
same_img "write_aio once: check finds no leak" check t.qcow2

# Lazy refcounts: the dirty bit covers what a failure leaves unwritten.
conf l.conf inject-error event=l2_update errno=5
in_both rm -f t.qcow2
in_both qemu-img create -q -f qcow2 -o cluster_size=1k,lazy_refcounts=on t.qcow2 1G
"$CALF_IO" -c 'write -P 9 0 128k' "blkdebug:$CDIR/l.conf:$CDIR/t.qcow2" >/dev/null 2>&1
no_corruption "l2_update under lazy refcounts: no corruption"

# calf-img reads through blkdebug too (iotest 074).
conf r.conf inject-error event=read_aio errno=5
fresh 1M 4k
in_both qemu-io -c 'write -P 1 512 512' t.qcow2
in_both qemu-img create -q -f qcow2 u.qcow2 0
same_img "compare: the read error, and the size warning after it" compare \
    blkdebug:r.conf:t.qcow2 u.qcow2

# A backing file named blkdebug:... : commit writes into it through the
# rules and fails the way qemu-img's commit job does.
conf c.conf inject-error event=write_aio errno=28 once=on
in_both rm -f base.qcow2 top.qcow2
in_both qemu-img create -q -f qcow2 base.qcow2 1M
in_both qemu-img create -q -f qcow2 -b blkdebug:c.conf:base.qcow2 -F qcow2 top.qcow2
in_both qemu-io -c 'write -P 3 0 64k' top.qcow2
same_img "commit into a blkdebug: backing file fails as qemu-img's" commit ./top.qcow2

# An error while a snapshot is deleted (iotest 217): the same words, the
# same leaks, and check -r leaks mends the COPIED flags once they are right.
conf d.conf inject-error event=cluster_free errno=5
fresh 64M 64k
in_both qemu-io -c 'write 0 64k' t.qcow2
in_both qemu-img snapshot -c foo t.qcow2
same_img "cluster_free during snapshot -d: qemu-img's errors" snapshot -d foo \
    blkdebug:d.conf:t.qcow2
same_img "... leaves the leaks qemu-img leaves" check t.qcow2
same_img "... which check -r leaks repairs as qemu-img does" check -r leaks t.qcow2

# Breakpoints (iotest 046): a write stops at write_aio, another one to the
# same cluster is issued meanwhile, both land once it is resumed.
fresh 1M 64k
in_both qemu-io -c 'write -P 1 0 128k' t.qcow2
in_both rm -f o.qcow2
in_both qemu-img create -q -f qcow2 -b t.qcow2 -F qcow2 o.qcow2
same_io "break, wait_break, resume: both writes land" -c 'break write_aio A' \
    -c 'aio_write -q -P 10 0x18000 0x2000' -c 'wait_break A' \
    -c 'aio_write -q -P 11 0x12000 0x2000' -c 'resume A' -c 'aio_flush' \
    -c 'read -q -P 1 0x10000 0x2000' -c 'read -q -P 11 0x12000 0x2000' \
    -c 'read -q -P 1 0x14000 0x4000' -c 'read -q -P 10 0x18000 0x2000' \
    -c 'read -q -P 1 0x1a000 0x6000' blkdebug::o.qcow2
same_img "... and the overlay checks clean" check o.qcow2
same_io "breakpoint errors in qemu-io's words" -c 'break nosuch A' -c 'resume A' \
    -c 'remove_break A' -c 'break write_aio B' -c 'remove_break B' blkdebug::o.qcow2
out=$(timeout 20 "$CALF_IO" -c 'break write_aio A' -c 'wait_break A' "blkdebug::$CDIR/o.qcow2")
is "$out" "Could not wait for breakpoint A: no request in flight" \
    "wait_break with no request on its way ends (qemu-io would hang)"
ok "a request still stopped at exit is let go, and lands" bash -c \
    "timeout 20 '$CALF_IO' -c 'break write_aio A' -c 'aio_write -q -P 5 0 4k' \
     -c 'wait_break A' 'blkdebug::$CDIR/o.qcow2' && qemu-io -c 'read -P 5 0 4k' '$CDIR/o.qcow2'"

# Bad configs: one clear error each, as qemu-io words it.
printf '[inject-error]\nevent = "nosuch"\n' | tee "$QDIR/e1.conf" >"$CDIR/e1.conf"
printf '[inject-error]\nerrno = "5"\n' | tee "$QDIR/e2.conf" >"$CDIR/e2.conf"
printf 'garbage\n' | tee "$QDIR/e3.conf" >"$CDIR/e3.conf"
printf '[inject-error]\nevent = "read_aio"\nfoo = "1"\n' | tee "$QDIR/e4.conf" >"$CDIR/e4.conf"
printf '[drive]\nfoo = "1"\n' | tee "$QDIR/e5.conf" >"$CDIR/e5.conf"
for c in missing e1 e2 e3 e4 e5; do
    same_io "config $c: refused with qemu-io's message" -c 'read 0 512' blkdebug:$c.conf:t.qcow2
done
same_io "no config path: refused" -c 'read 0 512' blkdebug:t.qcow2
same_io "an empty config path: no rules" -c 'read -P 0 0 512' blkdebug::u.qcow2

# VM state (read/write -b) is where QEMU keeps it, both ways.
fresh 64M 64k
"$CALF_IO" -c 'write -b -P 0x42 0 96k' "$CDIR/t.qcow2" >/dev/null
ok "calf-io write -b: qemu-io reads the VM state back" \
    qemu-io -c 'read -b -P 0x42 0 96k' -c 'read -P 0 0 64M' "$CDIR/t.qcow2"
qemu-io -c 'write -b -P 0x43 64k 64k' "$QDIR/t.qcow2" >/dev/null
ok "qemu-io write -b: calf-io reads the VM state back" \
    "$CALF_IO" -c 'read -b -P 0x43 64k 64k' -c 'read -b -P 0 0 64k' "$QDIR/t.qcow2"
done_testing
