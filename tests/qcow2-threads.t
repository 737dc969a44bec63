#!/bin/bash
# Eight threads write, zero and read one image at once, sharing clusters
# (and so racing to allocate them), over a backing file and without one;
# every read is checked, then qemu-img check and compare judge the image.
# Also from a compressed image: threads decompress in parallel, each into
# its own buffer, while others overwrite the same compressed clusters.
. "$(dirname "$0")/blk-lib.sh" qemu-img
cfgs=("cluster_size=64k" "cluster_size=4k" "extended_l2=on" "lazy_refcounts=on" "compat=0.10")
echo "1..$(( ${#cfgs[@]} * 4 + 4 ))"
head -c 16M /dev/urandom > "$T/base.raw"
truncate -s 16M "$T/zero.raw"
for cfg in "${cfgs[@]}"; do
  for backing in yes no; do
    if [ $backing = yes ]; then
      qemu-img create -q -f qcow2 -o "$cfg" -b "$T/base.raw" -F raw "$T/a.qcow2" 16M; ref="$T/base.raw"
    else
      qemu-img create -q -f qcow2 -o "$cfg" "$T/a.qcow2" 16M; ref="$T/zero.raw"
    fi
    if out=$("$B/tests/blk-threads" -t 8 -n 4000 "$T/a.qcow2" "$ref" 2>&1); then
      ok "$cfg, backing $backing: 8 threads, every read right"
    else notok "$cfg, backing $backing: $out"; fi
    if chk=$(qemu-img check "$T/a.qcow2" 2>&1); then ok "$cfg, backing $backing: qemu-img check clean"
    else notok "$cfg, backing $backing: $(echo "$chk" | head -3)"; fi
  done
done
for ct in zlib zstd; do
  qemu-img convert -f raw -O qcow2 -c -o compression_type=$ct "$T/base.raw" "$T/c.qcow2"
  if out=$("$B/tests/blk-threads" -t 8 -n 4000 "$T/c.qcow2" "$T/base.raw" 2>&1); then
    ok "compressed ($ct): 8 threads, every read right"
  else notok "compressed ($ct): $out"; fi
  if chk=$(qemu-img check "$T/c.qcow2" 2>&1); then ok "compressed ($ct): qemu-img check clean"
  else notok "compressed ($ct): $(echo "$chk" | head -3)"; fi
done
finish
