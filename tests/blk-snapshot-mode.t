#!/bin/bash
# Throw-away overlays (what `calf run --disk X,snapshot` will use): writes
# go to an unlinked temporary qcow2 over the base, every read is right, the
# base image is never modified, several writers share one base at once,
# and nothing is left in $TMPDIR, even after kill -9.
. "$(dirname "$0")/blk-lib.sh" qemu-img
echo "1..6"
mkdir "$T/tmp"
export TMPDIR="$T/tmp"
for fmt in qcow2 raw; do
  qemu-img create -q -f $fmt "$T/base.$fmt" 32M
  qemu-io -f $fmt -c "write -P 0x3c 0 8M" -c "write -P 0x3d 20M 1M" "$T/base.$fmt" >/dev/null
  qemu-img convert -f $fmt -O raw "$T/base.$fmt" "$T/sh1.raw"; cp "$T/sh1.raw" "$T/sh2.raw"
  sum=$(md5sum < "$T/base.$fmt")
  "$B/tests/blk-random" -S -s 1 -n 3000 "$T/base.$fmt" "$T/sh1.raw" >"$T/o1" 2>&1 & p1=$!
  "$B/tests/blk-random" -S -s 2 -n 3000 "$T/base.$fmt" "$T/sh2.raw" >"$T/o2" 2>&1 & p2=$!
  wait $p1; r1=$?; wait $p2; r2=$?
  if [ $r1 = 0 ] && [ $r2 = 0 ]; then ok "$fmt base: two throw-away writers at once, all reads right"
  else notok "$fmt base: $(cat "$T/o1" "$T/o2")"; fi
  [ "$sum" = "$(md5sum < "$T/base.$fmt")" ] && ok "$fmt base: base image unchanged" || notok "$fmt base: base image modified"
done
qemu-img convert -O raw "$T/base.qcow2" "$T/sh1.raw"
"$B/tests/blk-random" -S -n 100000000 "$T/base.qcow2" "$T/sh1.raw" >/dev/null 2>&1 & p=$!
sleep 0.5
if kill -9 $p 2>/dev/null; then
  wait $p 2>/dev/null
  [ -z "$(ls -A "$T/tmp")" ] && ok "no temporary file left after kill -9" || notok "left behind: $(ls "$T/tmp")"
else
  notok "the throw-away writer stopped early"
fi
if "$B/tests/blk-random" -S -n 10 "$T/missing.qcow2" "$T/sh1.raw" 2>"$T/e"; then notok "a missing base opened"
else grep -q "missing.qcow2" "$T/e" && ok "a missing base is a clear error: $(head -1 "$T/e")" || notok "unclear error: $(cat "$T/e")"; fi
finish
