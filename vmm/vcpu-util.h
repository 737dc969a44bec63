/* Small vCPU helpers shared by the run loop and the emulator quirks. */
#ifndef CALF_VMM_VCPU_UTIL_H
#define CALF_VMM_VCPU_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct vcpu;

/* Copies up to len bytes of guest code at virtual address rip (through
 * the guest's own page tables); returns how many were readable. */
size_t vcpu_read_code(struct vcpu *vcpu, uint64_t rip, uint8_t *buf,
                      size_t len);

#endif
