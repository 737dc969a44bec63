/* i8042 keyboard controller: enough for a guest to probe it and to pull
 * the reset line (command 0xfe, or output-port bit 0 cleared through
 * command 0xd1), which is how PCs reboot.  No keyboard is attached: the
 * keyboard port only acknowledges what it is sent. */
#include "devices/devices.h"

#include <errno.h>
#include <stdlib.h>

#define I8042_DATA 0x60
#define I8042_CMD  0x64

#define STS_OBF    0x01
#define STS_SYS    0x04
#define STS_UNLOCKED 0x10 /* keyboard not inhibited */
#define STS_CMD    0x08
#define CTR_KBDINT 0x01

#define OUTQ_SIZE 4

struct i8042 {
    struct bus *bus;
    uint8_t ctr;        /* controller configuration byte */
    uint8_t pending;    /* command waiting for its data byte, or 0 */
    uint8_t last_cmd;
    uint8_t outq[OUTQ_SIZE];
    unsigned out_head, out_count;
    int irq_level;
};

static void i8042_update_irq(struct i8042 *k)
{
    int level = k->out_count && (k->ctr & CTR_KBDINT);

    if (level != k->irq_level) {
        k->irq_level = level;
        bus_set_irq(k->bus, 1, level);
    }
}

static void i8042_queue(struct i8042 *k, uint8_t v)
{
    if (k->out_count == OUTQ_SIZE)
        return;
    k->outq[(k->out_head + k->out_count) % OUTQ_SIZE] = v;
    k->out_count++;
}

static uint8_t i8042_read_data(struct i8042 *k)
{
    uint8_t v;

    if (!k->out_count)
        return 0;
    v = k->outq[k->out_head];
    k->out_head = (k->out_head + 1) % OUTQ_SIZE;
    k->out_count--;
    return v;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
    k->last_cmd = cmd;
    switch (cmd) {
    case 0x20: i8042_queue(k, k->ctr); break;      /* read CTR */
    case 0x60: case 0xd1: case 0xd2: case 0xd3: case 0xd4:
        k->pending = cmd;                           /* data byte follows */
        break;
    case 0xa7: k->ctr |= 0x20; break;               /* disable aux */
    case 0xa8: k->ctr &= ~0x20; break;              /* enable aux */
    case 0xa9: i8042_queue(k, 0x00); break;         /* aux test: ok */
    case 0xaa: i8042_queue(k, 0x55); break;         /* self test: ok */
    case 0xab: i8042_queue(k, 0x00); break;         /* kbd test: ok */
    case 0xad: k->ctr |= 0x10; break;               /* disable kbd */
    case 0xae: k->ctr &= ~0x10; break;              /* enable kbd */
    case 0xd0: i8042_queue(k, 0x01); break;         /* read output port */
    case 0xfe:                                      /* pulse reset */
        bus_request_stop(k->bus, BUS_STOP_RESET, 0);
        break;
    default:
        break;
    }
}

static void i8042_write_data(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->pending;

    k->pending = 0;
    switch (cmd) {
    case 0x60: k->ctr = v; break;
    case 0xd1:
        if (!(v & 0x01)) /* output port bit 0 is the CPU reset line */
            bus_request_stop(k->bus, BUS_STOP_RESET, 0);
        break;
    case 0xd2: case 0xd3: i8042_queue(k, v); break; /* echo as input */
    case 0xd4: break; /* no mouse: swallowed */
    default:
        /* To the keyboard: ack everything, answer reset with BAT ok. */
        i8042_queue(k, 0xfa);
        if (v == 0xff)
            i8042_queue(k, 0xaa);
        break;
    }
}

static void i8042_pio(void *opaque, uint16_t port, uint8_t *data,
                      unsigned size, bool is_write)
{
    struct i8042 *k = opaque;

    (void)size;
    if (port == I8042_DATA) {
        if (is_write)
            i8042_write_data(k, data[0]);
        else
            data[0] = i8042_read_data(k);
    } else if (is_write) {
        i8042_command(k, data[0]);
    } else {
        data[0] = STS_SYS | STS_UNLOCKED | (k->out_count ? STS_OBF : 0) |
                  (k->pending ? STS_CMD : 0);
    }
    i8042_update_irq(k);
}

int i8042_create(struct bus *bus)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    int ret;

    if (!k)
        return -ENOMEM;
    k->bus = bus;
    k->ctr = 0x40 | STS_SYS; /* translate, system flag */
    ret = bus_own(bus, k);
    if (ret) {
        free(k);
        return ret;
    }
    ret = bus_register_pio(bus, I8042_DATA, 1, i8042_pio, k);
    return ret ? ret : bus_register_pio(bus, I8042_CMD, 1, i8042_pio, k);
}
