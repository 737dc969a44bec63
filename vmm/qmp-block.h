/* The monitor's live block operations (vmm/qmp-block.c): the external
 * snapshot of a running disk (blockdev-snapshot-sync), the commit of its
 * overlays back down as a job (block-commit), and QEMU 7.2's job
 * commands and events.  vmm/qmp.c checks the arguments' names and types
 * and hands the command over; everything here runs on the main thread
 * except each job's copy thread. */
#ifndef CALF_VMM_QMP_BLOCK_H
#define CALF_VMM_QMP_BLOCK_H

#include <stddef.h>

#include "vmm/qmp-json.h"
#include "vmm/vm.h"

struct qmp_block;

/* Sends event name with data (consumed, may be NULL) to the clients. */
typedef void (*qmp_block_event_fn)(void *opaque, const char *name,
                                   struct json *data);

struct qmp_block *qmp_block_new(struct vm *vm, qmp_block_event_fn event,
                                void *opaque);
/* Cancels every job (their events go out), waits for their threads. */
void qmp_block_free(struct qmp_block *b);
/* Each main-loop round: moves the jobs on, sends their events. */
void qmp_block_poll(struct qmp_block *b);

/* Runs command name (one of those qmp_block_has() knows) with args (an
 * object whose members vmm/qmp.c checked): its return value, or NULL
 * with *cls and desc set (desc_len bytes). */
struct json *qmp_block_cmd(struct qmp_block *b, const char *name,
                           const struct json *args, const char **cls,
                           char *desc, size_t desc_len);

#endif
