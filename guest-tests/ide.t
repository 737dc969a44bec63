#!/bin/bash
# IDE end to end: the test guest drives calf's PIIX3 IDE function itself
# (firmware/testguest/ide.c: IDENTIFY, PIO with and without MULTIPLE, CHS,
# bus-master DMA, LBA48 above 128 GiB, flush, resets, interrupts, a
# read-only disk, an ATAPI CD-ROM, a hostile guest); the host then checks
# the images with qemu-img check and the written data with qemu-io.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd qemu-img qemu-io sha256sum perl

passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" && has "$1" "calf-test: ide: ok" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

# A data CD the guest can check block by block: an ISO9660 primary volume
# descriptor at block 16, a terminator at 17, and every 32-bit word of
# block b >= 18 is 0xCD000000 | b.
make_iso() {  # make_iso FILE BLOCKS
    perl -e 'my ($f, $n) = @ARGV; open my $o, ">", $f or die;
        for my $b (0 .. $n - 1) {
            print $o $b == 16 ? "\x01CD001\x01" . "\0" x 33 . sprintf("%-32s", "CALF_IDE_TEST") . "\0" x 1976
                   : $b == 17 ? "\xffCD001\x01" . "\0" x 2041
                   : $b < 18 ? "\0" x 2048 : pack("V", 0xcd000000 | $b) x 512;
        }' "$1" "$2"
}

# The master's sectors the guest reads first (written by the host): 0x11
# at sector 0, 0x22 at LBA 1136 (CHS 1/2/3 with 16 heads, 63 sectors),
# 0x33 at LBA 104 (CHS 1/2/3 with 4 heads, 17 sectors).
seed() {  # seed IMAGE FORMAT
    qemu-io -f "$2" -c 'write -P 0x11 0 512' -c 'write -P 0x22 581632 512' \
        -c 'write -P 0x33 53248 512' "$1" >/dev/null
}

# What the guest wrote (ide.c): 0x5a at [1M, +4K), 0x6b at [1M+4K, +16K),
# 0x7c at [2M, +64K).
guest_data_ok() {  # guest_data_ok IMAGE FORMAT
    qemu-io -f "$2" -c 'read -P 0x5a 1M 4K' -c 'read -P 0x6b 1052672 16K' \
        -c 'read -P 0x7c 2M 64K' -c 'read -P 0x11 0 512' "$1" >"$TMP/io.out" 2>&1 &&
        ! grep -q "Pattern verification failed" "$TMP/io.out"
}

# ---- a qcow2 master, a read-only raw slave, an ATAPI CD ----
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 64M
seed "$TMP/a.qcow2" qcow2
truncate -s 8M "$TMP/ro.raw"
qemu-io -f raw -c 'write -P 0x44 0 512' "$TMP/ro.raw" >/dev/null
sum_ro=$(sha256sum <"$TMP/ro.raw")
make_iso "$TMP/cd.iso" 512
sum_iso=$(sha256sum <"$TMP/cd.iso")
boot all --kernel "$GUEST" --disk "$TMP/a.qcow2,if=ide,serial=calf-ide-0" \
    --disk "$TMP/ro.raw,if=ide,format=raw,readonly" --cdrom "$TMP/cd.iso" \
    --append "ct.ide=1 ct.idesize=131072 ct.idero=1 ct.idecd=512" --timeout 120
passed all; r=$?; is $r 0 "qcow2 master, read-only slave, CD: the guest's IDE checks pass (status $status)"
[ $r = 0 ] || show all
has all "master 'CALF HARDDISK' serial 'calf-ide-0' sectors 131072"
is $? 0 "IDENTIFY DEVICE: model, serial=, and the size in sectors"
ok "the guest reads what the host wrote at sector 0 (CHS 0/0/1)" has all "sector 0 byte 0x11"
ok "IRQ 14 is raised, cleared by a status read and masked by nIEN" has all "interrupts ok"
ok "the read-only slave answers writes with ABRT" has all "read-only slave refused writes"
ok "ATAPI: INQUIRY, READ CAPACITY, READ(10)/(12) PIO and DMA, sense, tray" has all "ATAPI CD-ROM ok"
qemu-img check -q "$TMP/a.qcow2"; is $? 0 "qemu-img check: the master is clean"
guest_data_ok "$TMP/a.qcow2" qcow2; is $? 0 "qemu-io finds the guest's PIO, MULTIPLE and DMA writes"
ok "the read-only image is unchanged" [ "$(sha256sum <"$TMP/ro.raw")" = "$sum_ro" ]
ok "the ISO is unchanged" [ "$(sha256sum <"$TMP/cd.iso")" = "$sum_iso" ]

# ---- a guest reset: the drives come back in their power-on state ----
# The first boot leaves 4 heads and 17 sectors (INITIALIZE DEVICE
# PARAMETERS), MULTIPLE 4 and MWDMA2 set; the second boot's checks assume
# the defaults again.
qemu-img create -q -f qcow2 "$TMP/r.qcow2" 64M
seed "$TMP/r.qcow2" qcow2
boot reset --kernel "$GUEST" --disk "$TMP/r.qcow2,if=ide" --cdrom "$TMP/cd.iso" \
    --append "ct.ide=1 ct.idesize=131072 ct.idecd=512 ct.reset=1" --timeout 120
