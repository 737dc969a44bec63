/* Small vCPU helpers shared by the run loop and the emulator quirks. */
#ifndef CALF_VMM_VCPU_UTIL_H
#define CALF_VMM_VCPU_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vcpu;
struct kvm_msrs;

/* Copies up to len bytes of guest code at virtual address rip (through
 * the guest's own page tables); returns how many were readable. */
size_t vcpu_read_code(struct vcpu *vcpu, uint64_t rip, uint8_t *buf,
                      size_t len);

/* Every MSR KVM lists that the vCPU answers for (all: the TSC too; else
 * what a machine reset puts back); malloc'd, NULL on failure. */
struct kvm_msrs *vcpu_msrs_read(struct vcpu *v, bool all);
/* Writes them back, skipping any the backend refuses. */
void vcpu_msrs_write(struct vcpu *v, const struct kvm_msrs *m);

/* Handles the exit KVM_RUN just returned for (v->run), as the run loop
 * does: port and MMIO I/O reach the devices, a stop is requested where
 * the exit means one. */
void vcpu_handle_exit(struct vcpu *v);

#endif
