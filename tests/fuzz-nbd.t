#!/bin/bash
# The NBD fuzz harnesses replayed without libFuzzer (tests/fuzz/replay-main.c):
# the server's (tests/fuzz/fuzz-nbd.c, build/tests/fuzz-nbd) over
# tests/fuzz/corpus-nbd and the client driver's (fuzz-nbd-client.c,
# build/tests/fuzz-nbd-client) over tests/fuzz/corpus-nbd-client (both
# from tests/fuzz/make-nbd-seeds.py; calf-nbd -L's lister, fuzz-nbd-list.c,
# over tests/fuzz/corpus-nbd-list from make-nbd-list-seeds.py: well-formed sessions, errors, bad
# lengths, oversized requests and replies, garbage), and deterministic
# mutants of each.  Passing means no crash, no abort, no sanitizer
# report, no hang and bounded memory.  New inputs: make fuzz-nbd,
# make fuzz-nbd-client.
S=$(cd "$(dirname "$0")" && pwd)
. "$S/tap.sh"
export TMPDIR=$TMP
plan 6
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
for side in server client list; do
prog=$CALF_BUILD/tests/fuzz-nbd; corpus=$S/fuzz/corpus-nbd
[ $side = client ] && prog=$CALF_BUILD/tests/fuzz-nbd-client corpus=$S/fuzz/corpus-nbd-client
[ $side = list ] && prog=$CALF_BUILD/tests/fuzz-nbd-list corpus=$S/fuzz/corpus-nbd-list
if [ ! -x "$prog" ]; then
    skip "$prog is not built (run make test)" "$side corpus" "$side mutants"; continue
fi
if ldd "$prog" 2>/dev/null | grep -q 'lib[at]san'; then aslimit=unlimited; else aslimit=4194304; fi
out=$(run "$corpus") && pass "$side corpus: $out" || fail "$side corpus" "$out"
# mutants: every seed with bytes flipped at 64 spots each (fixed seeds)
rm -rf "$TMP/mut"; mkdir -p "$TMP/mut"
python3 - "$corpus" "$TMP/mut" <<'PY'
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
out=$(run "$TMP/mut") && pass "$side mutants: $out" || fail "$side mutants" "$out"
done
done_testing
