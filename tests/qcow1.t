#!/bin/bash
# qcow version 1: images made by qemu-img read and written by calf and the
# other way round (plain, compressed, with a backing file), and headers
# that break the rules refused with one clear error.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

qemu-img create -q -f qcow2 src.qcow2 20M
qemu-io -c 'write -P 1 0 1M' -c 'write -P 7 5M 300k' -c 'write -P 9 7777777 5000' \
    -c 'write -P 3 20476k 4k' src.qcow2 >/dev/null
qemu-img convert -O raw src.qcow2 src.raw

# created by qemu-img, read by calf
qemu-img convert -O qcow src.qcow2 q.qcow
qemu-img convert -c -O qcow src.qcow2 qc.qcow
for f in q.qcow qc.qcow; do
    rm -f c.raw
    ok "calf reads qemu's $f" "$CALF_IMG" convert -O raw $f c.raw
    ok "calf reads qemu's $f: same data" cmp src.raw c.raw
    is "$("$CALF_IMG" info $f | sed -n 2,3p)" "$(qemu-img info $f | sed -n 2,3p)" "info of $f"
done
# created by calf, read by qemu-img
"$CALF_IMG" convert -O qcow src.qcow2 c.qcow
"$CALF_IMG" convert -c -O qcow src.qcow2 cc.qcow
for f in c.qcow cc.qcow; do
    ok "qemu-img reads calf's $f" qemu-img compare -F raw $f src.raw
done
# header of a new image: the same bytes as qemu-img writes
"$CALF_IMG" convert -f raw -O qcow src.raw ch.qcow
is "$(od -An -tx1 -N48 ch.qcow | tr -d ' \n' | cut -c1-64)" \
   "$(qemu-img convert -f raw -O qcow src.raw qh2.qcow && od -An -tx1 -N48 qh2.qcow | tr -d ' \n' | cut -c1-64)" \
   "header fields as qemu-img writes them"

# writes by calf-io into qemu's image, then qemu-io reads them, and back
cp q.qcow w.qcow
"$CALF_IO" -c 'write -P 0x21 100k 10k' -c 'write -P 0x22 6M 1M' -c 'write -P 0x23 19M 4k' w.qcow >/dev/null
out=$(qemu-io -c 'read -P 1 0 100k' -c 'read -P 0x21 100k 10k' -c 'read -P 1 110k 914k' \
      -c 'read -P 0x22 6M 1M' -c 'read -P 0x23 19M 4k' w.qcow 2>&1)
echo "$out" | grep -qi "fail\|error" && fail "qemu-io reads calf-io's writes" "$out" || pass "qemu-io reads calf-io's writes"
qemu-io -c 'write -P 0x31 200k 10k' w.qcow >/dev/null
out=$("$CALF_IO" -c 'read -P 0x31 200k 10k' -c 'read -P 0x21 100k 10k' w.qcow 2>&1)
echo "$out" | grep -qi "fail\|error" && fail "calf-io reads qemu-io's writes" "$out" || pass "calf-io reads qemu-io's writes"
# overwriting a compressed cluster in part keeps the rest of it
cp qc.qcow wc.qcow
"$CALF_IO" -c 'write -P 0x41 1000 100' wc.qcow >/dev/null
out=$(qemu-io -c 'read -P 1 0 1000' -c 'read -P 0x41 1000 100' -c 'read -P 1 1100 4000' wc.qcow 2>&1)
echo "$out" | grep -qi "fail\|error" && fail "partial overwrite of a compressed cluster" "$out" \
    || pass "partial overwrite of a compressed cluster"

# backing file: qemu's overlay written by calf and calf's by qemu
qemu-img create -q -f qcow -b src.qcow2 -F qcow2 ov1.qcow
cp ov1.qcow ov2.qcow
qemu-io -c 'write -P 5 1000 3000' -c 'write -P 6 5M 100k' ov1.qcow >/dev/null
"$CALF_IO" -c 'write -P 5 1000 3000' -c 'write -P 6 5M 100k' ov2.qcow >/dev/null
ok "overlay written by calf-io equals qemu-io's" qemu-img compare ov1.qcow ov2.qcow
rm -f ov.raw
"$CALF_IMG" convert -O raw ov1.qcow ov.raw
ok "calf reads qemu's overlay through its backing file" qemu-img compare ov1.qcow ov.raw
"$CALF_IMG" convert -O qcow -B src.qcow2 -F qcow2 ov1.qcow ov3.qcow
ok "convert -B to qcow: same guest view" qemu-img compare ov1.qcow ov3.qcow

