#!/bin/sh
# Prints the kernel parameters a Linux guest needs on this host's KVM,
# after the ones given as arguments.  On the emulating kvm_pvm backend
# (docs/ARCHITECTURE.md) that keeps the kernel off the instructions its
# emulator cannot execute (xsave, smap, popcnt, avx*, aes, pclmul,
# sse4.x, ssse3, fma, movbe, f16c, rdrand; FSGSBASE: the NMI entry uses
# lsl) and passes the host's TSC rate, because PIT calibration fails at
# emulated speed.  On hardware KVM it adds nothing.
#   cmdline.sh [PARAM...]
extra=""
if [ -e /sys/module/kvm_pvm ]; then
    khz=$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
    extra="clearcpuid=154,308,151,156,293,304,153,129,147,148,137,140,150,157,158 nofsgsbase tsc_early_khz=$khz"
fi
echo "$*${extra:+ $extra}"
