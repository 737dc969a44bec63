#!/bin/bash
# LUKS key slots changed in place (`amend -o encrypt.state=...`) and
# `convert -n --target-image-opts` into an encrypted image, against
# qemu-img 7.2: keys added by calf open in qemu-io and keys added by
# qemu-img open in calf; erased keys no longer open anything, and their
# key material is gone (the old header entry put back still does not
# open); the data reads back unchanged through qemu-io after every
# amend; qemu-img check stays clean; refusals (the last key, bad option
# combinations) have qemu-img's words and exit status.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

S="--object secret,id=s0,data=old --object secret,id=s1,data=new --object secret,id=s2,data=third"
LUKS="encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"
io() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=${2:-s0}"; }
add() { echo "encrypt.state=active,encrypt.new-secret=$1,encrypt.iter-time=10${2:+,$2}"; }


PATTERN=(-c "write -P 0x11 0 4k" -c "write -P 0x22 65000 3000" -c "write -P 0x33 1M 130k")
VERIFY=(-c "read -P 0x11 0 4k" -c "read -P 0x22 65000 3000" -c "read -P 0x33 1M 130k"
        -c "read -P 0 4k 60904")

# data_ok DESC FILE SECRET-ID: qemu-io reads the pattern back with that key
data_ok() {
    local out
    out=$(qemu-io $S --image-opts "$(io "$2" "$3")" "${VERIFY[@]}" 2>&1)
    if [ $? -eq 0 ] && ! grep -qi "fail\|error\|can't" <<<"$out"; then pass "$1"
    else fail "$1" "$out"; fi
}
# check_ok DESC FILE SECRET-ID: qemu-img check is clean
check_ok() { ok "$1" qemu-img check $S --image-opts "$(io "$2" "$3")"; }
# locked_out DESC FILE SECRET-ID: qemu-io refuses the key as it refuses a wrong one
locked_out() {
    is "$(qemu-io $S --image-opts "$(io "$2" "$3")" -c "read 0 512" 2>&1; echo "exit $?")" \
       "qemu-io: can't open: Invalid password, cannot unlock any keyslot
exit 1" "$1"
}
# slots FILE: which key slots are active, as qemu-img info shows them
slots() { qemu-img info "$1" | grep -A1 '^ *\[[0-7]\]:' | grep -o 'true\|false' | tr '\n' ' '; }
# same DESC ARGS...: calf-img and qemu-img answer the same, status included
same() {
    local desc=$1; shift
    is "$("$CALF_IMG" "$@" 2>&1 | filter_names; echo "exit ${PIPESTATUS[0]}")" \
       "$(qemu-img "$@" 2>&1; echo "exit $?")" "$desc"
}

# ---- calf adds a key to qemu's image ----
qemu_retry qemu-img create -q -f qcow2 $S -o "$LUKS" q.qcow2 4M || { fail "qemu-img create"; done_testing; }
qemu-io $S --image-opts "$(io q.qcow2)" "${PATTERN[@]}" >/dev/null
ok "calf-img amend adds a key to qemu's image" \
    "$CALF_IMG" amend $S --image-opts "$(io q.qcow2)" -o "$(add s1)"
is "$(slots q.qcow2)" "true true false false false false false false " "the key went to the first free slot"
data_ok "qemu-io reads the data with calf's new key" q.qcow2 s1
data_ok "and still with the old key" q.qcow2 s0
check_ok "qemu-img check is clean" q.qcow2 s1
is "$("$CALF_IMG" info --output=json q.qcow2 | grep -v actual-size)" \
   "$(qemu-img info --output=json q.qcow2 | grep -v actual-size)" "calf-img info as qemu-img's after the amend"
ok "an explicit slot" "$CALF_IMG" amend $S --image-opts "$(io q.qcow2 s1)" -o "$(add s2 encrypt.keyslot=6)"
is "$(slots q.qcow2)" "true true false false false false true false " "the key went to slot 6"
data_ok "qemu-io reads the data with the key in slot 6" q.qcow2 s2

