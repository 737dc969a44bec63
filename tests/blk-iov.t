#!/bin/bash
# Scatter/gather requests through the block layer on raw and qcow2 images
# (what virtio-blk sends), then qemu-img check on the qcow2 one.
B=${CALF_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
if ! command -v qemu-img >/dev/null; then echo "1..0 # skip qemu-img is not installed"; exit 0; fi
echo "1..5"
truncate -s 32M "$T/a.raw"
qemu-img create -q -f qcow2 -o cluster_size=4k "$T/a.qcow2" 32M
"$B/tests/blk-iov" "$T/a.raw" | sed -n 's/^\(not \)\{0,1\}ok [0-9]* - /&raw: /p' | awk '{ sub(/ok [0-9]+/, "ok " NR); print }'
"$B/tests/blk-iov" "$T/a.qcow2" | sed -n 's/^\(not \)\{0,1\}ok [0-9]* - /&qcow2: /p' | awk '{ sub(/ok [0-9]+/, "ok " NR+2); print }'
if qemu-img check "$T/a.qcow2" >/dev/null 2>&1; then echo "ok 5 - qemu-img check clean"; else echo "not ok 5 - qemu-img check"; fi
