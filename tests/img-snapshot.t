#!/bin/bash
# calf-img snapshot against qemu-img snapshot: the same operations on
# copies of the same image give the same guest views and the same list
# (dates aside); tables written by one tool are read and changed by the
# other; qemu-img check is clean after every calf operation; unknown extra
# data survives; refcount_bits=1 refuses a second reference cleanly.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
driver_check qcow2

clean() { ok "$1: qemu-img check clean" qemu-img check -q "$2"; }
same_view() { ok "$1: same guest view" qemu-img compare -q "$2" "$3"; }
# the list with dates blanked (they are the only thing allowed to differ)
list() { "$@" 2>&1 | sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}/YYYY-MM-DD hh:mm:ss/'; }
same_list() { # DESC FILE: calf's list equals qemu-img's for the same file
    is "$(list "$CALF_IMG" snapshot -l "$2")" "$(list qemu-img snapshot -l "$2")" "$1: same list as qemu-img"
}
# both tools run "snapshot ARGS" on their own copy; exit codes must agree
both() {
    local desc=$1; shift
    (cd "$QDIR" && qemu-img snapshot "$@" >/dev/null 2>&1); local q=$?
    (cd "$CDIR" && "$CALF_IMG" snapshot "$@" >"$TMP/out" 2>&1); local c=$?
    is "$c" "$q" "$desc: exit status $q like qemu-img"
}