# ---- qemu adds a key to calf's image ----
"$CALF_IMG" create -q -f qcow2 $S -o "$LUKS" c.qcow2 4M
"$CALF_IO" $S --image-opts "$(io c.qcow2)" "${PATTERN[@]}" >/dev/null
if qemu_retry qemu-img amend $S --image-opts "$(io c.qcow2)" -o "$(add s1 encrypt.keyslot=3)"; then
    ok "calf-io reads the data with qemu's new key" \
        "$CALF_IO" $S --image-opts "$(io c.qcow2 s1)" "${VERIFY[@]}"
    out=$("$CALF_IO" $S --image-opts "$(io c.qcow2 s1)" "${VERIFY[@]}" 2>&1)
    grep -qi "fail" <<<"$out" && fail "calf-io: the pattern matches" "$out" || pass "calf-io: the pattern matches"
    "$CALF_IMG" convert $S --image-opts "$(io c.qcow2 s1)" -O raw c1.raw
    qemu-img convert $S --image-opts "$(io c.qcow2 s0)" -O raw q0.raw
    ok "calf's decryption with the new key = qemu's with the old" cmp c1.raw q0.raw
else
    fail "qemu-img amend adds a key to calf's image"
fi

# ---- erasing ----
R=$(perl -0777 -ne 'print index($_, "LUKS\xba\xbe")' q.qcow2)
[ "${R:-0}" -gt 0 ] || fail "the LUKS header is in the image" "$R"
dd if=q.qcow2 of=hdr.bin bs=1 skip="$R" count=592 status=none
ok "calf-img amend erases the slots of a password" \
    "$CALF_IMG" amend $S --image-opts "$(io q.qcow2 s1)" -o encrypt.state=inactive,encrypt.old-secret=s0
is "$(slots q.qcow2)" "false true false false false false true false " "slot 0 is inactive"
locked_out "qemu-io no longer opens with the erased key" q.qcow2 s0
is "$("$CALF_IMG" convert $S --image-opts "$(io q.qcow2)" -O raw x.raw 2>&1 | filter_names; echo "exit ${PIPESTATUS[0]}")" \
   "$(qemu-img convert $S --image-opts "$(io q.qcow2)" -O raw x.raw 2>&1; echo "exit $?")" \
   "calf-img refuses the erased key with qemu-img's words and status"
data_ok "the data reads back with the remaining key" q.qcow2 s1
check_ok "qemu-img check is clean after the erase" q.qcow2 s1
cp q.qcow2 restored.qcow2
dd if=hdr.bin of=restored.qcow2 bs=1 seek="$R" conv=notrunc status=none
locked_out "the old header entry put back does not open: the key material is wiped" restored.qcow2 s0
ok "erase by slot number" \
    "$CALF_IMG" amend $S --image-opts "$(io q.qcow2 s1)" -o encrypt.state=inactive,encrypt.keyslot=6
locked_out "qemu-io no longer opens with slot 6's key" q.qcow2 s2
data_ok "the data reads back after the second erase" q.qcow2 s1
if qemu_retry qemu-img amend $S --image-opts "$(io c.qcow2 s0)" -o encrypt.state=inactive,encrypt.keyslot=3; then
    out=$("$CALF_IO" $S --image-opts "$(io c.qcow2 s1)" -c "read 0 512" 2>&1)
    [ $? -eq 1 ] && grep -q "Invalid password, cannot unlock any keyslot" <<<"$out" &&
        pass "calf-io no longer opens with the key qemu-img erased" ||
        fail "calf-io no longer opens with the key qemu-img erased" "$out"
fi

# ---- the last key, and the other refusals ----
"$CALF_IMG" create -q -f qcow2 $S -o "$LUKS" one.qcow2 4M
"$CALF_IO" $S --image-opts "$(io one.qcow2)" "${PATTERN[@]}" >/dev/null
same "the only active slot is not erased" amend $S --image-opts "$(io one.qcow2)" \
    -o encrypt.state=inactive,encrypt.keyslot=0
same "nor all the slots of a password" amend $S --image-opts "$(io one.qcow2)" \
    -o encrypt.state=inactive,encrypt.old-secret=s0
data_ok "the refusals left the data" one.qcow2 s0
cp one.qcow2 full.qcow2
for i in 1 2 3 4 5 6 7; do
    "$CALF_IMG" amend $S --image-opts "$(io full.qcow2)" -o "$(add s1)" || fail "adding key $i"
