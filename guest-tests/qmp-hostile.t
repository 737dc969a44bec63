#!/bin/bash
# calf's QMP monitor against what a client should never send, and its
# answers against QEMU's own, byte for byte.
#
# 1. guest-tests/qmp/requests.txt (request and argument errors, JSON
#    syntax errors of every kind, escapes, numbers out of range, deep
#    nesting) goes, line by line, to calf and to qemu-system-x86_64
#    -machine none -accel kvm -S: the two transcripts must be the same
#    bytes (the greeting's version and capabilities masked).
# 2. guest-tests/qmp-raw.py hostile: a 3 MiB message, 100000 levels of
#    nesting, 16 KiB of every byte value, wrong argument types, unknown
#    commands, a client that leaves mid-command, a second client while
#    the first is connected, a flood of 20000 pipelined commands, a
#    client that stops reading: each gets QEMU's error, and the test
#    guest's counter (ct.tick=1) keeps advancing throughout.
# 3. A tcp listener off loopback is refused.
. "$(dirname "$0")/lib.sh"
# (under AddressSanitizer freed memory waits in its quarantine, 256 MiB by
# default: a small one keeps the bound about what calf itself holds)
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8
need_kvm
need_cmd python3
RAW=$(cd "$(dirname "$0")" && pwd)/qmp-raw.py
REQ=$(cd "$(dirname "$0")" && pwd)/qmp/requests.txt

# 1. the same bytes as QEMU
start t --kernel "$GUEST" --append "ct.tick=1" --timeout 120
python3 "$RAW" transcript "$TMP/t.sock" "$REQ" >"$TMP/calf.txt" 2>"$TMP/t.pyerr"
kill "$pid"; finish "$pid"
ok "calf answered all of requests.txt" grep -q '"id": "last"' "$TMP/calf.txt"
if command -v qemu-system-x86_64 >/dev/null; then
    qemu-system-x86_64 -machine none -accel kvm -S -display none -nodefaults \
        -qmp "unix:$TMP/q.sock,server=on,wait=off" >"$TMP/q.err" 2>&1 &
    qpid=$!
    at_exit "kill -9 $qpid 2>/dev/null"
    wait_sock "$TMP/q.sock" 10
    python3 "$RAW" transcript "$TMP/q.sock" "$REQ" >"$TMP/qemu.txt" 2>>"$TMP/q.err"
    kill "$qpid"; wait "$qpid" 2>/dev/null
    if grep -q '"id": "last"' "$TMP/qemu.txt"; then
        d=$(diff "$TMP/qemu.txt" "$TMP/calf.txt" | head -20)
        is "$d" "" "every answer is QEMU 7.2's, byte for byte ($(wc -l <"$TMP/calf.txt") lines)"
    else
        skip "qemu-system-x86_64 did not answer: $(tail -3 "$TMP/q.err")" "answers as QEMU's"
    fi
else
    skip "qemu-system-x86_64 is not installed" "answers as QEMU's"
fi

# 2. the hostile client, with a 2-vCPU guest running
start h --kernel "$GUEST" --append "ct.tick=1" --cpus 2 --timeout 280
python3 "$RAW" hostile "$TMP/h.sock" "$TMP/h.out" "$pid" >"$TMP/h.facts" 2>"$TMP/h.pyerr"
sed 's/^/#   /' "$TMP/h.pyerr"
grep -v '^flood-rate\|^rss' "$TMP/h.facts" >/dev/null
echo "# $(grep '^flood-rate\|^rss' "$TMP/h.facts" | tr '\n' ' ')"
finish "$pid"
is "$(fact h huge)" True "a 3 MiB message: JSON token size limit exceeded"
is "$(fact h after-huge)" True "the monitor answers after it"
ok "100000 levels: JSON nesting depth limit exceeded ($(fact h deep) times)" \
    [ "$(fact h deep)" -ge 90 ]
is "$(fact h after-deep)" True "the monitor answers after it"
is "$(fact h wrong-type)" \
    '{"id": "t", "error": {"class": "GenericError", "desc": "Invalid parameter type for '\''command-line'\'', expected: string"}}' \
    "a wrong argument type: QEMU's error"
is "$(fact h unknown)" \
    '{"id": "u", "error": {"class": "CommandNotFound", "desc": "The command no-such has not been found"}}' \
    "an unknown command: CommandNotFound"
is "$(fact h after-junk)" True "16 KiB of every byte value, then it answers"
is "$(fact h second-waits)" True "a second client waits while one is connected"
is "$(fact h second-greeted)" True "and is greeted once the first leaves mid-command"
is "$(fact h flood)" "20000 True" "20000 pipelined commands, every one answered in order"
is "$(fact h runs-while-stalled)" True "the guest runs while a client does not read its answers"
ok "calf's memory stays bounded ($(fact h rss-growth-mb) MiB more)" [ "$(fact h rss-growth-mb)" -lt 64 ]
is "$(fact h still-running)" True "a new client finds the VM running"
is "$(fact h ticks-at-end)" True "and the guest's counter advancing"
is "$status" 0 "calf exits 0 after quit"

# 3. no monitor open to the network
boot nonlocal --kernel "$GUEST" --qmp tcp:0.0.0.0:4444,server=on,wait=off --timeout 20
is "$status" 2 "--qmp tcp on a non-loopback address is refused (status $status)"
ok "and says why" has_err nonlocal "is not a loopback address"
boot noserver --kernel "$GUEST" --qmp "unix:$TMP/x.sock" --timeout 20
is "$status" 2 "--qmp without server=on is refused (calf only listens)"

# 4. wait=on (QEMU's default for a server): the guest starts once a
#    client is there
"$CALF" run --kernel "$GUEST" --append "ct.tick=1" --timeout 60 \
    --qmp "unix:$TMP/w.sock,server=on" >"$TMP/w.out" 2>"$TMP/w.err" </dev/null &
pid=$!
at_exit "kill -9 $pid 2>/dev/null"
wait_sock "$TMP/w.sock" 10
sleep 1
ok "wait=on: nothing runs before a client connects" [ ! -s "$TMP/w.out" ]
ok "and calf says it waits" has_err w "waiting for a QMP client"
printf '%s\n' '{"execute":"qmp_capabilities"}' >"$TMP/w.req"
python3 "$RAW" transcript "$TMP/w.sock" "$TMP/w.req" >/dev/null 2>&1 &
for ((i = 0; i < 100; i++)); do has w "calf-test: tick" && break; sleep 0.1; done
ok "once one did, the guest runs" has w "calf-test: tick"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
ok "calf run --help lists --qmp" bash -c "'$CALF' run --help | grep -q -- '--qmp unix:PATH'"
[ "$t_fail" = 0 ] || { show h | grep -v "calf-test: tick" | tail -30; }
done_testing
