#!/bin/bash
# Files that are not bootable kernels are refused with one clear message.
. "$(dirname "$0")/lib.sh"
need_kvm

# refuse NAME MESSAGE ARGS...: status 2 and MESSAGE on stderr
refuse() {
    local name=$1 msg=$2
    shift 2
    boot "$name" "$@" --timeout 30
    is "$status" 2 "$name: refused with status 2 (got $status)"
    ok "$name: says '$msg'" has_err "$name" "$msg"
    [ "$status" = 2 ] && has_err "$name" "$msg" || show "$name"
}

echo "just some text, definitely not a kernel" >"$TMP/text"
refuse text "not a kernel" --kernel "$TMP/text"

: >"$TMP/empty"
refuse empty "not a kernel" --kernel "$TMP/empty"

refuse missing "cannot open kernel" --kernel "$TMP/does-not-exist"

head -c 3000 "$GUEST" >"$TMP/trunc.bz"
refuse truncated-bzimage "truncated bzImage" --kernel "$TMP/trunc.bz"

head -c 560 "$GUEST" >"$TMP/hdr.bz"
refuse truncated-header "truncated bzImage" --kernel "$TMP/hdr.bz"

head -c 2000 "$GUEST_ELF" >"$TMP/trunc.elf"
refuse truncated-elf "truncated ELF" --kernel "$TMP/trunc.elf"

# patch FILE OFFSET HEXBYTES: a copy of the guest with bytes replaced
patch() {
    cp "$GUEST" "$TMP/$1"
    printf "$3" | dd of="$TMP/$1" bs=1 seek=$(($2)) conv=notrunc status=none
}

patch old.bz 0x206 '\x0b\x02'
refuse old-protocol "too old" --kernel "$TMP/old.bz"

patch no64.bz 0x236 '\x00\x00'
refuse no-64bit-entry "no 64-bit entry point" --kernel "$TMP/no64.bz"

patch huge.bz 0x260 '\x00\x00\x00\x10'   # init_size 256 MiB
refuse kernel-too-big "does not fit in guest RAM" --kernel "$TMP/huge.bz" -m 64M

head -c $((9 << 20)) /dev/zero >"$TMP/big-initrd"
refuse initrd-too-big "does not fit in guest RAM" --kernel "$GUEST" --initrd "$TMP/big-initrd" -m 8M

refuse bad-memory "bad --memory" --kernel "$GUEST" -m 1K
refuse bad-cpus "bad --cpus" --kernel "$GUEST" --cpus 0

done_testing
