#!/bin/bash
# CPUID topology: with --cpus N every vCPU reports one package of N cores
# (QEMU 7.2's layout of -smp N), its own APIC ID as listed in the MP table
# and MADT (leaves 1, 4, 0xB/0x1F, AMD's 0x80000008 and 0x8000001E; the
# test guest's ct.topo=1 checks them on every CPU), and QEMU's guest sees
# the same.
# --cpu hides CPUID features.  kvm_pvm answers leaf 7 from the host CPU
# and ORs the host's leaf-1 ECX bits into what the VMM sets, whatever it
# sets (docs/ARCHITECTURE.md; QEMU's guest sees the same there), so AVX2
# and SMEP cannot be hidden on that backend.  The hypervisor bit, which
# calf sets, can be hidden on every backend, and so can CX16, which
# calf hides on kvm_pvm.
. "$(dirname "$0")/lib.sh"
need_kvm

# bit VALUE N: bit N (0 or 1) of a hex value the guest printed, or
# "missing" when it printed none (a check of a bit then fails)
bit() { [[ $1 =~ ^0x[0-9a-f]+$ ]] && echo $(( ($1 >> $2) & 1 )) || echo missing; }
cpuid_field() {  # NAME FIELD -> value printed by the guest
    grep -ao "$2=0x[0-9a-f]*" "$TMP/$1.out" | head -1 | cut -d= -f2
}

boot plain --kernel "$GUEST" --append "ct.cpuid=1" --timeout 60
is "$status" 1 "no --cpu: guest boots (status $status)"
grep -a "cpuid 1" "$TMP/plain.out" | sed 's/^/# /'
is "$(bit "$(cpuid_field plain "cpuid 1: ecx")" 31)" 1 "no --cpu: guest sees the hypervisor bit (leaf 1 ECX bit 31)"

boot hide --kernel "$GUEST" --cpu host,-avx2,-smep,-hypervisor --append "ct.cpuid=1" --timeout 60
is "$status" 1 "--cpu host,-avx2,-smep,-hypervisor: guest boots (status $status)"
grep -a "cpuid 1" "$TMP/hide.out" | sed 's/^/# /'
ebx7=$(cpuid_field hide "7.0: ebx")
ecx1=$(cpuid_field hide "cpuid 1: ecx")
is "$(bit "$ecx1" 31)" 0 "guest does not see the hypervisor bit (leaf 1 ECX $ecx1)"
if [ -e /sys/module/kvm_pvm ]; then
    is "$(bit "$ecx1" 13)" 0 "CX16 (leaf 1 ECX bit 13) hidden on kvm_pvm"
    # leaf 7 is the host's there: only that the guest printed it is checked
    ok "guest printed leaf 7 EBX ($ebx7)" [ "$(bit "$ebx7" 0)" != missing ]
    diag "kvm_pvm answers leaf 7 from the host CPU: AVX2 ($(bit "$ebx7" 5)) and SMEP" \
        "($(bit "$ebx7" 7)) cannot be hidden there; not checked"
else
    is "$(bit "$ebx7" 5) $(bit "$ebx7" 7)" "0 0" "guest sees neither AVX2 nor SMEP (leaf 7 EBX $ebx7)"
fi

for n in 1 2 3 4; do
    boot topo$n --kernel "$GUEST" --cpus $n --append "ct.topo=1 ct.cpus=$n" --timeout 60
    is "$status" 1 "--cpus $n: every vCPU's CPUID topology agrees with the count and the tables (status $status)"
    [ $status = 1 ] || show topo$n
    is $(( $(grep -c "^calf-test: cpu [0-9]*: leaf1 count $n" "$TMP/topo$n.out") != n )) 0 "--cpus $n: $n CPUs reported their leaves"
done
grep "^calf-test: cpu " "$TMP/topo3.out" | sed 's/^/# /'

QEMU=$(command -v qemu-system-x86_64)
if [ -n "$QEMU" ]; then
    timeout 60 "$QEMU" -enable-kvm -M microvm -m 256 -smp 3 -nodefaults \
        -no-user-config -nographic -no-reboot -serial stdio -monitor none \
        -device isa-debug-exit,iobase=0x501,iosize=2 -kernel "$GUEST_ELF" \
        -append "ct.topo=1 ct.cpus=3" >"$TMP/qemu.out" 2>"$TMP/qemu.err" </dev/null
    qstatus=$?
    is "$qstatus" 1 "QEMU -smp 3: the same checks pass there (status $qstatus)"
    diff <(grep "^calf-test: cpu " "$TMP/topo3.out" | tr -d '\r') <(grep "^calf-test: cpu " "$TMP/qemu.out" | tr -d '\r') >/dev/null
    is $? 0 "calf --cpus 3 and QEMU -smp 3 report the same topology on every CPU"
else
    skip "qemu-system-x86_64 is not installed"
fi

boot badcpu --kernel "$GUEST" --cpu host,-nosuchfeature --timeout 60
is "$status" 2 "unknown feature refused with status 2 (got $status)"
ok "and named" has_err badcpu "unknown feature 'nosuchfeature'"

done_testing
