#!/bin/bash
# Persistent dirty bitmaps of qcow2 (issue 16): calf-img bitmap, info,
# check, measure and convert --bitmaps against qemu-img.
#  - calf-img edits bitmaps of an image and qemu-img edits the same
#    image in the same way: real qemu-img then reads both alike (info,
#    check) and copies their bits (convert --bitmaps) into images that
#    are byte for byte the same;
#  - calf-img reads bitmaps that qemu-img made: info, measure and
#    convert --bitmaps print and make what qemu-img's do;
#  - check counts bitmap clusters and check -r keeps them;
#  - guest writes by calf-io are recorded in the enabled bitmaps as
#    qemu-io records them; killed mid-session, calf-io leaves them in-use
#    (as QEMU does after a crash), never silently stale.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 57

# setup FILE: the same 64 MiB image with data in both directories
setup() {
    in_both qemu-img create -f qcow2 "$1" 64M
    in_both qemu-io -c "write -P 0x11 0 3M" -c "write -P 0x22 20M 1M" "$1"
}

# both DESC ARGS...: qemu-img ARGS in $QDIR, calf-img ARGS in $CDIR: same
# output and status
both() { same_img "$@"; }

# info_without_size DIR FILE: qemu-img info of FILE in DIR, disk usage
# left out (freed clusters are holes in calf's files)
info_without_size() {
    (cd "$1" && qemu-img info "$2" | grep -v '^disk size:')
}

# bits_like_qemu DESC FILE: qemu-img copies the bitmaps of the two FILEs
# into images that are the same byte for byte: the same bitmaps, bits
# included
bits_like_qemu() {
    rm -f "$TMP/bq.qcow2" "$TMP/bc.qcow2"
    qemu-img convert --bitmaps -O qcow2 "$QDIR/$2" "$TMP/bq.qcow2" &&
    qemu-img convert --bitmaps -O qcow2 "$CDIR/$2" "$TMP/bc.qcow2"
    ok "$1" cmp "$TMP/bq.qcow2" "$TMP/bc.qcow2"
}

# --- the command line ---
setup a.qcow2
both "no action" bitmap a.qcow2 b0
both "no bitmap name" bitmap --add a.qcow2
both "-g without --add" bitmap -g 64k --remove a.qcow2 b0
both "-F without -b" bitmap -F qcow2 --merge x a.qcow2 b0
both "-b without --merge" bitmap -b a.qcow2 --add a.qcow2 b0
both "bad granularity" bitmap --add -g 1000 a.qcow2 b0
both "empty name" bitmap --add a.qcow2 ''
both "unknown bitmap" bitmap --remove a.qcow2 nope
in_both truncate -s 1M r.raw
both "raw has no bitmap to remove" bitmap --remove -f raw r.raw b0
both "nor to merge from" bitmap --add --merge b0 -b r.raw -F raw a.qcow2 b0

# --- calf edits, qemu-img reads ---
both "add" bitmap --add a.qcow2 b1
both "add disabled, 512-byte granularity" bitmap --add -g 512 --disable a.qcow2 b2
both "add twice" bitmap --add a.qcow2 b1
in_both qemu-io -c "write -P 0x33 8M 100k" a.qcow2 # records in neither: offline
both "add, merge b1 and clear b1 at once" bitmap --add -g 1M --merge b1 --clear a.qcow2 b3
is "$(info_without_size "$CDIR" a.qcow2)" "$(info_without_size "$QDIR" a.qcow2)" \
   "qemu-img info lists calf's bitmaps as its own"
ok "qemu-img check: calf's bitmap clusters are no leaks" \
   bash -c "cd '$CDIR' && qemu-img check a.qcow2 >/dev/null"

# bits: make them differ from zero first, from QEMU's own writes
setup m.qcow2
in_both qemu-img bitmap --add -g 64k m.qcow2 src
(cd "$QDIR" && qemu-io -c "write 1M 100k" -c "write 30M 512" m.qcow2 >/dev/null)
cp "$QDIR/m.qcow2" "$CDIR/m.qcow2"
both "merge into a finer bitmap" bitmap --add -g 512 --merge src m.qcow2 fine
both "merge into a coarser bitmap" bitmap --add -g 4M --merge src m.qcow2 coarse
both "merge from another file" bitmap --add --merge src -b m.qcow2 -F qcow2 a.qcow2 other
both "disable, then enable" bitmap --disable --enable m.qcow2 src
both "remove" bitmap --remove m.qcow2 fine
bits_like_qemu "qemu-img copies the same bits from calf's bitmaps" m.qcow2

