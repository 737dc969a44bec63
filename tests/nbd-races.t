#!/bin/bash
# The nbd driver's races, each against a server that hangs up (or holds
# replies) at the moment that opens it (tests/nbd-race-server.py driven by
# tests/unit/nbd-races.c); every case runs under a timeout, since the
# failure a race leaves is often a request waiting for good.  Under
# `make test-tsan` the driver's threads run under ThreadSanitizer.
. "$(dirname "$0")/nbd-lib.sh"
RACES=$CALF_BUILD/tests/nbd-races
SERVER=$(cd "$(dirname "$0")" && pwd)/nbd-race-server.py
need_cmd python3
[ -x "$RACES" ] || skip_all "tests/nbd-races is not built (make test-progs)"
plan 7
cd "$TMP" || exit 1

# race SERVERMODE MODE DESC: nbd-races MODE against a new server in
# SERVERMODE; passes on exit 0
race() {
    local smode=$1 mode=$2 desc=$3 S=$TMP/s out rc
    serve "$S" python3 "$SERVER" "$S" "$smode"
    out=$(timeout -k 5 20 "$RACES" "$S" "$mode" 2>&1); rc=$?
    stop_server
    [ $rc -eq 124 ] && out="timed out (a request waits for good)
$out"
    is "$rc" 0 "$desc"
    [ $rc -eq 0 ] || diag "$out"
}

# A reconnection whose server hangs up right after the handshake: the new
# reader thread meets the end before the thread that started it goes on;
# the connection must stay dead (the request fails), never be marked
# alive again with no reader left to answer.
race flap reconnect "a reconnection that ends at once fails the request, then the next one reads"
race flap reconnect "the same, again"
race flap reconnect "the same, a third time"

# Two flushes in flight at once, and a write acknowledged after both were
# sent: neither covers it.  When the connection then ends, the next flush
# must say the write may be lost.
race flush2 flush2 "two flushes in flight do not cover a write acked after both were sent"
race flush2 flush2 "the same, again"

# A server whose minimum block is 4 KiB: a 1 KiB write is a read-modify-
# write of its block; a whole-block write, zero write or trim of the same
# block at the same time must not be undone by the RMW's write-back.
race mem4k rmw "a whole-block write, zero or trim racing an RMW of its block stays"
race mem4k rmw "the same, again"
