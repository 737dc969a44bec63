#!/bin/bash
# Preallocation modes give the same file sizes, the same map and clean
# checks as qemu-img; and image locking works both ways with QEMU: a second
# writer is refused (calf vs qemu-io, qemu-io vs calf, calf vs calf), -U
# lets readers in, and a base image in use as a backing file cannot be
# written by anybody while two overlays read it.
. "$(dirname "$0")/blk-lib.sh" qemu-io
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
modes=(metadata falloc full)
opts=("" ",compat=0.10" ",cluster_size=4k" ",extended_l2=on")
echo "1..$(( ${#modes[@]} * ${#opts[@]} * 2 + 11 ))"

for m in "${modes[@]}"; do for o in "${opts[@]}"; do
  qemu-img create -q -f qcow2 -o "preallocation=$m$o" "$T/q.qcow2" 64M
  "$B/calf-img" create -q -f qcow2 -o "preallocation=$m$o" "$T/c.qcow2" 64M
  if [ "$(stat -c %s "$T/q.qcow2")" = "$(stat -c %s "$T/c.qcow2")" ] &&
     diff <(qemu-img map --output=json "$T/q.qcow2" | sed 's/"offset": [0-9]*//') \
          <(qemu-img map --output=json "$T/c.qcow2" | sed 's/"offset": [0-9]*//') >/dev/null; then
    # (host offsets may differ: QEMU places refcount blocks differently
    # when an allocation crosses into a block that does not exist yet)
    ok "preallocation=$m$o: same file size and map as qemu-img"
  else notok "preallocation=$m$o: sizes $(stat -c %s "$T/q.qcow2") vs $(stat -c %s "$T/c.qcow2") or map differs"; fi
  "$B/calf-io" -c "write -P 0x5c 1M 100k" "$T/c.qcow2" >/dev/null
  if qemu-img check "$T/c.qcow2" >/dev/null 2>&1 &&
     qemu-io -r -c "read -P 0x5c 1M 100k" -c "read -P 0 0 1M" "$T/c.qcow2" | grep -qv -i fail; then
    ok "preallocation=$m$o: writes land, check clean"
  else notok "preallocation=$m$o: check or read-back failed"; fi
done; done

wait_locked() { # file: wait until somebody holds the write lock
  for _ in $(seq 1 600); do # up to 30 s on a loaded machine
    qemu-img info "$1" >/dev/null 2>&1 || return 0
    sleep 0.05
  done
  return 1
}

# qemu-io holds the image for writing
qemu-img create -q -f qcow2 "$T/l.qcow2" 64M
# (a make test SANITIZE=1 run once saw this qemu-io gone before the checks:
# its stderr is kept, and it is started again once if it is not running)
hold_qemu_io() {
  qemu-io -c "sleep 600000" "$T/l.qcow2" >/dev/null 2>"$T/qio.err" & pids+=($!)
  wait_locked "$T/l.qcow2"
  sleep 0.1
  kill -0 "${pids[-1]}" 2>/dev/null
}
hold_qemu_io || { echo "# qemu-io exited early: $(tr '\n' ' ' <"$T/qio.err")"; hold_qemu_io; }
if out=$("$B/calf-io" -c "write 0 4k" "$T/l.qcow2" 2>&1); then notok "calf-io wrote while qemu-io held the image"
else grep -q "lock" <<<"$out" && ok "calf-io is refused while qemu-io writes: $(head -1 <<<"$out")" || notok "calf-io failed without a lock message: $out"; fi
if "$B/calf-img" info "$T/l.qcow2" >/dev/null 2>&1; then notok "calf-img info without -U opened an image in use"
else ok "calf-img info without -U is refused while qemu-io writes"; fi
if "$B/calf-img" info -U "$T/l.qcow2" >/dev/null 2>&1; then ok "calf-img info -U reads an image in use"
else notok "calf-img info -U failed"; fi
kill -9 "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# calf holds the image for writing
rm -f "$T/sh.raw"; truncate -s 64M "$T/sh.raw"
"$B/tests/blk-random" -n 100000000 -r 0 "$T/l.qcow2" "$T/sh.raw" >/dev/null 2>&1 & pids+=($!)
wait_locked "$T/l.qcow2"
if out=$(qemu-io -c "write 0 4k" "$T/l.qcow2" 2>&1); then notok "qemu-io wrote while calf held the image"
else ok "qemu-io is refused while calf writes: $(head -1 <<<"$out")"; fi
if qemu-img info "$T/l.qcow2" >/dev/null 2>&1; then notok "qemu-img info without -U opened an image calf writes"
else ok "qemu-img info without -U is refused while calf writes"; fi
if qemu-img info -U "$T/l.qcow2" >/dev/null 2>&1; then ok "qemu-img info -U works while calf writes"
else notok "qemu-img info -U failed"; fi
if "$B/calf-io" -c "write 0 4k" "$T/l.qcow2" >/dev/null 2>&1; then notok "a second calf writer got in"
else ok "a second calf writer is refused"; fi
kill -9 "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# a base image in use as a backing file by two overlays
qemu-img create -q -f qcow2 "$T/base.qcow2" 64M
qemu-io -c "write -P 0x42 0 1M" "$T/base.qcow2" >/dev/null
before=$(md5sum < "$T/base.qcow2")
for i in 1 2; do
  qemu-img create -q -f qcow2 -b "$T/base.qcow2" -F qcow2 "$T/o$i.qcow2"
  cp "$T/sh.raw" "$T/sh$i.raw" 2>/dev/null; qemu-img convert -O raw "$T/o$i.qcow2" "$T/sh$i.raw"
  "$B/tests/blk-random" -n 100000000 -r 0 "$T/o$i.qcow2" "$T/sh$i.raw" >/dev/null 2>&1 & pids+=($!)
done
wait_locked "$T/o1.qcow2"; wait_locked "$T/o2.qcow2"
sleep 0.3
alive=0; for p in "${pids[-1]}" "${pids[-2]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive+1)); done
[ $alive = 2 ] && ok "two writable overlays share one base image" || notok "only $alive overlay writers are running"
if qemu-io -c "write 0 4k" "$T/base.qcow2" >/dev/null 2>&1; then notok "qemu-io wrote to a base image in use"
else ok "qemu-io cannot write a base image in use"; fi
if "$B/calf-io" -c "write 0 4k" "$T/base.qcow2" >/dev/null 2>&1; then notok "calf-io wrote to a base image in use"
else ok "calf-io cannot write a base image in use"; fi
{ kill -9 "${pids[-1]}" "${pids[-2]}"; wait; } 2>/dev/null
[ "$before" = "$(md5sum < "$T/base.qcow2")" ] && ok "the base image is unchanged" || notok "the base image changed"
finish
