#!/bin/bash
# calf-nbd's qemu-nbd 7.2 options beyond the basics, each against
# qemu-nbd doing the same:
#  -L/--list   client mode: calf-nbd -L and qemu-nbd -L print the same
#              list of calf-nbd's, qemu-nbd's and nbdkit's exports
#              (description, size, flags, block sizes, meta contexts);
#              the same refusals of per-device options;
#  -o/--offset the export starts that far into the image: nbdinfo sizes,
#              qemu-img compare of the export with qemu-nbd's, a write
#              lands at the offset in the file;
#  -B/--bitmap a qcow2 dirty bitmap as qemu:dirty-bitmap:NAME: nbdinfo
#              --map of it equals qemu-nbd's;
#  -D, -A      the description and qemu:allocation-depth (in the lists);
#  -s          writes go to a throw-away overlay, the file is unchanged;
#  -l          an internal snapshot, exported read-only;
#  -c/-d       the kernel client: the same errors as qemu-nbd without
#              /dev/nbd0; with it, a kernel check (skipped here otherwise).
. "$(dirname "$0")/nbd-lib.sh"
need_qemu qemu-img qemu-io qemu-nbd nbdinfo nbdkit
[ -x "$CALF_NBD" ] || skip_all "calf-nbd is not built"
plan 32
cd "$TMP" || exit 1
C=$TMP/c Q=$TMP/q

# same_out DESC CMD-ARGS...: calf-nbd and qemu-nbd print the same (names aside), same status
same_out() {
    local desc=$1; shift
    local a b
    a=$("$CALF_NBD" "$@" 2>&1); local ra=$?
    b=$(qemu-nbd "$@" 2>&1); local rb=$?
    is "$ra: ${a//calf-nbd/qemu-nbd}" "$rb: $b" "$desc"
}
# both SERVER-ARGS...: calf-nbd on $C and qemu-nbd on $Q, the same arguments
# (qemu-nbd serves a copy of the file, the last argument: a writer locks its file)
both() {
    local f=${*: -1}
    cp "$f" "q-$f"
    serve "$C" "$CALF_NBD" -k "$C" -t "$@"; CP=$SERVER_PID
    serve "$Q" qemu-nbd -k "$Q" -t "${@:1:$#-1}" "q-$f"; QP=$SERVER_PID
}
stop_both() { kill $CP $QP 2>/dev/null; wait $CP $QP 2>/dev/null; }

# ---- -L, -D, -A, -B ----
qemu-img create -q -f qcow2 b.qcow2 4M
qemu-io -c 'write -P 1 0 64k' b.qcow2 >/dev/null
qemu-img bitmap --add b.qcow2 bm0
qemu-io -c 'write -P 2 1M 128k' -c 'write -P 3 3M 4k' b.qcow2 >/dev/null
qemu-img bitmap --disable b.qcow2 bm0
both -r -f qcow2 -B bm0 -A -D "a base image" -x ex1 b.qcow2
"$CALF_NBD" -L -k "$C" >cc.list; rc=$?
is "$rc" 0 "calf-nbd -L lists calf-nbd's exports"
qemu-nbd -L -k "$Q" >qq.list
ok "the list has the description, the contexts and the bitmap" \
    grep -q "qemu:dirty-bitmap:bm0" cc.list && grep -q "description: a base image" cc.list
is "$(cat cc.list)" "$(cat qq.list)" "calf-nbd -L of calf-nbd = qemu-nbd -L of qemu-nbd"
is "$("$CALF_NBD" -L -k "$Q")" "$(cat qq.list)" "calf-nbd -L of qemu-nbd = qemu-nbd -L of it"
is "$(qemu-nbd -L -k "$C")" "$(cat qq.list)" "qemu-nbd -L of calf-nbd = qemu-nbd -L of qemu-nbd"
nbdinfo --map=qemu:dirty-bitmap:bm0 "nbd+unix:///ex1?socket=$Q" >q.map
nbdinfo --map=qemu:dirty-bitmap:bm0 "nbd+unix:///ex1?socket=$C" >c.map
ok "the bitmap has dirty and clean extents" grep -q "dirty" q.map && grep -q "clean" q.map
is "$(cat c.map)" "$(cat q.map)" "-B: nbdinfo --map of qemu:dirty-bitmap:bm0 equals qemu-nbd's"
is "$(nbdinfo --map=qemu:allocation-depth "nbd+unix:///ex1?socket=$C")" \
    "$(nbdinfo --map=qemu:allocation-depth "nbd+unix:///ex1?socket=$Q")" \
    "-A with -B: qemu:allocation-depth equals qemu-nbd's"
stop_both
same_out "-B of a bitmap the image lacks" -r -f qcow2 -B nope -k "$TMP/x" b.qcow2

# writable, shared: other flags
qemu-img create -q -f raw w.raw 3M
both -e 2 -f raw w.raw
is "$("$CALF_NBD" -L -k "$C")" "$(qemu-nbd -L -k "$Q")" "-L of writable, shared exports (calf-nbd -L, qemu-nbd -L)"
stop_both
# nbdkit: another server's list
P=$(free_port)
serve "$P" nbdkit -f -i 127.0.0.1 -p "$P" memory 1M
is "$("$CALF_NBD" -L -b 127.0.0.1 -p "$P")" "$(qemu-nbd -L -b 127.0.0.1 -p "$P")" \
    "-L of nbdkit over TCP prints what qemu-nbd -L prints"
