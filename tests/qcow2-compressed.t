#!/bin/bash
# Compressed clusters written by qemu-img (zlib and zstd, every cluster
# size, v2 and v3, extended L2) are read back by calf byte for byte, in
# small and large chunks; then calf overwrites, zeroes and discards parts
# of them (copy-on-write out of compressed clusters) and qemu-img check and
# compare judge the result.
. "$(dirname "$0")/blk-lib.sh" qemu-img

# 20M source: random data, compressible text, zeros and holes
qemu-img create -q -f raw "$T/src.raw" 20M
head -c 3M /dev/urandom | dd of="$T/src.raw" conv=notrunc bs=1M seek=2 status=none
for i in $(seq 1 300); do echo "line $i of some compressible text, text, text"; done > "$T/txt"
for i in 0 1 2 3 4 5 6 7 8 9; do dd if="$T/txt" of="$T/src.raw" conv=notrunc bs=64k seek=$((i*5+100)) status=none; done
head -c 100k "$T/txt" | dd of="$T/src.raw" conv=notrunc bs=1 seek=$((19*1024*1024+12345)) status=none

cases=()
for ct in zlib zstd; do for cs in 512 4k 64k 2M; do for compat in 0.10 1.1; do
  [ $compat = 0.10 ] && [ $ct = zstd ] && continue
  cases+=("compression_type=$ct,cluster_size=$cs,compat=$compat")
done; done; done
cases+=("compression_type=zlib,cluster_size=64k,extended_l2=on" "compression_type=zstd,cluster_size=32k,extended_l2=on")
echo "1..$(( ${#cases[@]} * 4 ))"

seed=1
for o in "${cases[@]}"; do
  qemu-img convert -c -O qcow2 -o "$o" "$T/src.raw" "$T/c.qcow2"
  for ch in 4k 1M; do
    if "$B/tests/blk-dump" -c $ch "$T/c.qcow2" "$T/out.raw" 2>"$T/err" && cmp -s "$T/out.raw" "$T/src.raw"; then
      ok "$o: calf reads qemu-img's compressed image (chunks of $ch)"
    else
      notok "$o: read in chunks of $ch: $(cat "$T/err")"
    fi
  done
  cp "$T/src.raw" "$T/shadow.raw"
  if out=$("$B/tests/blk-random" -s $seed -n 600 -m 300000 -r 200 "$T/c.qcow2" "$T/shadow.raw" 2>&1) &&
     qemu-img compare -q "$T/c.qcow2" "$T/shadow.raw"; then
    ok "$o: writes over compressed clusters read back right"
  else
    notok "$o: writes over compressed clusters: $out"
  fi
  if chk=$(qemu-img check "$T/c.qcow2" 2>&1); then ok "$o: qemu-img check clean after writes"
  else notok "$o: qemu-img check: $(echo "$chk" | head -3)"; fi
  seed=$((seed+1))
done
finish
