#!/bin/bash
# Flushed data survives a kill -9: a writer flushes after every write or
# zero write and records its progress; it is killed at a random moment;
# then every flushed operation must read back exactly (the one in flight
# may be half done), and qemu-img check must find no corruption.  Over
# lazy refcounts, extended L2, small clusters and backing files.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img

KILLS=${CALF_CRASH_KILLS:-50}
SNAP_KILLS=${CALF_CRASH_SNAP_KILLS:-12}
plan $(( KILLS * 2 + SNAP_KILLS * 2 ))
head -c 16M /dev/urandom > "$TMP/base.raw"
cfgs=("cluster_size=64k" "lazy_refcounts=on" "extended_l2=on" "cluster_size=4k,refcount_bits=64"
      "compat=0.10" "lazy_refcounts=on,extended_l2=on,cluster_size=32k" "cluster_size=512")
for i in $(seq 1 $KILLS); do
  cfg=${cfgs[$(( i % ${#cfgs[@]} ))]}
  if [ $((i % 2)) = 0 ]; then
    qemu-img create -q -f qcow2 -o "$cfg" -b "$TMP/base.raw" -F raw "$TMP/c.qcow2" 16M
    cp "$TMP/base.raw" "$TMP/init.raw"; what="$cfg, over a backing file"
  else
    qemu-img create -q -f qcow2 -o "$cfg" "$TMP/c.qcow2" 16M
    rm -f "$TMP/init.raw"; truncate -s 16M "$TMP/init.raw"; what=$cfg
  fi
  rm -f "$TMP/progress"
  "$CALF_BUILD/tests/blk-crash" write $i "$TMP/c.qcow2" "$TMP/progress" 2>"$TMP/err" & pid=$!
  sleep 0.$(( RANDOM % 9 + 1 ))
  if ! kill -9 $pid 2>/dev/null; then
    fail "kill $i ($what): the writer stopped early: $(cat "$TMP/err")"; fail "kill $i: no check"; continue
  fi
  wait $pid 2>/dev/null
  if out=$("$CALF_BUILD/tests/blk-crash" verify $i "$TMP/c.qcow2" "$TMP/init.raw" "$TMP/progress" 2>&1); then
    pass "kill $i ($what): $out"
  else fail "kill $i ($what): $out"; fi
  if consistent "$TMP/c.qcow2"; then pass "kill $i: no corruption ($why)"
  else fail "kill $i: $why"; fi
done

# kill -9 during "snapshot -c" and "snapshot -d" on a version 2 image.  v2
# has no dirty bit, and a snapshot changes refcounts and the COPIED flags
# that must agree with them in two writes to different places, so a kill
# between them leaves COPIED flags that qemu-img check counts as errors
# (QEMU has the same window).  calf keeps the window to the refcount and
# flag updates themselves: refcounts are on disk before any flag changes
# and both before the snapshot table names the snapshot, so nothing else
# can be wrong, the guest data is intact and check -r all makes it clean.
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512 "$TMP/v2.qcow2" 16M
qemu-io -c 'write -P 5 0 6M' -c 'write -P 6 9M 3M' "$TMP/v2.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/v2.qcow2" "$TMP/v2.raw"
"$CALF_BUILD/calf-img" snapshot -c keep "$TMP/v2.qcow2"
in_window=0
for i in $(seq 1 $SNAP_KILLS); do
  cp "$TMP/v2.qcow2" "$TMP/k.qcow2"
  if [ $((i % 2)) = 0 ]; then what="snapshot -d"; args=(-d keep); else what="snapshot -c"; args=(-c new); fi
  "$CALF_BUILD/calf-img" snapshot "${args[@]}" "$TMP/k.qcow2" 2>/dev/null & pid=$!
  sleep 0.0$(( RANDOM % 9 ))$(( RANDOM % 10 ))
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  if qemu-img compare -q "$TMP/k.qcow2" "$TMP/v2.raw"; then pass "v2 $what kill $i: guest data intact"
  else fail "v2 $what kill $i: guest data changed"; fi
  c=$(qemu-img check "$TMP/k.qcow2" 2>&1)
  if ! grep -q '^ERROR' <<<"$c"; then pass "v2 $what kill $i: no error (leaks allowed)"
  elif grep '^ERROR' <<<"$c" | grep -vq OFLAG_COPIED; then fail "v2 $what kill $i: $(grep -m3 ^ERROR <<<"$c")"
  elif qemu-img check -q -r all "$TMP/k.qcow2" >/dev/null 2>&1 && qemu-img check -q "$TMP/k.qcow2"; then
    in_window=$((in_window + 1))
    pass "v2 $what kill $i: in the window: $(grep -c OFLAG_COPIED <<<"$c") COPIED flags, check -r all repairs them"
  else fail "v2 $what kill $i: check -r all does not repair"; fi
done
echo "# v2 snapshot kills in the COPIED window: $in_window of $SNAP_KILLS"
done_testing
