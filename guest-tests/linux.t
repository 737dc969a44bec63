#!/bin/bash
# The small Linux kernel (guest-tests/linux/kernel.config, built once
# from Debian's linux-source-6.1 and cached) with a busybox initramfs,
# booted directly (ELF vmlinux).  On hardware KVM it must reach the
# marker its /init prints, with the CPU count and memory it was given;
# on the emulating kvm_pvm backend guest userspace cannot run
# (docs/ARCHITECTURE.md), so there it must reach `Run /init as init
# process`, which proves the boot protocol, MP/ACPI tables and devices,
# and the kernel's own log must show the CPUs and memory.
. "$(dirname "$0")/lib.sh"
need_kvm
need_linux
need_initramfs

if [ -e /sys/module/kvm_pvm ]; then
    echo "# backend: kvm_pvm (software): expecting the kernel to reach /init"
    marker="Run /init as init process"
    limit=900
else
    echo "# backend: hardware KVM: expecting the userspace marker"
    marker="calf-linux: userspace up"
    limit=120
fi

# linux NAME CPUS: boots, checks the marker, the CPU count, the memory.
linux() {
    local name=$1 cpus=$2
    boot "$name" --kernel "$LINUX_KERNEL" --initrd "$LINUX_INITRD" --cpus "$cpus" -m 256M \
        --append "$LINUX_APPEND rdinit=/init" --expect "$marker" --timeout $limit \
        --report "$TMP/$name.json"
    echo "# $name: how far it got (last console lines):"
    { tail -4 "$TMP/$name.out"; echo; } | tr -d '\r' | grep -v '^$' | sed 's/^/#   /'
    sed 's/^/#   /' "$TMP/$name.err"
    is "$status" 0 "$cpus vCPU(s): Linux reaches '$marker' (status $status)"
    if [ "$cpus" = 1 ]; then
        ! grep -q "smp: Bringing up secondary CPUs" "$TMP/$name.out" ||
            grep -q "Brought up 1 node, 1 CPU" "$TMP/$name.out"
    else
        grep -q "Brought up 1 node, $cpus CPUs" "$TMP/$name.out"
    fi
    is $? 0 "$cpus vCPU(s): kernel brought up $cpus CPU(s)"
    grep -qE "Memory: [0-9]+K/26[0-9]{4}K available" "$TMP/$name.out"
    is $? 0 "$cpus vCPU(s): kernel sees 256 MiB of RAM"
    if [ ! -e /sys/module/kvm_pvm ]; then
        grep -qE "calf-linux: userspace up, $cpus cpus, 2[0-9]{5} kB" "$TMP/$name.out"
        is $? 0 "$cpus vCPU(s): /init sees $cpus CPU(s) and ~256 MiB"
    fi
}

linux linux1 1
# kvm_pvm emulates each vCPU on a host thread: on a 16-core host 2 vCPUs
# reached /init in 38 s (4 in 53 s, 8 in 60 s, each brought up), on a
# 2-core host they starve each other (RCU stalls after "Brought up 1
# node, 2 CPUs", no /init within minutes).
if [ -e /sys/module/kvm_pvm ] && [ "$(nproc)" -lt 4 ]; then
    skip "kvm_pvm with only $(nproc) host CPUs: minutes; make test-slow runs it, guest-tests/slow/linux-smp.t" \
        "2 vCPUs: reaches '$marker'" "2 vCPUs: brought up 2 CPUs" "2 vCPUs: sees 256 MiB of RAM"
else
    linux linux2 2
fi

done_testing
