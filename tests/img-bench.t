#!/bin/bash
# calf-img bench against qemu-img bench: the same lines (the time
# blanked), the same refusals and exit codes; and what a write run leaves
# behind, read back by qemu-img: the pattern at each request's offset,
# offsets that wrap at the end of the image, nothing anywhere else, a
# clean qemu-img check after 64 threads allocated clusters at once, and a
# request past the end that fails the run with EIO.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

# bench prints how long it took: blank that
same_bench() {
    local desc=$1; shift
    is "$(run_capture "$CDIR" "$CALF_IMG" bench "$@" | sed 's/^Run completed in [0-9.]* seconds\.$/Run completed in X seconds./')" \
        "$(run_capture "$QDIR" qemu-img bench "$@" | sed 's/^Run completed in [0-9.]* seconds\.$/Run completed in X seconds./')" \
        "$desc"
}

in_both qemu-img create -q -f qcow2 a.qcow2 4M
in_both qemu-img create -q -f raw a.raw 4M

# what both print and how they exit
same_bench "read, defaults but the count" -c 10 a.qcow2
same_bench "read of a raw file, -d 1" -c 10 -d 1 -f raw a.raw
same_bench "-s 0: zero-byte requests" -c 3 -s 0 a.qcow2
same_bench "-t none -i threads" -c 10 -t none -i threads -f raw a.raw
same_bench "--flush-interval: the extra line" -w -c 10 -d 2 --flush-interval=2 a.qcow2
same_bench "--no-drain with --flush-interval" -w -c 10 -d 2 --flush-interval=4 --no-drain a.qcow2
same_bench "--no-drain without --flush-interval changes nothing" -w -c 4 --no-drain a.qcow2
same_bench "-w -U refused" -w -U -c 4 a.qcow2
# while another process writes the image (qemu-io holds its locks)
holders=()
for d in "$CDIR" "$QDIR"; do
    (cd "$d" && exec qemu-io -c 'sleep 20000' a.qcow2) >/dev/null 2>&1 &
    holders+=($!)
done
for i in $(seq 100); do   # until both hold their locks
    ! (cd "$CDIR" && qemu-img info a.qcow2) >/dev/null 2>&1 &&
        ! (cd "$QDIR" && qemu-img info a.qcow2) >/dev/null 2>&1 && break
    sleep 0.1
done
same_bench "a reader while another process writes: refused, the same words" -c 4 a.qcow2
same_bench "a writer while another process writes: refused, the same words" -w -c 4 a.qcow2
same_bench "-U reads while another process writes" -c 4 -U a.qcow2
kill "${holders[@]}" 2>/dev/null
wait
same_bench "a request past the end: EIO, exit 1" -c 2 -o 5M a.qcow2
same_bench "a request that runs past the end: EIO, exit 1" -c 3 -S 1M -o 3M -s 2M a.qcow2
same_bench "-c -1 refused" -c -1 a.qcow2
same_bench "-c x refused" -c x a.qcow2
same_bench "-q prints the same lines" -q -c 3 a.qcow2
same_bench "--pattern=x refused once" -w --pattern=x a.qcow2
same_bench "--pattern=-1 refused once" -w --pattern=-1 a.qcow2
same_bench "-s 1x refused" -c 3 -s 1x a.qcow2
same_bench "--pattern=256 refused" -w --pattern=256 a.qcow2
same_bench "--flush-interval without -w refused" --flush-interval=2 a.qcow2
same_bench "--flush-interval smaller than the depth refused" -w -c 5 --flush-interval=2 a.qcow2
same_bench "-t bogus refused" -t bogus a.qcow2
same_bench "-i bogus refused" -i bogus a.qcow2
same_bench "two file names refused" a.qcow2 b
same_bench "a missing image" -c 1 nothere.qcow2
# (qemu-img 7.2 takes -d 0 and then waits for ever: calf-img refuses it)
out=$("$CALF_IMG" bench -d 0 a.qcow2 2>&1); rc=$?
is "$rc: $out" "1: calf-img: Invalid queue depth specified" "-d 0 refused (qemu-img hangs)"

