#!/bin/bash
# qcow2 external data files (data_file, data_file_raw): guest data in a
# separate file at its guest offset, metadata in the image.  calf-img
# creates what qemu-img creates; what calf-io writes qemu-io reads and
# the other way round; a raw data file is the guest's view byte for byte;
# check, info and map print what qemu-img prints; amend, convert, resize
# and the refusals (snapshots, compression, compat=0.10) behave alike.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 43

W=(-c "write -P 0x11 0 64k" -c "write -P 0x22 100k 4k" -c "write -P 0x33 1M 3M"
   -c "write -z 1536k 512k" -c "write -P 0x44 5000 1000" -c "discard 3M 1M"
   -c "write -P 0x55 6M 192k" -c "write -z -u 6M 64k" -c "write -P 0x66 7M 1M")
R=(-c "read -P 0x11 0 5000" -c "read -P 0x44 5000 1000" -c "read -P 0x11 6000 59536"
   -c "read -P 0 64k 36k" -c "read -P 0x22 100k 4k" -c "read -P 0x33 1M 512k"
   -c "read -P 0 1536k 512k" -c "read -P 0x33 2M 1M" -c "read -P 0 3M 1M"
   -c "read -P 0 6M 64k" -c "read -P 0x55 6208k 128k" -c "read -P 0x66 7M 1M")

# A relative data file name is relative to the current directory (as in
# QEMU), so every tool runs in the directory of the image: in DIR, "c" for
# $CDIR and "q" for $QDIR.
in_dir() {
    local d=$CDIR; [ "$1" = q ] && d=$QDIR; shift
    (cd "$d" && "$@")
}

# io_ok DIR TOOL DESC ARGS...: every command of the script succeeded
io_ok() {
    local dir=$1 tool=$2 desc=$3 out; shift 3
    out=$(in_dir "$dir" "$tool" "$@" 2>&1)
    if [ $? -eq 0 ] && ! grep -q 'failed\|Pattern verification\|error' <<<"$out"; then
        pass "$desc"
    else
        fail "$desc" "$(head -5 <<<"$out")"
    fi
}

# --- create: the same image and data file as qemu-img's
same_img "create with data_file" create -f qcow2 -o data_file=t.data t.qcow2 8M
ok "the empty image is byte-identical to qemu-img's" cmp "$CDIR/t.qcow2" "$QDIR/t.qcow2"
is "$(stat -c %s "$CDIR/t.data")" "$(stat -c %s "$QDIR/t.data")" "the data file has the same size"

# --- calf-io writes, qemu-io reads; qemu-io writes, calf-io reads
io_ok c "$CALF_IO" "calf-io writes the script" "${W[@]}" t.qcow2
io_ok c qemu-io "qemu-io reads every pattern calf-io wrote" "${R[@]}" t.qcow2
io_ok q qemu-io "qemu-io writes the script" "${W[@]}" t.qcow2
io_ok q "$CALF_IO" "calf-io reads every pattern qemu-io wrote" "${R[@]}" t.qcow2
in_dir c qemu-img convert -O raw t.qcow2 "$TMP/c.raw"
in_dir q qemu-img convert -O raw t.qcow2 "$TMP/q.raw"
ok "both images hold the same guest data" cmp "$TMP/c.raw" "$TMP/q.raw"
ok "data clusters are at their guest offset (data files identical)" \
    cmp "$CDIR/t.data" "$QDIR/t.data"
out=$(in_dir c qemu-img check t.qcow2 2>&1)
is "$(head -1 <<<"$out")" "No errors were found on the image." "qemu-img check: no errors, no leaks"
same_img "check" check t.qcow2
same_img "check --output=json" check --output=json t.qcow2
same_img "map" map t.qcow2
same_img "map --output=json" map --output=json t.qcow2
is "$(cd "$CDIR" && "$CALF_IMG" info t.qcow2 | grep -v 'disk size')" \
   "$(cd "$QDIR" && qemu-img info t.qcow2 | grep -v 'disk size')" "info"

# --- data_file_raw: the data file is the guest's view
same_img "create with data_file_raw=on" create -f qcow2 -o data_file=r.data,data_file_raw=on \
    r.qcow2 8M
