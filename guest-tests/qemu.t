#!/bin/bash
# The very same test guest under qemu-system-x86_64 (-M microvm, PVH entry
# from the ELF note): the peer for side-by-side boot comparisons.
. "$(dirname "$0")/lib.sh"
need_kvm
QEMU=$(command -v qemu-system-x86_64) ||
    skip_all "qemu-system-x86_64 not installed (Debian qemu-system-x86)"

run_qemu() {
    local t0=$(date +%s%N)
    timeout 60 "$QEMU" -enable-kvm -M microvm -m 256 -smp 2 -nodefaults \
        -no-user-config -nographic -no-reboot -serial stdio -monitor none \
        -device isa-debug-exit,iobase=0x501,iosize=2 \
        -kernel "$GUEST_ELF" -initrd "$TMP/initrd" \
        -append "ct.cpus=2 ct.mem=256 ct.initrd=$crc" \
        >"$TMP/qemu.out" 2>"$TMP/qemu.err" </dev/null
    status=$?
    qemu_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "# qemu microvm: status $status after $qemu_ms ms"
}

head -c 4096 /dev/urandom >"$TMP/initrd"
crc=$(crc32_of "$TMP/initrd")
run_qemu
is "$status" 1 "qemu boots the ELF through its PVH note and the guest passes (status $status)"
ok "entered through the PVH entry" has qemu "calf-test: booted via pvh"
[ $status = 1 ] || show qemu

t0=$(date +%s%N)
boot calf --kernel "$GUEST" --cpus 2 --initrd "$TMP/initrd" --append "ct.cpus=2 ct.mem=256 ct.initrd=$crc" --timeout 60
calf_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$status" 1 "calf boots the same guest with the same checks (status $status)"
echo "# side by side: calf $calf_ms ms, qemu -M microvm $qemu_ms ms"

done_testing
