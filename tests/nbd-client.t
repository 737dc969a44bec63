#!/bin/bash
# calf's nbd driver against other servers: qemu-nbd and nbdkit serve,
# calf-img (info, map, convert, compare) and calf-io read and write
# through nbd+unix://, nbd://, --image-opts driver=nbd and json:, a
# qcow2 overlay whose backing file is nbd:// reads through to the export,
# and what they print is what qemu-img and qemu-io print.  A server
# killed in the middle of a convert is an I/O error and exit 1, never a
# crash or a hang; one that comes back is connected to again by the next
# request (or by the waiting one, with reconnect-delay).  The kernel's nbd client reads calf-nbd's export where
# the module can be loaded.
. "$(dirname "$0")/nbd-lib.sh"
need_qemu qemu-img qemu-io qemu-nbd nbdkit
plan 38
cd "$TMP" || exit 1

qemu-img create -q -f raw base.raw 16M
qemu-io -f raw -c "write -P 0x11 0 4M" base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2
qemu-io -c "write -P 0x22 1M 1M" -c "write -z 6M 1M" -c "write -P 0x44 12M 512k" top.qcow2 >/dev/null
cp top.qcow2 orig.qcow2

S=$TMP/q
U="nbd+unix:///exp?socket=$S"
serve "$S" qemu-nbd -k "$S" -t -x exp -f qcow2 top.qcow2
both() { # both ARGS...: calf-img and qemu-img print the same
    is "$(run_capture . "$CALF_IMG" "$@")" "$(run_capture . qemu-img "$@")" "calf-img $*"
}
both info "$U"
both info --output=json "$U"
both map "$U"
both map --output=json "$U"
out=$("$CALF_IO" -f raw -c "read -P 0x11 0 1M" -c "read -P 0x22 1M 1M" -c "read -P 0 6M 1M" \
    -c "read -P 0x44 12M 512k" -c "read -P 0 13M 3M" "$U" 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "5/0" "calf-io reads qemu-nbd's export"
"$CALF_IMG" convert -O qcow2 "$U" conv.qcow2
is "$(qemu-img compare -U conv.qcow2 top.qcow2 2>&1)" "Images are identical." "calf-img convert from nbd+unix://"
is "$("$CALF_IMG" compare "$U" conv.qcow2 2>&1)" "Images are identical." "calf-img compare of an export and a file"
out=$("$CALF_IO" -f raw -c "write -P 0x55 2M 1M" -c "write -z 12M 64k" -c "read -P 0x55 2M 1M" "$U" 2>&1)
is "$(grep -ci 'fail\|error' <<<"$out")" 0 "calf-io writes through qemu-nbd"
both info "nbd+unix:///nope?socket=$S"
stop_server
out=$(qemu-io -c "read -P 0x55 2M 1M" -c "read -P 0 12M 64k" -c "read -P 0x44 12352k 448k" top.qcow2 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "3/0" "calf-io's writes are in the image qemu-nbd served"
both info "nbd+unix:///?socket=$TMP/none"

# nbdkit over TCP: a raw file written by convert and calf-io, read back from the file
P=$(free_port)
qemu-img create -q -f raw kit.raw 16M
serve "$P" nbdkit -f -i 127.0.0.1 -p "$P" file kit.raw
head -c 16M /dev/urandom > rnd.raw
ok "calf-img convert -n into nbd:// (nbdkit)" "$CALF_IMG" convert -n -f raw -O raw rnd.raw "nbd://127.0.0.1:$P"
out=$("$CALF_IO" -f raw -c "write -P 0x66 100k 300k" -c "read -P 0x66 100k 300k" "nbd://127.0.0.1:$P" 2>&1)
is "$(grep -ci 'fail\|error' <<<"$out")" 0 "calf-io writes and reads nbd:// (nbdkit)"
stop_server
qemu-io -f raw -c "write -P 0x66 100k 300k" rnd.raw >/dev/null
is "$(qemu-img compare -f raw -F raw rnd.raw kit.raw 2>&1)" "Images are identical." "nbdkit's file holds what calf wrote"

# the option forms
serve "$S" qemu-nbd -k "$S" -t -r -x exp -f qcow2 top.qcow2
name=$("$CALF_IMG" info --image-opts "driver=nbd,server.type=unix,server.path=$S,export=exp" | head -1)
is "$name" "image: nbd+unix:///exp?socket=$S" "--image-opts driver=nbd,server.type=unix (QEMU's name for it)"
out=$("$CALF_IO" -r -c "read -P 0x55 2M 1M" \
    "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$S\"},\"export\":\"exp\"}}" 2>&1)
is "$(grep -ci 'fail\|error' <<<"$out")" 0 "json: with file.driver=nbd under raw"

# a qcow2 overlay whose backing file is the export
"$CALF_IMG" create -q -f qcow2 -b "$U" -F raw ov.qcow2
out=$("$CALF_IO" -c "read -P 0x11 0 1M" -c "read -P 0x55 2M 1M" -c "write -P 0x77 0 64k" \
    -c "read -P 0x11 64k 960k" ov.qcow2 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "3/0" \
    "an overlay over nbd+unix:// reads through to the export"
out=$(qemu-io -r -c "read -P 0x77 0 64k" -c "read -P 0x55 2M 1M" ov.qcow2 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "2/0" \
    "qemu-io reads the same overlay and its nbd backing file"
# a backing file named the legacy way: QEMU names the node its own way
qemu-img create -q -f qcow2 -b "nbd:unix:$S:exportname=exp" -F raw ov3.qcow2
both info --backing-chain ov3.qcow2
both map --output=json ov3.qcow2
stop_server

# a server killed in the middle of a transfer
P=$(free_port)
serve "$P" nbdkit -f -i 127.0.0.1 -p "$P" --filter=delay pattern 1G delay-read=2
"$CALF_IMG" convert -O raw "nbd://127.0.0.1:$P" dead.raw >conv.out 2>&1 &
cpid=$!
sleep 1.5
kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
timeout 20 tail --pid=$cpid -f /dev/null; wait $cpid; rc=$?
is "$rc" 1 "convert from a server killed mid-transfer exits 1"
ok "... saying so" grep -q "error while reading at byte 0: Input/output error" conv.out

# the server goes away and comes back: a request while it is away fails,
# the next one connects again; with reconnect-delay a request waits for it
qemu-img create -q -f qcow2 rc.qcow2 16M
qemu-io -c "write -P 0x11 0 1M" rc.qcow2 >/dev/null
R=$TMP/r
serve "$R" "$CALF_NBD" -k "$R" -t -f qcow2 rc.qcow2
"$CALF_IO" -f raw -c "read -P 0x11 0 4k" -c "sleep 2000" -c "read -P 0x11 4k 4k" -c "sleep 3000" \
    -c "read -P 0x11 8k 4k" -c "write -P 0x22 64k 4k" "nbd+unix:///?socket=$R" >rc.out 2>&1 &
iopid=$!
sleep 0.7; stop_server; sleep 2.3
serve "$R" "$CALF_NBD" -k "$R" -t -f qcow2 rc.qcow2
wait $iopid
is "$(grep -v ops rc.out)" "read 4096/4096 bytes at offset 0
read failed: Input/output error
read 4096/4096 bytes at offset 8192
wrote 4096/4096 bytes at offset 65536" "a read while the server is away fails; after it is back, the next one connects again"
"$CALF_IO" -c "read -P 0x11 0 4k" -c "sleep 1000" -c "read -P 0x11 4k 4k" --image-opts \
    "driver=nbd,server.type=unix,server.path=$R,reconnect-delay=10" >rc.out 2>&1 &
iopid=$!
sleep 0.5; stop_server; sleep 1.5
serve "$R" "$CALF_NBD" -k "$R" -t -f qcow2 rc.qcow2
wait $iopid
is "$(grep -v ops rc.out)" "read 4096/4096 bytes at offset 0
read 4096/4096 bytes at offset 4096" "reconnect-delay=10: a read waits for the server to come back"
stop_server
ok "the write after the reconnection is in the image" qemu-io -c "read -P 0x22 64k 4k" rc.qcow2

# block status follows writes, zero writes and trims on one connection
# (the driver keeps the extents of its last reply): tests/unit/nbd-cache.c
mkdir -p uc
if [ -x "$CALF_BUILD/tests/nbd-cache" ]; then
    ok "block status after a write on the same connection is fresh" "$CALF_BUILD/tests/nbd-cache" uc
else
    skip "tests/nbd-cache is not built (make test)" "block status after a write is fresh"
fi

# a server whose minimum block size is 4 KiB and which refuses anything
# else (nbdkit's blocksize-policy filter): unaligned writes, zero writes
# and reads go as whole blocks, read-modify-write at the ends
truncate -s 1M bs.raw
serve "$TMP/bs" nbdkit -U "$TMP/bs" -f --filter=blocksize-policy file bs.raw \
    blocksize-minimum=4096 blocksize-preferred=4096 blocksize-error-policy=error
out=$("$CALF_IO" -f raw -c "write -P 0x5a 512 1k" -c "write -P 0x11 6000 5000" \
    -c "write -z 7000 1000" -c "write -z 12000 10000" -c "write -P 0x22 20000 300" \
    -c "read -P 0x11 8000 100" "nbd+unix:///?socket=$TMP/bs" 2>&1)
is "$(grep -c '^wrote\|^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "6/0" \
    "minimum block 4 KiB: unaligned writes, zero writes and a read work" || diag "$out"
stop_server
out=$(qemu-io -f raw -c "read -P 0 0 512" -c "read -P 0x5a 512 1k" -c "read -P 0 1536 4464" \
    -c "read -P 0x11 6000 1000" -c "read -P 0 7000 1000" -c "read -P 0x11 8000 3000" \
    -c "read -P 0 11000 9000" -c "read -P 0x22 20000 300" -c "read -P 0 20300 8000" bs.raw)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail' <<<"$out")" "9/0" \
    "minimum block 4 KiB: the file holds those bytes and nothing around them changed"

truncate -s 1M rmw.raw
serve "$TMP/rmw" nbdkit -U "$TMP/rmw" -f --filter=blocksize-policy file rmw.raw \
    blocksize-minimum=4096 blocksize-preferred=4096 blocksize-error-policy=error
if [ -x "$CALF_BUILD/tests/nbd-evil" ]; then
    ok "minimum block 4 KiB: 4 threads writing quarters of the same blocks keep them all" \
        "$CALF_BUILD/tests/nbd-evil" "$TMP/rmw" rmw
else
    skip "tests/nbd-evil is not built (make test)" "4 threads writing quarters of blocks"
fi
stop_server
cmp -s <(head -c 16384 rmw.raw) <(python3 -c '
import sys
sys.stdout.buffer.write(b"".join(bytes([0x80 + q]) * 1024 for _ in range(4) for q in range(4)))')
is $? 0 "minimum block 4 KiB: the file holds every thread's last quarter"

# hostile servers (tests/nbd-evil-server.py) against the driver's reader
# thread and reply checks: tests/unit/nbd-evil.c
evil() { # evil MODE NAME
    local out rc
    rm -f "$TMP/ev"
    python3 "$NBD_EVIL" "$TMP/ev" "$1" >/dev/null 2>&1 &
    local srv=$!
    for _ in $(seq 50); do [ -S "$TMP/ev" ] && break; sleep 0.1; done
    out=$(timeout -k 5 30 "$CALF_BUILD/tests/nbd-evil" "$TMP/ev" "$1" 2>&1); rc=$?
    kill $srv 2>/dev/null; wait $srv 2>/dev/null
    if [ $rc -eq 0 ]; then pass "$2"; else fail "$2" "exit $rc: $out"; fi
}
if [ -x "$CALF_BUILD/tests/nbd-evil" ]; then
    evil killsend "a failed send leaves a read's buffer alone once it has returned"
    evil overlap "a read answered by overlapping chunks fails"
    evil lostflush "the flush after a connection lost with an unflushed write fails, once"
    evil gounsup "GO refused after structured replies: the export keeps them, reads work"
    evil chaos "4 threads against a server that hangs up mid-read again and again"
    # block status on one connection after another wrote (calf-nbd -e 2)
    truncate -s 1M mc.raw
    serve "$TMP/mc" "$CALF_NBD" -k "$TMP/mc" -t -e 2 -f raw mc.raw
    ok "block status on one connection sees another connection's write" \
        "$CALF_BUILD/tests/nbd-evil" "$TMP/mc" multiconn
    stop_server
    ok "that write is in the file" qemu-io -f raw -c "read -P 0x66 0 64k" mc.raw
else
    skip "tests/nbd-evil is not built (make test)" "failed send" "overlapping chunks" \
        "flush after a lost write" "GO refused" "hang-ups mid-read" "block status after another connection wrote" \
        "that write is in the file"
fi

# the kernel's nbd client, where it can be had
if ! command -v nbd-client >/dev/null; then
    skip "nbd-client (Debian nbd-client) is not installed" "kernel nbd reads calf-nbd's export"
elif ! modprobe nbd 2>/dev/null || [ ! -b /dev/nbd0 ]; then
    skip "the nbd kernel module cannot be loaded here" "kernel nbd reads calf-nbd's export"
else
    serve "$TMP/k" "$CALF_NBD" -k "$TMP/k" -t -r top.qcow2
    nbd-client -unix "$TMP/k" /dev/nbd0 >/dev/null 2>&1
    cmp <(head -c 16M /dev/nbd0) <(qemu-img convert -U -O raw top.qcow2 /dev/stdout) >/dev/null
    is $? 0 "kernel nbd reads calf-nbd's export"
    nbd-client -d /dev/nbd0 >/dev/null 2>&1
    stop_server
fi
done_testing
