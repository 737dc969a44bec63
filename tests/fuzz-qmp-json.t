#!/bin/bash
# The QMP JSON reader's fuzz harness (tests/fuzz/fuzz-qmp-json.c)
# replayed without libFuzzer over its committed corpus
# tests/fuzz/corpus-qmp-json and saved findings tests/fuzz/regress-qmp-json:
# no crash, no abort (every message a value or one error; each value
# written, read back and equal), bounded memory.
S=$(cd "$(dirname "$0")" && pwd)
. "$S/tap.sh"
prog=$CALF_BUILD/tests/fuzz-qmp-json
[ -x "$prog" ] || skip_all "$prog is not built (run make test)"
plan 2
dirs=("$S/fuzz/corpus-qmp-json")
[ -d "$S/fuzz/regress-qmp-json" ] && dirs+=("$S/fuzz/regress-qmp-json")
if ldd "$prog" 2>/dev/null | grep -q 'lib[at]san'; then aslimit=unlimited; else aslimit=4194304; fi
out=$( (ulimit -v $aslimit; REPLAY_RSS_MAX_MB=512 timeout -k 5 120 "$prog" "${dirs[@]}") 2>&1); rc=$?
if [ $rc -eq 0 ] && ! grep -qE 'runtime error:|Sanitizer|^fuzz' <<<"$out"; then
    pass "$(grep '^replay:' <<<"$out" | tail -1 | sed 's/^replay: //') replayed cleanly"
else
    fail "exit $rc" "$(tail -30 <<<"$out")
reproduce: $prog -v ${dirs[*]}"
fi

# Hash flooding: 23000 keys that all share QEMU's qdict hash (its shift
# for byte i repeats at i+24, so swapping bytes i and i+24 keeps it).
# The duplicate-key index hashed with it probed quadratically: ~1.5 s of
# CPU here (most of it for one message).  Its own seeded hash: ~0.05 s.
# The bound is CPU time, generous against a loaded machine.
flood=$(mktemp -d)
trap 'rm -rf "$flood"' EXIT
python3 - "$flood/flood.json" <<'PY'
import sys
n = 23000; k = (n - 1).bit_length()
keys = []
for m in range(n):
    s = ['c'] * (24 + k)
    for i in range(k):
        s[i], s[24 + i] = ('b', 'a') if m >> i & 1 else ('a', 'b')
    keys.append(''.join(s))
open(sys.argv[1], 'w').write('{' + ','.join('"%s":1' % x for x in keys) + '}')
PY
TIMEFORMAT='%U %S'
cpu=$( { time "$prog" "$flood" >/dev/null 2>&1; } 2>&1 | tail -1)
ms=$(awk '{printf "%d", ($1 + $2) * 1000}' <<<"$cpu")
if [ -n "$ms" ] && [ "$ms" -lt 400 ]; then
    pass "an object of 23000 keys of one qdict hash parses in ${ms} ms of CPU"
else
    fail "colliding keys took ${ms:-?} ms of CPU (bound 400)"
fi
done_testing
