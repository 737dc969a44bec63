/* The PC that `calf run` builds (vmm/machine.c): every device, where it
 * sits, and how it is wired. */
#ifndef CALF_VMM_MACHINE_H
#define CALF_VMM_MACHINE_H

#include <stdbool.h>
#include <stdio.h>

#include "vmm/vm.h"

#define MACHINE_MAX_DISKS VM_MAX_DISKS
#define MACHINE_MAX_NETS 4

struct machine_config {
    const char *const *disks; /* --disk specs, in command-line order */
    int ndisks;
    bool firmware;            /* booted by firmware (SeaBIOS), not --kernel */
    FILE *bios_log;           /* the firmware's debug port output, or NULL */
    bool vga;                 /* a VGA function (std) */
    const char *rng;          /* --rng; NULL: on without firmware */
    const char *const *nets;  /* --net specs, in command-line order */
    int nnets;
};

/* Creates every device of the machine on vm->bus and fills the struct
 * vm's device pointers; disks are recorded as firmware boot devices as
 * they are made.  Prints what went wrong. */
int machine_create(struct vm *vm, const struct machine_config *mc);
/* Once the vCPUs are stopped and bus_shutdown() ran, before guest RAM
 * goes: stops the devices' I/O threads, then frees the PCI functions and
 * fw_cfg (the rest belongs to the bus: bus_destroy()). */
void machine_destroy(struct vm *vm);

#endif
