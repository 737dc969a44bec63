#!/bin/bash
# --cpu hides CPUID features.  kvm_pvm answers most CPUID leaves from the
# host CPU whatever the VMM sets (shared/PLATFORM.md), so there only the
# CX16 hiding calf does for that backend is visible to the guest.
. "$(dirname "$0")/lib.sh"
need_kvm

bit_set() { (( ($1 >> $2) & 1 )); }
cpuid_field() {  # NAME FIELD -> value printed by the guest
    grep -o "$2=0x[0-9a-f]*" "$TMP/$1.out" | head -1 | cut -d= -f2
}

boot hide --kernel "$GUEST" --cpu host,-avx2,-smep --append "ct.cpuid=1" --timeout 60
ok $(( status != 1 )) "--cpu host,-avx2,-smep: guest boots (status $status)"
grep "cpuid 1" "$TMP/hide.out" | sed 's/^/# /'
ebx7=$(cpuid_field hide "7.0: ebx")
ecx1=$(cpuid_field hide "ecx")
if [ -e /sys/module/kvm_pvm ]; then
    echo "# kvm_pvm: leaf 7 comes from the host CPU; checking CX16 only"
    ! bit_set "$ecx1" 13; ok $? "CX16 (leaf 1 ECX bit 13) hidden on kvm_pvm"
else
    ! bit_set "$ebx7" 5 && ! bit_set "$ebx7" 7
    ok $? "guest sees neither AVX2 nor SMEP (leaf 7 EBX $ebx7)"
fi

boot badcpu --kernel "$GUEST" --cpu host,-nosuchfeature --timeout 60
ok $(( status != 2 )) "unknown feature refused with status 2 (got $status)"
has_err badcpu "unknown feature 'nosuchfeature'"; ok $? "and named"

done_testing
