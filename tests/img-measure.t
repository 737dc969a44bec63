#!/bin/bash
# calf-img measure against qemu-img measure: the same numbers (human and
# JSON) for --size and for input images (raw, qcow2 with data, zeros and
# holes, qcow2 with a backing file) over cluster sizes, refcount widths,
# extended L2, preallocation, compat and backing files; the same errors.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

qemu-img create -q -f raw r.raw 100M
qemu-io -f raw -c 'write -P 1 3M 5M' -c 'write -P 2 50M 1k' r.raw >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k q4.qcow2 100M
qemu-io -c 'write -P 1 3M 5M' -c 'write -P 2 50M 1k' -c 'write -z 60M 1M' q4.qcow2 >/dev/null
qemu-img create -q -f qcow2 q64.qcow2 1G
qemu-io -c 'write -P 1 0 3M' -c 'write -P 2 333333k 1k' -c 'write -z 600M 10M' q64.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b q4.qcow2 -F qcow2 ov.qcow2
qemu-io -c 'write -P 3 90M 1M' ov.qcow2 >/dev/null
qemu-img convert -O qcow q4.qcow2 v1.qcow

same() { # desc args...
    local desc=$1; shift
    local a b
    a=$("$CALF_IMG" measure "$@" 2>&1; echo "rc=$?")
    b=$(qemu-img measure "$@" 2>&1 | filter_names; echo "rc=${PIPESTATUS[0]}")
    is "$(echo "$a" | filter_names)" "$b" "measure $desc"
}

for src in "--size 1G" "--size 1234567" "--size 0" "--size 3T" r.raw q4.qcow2 q64.qcow2 \
           ov.qcow2 v1.qcow "-f raw q4.qcow2"; do
    for o in "" cluster_size=512 cluster_size=4k cluster_size=2M refcount_bits=1 \
             refcount_bits=64 extended_l2=on extended_l2=on,cluster_size=16k \
             extended_l2=on,cluster_size=2M,refcount_bits=2 preallocation=metadata \
             preallocation=full preallocation=falloc,cluster_size=1M compat=0.10 \
             backing_file=x.qcow2 refcount_bits=8,cluster_size=8k; do
        oo=()
        [ -n "$o" ] && oo=(-o "$o")
        same "$src -O qcow2 $o" $src -O qcow2 "${oo[@]}"
        same "$src -O qcow2 $o json" $src -O qcow2 "${oo[@]}" --output=json
    done
    same "$src -O raw" $src -O raw
    same "$src -O raw json" $src -O raw --output=json
done
same "size option" -O qcow2 -o size=5G --size 5G
for e in "--size 1G -O qcow" "--size 1G -O qcow2 -o foo=bar" "--size 1G -O qcow2 -o preallocation=bad" \
         "--size 1G -O qcow2 -o compat=9" "--size 1G -O qcow2 -o compat=0.10,refcount_bits=8" \
         "--size 1G -O qcow2 -o cluster_size=1000" "--size 1G -O qcow2 -o extended_l2=on,cluster_size=4k" \
         "-O qcow2" "-f raw --size 1G -O qcow2" "--size 1x -O qcow2" "--size 1G r.raw" \
         "--size 1G -O bogus" "nonexist -O qcow2" "--size 100T -O qcow2 -o cluster_size=512"; do
    same "error: $e" $e
done

# qemu-img's argument checks, in its order and words
for e in "r.raw a" "--image-opts" "-f qcow2" "-l snap1" "-o ," "-o a=b," "-l snapshot.foo=bar" \
         "-l snapshot.name=x" "--image-opts --size 1G" "-o , --size 1G r.raw a" \
         "-l snapshot.foo=bar r.raw a" "--size 1G r.raw a"; do
    same "error: $e" $e
done

# -l: the internal snapshot is measured, not the active image
qemu-img create -q -f qcow2 s.qcow2 64M
qemu-io -c 'write -P 1 0 1M' s.qcow2 >/dev/null
qemu-img snapshot -c sn1 s.qcow2
qemu-io -c 'write -P 2 8M 3M' s.qcow2 >/dev/null
for l in sn1 1 snapshot.name=sn1 snapshot.id=1 snapshot.id=1,snapshot.name=sn1 nope \
         snapshot.id=1,snapshot.name=x; do
    same "-l $l -O qcow2" -l "$l" -O qcow2 s.qcow2
    same "-l $l -O qcow2 json" -l "$l" -O qcow2 --output=json s.qcow2
    same "-l $l -O raw" -l "$l" s.qcow2
done
same "-l on raw" -l sn1 -f raw -O qcow2 r.raw

# A raw file calf creates (or grows from empty) has its first block
# written, as QEMU's has, so measure and map see the same data there.
for sz in 1G 1000; do
    "$CALF_IMG" create -q -f raw c.raw $sz
    qemu-img create -q -f raw q.raw $sz
    is "$(qemu-img map --output=json -f raw c.raw)" "$(qemu-img map --output=json -f raw q.raw)" \
       "raw create $sz: first block allocated"
    is "$(qemu-img measure -f raw -O qcow2 c.raw)" "$(qemu-img measure -f raw -O qcow2 q.raw)" \
       "raw create $sz: measured as qemu-img's"
done
"$CALF_IMG" create -q -f raw c.raw 0
"$CALF_IMG" resize -q -f raw c.raw 1M
qemu-img create -q -f raw q.raw 0
qemu-img resize -q -f raw q.raw 1M
is "$(qemu-img map --output=json -f raw c.raw)" "$(qemu-img map --output=json -f raw q.raw)" \
   "raw resize from empty: first block allocated"
done_testing
