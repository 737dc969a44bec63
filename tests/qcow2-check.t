#!/bin/bash
# calf-img check against qemu-img check on the same damaged images: same
# verdict, same exit code; after calf-img check -r all, qemu-img finds
# nothing and the guest data is unchanged.  Then writers are killed with
# SIGKILL at random moments: the image never has corruptions (leaks are
# allowed) and calf repairs it.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img
KILLS=${CALF_KILLS:-50}
plan $(( 7 * 4 + KILLS * 2 ))

poke() { # file offset hexbytes...
  local f=$1 off=$2; shift 2
  printf "$(printf '\\x%s' "$@")" | dd of="$f" bs=1 seek=$((off)) conv=notrunc status=none
}
# default layout (64k clusters): refblock 0x20000, L1 0x30000, L2 0x40000,
# data from 0x50000; 16-bit refcounts, so cluster c's refcount is at
# 0x20000 + 2c
mkimg() {
  qemu-img create -q -f qcow2 "$1" 64M
  qemu-io -c "write -P 0x61 0 1M" -c "write -P 0x62 8M 64k" -c "write -c -P 0x63 16M 64k" "$1" >/dev/null
}
damage() { # name file
  case $1 in
    clean) ;;
    leak) # a cluster inside the file that nothing uses
      local c=$(( ($(stat -c %s "$2") + 65535) / 65536 ))
      truncate -s $(( (c + 1) * 65536 )) "$2"; poke "$2" $((0x20000 + 2*c)) 00 01 ;;
    refcount-zero) poke "$2" $((0x20000 + 2*5)) 00 00 ;;
    refcount-high) poke "$2" $((0x20000 + 2*6)) 00 02 ;;
    copied-cleared) poke "$2" $((0x40000 + 8*3)) 00 ;;
    l2-refcount-zero) poke "$2" $((0x20000 + 2*4)) 00 00 ;;
    reftable-entry-zero) poke "$2" $((0x10000)) 00 00 00 00 00 00 00 00 ;;
  esac
}
for d in clean leak refcount-zero refcount-high copied-cleared l2-refcount-zero reftable-entry-zero; do
  mkimg "$TMP/d.qcow2"; damage $d "$TMP/d.qcow2"
  qemu-img convert -U -O raw "$TMP/d.qcow2" "$TMP/d.raw" 2>/dev/null
  qemu-img check "$TMP/d.qcow2" >/dev/null 2>&1; qrc=$?
  "$CALF_BUILD/calf-img" check "$TMP/d.qcow2" >"$TMP/out" 2>&1; crc=$?
  if [ $qrc = $crc ]; then pass "$d: calf-img check exits $crc like qemu-img"
  else fail "$d: calf-img check exits $crc, qemu-img $qrc: $(head -3 "$TMP/out")"; fi
  qemu-img check --output=json "$TMP/d.qcow2" 2>/dev/null | grep -E '"(corruptions|leaks)"' | sort >"$TMP/q.json"
  "$CALF_BUILD/calf-img" check --output=json "$TMP/d.qcow2" 2>/dev/null | grep -E '"(corruptions|leaks)"' | sort >"$TMP/c.json"
  if cmp -s "$TMP/q.json" "$TMP/c.json"; then pass "$d: same corruption and leak counts as qemu-img"
  else fail "$d: counts differ: qemu $(cat "$TMP/q.json" | tr -d '\n ') calf $(cat "$TMP/c.json" | tr -d '\n ')"; fi
  "$CALF_BUILD/calf-img" check -r all "$TMP/d.qcow2" >"$TMP/out" 2>&1; rrc=$?
  if [ $rrc = 0 ] && qemu-img check "$TMP/d.qcow2" >/dev/null 2>&1; then pass "$d: repaired, qemu-img check clean"
  else fail "$d: repair exit $rrc: $(tail -3 "$TMP/out"); qemu-img: $(qemu-img check "$TMP/d.qcow2" 2>&1 | head -3)"; fi
  if qemu-img compare -q "$TMP/d.qcow2" "$TMP/d.raw" 2>/dev/null; then pass "$d: guest data unchanged by the repair"
  else fail "$d: guest data changed by the repair"; fi
done

# SIGKILL at random moments while calf writes
for i in $(seq 1 $KILLS); do
  opts="cluster_size=64k"; [ $((i % 2)) = 0 ] && opts="lazy_refcounts=on"
  [ $((i % 3)) = 0 ] && opts="$opts,cluster_size=4k"
  [ $((i % 4)) = 1 ] && [ $((i % 3)) != 0 ] && opts="$opts,extended_l2=on"
  if [ $((i % 5)) = 2 ]; then
    head -c 32M /dev/urandom > "$TMP/base.raw"
    qemu-img create -q -f qcow2 -o "$opts" -b "$TMP/base.raw" -F raw "$TMP/k.qcow2" 32M
    cp "$TMP/base.raw" "$TMP/sh.raw"
  else
    qemu-img create -q -f qcow2 -o "$opts" "$TMP/k.qcow2" 32M
    rm -f "$TMP/sh.raw"; truncate -s 32M "$TMP/sh.raw"
  fi
  "$CALF_BUILD/tests/blk-random" -s $i -n 1000000 -r 0 "$TMP/k.qcow2" "$TMP/sh.raw" >/dev/null 2>&1 &
  pid=$!
  sleep 0.$(( (RANDOM % 8) + 1 ))
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  qemu-img check --output=json "$TMP/k.qcow2" >"$TMP/j" 2>/dev/null
  # With lazy refcounts the refcounts trail the mapping until close, as
  # in QEMU: after a kill they may be short, but only under the dirty
  # bit, which makes the next read-write open rebuild them.
  dirty=no
  qemu-img info --output=json "$TMP/k.qcow2" 2>/dev/null | grep -q '"dirty-flag": true' && dirty=yes
  if ! grep -q '"corruptions"' "$TMP/j"; then pass "kill $i ($opts): no corruptions after SIGKILL"
  elif [ "${opts#*lazy}" != "$opts" ] && [ $dirty = yes ]; then
    pass "kill $i ($opts): refcounts short only under the dirty bit"
  else fail "kill $i ($opts): $(grep corruptions "$TMP/j") dirty=$dirty"; fi
  "$CALF_BUILD/calf-img" check -r all "$TMP/k.qcow2" >/dev/null 2>&1
  if qemu-img check "$TMP/k.qcow2" >/dev/null 2>&1; then pass "kill $i: clean after calf-img check -r all"
  else fail "kill $i: $(qemu-img check "$TMP/k.qcow2" 2>&1 | tail -3)"; fi
done
done_testing
