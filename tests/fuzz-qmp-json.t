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
plan 1
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
done_testing
