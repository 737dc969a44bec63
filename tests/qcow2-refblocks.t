#!/bin/bash
# New refcount blocks are hooked into the refcount table at the next sync
# (block/qcow2-refcount.c, create_refblock): an image that grows by many
# of them must come out clean, read back what was written, and survive a
# crash in between with at most leaked clusters.  4 KiB clusters with
# 64-bit refcounts need a new block every 2 MiB of host file; a two-table
# L2 cache writes L2 tables back (after a sync) all the way through.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
driver_check qcow2

img=$TMP/r.qcow2
opts=cluster_size=4k,refcount_bits=64
# 512 scattered 64 KiB writes (32 MiB of new clusters, ~16 new refcount
# blocks) over a 256 MiB image, each with its own pattern
cmds() {
    local i
    for ((i = 0; i < 512; i++)); do
        echo "write -q -P $(( i % 250 + 1 )) $(( (i * 997 % 4096) * 65536 )) 64k"
    done
}
cmds > "$TMP/cmds"
sed 's/^write -q/read -q/' "$TMP/cmds" > "$TMP/reads"
io_opts="driver=qcow2,file.filename=$img,l2-cache-size=8k"

# a clean run: everything hooked up at close
qemu-img create -q -f qcow2 -o $opts "$img" 256M
blocks0=$(qemu-img check --output=json "$img" | grep -o '"image-end-offset": [0-9]*')
"$CALF_IO" --image-opts "$io_opts" < "$TMP/cmds" > "$TMP/out" 2>&1
is "$(sed 's/[a-z]*-io> //g' "$TMP/out")" "" "written through a small L2 cache"
ok "qemu-img check is clean" qemu-img check -q "$img"
qemu-io -f qcow2 "$img" < "$TMP/reads" > "$TMP/out" 2>&1
is "$(sed 's/[a-z]*-io> //g' "$TMP/out" | head -3)" "" "qemu-io reads every write back"
is "$(qemu-img info --output=json "$img" | grep -c '"corrupt": true')" 0 "not marked corrupt"
[ "$(qemu-img check --output=json "$img" | grep -o '"image-end-offset": [0-9]*')" != "$blocks0" ] &&
    pass "the image grew" || fail "the image grew"

# a crash part way: the L2 tables written so far point only at clusters
# whose refcount blocks are hooked up on disk
qemu-img create -q -f qcow2 -o $opts "$img" 256M
( { head -300 "$TMP/cmds"; echo abort; } | "$CALF_IO" --image-opts "$io_opts" ) >/dev/null 2>&1
if consistent "$img"; then pass "after abort: no corruption ($why)"
else fail "after abort: no corruption" "$why"; fi
l2=$(qemu-img map --output=json "$img" | grep -c '"data": true')
[ "$l2" -gt 0 ] && pass "after abort: L2 tables written before the crash map data ($l2 extents)" ||
    fail "after abort: some L2 tables were written before the crash"
"$CALF_IMG" check -q -r leaks "$img" >/dev/null 2>&1
ok "after abort: check -r leaks makes it clean" qemu-img check -q "$img"

