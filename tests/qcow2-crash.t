#!/bin/bash
# Flushed data survives a kill -9: a writer flushes after every write or
# zero write and records its progress; it is killed at a random moment;
# then every flushed operation must read back exactly (the one in flight
# may be half done), and qemu-img check must find no corruption.  Over
# lazy refcounts, extended L2, small clusters and backing files.
. "$(dirname "$0")/blk-lib.sh" qemu-img

KILLS=${CALF_CRASH_KILLS:-50}
echo "1..$(( KILLS * 2 ))"
head -c 16M /dev/urandom > "$T/base.raw"
cfgs=("cluster_size=64k" "lazy_refcounts=on" "extended_l2=on" "cluster_size=4k,refcount_bits=64"
      "compat=0.10" "lazy_refcounts=on,extended_l2=on,cluster_size=32k" "cluster_size=512")
for i in $(seq 1 $KILLS); do
  cfg=${cfgs[$(( i % ${#cfgs[@]} ))]}
  if [ $((i % 2)) = 0 ]; then
    qemu-img create -q -f qcow2 -o "$cfg" -b "$T/base.raw" -F raw "$T/c.qcow2" 16M
    cp "$T/base.raw" "$T/init.raw"; what="$cfg, over a backing file"
  else
    qemu-img create -q -f qcow2 -o "$cfg" "$T/c.qcow2" 16M
    rm -f "$T/init.raw"; truncate -s 16M "$T/init.raw"; what=$cfg
  fi
  rm -f "$T/progress"
  "$B/tests/blk-crash" write $i "$T/c.qcow2" "$T/progress" 2>"$T/err" & pid=$!
  sleep 0.$(( RANDOM % 9 + 1 ))
  if ! kill -9 $pid 2>/dev/null; then
    notok "kill $i ($what): the writer stopped early: $(cat "$T/err")"; notok "kill $i: no check"; continue
  fi
  wait $pid 2>/dev/null
  if out=$("$B/tests/blk-crash" verify $i "$T/c.qcow2" "$T/init.raw" "$T/progress" 2>&1); then
    ok "kill $i ($what): $out"
  else notok "kill $i ($what): $out"; fi
  if consistent "$T/c.qcow2"; then ok "kill $i: no corruption ($why)"
  else notok "kill $i: $why"; fi
done
finish
