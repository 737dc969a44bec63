#!/bin/bash
# Compressed clusters written by qemu-img (zlib and zstd, every cluster
# size, v2 and v3, extended L2) are read back by calf byte for byte, in
# small and large chunks; then calf overwrites, zeroes and discards parts
# of them (copy-on-write out of compressed clusters) and qemu-img check and
# compare judge the result.  Then calf's own convert -c on single
# clusters of data deflate cannot shrink (stored plain without a full
# deflate) and of near-random data that it can (must stay compressed),
# each judged against qemu-img's own choice for the same cluster.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img

# 20M source: random data, compressible text, zeros and holes
qemu-img create -q -f raw "$TMP/src.raw" 20M
head -c 3M /dev/urandom | dd of="$TMP/src.raw" conv=notrunc bs=1M seek=2 status=none
for i in $(seq 1 300); do echo "line $i of some compressible text, text, text"; done > "$TMP/txt"
for i in 0 1 2 3 4 5 6 7 8 9; do dd if="$TMP/txt" of="$TMP/src.raw" conv=notrunc bs=64k seek=$((i*5+100)) status=none; done
head -c 100k "$TMP/txt" | dd of="$TMP/src.raw" conv=notrunc bs=1 seek=$((19*1024*1024+12345)) status=none

cases=()
for ct in zlib zstd; do for cs in 512 4k 64k 2M; do for compat in 0.10 1.1; do
  [ $compat = 0.10 ] && [ $ct = zstd ] && continue
  cases+=("compression_type=$ct,cluster_size=$cs,compat=$compat")
done; done; done
cases+=("compression_type=zlib,cluster_size=64k,extended_l2=on" "compression_type=zstd,cluster_size=32k,extended_l2=on")
kinds=(random text repeat3k halfrep hole8k bits7 tokens4)
plan $(( ${#cases[@]} * 4 + ${#kinds[@]} * 3 ))

seed=1
for o in "${cases[@]}"; do
  qemu-img convert -c -O qcow2 -o "$o" "$TMP/src.raw" "$TMP/c.qcow2"
  for ch in 4k 1M; do
    if "$CALF_BUILD/tests/blk-dump" -c $ch "$TMP/c.qcow2" "$TMP/out.raw" 2>"$TMP/err" && cmp -s "$TMP/out.raw" "$TMP/src.raw"; then
      pass "$o: calf reads qemu-img's compressed image (chunks of $ch)"
    else
      fail "$o: read in chunks of $ch: $(cat "$TMP/err")"
    fi
  done
  cp "$TMP/src.raw" "$TMP/shadow.raw"
  if out=$("$CALF_BUILD/tests/blk-random" -s $seed -n 600 -m 300000 -r 200 "$TMP/c.qcow2" "$TMP/shadow.raw" 2>&1) &&
     qemu-img compare -q "$TMP/c.qcow2" "$TMP/shadow.raw"; then
    pass "$o: writes over compressed clusters read back right"
  else
    fail "$o: writes over compressed clusters: $out"
  fi
  if chk=$(qemu-img check "$TMP/c.qcow2" 2>&1); then pass "$o: qemu-img check clean after writes"
  else fail "$o: qemu-img check: $(echo "$chk" | head -3)"; fi
  seed=$((seed+1))
done

# One 64 KiB cluster of each kind.  Only "random" does not shrink; the
# others have near-uniform bytes too but repeats (repeat1k: 1 KiB of
# 3 KiB of random data over and over; halfrep: every 2 KiB of random data
# twice; tokens4: 4-byte words from a dictionary of 1024), a zero run
# (hole8k) or 7-bit bytes (bits7) that deflate exploits.
make_kind() {
  case $1 in
  random)  head -c 64k /dev/urandom ;;
  text)    yes "some compressible text, text, text" | head -c 64k ;;
  repeat3k) head -c 3k /dev/urandom > "$TMP/k1"; for i in $(seq 22); do cat "$TMP/k1"; done | head -c 64k ;;
  halfrep) for i in $(seq 16); do head -c 2k /dev/urandom > "$TMP/k1"; cat "$TMP/k1" "$TMP/k1"; done ;;
  hole8k)  head -c 28k /dev/urandom; head -c 8k /dev/zero; head -c 28k /dev/urandom ;;
  bits7)   head -c 64k /dev/urandom | tr '\200-\377' '\000-\177' ;;
  tokens4) perl -e 'srand(7); my @d = map { pack("L", int(rand(2**32))) } 1..1024;
                    print join("", map { $d[int(rand(1024))] } 1..16384)' ;;
  esac
}
# "compressed" or "plain", from qemu-img check's count of compressed clusters
stored_as() {
  if qemu-img check "$1" 2>&1 | grep -q ' 0.00% compressed clusters'; then echo plain
  else echo compressed; fi
}
for k in "${kinds[@]}"; do
  make_kind $k > "$TMP/k.raw"
  rm -f "$TMP/kc.qcow2" "$TMP/kq.qcow2" "$TMP/kc.qcow"
  "$CALF_BUILD/calf-img" convert -c -f raw -O qcow2 "$TMP/k.raw" "$TMP/kc.qcow2" 2>"$TMP/err"
  qemu-img convert -c -f raw -O qcow2 "$TMP/k.raw" "$TMP/kq.qcow2"
  if qemu-img compare -q -f raw -F qcow2 "$TMP/k.raw" "$TMP/kc.qcow2" && qemu-img check -q "$TMP/kc.qcow2"; then
    pass "$k: calf-img convert -c reads back right through qemu-img, check clean"
  else
    fail "$k: calf-img convert -c: $(cat "$TMP/err")"
  fi
  c=$(stored_as "$TMP/kc.qcow2") q=$(stored_as "$TMP/kq.qcow2")
  want=compressed; [ $k = random ] && want=plain
  if [ "$c" = "$q" ] && [ "$c" = $want ]; then pass "$k: stored $c, as qemu-img stores it"
  else fail "$k: calf stored it $c, qemu-img $q (expected $want)"; fi
  if "$CALF_BUILD/calf-img" convert -c -f raw -O qcow "$TMP/k.raw" "$TMP/kc.qcow" 2>"$TMP/err" &&
     qemu-img compare -q -f raw -F qcow "$TMP/k.raw" "$TMP/kc.qcow"; then
    pass "$k: qcow v1 convert -c reads back right through qemu-img"
  else
    fail "$k: qcow v1 convert -c: $(cat "$TMP/err")"
  fi
done
done_testing
