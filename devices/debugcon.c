/* QEMU's debugcon (port 0x402 on PCs): SeaBIOS writes its debug log there
 * once a read of the port answers 0xe9.  Without a log file the port
 * reads as nothing is there, so the firmware does not spend a VM exit per
 * logged byte. */
#include "devices/devices.h"

#include <errno.h>
#include <stdlib.h>

#define DEBUGCON_READBACK 0xe9

struct debugcon {
    FILE *out;
};

static void debugcon_pio(void *opaque, uint16_t port, uint8_t *data,
                         unsigned size, bool is_write)
{
    struct debugcon *d = opaque;

    (void)port;
    if (!d->out)
        return; /* reads stay all ones */
    if (!is_write) {
        data[0] = DEBUGCON_READBACK;
        return;
    }
    fwrite(data, 1, size, d->out);
}

int debugcon_create(struct bus *bus, uint16_t port, FILE *out)
{
    struct debugcon *d = calloc(1, sizeof(*d));
    int ret;

    if (!d)
        return -ENOMEM;
    d->out = out;
    ret = bus_own(bus, d);
    if (ret) {
        free(d);
        return ret;
    }
    ret = bus_register_state(bus, "debugcon", &bus_state_none, d);
    return ret ? ret : bus_register_pio(bus, port, 1, debugcon_pio, d);
}