# bad headers: one clear error, no crash
bad() { # desc offset hexbytes
    cp q.qcow b.qcow
    printf "$3" | dd of=b.qcow bs=1 seek=$2 conv=notrunc status=none
    out=$("$CALF_IMG" info b.qcow 2>&1)
    rc=$?
    if [ $rc -eq 1 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q "b.qcow"; then
        pass "bad header: $1"
    else
        fail "bad header: $1" "rc=$rc $out"
    fi
}
bad "version 4" 4 '\x00\x00\x00\x04'
bad "cluster_bits 8" 32 '\x08'
bad "cluster_bits 17" 32 '\x11'
bad "l2_bits 5" 33 '\x05'
bad "l2_bits 14" 33 '\x0e'
bad "crypt_method 2" 36 '\x00\x00\x00\x02'
bad "size 1" 24 '\x00\x00\x00\x00\x00\x00\x00\x01'
bad "huge size" 24 '\x7f\x00\x00\x00\x00\x00\x00\x00'
bad "L1 beyond the end of file" 40 '\x00\x00\x00\x00\x10\x00\x00\x00'
bad "backing name too long" 8 '\x00\x00\x00\x00\x00\x00\x00\x30\x00\x00\x04\x00'
bad "backing name beyond end" 8 '\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x10'
# an L2 pointer past the end of the file: a read error, not a crash
cp q.qcow b.qcow
l1=$(od -An -tu8 --endian=big -j40 -N8 q.qcow | tr -d ' ')
printf '\x00\x00\x00\x10\x00\x00\x00\x00' | dd of=b.qcow bs=1 seek=$l1 conv=notrunc status=none
out=$("$CALF_IMG" convert -O raw b.qcow b.raw 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q "L2 table" && pass "L2 offset beyond the end of the file" \
    || fail "L2 offset beyond the end of the file" "$out"

# legacy AES (crypt_method 1): both directions, wrong passphrase, no key
SEC="--object secret,id=s0,data=hunter2"
io() { echo "driver=qcow,file.filename=$1,encrypt.key-secret=s0"; }
qemu-img convert $SEC -O qcow -o encrypt.format=aes,encrypt.key-secret=s0 src.qcow2 eq.qcow
"$CALF_IMG" convert $SEC -O qcow -o encrypt.format=aes,encrypt.key-secret=s0 src.qcow2 ec.qcow
is "$(qemu-img info ec.qcow | grep encrypted)" "encrypted: yes" "calf's AES image is marked encrypted"
rm -f d.raw
qemu-img convert $SEC --image-opts "$(io ec.qcow)" -O raw d.raw
ok "qemu-img decrypts calf's AES image" cmp d.raw src.raw
rm -f d.raw
ok "calf decrypts qemu's AES image" "$CALF_IMG" convert $SEC --image-opts "$(io eq.qcow)" -O raw d.raw
ok "calf decrypts qemu's AES image: same data" cmp d.raw src.raw
qemu-io $SEC --image-opts "$(io eq.qcow)" -c 'write -P 0x77 100000 3000' >/dev/null
ok "calf-io writes into its AES image" \
    "$CALF_IO" $SEC --image-opts "$(io ec.qcow)" -c 'write -P 0x77 100000 3000'
out=$(qemu-io $SEC --image-opts "$(io ec.qcow)" -c 'read -P 0x77 100000 3000' \
      -c 'read -P 1 0 100000' -c 'read -P 1 103000 945576' 2>&1)
[ $? -eq 0 ] && ! echo "$out" | grep -qi "fail\|error" && pass "qemu-io reads calf-io's encrypted write" \
    || fail "qemu-io reads calf-io's encrypted write" "$out"
rm -f d.raw
"$CALF_IMG" convert $SEC --image-opts "$(io eq.qcow)" -O raw d.raw
out=$(qemu-io -f raw -c 'read -P 0x77 100000 3000' -c 'read -P 1 0 99999' d.raw 2>&1)
echo "$out" | grep -qi "fail\|error" && fail "calf reads qemu-io's encrypted write" "$out" \
    || pass "calf reads qemu-io's encrypted write"
rm -f d.raw
"$CALF_IMG" convert --object secret,id=s0,data=wrong --image-opts "$(io eq.qcow)" -O raw d.raw
! cmp -s d.raw src.raw && pass "a wrong passphrase does not give the data" \
    || fail "a wrong passphrase does not give the data"
rm -f d.raw
out=$("$CALF_IMG" convert -O raw eq.qcow d.raw 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q "encrypted" && pass "no passphrase: a clear error" \
    || fail "no passphrase: a clear error" "$out"
out=$("$CALF_IMG" convert -O qcow -o encrypt.format=aes src.qcow2 x.qcow 2>&1)
[ $? -eq 1 ] && pass "encryption without a key secret is refused" || fail "encryption without a key secret is refused" "$out"
done_testing
