/* Parts of QEMU's human monitor (HMP) that QMP's human-monitor-command
 * runs (vmm/qmp.c), where they need more than the monitor itself. */
#ifndef CALF_VMM_HMP_H
#define CALF_VMM_HMP_H

#include "vmm/qmp-json.h"
#include "vmm/vm.h"

/* `info registers` of one vCPU, QEMU's x86 layout, lines ending in \n
 * (vmm/hmp-regs.c).  Its thread must be parked (vm_pause()).  0 or -1
 * when KVM would not say. */
int hmp_dump_vcpu(struct vcpu *v, struct qjson_buf *b);

/* savevm [NAME], loadvm NAME, delvm NAME (vmm/hmp-snapshot.c): false
 * when line is none of them; else the monitor's output goes to b. */
bool hmp_snapshot(struct vm *vm, const char *line, struct qjson_buf *b);

#endif
