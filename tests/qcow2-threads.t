#!/bin/bash
# Eight threads write, zero and read one image at once, sharing clusters
# (and so racing to allocate them), over a backing file and without one;
# every read is checked, then qemu-img check and compare judge the image
# (compare against a raw model of what the threads last wrote, which
# blk-threads -m writes out).
# Also from a compressed image: threads decompress in parallel, each into
# its own buffer, while others overwrite the same compressed clusters.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img
cfgs=("cluster_size=64k" "cluster_size=4k" "extended_l2=on" "lazy_refcounts=on" "compat=0.10")
plan $(( ${#cfgs[@]} * 6 + 6 ))
head -c 16M /dev/urandom > "$TMP/base.raw"
truncate -s 16M "$TMP/zero.raw"
# threads_check DESC IMG REF: 8 threads of blk-threads on IMG (its backing
# or zero reference REF), then qemu-img check, and qemu-img compare of IMG
# with the model of its contents the run wrote
threads_check() {
  local desc=$1 img=$2 ref=$3 out chk
  rm -f "$TMP/model.raw"
  if out=$("$CALF_BUILD/tests/blk-threads" -t 8 -n 4000 -m "$TMP/model.raw" "$img" "$ref" 2>&1); then
    pass "$desc: 8 threads, every read right"
  else fail "$desc: $out"; fi
  if chk=$(qemu-img check "$img" 2>&1); then pass "$desc: qemu-img check clean"
  else fail "$desc: $(echo "$chk" | head -3)"; fi
  ok "$desc: qemu-img compare with the model" \
    qemu-img compare -f raw -F qcow2 "$TMP/model.raw" "$img"
}

for cfg in "${cfgs[@]}"; do
  for backing in yes no; do
    if [ $backing = yes ]; then
      qemu-img create -q -f qcow2 -o "$cfg" -b "$TMP/base.raw" -F raw "$TMP/a.qcow2" 16M; ref="$TMP/base.raw"
    else
      qemu-img create -q -f qcow2 -o "$cfg" "$TMP/a.qcow2" 16M; ref="$TMP/zero.raw"
    fi
    threads_check "$cfg, backing $backing" "$TMP/a.qcow2" "$ref"
  done
done
for ct in zlib zstd; do
  qemu-img convert -f raw -O qcow2 -c -o compression_type=$ct "$TMP/base.raw" "$TMP/c.qcow2"
  threads_check "compressed ($ct)" "$TMP/c.qcow2" "$TMP/base.raw"
done
done_testing
