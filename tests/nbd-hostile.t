#!/bin/bash
# calf-nbd against hostile clients (tests/nbd-raw.py): garbage instead of
# a handshake, an option claiming 4 GiB, a write claiming 2 GiB, reads
# past the end and too long, unknown commands and flags, a client gone
# in the middle of a write's payload, a storm of 20000 pipelined reads
# whose replies are never read, and a handshake that never ends.  Each
# gets what qemu-nbd gives it (the same wire errors, or a hang-up), the
# server stays up for the next client, its memory stays bounded, and the
# image holds exactly what well-behaved clients wrote.
. "$(dirname "$0")/nbd-lib.sh"
need_qemu qemu-img qemu-io qemu-nbd
[ -x "$CALF_NBD" ] || skip_all "calf-nbd is not built"
command -v python3 >/dev/null || skip_all "python3 is not installed"
plan 17
cd "$TMP" || exit 1
qemu-img create -q -f qcow2 img.qcow2 16M
qemu-io -c "write -P 0x5a 0 2M" img.qcow2 >/dev/null
S=$TMP/s
U="nbd+unix:///?socket=$S"

modes="bigread past-end badcmd garbage bigopt bigwrite midwrite"
answers() { # answers SERVER...: what each hostile mode got from it
    local m
    serve "$S" "$@" -k "$S" -t -e 0 -f qcow2 img.qcow2
    for m in $modes; do
        echo "$m: $(timeout 30 python3 "$NBD_RAW" "$S" "$m" 2>&1 | tail -1)"
    done
    stop_server
}
qans=$(answers qemu-nbd)
# (under AddressSanitizer freed memory waits in its quarantine, 256 MiB by
# default: a small one keeps the peak what the server itself holds)
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8
serve "$S" "$CALF_NBD" -k "$S" -t -e 0 --handshake-limit=1 -f qcow2 img.qcow2
for m in $modes; do
    got=$(timeout 30 python3 "$NBD_RAW" "$S" "$m" 2>&1 | tail -1)
    is "$m: $got" "$(grep "^$m: " <<<"$qans")" "$m: answered as qemu-nbd answers it"
done
out=$(timeout 60 python3 "$NBD_RAW" "$S" storm 2>&1)
ok "storm: pipelined reads and writes, replies never read ($out)" grep -q "^sent" <<<"$out"
hwm=$(vm_hwm "$SERVER_PID")
[ -n "$hwm" ] && [ "$hwm" -lt 262144 ] && pass "the server's peak memory stays bounded ($hwm KiB)" \
    || fail "the server's peak memory stays bounded" "VmHWM: $hwm KiB"
coproc SLOW { python3 "$NBD_RAW" "$S" slow "" wait; }
read -r slow <&"${SLOW[0]}"
sp=$SLOW_PID; eval "exec ${SLOW[1]}>&-"; wait "$sp" 2>/dev/null
is "$slow" "closed" "a handshake that never ends is hung up on (--handshake-limit)"
kill -0 "$SERVER_PID" 2>/dev/null; is $? 0 "the server is still up after all of them"
out=$(qemu-io -f raw -c "read -P 0x5a 0 2M" -c "read -P 0 2M 14M" "$U" 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "2/0" \
    "a well-behaved client then reads what it should"
stop_server
out=$(qemu-io -c "read -P 0x5a 0 2M" -c "read -P 0 2M 14M" img.qcow2 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "2/0" \
    "the image holds no byte of the hostile writes (half a payload, 2 GiB claims)"
ok "qemu-img check: the image is clean" qemu-img check -q img.qcow2

# reads count in the same byte budget as writes' payloads: 32 MiB reads
# whose replies are never read hold at most NBD_QUEUE_BYTES of buffers
# (not 32 MiB per worker on top of it); sanitizers' shadow memory would
# count too, so only in a plain build
if ldd "$CALF_NBD" 2>/dev/null | grep -q 'lib[at]san'; then
    skip "a sanitizer's shadow memory counts in VmHWM" "read buffers count in the byte budget"
else
    qemu-img create -q -f raw big.raw 64M
    serve "$S" "$CALF_NBD" -k "$S" -t -f raw big.raw
    python3 "$NBD_RAW" "$S" readstorm >/dev/null 2>&1
    hwm=$(vm_hwm "$SERVER_PID")
    [ -n "$hwm" ] && [ "$hwm" -lt 106496 ] && pass "read buffers count in the byte budget ($hwm KiB)" \
        || fail "read buffers count in the byte budget" "VmHWM: $hwm KiB (104 MiB at most)"
    stop_server
fi

# -e 1 (the default): a client that never finishes its handshake does not
# keep the next one out for longer than the limit
serve "$S" "$CALF_NBD" -k "$S" -t --handshake-limit=1 -f qcow2 img.qcow2
coproc SLOW { python3 "$NBD_RAW" "$S" slow; }
read -r slow <&"${SLOW[0]}"
out=$(timeout 10 qemu-io -f raw -c "read -P 0x5a 0 4k" "$U" 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "1/0" \
    "-e 1: the next client gets in once the stalled handshake times out"
sp=$SLOW_PID; eval "exec ${SLOW[1]}>&-"; wait "$sp" 2>/dev/null
# nor does one that sends options and never reads the replies (the server
# stuck sending them)
coproc DEAF { python3 "$NBD_RAW" "$S" deaf; }
read -r deaf <&"${DEAF[0]}"
out=$(timeout 10 qemu-io -f raw -c "read -P 0x5a 0 4k" "$U" 2>&1)
is "$(grep -c '^read' <<<"$out")/$(grep -ci 'fail\|error' <<<"$out")" "1/0" \
    "-e 1: the next client gets in once a handshake whose replies go unread times out"
sp=$DEAF_PID; eval "exec ${DEAF[1]}>&-"; wait "$sp" 2>/dev/null
stop_server
done_testing
