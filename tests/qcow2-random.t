#!/bin/bash
# Random writes, zero writes, discards, flushes and reopens through calf's
# qcow2 driver, checked byte for byte against a shadow raw file; then
# qemu-img check (no errors, no leaks) and qemu-img compare judge the image.
# A matrix over versions, cluster sizes, refcount widths, extended L2, lazy
# refcounts and backing chains.
. "$(dirname "$0")/blk-lib.sh" qemu-img

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
echo "1..$(( ${#configs[@]} * 2 * 3 + 12 ))"

run_case() { # name image shadow seed [blk-random flags]
  local name=$1 img=$2 sh=$3 seed=$4 flags=$5
  if out=$("$B/tests/blk-random" $flags -s "$seed" -n 1500 -m 200000 -r 400 "$img" "$sh" 2>&1); then
    ok "$name: random I/O matches the shadow file"
  else
    notok "$name: random I/O: $out"
  fi
  local chk; chk=$(qemu-img check "$img" 2>&1); local rc=$?
  if [ $rc -eq 0 ]; then ok "$name: qemu-img check is clean"
  else notok "$name: qemu-img check exit $rc: $(echo "$chk" | head -5)"; fi
  if out=$(qemu-img compare "$img" "$sh" 2>&1); then ok "$name: qemu-img compare agrees"
  else notok "$name: qemu-img compare: $out"; fi
}

seed=1
for cfg in "${configs[@]}"; do
  # standalone image
  qemu-img create -q -f qcow2 -o "$cfg" "$T/a.qcow2" $SIZE
  rm -f "$T/shadow.raw"; truncate -s $SIZE "$T/shadow.raw"
  run_case "$cfg" "$T/a.qcow2" "$T/shadow.raw" $seed
  seed=$((seed+1))
  # over a backing chain: raw base <- qcow2 mid (with data) <- image
  head -c 12M /dev/urandom > "$T/base.raw"
  qemu-img create -q -f qcow2 -o "$cfg" -b "$T/base.raw" -F raw "$T/mid.qcow2" $SIZE
  qemu-io -c "write -P 0x5a 1M 1M" -c "write -z 3M 512k" -c "write -P 0x33 13M 100k" "$T/mid.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -o "$cfg" -b "$T/mid.qcow2" -F qcow2 "$T/a.qcow2"
  qemu-img convert -O raw "$T/a.qcow2" "$T/shadow.raw"
  sums=$(md5sum "$T/base.raw" "$T/mid.qcow2")
  run_case "$cfg, backing chain" "$T/a.qcow2" "$T/shadow.raw" $seed
  seed=$((seed+1))
  if [ "$sums" != "$(md5sum "$T/base.raw" "$T/mid.qcow2")" ]; then
    echo "# backing files changed!"; failed=$((failed+1))
  fi
done

# a chain of depth 3 mixing raw and qcow2 layers, written by calf
head -c 8M /dev/urandom > "$T/l0.raw"
qemu-img create -q -f qcow2 -b "$T/l0.raw" -F raw "$T/l1.qcow2" 8M
qemu-io -c "write -P 0x11 0 2M" "$T/l1.qcow2" >/dev/null
qemu-img convert -O raw "$T/l1.qcow2" "$T/l2.raw"
qemu-img create -q -f qcow2 -o cluster_size=4k -b "$T/l2.raw" -F raw "$T/l3.qcow2" 8M
qemu-io -c "write -P 0x22 1M 2M" "$T/l3.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$T/l3.qcow2" -F qcow2 "$T/top.qcow2" 10M
qemu-img convert -O raw "$T/top.qcow2" "$T/shadow.raw"
run_case "depth-3 chain (raw, qcow2, raw, qcow2) grown to 10M" "$T/top.qcow2" "$T/shadow.raw" 99

# an image that needs its refcount table to grow many times
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 "$T/g.qcow2" 64M
rm -f "$T/shadow.raw"; truncate -s 64M "$T/shadow.raw"
run_case "refcount table growth (512 B clusters, 64-bit refcounts, 64M)" "$T/g.qcow2" "$T/shadow.raw" 7

# O_DIRECT (cache=none): unaligned requests and metadata go through bounce
# buffers
for cfg in "compat=1.1" "compat=1.1,cluster_size=512,refcount_bits=64"; do
  qemu-img create -q -f qcow2 -o "$cfg" -b "$T/base.raw" -F raw "$T/d.qcow2" $SIZE
  qemu-img convert -O raw "$T/d.qcow2" "$T/shadow.raw"
  run_case "$cfg, O_DIRECT" "$T/d.qcow2" "$T/shadow.raw" 11 -N
done

finish
