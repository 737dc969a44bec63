#!/bin/bash
# A failing disk: EIO injected into the image file's writes (pwrite,
# pwritev, fdatasync) and reads by tests/unit/blk-fault.c, at call N of a
# workload of flushed writes, zero writes and discards with internal
# snapshots created and deleted and a grow that relocates the L1 table.
# Every fault point of the snapshot, delete and grow operations near
# their start and end (L1 copy, refcount updates, COPIED flags, snapshot
# table, header) and points spread over the whole run (L2 tables,
# refcount blocks, refcount table growth) are tried, with the fault once
# (the workload goes on) and persistent (the disk is gone).  After each:
# every operation that reported success reads back, and qemu-img check
# finds no corruption (leaks allowed; a dirty lazy-refcount image must be
# repaired by check -r all) unless the image is marked corrupt.  A failed
# metadata read must be an error, never wrong data.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img
# fdatasync is the workload's cost: use a tmpfs when there is one
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  T2=$(mktemp -d /dev/shm/calf-faults.XXXXXX); at_exit 'rm -rf "$T2"'
else T2=$TMP; fi
SPREAD=${CALF_FAULT_POINTS:-12}
cfgs=("cluster_size=512" "compat=0.10,cluster_size=512" "cluster_size=512,refcount_bits=64,lazy_refcounts=on"
      "cluster_size=16k,extended_l2=on")
img=$T2/f.qcow2
fresh() { qemu-img create -q -f qcow2 -o "$1" "$img" 8M; }

# A version 2 image has no dirty bit, and while a snapshot is created or
# deleted a cluster's refcount and the COPIED flag of the entry pointing
# to it change in two writes to different places: a disk that dies
# between them leaves COPIED flags that disagree with refcounts (QEMU has
# the same window).  Allowed there, and only that: no other error, and
# check -r all must make the image clean.
copied_only() {
  local c; c=$(qemu-img check "$1" 2>&1)
  if grep '^ERROR' <<<"$c" | grep -vq 'OFLAG_COPIED'; then return 1; fi
  cp "$1" "$1.fix"
  qemu-img check -q -r all "$1.fix" >/dev/null 2>&1; qemu-img check -q "$1.fix" || return 1
  why="$(grep -c OFLAG_COPIED <<<"$c") COPIED flags, repaired by check -r all"
}

# judge DESC CLASS N MODE: one run and its verdicts
judge() {
  local out
  fresh "$cfg"
  if out=$("$CALF_BUILD/tests/blk-fault" $seed "$img" $2 $3 $4 2>&1); then pass "$1: $out"
  else fail "$1: $out"; fi
  if qemu-img info -U "$img" | grep -q 'corrupt: true'; then pass "$1: marked corrupt"
  elif consistent "$img"; then pass "$1: no corruption ($why)"
  elif [[ $cfg == compat=0.10* && $1 == *kind\ [34]*persist ]] && copied_only "$img"; then
    pass "$1: v2 snapshot window: $why"
  else fail "$1: $why"; fi
}

seed=0
for cfg in "${cfgs[@]}"; do
  seed=$((seed + 1))
  fresh "$cfg"
  plan=$("$CALF_BUILD/tests/blk-fault" $seed "$img" w 0 once)
  total=$(sed -n 's/^calls //p' <<<"$plan")
  if [ -z "$total" ]; then fail "$cfg: the workload without faults failed: $plan"; continue; fi
  points=()
  # the first and last calls of each metadata-heavy op, and three inside
  while read -r _ i _ kind _ a z; do
    [ "$z" -ge "$a" ] || continue
    for p in $a $((a+1)) $((a+2)) $((a + (z-a)/4)) $((a + (z-a)/2)) $((a + 3*(z-a)/4)) \
             $((z-4)) $((z-3)) $((z-2)) $((z-1)) $z; do
      [ "$p" -ge "$a" ] && [ "$p" -le "$z" ] && points+=("$p:op $i kind $kind")
    done
  done < <(grep '^op ' <<<"$plan")
  for k in $(seq 1 $SPREAD); do
    p=$(( (total * k - RANDOM % total) / SPREAD + 1 ))
    in=$(awk -v p=$p '$1 == "op" && p >= $6 && p <= $7 { print "in op " $2 " kind " $4 }' <<<"$plan")
    points+=("$p:spread${in:+, $in}")
  done
  # call 424 of the v2 workload wrote a new refcount block's table entry:
  # when that write failed once, the table in memory still pointed at the
  # block and later refcounts went where the file did not (refcount 0,
  # 3 references).  Kept as a fixed point.
  [ "$cfg" = "compat=0.10,cluster_size=512" ] && points+=("424:regression, a refcount table entry")
  # call 1206 of this workload (1426 before a write took its new clusters
  # as one run) writes the L1 entry of an L2 table just copied away from
  # a snapshot's (strace: 16 KiB table, fdatasync, 8-byte L1 entry): when
  # it failed once, memory kept the new table while the file kept the
  # old, and all written through the new one was lost (and the shared
  # clusters counted once too few).
  [ "$cfg" = "cluster_size=16k,extended_l2=on" ] && points+=("1206:regression, an L1 entry after an L2 copy")
  declare -A seen=()
  for pt in "${points[@]}"; do
    p=${pt%%:*}; [ -n "${seen[$p]:-}" ] && continue; seen[$p]=1
    for mode in once persist; do
      judge "$cfg: write fault at call $p/$total (${pt#*:}), $mode" w $p $mode
    done
  done
  unset seen
  fresh "$cfg"
  reads=$("$CALF_BUILD/tests/blk-fault" $seed "$img" r 0 once | sed -n 's/^calls //p')
  if [ -z "$reads" ]; then fail "$cfg: the read-back without faults failed"; continue; fi
  for k in $(seq 1 $SPREAD); do
    p=$(( (reads * k - RANDOM % reads) / SPREAD + 1 ))
    judge "$cfg: read fault at call $p/$reads of the read-back" r $p once
  done
done
done_testing
