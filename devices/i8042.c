/* i8042 keyboard controller with a PS/2 keyboard behind it: the output
 * buffer, status register and command byte of the controller; the
 * keyboard's own commands (reset, identify, LEDs, scan code set,
 * typematic, enable/disable, echo, resend); key events from the host
 * display in scan code set 2, translated to set 1 when the command byte
 * asks for it (as every PC BIOS leaves it).  The reset line (command 0xfe,
 * or output-port bit 0 cleared) stops the machine.  There is no mouse:
 * the aux port takes commands and never answers, which guests read as
 * "no mouse". */
#include "devices/devices.h"
#include "devices/vmstate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define I8042_DATA 0x60
#define I8042_CMD  0x64

#define STS_OBF      0x01
#define STS_SYS      0x04
#define STS_CMD      0x08 /* last write went to the command port */
#define STS_UNLOCKED 0x10 /* keyboard not inhibited */

#define CTR_KBDINT   0x01
#define CTR_SYS      0x04
#define CTR_KBDOFF   0x10
#define CTR_AUXOFF   0x20
#define CTR_XLATE    0x40

#define KBD_ACK      0xfa
#define KBD_BAT_OK   0xaa
#define KBD_RESEND   0xfe
#define KBD_ECHO     0xee

#define OUTQ_SIZE 64
/* Key bytes wait here while nobody reads them, up to what a keyboard's
 * buffer and the controller's output register hold; then keys are
 * dropped.  Drivers flush a bounded number of bytes and give up on a
 * controller that keeps more: SeaBIOS reads 16 and needs the buffer
 * empty by then (keys typed during POST cost the keyboard otherwise). */
#define KBD_BUFFER 15

