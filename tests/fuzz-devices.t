#!/bin/bash
# The device fuzz harnesses (tests/fuzz/fuzz-{fwcfg,vga,pci,ide,virtio,vmstate}.c,
# virtio's also built for virtio-rng and virtio-net as fuzz-vrng and
# fuzz-vnet)
# replayed without libFuzzer by their replay programs
# (build/tests/fuzz-NAME, tests/fuzz/replay-main.c) over the committed
# corpora tests/fuzz/corpus-NAME and the saved crashes
# tests/fuzz/regress-NAME.  Passing means no crash, no abort, no
# sanitizer report, no hang (a timeout per harness) and bounded memory
# (RLIMIT_AS where no sanitizer needs the address space, and the replay
# program's own peak-RSS check).  New inputs come from `make fuzz`.
S=$(cd "$(dirname "$0")" && pwd)
. "$S/tap.sh"
# the IDE and virtio harnesses keep their disk images in $TMPDIR
export TMPDIR=$TMP
NAMES="fwcfg vga pci ide virtio vrng vnet vmstate"
plan 8
for name in $NAMES; do
    prog=$CALF_BUILD/tests/fuzz-$name
    if [ ! -x "$prog" ]; then
        skip "$prog is not built (run make test)"; continue
    fi
    dirs=("$S/fuzz/corpus-$name")
    [ -d "$S/fuzz/regress-$name" ] && dirs+=("$S/fuzz/regress-$name")
    # a sanitizer reserves terabytes of address space: no RLIMIT_AS then
    if ldd "$prog" 2>/dev/null | grep -q 'lib[at]san'; then aslimit=unlimited; else aslimit=4194304; fi
    out=$( (ulimit -v $aslimit; REPLAY_RSS_MAX_MB=1024 timeout -k 5 120 "$prog" "${dirs[@]}") 2>&1); rc=$?
    if [ $rc -eq 0 ] && ! grep -qE 'runtime error:|Sanitizer|^fuzz' <<<"$out"; then
        pass "$name: $(grep '^replay:' <<<"$out" | tail -1 | sed 's/^replay: //') replayed cleanly"
    else
        what="exit $rc"
        [ $rc -gt 128 ] && what="killed by signal $((rc - 128))"
        [ $rc -eq 124 ] && what="timed out (a hang)"
        fail "$name: $what" "$(tail -30 <<<"$out")
reproduce: $prog -v ${dirs[*]}"
    fi
done
done_testing
