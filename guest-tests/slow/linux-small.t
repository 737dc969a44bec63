#!/bin/bash
# The small Linux kernel (guest-tests/linux/kernel.config) with a busybox
# initramfs.  On hardware KVM it must reach the marker its /init prints;
# on the emulating kvm_pvm backend guest userspace cannot run
# (shared/PLATFORM.md), so there it must reach `Run /init as init
# process`, which proves the boot protocol, MP/ACPI tables and devices.
. "$(dirname "$0")/../lib.sh"
need_kvm
KERNEL=$CALF_BUILD/linux/vmlinux
INITRD=$CALF_BUILD/linux/initramfs.cpio
for f in "$KERNEL" "$INITRD"; do
    [ -e "$f" ] || { echo "1..0 # SKIP $f not built (make linux-guest)"; exit 0; }
done

APPEND="console=ttyS0 rdinit=/init panic=-1"
if [ -e /sys/module/kvm_pvm ]; then
    # Keep the kernel off what the kvm_pvm emulator cannot execute:
    # xsave, smap, popcnt, avx*, aes, pclmul, sse4.x, ssse3, fma, movbe,
    # f16c, rdrand; FSGSBASE (its NMI entry uses lsl).  PIT calibration
    # of the TSC fails at emulated speed, so pass the host's TSC rate.
    khz=$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
    APPEND="$APPEND clearcpuid=154,308,151,156,293,304,153,129,147,148,137,140,150,157,158 nofsgsbase tsc_early_khz=$khz"
    echo "# backend: kvm_pvm (software): expecting the kernel to reach /init"
    marker="Run /init as init process"
    limit=600
else
    echo "# backend: hardware KVM: expecting the userspace marker"
    marker="calf-linux: userspace up"
    limit=120
fi

# linux NAME CPUS: boots, checks the marker, the CPU count, the memory.
linux() {
    local name=$1 cpus=$2
    boot "$name" --kernel "$KERNEL" --initrd "$INITRD" --cpus "$cpus" -m 256M \
        --append "$APPEND" --expect "$marker" --timeout $limit --report "$TMP/$name.json"
    echo "# $name: how far it got (last console lines):"
    { tail -4 "$TMP/$name.out"; echo; } | tr -d '\r' | grep -v '^$' | sed 's/^/#   /'
    sed 's/^/#   /' "$TMP/$name.err"
    ok $(( status != 0 )) "$cpus vCPU(s): Linux reaches '$marker' (status $status)"
    if [ "$cpus" = 1 ]; then
        ! grep -q "smp: Bringing up secondary CPUs" "$TMP/$name.out" ||
            grep -q "Brought up 1 node, 1 CPU" "$TMP/$name.out"
    else
        grep -q "Brought up 1 node, $cpus CPUs" "$TMP/$name.out"
    fi
    ok $? "$cpus vCPU(s): kernel brought up $cpus CPU(s)"
    grep -qE "Memory: [0-9]+K/26[0-9]{4}K available" "$TMP/$name.out"
    ok $? "$cpus vCPU(s): kernel sees 256 MiB of RAM"
}

linux linux1 1 ""
# kvm_pvm emulates each vCPU on a host thread: on a 16-core host 2 vCPUs
# reach /init in ~55 s, on a 2-core host they starve each other (RCU
# stalls after "Brought up 1 node, 2 CPUs", no /init within minutes).
if [ -e /sys/module/kvm_pvm ] && [ "$(nproc)" -lt 4 ]; then
    for what in "reaches '$marker'" "brought up 2 CPUs" "sees 256 MiB of RAM"; do
        t_num=$((t_num + 1))
        echo "ok $t_num # SKIP 2 vCPUs: $what (kvm_pvm with only $(nproc) host CPUs starves a 2-vCPU guest)"
    done
else
    linux linux2 2 ""
fi

done_testing
