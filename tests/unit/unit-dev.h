/* Shared by the C unit tests that drive devices on the real bus without
 * a VM (dev-hostile.c, pci-teardown.c; the virtio ones through
 * unit-virtio.h): TAP output and the host callbacks such a test has no
 * use for. */
#ifndef CALF_TESTS_UNIT_DEV_H
#define CALF_TESTS_UNIT_DEV_H

#include <stdint.h>
#include <stdio.h>

#include "devices/bus.h"

static int t_num, t_fail;

static inline void ok(int cond, const char *what)
{
    t_num++;
    if (!cond)
        t_fail++;
    printf("%sok %d - %s\n", cond ? "" : "not ", t_num, what);
    fflush(stdout);
}

static inline int fake_set_irq(void *host, unsigned irq, int level)
{
    (void)host, (void)irq, (void)level;
    return 0;
}

static inline void fake_console(void *host, const uint8_t *buf, size_t len)
{
    (void)host, (void)buf, (void)len;
}

static inline void fake_stop(void *host, enum bus_stop_reason reason, int status)
{
    (void)host, (void)reason, (void)status;
}

#endif
