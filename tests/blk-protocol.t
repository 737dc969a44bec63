#!/bin/bash
# A node as the host file of another (the protocol layer, block/proto.c):
# a qcow2 image stored inside a qcow2 image ("driver=qcow2,file.driver=
# qcow2,file.file.filename=X"), a raw view of an image's bytes ("driver=
# raw,file.driver=qcow2"), a qcow2 image opened through a raw node.  What
# calf-io writes through the nesting qemu-io reads back through the same
# nesting, and the other way round; info, map, check, compare and convert
# through it print what qemu-img prints.  Last, QEMU's quorum node under
# a qcow2 image: writes reach every child, reads take the majority.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 41

# out.qcow2 holds, as its guest data, the bytes of a fresh 8 MiB qcow2
# image: the outer image is 192 KiB and must grow as the inner one does
in_both qemu-img create -f qcow2 in.qcow2 8M
in_both qemu-img convert -f raw -O qcow2 in.qcow2 out.qcow2
N=driver=qcow2,file.driver=qcow2,file.file.filename=out.qcow2
J="json:{'driver': 'qcow2', 'file': {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': 'out.qcow2'}}}"
R=driver=raw,file.driver=qcow2,file.file.filename=out.qcow2

out=$(cd "$CDIR" && "$CALF_IO" --image-opts -c "write -P 0x5a 0 64k" -c "write -P 0xa5 1M 192k" \
      -c "write -P 0x3c 5M 4k" -c "write -z 2M 64k" "$N" 2>&1)
is "$(echo "$out" | filter_io | grep -c '^wrote')" 4 "calf-io writes into a qcow2 stored in a qcow2"
ok "qemu-io reads calf's writes through the same nesting (json:)" \
    qemu-io -c "read -P 0x5a 0 64k" -c "read -P 0xa5 1M 192k" -c "read -P 0x3c 5M 4k" \
    -c "read -P 0 2M 64k" -c "read -P 0 64k 64k" "$(echo "$J" | sed "s|'out|'$CDIR/out|")"
ok "the outer image is consistent (qemu-img check)" qemu-img check "$CDIR/out.qcow2"
ok "the inner image is consistent (qemu-img check through the nesting)" \
    qemu-img check --image-opts "driver=qcow2,file.driver=qcow2,file.file.filename=$CDIR/out.qcow2"
