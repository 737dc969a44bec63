#!/bin/bash
# calf-img check against qemu-img check on the same damaged images: same
# verdict, same exit code; after calf-img check -r all, qemu-img finds
# nothing and the guest data is unchanged.  Then writers are killed with
# SIGKILL at random moments: the image never has corruptions (leaks are
# allowed) and calf repairs it.
. "$(dirname "$0")/blk-lib.sh" qemu-img
KILLS=${CALF_KILLS:-50}
echo "1..$(( 7 * 4 + KILLS * 2 ))"

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
  mkimg "$T/d.qcow2"; damage $d "$T/d.qcow2"
  qemu-img convert -U -O raw "$T/d.qcow2" "$T/d.raw" 2>/dev/null
  qemu-img check "$T/d.qcow2" >/dev/null 2>&1; qrc=$?
  "$B/calf-img" check "$T/d.qcow2" >"$T/out" 2>&1; crc=$?
  if [ $qrc = $crc ]; then ok "$d: calf-img check exits $crc like qemu-img"
  else notok "$d: calf-img check exits $crc, qemu-img $qrc: $(head -3 "$T/out")"; fi
  qemu-img check --output=json "$T/d.qcow2" 2>/dev/null | grep -E '"(corruptions|leaks)"' | sort >"$T/q.json"
  "$B/calf-img" check --output=json "$T/d.qcow2" 2>/dev/null | grep -E '"(corruptions|leaks)"' | sort >"$T/c.json"
  if cmp -s "$T/q.json" "$T/c.json"; then ok "$d: same corruption and leak counts as qemu-img"
  else notok "$d: counts differ: qemu $(cat "$T/q.json" | tr -d '\n ') calf $(cat "$T/c.json" | tr -d '\n ')"; fi
  "$B/calf-img" check -r all "$T/d.qcow2" >"$T/out" 2>&1; rrc=$?
  if [ $rrc = 0 ] && qemu-img check "$T/d.qcow2" >/dev/null 2>&1; then ok "$d: repaired, qemu-img check clean"
  else notok "$d: repair exit $rrc: $(tail -3 "$T/out"); qemu-img: $(qemu-img check "$T/d.qcow2" 2>&1 | head -3)"; fi
  if qemu-img compare -q "$T/d.qcow2" "$T/d.raw" 2>/dev/null; then ok "$d: guest data unchanged by the repair"
  else notok "$d: guest data changed by the repair"; fi
done

# SIGKILL at random moments while calf writes
for i in $(seq 1 $KILLS); do
  opts="cluster_size=64k"; [ $((i % 2)) = 0 ] && opts="lazy_refcounts=on"
  [ $((i % 3)) = 0 ] && opts="$opts,cluster_size=4k"
  [ $((i % 4)) = 1 ] && [ $((i % 3)) != 0 ] && opts="$opts,extended_l2=on"
  if [ $((i % 5)) = 2 ]; then
    head -c 32M /dev/urandom > "$T/base.raw"
    qemu-img create -q -f qcow2 -o "$opts" -b "$T/base.raw" -F raw "$T/k.qcow2" 32M
    cp "$T/base.raw" "$T/sh.raw"
  else
    qemu-img create -q -f qcow2 -o "$opts" "$T/k.qcow2" 32M
    rm -f "$T/sh.raw"; truncate -s 32M "$T/sh.raw"
  fi
  "$B/tests/blk-random" -s $i -n 1000000 -r 0 "$T/k.qcow2" "$T/sh.raw" >/dev/null 2>&1 &
  pid=$!
  sleep 0.$(( (RANDOM % 8) + 1 ))
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  qemu-img check --output=json "$T/k.qcow2" >"$T/j" 2>/dev/null
  if ! grep -q '"corruptions"' "$T/j"; then ok "kill $i ($opts): no corruptions after SIGKILL"
  else notok "kill $i ($opts): $(grep corruptions "$T/j")"; fi
  "$B/calf-img" check -r all "$T/k.qcow2" >/dev/null 2>&1
  if qemu-img check "$T/k.qcow2" >/dev/null 2>&1; then ok "kill $i: clean after calf-img check -r all"
  else notok "kill $i: $(qemu-img check "$T/k.qcow2" 2>&1 | tail -3)"; fi
done
finish