struct i8042 {
    struct bus *bus;
    uint8_t ctr;          /* controller command byte */
    uint8_t pending;      /* controller command waiting for data, or 0 */
    bool cmd_last;        /* status bit 3 */
    uint8_t outq[OUTQ_SIZE];
    unsigned out_head, out_count;
    int irq_level;
    bool xlate_break;     /* translation saw F0: the next byte breaks */
    /* the keyboard */
    uint8_t kbd_pending;  /* keyboard command waiting for its argument */
    uint8_t kbd_set;      /* scan code set 1, 2 or 3 */
    uint8_t kbd_last;     /* for resend */
    uint8_t leds;
    bool scanning;
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

/* A byte from set 2 to set 1: *brk carries a pending F0 (break) prefix.
 * Returns false when the byte produced nothing (it was the prefix). */
static bool xlate_byte(bool *brk, uint8_t b, uint8_t *out)
{
    if (b == 0xf0) {
        *brk = true;
        return false;
    }
    *out = (uint8_t)(i8042_set2_to_set1(b) | (*brk ? 0x80 : 0));
    *brk = false;
    return true;
}

/* A byte the keyboard sends: through the controller's translation. */
static void kbd_send(struct i8042 *k, uint8_t v)
{
    uint8_t t;

    k->kbd_last = v;
    if (!(k->ctr & CTR_XLATE))
        i8042_queue(k, v);
    else if (xlate_byte(&k->xlate_break, v, &t))
        i8042_queue(k, t);
}

static uint8_t i8042_read_data(struct i8042 *k)
{
    uint8_t v;

    if (!k->out_count)
        return k->outq[(k->out_head + OUTQ_SIZE - 1) % OUTQ_SIZE];
    v = k->outq[k->out_head];
    k->out_head = (k->out_head + 1) % OUTQ_SIZE;
    k->out_count--;
    return v;
}

static void kbd_defaults(struct i8042 *k)
{
    k->kbd_set = 2;
    k->leds = 0;
}

/* The argument byte of ED (LEDs), F0 (scan code set), F3 (typematic). */
static void kbd_argument(struct i8042 *k, uint8_t cmd, uint8_t v)
{
    if (cmd == 0xed) {
        k->leds = v & 7;
    } else if (cmd == 0xf0 && v == 0) {
        kbd_send(k, KBD_ACK);
        kbd_send(k, k->kbd_set);
        return;
    } else if (cmd == 0xf0) {
        if (v > 3) {
            kbd_send(k, KBD_RESEND);
            return;
        }
        k->kbd_set = v;
    }
    kbd_send(k, KBD_ACK);
}

static void kbd_command(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->kbd_pending;

    k->kbd_pending = 0;
    if (cmd && v < 0xed) { /* an argument, not a new command */
        kbd_argument(k, cmd, v);
        return;
    }
    switch (v) {
    case 0xed: case 0xf0: case 0xf3:
        k->kbd_pending = v;
        kbd_send(k, KBD_ACK);
        break;
    case 0xee: kbd_send(k, KBD_ECHO); break;
    case 0xf2:                    /* identify: an MF2 keyboard */
        kbd_send(k, KBD_ACK);
        kbd_send(k, 0xab);
        kbd_send(k, 0x83);
        break;
    case 0xf4: k->scanning = true; kbd_send(k, KBD_ACK); break;
    case 0xf5:
        kbd_defaults(k);
        k->scanning = false;
        kbd_send(k, KBD_ACK);
        break;
    case 0xf6: kbd_defaults(k); kbd_send(k, KBD_ACK); break;
    case 0xfe: i8042_queue(k, k->kbd_last); break;
    case 0xff:
        kbd_defaults(k);
        k->scanning = true;
        kbd_send(k, KBD_ACK);
        kbd_send(k, KBD_BAT_OK);
        break;
    default:
        /* F7-FD are set-3 key attributes: accepted and ignored. */
        kbd_send(k, v >= 0xf7 ? KBD_ACK : KBD_RESEND);
        break;
    }
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
    switch (cmd) {
    case 0x20: i8042_queue(k, k->ctr); break;      /* read command byte */
    case 0x60: case 0xd1: case 0xd2: case 0xd3: case 0xd4:
        k->pending = cmd;                           /* data byte follows */
        break;
    case 0xa7: k->ctr |= CTR_AUXOFF; break;
    case 0xa8: k->ctr &= (uint8_t)~CTR_AUXOFF; break;
    case 0xa9: i8042_queue(k, 0x00); break;         /* aux lines ok */
    case 0xaa: i8042_queue(k, 0x55); break;         /* self test passed */
    case 0xab: i8042_queue(k, 0x00); break;         /* kbd lines ok */
    case 0xad: k->ctr |= CTR_KBDOFF; break;
    case 0xae: k->ctr &= (uint8_t)~CTR_KBDOFF; break;
    case 0xc0: i8042_queue(k, 0x80); break;         /* input port */
    case 0xd0:                                      /* output port */
        i8042_queue(k, (uint8_t)(0x03 | (k->out_count ? 0x10 : 0)));
        break;
    case 0xe0: i8042_queue(k, 0x00); break;         /* test inputs */
    default:
        /* F0-FF pulse output-port lines low for their clear bits: bit 0
         * is the CPU reset line. */
        if ((cmd & 0xf0) == 0xf0 && !(cmd & 1))
            bus_request_stop(k->bus, BUS_STOP_RESET, 0);
        if (cmd >= 0x21 && cmd < 0x40)
            i8042_queue(k, 0x00);                   /* other RAM bytes */
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
    case 0xd2: i8042_queue(k, v); break; /* as if the keyboard sent it */
    case 0xd3: case 0xd4: break;         /* no mouse: nobody answers */
    default: kbd_command(k, v); break;
    }
}

static void i8042_pio(void *opaque, uint16_t port, uint8_t *data,
                      unsigned size, bool is_write)
{
    struct i8042 *k = opaque;

    (void)size;
    if (port == I8042_DATA && is_write) {
        k->cmd_last = false;
        i8042_write_data(k, data[0]);
    } else if (port == I8042_DATA) {
        data[0] = i8042_read_data(k);
        /* An edge for the next byte: the PIC latches IRQ 1 on edges. */
        if (k->irq_level) {
            k->irq_level = 0;
            bus_set_irq(k->bus, 1, 0);
        }
    } else if (is_write) {
        k->cmd_last = true;
        i8042_command(k, data[0]);
    } else {
        data[0] = (uint8_t)((k->ctr & CTR_SYS) | STS_UNLOCKED |
                            (k->out_count ? STS_OBF : 0) |
                            (k->cmd_last ? STS_CMD : 0));
    }
    i8042_update_irq(k);
}

int i8042_key_event(struct i8042 *k, const uint8_t *set2, size_t n)
{
    bool brk = false;
    int ret = 0;
    uint8_t b;

    bus_lock(k->bus);
    /* A key press takes room for the whole sequence or nothing. */
    if (k->scanning && !(k->ctr & CTR_KBDOFF) &&
        k->out_count + n > KBD_BUFFER) {
        ret = -EAGAIN;
    } else if (k->scanning && !(k->ctr & CTR_KBDOFF)) {
        for (size_t i = 0; i < n; i++) {
            if (k->kbd_set != 1)
                kbd_send(k, set2[i]);
            else if (xlate_byte(&brk, set2[i], &b))
                kbd_send(k, b);
        }
        i8042_update_irq(k);
    }
    bus_unlock(k->bus);
    return ret;
}

/* Power-on state, also on a machine reset (bus lock held). */
static void i8042_reset(void *opaque)
{
    struct i8042 *k = opaque;
    struct bus *bus = k->bus;

    if (k->irq_level)
        bus_set_irq(bus, 1, 0);
    memset(k, 0, sizeof(*k));
    k->bus = bus;
    k->ctr = CTR_XLATE | CTR_SYS;
    k->scanning = true;
    kbd_defaults(k);
}

/* Saved state (devices/vmstate.h): controller, output queue, keyboard. */
static int i8042_save(void *opaque, struct vmstate_cursor *w)
{
    struct i8042 *k = opaque;

    vms_put_u8(w, k->ctr);
    vms_put_u8(w, k->pending);
    vms_put_u8(w, k->cmd_last);
    vms_put_u8(w, k->xlate_break);
    vms_put_u8(w, k->kbd_pending);
    vms_put_u8(w, k->kbd_set);
    vms_put_u8(w, k->kbd_last);
    vms_put_u8(w, k->leds);
    vms_put_u8(w, k->scanning);
    vms_put_u8(w, (uint8_t)k->out_count);
    for (unsigned i = 0; i < k->out_count; i++)
        vms_put_u8(w, k->outq[(k->out_head + i) % OUTQ_SIZE]);
    return w->err;
}

static int i8042_load(void *opaque, struct vmstate_cursor *r)
{
    struct i8042 *k = opaque;
    uint8_t q[OUTQ_SIZE];
    uint8_t ctr = vms_get_u8(r), pending = vms_get_u8(r);
    bool cmd_last = vms_get_bool(r), xbrk = vms_get_bool(r);
    uint8_t kpend = vms_get_u8(r), set = vms_get_u8(r);
    uint8_t last = vms_get_u8(r), leds = vms_get_u8(r);
    bool scanning = vms_get_bool(r);
    uint8_t n = vms_get_u8(r);

    if (n > OUTQ_SIZE)
        return vms_fail(r, -EINVAL, "output queue holds %u bytes (at most "
                        "%u)", n, OUTQ_SIZE);
    vms_get(r, q, n);
    if (vms_finish(r))
        return r->err;
    if (set < 1 || set > 3)
        return vms_fail(r, -EINVAL, "scan code set %u", set);
    k->ctr = ctr;
    k->pending = pending;
    k->cmd_last = cmd_last;
    k->xlate_break = xbrk;
    k->kbd_pending = kpend;
    k->kbd_set = set;
    k->kbd_last = last;
    k->leds = leds;
    k->scanning = scanning;
    memcpy(k->outq, q, n);
    k->out_head = 0;
    k->out_count = n;
    k->irq_level = -1;
    i8042_update_irq(k);
    return 0;
}

static const struct bus_state_ops i8042_state = {
    .save = i8042_save, .load = i8042_load,
};

int i8042_create(struct bus *bus, struct i8042 **out)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    int ret;

    if (!k)
        return -ENOMEM;
    k->bus = bus;
    i8042_reset(k);
    ret = bus_own(bus, k);
    if (ret) {
        free(k);
        return ret;
    }
    ret = bus_register_pio(bus, I8042_DATA, 1, i8042_pio, k);
    if (!ret)
        ret = bus_register_pio(bus, I8042_CMD, 1, i8042_pio, k);
    if (!ret)
        ret = bus_register_reset(bus, i8042_reset, k);
    if (!ret)
        ret = bus_register_state(bus, "i8042", &i8042_state, k);
    if (!ret && out)
        *out = k;
    return ret;
}