passed reset && has reset "calf-test: reset: second boot" && ! has reset "check failed"
r=$?; is $r 0 "after a guest reset the IDE drives are in their power-on state (status $status)"
[ $r = 0 ] || show reset

# ---- LBA48: a sparse 200 GiB qcow2 ----
qemu-img create -q -f qcow2 "$TMP/big.qcow2" 200G
seed "$TMP/big.qcow2" qcow2
boot big --kernel "$GUEST" --disk "$TMP/big.qcow2,if=ide" \
    --append "ct.ide=1 ct.idesize=419430400 ct.idebig=1" --timeout 120
passed big; r=$?; is $r 0 "200 GiB disk: checks pass (status $status)"; [ $r = 0 ] || show big
ok "LBA48 PIO, MULTIPLE EXT and DMA EXT above 128 GiB" has big "LBA48 above 128 GiB ok"
ok "IDENTIFY caps the LBA28 size at 0x0FFFFFFF" has big "lba28 268435455"
qemu-io -f qcow2 -c 'read -P 0x8d 137975824384 4K' -c 'read -P 0x9e 137975828480 4K' \
    -c 'read -P 0xaf 137975832576 8K' "$TMP/big.qcow2" >"$TMP/io.out" 2>&1 &&
    ! grep -q "Pattern verification failed" "$TMP/io.out"
is $? 0 "qemu-io finds the guest's data at 128.5 GiB"
qemu-img check -q "$TMP/big.qcow2"; is $? 0 "qemu-img check: the 200 GiB image is clean"
[ "$(stat -c %s "$TMP/big.qcow2")" -lt $((64 << 20)) ]; is $? 0 "and it stayed sparse"

# ---- raw, index=, cache=unsafe ----
truncate -s 64M "$TMP/b.raw"
seed "$TMP/b.raw" raw
boot index --kernel "$GUEST" --disk "$TMP/ro.raw,if=ide,index=1,format=raw,readonly" \
    --disk "$TMP/b.raw,if=ide,format=raw,cache=unsafe" \
    --append "ct.ide=1 ct.idesize=131072 ct.idero=1" --timeout 120
passed index; r=$?; is $r 0 "index=1 takes the slave; the next disk the master (status $status)"; [ $r = 0 ] || show index
guest_data_ok "$TMP/b.raw" raw; is $? 0 "the guest's data is in the raw file"

# ---- a throw-away VM over an IDE disk ----
qemu-img create -q -f qcow2 "$TMP/base.qcow2" 64M
seed "$TMP/base.qcow2" qcow2
sum_base=$(sha256sum <"$TMP/base.qcow2")
export TMPDIR=$TMP/overlays
mkdir -p "$TMPDIR"
boot snap --kernel "$GUEST" --disk "$TMP/base.qcow2,if=ide,snapshot" \
    --append "ct.ide=1 ct.idesize=131072" --timeout 120
passed snap; r=$?; is $r 0 "snapshot: the guest writes through the overlay (status $status)"; [ $r = 0 ] || show snap
ok "the base image is unchanged" [ "$(sha256sum <"$TMP/base.qcow2")" = "$sum_base" ]
ok "no overlay file is left behind" [ -z "$(ls -A "$TMPDIR")" ]
unset TMPDIR

# ---- locking: one writer per image, whatever the bus ----
qemu-img create -q -f qcow2 "$TMP/l.qcow2" 64M
"$CALF" run --kernel "$GUEST" --disk "$TMP/l.qcow2,if=ide" --append "ct.ide=1 ct.hang=1" \
    --timeout 120 >"$TMP/w1.out" 2>"$TMP/w1.err" </dev/null &
p1=$!
for _ in $(seq 600); do grep -q "calf-test: PASS\|calf-test: FAIL" "$TMP/w1.out" && break; sleep 0.1; done
boot w2 --kernel "$GUEST" --disk "$TMP/l.qcow2" --append "ct.virtio=1" --timeout 60
is "$status" 2 "a virtio VM on an image an IDE VM writes is refused (status $status)"
grep -qi "lock" "$TMP/w2.err"; is $? 0 "saying it is locked: $(head -1 "$TMP/w2.err" | cut -c1-120)"
kill -TERM $p1; wait $p1
qemu-img check -q "$TMP/l.qcow2"; is $? 0 "the IDE VM's image is clean after SIGTERM"

