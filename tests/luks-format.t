#!/bin/bash
# The luks format (`-f luks`, a LUKS1 container on its own) against
# qemu-img and qemu-io 7.2: data calf-io writes reads back through
# qemu-io and the other way round, partial sectors included; calf's image
# compares equal to a raw copy of the same writes; info, probing, measure,
# resize, amend (key slots added and erased) and convert both ways do what
# qemu-img does; hostile headers and secrets that are not UTF-8 get one
# clear error.  Then the pieces of the qcow2 LUKS iotests (188, 189, 198)
# that come with it: encrypted preallocated targets, backing.* image
# options, commit into an encrypted base, json: names.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 39
cd "$TMP" || exit 1

S="--object secret,id=s0,data=hunter0 --object secret,id=s1,data=hunter1"
io() { echo "driver=luks,file.filename=$1,key-secret=${2:-s0}"; }
# a new luks image reads as noise: zeros first, as any data
W=(-c "write -z 0 4M" -c "write -P 0x11 0 64k" -c "write -P 0x22 700 1000" -c "write -P 0x33 1M 300k"
   -c "write -z 2M 8k" -c "write -P 0x44 3145216 513")
R=(-c "read -P 0x11 0 700" -c "read -P 0x22 700 1000" -c "read -P 0x11 1700 63836"
   -c "read -P 0x33 1M 300k" -c "read -P 0 2M 8k" -c "read -P 0x44 3145216 513")
# reads DESC TOOL FILE [SECRET-ID]: TOOL verifies every pattern of W
reads() {
    local out
    out=$("$2" $S --image-opts "$(io "$3" "$4")" "${R[@]}" 2>&1)
    if [ $? -eq 0 ] && ! grep -qi "fail\|error\|can't" <<<"$out"; then pass "$1"
    else fail "$1" "$out"; fi
}
# io_ok DESC TOOL IMAGE-OPTS CMD...: TOOL runs the commands on the image
# without a failed pattern or an error
io_ok() {
    local desc=$1 tool=$2 spec=$3 out
    shift 3
    out=$("$tool" $S --image-opts "$spec" "$@" 2>&1)
    if [ $? -eq 0 ] && ! grep -qi "fail\|error\|can't" <<<"$out"; then pass "$desc"
    else fail "$desc" "$out"; fi
}
# same DESC ARGS...: calf-img and qemu-img answer the same, status included
same() {
    local desc=$1; shift
    is "$("$CALF_IMG" "$@" 2>&1 | filter_names; echo "exit ${PIPESTATUS[0]}")" \
       "$(qemu-img "$@" 2>&1; echo "exit $?")" "$desc"
}
no_size() { grep -v '"actual-size"\|^disk size'; }

# ---- create, probe, info ----
is "$("$CALF_IMG" create -f luks $S -o key-secret=s0,iter-time=10 c.luks 4M)" \
   "Formatting 'c.luks', fmt=luks size=4194304 key-secret=s0 iter-time=10" \
   "calf-img create -f luks prints qemu-img's line"
is "$(qemu-img info --output=json c.luks | no_size)" \
   "$("$CALF_IMG" info --output=json c.luks | no_size)" "qemu-img and calf-img info agree"
is "$("$CALF_IMG" info c.luks | sed -n 2p)" "file format: luks" "the format is probed from the header"
is "$(stat -c %s c.luks)" "$((4194304 + 2068480))" "the payload follows QEMU's 2068480-byte header"
qemu_retry qemu-img create -q -f luks $S -o key-secret=s0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv q.luks 4M
is "$(qemu-img info q.luks | no_size)" "$("$CALF_IMG" info q.luks | no_size)" \
   "calf-img info shows qemu's aes-128-cbc-essiv header as qemu-img does"

