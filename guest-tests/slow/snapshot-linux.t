#!/bin/bash
# Save and restore a Linux guest (docs/VMSTATE.md): the small kernel
# (guest-tests/linux/) with a virtio-blk qcow2 disk, which holds the
# state, and virtio-rng, both driven by the kernel when it is saved.
# The run is saved when the kernel frees its init memory (`Freeing
# unused kernel`, just before it starts /init); restored, it goes on to
# `Run /init as init process`.  Then, after a restore, a BREAK on the
# serial line followed by `h` (Ctrl-A b h on the console, piped here
# with CALF_CONSOLE_ESCAPES=1) is the kernel's magic SysRq: it prints
# its SysRq help, which proves interrupts, the UART and the kernel's
# work after a restore with no userspace.  The same `h` without the
# BREAK prints no help.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_linux
need_initramfs
need_cmd qemu-img

if [ -e /sys/module/kvm_pvm ]; then limit=900; else limit=120; fi
qemu-img create -q -f qcow2 "$TMP/d.qcow2" 64M
# lrun NAME INPUT [ARGS...]: the kernel with INPUT on its console
lrun() {
    local name=$1 input=$2 t0 t1
    shift 2
    t0=$(date +%s%N)
    printf "$input" | CALF_CONSOLE_ESCAPES=1 ${BOOT_GUARD:+timeout -s KILL "$BOOT_GUARD"} \
        "$CALF" run --kernel "$LINUX_KERNEL" --initrd "$LINUX_INITRD" -m 256M \
        --append "$LINUX_APPEND rdinit=/init" --disk "$TMP/d.qcow2" \
        --timeout $limit "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    status=$?
    t1=$(date +%s%N)
    echo "# $name: status $status after $(( (t1 - t0) / 1000000 )) ms"
}

lrun save "" --expect "Freeing unused kernel" --savevm booted
is "$status" 0 "saved when the kernel frees its init memory"
[ "$status" = 0 ] || show save
ok "before it ran /init" bash -c "! grep -q 'Run /init' '$TMP/save.out'"
ok "with virtio-blk and virtio-rng set up by the kernel" \
    bash -c "grep -q 'virtio_blk' '$TMP/save.out' || grep -q 'vda' '$TMP/save.out'"

lrun plain "h" --loadvm booted --expect "Run /init as init process"
is "$status" 0 "restored: the kernel goes on to 'Run /init as init process'"
[ "$status" = 0 ] || show plain
ok "without booting again" bash -c "! grep -q 'Linux version' '$TMP/plain.out'"
ok "an 'h' alone is no SysRq" bash -c "! grep -q 'sysrq: HELP' '$TMP/plain.out'"

lrun sysrq '\001bh' --loadvm booted --expect "sysrq: HELP"
is "$status" 0 "restored, a BREAK then 'h' on the serial line: the kernel prints its SysRq help"
[ "$status" = 0 ] || show sysrq
ok "without booting again" bash -c "! grep -q 'Linux version' '$TMP/sysrq.out'"
qemu-img check -q "$TMP/d.qcow2"; is $? 0 "qemu-img check: the image is clean"

done_testing
