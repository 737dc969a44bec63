#!/bin/bash
# The nbd driver's reconnect under load: tests/unit/nbd-reconnect runs six
# threads of reads, writes and flushes through one nbd connection
# (reconnect-delay=1) while this script kills calf-nbd (SIGKILL) and
# starts it again over and over, sometimes within the delay, sometimes
# past it.  Every failed request must fail with EIO, every read must be
# what the program's model allows (an acknowledged write, or a failed
# one that may have landed), and at the end every block must read back
# as the model says; qemu-img compare then finds the image file holding
# what the program read.  No hang: the program runs under timeout.  In
# `make test-tsan` the program and calf-nbd run under ThreadSanitizer.
. "$(dirname "$0")/nbd-lib.sh"
need_qemu qemu-img
PROG=$CALF_BUILD/tests/nbd-reconnect
[ -x "$PROG" ] && [ -x "$CALF_NBD" ] || skip_all "nbd-reconnect or calf-nbd is not built"
SECS=${NBD_RECONNECT_SECS:-6}
SEED=${NBD_RECONNECT_SEED:-$(date +%s)}
echo "# seed $SEED"
plan 7
cd "$TMP" || exit 1
S=$TMP/s
qemu-img create -q -f raw img.raw 8M
img="json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$S\"},\"reconnect-delay\":1}"

start() {
    rm -f "$S"
    "$CALF_NBD" -k "$S" -t -e 0 -f raw img.raw >>server.log 2>&1 &
    SERVER_PID=$!
    wait_listen "$S"
}
start
at_exit 'kill $SERVER_PID 2>/dev/null'
timeout -s KILL $((SECS + 60)) "$PROG" -t 6 -d "$SECS" -s "$SEED" -o final.raw "$img" \
    >prog.out 2>prog.err &
prog=$!
kills=0 t_end=$((SECONDS + SECS))
RANDOM=$SEED
while [ $SECONDS -lt $t_end ] && kill -0 $prog 2>/dev/null; do
    sleep "0.$((RANDOM % 4 + 1))"      # up 0.1 - 0.4 s
    kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
    kills=$((kills + 1))
    sleep "$((RANDOM % 3 == 0)).$((RANDOM % 5))"  # down 0 - 1.4 s: within the delay or past it
    start
done
wait $prog; rc=$?
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
echo "# server killed $kills times"
sed 's/^/# /' prog.out
is "$rc" 0 "every request failed with EIO or succeeded as the model allows (status $rc)"
[ $rc = 0 ] || diag "$(head -20 prog.err)"
counts=$(grep '^ops' prog.out)
eio=$(awk '{print $6}' <<<"$counts") okn=$(awk '{print $4}' <<<"$counts")
ok "some requests failed while the server was down past the delay ($eio)" [ "${eio:-0}" -gt 0 ]
ok "many succeeded, across reconnects ($okn)" [ "${okn:-0}" -gt 100 ]
ok "the server was killed and started again more than once ($kills)" [ "$kills" -gt 2 ]
if grep -qE 'Sanitizer|runtime error' server.log prog.err; then
    fail "no sanitizer report" "$(grep -hE -A12 'Sanitizer|runtime error' server.log prog.err | head -40)"
else
    pass "no sanitizer report"
fi
ok "no EIO at the end: every block was read back" grep -q '^blocks with failed writes' prog.out
is "$(qemu-img compare -f raw -F raw final.raw img.raw 2>&1)" "Images are identical." \
    "qemu-img compare: the image file holds what the program read at the end"
done_testing