# ---- data both ways ----
"$CALF_IO" $S --image-opts "$(io c.luks)" "${W[@]}" >/dev/null
reads "qemu-io reads what calf-io wrote (partial sectors too)" qemu-io c.luks
qemu-io $S --image-opts "$(io q.luks)" "${W[@]}" >/dev/null
reads "calf-io reads what qemu-io wrote (cbc, essiv)" "$CALF_IO" q.luks
head -c 4M /dev/zero > plain.raw
qemu-io -f raw "${W[@]}" plain.raw >/dev/null
is "$(qemu-img compare $S --image-opts "driver=raw,file.filename=plain.raw" "$(io c.luks)" 2>&1)" \
   "Images are identical." "qemu-img compare: calf's luks image holds the raw copy's data"
same_io "a wrong password is refused as qemu-io refuses it" \
    --object secret,id=s0,data=wrong --image-opts "driver=luks,file.filename=$TMP/q.luks,key-secret=s0" \
    -c "read 0 512"
same_io "no key is refused as qemu-io refuses it" -f luks -c "read 0 512" "$TMP/q.luks"

# ---- resize ----
cp c.luks r.luks
is "$("$CALF_IMG" resize $S --image-opts "$(io r.luks)" 1M 2>&1 | filter_names; stat -c %s r.luks)" \
   "qemu-img: Use the --shrink option to perform a shrink operation.
qemu-img: warning: Shrinking an image will delete all data beyond the shrunken image's end. \
Before performing such an operation, make sure there is no important data there.
$((4194304 + 2068480))" "a shrink without --shrink is refused"
ok "calf-img resize grows the image" "$CALF_IMG" resize -q $S --image-opts "$(io r.luks)" 6M
is "$(qemu-img info --output=json r.luks | grep virtual-size)" '    "virtual-size": 6291456,' \
   "qemu-img sees the new size"
reads "and qemu-io the data" qemu-io r.luks

# ---- amend ----
same "amend -o help" amend -f luks -o help
ok "calf-img amend adds a key" "$CALF_IMG" amend $S --image-opts "$(io r.luks)" \
    -o state=active,new-secret=s1,iter-time=10,keyslot=3
reads "qemu-io opens the image with the new key" qemu-io r.luks s1
ok "calf-img amend erases the first key" "$CALF_IMG" amend $S --image-opts "$(io r.luks s1)" \
    -o state=inactive,old-secret=s0
is "$(qemu-io $S --image-opts "$(io r.luks)" -c "read 0 512" 2>&1)" \
   "qemu-io: can't open: Invalid password, cannot unlock any keyslot" "the erased key opens nothing"
same "erasing the last key is refused" amend $S --image-opts "$(io r.luks s1)" \
    -o state=inactive,keyslot=3

# ---- convert, measure ----
head -c 1M /dev/urandom > src.raw
head -c 1M /dev/zero >> src.raw
ok "calf-img convert raw -> luks" "$CALF_IMG" convert -O luks $S -o key-secret=s0,iter-time=10 \
    src.raw cv.luks
is "$(qemu-img compare $S --image-opts "driver=raw,file.filename=src.raw" "$(io cv.luks)" 2>&1)" \
   "Images are identical." "qemu-img compare: the converted image, zeros included"
"$CALF_IMG" convert $S --image-opts "$(io q.luks)" -O raw back.raw
ok "calf-img convert luks -> raw gives the data qemu-io wrote" cmp back.raw plain.raw
is "$("$CALF_IMG" measure $S -O luks -o key-secret=s0 -f raw src.raw)" \
   "$(qemu_retry qemu-img measure $S -O luks -o key-secret=s0,iter-time=10 -f raw src.raw)" \
   "measure -O luks as qemu-img's"

