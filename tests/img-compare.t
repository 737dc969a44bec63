#!/bin/bash
# calf-img compare against qemu-img compare: messages, offsets and exit
# codes (0 same, 1 different, 2 open error), strict mode, size mismatch,
# progress output; and images changed by calf-io are seen as changed.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

in_both qemu-img create -q -f raw c1 1M
in_both qemu-img create -q -f raw c2 1M
in_both qemu-io -f raw -c 'write -P 7 1000 1' c1
in_both qemu-img create -q -f raw c3 2M
in_both qemu-img create -q -f raw c4 2M
in_both qemu-io -f raw -c 'write -P 1 1536k 1' c4
in_both qemu-img create -q -f raw c5 64M
in_both qemu-io -f raw -c 'write -P 1 10M 10M' -c 'write -z 30M 1M' c5
in_both cp c5 c6
in_both qemu-io -f raw -c 'write -P 2 63M 512' c6
in_both qemu-img create -q -f raw z1 1M
in_both qemu-io -f raw -c 'write -z 0 64k' -c 'write -P 0 64k 64k' z1

cases=(
    "c1 c1" "c1 c2" "c2 c1" "-s c1 c1" "-s c1 c2" "c2 c3" "c3 c2" "-s c2 c3"
    "c4 c2" "c2 c4" "c5 c5" "c5 c6" "-q c5 c6" "-q c5 c5" "-p c1 c1" "-p c5 c5"
    "-p c5 c6" "-q -p c5 c5" "z1 c2" "-s z1 c2" "-f raw -F raw c1 c2" "-U c1 c2"
    "c1 nonexist" "nonexist c1" "c1" "c1 c2 c3" "-x c1 c2"
)
for c in "${cases[@]}"; do
    same_img "compare $c" compare $c
done

ok "compare -f qcow2 on raw files: exit 2" bash -c "'$CALF_IMG' compare -f qcow2 '$CDIR/c1' '$CDIR/c2'; test \$? = 2"
same_img "compare -f qcow2 c1 c2: message" compare -f qcow2 c1 c2

# change an image with calf-io, compare with both tools
"$CALF_IO" -f raw -c 'write -P 0x11 300k 1k' "$CDIR/c2" >/dev/null
qemu-io -f raw -c 'write -P 0x11 300k 1k' "$QDIR/c2" >/dev/null
same_img "compare after calf-io write" compare c1 c2
is "$(qemu-img compare "$CDIR/c2" "$QDIR/c2")" "Images are identical." \
   "calf-io and qemu-io wrote the same bytes"

qcow2_setup() {
    in_both qemu-img create -q -f qcow2 q1.qcow2 1M &&
    in_both qemu-io -c 'write -P 7 1000 1' q1.qcow2 &&
    in_both qemu-img create -q -f qcow2 -b q1.qcow2 -F qcow2 q2.qcow2 &&
    in_both qemu-img create -q -f qcow2 q3.qcow2 2M &&
    in_both qemu-io -c 'write -z 0 64k' q3.qcow2 &&
    in_both qemu-img convert -f raw -O qcow2 c1 q4.qcow2
}
qcases=("q1.qcow2 c1" "c1 q1.qcow2" "q2.qcow2 c1" "q2.qcow2 q1.qcow2" "-s q2.qcow2 q1.qcow2"
        "q3.qcow2 c2" "-s q3.qcow2 q3.qcow2" "q3.qcow2 c3" "-s q3.qcow2 c3" "q4.qcow2 c1"
        "-F raw q1.qcow2 c1" "q1.qcow2 q3.qcow2")
driver_check qcow2
if qcow2_setup; then
    for c in "${qcases[@]}"; do
        same_img "compare $c" compare $c
    done
else
    fail "the qcow2 test images: qemu-img or qemu-io failed to make them"
fi
done_testing