ok "the raw image is byte-identical to qemu-img's" cmp "$CDIR/r.qcow2" "$QDIR/r.qcow2"
io_ok c "$CALF_IO" "calf-io writes the script (raw)" "${W[@]}" r.qcow2
in_dir c qemu-img convert -O raw r.qcow2 "$TMP/guest.raw"
ok "the raw data file is the guest's view" cmp "$CDIR/r.data" "$TMP/guest.raw"
in_dir c "$CALF_IMG" resize r.qcow2 12M >/dev/null
io_ok c qemu-io "after growing, the new area reads zeros and maps 1:1" \
    -c "read -P 0x66 7M 1M" -c "read -P 0 8M 4M" r.qcow2
in_dir c qemu-img convert -O raw r.qcow2 "$TMP/guest.raw"
ok "after growing, the raw data file is still the guest's view" cmp "$CDIR/r.data" "$TMP/guest.raw"
# the image file is allocated as qemu-img's (its whole header cluster):
# map reads the preallocation heuristic off it (iotest 244)
same_img "create a raw image for map" create -q -f qcow2 \
    -o data_file=m.data,data_file_raw=on m.qcow2 64M
M=(-c "write -P 0x11 1M 4M" -c "discard 2M 2M" -c "write -z 3M 3M")
in_dir c "$CALF_IO" "${M[@]}" m.qcow2 >/dev/null
in_dir q qemu-io "${M[@]}" m.qcow2 >/dev/null
same_img "map of a raw image after writes, discards and zeros" map --output=json m.qcow2
# guest cluster 0 is at data file offset 0: an L2 entry with no offset
in_dir c "$CALF_IO" -c "write -P 9 0 64k" -c "discard 0 64k" -c "write -z 64k 64k" r.qcow2 \
    >/dev/null
in_dir c qemu-img convert -O raw r.qcow2 "$TMP/guest.raw"
ok "a discard of cluster 0 reaches the raw data file" cmp "$CDIR/r.data" "$TMP/guest.raw"

# --- convert into a data file; amend renames it
in_dir c "$CALF_IMG" convert -O qcow2 -o data_file=c.data t.qcow2 c.qcow2
ok "convert -o data_file= keeps the guest data" in_dir c qemu-img compare t.qcow2 c.qcow2
in_dir c "$CALF_IMG" amend -o data_file=moved.data c.qcow2
mv "$CDIR/c.data" "$CDIR/moved.data"
ok "amend -o data_file= renames it (qemu-img opens the image)" \
    in_dir c qemu-img compare t.qcow2 c.qcow2

# --- shrink and commit drop data clusters: no refcount may change for them
in_both qemu-img create -q -f qcow2 -o data_file=k.data,cluster_size=4k k.qcow2 8M
in_both qemu-io -c "write -P 3 0 8M" k.qcow2
in_dir c "$CALF_IMG" resize --shrink k.qcow2 1M >/dev/null
in_dir q qemu-img resize --shrink k.qcow2 1M >/dev/null
same_img "shrink, then check" check k.qcow2
in_both qemu-img create -q -f qcow2 -b k.qcow2 -F qcow2 -o data_file=u.data u.qcow2
in_both qemu-io -c "write -P 4 0 512k" u.qcow2
in_dir c "$CALF_IMG" commit -q u.qcow2
in_dir q qemu-img commit -q u.qcow2
same_img "commit empties an image with a data file, then check" check u.qcow2

# --- refusals, with qemu-img's messages
same_img "data_file_raw without data_file" create -f qcow2 -o data_file_raw=on x.qcow2 1M
same_img "compat=0.10 with data_file" create -f qcow2 -o compat=0.10,data_file=x.data x.qcow2 1M
same_img "snapshots are refused" snapshot -c s1 t.qcow2
same_io "compressed writes are refused" -c "write -c 0 64k" t.qcow2
same_img "convert -c into an image with a data file fails" convert -c -O qcow2 \
    -o data_file=cc.data t.qcow2 cc.qcow2

# --- the data file named at open, and hostile images
in_both qemu-img create -q -f qcow2 -o data_file=o.data o.qcow2 1M
in_both qemu-io -c "write -P 0x5a 0 64k" o.qcow2
in_both mv o.data moved.data
same_io "--image-opts data-file.filename= opens a data file elsewhere" --image-opts \
    -c "read -P 0x5a 0 64k" driver=qcow2,file.filename=o.qcow2,data-file.filename=moved.data
same_io "a data-file node name is refused" --image-opts -c "read 0 1" \
    driver=qcow2,file.filename=o.qcow2,data-file=moved.data