done
is "$(slots full.qcow2)" "true true true true true true true true " "calf fills all eight slots"
same "a ninth key is refused" amend $S --image-opts "$(io full.qcow2)" -o "$(add s2)"
refusals=(
    "$(add s2 encrypt.keyslot=0)"
    "$(add s2 encrypt.keyslot=8)"
    "$(add s2 encrypt.keyslot=-1)"
    "$(add s2 encrypt.keyslot=abc)"
    "$(add s2),encrypt.old-secret=s0"
    "$(add s9)"
    "encrypt.state=active,encrypt.iter-time=10"
    "encrypt.new-secret=s2"
    "encrypt.keyslot=2"
    "encrypt.state=on"
    "encrypt.state=inactive"
    "encrypt.state=inactive,encrypt.new-secret=s1,encrypt.keyslot=1"
    "encrypt.state=inactive,encrypt.iter-time=10,encrypt.keyslot=1"
    "encrypt.state=inactive,encrypt.keyslot=9"
    "encrypt.state=inactive,encrypt.keyslot=-1"
    "encrypt.state=inactive,encrypt.keyslot=1,encrypt.old-secret=s2"
    "encrypt.state=inactive,encrypt.old-secret=s2"
    "encrypt.state=inactive,encrypt.keyslot=3,encrypt.keyslot=99999999999"
    "encrypt.bogus=1"
    "encrypt.cipher-alg=aes-128"
)
for o in "${refusals[@]}"; do
    same "refused as qemu-img: $o" amend $S --image-opts "$(io one.qcow2)" -o "$o"
done
"$CALF_IMG" amend $S --image-opts "$(io one.qcow2)" -o "$(add s1 encrypt.keyslot=5)"
same "an erased slot is not erased again" amend $S --image-opts "$(io one.qcow2)" \
    -o encrypt.state=inactive,encrypt.keyslot=4
same "a slot that does not hold the old password is not erased" amend $S \
    --image-opts "$(io one.qcow2)" -o encrypt.state=inactive,encrypt.keyslot=5,encrypt.old-secret=s0
same "amend of an encrypted image needs its key" amend $S -o "$(add s2)" one.qcow2
same "even to change something else" amend $S -o size=2M one.qcow2
same "a wrong key" amend $S --image-opts "$(io one.qcow2 s2)" -o size=2M
qemu-img create -q -f qcow2 plain.qcow2 1M
same "a plain image has no key slots" amend $S -o "$(add s1)" plain.qcow2
qemu-img create -q -f qcow2 $S -o encrypt.format=aes,encrypt.key-secret=s0 aes.qcow2 1M
same "nor has a legacy AES image" amend $S --image-opts "$(io aes.qcow2)" -o "$(add s1)"
ok "--force overwrites an active slot" "$CALF_IMG" amend --force $S \
    --image-opts "$(io one.qcow2)" -o "$(add s2 encrypt.keyslot=5)"
locked_out "slot 5's old key is gone" one.qcow2 s1
data_ok "slot 5's new key opens" one.qcow2 s2
ok "--force erases the last key of a password" "$CALF_IMG" amend --force $S \
    --image-opts "$(io one.qcow2 s2)" -o encrypt.state=inactive,encrypt.old-secret=s0
ok "--force erases the last key" "$CALF_IMG" amend --force $S \
    --image-opts "$(io one.qcow2 s2)" -o encrypt.state=inactive,encrypt.keyslot=5
locked_out "with every slot erased nothing opens" one.qcow2 s2
is "$(slots one.qcow2)" "false false false false false false false false " "qemu-img info shows every slot inactive"
ok "a plain amend with the key still works" "$CALF_IMG" amend $S --image-opts "$(io q.qcow2 s1)" -o size=8M
data_ok "the data reads back after a resize" q.qcow2 s1

# ---- a disk that fails during the amend ----
# Every write-side call of an add and of an erase fails in turn, and all
# after it (the disk is gone): the old key must still open the image, the
# change must be there when the amend said so, and qemu-img check must
# stay clean.
FAULT=$CALF_BUILD/tests/luks-fault
if [ -x "$FAULT" ]; then
    # f0: the old key in slot 0; f1: and the new one in slot 1
    "$CALF_IMG" create -q -f qcow2 $S -o "$LUKS" f0.qcow2 1M
    cp f0.qcow2 f1.qcow2
    n_add=$("$FAULT" f1.qcow2 old add new 0 | sed -n 's/^calls //p')
    cp f1.qcow2 tmp.qcow2
    n_erase=$("$FAULT" tmp.qcow2 old erase 1 0 | sed -n 's/^calls //p')
    bad=""
    for ((n = 1; n <= n_add + 1; n++)); do
        cp f0.qcow2 t1.qcow2
        out=$("$FAULT" t1.qcow2 old add new $n | tr '\n' ' ')
        grep -q "OLD opens" <<<"$out" || bad+="add at $n: $out; "
        grep -q "amend ok" <<<"$out" && ! grep -q "NEW opens" <<<"$out" && bad+="add at $n: $out; "
        qemu-img check -q $S --image-opts "$(io t1.qcow2)" >/dev/null 2>&1 || bad+="add at $n: check; "
    done
    for ((n = 1; n <= n_erase + 1; n++)); do
        cp f1.qcow2 t1.qcow2
        out=$("$FAULT" t1.qcow2 old erase 1 $n | tr '\n' ' ')
        grep -q "OLD opens" <<<"$out" || bad+="erase at $n: $out; "
        grep -q "amend ok" <<<"$out" && [ "$(slots t1.qcow2)" != "true false false false false false false false " ] &&
            bad+="erase at $n: $out $(slots t1.qcow2); "
        qemu-img check -q $S --image-opts "$(io t1.qcow2)" >/dev/null 2>&1 || bad+="erase at $n: check; "
    done
    [ "${n_add:-0}" -ge 4 ] && [ "${n_erase:-0}" -ge 4 ] && [ -z "$bad" ] &&
        pass "a failing disk never loses the old key ($n_add + $n_erase fault points)" ||
        fail "a failing disk never loses the old key" "add $n_add erase $n_erase: $bad"
    locked_out "qemu-io: the erase that went through took the key" t1.qcow2 s1
