#!/bin/bash
# calf-nbd serves, other NBD clients judge: qemu-io and qemu-img through
# nbd+unix:// and nbd://, libnbd's nbdinfo (list, details, the
# base:allocation and qemu:allocation-depth maps, the same as qemu-nbd's)
# and nbdcopy (both ways), with qemu-img compare reading the image file
# itself afterwards.  Then the command line: -r never writes the image,
# a writable export holds the image's write lock, -e N lets N clients in
# at once, without -t the server ends with its last client, and its
# errors read as qemu-nbd's.
. "$(dirname "$0")/nbd-lib.sh"
need_qemu qemu-img qemu-io qemu-nbd nbdinfo nbdcopy
[ -x "$CALF_NBD" ] || skip_all "calf-nbd is not built"
plan 28
cd "$TMP" || exit 1

# a qcow2 over a qcow2 over a raw file, each layer with data of its own
qemu-img create -q -f raw base.raw 16M
qemu-io -f raw -c "write -P 0x11 0 4M" base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
qemu-io -c "write -P 0x22 1M 1M" -c "write -z 6M 1M" mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -c "write -P 0x33 2M 64k" -c "write -P 0x44 12M 512k" top.qcow2 >/dev/null
cp top.qcow2 orig.qcow2; cp mid.qcow2 orig-mid.qcow2

S=$TMP/s
U="nbd+unix:///top?socket=$S"
serve "$S" "$CALF_NBD" -k "$S" -t -x top -f qcow2 top.qcow2
out=$(qemu-io -f raw -c "read -P 0x11 0 1M" -c "read -P 0x22 1M 1M" -c "read -P 0x33 2M 64k" \
    -c "read -P 0x11 3M 1M" -c "read -P 0 6M 1M" -c "read -P 0x44 12M 512k" \
    -c "read -P 0 13M 3M" "$U" 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -c -i 'fail\|error' <<<"$out")" "7/0" \
    "qemu-io reads every layer of the chain through calf-nbd"
is "$(qemu-img compare -U "$U" top.qcow2 2>&1)" "Images are identical." \
    "qemu-img compare: the export reads as the image"
is "$(nbdinfo --size "$U")" 16777216 "nbdinfo: export size"
is "$(nbdinfo --list "nbd+unix:///?socket=$S" | grep -c '^export="top"')" 1 "nbdinfo --list names the export"
info=$(nbdinfo --json "$U")
ok "nbdinfo: writable, flush, trim, zero, base:allocation" \
    grep -q '"is_read_only": false' <<<"$info"
is "$(grep -cE '"can_(flush|trim|zero|fua)": true|"base:allocation"' <<<"$info")" 5 \
    "nbdinfo: flush, fua, trim, zero and base:allocation offered"
# writes through the export land in the image: read back from the file
qemu-io -f raw -c "write -P 0x55 5M 1M" -c "write -z 12M 64k" -c "discard 2M 64k" "$U" >/dev/null 2>&1
stop_server
out=$(qemu-io -c "read -P 0x55 5M 1M" -c "read -P 0 12M 64k" -c "read -P 0x44 12352k 448k" \
    -c "read -P 0x33 2M 64k" top.qcow2 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -c -i 'fail\|error' <<<"$out")" "4/0" \
    "writes and zeroes through calf-nbd are in the image file; discard ignored by default"
ok "qemu-img check: the image is clean after serving" qemu-img check -q top.qcow2

# the same maps as qemu-nbd's, for each context
cp orig.qcow2 top.qcow2; cp orig-mid.qcow2 mid.qcow2
serve "$S" "$CALF_NBD" -k "$S" -t -A -x top -f qcow2 top.qcow2
cmap=$(nbdinfo --map "$U"); cdepth=$(nbdinfo --map=qemu:allocation-depth "$U")
stop_server
serve "$TMP/q" qemu-nbd -k "$TMP/q" -t -A -x top -f qcow2 top.qcow2
qmap=$(nbdinfo --map "nbd+unix:///top?socket=$TMP/q")
qdepth=$(nbdinfo --map=qemu:allocation-depth "nbd+unix:///top?socket=$TMP/q")
stop_server
is "$cmap" "$qmap" "nbdinfo --map (base:allocation) is qemu-nbd's"
is "$cdepth" "$qdepth" "nbdinfo --map=qemu:allocation-depth is qemu-nbd's"

# nbdcopy both ways, over TCP this time
P=$(free_port)
serve "$P" "$CALF_NBD" -t -p "$P" -b 127.0.0.1 -f qcow2 top.qcow2
nbdcopy "nbd://127.0.0.1:$P" out.raw
is "$(qemu-img compare -U -f raw -F qcow2 out.raw top.qcow2 2>&1)" "Images are identical." \
    "nbdcopy from nbd:// reads the image"
head -c 16M /dev/urandom > rnd.raw
ok "nbdcopy to nbd:// writes 16 MiB" nbdcopy rnd.raw "nbd://127.0.0.1:$P"
stop_server
is "$(qemu-img compare -f raw -F qcow2 rnd.raw top.qcow2 2>&1)" "Images are identical." \
    "nbdcopy's data is in the image"
