#!/bin/bash
# Encryption interop with qemu-img/qemu-io: LUKS and legacy AES inside
# qcow2, AES in qcow v1.  Images encrypted by QEMU are decrypted by calf
# and the other way round (the plain bytes compared through a raw copy
# made by the other tool); wrong and missing passphrases are refused with
# QEMU's messages; info, measure and check agree with qemu-img; a random
# workload on encrypted images matches a shadow file; encrypted overlays
# over a plain backing file; copy on write after a snapshot re-encrypts.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

S="--object secret,id=s0,data=hunter2"
BAD="--object secret,id=s0,data=wrong"
# short PBKDF2 runs: the tests are about formats, not about brute force
LUKS="encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"
AES="encrypt.format=aes,encrypt.key-secret=s0"
io() { echo "driver=${2:-qcow2},file.filename=$1,encrypt.key-secret=s0"; }

qemu_create() { qemu_retry qemu-img create -q "$@"; }

# A pattern with data inside clusters, across cluster ends, unaligned.
PATTERN=(-c "write -P 0x11 0 4k" -c "write -P 0x22 65000 3000" -c "write -P 0x33 1M 130k"
         -c "write -P 0x44 3000001 777")

# ---- LUKS and AES in qcow2, both directions ----
configs=(
    "$LUKS"
    "$LUKS,encrypt.cipher-alg=aes-128"
    "$LUKS,encrypt.cipher-alg=aes-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv"
    "$LUKS,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain64,encrypt.hash-alg=sha1"
    "$LUKS,cluster_size=4k"
    "$AES"
    "$AES,compat=0.10"
    "$AES,cluster_size=512"
)
for cfg in "${configs[@]}"; do
    name=${cfg//encrypt./}
    name=${name//,key-secret=s0,iter-time=10/}
    name=${name//,key-secret=s0/}
    # QEMU writes, calf reads
    rm -f q.qcow2 q.raw c.raw
    if ! qemu_create -f qcow2 $S -o "$cfg" q.qcow2 4M; then
        fail "$name: qemu-img create"
        continue
    fi
    qemu-io $S --image-opts "$(io q.qcow2)" "${PATTERN[@]}" >/dev/null
    qemu-img convert $S --image-opts "$(io q.qcow2)" -O raw q.raw
    ok "$name: calf decrypts qemu's image" \
        "$CALF_IMG" convert $S --image-opts "$(io q.qcow2)" -O raw c.raw
    ok "$name: same bytes as qemu-img's own decryption" cmp q.raw c.raw
    # calf writes (through both the create and the write paths), QEMU reads
    rm -f c.qcow2 c.raw q.raw
    "$CALF_IMG" create -q -f qcow2 $S -o "$cfg" c.qcow2 4M
    "$CALF_IO" $S --image-opts "$(io c.qcow2)" "${PATTERN[@]}" >/dev/null
    ok "$name: qemu-img decrypts calf's image" \
        qemu-img convert $S --image-opts "$(io c.qcow2)" -O raw q.raw
    "$CALF_IMG" convert $S --image-opts "$(io c.qcow2)" -O raw c.raw
    ok "$name: same bytes as calf's own decryption" cmp q.raw c.raw
    out=$(qemu-io -f raw q.raw -c "read -P 0x22 65000 3000" -c "read -P 0x44 3000001 777" \
          -c "read -P 0 3000778 1000" 2>&1)
    if grep -q "failed\|error" <<<"$out"; then fail "$name: the plain data is right" "$out"
    else pass "$name: the plain data is right"; fi
    ok "$name: qemu-img check is clean on calf's image" \
        qemu-img check $S --image-opts "$(io c.qcow2)"
    is "$("$CALF_IMG" info --output=json c.qcow2 | grep -v actual-size)" \
       "$(qemu-img info --output=json c.qcow2 | grep -v actual-size)" \
       "$name: calf-img info --output=json as qemu-img's"
done

# ---- info (human), measure, check ----
"$CALF_IMG" create -q -f qcow2 $S -o "$LUKS" l.qcow2 4M
is "$("$CALF_IMG" info l.qcow2 | grep -v '^disk size')" \
   "$(qemu-img info l.qcow2 | grep -v '^disk size')" "LUKS: calf-img info as qemu-img's"
for o in "" ",cluster_size=4k" ",encrypt.cipher-alg=aes-128" ",encrypt.cipher-mode=cbc"; do
    is "$("$CALF_IMG" measure $S --size 1G -O qcow2 -o "encrypt.format=luks,encrypt.key-secret=s0$o" 2>&1)" \
       "$(qemu_retry qemu-img measure $S --size 1G -O qcow2 -o "encrypt.format=luks,encrypt.key-secret=s0$o")" \
       "measure -o encrypt.format=luks$o as qemu-img"
done
is "$("$CALF_IMG" check $S --image-opts "$(io l.qcow2)")" \
   "$(qemu-img check $S --image-opts "$(io l.qcow2)")" "LUKS: check counts the header clusters"

"$CALF_IO" $S --image-opts "$(io l.qcow2)" -c "write -P 0x5a 0 64k" >/dev/null
out=$("$CALF_IMG" map $S --image-opts "$(io l.qcow2)" 2>&1)
is "$? $out" "1 Offset          Length          Mapped to       File
calf-img: File contains external, encrypted or compressed clusters." \
   "map: encrypted clusters have no host offset to show, as in qemu-img"
is "$("$CALF_IMG" map --output=json $S --image-opts "$(io c.qcow2)")" \
   "$(qemu-img map --output=json $S --image-opts "$(io c.qcow2)")" "map --output=json as qemu-img's"

# ---- wrong and missing passphrases ----
out=$("$CALF_IMG" convert $BAD --image-opts "$(io l.qcow2)" -O raw w.raw 2>&1)
rc=$?
is "$rc: $out" "1: calf-img: Could not open '$(io l.qcow2)': Invalid password, cannot unlock any keyslot" \
   "LUKS: a wrong passphrase is refused as qemu-img refuses it"
out=$(qemu-img convert $BAD --image-opts "$(io l.qcow2)" -O raw w.raw 2>&1)
is "$? ${out#*: }" "1 Could not open '$(io l.qcow2)': Invalid password, cannot unlock any keyslot" \
   "LUKS: qemu-img refuses a wrong passphrase for calf's image"
out=$("$CALF_IMG" convert -O raw l.qcow2 w.raw 2>&1)
rc=$?
[ $rc -eq 1 ] && grep -q "encrypt.key-secret' is required" <<<"$out" &&
    pass "LUKS: no key: a clear error" || fail "LUKS: no key: a clear error" "$rc $out"
# open errors in each tool's words, and an unknown secret id where it is named
cp l.qcow2 "$CDIR/" && cp l.qcow2 "$QDIR/" && qemu-img create -q -f qcow2 "$CDIR/p.qcow2" 1M &&
    cp "$CDIR/p.qcow2" "$QDIR/"
same_io "calf-io --image-opts, a wrong passphrase: qemu-io's words" \
    $BAD --image-opts "$(io l.qcow2)" -c 'read 0 512'
same_io "calf-io --image-opts without a file: qemu-io's words" --image-opts driver=qcow2 -c 'read 0 512'
same_io "calf-io --image-opts, a missing file: qemu-io's words" \
    --image-opts driver=qcow2,file.filename=nothere.qcow2 -c 'read 0 512'
S9="driver=qcow2,file.filename=l.qcow2,encrypt.key-secret=s9"
same_io "calf-io, an unknown secret id: qemu-io's words" $S --image-opts "$S9" -c 'read 0 512'
same_img "convert from an unknown secret id: qemu-img's words" \
    convert $S --image-opts "$S9" -O raw w.raw
same_img "convert to an unknown secret id: qemu-img's words" \
    convert -O qcow2 -o encrypt.format=luks,encrypt.key-secret=s9 p.qcow2 w.qcow2
same_img "create with an unknown secret id: qemu-img's words" \
    create -q -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s9 w2.qcow2 1M
is "$("$CALF_IMG" info l.qcow2 | grep encrypted)" "encrypted: yes" "info needs no key"
# info unlocks nothing, as qemu-img's: a wrong passphrase or an unknown
# secret id does not stop it (qemu-img names the image json:{...} there:
# its first line is left out)
for case in "a wrong passphrase:$BAD --image-opts $(io l.qcow2)" "an unknown secret id:--image-opts $S9"; do
    sec=${case#*:}
    is "$("$CALF_IMG" info $sec 2>&1 | sed 1d; echo "exit ${PIPESTATUS[0]}")" \
        "$(qemu-img info $sec 2>&1 | sed 1d; echo "exit ${PIPESTATUS[0]}")" \
        "info with ${case%%:*}: as qemu-img's (no key is tried)"
done
is "$("$CALF_IO" -c "read 0 512" l.qcow2 2>&1 | filter_names; echo "exit ${PIPESTATUS[0]}")" \
   "$(qemu-io -c "read 0 512" l.qcow2 2>&1; echo "exit $?")" \
   "calf-io without the key: qemu-io's error"
"$CALF_IMG" create -q -f qcow2 $S -o "$AES" a.qcow2 1M
"$CALF_IO" $S --image-opts "$(io a.qcow2)" -c "write -P 0x5a 0 64k" >/dev/null
out=$(qemu-io $BAD --image-opts "$(io a.qcow2)" -c "read -P 0x5a 0 512" 2>&1)
grep -q "Pattern verification failed" <<<"$out" &&
    pass "AES: a wrong passphrase does not give the data" ||
    fail "AES: a wrong passphrase does not give the data" "$out"
echo -n hunter2 > pw.txt
echo -n aHVudGVyMg== > pw.b64
ok "secret from a file" "$CALF_IO" --object secret,id=s0,file=pw.txt --image-opts "$(io a.qcow2)" \
    -c "read -P 0x5a 0 64k"
ok "secret in base64" "$CALF_IO" --object secret,id=s0,data=aHVudGVyMg==,format=base64 \
    --image-opts "$(io a.qcow2)" -c "read -P 0x5a 0 64k"
ok "secret file in base64" "$CALF_IO" --object secret,id=s0,file=pw.b64,format=base64 \
    --image-opts "$(io a.qcow2)" -c "read -P 0x5a 0 64k"
out=$("$CALF_IMG" create -f qcow2 -o encrypt.format=luks c2.qcow2 1M 2>&1)
[ $? -eq 1 ] && grep -q "Parameter 'encrypt.key-secret' is required for cipher" <<<"$out" &&
    pass "create without a key secret is refused" || fail "create without a key secret is refused" "$out"
out=$("$CALF_IMG" convert -c -O qcow2 $S -o "$AES" a.qcow2 c3.qcow2 2>&1)
[ $? -ne 0 ] && pass "compressed + encrypted is refused" || fail "compressed + encrypted is refused" "$out"

# ---- qcow v1 AES, both directions ----
qemu-io -f raw -c "write -P 0x66 0 100k" p.raw >/dev/null 2>&1 || {
    truncate -s 1M p.raw; qemu-io -f raw -c "write -P 0x66 0 100k" p.raw >/dev/null; }
qemu-img convert $S -f raw -O qcow -o "$AES" p.raw q1.qcow
"$CALF_IMG" convert $S -f raw -O qcow -o "$AES" p.raw c1.qcow
ok "qcow v1: calf decrypts qemu's AES image" \
    "$CALF_IMG" compare $S --image-opts "$(io q1.qcow qcow)" "driver=raw,file.filename=p.raw"
ok "qcow v1: qemu decrypts calf's AES image" \
    qemu-img compare $S --image-opts "$(io c1.qcow qcow)" "driver=raw,file.filename=p.raw"

# ---- convert between plain and encrypted ----
truncate -s 4M plain.raw
qemu-io -f raw plain.raw -c "write -P 0x77 100k 300k" >/dev/null
ok "convert plain -> LUKS" "$CALF_IMG" convert $S -f raw -O qcow2 -o "$LUKS" plain.raw enc.qcow2
ok "qemu-img sees the same data" \
    qemu-img compare $S --image-opts "$(io enc.qcow2)" "driver=raw,file.filename=plain.raw"
ok "convert LUKS -> AES" "$CALF_IMG" convert $S --image-opts "$(io enc.qcow2)" -O qcow2 \
    -o "$AES" enc2.qcow2
ok "convert AES -> plain qcow2" "$CALF_IMG" convert $S --image-opts "$(io enc2.qcow2)" \
    -O qcow2 back.qcow2
ok "the round trip keeps the bytes" qemu-img compare back.qcow2 plain.raw
ok "qemu-img check is clean on the converted images" \
    qemu-img check $S --image-opts "$(io enc2.qcow2)"

# ---- random workload against a shadow file ----
for cfg in "$LUKS" "$LUKS,cluster_size=512,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv" \
           "$LUKS,extended_l2=on" "$AES" "$AES,compat=0.10"; do
    rm -f r.qcow2 sh.raw
    "$CALF_IMG" create -q -f qcow2 $S -o "$cfg" r.qcow2 8M
    truncate -s 8M sh.raw
    ok "random I/O ($cfg) matches the shadow file" \
        "$CALF_BUILD"/tests/blk-random -k hunter2 -s 7 -n 800 -m 150000 -r 300 r.qcow2 sh.raw
    ok "random I/O ($cfg): qemu-img compare agrees" \
        qemu-img compare $S --image-opts "$(io r.qcow2)" "driver=raw,file.filename=sh.raw"
    ok "random I/O ($cfg): qemu-img check is clean" qemu-img check $S --image-opts "$(io r.qcow2)"
done

# ---- encrypted overlay over a plain backing file; snapshot COW ----
truncate -s 4M base.raw
qemu-io -f raw base.raw -c "write -P 0xaa 0 4M" >/dev/null
"$CALF_IMG" create -q -f qcow2 $S -o "$LUKS" -b base.raw -F raw ov.qcow2
"$CALF_IO" $S --image-opts "$(io ov.qcow2)" -c "write -P 0x11 70000 1000" >/dev/null
out=$(qemu-io $S --image-opts "$(io ov.qcow2)" -c "read -P 0xaa 0 70000" \
      -c "read -P 0x11 70000 1000" -c "read -P 0xaa 71000 60072" 2>&1)
grep -q "failed\|error" <<<"$out" && fail "calf's encrypted overlay keeps the backing data around a write" "$out" ||
    pass "calf's encrypted overlay keeps the backing data around a write"
qemu_create -f qcow2 $S -o "$LUKS" -b base.raw -F raw qov.qcow2 &&
    qemu-io $S --image-opts "$(io qov.qcow2)" -c "write -P 0x12 200000 3000" >/dev/null
qemu-img convert $S --image-opts "$(io qov.qcow2)" -O raw qov.raw
ok "calf reads qemu's encrypted overlay" \
    "$CALF_IMG" compare $S --image-opts "$(io qov.qcow2)" "driver=raw,file.filename=qov.raw"
ok "snapshot of the encrypted overlay" "$CALF_IMG" snapshot $S --image-opts -c s1 "$(io ov.qcow2)"
"$CALF_IO" $S --image-opts "$(io ov.qcow2)" -c "write -P 0x13 70500 100" >/dev/null
out=$(qemu-io $S --image-opts "$(io ov.qcow2)" -c "read -P 0x11 70000 500" \
      -c "read -P 0x13 70500 100" -c "read -P 0x11 70600 400" -c "read -P 0xaa 71000 60072" 2>&1)
grep -q "failed\|error" <<<"$out" && fail "copy on write re-encrypts for the new host offset" "$out" ||
    pass "copy on write re-encrypts for the new host offset"
ok "qemu-img check is clean after the COW" qemu-img check $S --image-opts "$(io ov.qcow2)"
qemu-img convert $S --image-opts "$(io ov.qcow2)" -O raw ov.raw
ok "commit of the encrypted overlay into its plain base" \
    "$CALF_IMG" commit $S --image-opts "$(io ov.qcow2)"
ok "the base now holds the overlay's data" cmp ov.raw base.raw

# ---- an encrypted backing file: its key as backing.encrypt.key-secret ----
S2="$S --object secret,id=s1,data=other"
"$CALF_IMG" create -q -f qcow2 --object secret,id=s1,data=other \
    -o encrypt.format=luks,encrypt.key-secret=s1,encrypt.iter-time=10 eb.qcow2 4M
"$CALF_IO" $S2 --image-opts "driver=qcow2,file.filename=eb.qcow2,encrypt.key-secret=s1" \
    -c "write -P 0x61 0 1M" >/dev/null
"$CALF_IMG" create -q -f qcow2 $S -o "$AES" -u -b eb.qcow2 -F qcow2 eo.qcow2 4M
EO="driver=qcow2,file.filename=eo.qcow2,encrypt.key-secret=s0,backing.encrypt.key-secret=s1"
"$CALF_IO" $S2 --image-opts "$EO" -c "write -P 0x62 1000 2000" >/dev/null
qemu-img convert $S2 --image-opts "$EO" -O raw eo-q.raw
ok "encrypted overlay on an encrypted base: calf reads the chain" \
    "$CALF_IMG" convert $S2 --image-opts "$EO" -O raw eo-c.raw
ok "encrypted overlay on an encrypted base: as qemu-img reads it" cmp eo-q.raw eo-c.raw
out=$("$CALF_IMG" convert $S --image-opts "$(io eo.qcow2)" -O raw x.raw 2>&1)
[ $? -eq 1 ] && grep -q "eb.qcow2: .*encrypt.key-secret' is required" <<<"$out" &&
    pass "no key for the base: a clear error naming it" ||
    fail "no key for the base: a clear error naming it" "$out"

# ---- libcrypto is loaded when an encrypted image needs it, not at start ----
for p in "$CALF_IMG" "$CALF_IO" "$CALF_BUILD/calf"; do
    [ -x "$p" ] || continue
    ldd "$p" | grep -q libcrypto && fail "$(basename "$p") does not link libcrypto" "$(ldd "$p")" ||
        pass "$(basename "$p") does not link libcrypto"
done
# a libcrypto.so.3 that is not OpenSSL, first in the search path: plain
# images are unaffected, encryption fails with one clear error.  It is
# made with the compiler that builds calf ($CC, gcc by default), which a
# machine that built calf has.
mkdir -p fakessl && echo 'int not_openssl;' >fakessl/x.c
if out=$(${CC:-gcc} -shared -fPIC -o fakessl/libcrypto.so.3 fakessl/x.c 2>&1); then
    qemu-img create -q -f qcow2 plain.qcow2 1M
    ok "without libcrypto: a plain image opens" \
        env LD_LIBRARY_PATH=$PWD/fakessl "$CALF_IO" -c 'write -P 3 0 4k' -c 'read -P 3 0 4k' plain.qcow2
    "$CALF_IMG" create -q -f qcow2 $S -o "$LUKS" lazy.qcow2 1M
    # no_crypto DESC CMD...: CMD fails with one clear error
    no_crypto() {
        local desc="without libcrypto, $1 of a LUKS image: one clear error" out rc
        shift
        out=$(env LD_LIBRARY_PATH="$PWD/fakessl" "$@" 2>&1); rc=$?
        [ $rc -eq 1 ] && grep -q "libcrypto.so.3 has no EVP_.*: not the OpenSSL calf was built for" <<<"$out" &&
            pass "$desc" || fail "$desc" "exit $rc: $out"
    }
    no_crypto info "$CALF_IMG" info lazy.qcow2
    no_crypto "calf-io with the key" "$CALF_IO" $S --image-opts "$(io lazy.qcow2)" -c 'read 0 512'
    no_crypto create "$CALF_IMG" create -q -f qcow2 $S -o "$LUKS" lazy2.qcow2 1M
    ok "and with it, calf-io reads that image" \
        "$CALF_IO" $S --image-opts "$(io lazy.qcow2)" -c 'read -P 0 0 512'
else
    fail "without libcrypto: ${CC:-gcc} makes a stand-in libcrypto.so.3" "$out"
fi

done_testing
