/* Saving a running VM into its qcow2 disks and starting from there
 * (`calf run --savevm NAME`, `--loadvm NAME`; docs/VMSTATE.md). */
#ifndef CALF_VMM_SNAPSHOT_H
#define CALF_VMM_SNAPSHOT_H

#include "vmm/vm.h"

/* The vCPU threads are joined or parked (vm_pause()): saves the
 * whole machine as internal snapshot name of every writable qcow2 disk,
 * the VM state in the first.  Prints what went wrong; 0 or -errno. */
int snapshot_save(struct vm *vm, const char *name);

/* Instead of the boot method, on a machine built with the same options
 * and not yet run: reverts every writable qcow2 disk to snapshot name
 * and puts the VM back as it was saved.  Prints what went wrong (what
 * differs, for another -m, --cpus or device set); 0 or -errno. */
int snapshot_load(struct vm *vm, const char *name);

/* Deletes every snapshot named name on every writable qcow2 disk (the
 * monitor's delvm; none is not an error, as in QEMU).  vCPUs paused
 * (vm_pause()) if a restore mapped guest RAM from the image: -EBUSY
 * otherwise.  0 or -errno. */
int snapshot_delete(struct vm *vm, const char *name);

/* Whether the last snapshot_load() got as far as changing the machine
 * (guest RAM, devices, vCPUs): a failure after that leaves it half
 * restored; one before, as it was. */
bool snapshot_load_changed(void);

/* Every device finishes or holds its work in flight and its threads
 * touch no guest RAM until bus_state_resume() (vCPUs stopped): before
 * a running machine's RAM is replaced (the monitor's loadvm). */
void snapshot_quiesce(struct vm *vm);

/* The last message snapshot_save/load/delete printed ("" if none). */
const char *snapshot_error(void);

#endif