size=$(qemu-img info --output=json "$CDIR/out.qcow2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
ok "the outer image grew with the inner one ($size bytes)" test "${size:-0}" -gt 196608

# From here on the outer image is larger than the inner one will ever
# need (QEMU does not grow it: what its qcow2 writes past the end of a
# node is gone once closed), and both directories hold what the same
# commands wrote.  qemu-io writes, calf-io reads.
in_both rm -f out.qcow2
in_both qemu-img create -f qcow2 out.qcow2 16M
in_both qemu-img convert -n -f raw -O qcow2 in.qcow2 out.qcow2
in_both qemu-io --image-opts -c "write -P 0x5a 0 64k" -c "write -P 0xa5 1M 192k" \
    -c "write -P 0x3c 5M 4k" "$N"
ok "calf-io reads qemu-io's writes through the nesting" \
    "$CALF_IO" --image-opts -c "read -P 0x5a 0 64k" -c "read -P 0xa5 1M 192k" \
    -c "read -P 0x3c 5M 4k" -c "read -P 0 2M 4k" \
    "driver=qcow2,file.driver=qcow2,file.file.filename=$QDIR/out.qcow2"

same_img "info through a json: nesting" info "$J"
same_img "info --image-opts through the nesting" info --image-opts "$N"
same_img "info of raw over a qcow2 node (the inner image's bytes)" info --output=json \
    --image-opts "$R"
same_img "map through the nesting" map --image-opts "$N"
same_img "map --output=json through the nesting" map --output=json --image-opts "$N"
same_img "map of raw over a qcow2 node: the qcow2 node's offsets" map --output=json \
    --image-opts "$R"
same_img "check through the nesting" check --image-opts "$N"
same_img "compare: the nesting against itself as a plain file" compare --image-opts \
    "$N" "driver=qcow2,file.filename=out.qcow2"

# raw over a node: the bytes of the inner image as a plain file
in_both qemu-img convert -O raw out.qcow2 bytes.img
same_img "compare raw over a qcow2 node with the outer image's data" compare \
    --image-opts "$R" "driver=raw,file.filename=bytes.img"
# a qcow2 image read through a raw node over its file
same_io "qcow2 over a raw node over a file" --image-opts \
    -c "read -P 0x5a 0 64k" -c "read -P 0x3c 5M 4k" \
    "driver=qcow2,file.driver=raw,file.file.filename=bytes.img"

cd "$CDIR" || exit 1
convert_like_qemu "convert out of the nesting" qcow2 --image-opts "$N"
"$CALF_IMG" convert -f qcow2 -O qcow2 c.out plain.qcow2
in_both qemu-img create -f qcow2 target-in.qcow2 8M
in_both qemu-img create -f qcow2 target.qcow2 16M
in_both qemu-img convert -n -f raw -O qcow2 target-in.qcow2 target.qcow2
T=driver=qcow2,file.driver=qcow2,file.file.filename=target.qcow2
out=$("$CALF_IMG" convert -n -W -m 4 -f qcow2 plain.qcow2 --target-image-opts "$T" 2>&1)
is "$out" "" "convert -n -W -m 4 into the nesting"
ok "the nested target holds what was converted (qemu-img compare)" \
    qemu-img compare --image-opts "$T" "driver=qcow2,file.filename=plain.qcow2"
ok "the nested target is consistent (qemu-img check through the nesting)" \
    qemu-img check --image-opts "$T"
ok "the outer target is consistent (qemu-img check)" qemu-img check target.qcow2
cd - >/dev/null || exit 1

# three deep: qcow2 in qcow2 in qcow2
in_both qemu-img create -f qcow2 out2.qcow2 32M
in_both qemu-img convert -n -f raw -O qcow2 out.qcow2 out2.qcow2
D=driver=qcow2,file.driver=qcow2,file.file.driver=qcow2,file.file.file.filename=out2.qcow2
same_io "three deep: reads through two nodes" --image-opts \
    -c "read -P 0xa5 1M 192k" -c "write -P 0x11 7M 64k" -c "read -P 0x11 7M 64k" "$D"

# a shrink to a size the node cannot take, then a grow: what was cut off
# reads as zeros, as in a file, though a qcow2 node keeps the bytes of a
# partial cluster past its end (qemu-io reads the node as an image)
qemu-img create -q -f qcow2 "$CDIR/shr.qcow2" 4k
out=$(cd "$CDIR" && "$CALF_IO" --image-opts -c "write -P 0xaa 0 4k" -c "truncate 1000" \
      -c "truncate 8192" -c "read -P 0 1000 7192" -c "read -P 0xaa 0 1000" \
      driver=raw,file.driver=qcow2,file.file.filename=shr.qcow2 2>&1)
is "$(echo "$out" | grep -c '^read')" 2 "raw over a node: shrink to 1000, grow, the cut bytes read 0"
ok "and the node holds zeros there (qemu-io reads it)" \
    qemu-io -c "read -P 0xaa 0 1000" -c "read -P 0 1000 7192" "$CDIR/shr.qcow2"

# a qcow2 node grows ahead of a format allocating at its end, 64 KiB at a
# time, not once per cluster with a sync each time (cache=writeback: only
# flushes sync); closed, the node is as large as the inner image's file
# would be (the same writes into a plain file)
cmds=(); for i in $(seq 0 63); do cmds+=(-c "write -P $((i + 16)) $((i * 65536)) 64k"); done
qemu-img create -q -f qcow2 "$CDIR/gi.qcow2" 8M
cp "$CDIR/gi.qcow2" "$CDIR/gp.qcow2"
qemu-img convert -q -f raw -O qcow2 "$CDIR/gi.qcow2" "$CDIR/go.qcow2"
if command -v strace >/dev/null; then
    # LeakSanitizer cannot run under ptrace (SANITIZE=1): it would fail the run
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
    (cd "$CDIR" && strace -f -e trace=fdatasync -o gp.st "$CALF_IO" -t writeback "${cmds[@]}" \
        gp.qcow2 >/dev/null && strace -f -e trace=fdatasync -o go.st "$CALF_IO" -t writeback \
        --image-opts "${cmds[@]}" driver=qcow2,file.driver=qcow2,file.file.filename=go.qcow2 >/dev/null)
    p=$(grep -c 'fdatasync(' "$CDIR/gp.st") n=$(grep -c 'fdatasync(' "$CDIR/go.st")
    ok "64 clusters at the end of a nested image: $n syncs, $p in a file" test "$n" -le $((2 * p + 2))
else
    skip "strace is not installed"
    (cd "$CDIR" && "$CALF_IO" -t writeback "${cmds[@]}" gp.qcow2 >/dev/null &&
        "$CALF_IO" -t writeback --image-opts "${cmds[@]}" \
        driver=qcow2,file.driver=qcow2,file.file.filename=go.qcow2 >/dev/null)
fi
size=$(qemu-img info --output=json "$CDIR/go.qcow2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
is "$size" "$(( ($(stat -c %s "$CDIR/gp.qcow2") + 511) / 512 * 512 ))" \
    "closed, the node is left the size of the inner image's file"
ok "the 64 clusters read back through the nesting (qemu-io)" qemu-io -c "read -P 16 0 64k" \
    -c "read -P 79 4032k 64k" --image-opts driver=qcow2,file.driver=qcow2,file.file.filename="$CDIR/go.qcow2"

# a nested image another process writes is locked through the nesting:
# commit (which opens its top unlocked, then locks it) is refused as
# qemu-img is, naming the file at the bottom
qemu-img create -q -f qcow2 "$CDIR/li.qcow2" 8M
qemu-img convert -q -f raw -O qcow2 "$CDIR/li.qcow2" "$CDIR/lo.qcow2"
(cd "$CDIR" && sleep 8 | qemu-io lo.qcow2 >/dev/null) &
holder=$!
sleep 1
L=driver=qcow2,file.driver=qcow2,file.file.filename=lo.qcow2
c=$(cd "$CDIR" && "$CALF_IMG" commit --image-opts "$L" 2>&1; echo "rc=$?")
q=$(cd "$CDIR" && qemu-img commit --image-opts "$L" 2>&1; echo "rc=$?")
is "$(echo "$c" | filter_names)" "$q" "commit through a nesting another process writes: refused"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

# errors: what qemu-img says
same_img "a missing file under the nesting" info --image-opts \
    driver=qcow2,file.driver=qcow2,file.file.filename=nonexistent.qcow2
o=driver=raw p=file.
for i in $(seq 1 40); do o=$o,${p}driver=raw p=${p}file.; done
out=$(cd "$CDIR" && "$CALF_IMG" info --image-opts "$o,${p}driver=file,${p}filename=in.qcow2" 2>&1); rc=$?
is "$rc:$(echo "$out" | wc -l):${out##*: }" "1:1:nodes nested more than 32 deep" \
    "hostile nesting, 41 nodes deep: one clear error"
same_io "a format over a node that is not that format" --image-opts -c "read 0 512" \
    driver=qcow2,file.driver=raw,file.file.filename=in.qcow2.nonexistent

# --- a data file that is a node with no file of its own (null-co) ---
in_both qemu-img create -q -f qcow2 -o data_file=nd.data nd.qcow2 64M
ND="json:{'driver':'qcow2','file':{'driver':'file','filename':'nd.qcow2'},"
ND+="'data-file':{'driver':'null-co','size':67108864,'read-zeroes':true}}"
same_io "a qcow2 image whose data-file option is a null-co node: writes vanish" \
    -c "write -P 0x21 768 64k" -c "read -P 0 768 64k" "$ND"
same_img "and its check" check "$ND"
# a json: name stored as the data file's name is a host file's name to QEMU
in_both qemu-img amend -o "data_file=json:{'driver':'null-co',,'size':'67108864'}" nd.qcow2
same_io "a json: data file name in the header names a file" -c "read 0 512" nd.qcow2

# --- quorum: a node of several files ---
in_both qemu-img create -q -f qcow2 qa.qcow2 4M
in_both cp qa.qcow2 qb.qcow2
in_both cp qa.qcow2 qc.qcow2
Q3() { # vote-threshold, read-pattern
    echo "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':$1,$2'children':[{'driver':'file','filename':'qa.qcow2'},{'driver':'file','filename':'qb.qcow2'},{'driver':'file','filename':'qc.qcow2'}]}}"
}
out=$(cd "$CDIR" && "$CALF_IO" -c "write -P 0x61 0 64k" -c "write -P 0x62 1M 4k" "$(Q3 2)" 2>&1)
is "$(echo "$out" | grep -c '^wrote')" 2 "calf-io writes through qcow2 over a quorum of three files"
ok "every child holds the writes (qemu-io reads each file)" bash -c "
    for f in qa qb qc; do qemu-io -c 'read -P 0x61 0 64k' -c 'read -P 0x62 1M 4k' $CDIR/\$f.qcow2 >/dev/null || exit 1
    qemu-img check -q $CDIR/\$f.qcow2 || exit 1; done"
in_both qemu-io -c "write -P 0x61 0 64k" -c "write -P 0x62 1M 4k" "$(Q3 2)"
# the first child disagrees: the majority wins
in_both qemu-io -c "write -P 0x99 0 4k" qa.qcow2
same_io "a quorum read takes what two of three children agree on" \
    -c "read -P 0x61 0 64k" "$(Q3 2)"
# two children disagree with each other and the third: no quorum of 2
in_both qemu-io -c "write -P 0x98 0 4k" qc.qcow2
same_io "no two children agree: the read fails" -c "read -P 0x61 0 4k" "$(Q3 2)"
same_io "read-pattern fifo reads the first child" -c "read -P 0x61 0 4k" \
    "$(Q3 2 "'read-pattern':'fifo',")"
# (the name QEMU makes of a quorum node's options aside, and the host
# allocation, which here differs with the tool that wrote each child)
QI=driver=qcow2,file.driver=quorum,file.vote-threshold=1,file.children.0.driver=file
QI=$QI,file.children.0.filename=qa.qcow2,file.children.1.driver=file,file.children.1.filename=qb.qcow2
is "$(cd "$CDIR" && "$CALF_IMG" info --image-opts "$QI" 2>&1 | grep -v '^image:\|^disk size:')" \
    "$(cd "$QDIR" && qemu-img info --image-opts "$QI" 2>&1 | grep -v '^image:\|^disk size:')" \
    "info through a quorum (--image-opts)"
same_img "a vote-threshold above the children count" info \
    "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':3,'children':[{'driver':'file','filename':'qa.qcow2'}]}}"
