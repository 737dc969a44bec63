#!/bin/bash
# Fuzz smoke test (well under a minute): the qcow2 fuzz harness
# (tests/fuzz/fuzz-qcow2-open.c) replayed without libFuzzer by
# build/tests/fuzz-replay over the seed corpus, the saved regression
# inputs (tests/fuzz/regress), a sweep of header fields set to edge values,
# and a few thousand deterministic random mutants; then, when clang with
# libFuzzer works, a short real fuzzing run of a fixed number of runs.
# Passing means no crash, no hang and no sanitizer report.  Every stage
# does a fixed amount of work; the timeouts only catch hangs.
S=$(cd "$(dirname "$0")" && pwd)
. "$S/tap.sh"
# the harness keeps its image file in $TMPDIR: inside $TMP, gone even after a kill
export TMPDIR=$TMP
[ -x "$CALF_BUILD/tests/fuzz-replay" ] || skip_all "$CALF_BUILD/tests/fuzz-replay is not built (run make test)"
# a private copy: a rebuild while this runs must not pull it away
cp "$CALF_BUILD/tests/fuzz-replay" "$TMP/fuzz-replay"; R=$TMP/fuzz-replay
plan 5

# The seed corpus needs qemu-img and qemu-io: without them (and only
# then) the corpus and the header sweep over it are skipped.
mkdir -p "$TMP/corpus"
have_qemu=yes
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || have_qemu=
if [ -z "$have_qemu" ]; then
    skip "qemu-img/qemu-io are not installed" "seed corpus"
elif "$S/fuzz/make-corpus.sh" "$TMP/corpus" >/dev/null 2>"$TMP/err"; then
    pass "seed corpus: $(ls "$TMP/corpus" | wc -l) images"
else
    fail "seed corpus: tests/fuzz/make-corpus.sh failed" "$(head -c 600 "$TMP/err")"
fi

# Every header field of a few seeds set to edge values, one at a time.
# (the timeouts here and below catch a hang: the work itself is fixed)
sweep=() missing=
for base in v3-512 v2-512 snap-512 comp-zlib-4k xl2-16k backing-missing; do
    if [ -f "$TMP/corpus/$base.qcow2" ]; then sweep+=("$TMP/corpus/$base.qcow2")
    else missing+=" $base"; fi
done
if [ -z "$have_qemu" ]; then
    skip "no seed corpus without qemu-img/qemu-io" "header field sweep"
elif [ -n "$missing" ]; then
    fail "header field sweep: seeds missing from the corpus:$missing"
else
    out=$(timeout 300 "$R" -H "${sweep[@]}" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then pass "header field sweep: $(echo "$out" | grep "^fuzz-replay:" | tail -1)"
    else fail "header field sweep: exit $rc: $(echo "$out" | tail -20)"; fi
fi

out=$(timeout 300 "$R" -s 20261125 -m 100 "$TMP/corpus" "$S/fuzz/regress" 2>&1); rc=$?
if [ $rc -eq 0 ]; then pass "corpus and 100 mutants of each: $(echo "$out" | grep "^fuzz-replay:" | tail -1)"
else
    fail "corpus and mutants: exit $rc: $(echo "$out" | tail -20)"
    echo "# reproduce: $CALF_BUILD/tests/fuzz-replay -v -s 20261125 -m 100 DIR-FROM-make-corpus.sh tests/fuzz/regress"
fi

# The hang guard for one input on its own: a crafted image must not make
# the harness loop (each input gets 20 s in libFuzzer as well).
start=$(date +%s)
timeout 20 "$R" -m 0 "$S/fuzz/regress" >/dev/null 2>&1; rc=$?
if [ $rc -eq 0 ]; then pass "regression inputs replay in $(( $(date +%s) - start )) s"
else fail "regression inputs: exit $rc"; fi

# A short real fuzzing run when clang has libFuzzer: a fixed number of
# runs (about 8 s here), whatever the machine's speed.
CC=${FUZZ_CC:-clang}
runs=500
if ! command -v "$CC" >/dev/null; then
    skip "$CC is not installed"
elif ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){(void)d;(void)n;return 0;}' |
        "$CC" -x c -fsanitize=fuzzer -o "$TMP/probe" - 2>/dev/null; then
    skip "$CC cannot link -fsanitize=fuzzer (libclang-rt missing)"
else
    cd "$S/.."
    # -O0: the build is most of this stage's time
    if ! "$CC" -std=gnu11 -O0 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I. \
            $(pkg-config --cflags zlib libzstd libcrypto 2>/dev/null) \
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
            -o "$TMP/fuzz" tests/fuzz/fuzz-qcow2-open.c block/*.c \
            $(pkg-config --libs zlib libzstd libcrypto 2>/dev/null) -lpthread 2>"$TMP/cc.err"; then
        fail "clang build of the harness: $(head -5 "$TMP/cc.err")"
    else
        mkdir -p "$TMP/new"
        out=$(cd "$TMP" && timeout 300 ./fuzz -seed=1 -max_len=65536 -timeout=25 -rss_limit_mb=2048 -close_fd_mask=3 \
              -runs=$runs -artifact_prefix="$TMP/" new corpus "$S/fuzz/regress" 2>&1); rc=$?
        if [ $rc -eq 0 ]; then pass "libFuzzer, $runs runs: $(echo "$out" | grep -o 'Done [0-9]* runs.*' | head -1)"
        else
            fail "libFuzzer found a problem (exit $rc): $(echo "$out" | grep -E 'ERROR|SUMMARY|#[0-9] ' | head -15)"
            mkdir -p "$CALF_BUILD/fuzz-smoke-failures"
            for a in "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* "$TMP"/oom-* "$TMP"/slow-unit-*; do
                [ -f "$a" ] && cp "$a" "$CALF_BUILD/fuzz-smoke-failures/" &&
                    echo "# input saved: $CALF_BUILD/fuzz-smoke-failures/$(basename "$a") (replay: $CALF_BUILD/tests/fuzz-replay -v FILE)"
            done
        fi
    fi
fi
done_testing