else
    skip "luks-fault is not built (make test builds it)"
fi

# ---- convert -n --target-image-opts into an encrypted image ----
qemu-img create -q -f raw src.raw 4M
qemu-io -f raw -c "write -P 0x5c 0 100k" -c "write -P 0xc5 3M 64k" src.raw >/dev/null
qemu_retry qemu-img create -q -f qcow2 $S -o "$LUKS" t.qcow2 4M
qemu-io $S --image-opts "$(io t.qcow2)" -c "write -P 0xee 2M 64k" >/dev/null
qemu_retry qemu-img amend $S --image-opts "$(io t.qcow2)" -o "$(add s1)"
qemu-img convert $S --image-opts "$(io t.qcow2)" -O raw before.raw
same "--target-image-opts without -n is refused" convert $S --target-image-opts src.raw "$(io t.qcow2 s1)"
same "--target-image-opts with -O is refused" convert $S -n -O qcow2 --target-image-opts src.raw "$(io t.qcow2 s1)"
same "-n with -o is refused" convert $S -n -o encrypt.key-secret=s1 -O qcow2 src.raw t.qcow2
same "-n into an encrypted image without its key is refused" convert $S -n -O qcow2 src.raw t.qcow2
same "--target-image-opts without the key" convert $S -n --target-image-opts src.raw "driver=qcow2,file.filename=t.qcow2"
same "--target-image-opts with a wrong key" convert $S -n --target-image-opts src.raw "$(io t.qcow2 s2)"
same "--target-image-opts without a file" convert $S -n --target-image-opts src.raw "driver=qcow2,filename=t.qcow2"
same "--target-image-opts with a bare name" convert $S -n --target-image-opts src.raw t.qcow2
qemu-img convert $S --image-opts "$(io t.qcow2)" -O raw after.raw
ok "the refusals left the target alone" cmp before.raw after.raw
ok "calf-img convert -n --target-image-opts writes qemu's encrypted image" \
    "$CALF_IMG" convert $S -n --target-image-opts src.raw "$(io t.qcow2 s1)"
qemu-img convert $S --image-opts "$(io t.qcow2 s0)" -O raw back.raw
ok "qemu-img decrypts what calf wrote" cmp back.raw src.raw
check_ok "qemu-img check is clean on the target" t.qcow2 s1
is "$(qemu-img info t.qcow2 | grep 'virtual size')" "virtual size: 4 MiB (4194304 bytes)" "-n kept the target's size"
ok "without a driver the target's format is probed" \
    "$CALF_IMG" convert $S -n --target-image-opts before.raw "file.filename=t.qcow2,encrypt.key-secret=s0"
qemu-img convert $S --image-opts "$(io t.qcow2 s1)" -O raw back2.raw
ok "qemu-img decrypts the second conversion" cmp back2.raw before.raw
qemu-img create -q -f qcow2 $S -o "$LUKS,cluster_size=4k" small.qcow2 1M 2>/dev/null ||
    qemu_retry qemu-img create -q -f qcow2 $S -o "$LUKS" small.qcow2 1M
same "a target smaller than the source is refused" convert $S -n --target-image-opts src.raw "$(io small.qcow2)"
"$CALF_IMG" convert $S -O qcow2 -o "$LUKS" src.raw new.qcow2
ok "calf-img convert -n --target-image-opts into calf's own encrypted image" \
    "$CALF_IMG" convert $S -n --target-image-opts before.raw "$(io new.qcow2)"
qemu-img convert $S --image-opts "$(io new.qcow2)" -O raw back3.raw
ok "qemu-img decrypts it" cmp back3.raw before.raw

done_testing
