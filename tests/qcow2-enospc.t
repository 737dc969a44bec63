#!/bin/bash
# A disk that fills up in the middle of an allocation: images on a small
# tmpfs are written (flush after every operation) until ENOSPC.  The writer
# must stop with a clear error, every flushed operation must read back,
# and qemu-img check must find no corruption (leaks are allowed), for
# several fill levels so the failure lands in data, L2 tables and
# refcount blocks.  Needs root for the tmpfs mount; skips otherwise.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img
M="$TMP/mnt"; mkdir "$M"
at_exit 'umount "$M" 2>/dev/null'

mount -t tmpfs -o size=1M tmpfs "$M" 2>/dev/null || skip_all "cannot mount a small tmpfs (needs root)"
umount "$M"
# fill levels a few KiB apart, so that over the cases the disk fills up
# during every kind of write (data, L2 table, refcount block, table growth)
cfgs=("cluster_size=512,refcount_bits=64" "cluster_size=4k" "cluster_size=64k"
      "lazy_refcounts=on,cluster_size=1k" "extended_l2=on,cluster_size=16k" "compat=0.10,cluster_size=2k")
cases=()
for k in $(seq 0 23); do cases+=("$((2048 + k * 67))k ${cfgs[$((k % ${#cfgs[@]}))]}"); done
plan $(( ${#cases[@]} * 3 ))
i=0
for c in "${cases[@]}"; do
  i=$((i+1)); fs=${c%% *}; cfg=${c#* }
  mount -t tmpfs -o size=$fs tmpfs "$M"
  qemu-img create -q -f qcow2 -o "$cfg" "$M/f.qcow2" 64M
  truncate -s 64M "$TMP/init.raw"
  "$CALF_BUILD/tests/blk-crash" write $i "$M/f.qcow2" "$TMP/progress" >/dev/null 2>"$TMP/err"
  if grep -q "No space left" "$TMP/err"; then pass "$fs fs, $cfg: the writer stops with: $(head -1 "$TMP/err" | cut -c1-120)"
  else fail "$fs fs, $cfg: unexpected end: $(head -2 "$TMP/err")"; fi
  cp "$M/f.qcow2" "$TMP/f.qcow2"; umount "$M"
  if out=$("$CALF_BUILD/tests/blk-crash" verify $i "$TMP/f.qcow2" "$TMP/init.raw" "$TMP/progress" 2>&1); then
    pass "$fs fs, $cfg: $out"
  else fail "$fs fs, $cfg: $out"; fi
  if consistent "$TMP/f.qcow2"; then pass "$fs fs, $cfg: no corruption ($why)"
  else fail "$fs fs, $cfg: $why"; fi
  rm -f "$TMP/progress"
done
done_testing