# cluster 1's L2 entry points 2 GB into the data file: corrupt, no I/O there
mv "$CDIR/moved.data" "$CDIR/o.data"
python3 - "$CDIR/o.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], 'r+b')
f.seek(40); l1 = struct.unpack('>Q', f.read(8))[0]
f.seek(l1); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 8); f.write(struct.pack('>Q', (1 << 63) | (2 << 30)))
PY
out=$(in_dir c "$CALF_IO" -c "write -P 1 64k 4k" o.qcow2 2>&1)
is "$(grep -c 'write failed: Input/output error' <<<"$out") $(stat -c %s "$CDIR/o.data")" \
   "1 1048576" "an L2 entry off its guest offset is corrupt: no write there"
mkfifo "$CDIR/fifo"
in_dir c "$CALF_IMG" create -q -f qcow2 -o data_file=f.data f.qcow2 1M
in_dir c "$CALF_IMG" amend -o data_file=fifo f.qcow2
out=$(in_dir c timeout 20 "$CALF_IO" -c "read 0 512" f.qcow2 2>&1)
is "$? $out" "1 calf-io: can't open device f.qcow2: Could not open 'fifo': data file is not a \
regular file or block device" "a FIFO as data file is refused, no hang"
# (qemu-img also says "s.qcow2 is not a regular file" as it cleans up)
out=$(in_dir c "$CALF_IMG" create -q -f qcow2 -o data_file=s.qcow2 s.qcow2 1M 2>&1)
is "$? $out $(ls "$CDIR/s.qcow2" 2>&1 | grep -c 'No such')" "1 calf-img: s.qcow2: Failed to get \
shared \"resize\" lock
Is another process using the image [s.qcow2]? 1" "the image as its own data file is refused"

# --- four threads at once (tests/unit/blk-stress.c): every read one a
# disk may return, qemu-img check clean and reading what calf read, and
# a raw data file still the guest's view when they are done
STRESS=$CALF_BUILD/tests/blk-stress
head -c 4M /dev/urandom > "$TMP/base.raw"
stress() { # DESC CREATE-OPTIONS [blk-stress options]
    local desc=$1 o=$2 out; shift 2
    rm -f "$TMP/s.qcow2" "$TMP/s.data"
    qemu-img create -q -f qcow2 -o "data_file=$TMP/s.data,$o" "$TMP/s.qcow2" 4M
    if [ ! -x "$STRESS" ]; then skip "blk-stress is not built" "$desc"; return; fi
    if ! out=$("$STRESS" -n 1000 -f qcow2 -o "$TMP/final.raw" "$@" "$TMP/s.qcow2" 2>&1) ||
       ! out=$(qemu-img check -q "$TMP/s.qcow2" 2>&1) ||
       ! out=$(qemu-img compare -q -f raw -F qcow2 "$TMP/final.raw" "$TMP/s.qcow2" 2>&1) ||
       { [[ $o = *data_file_raw=on* ]] && ! out=$(cmp "$TMP/s.data" "$TMP/final.raw" 2>&1); }; then
        fail "$desc" "$out"
    else
        pass "$desc"
    fi
}
stress "threads: data file" "cluster_size=4k"
stress "threads: raw data file stays the guest's view" "data_file_raw=on"
stress "threads: data file with extended L2" "extended_l2=on"
stress "threads: data file over a backing file" "backing_file=$TMP/base.raw,backing_fmt=raw" \
    -i "$TMP/base.raw"

# A data write that fails (the data file may not grow: EFBIG) gives its
# new clusters back; a data file's clusters have no refcount, so nothing
# of the image file may be freed for them (the L2 table there was once,
# and a later allocation reused it: the data at 0 was lost).
(cd "$TMP" && rm -f u.qcow2 u.data &&
    qemu-img create -q -f qcow2 -o data_file=u.data u.qcow2 1G &&
    "$CALF_IO" -c "write -P 1 0 64k" u.qcow2 >/dev/null)
(trap '' XFSZ; ulimit -f 160; cd "$TMP" && "$CALF_IO" -c "write -P 2 256k 64k" u.qcow2 \
    >/dev/null 2>&1)
(cd "$TMP" && "$CALF_IO" -c "write -P 3 512M 64k" u.qcow2 >/dev/null)
ok "a failed data file write frees nothing of the image file" \
    bash -c "cd '$TMP' && qemu-io -c 'read -P 1 0 64k' -c 'read -P 3 512M 64k' u.qcow2 &&
             qemu-img check u.qcow2"