# ---- hostile headers: one clear error each ----
head -c 1M /dev/urandom > noise.raw
same "-f luks on a file that is not LUKS" info -f luks noise.raw
cp c.luks v2.luks
printf '\x00\x02' | dd of=v2.luks bs=1 seek=6 conv=notrunc 2>/dev/null
same "a LUKS2 header" info -f luks v2.luks
cp c.luks far.luks
printf '\xff\xff\xff\xff' | dd of=far.luks bs=1 seek=104 conv=notrunc 2>/dev/null
is "$("$CALF_IMG" info far.luks 2>&1; echo "exit $?")" \
   "calf-img: Could not open 'far.luks': LUKS header: the payload offset 2199023255040 is beyond \
the end of the file or too large
exit 1" "a payload offset of 2 TiB is refused before anything is read"
head -c 1M c.luks > short.luks
is "$("$CALF_IMG" info short.luks 2>&1 | grep -c "payload offset 2068480 is beyond"; echo "$?")" \
   "1
0" "a file that ends inside the header region is refused"

# ---- option values QEMU's enums do not have: QAPI's words ----
same_img "create -f luks with an unknown cipher mode" create -f luks $S \
    -o key-secret=s0,cipher-mode=foo,iter-time=10 bad.luks 1M
same_img "qcow2 encrypt.cipher-alg the same" create -f qcow2 $S \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.cipher-alg=aes-127 bad.qcow2 1M

# ---- secrets: text, as QEMU looks them up (iotest 282) ----
printf ':<;\xff' > "$CDIR/nonutf8"
cp "$CDIR/nonutf8" "$QDIR/nonutf8"
touch "$CDIR/stub.luks" "$QDIR/stub.luks"
same_img "a secret that is not UTF-8 fails the create" create -q -f luks \
    --object secret,id=sec0,file=nonutf8 -o key-secret=sec0 stub.luks 4M
is "$(cd "$CDIR" && ls stub.luks 2>&1)" "$(cd "$QDIR" && ls stub.luks 2>&1)" \
   "and removes the file it was to create, as qemu-img does"
cp c.luks "$CDIR/u.luks"
cp c.luks "$QDIR/u.luks"
same_io "and fails the open" --object secret,id=sec0,file=nonutf8 --image-opts \
    driver=luks,file.filename=u.luks,key-secret=sec0 -c "read 0 512"

# ---- qcow2 with LUKS: what the iotests 188, 189 and 198 need ----
Q="encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"
qio() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=${2:-s0}"; }
ok "calf-img convert into an encrypted, preallocated qcow2" "$CALF_IMG" convert -O qcow2 $S \
    -o "$Q,preallocation=metadata" src.raw pre.qcow2
is "$(qemu-img compare $S --image-opts "driver=raw,file.filename=src.raw" "$(qio pre.qcow2)" 2>&1)" \
   "Images are identical." "its zeros were written, not left to the preallocated noise"
qemu_retry qemu-img create -q -f qcow2 $S -o "$Q" base.qcow2 1M
qemu-io $S --image-opts "$(qio base.qcow2)" -c "write -P 0xa 0 1M" >/dev/null
qemu_retry qemu-img create -q -f qcow2 $S -o "${Q/s0/s1}" -b base.qcow2 -F qcow2 top.qcow2
TOP="$(qio top.qcow2 s1),backing.driver=qcow2,backing.file.filename=base.qcow2"
TOP="$TOP,backing.encrypt.key-secret=s0"
"$CALF_IO" $S --image-opts "$TOP" -c "write -P 0xe 0 1024" >/dev/null
io_ok "calf-io writes through backing.* image options" qemu-io "$TOP" -c "read -P 0xe 0 1024" \
    -c "read -P 0xa 1024 64512"
is "$("$CALF_IMG" commit $S --image-opts "$TOP" 2>&1)" "Image committed." \
   "calf-img commit writes into the encrypted base with its key"
io_ok "qemu-io reads the committed data in the base" qemu-io "$(qio base.qcow2)" \
    -c "read -P 0xe 0 1024"
is "$("$CALF_IMG" info $S --image-opts "$(qio base.qcow2)" | head -1)" \
   "$(qemu-img info $S --image-opts "$(qio base.qcow2)" | head -1)" \
   "an image opened with its key is named json:{...} as qemu-img names it"
