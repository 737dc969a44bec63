/* The monitor's block commands that read or change the drives
 * (query-blockstats, eject, blockdev-change-medium) and the
 * BLOCK_IO_ERROR event: kept apart from vmm/qmp.c, which dispatches to
 * them and sends what they return. */
#ifndef CALF_VMM_QMP_DRIVE_H
#define CALF_VMM_QMP_DRIVE_H

#include <stdbool.h>

#include "vmm/qmp-json.h"
#include "vmm/vm.h"

/* query-blockstats: QEMU 7.2's BlockStats list, one per drive (or, with
 * query_nodes, one per node).  NULL on ENOMEM. */
struct json *qmp_blockstats(struct vm *vm, bool query_nodes);

/* The next event a drive reported: BLOCK_IO_ERROR (device, node-name,
 * operation, action, nospace, reason) or DEVICE_TRAY_MOVED (device,
 * tray-open, id); its data, and *name.  NULL when none waits. */
struct json *qmp_block_event_next(struct vm *vm, const char **name);

/* What a command failed with: a GenericError, or DeviceNotFound. */
struct qmp_block_err {
    bool device_not_found;
    char desc[480];
};

/* eject: QEMU's, for the ATAPI CD (device or id, not both): the tray
 * opens (unless the guest locked it and !force: the guest gets an
 * eject request, and an error) and the medium goes.  0 or -1 (*err). */
int qmp_eject(struct vm *vm, const char *device, const char *id, bool force,
              struct qmp_block_err *err);
/* blockdev-change-medium: opens filename (format: NULL probes), opens
 * the tray as eject does, puts the new medium in, closes the tray. */
int qmp_change_medium(struct vm *vm, const char *device, const char *id,
                      const char *filename, const char *format, bool force,
                      const char *ro_mode, struct qmp_block_err *err);
/* A CD drive's tray and medium now (query-block); -1: not a CD. */
int qmp_cd_state(struct vm *vm, const struct vm_disk *d, bool *tray_open,
                 bool *locked, bool *inserted);

#endif
