#!/bin/bash
# calf-img create against qemu-img create: the "Formatting" line, the
# errors and exit codes, and the images it makes (sizes, contents, and for
# qcow2 what qemu-img check and info think of them).
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

raw_cases=(
    "f.raw 64M"
    "-f raw r1 1M"
    "-f raw -o preallocation=full r2 1M"
    "-f raw -o preallocation=falloc r3 128k"
    "-f raw -o nocow=on,preallocation=falloc r4 1M"
    "-f raw -o size=2M r5"
    "-o size=2M -o preallocation=off r6"
    "r7 1.5k"
    "r8 0x10"
    "r9 1T"
    "r10 0"
    "r12 0x10k"
    "r13 1.k"
    "e15 1.5e3k"
    "e16 0x1.5"
    "e17 9223372036854775808"
    "-q r11 1M"
    "-f raw -o foo=bar e1 1M"
    "-f bogus e2 1M"
    "e3 1x"
    "e4 -1"
    "e5"
    "e6 16E"
    "e7 8E"
    "e8 1.5"
    "e9 1M extra"
    ""
    "-f raw -b f.raw -F raw e10 1M"
    "-f raw -F raw e11 1M"
    "-f raw -o size=abc e12"
    "-f raw -o size=1M e13 2M"
    "-x e14 1M"
    "-f"
    "-o help"
    "-f raw -o help"
    "-f raw -o help x"
    "-f qcow2 -o help"
    "-f qcow2 -o ? x"
    "-f qcow2 -o cluster_size=4k,help x"
)
for c in "${raw_cases[@]}"; do
    same_img "create $c" create $c
done
for f in f.raw r1 r2 r3 r4 r5 r6 r7 r10 r11; do
    is "$(stat -c %s "$CDIR/$f" 2>&1)" "$(stat -c %s "$QDIR/$f" 2>&1)" "size of $f"
done
is "$(stat -c %s "$CDIR/r8" 2>&1)" "$(stat -c %s "$QDIR/r8" 2>&1)" "size of r8 (16 bytes asked)"
is "$(stat -c %s "$CDIR/r9")" "1099511627776" "1T sparse image has the right size"
ok "preallocation=full allocates the file" test "$(stat -c %b "$CDIR/r2")" -ge 2048

# The image calf made works under qemu-io: write there, read back here.
qemu-io -f raw -c 'write -P 0x5a 4k 8k' "$CDIR/r1" >/dev/null
is "$("$CALF_IO" -f raw -c 'read -P 0x5a 4k 8k' -c 'read -P 0 0 4k' "$CDIR/r1" | filter_io)" \
   "$(printf 'read 8192/8192 bytes at offset 4096\n8 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\nread 4096/4096 bytes at offset 0\n4 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)')" \
   "raw image made by calf-img holds qemu-io's data"

qcow2_cases=(
    "-f qcow2 q1.qcow2 64M"
    "-f qcow2 -o cluster_size=4k,lazy_refcounts=on q2.qcow2 1G"
    "-f qcow2 -o compat=0.10 q3.qcow2 10M"
    "-f qcow2 -o compat=1.1 -o cluster_size=512 q4.qcow2 1M"
    "-f qcow2 -o refcount_bits=1 q5.qcow2 1M"
    "-f qcow2 -o extended_l2=on q6.qcow2 1M"
    "-f qcow2 -o preallocation=metadata q7.qcow2 4M"
    "-f qcow2 -b q1.qcow2 -F qcow2 q8.qcow2"
    "-f qcow2 -b q1.qcow2 -F qcow2 q9.qcow2 128M"
    "-f qcow2 -o backing_file=q1.qcow2,backing_fmt=qcow2 q10.qcow2"
    "-f qcow2 -u -b nonexist -F qcow2 q11.qcow2 1M"
    "-f qcow2 -b f.raw -F raw q12.qcow2"
    "-f qcow2 -o foo=bar e20 1M"
    "-f qcow2 e21"
    "-f qcow2 -o size=2M e22 3M"
    "-f qcow2 -b q1.qcow2 e23"
    "-f qcow2 -u -b x e24 1M"
    "-f qcow2 -b nonexist -F qcow2 e25 1M"
    "-f qcow2 -b '' -F raw e26 1M"
    "-f qcow2 -b e27 -F raw e27 1M"
    "-f qcow2 -o cluster_size=abc e28 1M"
)
# (q11's backing file does not exist: only its creation is compared)
qcow2_images="q1 q2 q3 q4 q5 q6 q7 q8 q9 q10 q12"
driver_check qcow2
for c in "${qcow2_cases[@]}"; do
    eval "same_img \"create \$c\" create $c"
done
for f in $qcow2_images; do
    ok "qemu-img check of calf's $f.qcow2" qemu-img check -q "$CDIR/$f.qcow2"
    is "$(cd "$CDIR" && qemu-img info -U --output=json "$f.qcow2" 2>&1 | grep -v actual-size)" \
       "$(cd "$QDIR" && qemu-img info -U --output=json "$f.qcow2" 2>&1 | grep -v actual-size)" \
       "qemu-img info of calf's $f.qcow2 matches qemu's"
done
# qcow (version 1)
qcow_cases=(
    "-f qcow v1.qcow 1M"
    "-f qcow -b v1.qcow -F qcow v1b.qcow"
    "-f qcow -o help"
    "-f qcow -o help x"
    "-f qcow -o cluster_size=4k e30 1M"
)
driver_check qcow
for c in "${qcow_cases[@]}"; do
    same_img "create $c" create $c
done
same_img "info of calf's qcow overlay" info --backing-chain --output=json v1b.qcow
ok "qemu-io reads calf's qcow image" qemu-io -f qcow -c 'read -P 0 0 1M' "$CDIR/v1b.qcow"
done_testing
