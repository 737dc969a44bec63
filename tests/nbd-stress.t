#!/bin/bash
# Concurrency of the NBD server and client against a model: calf-nbd
# serves an image (raw, qcow2, qcow2 over a backing file) and
# tests/unit/blk-stress drives it through calf's nbd driver, six threads
# with up to sixteen requests in flight on one connection (reads, writes,
# write-zeroes, trims, flushes, on shared and private ranges), each read
# checked against a model of what a disk may return for concurrent
# requests; meanwhile a second client (calf-io, its own connection) reads
# the export over and over.  After each run qemu-img compare reads the
# image file and finds what blk-stress read at the end, and qemu-img check
# finds it clean.  Under `make test-tsan` every one of these threads runs
# under ThreadSanitizer, server and client.
. "$(dirname "$0")/nbd-lib.sh"
need_qemu qemu-img qemu-io
STRESS=$CALF_BUILD/tests/blk-stress
[ -x "$STRESS" ] && [ -x "$CALF_NBD" ] || skip_all "blk-stress or calf-nbd is not built"
OPS=${NBD_STRESS_OPS:-600}
SEED=${NBD_STRESS_SEED:-$(date +%s)}
echo "# seed $SEED"
plan 12
cd "$TMP" || exit 1
head -c 4M /dev/urandom > base.raw

run() { # run NAME FORMAT: $img made, $init what it holds at the start ("" zeros)
    local name=$1 fmt=$2 S=$TMP/s out rc
    : >reader.err
    serve "$S" "$CALF_NBD" -k "$S" -t -e 0 --discard=unmap -f "$fmt" "$img"
    ( while :; do "$CALF_IO" -f raw -r -c "read 0 4M" -c "read 1M 64k" \
          "nbd+unix:///?socket=$S" >/dev/null 2>>reader.err || break; done ) &
    local reader=$!
    out=$("$STRESS" -t 6 -n "$OPS" -s "$SEED" -f raw ${init:+-i "$init"} -o final.raw \
        "nbd+unix:///?socket=$S" 2>&1); rc=$?
    kill $reader 2>/dev/null; wait $reader 2>/dev/null
    stop_server
    if grep -qE 'Sanitizer|runtime error' "$TMP/server.log" reader.err; then
        fail "$name: no sanitizer report from the server or the second client" \
            "$(grep -hE -A12 'Sanitizer|runtime error' "$TMP/server.log" reader.err | head -40)"
    else
        pass "$name: no sanitizer report from the server or the second client"
    fi
    is "$rc" 0 "$name: every read through calf-nbd is one the model allows" || true
    [ $rc -eq 0 ] || diag "$out"
    is "$(qemu-img compare -f raw -F "$fmt" final.raw "$img" 2>&1)" "Images are identical." \
        "$name: the image file holds what the client read at the end"
    if [ "$fmt" = qcow2 ]; then
        ok "$name: qemu-img check" qemu-img check -q "$img"
    else
        pass "$name: (raw: nothing to check)"
    fi
}
img=$TMP/img.raw init=
qemu-img create -q -f raw "$img" 4M
run raw raw
img=$TMP/img.qcow2 init=
qemu-img create -q -f qcow2 -o cluster_size=4k "$img" 4M
run qcow2 qcow2
img=$TMP/top.qcow2 init=$TMP/base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw "$img" 4M
run "qcow2 over raw" qcow2
done_testing
