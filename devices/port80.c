/* Ports every PC guest pokes that need no model: 0x80 is the POST code
 * port Linux uses as an I/O delay, 0xed the alternative delay port. */
#include "devices/devices.h"

static void port80_pio(void *opaque, uint16_t port, uint8_t *data,
                       unsigned size, bool is_write)
{
    (void)opaque;
    (void)port;
    (void)data;
    (void)size;
    (void)is_write;
}

int port80_create(struct bus *bus)
{
    int ret = bus_register_state(bus, "port80", &bus_state_none, NULL);

    if (!ret)
        ret = bus_register_pio(bus, 0x80, 1, port80_pio, NULL);

    return ret ? ret : bus_register_pio(bus, 0xed, 1, port80_pio, NULL);
}
