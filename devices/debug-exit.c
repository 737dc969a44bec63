/* QEMU's isa-debug-exit: lets a test guest end the VM with its own status.
 * The convention (status = v << 1 | 1) keeps every guest status odd, so it
 * never collides with the VMM's own even statuses. */
#include "devices/devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static void debug_exit_pio(void *opaque, uint16_t port, uint8_t *data,
                           unsigned size, bool is_write)
{
    struct bus *bus = opaque;
    uint32_t v = 0;

    (void)port;
    if (!is_write)
        return;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)data[i] << (8 * i);
    bus_request_stop(bus, BUS_STOP_DEBUG_EXIT, (int)(((v << 1) | 1) & 0xff));
}

int debug_exit_create(struct bus *bus, uint16_t port)
{
    /* QEMU decodes two ports (iosize 2) so a 16-bit write lands too. */
    char name[32];
    int ret;

    snprintf(name, sizeof(name), "debug-exit 0x%x", port);
    ret = bus_register_state(bus, name, &bus_state_none, bus);
    return ret ? ret : bus_register_pio(bus, port, 2, debug_exit_pio, bus);
}