# a write run, by both tools into twins: the same guest view and map
# allocated FILE: the ranges the image itself holds, joined ("zero" tells
# only whether the host file has a hole there: qemu-img writes the rest
# of a new cluster, calf-img leaves it sparse)
allocated() {
    qemu-img map --output=json "$1" | python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    if not e["present"] or e["depth"]:
        continue
    if out and out[-1][1] == e["start"]:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["start"] + e["length"]])
print(out)'
}
# bench_twins DESC ARGS...: calf-img and qemu-img bench -w ARGS into
# fresh 4 MiB qcow2 images c.qcow2 and q.qcow2; both runs must work and
# qemu-img's must have written something (two empty images compare equal)
bench_twins() {
    local desc=$1 out; shift
    rm -f c.qcow2 q.qcow2
    qemu-img create -q -f qcow2 c.qcow2 4M && qemu-img create -q -f qcow2 q.qcow2 4M
    if ! out=$("$CALF_IMG" bench -w "$@" c.qcow2 2>&1); then
        fail "$desc: reads as qemu-img's" "calf-img bench failed: $out"
    elif ! out=$(qemu-img bench -w "$@" q.qcow2 2>&1) || [ "$(allocated q.qcow2)" = "[]" ]; then
        fail "$desc: reads as qemu-img's" "qemu-img bench wrote nothing to compare with: $out"
    else
        ok "$desc: reads as qemu-img's" qemu-img compare c.qcow2 q.qcow2
    fi
    is "$(allocated c.qcow2)" "$(allocated q.qcow2)" "$desc: the same ranges allocated as by qemu-img"
    ok "$desc: qemu-img check" qemu-img check -q c.qcow2
}
bench_twins "-w -c 10 -s 4k -S 64k -o 8k --pattern=0xab" -c 10 -s 4k -S 64k -o 8k --pattern=0xab
# the pattern is where the requests went, and only there
args=()
for i in $(seq 0 9); do args+=(-c "read -P 0xab $((8192 + i * 65536)) 4k"); done
args+=(-c "read -P 0 0 8k" -c "read -P 0 12288 61440" -c "read -P 0 $((8192 + 10 * 65536)) 1M")
ok "the pattern at each of the 10 offsets, zeros between and after" qemu-io "${args[@]}" c.qcow2
bench_twins "offsets wrap at the end of the image (-S 1M -c 9)" -c 9 -s 4k -S 1M -o 12k --pattern=7
ok "the wrapped requests landed at 12k + k MiB" \
    qemu-io -c 'read -P 7 12k 4k' -c 'read -P 7 1036k 4k' -c 'read -P 7 2060k 4k' \
    -c 'read -P 7 3084k 4k' -c 'read -P 0 16k 1004k' c.qcow2
bench_twins "default pattern: written zeros" -c 4 -s 64k -S 128k
is "$(qemu-img map --output=json c.qcow2 | grep -c '"data": true')" 4 \
    "default pattern: four clusters allocated (data, not holes)"
# 64 threads allocating clusters at once
rm -f many.qcow2
qemu-img create -q -f qcow2 many.qcow2 64M
"$CALF_IMG" bench -w -c 2000 -d 64 -s 4k -S 32k --pattern=0x5a many.qcow2 >/dev/null
ok "2000 writes at depth 64 into new clusters: qemu-img check" qemu-img check -q many.qcow2
python3 -c "
with open('many.ref', 'wb') as f:
    f.truncate(64 << 20)
    for i in range(2000):
        f.seek(i * 32768)
        f.write(b'\x5a' * 4096)"
ok "2000 writes at depth 64 into new clusters: each at its offset" \
    qemu-img compare -F raw many.qcow2 many.ref
# raw, O_DIRECT, with flushes
rm -f d.raw && qemu-img create -q -f raw d.raw 1M
"$CALF_IMG" bench -w -f raw -t none -c 8 -d 2 -s 4k -S 128k --pattern=0x31 --flush-interval=2 d.raw >/dev/null
python3 -c "
import sys
d = open('d.raw', 'rb').read()
want = bytearray(1 << 20)
for i in range(8):
    want[i * 131072:i * 131072 + 4096] = b'\x31' * 4096
sys.exit(d != want)" && pass "raw, -t none, --flush-interval: every byte as expected" ||
    fail "raw, -t none, --flush-interval: every byte as expected"

done_testing