# --- qemu-img edits, calf reads ---
cp "$QDIR/m.qcow2" "$CDIR/qm.qcow2"
cp "$QDIR/m.qcow2" "$QDIR/qm.qcow2"
both "info of qemu-img's bitmaps" info qm.qcow2
both "info --output=json of qemu-img's bitmaps" info --output=json qm.qcow2
both "measure with bitmaps" measure -O qcow2 -o cluster_size=2M qm.qcow2
(cd "$QDIR" && rm -f c.qcow2 q.qcow2 &&
 "$CALF_IMG" convert --bitmaps -O qcow2 m.qcow2 c.qcow2 &&
 qemu-img convert --bitmaps -O qcow2 m.qcow2 q.qcow2)
ok "convert --bitmaps: calf's copy is qemu-img's byte for byte" cmp "$QDIR/c.qcow2" "$QDIR/q.qcow2"
in_both qemu-img create -f qcow2 n.qcow2 64M
in_both qemu-img bitmap --add n.qcow2 src
both "convert -n --bitmaps stops at a name the target has" convert -n --bitmaps -O qcow2 \
     qm.qcow2 n.qcow2
bits_like_qemu "and keeps what it copied before, as qemu-img does" n.qcow2

# --- resize: the bitmaps follow, the new area clean ---
in_both cp qm.qcow2 rz.qcow2
both "grow an image with bitmaps" resize rz.qcow2 100M
bits_like_qemu "grown: the same bitmaps and bits as qemu-img's" rz.qcow2
both "shrink it" resize --shrink rz.qcow2 30M
bits_like_qemu "shrunk: the same bitmaps and bits as qemu-img's" rz.qcow2

# --- internal snapshots: taken, but no revert under bitmaps ---
in_both cp qm.qcow2 sn.qcow2
both "snapshot -c with bitmaps" snapshot -c s1 sn.qcow2
both "snapshot -a is refused with bitmaps" snapshot -a s1 sn.qcow2

# --- check ---
both "check of an image with bitmaps" check qm.qcow2
cp "$QDIR/m.qcow2" "$TMP/r.qcow2"
"$CALF_IMG" check -r all "$TMP/r.qcow2" >/dev/null 2>&1
ok "calf-img check -r all keeps every bitmap cluster" cmp "$QDIR/m.qcow2" "$TMP/r.qcow2"

# --- guest writes: recorded in enabled bitmaps, as qemu-io records them ---
setup g.qcow2
in_both qemu-img bitmap --add g.qcow2 on
in_both qemu-img bitmap --add -g 512 --disable g.qcow2 off
in_both qemu-img bitmap --add -g 4M g.qcow2 big
"$CALF_IO" -c "read -P 0x11 0 64k" "$CDIR/g.qcow2" >/dev/null
is "$(cd "$CDIR" && qemu-img info g.qcow2 | grep -c in-use)" 0 \
   "a calf-io session that only reads leaves the bitmaps valid"
W=(-c "write -P 0x44 100k 64k" -c "write -z 5M 1M" -c "discard 9M 64k" -c "write 63M 512")
"$CALF_IO" "${W[@]}" "$CDIR/g.qcow2" >/dev/null
(cd "$QDIR" && qemu-io "${W[@]}" g.qcow2 >/dev/null)
is "$(info_without_size "$CDIR" g.qcow2)" "$(info_without_size "$QDIR" g.qcow2)" \
   "after calf-io's writes qemu-img lists the bitmaps as after qemu-io's"
bits_like_qemu "calf-io records the writes in the bits qemu-io sets" g.qcow2

# killed mid-session: the bitmap that recorded writes is left in-use
mkfifo "$TMP/fifo"
"$CALF_IO" "$CDIR/g.qcow2" <"$TMP/fifo" >/dev/null 2>&1 & iopid=$!
exec 7>"$TMP/fifo"
echo "write -P 0x55 200k 4k" >&7
for _ in $(seq 50); do
    [ "$(cd "$CDIR" && qemu-img info -U g.qcow2 | grep -c in-use)" = 2 ] && break
    sleep 0.1
