#!/bin/bash
# Races in the block layer made to happen every time (tests/unit/blk-race.c
# holds one thread's libc call while another runs): a zero tail extended
# past another thread's new clusters, cache=none read-modify-writes of a
# shared 4 KiB block (two sectors; data beside an L2 table and refcounts),
# a write and a read stalled while their cluster is discarded, freed and
# reused, two sub-sector writes to one encrypted sector (qcow2, luks), and
# a two-cluster write whose second cluster another thread allocates while
# the first one's copy-on-write is held, a preallocation=full resize
# while another thread's new clusters wait for their data, and a block
# status asked while another thread is held making the once-per-open
# preallocation guess.
# Each scenario checks what reads back; qemu-img check judges the images
# and qemu-io reads the data back another way.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
RACE=$CALF_BUILD/tests/blk-race
[ -x "$RACE" ] || skip_all "blk-race is not built"

scenario() {  # scenario NAME IMAGE [QEMU-IO READS...]
    local name=$1 img=$2; shift 2
    local out st
    out=$("$RACE" "$name" "$TMP" 2>&1); st=$?
    if [ $st = 77 ]; then
        skip "$(echo "$out" | tail -1)" "$name"
        return
    fi
    if [ $st = 0 ]; then pass "$name: every write stays, no read sees another cluster's data"
    else fail "$name: the race lost or mixed data" "$out"; fi
    case $img in
    *.qcow2)
        local obj=()
        [ "$name" = crypt-sector ] && obj=(--object secret,id=s0,data=calf --image-opts)
        local spec=$TMP/$img
        [ ${#obj[@]} -gt 0 ] && spec="driver=qcow2,file.filename=$TMP/$img,encrypt.key-secret=s0"
        ok "$name: qemu-img check is clean" qemu-img check "${obj[@]}" "$spec"
        if [ $# -gt 0 ]; then
            local args=() r
            for r in "$@"; do args+=(-c "read -P $r"); done
            out=$(qemu-io "${obj[@]}" "${args[@]}" "$spec" 2>&1)
            if echo "$out" | grep -q "Pattern verification failed\|error\|Error\|Could not"; then
                fail "$name: qemu-io reads the data back" "$out"
            else pass "$name: qemu-io reads the data back"; fi
        fi ;;
    *.luks)
        local args=() r
        for r in "$@"; do args+=(-c "read -P $r"); done
        out=$(qemu-io --object secret,id=s0,data=calf --image-opts "${args[@]}" \
              "driver=luks,file.filename=$TMP/$img,key-secret=s0" 2>&1)
        if echo "$out" | grep -q "Pattern verification failed\|error\|can't"; then
            fail "$name: qemu-io reads the data back" "$out"
        else pass "$name: qemu-io reads the data back"; fi ;;
    *.raw)
        out=$(qemu-io -f raw -c "read -P 0xaa 0 512" -c "read -P 0xbb 512 512" "$TMP/$img" 2>&1)
        if echo "$out" | grep -q "Pattern verification failed"; then
            fail "$name: qemu-io reads both sectors back" "$out"
        else pass "$name: qemu-io reads both sectors back"; fi ;;
    esac
}

scenario ztail ztail.qcow2 "0xbb 256k 256k" "0x5b 64k 4k" "0 68k 4k" "0xaa 72k 4k" "0 76k 52k"
scenario dio-sector dio-sector.raw
scenario dio-meta dio-meta.qcow2 "0xaa 0 512" "0xbb 512 512"
scenario discard-write discard-write.qcow2 "0xb5 320k 64k" "0 0 64k"
scenario discard-read discard-read.qcow2 "0xb5 320k 64k"
scenario discard-read2 discard-read2.qcow2 "0xb5 320k 64k"
scenario crypt-sector crypt-sector.qcow2 "0xaa 0 100" "0x11 100 100" "0xbb 200 100" "0x11 300 65236"
scenario luks-sector luks-sector.luks "0xaa 0 100" "0x11 100 100" "0xbb 200 100" "0x11 300 65236"
scenario alloc-handoff alloc-handoff.qcow2 "0x5b 0 8k" "0xaa 8k 64k" "0x5b 72k 24k" "0xbb 96k 32k" \
    "0x5b 128k 128k"
scenario prealloc-full prealloc-full.qcow2 "0xaa 0 128k" "0 128k 1920k"
scenario prealloc-status prealloc-status.qcow2 "0 0 512k"
done_testing
