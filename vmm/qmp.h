/* The QMP monitor of `calf run --qmp`: listening sockets (unix, loopback
 * tcp), one client at a time per socket, QEMU 7.2's protocol (greeting,
 * capabilities negotiation, commands, errors, events).  It runs in the
 * main loop (vmm/main.c), on the main thread: a command that stops or
 * resets the machine does it there, as the main loop would. */
#ifndef CALF_VMM_QMP_H
#define CALF_VMM_QMP_H

#include <poll.h>
#include <stdbool.h>

#include "vmm/vm.h"

#define QMP_MAX_SOCKETS 8

struct qmp;

/* What the main loop lends the monitor. */
struct qmp_host {
    /* A machine reset now, as a guest reset would (no_reboot: the run
     * ends instead); the vCPUs stay paused if they were. */
    void (*reset)(struct vm *vm);
};

/* Checks a --qmp spec: unix:PATH[,server=on][,wait=off] or
 * tcp:HOST:PORT[,...] (HOST a loopback address).  Prints why not. */
int qmp_check_spec(const char *spec);
/* Opens every listener; NULL with a message when one cannot be. */
struct qmp *qmp_open(struct vm *vm, const struct qmp_host *host,
                     const char *const *specs, int nspecs, const char *name);
/* The run ended (vCPUs stopped): block jobs are cancelled (their
 * events queued), so that nothing but the caller touches the disks
 * from here on (--savevm); qmp_close() does it too. */
void qmp_end_jobs(struct qmp *q);
/* Flushes what clients still have to read (at most a second), closes
 * everything, removes the unix sockets it made. */
void qmp_close(struct qmp *q);

/* The main loop's poll: up to 2 * QMP_MAX_SOCKETS entries. */
int qmp_pollfds(struct qmp *q, struct pollfd *pfd);
/* After poll(): accepts, reads and answers (bounded work per call). */
void qmp_dispatch(struct qmp *q, const struct pollfd *pfd, int n);

/* Events from the main loop.  guest: caused by the guest. */
void qmp_event_reset(struct qmp *q, bool guest);
/* The run ends for reason (vm->stop_reason): SHUTDOWN where QEMU sends
 * one (once). */
void qmp_event_shutdown(struct qmp *q, enum bus_stop_reason reason);

#endif