done
kill -9 $iopid
wait $iopid 2>/dev/null
exec 7>&-
is "$(cd "$CDIR" && qemu-img info g.qcow2 | sed -n '/bitmaps:/,/refcount/p' | tr -s ' \n' ' ')" \
   " bitmaps: [0]: flags: [0]: in-use [1]: auto name: on granularity: 65536 [1]: flags: name: \
off granularity: 512 [2]: flags: [0]: in-use [1]: auto name: big granularity: 4194304 refcount \
bits: 16 " "a calf-io killed after a write leaves the enabled bitmaps in-use"
cp "$CDIR/g.qcow2" "$QDIR/g.qcow2"
both "an in-use bitmap cannot be used" bitmap --clear g.qcow2 on
both "an image with an in-use bitmap is not resized" resize g.qcow2 100M
both "convert refuses an in-use bitmap" convert --bitmaps -O qcow2 g.qcow2 o.qcow2
both "convert --skip-broken-bitmaps" convert --bitmaps --skip-broken-bitmaps -O qcow2 g.qcow2 \
     s.qcow2
ok "--skip-broken-bitmaps copies the others as qemu-img does" cmp "$QDIR/s.qcow2" "$CDIR/s.qcow2"

# --- hostile bitmap metadata: one clear error, never a crash or a hang ---
# poke FILE WHAT VALUE: rewrites a field of the bitmaps extension (ext:
# nb, dirsize, diroff) or of the first directory entry (tbloff, tblsize,
# gran, namelen) or its first table entry (tbl0)
poke() {
    python3 - "$@" <<'PY'
import struct, sys
path, what, val = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
f = open(path, 'r+b')
h = f.read(65536)
pos = struct.unpack('>I', h[100:104])[0]
while True:
    t, l = struct.unpack('>II', h[pos:pos + 8])
    if t == 0x23852875 or t == 0:
        break
    pos += 8 + (l + 7) // 8 * 8
ext = pos + 8
n, _, dsize, doff = struct.unpack('>IIQQ', h[ext:ext + 24])
f.seek(doff)
ent = f.read(24)
toff = struct.unpack('>Q', ent[0:8])[0]
where = {'nb': (ext, '>I'), 'dirsize': (ext + 8, '>Q'), 'diroff': (ext + 16, '>Q'),
         'tbloff': (doff, '>Q'), 'tblsize': (doff + 8, '>I'), 'gran': (doff + 17, '>B'),
         'namelen': (doff + 18, '>H'), 'tbl0': (toff, '>Q')}[what]
f.seek(where[0])
f.write(struct.pack(where[1], val))
PY
}
hostile=("nb 0" "nb 70000" "dirsize 0x7fffffff" "diroff 0x10200" "diroff 0x7fff0000"
         "tbloff 0x7fff0000" "tblsize 0x7fffffff" "gran 40" "namelen 0xffff")
for h in "${hostile[@]}"; do
    cp "$QDIR/qm.qcow2" "$TMP/h.qcow2"
    poke "$TMP/h.qcow2" $h
    out=$("$CALF_IMG" info "$TMP/h.qcow2" 2>&1); rc=$?
    if [ $rc = 1 ] && [ "$(echo "$out" | wc -l)" = 1 ]; then pass "hostile $h: refused"
    else fail "hostile $h: exit $rc" "$out"; fi
done
cp "$QDIR/qm.qcow2" "$TMP/h.qcow2"
poke "$TMP/h.qcow2" tbl0 0x7fff0000000001fe
out=$("$CALF_IMG" check "$TMP/h.qcow2" 2>&1); rc=$?
is "$rc $(echo "$out" | grep -c ERROR)" "2 1" "a corrupt table entry is one error of check"
out=$("$CALF_IMG" convert --bitmaps -O qcow2 "$TMP/h.qcow2" "$TMP/o.qcow2" 2>&1); rc=$?
is "$rc $(echo "$out" | grep -c 'corrupt table entry')" "1 1" \
   "convert --bitmaps stops at the corrupt entry with one error"
"$CALF_IO" -c "write 0 64k" "$TMP/h.qcow2" >/dev/null 2>&1; rc=$?
is "$rc $("$CALF_IMG" info "$TMP/h.qcow2" | grep -c in-use)" "0 1" \
   "a write goes on past a bitmap with a corrupt table, which is left in-use"
