#!/bin/bash
# Preallocation modes give the same file sizes, the same map and clean
# checks as qemu-img; and image locking works both ways with QEMU: a second
# writer is refused (calf vs qemu-io, qemu-io vs calf, calf vs calf), -U
# lets readers in, and a base image in use as a backing file cannot be
# written by anybody while two overlays read it.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-io
pids=()
at_exit 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done'
modes=(metadata falloc full)
opts=("" ",compat=0.10" ",cluster_size=4k" ",extended_l2=on")
plan $(( ${#modes[@]} * ${#opts[@]} * 2 + 11 ))

for m in "${modes[@]}"; do for o in "${opts[@]}"; do
  qemu-img create -q -f qcow2 -o "preallocation=$m$o" "$TMP/q.qcow2" 64M
  "$CALF_BUILD/calf-img" create -q -f qcow2 -o "preallocation=$m$o" "$TMP/c.qcow2" 64M
  if [ "$(stat -c %s "$TMP/q.qcow2")" = "$(stat -c %s "$TMP/c.qcow2")" ] &&
     diff <(qemu-img map --output=json "$TMP/q.qcow2" | sed 's/"offset": [0-9]*//') \
          <(qemu-img map --output=json "$TMP/c.qcow2" | sed 's/"offset": [0-9]*//') >/dev/null; then
    # (host offsets may differ: QEMU places refcount blocks differently
    # when an allocation crosses into a block that does not exist yet)
    pass "preallocation=$m$o: same file size and map as qemu-img"
  else fail "preallocation=$m$o: sizes $(stat -c %s "$TMP/q.qcow2") vs $(stat -c %s "$TMP/c.qcow2") or map differs"; fi
  # (qemu-io exits non-zero when a read's pattern check fails)
  rout=
  if wout=$("$CALF_BUILD/calf-io" -c "write -P 0x5c 1M 100k" "$TMP/c.qcow2" 2>&1) &&
     qemu-img check "$TMP/c.qcow2" >/dev/null 2>&1 &&
     rout=$(qemu-io -r -c "read -P 0x5c 1M 100k" -c "read -P 0 0 1M" "$TMP/c.qcow2" 2>&1) &&
     ! grep -qi "fail\|error" <<<"$rout"; then
    pass "preallocation=$m$o: writes land, check clean"
  else fail "preallocation=$m$o: write, check or read-back failed" "$wout
$(qemu-img check "$TMP/c.qcow2" 2>&1 | head -5)
$rout"; fi
done; done

wait_locked() { # file: wait until somebody holds the write lock
  for _ in $(seq 1 600); do # up to 30 s on a loaded machine
    qemu-img info "$1" >/dev/null 2>&1 || return 0
    sleep 0.05
  done
  return 1
}

# qemu-io holds the image for writing
qemu-img create -q -f qcow2 "$TMP/l.qcow2" 64M
# (a make test SANITIZE=1 run once saw this qemu-io gone before the checks:
# its stderr is kept, and it is started again once if it is not running)
hold_qemu_io() {
  qemu-io -c "sleep 600000" "$TMP/l.qcow2" >/dev/null 2>"$TMP/qio.err" & pids+=($!)
  wait_locked "$TMP/l.qcow2"
  sleep 0.1
  kill -0 "${pids[-1]}" 2>/dev/null
}
hold_qemu_io || { echo "# qemu-io exited early: $(tr '\n' ' ' <"$TMP/qio.err")"; hold_qemu_io; }
if out=$("$CALF_BUILD/calf-io" -c "write 0 4k" "$TMP/l.qcow2" 2>&1); then fail "calf-io wrote while qemu-io held the image"
else grep -q "lock" <<<"$out" && pass "calf-io is refused while qemu-io writes: $(head -1 <<<"$out")" || fail "calf-io failed without a lock message: $out"; fi
if "$CALF_BUILD/calf-img" info "$TMP/l.qcow2" >/dev/null 2>&1; then fail "calf-img info without -U opened an image in use"
else pass "calf-img info without -U is refused while qemu-io writes"; fi
if "$CALF_BUILD/calf-img" info -U "$TMP/l.qcow2" >/dev/null 2>&1; then pass "calf-img info -U reads an image in use"
else fail "calf-img info -U failed"; fi
kill -9 "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# calf holds the image for writing
rm -f "$TMP/sh.raw"; truncate -s 64M "$TMP/sh.raw"
"$CALF_BUILD/tests/blk-random" -n 100000000 -r 0 "$TMP/l.qcow2" "$TMP/sh.raw" >/dev/null 2>&1 & pids+=($!)
wait_locked "$TMP/l.qcow2"
if out=$(qemu-io -c "write 0 4k" "$TMP/l.qcow2" 2>&1); then fail "qemu-io wrote while calf held the image"
else pass "qemu-io is refused while calf writes: $(head -1 <<<"$out")"; fi
if qemu-img info "$TMP/l.qcow2" >/dev/null 2>&1; then fail "qemu-img info without -U opened an image calf writes"
else pass "qemu-img info without -U is refused while calf writes"; fi
if qemu-img info -U "$TMP/l.qcow2" >/dev/null 2>&1; then pass "qemu-img info -U works while calf writes"
else fail "qemu-img info -U failed"; fi
if "$CALF_BUILD/calf-io" -c "write 0 4k" "$TMP/l.qcow2" >/dev/null 2>&1; then fail "a second calf writer got in"
else pass "a second calf writer is refused"; fi
kill -9 "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# a base image in use as a backing file by two overlays
qemu-img create -q -f qcow2 "$TMP/base.qcow2" 64M
qemu-io -c "write -P 0x42 0 1M" "$TMP/base.qcow2" >/dev/null
before=$(md5sum < "$TMP/base.qcow2")
for i in 1 2; do
  qemu-img create -q -f qcow2 -b "$TMP/base.qcow2" -F qcow2 "$TMP/o$i.qcow2"
  cp "$TMP/sh.raw" "$TMP/sh$i.raw" 2>/dev/null; qemu-img convert -O raw "$TMP/o$i.qcow2" "$TMP/sh$i.raw"
  "$CALF_BUILD/tests/blk-random" -n 100000000 -r 0 "$TMP/o$i.qcow2" "$TMP/sh$i.raw" >/dev/null 2>&1 & pids+=($!)
done
wait_locked "$TMP/o1.qcow2"; wait_locked "$TMP/o2.qcow2"
sleep 0.3
alive=0; for p in "${pids[-1]}" "${pids[-2]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive+1)); done
[ $alive = 2 ] && pass "two writable overlays share one base image" || fail "only $alive overlay writers are running"
if qemu-io -c "write 0 4k" "$TMP/base.qcow2" >/dev/null 2>&1; then fail "qemu-io wrote to a base image in use"
else pass "qemu-io cannot write a base image in use"; fi
if "$CALF_BUILD/calf-io" -c "write 0 4k" "$TMP/base.qcow2" >/dev/null 2>&1; then fail "calf-io wrote to a base image in use"
else pass "calf-io cannot write a base image in use"; fi
{ kill -9 "${pids[-1]}" "${pids[-2]}"; wait; } 2>/dev/null
[ "$before" = "$(md5sum < "$TMP/base.qcow2")" ] && pass "the base image is unchanged" || fail "the base image changed"
done_testing
