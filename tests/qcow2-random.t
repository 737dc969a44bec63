#!/bin/bash
# Random writes, zero writes, discards, flushes and reopens through calf's
# qcow2 driver, checked byte for byte against a shadow raw file; then
# qemu-img check (no errors, no leaks) and qemu-img compare judge the image.
# A matrix over versions, cluster sizes, refcount widths, extended L2, lazy
# refcounts and backing chains.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img

SIZE=16M
configs=(
  "compat=1.1"
  "compat=0.10"
  "compat=1.1,cluster_size=512"
  "compat=0.10,cluster_size=512"
  "compat=1.1,cluster_size=4k"
  "compat=1.1,cluster_size=2M"
  "compat=1.1,refcount_bits=1"
  "compat=1.1,refcount_bits=64"
  "compat=1.1,cluster_size=512,refcount_bits=64"
  "compat=1.1,cluster_size=512,refcount_bits=1"
  "compat=1.1,refcount_bits=8,cluster_size=1k"
  "compat=1.1,extended_l2=on"
  "compat=1.1,extended_l2=on,cluster_size=16k"
  "compat=1.1,extended_l2=on,cluster_size=2M"
  "compat=1.1,lazy_refcounts=on"
  "compat=1.1,lazy_refcounts=on,extended_l2=on,refcount_bits=2"
)
plan $(( ${#configs[@]} * 2 * 3 + 12 ))

run_case() { # name image shadow seed [blk-random flags]
  local name=$1 img=$2 sh=$3 seed=$4 flags=$5
  if out=$("$CALF_BUILD/tests/blk-random" $flags -s "$seed" -n 1500 -m 200000 -r 400 "$img" "$sh" 2>&1); then
    pass "$name: random I/O matches the shadow file"
  else
    fail "$name: random I/O: $out"
  fi
  local chk; chk=$(qemu-img check "$img" 2>&1); local rc=$?
  if [ $rc -eq 0 ]; then pass "$name: qemu-img check is clean"
  else fail "$name: qemu-img check exit $rc: $(echo "$chk" | head -5)"; fi
  if out=$(qemu-img compare "$img" "$sh" 2>&1); then pass "$name: qemu-img compare agrees"
  else fail "$name: qemu-img compare: $out"; fi
}

seed=1
for cfg in "${configs[@]}"; do
  # standalone image
  qemu-img create -q -f qcow2 -o "$cfg" "$TMP/a.qcow2" $SIZE
  rm -f "$TMP/shadow.raw"; truncate -s $SIZE "$TMP/shadow.raw"
  run_case "$cfg" "$TMP/a.qcow2" "$TMP/shadow.raw" $seed
  seed=$((seed+1))
  # over a backing chain: raw base <- qcow2 mid (with data) <- image
  head -c 12M /dev/urandom > "$TMP/base.raw"
  qemu-img create -q -f qcow2 -o "$cfg" -b "$TMP/base.raw" -F raw "$TMP/mid.qcow2" $SIZE
  qemu-io -c "write -P 0x5a 1M 1M" -c "write -z 3M 512k" -c "write -P 0x33 13M 100k" "$TMP/mid.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -o "$cfg" -b "$TMP/mid.qcow2" -F qcow2 "$TMP/a.qcow2"
  qemu-img convert -O raw "$TMP/a.qcow2" "$TMP/shadow.raw"
  sums=$(md5sum "$TMP/base.raw" "$TMP/mid.qcow2")
  run_case "$cfg, backing chain" "$TMP/a.qcow2" "$TMP/shadow.raw" $seed
  seed=$((seed+1))
  if [ "$sums" != "$(md5sum "$TMP/base.raw" "$TMP/mid.qcow2")" ]; then
    echo "# backing files changed!"; t_fail=$((t_fail + 1))
  fi
done

# a chain of depth 3 mixing raw and qcow2 layers, written by calf
head -c 8M /dev/urandom > "$TMP/l0.raw"
qemu-img create -q -f qcow2 -b "$TMP/l0.raw" -F raw "$TMP/l1.qcow2" 8M
qemu-io -c "write -P 0x11 0 2M" "$TMP/l1.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/l1.qcow2" "$TMP/l2.raw"
qemu-img create -q -f qcow2 -o cluster_size=4k -b "$TMP/l2.raw" -F raw "$TMP/l3.qcow2" 8M
qemu-io -c "write -P 0x22 1M 2M" "$TMP/l3.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$TMP/l3.qcow2" -F qcow2 "$TMP/top.qcow2" 10M
qemu-img convert -O raw "$TMP/top.qcow2" "$TMP/shadow.raw"
run_case "depth-3 chain (raw, qcow2, raw, qcow2) grown to 10M" "$TMP/top.qcow2" "$TMP/shadow.raw" 99

# an image that needs its refcount table to grow many times
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 "$TMP/g.qcow2" 64M
rm -f "$TMP/shadow.raw"; truncate -s 64M "$TMP/shadow.raw"
run_case "refcount table growth (512 B clusters, 64-bit refcounts, 64M)" "$TMP/g.qcow2" "$TMP/shadow.raw" 7

# O_DIRECT (cache=none): unaligned requests and metadata go through bounce
# buffers
for cfg in "compat=1.1" "compat=1.1,cluster_size=512,refcount_bits=64"; do
  qemu-img create -q -f qcow2 -o "$cfg" -b "$TMP/base.raw" -F raw "$TMP/d.qcow2" $SIZE
  qemu-img convert -O raw "$TMP/d.qcow2" "$TMP/shadow.raw"
  run_case "$cfg, O_DIRECT" "$TMP/d.qcow2" "$TMP/shadow.raw" 11 -N
done

done_testing
