#!/bin/bash
# Throw-away overlays (what `calf run --disk X,snapshot` will use): writes
# go to an unlinked temporary qcow2 over the base, every read is right, the
# base image is never modified, several writers share one base at once,
# and nothing is left in $TMPDIR, even after kill -9.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img
plan 6
mkdir "$TMP/tmp"
export TMPDIR="$TMP/tmp"
for fmt in qcow2 raw; do
  qemu-img create -q -f $fmt "$TMP/base.$fmt" 32M
  qemu-io -f $fmt -c "write -P 0x3c 0 8M" -c "write -P 0x3d 20M 1M" "$TMP/base.$fmt" >/dev/null
  qemu-img convert -f $fmt -O raw "$TMP/base.$fmt" "$TMP/sh1.raw"; cp "$TMP/sh1.raw" "$TMP/sh2.raw"
  sum=$(md5sum < "$TMP/base.$fmt")
  "$CALF_BUILD/tests/blk-random" -S -s 1 -n 3000 "$TMP/base.$fmt" "$TMP/sh1.raw" >"$TMP/o1" 2>&1 & p1=$!
  "$CALF_BUILD/tests/blk-random" -S -s 2 -n 3000 "$TMP/base.$fmt" "$TMP/sh2.raw" >"$TMP/o2" 2>&1 & p2=$!
  wait $p1; r1=$?; wait $p2; r2=$?
  if [ $r1 = 0 ] && [ $r2 = 0 ]; then pass "$fmt base: two throw-away writers at once, all reads right"
  else fail "$fmt base: $(cat "$TMP/o1" "$TMP/o2")"; fi
  [ "$sum" = "$(md5sum < "$TMP/base.$fmt")" ] && pass "$fmt base: base image unchanged" || fail "$fmt base: base image modified"
done
qemu-img convert -O raw "$TMP/base.qcow2" "$TMP/sh1.raw"
"$CALF_BUILD/tests/blk-random" -S -n 100000000 "$TMP/base.qcow2" "$TMP/sh1.raw" >/dev/null 2>&1 & p=$!
sleep 0.5
if kill -9 $p 2>/dev/null; then
  wait $p 2>/dev/null
  [ -z "$(ls -A "$TMP/tmp")" ] && pass "no temporary file left after kill -9" || fail "left behind: $(ls "$TMP/tmp")"
else
  fail "the throw-away writer stopped early"
fi
if "$CALF_BUILD/tests/blk-random" -S -n 10 "$TMP/missing.qcow2" "$TMP/sh1.raw" 2>"$TMP/e"; then fail "a missing base opened"
else grep -q "missing.qcow2" "$TMP/e" && pass "a missing base is a clear error: $(head -1 "$TMP/e")" || fail "unclear error: $(cat "$TMP/e")"; fi
done_testing