ok "qemu-img check after nbdcopy" qemu-img check -q top.qcow2

# -r: nothing written, no write lock, the client told read-only
cp orig.qcow2 top.qcow2; cp orig-mid.qcow2 mid.qcow2
sum=$(md5sum top.qcow2 mid.qcow2 base.raw)
serve "$S" "$CALF_NBD" -k "$S" -r -t -x top top.qcow2
ok "-r: nbdinfo says read-only" grep -q '"is_read_only": true' <<<"$(nbdinfo --json "$U")"
out=$(qemu-io -f raw -c "write -P 0x66 0 4k" "$U" 2>&1)
ok "-r: qemu-io cannot open it for writing" grep -q "Could not open image: Permission denied" <<<"$out"
ok "-r: the image is not locked for writing (qemu-img info works beside it)" \
    qemu-img info top.qcow2
stop_server
is "$(md5sum top.qcow2 mid.qcow2 base.raw)" "$sum" "-r: no byte of the chain changed"

# a writable export holds the write lock: a second writer is refused
serve "$S" "$CALF_NBD" -k "$S" -t top.qcow2
out=$(timeout 10 "$CALF_NBD" -k "$TMP/s2" top.qcow2 2>&1); rc=$?
is "$rc: $out" "1: calf-nbd: Failed to blk_new_open 'top.qcow2': Failed to get \"write\" lock
Is another process using the image [top.qcow2]?" "a second writable calf-nbd is refused, in qemu-nbd's words"
out=$(qemu-io -c "write 0 4k" top.qcow2 2>&1)
ok "qemu-io cannot write the image while it is served" grep -q 'Failed to get "write" lock' <<<"$out"
stop_server

# -e: clients at once; without -t, the end comes with the last client
serve "$S" "$CALF_NBD" -k "$S" -e 2 top.qcow2
coproc HOLD { python3 "$NBD_RAW" "$S" hold; }
read -r held <&"${HOLD[0]}"
out=$(timeout 10 nbdinfo --size "nbd+unix:///?socket=$S" 2>&1)
is "$held $out" "held 16777216" "-e 2: a second client is served while the first holds on"
is "$(nbdinfo --json "nbd+unix:///?socket=$S" | grep -c '"can_multi_conn": true')" 1 \
    "-e 2: multi-conn offered, as qemu-nbd offers it"
hp=$HOLD_PID; eval "exec ${HOLD[1]}>&-"; wait "$hp" 2>/dev/null
sleep 0.5
kill -0 "$SERVER_PID" 2>/dev/null; is $? 1 "without -t the server ends with its last client"
serve "$S" "$CALF_NBD" -k "$S" top.qcow2
python3 "$NBD_RAW" "$S" garbage >/dev/null
sleep 0.3
kill -0 "$SERVER_PID" 2>/dev/null; is $? 0 "without -t, a client that never finished its handshake does not end the server"
coproc HOLD { python3 "$NBD_RAW" "$S" hold; }
read -r held <&"${HOLD[0]}"
timeout 2 nbdinfo --size "nbd+unix:///?socket=$S" >/dev/null 2>&1; rc=$?
is "$held $rc" "held 124" "-e 1 (the default): a second client waits while the first is served"
hp=$HOLD_PID; eval "exec ${HOLD[1]}>&-"; wait "$hp" 2>/dev/null
stop_server

# the export name: the empty one unless -x, an unknown one refused
serve "$S" "$CALF_NBD" -k "$S" -t -x top top.qcow2
out=$(nbdinfo "nbd+unix:///nope?socket=$S" 2>&1)
ok "an unknown export is refused" grep -q "No such file or directory for export: nope" <<<"$out"
stop_server

# an image that ends inside a sector: whole sectors are exported, as by qemu-nbd
head -c 1000 /dev/urandom > odd.raw
serve "$S" "$CALF_NBD" -k "$S" -r -f raw odd.raw
csize=$(nbdinfo --size "nbd+unix:///?socket=$S"); stop_server
serve "$S" qemu-nbd -k "$S" -r -f raw odd.raw
qsize=$(nbdinfo --size "nbd+unix:///?socket=$S"); stop_server
is "$csize" "$qsize" "a 1000-byte image is exported as qemu-nbd exports it ($qsize bytes)"

# command line errors, as qemu-nbd says them
errs() {
    local tool=$1 a
    for a in "--cache=bogus" "--discard=bogus" "--detect-zeroes=bogus" "--detect-zeroes=unmap" \
             "-e abc" "-k rel/sock"; do
        timeout 5 "$tool" $a top.qcow2 2>&1 </dev/null | sed "s/^$(basename "$tool"):/X:/"
        echo "rc=${PIPESTATUS[0]}"
    done
    timeout 5 "$tool" 2>&1 | sed "s/^$(basename "$tool"):/X:/; s/$(basename "$tool")/X/"
    timeout 5 "$tool" -k "$TMP/x" nonexistent.img 2>&1 | sed "s/^$(basename "$tool"):/X:/"
}
is "$(errs "$CALF_NBD")" "$(errs qemu-nbd)" "option errors read as qemu-nbd's"
done_testing