for opts in "compat=1.1" "compat=0.10" "lazy_refcounts=on" "extended_l2=on,cluster_size=64k" \
            "cluster_size=4k"; do
    rm -f "$QDIR"/* "$CDIR"/*
    qemu-img create -q -f qcow2 -o "$opts" "$QDIR/s.qcow2" 64M
    qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 5 2M 64k' -c 'write -P 6 4M 128k' \
        -c 'write -z 4M 64k' -c 'write -P 7 40M 4M' "$QDIR/s.qcow2" >/dev/null
    cp "$QDIR/s.qcow2" "$CDIR/s.qcow2"
    both "[$opts] create s1" -c s1 s.qcow2
    clean "[$opts] after create" "$CDIR/s.qcow2"
    same_list "[$opts] one snapshot" "$CDIR/s.qcow2"
    # the active image changes after the snapshot: with qemu-io in both
    for d in "$QDIR" "$CDIR"; do
        qemu-io -c 'write -P 2 512k 1M' -c 'write -z 40M 64k' -c 'discard 2M 64k' \
            -c 'write -P 8 60M 64k' "$d/s.qcow2" >/dev/null
    done
    clean "[$opts] qemu-io writes after calf's snapshot" "$CDIR/s.qcow2"
    same_view "[$opts] after writes" "$CDIR/s.qcow2" "$QDIR/s.qcow2"
    both "[$opts] create s2" -c s2 s.qcow2
    clean "[$opts] after second create" "$CDIR/s.qcow2"
    # calf writes over shared clusters too
    for d in "$QDIR" "$CDIR"; do
        "$CALF_IO" -c 'write -P 3 0 64k' -c 'write -P 4 4M 1M' "$d/s.qcow2" >/dev/null
    done
    clean "[$opts] calf-io writes after the snapshots" "$CDIR/s.qcow2"
    both "[$opts] apply s1" -a s1 s.qcow2
    clean "[$opts] after apply" "$CDIR/s.qcow2"
    same_view "[$opts] s1 applied" "$CDIR/s.qcow2" "$QDIR/s.qcow2"
    ok "[$opts] s1 content read back by qemu-io" qemu-io -c 'read -P 1 0 1M' -c 'read -P 7 42M 2M' \
        -c 'read -P 5 2M 64k' "$CDIR/s.qcow2"
    both "[$opts] apply by id 2" -a 2 s.qcow2
    same_view "[$opts] s2 applied by id" "$CDIR/s.qcow2" "$QDIR/s.qcow2"
    clean "[$opts] after apply by id" "$CDIR/s.qcow2"
    same_list "[$opts] two snapshots" "$CDIR/s.qcow2"
    # each tool reads the other's table
    cp "$QDIR/s.qcow2" "$TMP/q.qcow2"; cp "$CDIR/s.qcow2" "$TMP/c.qcow2"
    same_list "[$opts] qemu-img's table read by calf" "$TMP/q.qcow2"
    ok "[$opts] calf applies a snapshot qemu-img made" "$CALF_IMG" snapshot -a s1 "$TMP/q.qcow2"
    ok "[$opts] qemu-img applies a snapshot calf made" qemu-img snapshot -a s1 "$TMP/c.qcow2"
    same_view "[$opts] cross apply" "$TMP/q.qcow2" "$TMP/c.qcow2"
    clean "[$opts] calf's apply on qemu-img's table" "$TMP/q.qcow2"
    both "[$opts] delete s1" -d s1 s.qcow2
    clean "[$opts] after delete" "$CDIR/s.qcow2"
    same_list "[$opts] after delete" "$CDIR/s.qcow2"
    same_view "[$opts] after delete" "$CDIR/s.qcow2" "$QDIR/s.qcow2"
    for d in "$QDIR" "$CDIR"; do
        qemu-io -c 'write -P 9 0 2M' "$d/s.qcow2" >/dev/null
    done
    both "[$opts] delete s2 (the last one)" -d s2 s.qcow2
    clean "[$opts] after the last delete" "$CDIR/s.qcow2"
    same_view "[$opts] no snapshots left" "$CDIR/s.qcow2" "$QDIR/s.qcow2"
    is "$("$CALF_IMG" snapshot -l "$CDIR/s.qcow2")" "" "[$opts] empty list prints nothing"
done

# errors and option handling, byte for byte
rm -f "$QDIR"/* "$CDIR"/*
in_both qemu-img create -q -f qcow2 e.qcow2 1M
in_both qemu-img snapshot -c one e.qcow2
same_img "apply a missing snapshot" snapshot -a nope e.qcow2
same_img "delete a missing snapshot" snapshot -d nope e.qcow2
same_img "delete by id is not a name" snapshot -d 1 e.qcow2
same_img "two actions" snapshot -l -c x e.qcow2
same_img "no file" snapshot -l
same_img "two files" snapshot -l e.qcow2 e.qcow2
same_img "-U with -c" snapshot -U -c x e.qcow2
same_img "missing file" snapshot -l nonexist.qcow2
same_img "no action" snapshot e.qcow2
same_img "unknown option" snapshot -x e.qcow2

# the virtual size follows the snapshot
rm -f "$QDIR"/* "$CDIR"/*
in_both qemu-img create -q -f qcow2 r.qcow2 64M
in_both qemu-io -c 'write -P 1 0 1M' r.qcow2
in_both qemu-img snapshot -c small r.qcow2
in_both qemu-img resize -q r.qcow2 128M
in_both qemu-io -c 'write -P 2 100M 1M' r.qcow2
"$CALF_IMG" snapshot -a small "$CDIR/r.qcow2"; qemu-img snapshot -a small "$QDIR/r.qcow2"
is "$(qemu-img info "$CDIR/r.qcow2" | grep 'virtual size')" "virtual size: 64 MiB (67108864 bytes)" \
    "apply restores the snapshot's virtual size"
same_view "apply across a resize" "$CDIR/r.qcow2" "$QDIR/r.qcow2"
clean "apply across a resize" "$CDIR/r.qcow2"

# refcount_bits=1: a second reference does not fit; nothing leaks
qemu-img create -q -f qcow2 -o refcount_bits=1 "$TMP/r1.qcow2" 64M
qemu-io -c 'write -P 1 0 128k' "$TMP/r1.qcow2" >/dev/null
out=$("$CALF_IMG" snapshot -c foo "$TMP/r1.qcow2" 2>&1); rc=$?
is "$rc" 1 "refcount_bits=1: snapshot refused"
case $out in *"Could not create snapshot 'foo': -22 (Invalid argument)") \
    pass "refcount_bits=1: the error is QEMU's errno" ;;
*) fail "refcount_bits=1: the error is QEMU's errno" "$out" ;; esac
ok "refcount_bits=1: no leak, no corruption" qemu-img check "$TMP/r1.qcow2"
is "$("$CALF_IMG" snapshot -l "$TMP/r1.qcow2")" "" "refcount_bits=1: no snapshot listed"
ok "refcount_bits=1: data intact" qemu-io -c 'read -P 1 0 128k' "$TMP/r1.qcow2"
# refcount_bits=2 allows three references, then stops
qemu-img create -q -f qcow2 -o refcount_bits=2 "$TMP/r2.qcow2" 64M
qemu-io -c 'write -P 1 0 128k' "$TMP/r2.qcow2" >/dev/null
"$CALF_IMG" snapshot -c a "$TMP/r2.qcow2" && "$CALF_IMG" snapshot -c b "$TMP/r2.qcow2"
ok "refcount_bits=2: two snapshots fit" qemu-img check "$TMP/r2.qcow2"
"$CALF_IMG" snapshot -c c "$TMP/r2.qcow2" 2>/dev/null
is "$?" 1 "refcount_bits=2: the third is refused"
ok "refcount_bits=2: clean after the refusal" qemu-img check "$TMP/r2.qcow2"

# unknown extra data in qemu-img's entries is kept byte for byte
if command -v python3 >/dev/null; then
    qemu-img create -q -f qcow2 "$TMP/x.qcow2" 1M
    qemu-img snapshot -c first "$TMP/x.qcow2"
    # grow entry 0's extra data from 24 to 40 bytes with a marker
    python3 - "$TMP/x.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], 'r+b'); h = f.read(72)
off = struct.unpack('>Q', h[64:72])[0]
f.seek(off); e = f.read(40)
idl, nl = struct.unpack('>HH', e[12:16]); ex = struct.unpack('>I', e[36:40])[0]
f.seek(off + 40); rest = f.read(ex + idl + nl)
extra = rest[:ex] + b'CALFXTRA' + b'\x11' * 8
ent = e[:36] + struct.pack('>I', len(extra)) + extra + rest[ex:]
ent += b'\0' * (-len(ent) % 8)
f.seek(off); f.write(ent); f.close()
PY
    ok "hand-made extra data: qemu-img check clean" qemu-img check -q "$TMP/x.qcow2"
    "$CALF_IMG" snapshot -c second "$TMP/x.qcow2"
    "$CALF_IMG" snapshot -d second "$TMP/x.qcow2"
    clean "unknown extra data" "$TMP/x.qcow2"
    got=$(python3 - "$TMP/x.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], 'rb'); h = f.read(72)
off = struct.unpack('>Q', h[64:72])[0]
f.seek(off); e = f.read(40); ex = struct.unpack('>I', e[36:40])[0]
print(ex, f.read(ex)[24:].hex())
PY
)
    is "$got" "40 43414c46585452411111111111111111" "unknown extra data kept byte for byte"
else
    skip "python3 is not installed"
fi

# A snapshot table entry with more extra data than the 1 KiB QEMU takes:
# open refuses it with QEMU's hint, check reports it, and check -r all
# drops the excess (which here runs into the next cluster and past the
# end of the file) as QEMU does, keeping the snapshots
be() { od -An -t u1 -j "$2" -N "$3" "$1" | awk '{v=0; for(i=1;i<=NF;i++) v=v*256+$i; print v}'; }
poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
rm -f "$QDIR"/* "$CDIR"/*
qemu-img create -q -f qcow2 "$QDIR/x.qcow2" 64M
for n in 0 1 2 3; do
    qemu-io -c "write -P $((n + 1)) ${n}M 1M" "$QDIR/x.qcow2" >/dev/null
    qemu-img snapshot -c "sn$n" "$QDIR/x.qcow2"
done
ofs=$(be "$QDIR/x.qcow2" 64 8)
for n in 0 1 2; do # to entry 3: 40 bytes, extra data, id, name, padding to 8
    len=$((40 + $(be "$QDIR/x.qcow2" $((ofs + 36)) 4) + $(be "$QDIR/x.qcow2" $((ofs + 12)) 2) +
           $(be "$QDIR/x.qcow2" $((ofs + 14)) 2)))
    ofs=$(((ofs + len + 7) / 8 * 8))
done
poke "$QDIR/x.qcow2" $((ofs + 36)) '\x00\x01\x00\x00'
cp "$QDIR/x.qcow2" "$CDIR/x.qcow2"
same_img "too much extra data: open fails with the hint" info x.qcow2
same_img "too much extra data: check reports it" check x.qcow2
same_img "too much extra data: check -r all drops it" check -r all x.qcow2
clean "too much extra data: repaired" "$CDIR/x.qcow2"
same_list "too much extra data: repaired" "$CDIR/x.qcow2"
# (entry 3's name and id were past the end of the file: they read empty)
for n in 0 1 2; do
    rm -f "$QDIR/sn.raw" "$CDIR/sn.raw"
    qemu-img convert -O raw -l "sn$n" "$QDIR/x.qcow2" "$QDIR/sn.raw"
    qemu-img convert -O raw -l "sn$n" "$CDIR/x.qcow2" "$CDIR/sn.raw"
    ok "too much extra data: sn$n reads as in qemu-img's repair" cmp -s "$QDIR/sn.raw" "$CDIR/sn.raw"
done

# kill -9 in the middle of each operation: once reopened read-write
# (the dirty bit makes QEMU and calf repair the COPIED flags) the image
# has no corruption, leaks at most, and reads either as before or as
# after the operation
KILLS=${CALF_SNAPSHOT_KILLS:-8}
qemu-img create -q -f qcow2 -o cluster_size=4k "$TMP/k.qcow2" 128M
qemu-io -c 'write -P 1 0 100M' "$TMP/k.qcow2" >/dev/null
qemu-img snapshot -c old "$TMP/k.qcow2"
qemu-io -c 'write -P 2 0 30M' "$TMP/k.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/k.qcow2" "$TMP/k-active.raw"
qemu-img convert -O raw -l old "$TMP/k.qcow2" "$TMP/k-old.raw"
for op in "-c new" "-a old" "-d old"; do
    bad=""
    for i in $(seq 1 "$KILLS"); do
        cp "$TMP/k.qcow2" "$TMP/w.qcow2"
        "$CALF_IMG" snapshot $op "$TMP/w.qcow2" 2>/dev/null & pid=$!
        sleep "0.0$((RANDOM % 40))"; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
        if [ $((i % 2)) = 0 ]; then qemu-io -c flush "$TMP/w.qcow2" >/dev/null 2>&1
        else "$CALF_IO" -c flush "$TMP/w.qcow2" >/dev/null 2>&1; fi
        qemu-img check "$TMP/w.qcow2" >"$TMP/chk" 2>&1; rc=$?
        if [ $rc != 0 ] && [ $rc != 3 ]; then bad="kill $i: check exit $rc: $(tail -3 "$TMP/chk")"; break; fi
        if ! qemu-img compare -q "$TMP/w.qcow2" "$TMP/k-active.raw" 2>/dev/null &&
           ! { [ "$op" = "-a old" ] && qemu-img compare -q "$TMP/w.qcow2" "$TMP/k-old.raw"; }; then
            bad="kill $i: the guest view is neither the old nor the new one"; break
        fi
    done
    [ -z "$bad" ] && pass "snapshot $op killed $KILLS times: no corruption, content intact" ||
        fail "snapshot $op killed: no corruption, content intact" "$bad"
done

done_testing
