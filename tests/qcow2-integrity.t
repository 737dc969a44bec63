#!/bin/bash
# Integrity cases found in review, each judged against qemu-img/qemu-io:
# - shrinking a version-2 image that has a backing file frees the tail,
#   so growing it again reads what QEMU reads (the backing file or zeros),
#   not the old data;
# - create, resize and open agree on the largest virtual size, as QEMU's
#   do (2 EiB with 2 MiB clusters: open refused sizes create made);
# - extended L2: copy-on-write of a cluster shared with a snapshot copies
#   only the span QEMU copies, so unallocated subclusters outside it keep
#   following the backing file (map identical to qemu-io's result).
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

reads() {  # reads DESC IMAGE PATTERN...: qemu-io finds each pattern
    local desc=$1 img=$2 out; shift 2
    local args=() p
    for p in "$@"; do args+=(-c "read -P $p"); done
    out=$(qemu-io "${args[@]}" "$img" 2>&1)
    if echo "$out" | grep -q "Pattern verification failed\|rror"; then fail "$desc" "$out"
    else pass "$desc"; fi
}

# ---- shrink and grow a v2 overlay, and v3 for comparison ----
qemu-img create -q -f qcow2 -o compat=0.10 "$TMP/base.qcow2" 512K
qemu-io -c 'write -P 0x11 0 512K' "$TMP/base.qcow2" >/dev/null
for compat in 0.10 1.1; do
    for tool in qemu-img "$CALF_IMG"; do
        t=$(basename "$tool")
        img=$TMP/ov-$t-$compat.qcow2
        qemu-img create -q -f qcow2 -o compat=$compat -b "$TMP/base.qcow2" -F qcow2 "$img" 4M
        qemu-io -c 'write -P 0x22 2M 2M' -c 'write -P 0x23 256K 64K' "$img" >/dev/null
        ok "compat=$compat: $t shrinks to 1M and grows to 4M" \
            sh -c '"$1" resize -q --shrink "$2" 1M && "$1" resize -q "$2" 4M' - "$tool" "$img"
    done
    reads "compat=$compat: calf's grown overlay reads zeros past the backing file, the backing file below" \
        "$TMP/ov-calf-img-$compat.qcow2" "0 2M 2M" "0 1M 1M" "0x11 0 256K" "0x23 256K 64K" "0x11 320K 192K"
    is "$(qemu-img map --output=json "$TMP/ov-calf-img-$compat.qcow2")" \
       "$(qemu-img map --output=json "$TMP/ov-qemu-img-$compat.qcow2")" \
       "compat=$compat: the map after shrink and grow is qemu-img's"
    ok "compat=$compat: qemu-img check is clean" qemu-img check "$TMP/ov-calf-img-$compat.qcow2"
done

# ---- the largest sizes ----
for sz in 128P 2E; do
    "$CALF_IMG" create -q -f qcow2 -o cluster_size=2M "$TMP/big.qcow2" $sz
    out=$("$CALF_IO" -c 'write -P 0x77 100P 4k' "$TMP/big.qcow2" 2>&1)
    is "$(echo "$out" | head -1)" "wrote 4096/4096 bytes at offset 112589990684262400" \
        "$sz, 2 MiB clusters: calf-img creates it and calf-io opens and writes it"
    reads "$sz: qemu-io reads calf's write" "$TMP/big.qcow2" "0x77 100P 4k" "0 0 4k"
    qemu-img create -q -f qcow2 -o cluster_size=2M "$TMP/qbig.qcow2" $sz
    qemu-io -c 'write -P 0x66 100P 4k' "$TMP/qbig.qcow2" >/dev/null
    out=$("$CALF_IO" -c 'read -P 0x66 100P 4k' "$TMP/qbig.qcow2" 2>&1)
    is "$(echo "$out" | head -1)" "read 4096/4096 bytes at offset 112589990684262400" \
        "$sz: calf-io opens qemu-img's image and reads qemu-io's write"
done
"$CALF_IMG" create -q -f qcow2 -o cluster_size=2M "$TMP/snap.qcow2" 128P
ok "128P: calf-img takes an internal snapshot" "$CALF_IMG" snapshot -c s1 "$TMP/snap.qcow2"
ok "128P: calf-img applies it" "$CALF_IMG" snapshot -a s1 "$TMP/snap.qcow2"
is "$(qemu-img info --output=json "$TMP/snap.qcow2" | grep -o '"corrupt": [a-z]*')" '"corrupt": false' \
   "128P: applying the snapshot leaves the image not corrupt"
qemu-img create -q -f qcow2 -o cluster_size=2M "$TMP/r.qcow2" 1G
ok "resize to 2E with 2 MiB clusters" "$CALF_IMG" resize -q "$TMP/r.qcow2" 2E
last=$(( (1 << 61) - 4096 ))
reads "qemu-io opens the resized image" "$TMP/r.qcow2" "0 $last 4k"
ok "calf-io opens it and writes its last 4K" "$CALF_IO" -c "write -P 0x55 $last 4k" "$TMP/r.qcow2"
reads "qemu-io reads that write back" "$TMP/r.qcow2" "0x55 $last 4k"
is "$("$CALF_IMG" create -f qcow2 -o cluster_size=2M "$TMP/x.qcow2" 4E 2>&1 | tail -1 | filter_names)" \
   "$(qemu-img create -f qcow2 -o cluster_size=2M "$TMP/y.qcow2" 4E 2>&1 | tail -1 | sed 's/y\.qcow2/x.qcow2/g')" \
   "4E with 2 MiB clusters: refused as qemu-img refuses it"

# ---- extended L2: copy-on-write of a snapshot-shared cluster ----
qemu-img create -q -f qcow2 "$TMP/b1.qcow2" 1M
qemu-io -c 'write -P 0x11 0 1M' "$TMP/b1.qcow2" >/dev/null
for tool in qemu-io "$CALF_IO"; do
    t=$(basename "$tool")
    img=$TMP/x-$t.qcow2
    qemu-img create -q -f qcow2 -o extended_l2=on -b "$TMP/b1.qcow2" -F qcow2 "$img" 1M
    qemu-io -c 'write -P 0x22 8k 2k' -c 'write -P 0x23 20k 2k' -c 'write -P 0x24 128k 2k' \
        -c 'write -P 0x25 140k 2k' "$img" >/dev/null
    qemu-img snapshot -c s1 "$img"
    "$tool" -c 'write -P 0x33 40k 2k' -c 'write -P 0x34 132k 2k' "$img" >/dev/null
done
is "$(qemu-img map --output=json "$TMP/x-calf-io.qcow2")" "$(qemu-img map --output=json "$TMP/x-qemu-io.qcow2")" \
   "extended L2: after copy-on-write of snapshot-shared clusters the map is QEMU's"
reads "extended L2: the copied and the backing data read back" "$TMP/x-calf-io.qcow2" \
    "0x11 0 8k" "0x22 8k 2k" "0x23 20k 2k" "0x33 40k 2k" "0x11 42k 86k" "0x24 128k 2k" "0x34 132k 2k" "0x25 140k 2k"
# the subclusters outside the copied span still follow the backing file
qemu-io -c 'write -P 0x99 0 1M' "$TMP/b1.qcow2" >/dev/null
reads "extended L2: subclusters outside the copied span follow a changed backing file" \
    "$TMP/x-calf-io.qcow2" "0x99 0 8k" "0x99 44k 20k"
ok "extended L2: qemu-img check is clean" qemu-img check "$TMP/x-calf-io.qcow2"
done_testing