stop_server
serve "$TMP/k" nbdkit -f -o -U "$TMP/k" memory 1M  # an old-style server
is "$("$CALF_NBD" -L -k "$TMP/k" 2>&1)" "$(qemu-nbd -L -k "$TMP/k" 2>&1)" \
    "-L of nbdkit --oldstyle prints what qemu-nbd -L prints"
stop_server
same_out "-L with a file name" -L w.raw
same_out "-L with per-device options" -L -x foo
same_out "-L with --fork" -L --fork
same_out "-L with no server" -L -k "$TMP/none"

# ---- -o ----
head -c 3M /dev/urandom >o.raw
both -f raw -o 65536 o.raw
is "$(nbdinfo --size "nbd+unix:///?socket=$C")" "$(nbdinfo --size "nbd+unix:///?socket=$Q")" \
    "-o: the export's size is qemu-nbd's"
is "$(qemu-img compare -f raw -F raw "nbd+unix:///?socket=$C" "nbd+unix:///?socket=$Q" 2>&1)" \
    "Images are identical." "-o: qemu-img compare: calf-nbd's export is qemu-nbd's"
tail -c +65537 o.raw >o.tail
is "$(qemu-img compare -f raw -F raw "nbd+unix:///?socket=$C" o.tail 2>&1)" \
    "Images are identical." "-o: the export is the file from the offset"
qemu-io -f raw -c 'write -P 0x7e 0 4k' "nbd+unix:///?socket=$C" >/dev/null
stop_both
out=$(qemu-io -f raw -c 'read -P 0x7e 64k 4k' o.raw 2>&1)
is "$(grep -c 'Pattern verification failed' <<<"$out")" 0 "-o: a write at export offset 0 is at 64k in the file"
qemu-img create -q -f qcow2 oq.qcow2 2M
qemu-io -c 'write -P 0x31 0 1M' -c 'write -P 0x32 1M 1M' oq.qcow2 >/dev/null
both -r -f qcow2 -o 1048576 oq.qcow2
is "$(qemu-img compare -f raw -F raw "nbd+unix:///?socket=$C" "nbd+unix:///?socket=$Q" 2>&1)" \
    "Images are identical." "-o over qcow2: calf-nbd's export is qemu-nbd's"
is "$(nbdinfo --map "nbd+unix:///?socket=$C")" "$(nbdinfo --map "nbd+unix:///?socket=$Q")" \
    "-o over qcow2: base:allocation is qemu-nbd's"
stop_both
same_out "-o with a bad number" -o 2M -k "$TMP/x" o.raw
same_out "-o past the end of the image" -f raw -o 4194304 -k "$TMP/x" o.raw

# ---- -s ----
sum=$(sha256sum <o.raw)
serve "$C" "$CALF_NBD" -k "$C" -t -s -f raw o.raw
qemu-io -f raw -c 'write -P 0x5c 1M 64k' "nbd+unix:///?socket=$C" >/dev/null
out=$(qemu-io -f raw -c 'read -P 0x5c 1M 64k' "nbd+unix:///?socket=$C" 2>&1)
is "$(grep -c 'Pattern verification failed' <<<"$out")" 0 "-s: the export reads its writes"
tail -c +$((2 * 1048576 + 1)) o.raw >o.end
is "$(qemu-img compare -f raw -F raw "json:{\"driver\":\"raw\",\"offset\":2097152,\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$C\"}}}" o.end 2>&1)" \
    "Images are identical." "-s: the rest reads the file"
stop_server
is "$(sha256sum <o.raw)" "$sum" "-s: the file is unchanged"

# ---- -l ----
qemu-img create -q -f qcow2 sn.qcow2 1M
qemu-io -c 'write -P 0x61 0 1M' sn.qcow2 >/dev/null
qemu-img snapshot -c first sn.qcow2
qemu-io -c 'write -P 0x62 0 1M' sn.qcow2 >/dev/null
both -f qcow2 -l first sn.qcow2
out=$(qemu-io -f raw -r -c 'read -P 0x61 0 1M' "nbd+unix:///?socket=$C" 2>&1)
is "$(grep -c 'Pattern verification failed' <<<"$out")" 0 "-l: the export is the snapshot's data"
is "$("$CALF_NBD" -L -k "$C")" "$(qemu-nbd -L -k "$Q")" "-l: a read-only export, as qemu-nbd's"
stop_both

# ---- -c / -d ----
if [ -e /dev/nbd0 ]; then
    skip 3 "/dev/nbd0 exists: calf-nbd -c is refused there (not driven: use nbd-client)"
else
    same_out "-c without /dev/nbd0" -c /dev/nbd0 -f raw o.raw
    same_out "-d without /dev/nbd0" -d /dev/nbd0
    skip 1 "the kernel nbd module is not loaded (/dev/nbd0 absent): no kernel client check"
fi
done_testing
