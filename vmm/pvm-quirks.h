/* Workarounds for the instruction emulator of the kvm_pvm software KVM
 * backend (docs/ARCHITECTURE.md section 8).  Each is keyed on that
 * backend being present, so on hardware KVM none of them does anything. */
#ifndef CALF_VMM_PVM_QUIRKS_H
#define CALF_VMM_PVM_QUIRKS_H

#include <stdbool.h>
#include <linux/kvm.h>

struct vcpu;

bool pvm_quirks_detect(void);

/* Hides CPU features whose instructions the emulator cannot run. */
void pvm_quirks_filter_cpuid(struct kvm_cpuid_entry2 *e);

/* Given an emulation failure, completes the instruction the emulator
 * could not (int3, fwait).  Returns 0 when it did and the vCPU can go on,
 * -ENOTSUP when the failure is not one of the known gaps. */
int pvm_quirks_emulation_failure(struct vcpu *vcpu);

#endif