# ---- a hostile guest ----
# The CD is 32 MiB here and the disk is opened O_DIRECT: a reset has a
# long DMA transfer to stop, and lands inside one of its 16 MiB requests.
qemu-img create -q -f qcow2 "$TMP/h.qcow2" 64M
seed "$TMP/h.qcow2" qcow2
make_iso "$TMP/cdbig.iso" 16384
boot hostile --kernel "$GUEST" --disk "$TMP/h.qcow2,if=ide,cache=none" --cdrom "$TMP/cdbig.iso" \
    --append "ct.ide=1 ct.idesize=131072 ct.idecd=16384 ct.idehostile=1" --timeout 120
passed hostile; r=$?
is $r 0 "PRD tables outside RAM, short and endless, DMA without bus mastering, commands during DRQ, garbage packets: errors, and the VM completes (status $status)"
[ $r = 0 ] || show hostile
ok "the guest got through every hostile case" has hostile "hostile guest done"
! has hostile "check failed: SRST:"
is $? 0 "SRST during a 32 MiB READ/WRITE DMA EXT: nothing reaches memory or the disk after the reset"
! has hostile "check failed: DEVICE RESET"
is $? 0 "ATAPI DEVICE RESET during a 32 MiB DMA: nothing reaches memory after the reset"
! has hostile "check failed: byte count limit"
is $? 0 "ATAPI byte count limits 0 and 1 abort (no DRQ forever); odd limits give even chunks"
qemu-img check -q "$TMP/h.qcow2"; is $? 0 "the image is clean after the hostile guest"
# A disk and a CD on one channel: a DEVICE RESET of the CD, with its DMA
# or the disk's running and the other's waiting for the engine, must
# leave the disk's alone (each drive has its own reset generation).
boot pair --kernel "$GUEST" --disk "$TMP/h.qcow2,if=ide,cache=none" \
    --disk "$TMP/cdbig.iso,if=ide,index=1,media=cdrom,format=raw" \
    --append "ct.idepair=16384" --timeout 120
passed pair && has pair "pair: DEVICE RESET of the CD left the disk's DMA alone"
r=$?; is $r 0 "DEVICE RESET of a slave CD leaves the master disk's running or waiting DMA alone (status $status)"
[ $r = 0 ] || show pair

# ---- the same guest driver against QEMU's PIIX3 IDE ----
# Shows the guest's checks encode IDE, not calf's own reading of it
# (ct.idepeer=1 skips three points ATA leaves to the device; QEMU refuses
# a read-only IDE disk and has no hostile-guest checks to pass).
if QEMU=$(command -v qemu-system-x86_64); then
    qemu-img create -q -f qcow2 "$TMP/q.qcow2" 200G
    seed "$TMP/q.qcow2" qcow2
    t0=$(date +%s%N)
    timeout 120 "$QEMU" -enable-kvm -M pc -m 256 -nodefaults -no-user-config -nographic \
        -no-reboot -serial stdio -monitor none -device isa-debug-exit,iobase=0x501,iosize=2 \
        -kernel "$GUEST_ELF" -append "ct.ide=1 ct.idesize=419430400 ct.idebig=1 ct.idecd=512 ct.idepeer=1" \
        -drive "file=$TMP/q.qcow2,if=ide,index=0,format=qcow2" \
        -drive "file=$TMP/cd.iso,if=ide,index=2,media=cdrom,format=raw" \
        >"$TMP/qemu.out" 2>"$TMP/qemu.err" </dev/null
    status=$?
    echo "# qemu: status $status after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    passed qemu; r=$?; is $r 0 "QEMU's PIIX3 IDE passes the same guest checks, CD and LBA48 included (status $status)"
    [ $r = 0 ] || show qemu
    guest_data_ok "$TMP/q.qcow2" qcow2; is $? 0 "and leaves the same data in its image"
else
    echo "# qemu-system-x86_64 not installed: no cross-check of the guest driver"
fi

# ---- bad options ----
boot badidx --kernel "$GUEST" --disk "$TMP/a.qcow2,if=ide,index=4" --timeout 60
is "$status" 2 "index=4 is refused (status $status)"
ok "naming the option" has_err badidx "bad option 'index=4'"
boot taken --kernel "$GUEST" --disk "$TMP/a.qcow2,if=ide,index=0" --disk "$TMP/b.raw,if=ide,index=0" --timeout 60
is "$status" 2 "two drives on one IDE index are refused (status $status)"
ok "saying so" has_err taken "IDE index is taken"
for i in 1 2 3 4 5; do truncate -s 1M "$TMP/n$i.raw"; done
boot five --kernel "$GUEST" $(for i in 1 2 3 4 5; do echo --disk "$TMP/n$i.raw,if=ide,format=raw"; done) --timeout 60
is "$status" 2 "a fifth IDE drive is refused (status $status)"
ok "saying so" has_err five "no free IDE slot"
boot cdvirtio --kernel "$GUEST" --disk "$TMP/cd.iso,media=cdrom" --timeout 60
is "$status" 2 "media=cdrom on virtio is refused (status $status)"
boot nocd --kernel "$GUEST" --cdrom "$TMP/missing.iso" --timeout 60
is "$status" 2 "a missing CD image is a setup error (status $status)"
ok "naming the file" has_err nocd "missing.iso"

done_testing