# the same through calf-img commit into a 4 KiB-cluster base, against
# qemu-img commit
rm -f "$QDIR"/* "$CDIR"/*
in_both qemu-img create -q -f qcow2 -o $opts base.qcow2 256M
in_both qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
(cd "$CDIR" && qemu-io -f qcow2 top.qcow2 < "$TMP/cmds" >/dev/null)
cp "$CDIR/top.qcow2" "$QDIR/top.qcow2"
(cd "$QDIR" && qemu-img commit -q top.qcow2)
(cd "$CDIR" && "$CALF_IMG" commit -q top.qcow2)
if qemu-img check -q "$CDIR/base.qcow2" && qemu-img compare -q "$CDIR/base.qcow2" "$QDIR/base.qcow2"
then pass "commit: base clean and the same as qemu-img's"
else fail "commit: base clean and the same as qemu-img's"; fi
# a failed sync is never made good by a retry (Linux marks the pages
# whose writeback failed clean, so a second fdatasync returns 0 without
# writing them): the second write's data cluster goes out, then the sync
# before its L2 table fails (strace injects EIO into that fdatasync);
# every later flush of the image must fail without another fdatasync,
# and the L2 table that would point at the data is never written.
# (Before, the sync stayed owed and the next flush retried it and then
# wrote the L2 table: stricter now, as QEMU's file-posix.)
if command -v strace >/dev/null && strace -qq -e inject=fdatasync:error=EIO:when=1 true 2>/dev/null; then
    fimg=$TMP/f.qcow2
    ftrace() {
        qemu-img create -q -f qcow2 "$fimg" 64M
        strace -f -qq -e trace=pwrite64,pwritev,fdatasync "$@" "$CALF_IO" -c "write -q -P 1 0 64k" \
            -c flush -c "write -q -P 2 64k 64k" -c flush "$fimg" 2>&1
    }
    # the first fdatasync after the second write's data
    n=$(ftrace | awk '/iov_base="\\2\\2/ { d = 1 } /^fdatasync/ { n++; if (d) { print n; exit } }')
    ftrace -e inject=fdatasync:error=EIO:when=${n:-1} > "$TMP/trace"
    grep -q INJECTED "$TMP/trace" && grep -q "write failed" "$TMP/trace" &&
        pass "the sync before the L2 table failed the write" ||
        fail "the sync before the L2 table failed the write" "$(cat "$TMP/trace")"
    after=$(awk '/INJECTED/ { f = 1; next } f && /^fdatasync/ { print "sync"; exit }
                 f && /^pwrite/ { print "write"; exit }' "$TMP/trace")
    is "$after" "" "after the failed sync, no sync is tried and nothing is written"
    grep -q "flush failed\|Failed to flush" "$TMP/trace" &&
        pass "after the failed sync, the flush command fails" ||
        fail "after the failed sync, the flush command fails" "$(cat "$TMP/trace")"
    # exit 3: leaks only (the data cluster whose L2 entry never went out)
    qemu-img check -q "$fimg" >/dev/null 2>&1; st=$?
    if [ $st = 0 ] || [ $st = 3 ]; then pass "after the failed sync: no corruption (leaks allowed)"
    else fail "after the failed sync: no corruption (leaks allowed)" "$(qemu-img check "$fimg" 2>&1)"; fi
    is "$(qemu-io -f qcow2 -c 'read -q -P 1 0 64k' -c 'read -q -P 0 64k 64k' "$fimg" 2>&1)" "" \
        "after the failed sync: the first write stays, nothing points at the second"
else
    skip "strace with fault injection is not installed"
fi
# a LUKS region in 512-byte clusters needs 16 new refcount blocks: their
# refcount table entries (the one write into the table, at 512) and a
# sync come before the header that names the region is written
if command -v strace >/dev/null; then
    rm -f "$TMP/l.qcow2"
    strace -f -qq -e trace=pwrite64,pwritev,fdatasync "$CALF_IMG" create -q -f qcow2 \
        --object secret,id=s0,data=abc -o cluster_size=512,encrypt.format=luks,encrypt.key-secret=s0 \
        "$TMP/l.qcow2" 1M > "$TMP/trace" 2>&1
    order=$(awk '/^fdatasync/ { if (hook && !sync) sync = NR }
                 /^pwrite/ { off = $(NF - 2); sub(/\)/, "", off); off += 0
                             if (off == 0) hdr = NR
                             if (off >= 512 && off < 1024) { hook = NR; sync = 0 } }
                 END { print (hook && sync && sync < hdr) ? "ordered" : "hook " hook " sync " sync " header " hdr }' "$TMP/trace")
    is "$order" ordered "luks, 512-byte clusters: table entries, sync, then the header"
    ok "luks, 512-byte clusters: qemu-img check is clean" qemu-img check -q \
        --object secret,id=s0,data=abc --image-opts driver=qcow2,file.filename="$TMP/l.qcow2",encrypt.key-secret=s0
    is "$(qemu-img info --output=json "$TMP/l.qcow2" | grep -o '"format": "luks"')" '"format": "luks"' \
        "luks, 512-byte clusters: qemu-img reads the encryption header"
else
    skip "strace is not installed"
fi
done_testing
