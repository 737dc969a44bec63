/* The monitor's block commands that read or change the drives
 * (query-blockstats, eject, blockdev-change-medium) and the
 * BLOCK_IO_ERROR event: kept apart from vmm/qmp.c, which dispatches to
 * them and sends what they return. */
#ifndef CALF_VMM_QMP_BLOCK_H
#define CALF_VMM_QMP_BLOCK_H

#include <stdbool.h>

#include "vmm/qmp-json.h"
#include "vmm/vm.h"

/* query-blockstats: QEMU 7.2's BlockStats list, one per drive (or, with
 * query_nodes, one per node).  NULL on ENOMEM. */
struct json *qmp_blockstats(struct vm *vm, bool query_nodes);

/* The next BLOCK_IO_ERROR a drive reported, as the event's data (device,
 * node-name, operation, action, nospace, reason); NULL when none waits. */
struct json *qmp_block_io_error_next(struct vm *vm);

#endif
