#!/bin/bash
# Seed corpus for the fuzz harness: small valid images made by qemu-img and
# qemu-io (qcow2 v2 and v3, small and large clusters, refcount widths,
# extended L2, zero clusters, compressed clusters with zlib and zstd,
# internal snapshots, a backing file name, lazy refcounts with the dirty
# bit, the corrupt bit; qcow v1 too).  Small clusters keep the files, and so
# the fuzzer's inputs, small.
#   tests/fuzz/make-corpus.sh DIR
set -e
out=${1:?usage: make-corpus.sh DIR}
if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    echo "make-corpus.sh: qemu-img/qemu-io are not installed; no seed corpus" >&2
    exit 1
fi
mkdir -p "$out"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mk() { # name size opts qemu-io-commands...
    local name=$1 size=$2 opts=$3; shift 3
    qemu-img create -q -f qcow2 -o "$opts" "$T/$name" "$size"
    local args=()
    for c in "$@"; do args+=(-c "$c"); done
    [ ${#args[@]} -eq 0 ] || qemu-io -f qcow2 "${args[@]}" "$T/$name" >/dev/null
    cp "$T/$name" "$out/$name"
}
mk v3-512.qcow2 256k compat=1.1,cluster_size=512 'write -P 0x11 0 3k' 'write -z 8k 1k' 'write -P 0x12 200k 1536'
mk v2-512.qcow2 256k compat=0.10,cluster_size=512 'write -P 0x21 512 2k' 'write -P 0x22 100k 512'
mk v3-1k-rc1.qcow2 512k cluster_size=1k,refcount_bits=1 'write -P 0x31 0 5k' 'discard 1k 1k'
mk v3-2k-rc64.qcow2 512k cluster_size=2k,refcount_bits=64 'write -P 0x41 0 9k'
mk v3-4k-rc8.qcow2 1M cluster_size=4k,refcount_bits=8 'write -P 0x51 4k 12k' 'write -z 64k 8k'
mk v3-empty.qcow2 64k cluster_size=512
mk v3-64k.qcow2 1M cluster_size=64k 'write -P 0x61 0 4k'
mk xl2-16k.qcow2 512k extended_l2=on,cluster_size=16k 'write -P 0x71 0 1k' 'write -z 2k 1k' 'write -P 0x72 32k 512'
mk lazy-512.qcow2 128k lazy_refcounts=on,cluster_size=512 'write -P 0x81 0 2k'
mk zstd-1k.qcow2 128k cluster_size=1k,compression_type=zstd 'write -P 0x91 0 1k'
# compressed clusters
{ for i in $(seq 1 300); do printf 'calf fuzz seed %05d\n' $i; done; } > "$T/text"
head -c 65536 /dev/zero > "$T/raw"; dd if="$T/text" of="$T/raw" conv=notrunc status=none
qemu-img convert -c -f raw -O qcow2 -o cluster_size=4k "$T/raw" "$out/comp-zlib-4k.qcow2"
qemu-img convert -c -f raw -O qcow2 -o cluster_size=2k,compression_type=zstd "$T/raw" "$out/comp-zstd-2k.qcow2"
qemu-img convert -c -f raw -O qcow2 -o cluster_size=16k,extended_l2=on "$T/raw" "$out/comp-xl2-16k.qcow2"
# internal snapshots
mk snap-512.qcow2 64k cluster_size=512 'write -P 0xa1 0 2k'
qemu-img snapshot -c one "$T/snap-512.qcow2"
qemu-io -f qcow2 -c 'write -P 0xa2 512 1k' "$T/snap-512.qcow2" >/dev/null
qemu-img snapshot -c two "$T/snap-512.qcow2"
cp "$T/snap-512.qcow2" "$out/snap-512.qcow2"
# a backing file name (it resolves to nothing, or to the image itself)
qemu-img create -q -f qcow2 -u -o cluster_size=512 -b missing.raw -F raw "$T/bk.qcow2" 64k
qemu-io -f qcow2 -c 'write -P 0xb1 1k 1k' "$T/bk.qcow2" >/dev/null 2>&1 || true
cp "$T/bk.qcow2" "$out/backing-missing.qcow2"
qemu-img create -q -f qcow2 -u -o cluster_size=512 -b img -F qcow2 "$out/backing-self.qcow2" 64k
# the dirty bit set, as after a crash with lazy refcounts
cp "$out/lazy-512.qcow2" "$out/lazy-dirty-512.qcow2"
printf '\001' | dd of="$out/lazy-dirty-512.qcow2" bs=1 seek=79 conv=notrunc status=none
# the corrupt bit
cp "$out/v3-512.qcow2" "$out/corrupt-512.qcow2"
printf '\002' | dd of="$out/corrupt-512.qcow2" bs=1 seek=79 conv=notrunc status=none
# qcow (v1) images, for the qcow driver
qemu-img create -q -f qcow "$T/v1.qcow" 256k
qemu-io -f qcow -c 'write -P 0xc1 0 3k' -c 'write -P 0xc2 100k 512' "$T/v1.qcow" >/dev/null
cp "$T/v1.qcow" "$out/v1.qcow"
# (qemu-img 7.2 exits 1 after writing it, without a message: keep what it wrote)
qemu-img convert -c -f raw -O qcow "$T/raw" "$out/v1-comp.qcow" 2>/dev/null || true
qemu-img create -q -f qcow -u -b missing.raw -F raw "$out/v1-backing.qcow" 64k
# encryption (passphrase "fuzz", as the harness gives it): a legacy AES
# image, and bare LUKS header regions (header and the key material of
# slot 0) cut from qcow2 images, which are too large themselves
S="--object secret,id=s0,data=fuzz"
mk_enc() { # name opts
    local i
    for i in 1 2 3 4 5; do # qemu's PBKDF2 timing sometimes fails here: retry
        qemu-img create -q -f qcow2 $S -o "$2" "$T/$1" 1M 2>/dev/null && return 0
    done
    return 1
}
if mk_enc aes-512.qcow2 encrypt.format=aes,encrypt.key-secret=s0,cluster_size=512; then
    qemu-io $S --image-opts "driver=qcow2,file.filename=$T/aes-512.qcow2,encrypt.key-secret=s0" \
        -c 'write -P 0xd1 0 3k' -c 'write -P 0xd2 100k 700' >/dev/null
    cp "$T/aes-512.qcow2" "$out/aes-512.qcow2"
fi
for c in "aes-128 cbc plain64 sha256" "aes-128 xts plain64 sha1" "aes-256 cbc essiv sha256"; do
    set -- $c
    name=luks-$1-$2-$3.luks
    if mk_enc "$name.qcow2" "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=1,encrypt.cipher-alg=$1,encrypt.cipher-mode=$2,encrypt.ivgen-alg=$3,encrypt.hash-alg=$4,cluster_size=512"; then
        off=$(LC_ALL=C grep -obUaP 'LUKS\xba\xbe' "$T/$name.qcow2" | head -1 | cut -d: -f1)
        keybytes=$(( ${1#aes-} / 8 ))
        [ "$2" = xts ] && keybytes=$((keybytes * 2))
        dd if="$T/$name.qcow2" of="$out/$name" bs=1 skip="$off" count=$((4096 + keybytes * 4000)) status=none
    fi
done
echo "make-corpus.sh: $(ls "$out" | wc -l) seed images in $out"
