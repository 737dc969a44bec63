#!/bin/bash
# Fuzz smoke test (well under a minute): the qcow2 fuzz harness
# (tests/fuzz/fuzz-qcow2-open.c) replayed without libFuzzer by
# build/tests/fuzz-replay over the seed corpus, the saved regression
# inputs (tests/fuzz/regress), a sweep of header fields set to edge values,
# and a few thousand deterministic random mutants; then, when clang with
# libFuzzer works and time is left, a short real fuzzing run.  Passing
# means no crash, no hang and no sanitizer report.
S=$(cd "$(dirname "$0")" && pwd)
B=${CALF_BUILD:-$S/../build}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# the harness keeps its image file in $TMPDIR: inside $T, gone even after a kill
export TMPDIR=$T
if [ ! -x "$B/tests/fuzz-replay" ]; then
    echo "1..0 # skip $B/tests/fuzz-replay is not built (run make test)"; exit 0
fi
# a private copy: a rebuild while this runs must not pull it away
cp "$B/tests/fuzz-replay" "$T/fuzz-replay"; R=$T/fuzz-replay
echo "1..5"
n=0; failed=0
ok() { n=$((n+1)); echo "ok $n - $*"; }
notok() { n=$((n+1)); failed=$((failed+1)); echo "not ok $n - $*"; }
skip() { n=$((n+1)); echo "ok $n # skip $*"; }

mkdir -p "$T/corpus"
if command -v qemu-img >/dev/null && command -v qemu-io >/dev/null &&
   "$S/fuzz/make-corpus.sh" "$T/corpus" >/dev/null 2>"$T/err"; then
    ok "seed corpus: $(ls "$T/corpus" | wc -l) images"
else
    skip "no seed corpus (qemu-img/qemu-io missing or failing: $(head -c 200 "$T/err" 2>/dev/null))"
fi

# Every header field of a few seeds set to edge values, one at a time.
sweep=()
for base in v3-512 v2-512 snap-512 comp-zlib-4k xl2-16k backing-missing; do
    [ -f "$T/corpus/$base.qcow2" ] && sweep+=("$T/corpus/$base.qcow2")
done
# -t: on a slow or busy machine fewer runs, not a failure; a hang still
# trips the outer timeout
out=$(timeout 40 "$R" -t 12 -H "${sweep[@]}" 2>&1); rc=$?
if [ $rc -eq 0 ]; then ok "header field sweep: $(echo "$out" | grep "^fuzz-replay:" | tail -1)"
else notok "header field sweep: exit $rc: $(echo "$out" | tail -20)"; fi

out=$(timeout 40 "$R" -t 12 -s 20261125 -m 100 "$T/corpus" "$S/fuzz/regress" 2>&1); rc=$?
if [ $rc -eq 0 ]; then ok "corpus and 100 mutants of each: $(echo "$out" | grep "^fuzz-replay:" | tail -1)"
else
    notok "corpus and mutants: exit $rc: $(echo "$out" | tail -20)"
    echo "# reproduce: $B/tests/fuzz-replay -v -s 20261125 -m 100 DIR-FROM-make-corpus.sh tests/fuzz/regress"
fi

# The hang guard for one input on its own: a crafted image must not make
# the harness loop (each input gets 20 s in libFuzzer as well).
start=$(date +%s)
timeout 20 "$R" -m 0 "$S/fuzz/regress" >/dev/null 2>&1; rc=$?
if [ $rc -eq 0 ]; then ok "regression inputs replay in $(( $(date +%s) - start )) s"
else notok "regression inputs: exit $rc"; fi

# A short real fuzzing run when clang has libFuzzer.
CC=${FUZZ_CC:-clang}
if [ $SECONDS -gt 25 ]; then
    skip "libFuzzer stage: $SECONDS s gone already, no time left under a minute (slow machine)"
elif ! command -v "$CC" >/dev/null; then
    skip "$CC is not installed"
elif ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){(void)d;(void)n;return 0;}' |
        "$CC" -x c -fsanitize=fuzzer -o "$T/probe" - 2>/dev/null; then
    skip "$CC cannot link -fsanitize=fuzzer (libclang-rt missing)"
else
    cd "$S/.."
    # -O0: the build is most of this stage's time
    if ! "$CC" -std=gnu11 -O0 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I. \
            $(pkg-config --cflags zlib libzstd libcrypto 2>/dev/null) \
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
            -o "$T/fuzz" tests/fuzz/fuzz-qcow2-open.c block/*.c \
            $(pkg-config --libs zlib libzstd libcrypto 2>/dev/null) -lpthread 2>"$T/cc.err"; then
        notok "clang build of the harness: $(head -5 "$T/cc.err")"
    elif [ $SECONDS -gt 45 ]; then
        skip "libFuzzer stage: $SECONDS s gone after the build, no time left under a minute"
    else
        fuzz_s=$(( 53 - SECONDS )); [ $fuzz_s -gt 8 ] && fuzz_s=8
        mkdir -p "$T/new"
        out=$(cd "$T" && timeout 40 ./fuzz -seed=1 -max_len=65536 -timeout=25 -rss_limit_mb=2048 -close_fd_mask=3 \
              -max_total_time=$fuzz_s -artifact_prefix="$T/" new corpus "$S/fuzz/regress" 2>&1); rc=$?
        if [ $rc -eq 0 ]; then ok "libFuzzer, $fuzz_s s: $(echo "$out" | grep -o 'Done [0-9]* runs.*' | head -1)"
        else
            notok "libFuzzer found a problem (exit $rc): $(echo "$out" | grep -E 'ERROR|SUMMARY|#[0-9] ' | head -15)"
            mkdir -p "$B/fuzz-smoke-failures"
            for a in "$T"/crash-* "$T"/leak-* "$T"/timeout-* "$T"/oom-* "$T"/slow-unit-*; do
                [ -f "$a" ] && cp "$a" "$B/fuzz-smoke-failures/" &&
                    echo "# input saved: $B/fuzz-smoke-failures/$(basename "$a") (replay: $B/tests/fuzz-replay -v FILE)"
            done
        fi
    fi
fi
exit $(( failed > 0 ))
