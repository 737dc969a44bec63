#!/bin/bash
# The NBD server's fuzz harness (tests/fuzz/fuzz-nbd.c) replayed without
# libFuzzer by build/tests/fuzz-nbd (tests/fuzz/replay-main.c) over the
# committed corpus tests/fuzz/corpus-nbd (tests/fuzz/make-nbd-seeds.py:
# well-formed sessions, bad lengths, oversized requests, garbage) and
# deterministic mutants of it.  Passing means no crash, no abort, no
# sanitizer report, no hang and bounded memory.  New inputs: make fuzz-nbd.
S=$(cd "$(dirname "$0")" && pwd)
. "$S/tap.sh"
export TMPDIR=$TMP
prog=$CALF_BUILD/tests/fuzz-nbd
[ -x "$prog" ] || skip_all "$prog is not built (run make test)"
plan 2
if ldd "$prog" 2>/dev/null | grep -q 'lib[at]san'; then aslimit=unlimited; else aslimit=4194304; fi
run() {
    local out rc
    out=$( (ulimit -v $aslimit; REPLAY_RSS_MAX_MB=512 timeout -k 5 120 "$prog" "$@") 2>&1); rc=$?
    if [ $rc -eq 0 ] && ! grep -qE 'runtime error:|Sanitizer' <<<"$out"; then
        echo "$(grep '^replay:' <<<"$out" | tail -1 | sed 's/^replay: //')"
        return 0
    fi
    echo "exit $rc: $(tail -20 <<<"$out")"
    return 1
}
out=$(run "$S/fuzz/corpus-nbd") && pass "corpus: $out" || fail "corpus" "$out"
# mutants: every seed with bytes flipped at 64 spots each (fixed seeds)
mkdir -p "$TMP/mut"
python3 - "$S/fuzz/corpus-nbd" "$TMP/mut" <<'PY'
import os, random, sys
src, dst = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    data = open(os.path.join(src, name), "rb").read()
    for k in range(64):
        r = random.Random(sum(name.encode()) * 100 + k)
        b = bytearray(data)
        for _ in range(1 + k % 4):
            if b:
                b[r.randrange(len(b))] = r.randrange(256)
        open(os.path.join(dst, "%s-%02d" % (name, k)), "wb").write(bytes(b))
PY
out=$(run "$TMP/mut") && pass "mutants: $out" || fail "mutants" "$out"
done_testing
