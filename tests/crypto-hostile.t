#!/bin/bash
# Hostile LUKS-in-qcow2 images: a valid image made by calf-img, then one
# field of the crypto header extension or of the LUKS header damaged at a
# time.  Opening it with the right passphrase (calf-img convert) and
# without (calf-img info) must fail with exactly one error line, quickly
# refuse absurd PBKDF2 iteration counts instead of running them, never
# crash, and leave the file as it was.
. "$(dirname "$0")/lib.sh"
[ -x "$CALF_IMG" ] || skip_all "calf-img is not built in $CALF_BUILD"
cd "$TMP" || exit 1

S="--object secret,id=s0,data=hunter2"
"$CALF_IMG" create -q -f qcow2 $S \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 good.qcow2 1M || exit 1
io() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=s0"; }
ok "the undamaged image opens" "$CALF_IMG" convert $S --image-opts "$(io good.qcow2)" -O raw g.raw

# poke FILE OFFSET HEX...: writes bytes at an offset
poke() {
    local f=$1 off=$2; shift 2
    local esc; esc=$(printf '\\x%s' "$@")
    printf "$esc" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}
# the extension follows the 112-byte v3 header: type, length, offset, length
be64() { od -An -t u1 -j "$2" -N 8 "$1" | awk '{v=0; for(i=1;i<=NF;i++) v=v*256+$i; print v}'; }
R=$(be64 good.qcow2 120)

# case NAME EXPECTED-TEXT OFFSET HEX...
case_() {
    local name=$1 want=$2 off=$3; shift 3
    cp good.qcow2 bad.qcow2
    poke bad.qcow2 "$off" "$@"
    local sum; sum=$(md5sum < bad.qcow2)
    local out rc lines
    out=$(timeout 60 "$CALF_IMG" convert $S --image-opts "$(io bad.qcow2)" -O raw b.raw 2>&1)
    rc=$?
    lines=$(printf '%s\n' "$out" | wc -l)
    if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" <<<"$out"; then
        pass "$name: one clear error"
    else
        fail "$name: one clear error" "exit $rc: $out"
    fi
    out=$(timeout 60 "$CALF_IMG" info bad.qcow2 2>&1)
    rc=$?
    if [ "$want" = "Invalid password" ]; then
        [ $rc -eq 0 ] && pass "$name: info still works without the key" ||
            fail "$name: info still works without the key" "exit $rc: $out"
    elif [ $rc -eq 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then
        pass "$name: info refuses it too"
    else
        fail "$name: info refuses it too" "exit $rc: $out"
    fi
    [ "$sum" = "$(md5sum < bad.qcow2)" ] && pass "$name: the file is unchanged" ||
        fail "$name: the file is unchanged"
}

# the cases inside the LUKS header need its offset: calf-img writes the
# crypto header extension first, as qemu-img does
if [ "$(od -An -tx1 -j112 -N4 good.qcow2 | tr -d ' ')" = 0537be77 ] && [ "$R" -gt 0 ]; then
    pass "the crypto header extension comes first and gives the LUKS header ($R)"
    case_ "bad magic" "bad magic" "$R" 58
    case_ "LUKS version 2" "unsupported version 2" $((R + 6)) 00 02
    case_ "cipher twofish" "cipher 'twofish' is not supported" $((R + 8)) 74 77 6f 66 69 73 68 00
    case_ "cipher mode not terminated" "cipher mode is not terminated" $((R + 40)) \
        $(for i in $(seq 32); do printf '61 '; done)
    case_ "cipher mode without an IV generator" "unexpected cipher mode" $((R + 40)) 78 74 73 00
    case_ "IV generator unknown" "IV generator 'bogus'" $((R + 40)) 78 74 73 2d 62 6f 67 75 73 00
    case_ "hash md5" "hash 'md5' is not supported" $((R + 72)) 6d 64 35 00
    case_ "key length 17" "key length 17" $((R + 108)) 00 00 00 11
    case_ "master key iterations 2^32-1" "iteration count 4294967295 is out of range" \
        $((R + 164)) ff ff ff ff
    case_ "master key iterations 0" "iteration count 0 is out of range" $((R + 164)) 00 00 00 00
    case_ "slot 0 iterations 2^32-1" "key slot 0 has an iteration count out of range" \
        $((R + 212)) ff ff ff ff
    case_ "slot 0 state garbage" "key slot 0 has an invalid state" $((R + 208)) 12 34 56 78
    case_ "slot 0 stripes 1" "key slot 0 has a stripe count" $((R + 252)) 00 00 00 01
    case_ "slot 0 key material inside the header" "key slot 0 overlaps the header" \
        $((R + 248)) 00 00 00 01
    case_ "slot 0 key material past the payload" "key slot 0 overlaps the encrypted payload" \
        $((R + 248)) 7f ff ff ff
    case_ "slot 1 on top of slot 0" "key slot 1 overlaps another key slot" $((R + 296)) 00 00 00 08
    case_ "payload offset inside the key material" "overlaps the encrypted payload" \
        $((R + 104)) 00 00 00 10
    case_ "master key digest wrong" "Invalid password" $((R + 112)) 00 11 22 33
else
    fail "the crypto header extension comes first and gives the LUKS header" \
        "bytes 112-135: $(od -An -tx1 -j112 -N24 good.qcow2)"
fi
case_ "region offset not aligned" "LUKS header offset" 120 00 00 00 00 00 04 00 01
case_ "region beyond the end of the file" "LUKS header region" 128 00 00 7f ff ff ff ff ff
case_ "region larger than 16 MiB" "LUKS header region" 128 00 00 00 00 01 00 00 01
case_ "region smaller than a header" "LUKS header region" 128 00 00 00 00 00 00 00 10
case_ "extension length 8" "CRYPTO header extension size 8, but expected size 16" 116 00 00 00 08
case_ "no crypto extension" "missing the crypto header extension" 112 12 34 56 78
case_ "crypt_method 3" "Unsupported encryption method 3" 32 00 00 00 03

done_testing
