#!/bin/bash
# Linux with 2 vCPUs (make test-slow): the project's small kernel, and the
# same kernel with the paravirtual guest support every distribution
# kernel has (guest-tests/linux/kvm-guest.config: CONFIG_KVM_GUEST,
# CONFIG_PARAVIRT, PV spinlocks), with no extra kernel parameters.  On the
# kvm_pvm backend the PV kernel used to stop at "x86: Booting SMP
# configuration:", because its PV IPIs (KVM_HC_SEND_IPI) never arrive
# there; calf now hides that one feature on that backend
# (vmm/pvm-quirks.c), so both CPUs come up and the kernel reaches /init
# with every other PV feature on.  On a 2-core host two emulated vCPUs
# share two host CPUs with everything else: this takes minutes.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_linux
need_initramfs

if [ -e /sys/module/kvm_pvm ]; then
    marker="Run /init as init process"; limit=1200
else
    marker="calf-linux: userspace up"; limit=180
fi

log=$TMP/kvm-guest-build.log
"$LINUX_DIR/build-kernel.sh" "$CALF_BUILD/linux-kvmguest" "$LINUX_DIR/kvm-guest.config" 2>"$log"
r=$?; is $r 0 "the KVM_GUEST variant of the kernel builds"
[ $r = 0 ] || tail -20 "$log" | sed 's/^/#   /'

smp() {  # smp NAME KERNEL
    boot "$1" --kernel "$2" --initrd "$LINUX_INITRD" --cpus 2 -m 256M \
        --append "$LINUX_APPEND rdinit=/init" --expect "$marker" --timeout $limit
    is "$status" 0 "$1: 2 vCPUs, Linux reaches '$marker' (status $status)"
    [ $status = 0 ] || { tail -5 "$TMP/$1.out" | tr -d '\r' | sed 's/^/#   /'; }
    ok "$1: the kernel brought up both CPUs" has "$1" "Brought up 1 node, 2 CPUs"
}

smp plain "$LINUX_KERNEL"
smp kvmguest "$CALF_BUILD/linux-kvmguest/vmlinux"
has kvmguest "Booting paravirtualized kernel on KVM"
is $? 0 "kvmguest: the kernel runs paravirtualized (kvmclock, PV spinlocks, ...)"
if [ -e /sys/module/kvm_pvm ]; then
    ! has kvmguest "setup PV IPIs"
    is $? 0 "kvmguest: on kvm_pvm the PV IPI feature is hidden, every other one is not"
    ok "kvmguest: kvmclock is still offered" has kvmguest "kvm-clock: Using msrs"
fi
done_testing
