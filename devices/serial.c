/* 16550A UART.  Transmission is instantaneous: a byte written to THR goes
 * straight to the console (which batches host writes), so THR and the
 * shift register are always empty again by the time the guest looks, and
 * LSR always shows THRE|TEMT.  The THR-empty interrupt still follows the
 * 8250 rules (raised when THR empties or when it is enabled while empty,
 * cleared by a THR write or by reading IIR while it is the reported
 * source), because Linux's driver depends on them. */
#include "devices/devices.h"
#include "devices/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UART_RX_FIFO 16

enum {
    REG_RBR_THR = 0, REG_IER = 1, REG_IIR_FCR = 2, REG_LCR = 3,
    REG_MCR = 4, REG_LSR = 5, REG_MSR = 6, REG_SCR = 7,
};

#define IER_RDI   0x01
#define IER_THRI  0x02
#define IER_RLSI  0x04
#define IER_MSI   0x08
#define IIR_NO_INT 0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_RLS    0x06
#define IIR_FIFO   0xc0
#define FCR_ENABLE 0x01
#define FCR_CLR_RX 0x02
#define LCR_DLAB   0x80
#define MCR_DTR    0x01
#define MCR_RTS    0x02
#define MCR_OUT1   0x04
#define MCR_OUT2   0x08
#define MCR_LOOP   0x10
#define LSR_DR     0x01
#define LSR_BI     0x10
#define LSR_THRE   0x20
#define LSR_TEMT   0x40
#define MSR_DCTS   0x01
#define MSR_DDSR   0x02
#define MSR_TERI   0x04
#define MSR_DDCD   0x08
#define MSR_CTS    0x10
#define MSR_DSR    0x20
#define MSR_RI     0x40
#define MSR_DCD    0x80

struct serial {
    struct bus *bus;
    uint16_t base;
    bool thr_coalesced; /* THR writes buffered by KVM (serial_coalesce) */
    unsigned irq;
    int irq_level;
    uint8_t ier, lcr, mcr, msr, scr, fcr;
    uint8_t dll, dlm;
    bool thri_pending;
    bool lsr_bi;        /* a break came in; the next LSR read clears it */
    uint8_t rx[UART_RX_FIFO];
    unsigned rx_head, rx_count;
};

static uint8_t serial_iir(struct serial *s)
{
    uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

    if ((s->ier & IER_RLSI) && s->lsr_bi)
        return IIR_RLS | fifo;
    if ((s->ier & IER_RDI) && s->rx_count)
        return IIR_RDI | fifo;
    if ((s->ier & IER_THRI) && s->thri_pending)
        return IIR_THRI | fifo;
    if ((s->ier & IER_MSI) && (s->msr & 0x0f))
        return IIR_MSI | fifo;
    return IIR_NO_INT | fifo;
}

static void serial_update_irq(struct serial *s)
{
    int level = !(serial_iir(s) & IIR_NO_INT);

    if (level != s->irq_level) {
        s->irq_level = level;
        bus_set_irq(s->bus, s->irq, level);
    }
}

static void serial_rx_push(struct serial *s, uint8_t c)
{
    if (s->rx_count == UART_RX_FIFO)
        return; /* overrun: the byte is lost, as on the real part */
    s->rx[(s->rx_head + s->rx_count) % UART_RX_FIFO] = c;
    s->rx_count++;
}

static uint8_t serial_rx_pop(struct serial *s)
{
    uint8_t c;

    if (!s->rx_count)
        return 0;
    c = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % UART_RX_FIFO;
    s->rx_count--;
    return c;
}

/* In loopback the modem inputs mirror the modem outputs; Linux's probe
 * checks exactly this mapping to decide a UART is present. */
static uint8_t serial_msr(struct serial *s)
{
    uint8_t m = s->mcr;

    if (!(m & MCR_LOOP))
        return s->msr;
    return (s->msr & 0x0f) | ((m & MCR_DTR) ? MSR_DSR : 0) |
           ((m & MCR_RTS) ? MSR_CTS : 0) | ((m & MCR_OUT1) ? MSR_RI : 0) |
           ((m & MCR_OUT2) ? MSR_DCD : 0);
}

static void serial_transmit(struct serial *s, uint8_t c)
{
    if (s->mcr & MCR_LOOP)
        serial_rx_push(s, c);
    else
        bus_console_write(s->bus, &c, 1);
    s->thri_pending = true;
}

/* Printing through a polled UART costs two exits a byte: the LSR read
 * and the THR write.  While no THR-empty interrupt is enabled, a THR
 * write has no effect the guest can see before its next access to the
 * UART (which exits, and KVM's buffer is handed over first), so KVM may
 * buffer those writes.  With THRI on, the interrupt must follow each
 * write at once, so they exit again.  (DLL shares the port: buffered
 * divisor writes arrive in order too.) */
static void serial_coalesce(struct serial *s)
{
    bool want = !(s->ier & IER_THRI);

    if (want != s->thr_coalesced &&
        !bus_coalesce_pio(s->bus, s->base + REG_RBR_THR, 1, want))
        s->thr_coalesced = want;
}

static void serial_write(struct serial *s, unsigned reg, uint8_t v)
{
    switch (reg) {
    case REG_RBR_THR:
        if (s->lcr & LCR_DLAB) {
            s->dll = v;
            break;
        }
        s->thri_pending = false;
        serial_transmit(s, v);
        break;
    case REG_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
            break;
        }
        if ((v & IER_THRI) && !(s->ier & IER_THRI))
            s->thri_pending = true; /* enabling it while THR is empty */
        s->ier = v & 0x0f;
        serial_coalesce(s);
        break;
    case REG_IIR_FCR:
        if (v & FCR_CLR_RX)
            s->rx_count = 0;
        s->fcr = v & 0xc9;
        break;
    case REG_LCR:
        s->lcr = v;
        break;
    case REG_MCR:
        s->mcr = v & 0x1f;
        break;
    case REG_SCR:
        s->scr = v;
        break;
    default: /* LSR and MSR are read-only */
        break;
    }
}

static uint8_t serial_read(struct serial *s, unsigned reg)
{
    uint8_t v;

    switch (reg) {
    case REG_RBR_THR:
        return (s->lcr & LCR_DLAB) ? s->dll : serial_rx_pop(s);
    case REG_IER:
        return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
    case REG_IIR_FCR:
        v = serial_iir(s);
        if ((v & 0x0f) == IIR_THRI)
            s->thri_pending = false;
        return v;
    case REG_LCR:
        return s->lcr;
    case REG_MCR:
        return s->mcr;
    case REG_LSR:
        v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0) |
            (s->lsr_bi ? LSR_BI : 0);
        s->lsr_bi = false;
        return v;
    case REG_MSR:
        v = serial_msr(s);
        s->msr &= 0xf0; /* reading clears the delta bits */
        return v;
    default:
        return s->scr;
    }
}

static void serial_pio(void *opaque, uint16_t port, uint8_t *data,
                       unsigned size, bool is_write)
{
    struct serial *s = opaque;
    unsigned reg = port & 7;

    (void)size; /* only the low byte of a wider access reaches the UART */
    if (is_write)
        serial_write(s, reg, data[0]);
    else
        data[0] = serial_read(s, reg);
    serial_update_irq(s);
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
    size_t n = 0;

    bus_lock(s->bus);
    while (n < len && s->rx_count < UART_RX_FIFO)
        serial_rx_push(s, buf[n++]);
    serial_update_irq(s);
    bus_unlock(s->bus);
    return n;
}

/* A break on the line: a 0 byte in the FIFO with break-interrupt set in
 * the LSR, as a 16550 reports one (Linux's magic SysRq on a serial
 * console).  False when the FIFO is full (offer it again later). */
bool serial_break(struct serial *s)
{
    bool took = false;

    bus_lock(s->bus);
    if (s->rx_count < UART_RX_FIFO) {
        serial_rx_push(s, 0);
        s->lsr_bi = true;
        serial_update_irq(s);
        took = true;
    }
    bus_unlock(s->bus);
    return took;
}

/* Power-on state, also after a machine reset: bytes still in the
 * receive FIFO are dropped with the rest. */
static void serial_reset(void *opaque)
{
    struct serial *s = opaque;

    s->ier = s->lcr = s->scr = s->fcr = s->dlm = 0;
    s->thri_pending = false;
    s->lsr_bi = false;
    s->rx_head = s->rx_count = 0;
    s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
    s->mcr = MCR_OUT2;
    s->dll = 12; /* 9600 baud, what the BIOS leaves */
    serial_update_irq(s);
    serial_coalesce(s);
}

/* Saved state (devices/vmstate.h): the registers and the receive FIFO. */
static int serial_save(void *opaque, struct vmstate_cursor *w)
{
    struct serial *s = opaque;

    vms_put_u8(w, s->ier);
    vms_put_u8(w, s->lcr);
    vms_put_u8(w, s->mcr);
    vms_put_u8(w, s->msr);
    vms_put_u8(w, s->scr);
    vms_put_u8(w, s->fcr);
    vms_put_u8(w, s->dll);
    vms_put_u8(w, s->dlm);
    vms_put_u8(w, s->thri_pending);
    vms_put_u8(w, (uint8_t)s->rx_count);
    for (unsigned i = 0; i < s->rx_count; i++)
        vms_put_u8(w, s->rx[(s->rx_head + i) % UART_RX_FIFO]);
    vms_put_u8(w, s->lsr_bi);
    return w->err;
}

static int serial_load(void *opaque, struct vmstate_cursor *r)
{
    struct serial *s = opaque;
    uint8_t rx[UART_RX_FIFO];
    uint8_t ier = vms_get_u8(r), lcr = vms_get_u8(r), mcr = vms_get_u8(r);
    uint8_t msr = vms_get_u8(r), scr = vms_get_u8(r), fcr = vms_get_u8(r);
    uint8_t dll = vms_get_u8(r), dlm = vms_get_u8(r);
    bool thri = vms_get_bool(r);
    uint8_t n = vms_get_u8(r);

    if (n > UART_RX_FIFO)
        return vms_fail(r, -EINVAL, "receive FIFO holds %u bytes (at most "
                        "%u)", n, UART_RX_FIFO);
    vms_get(r, rx, n);
    bool bi = vms_get_bool(r);
    if (vms_finish(r))
        return r->err;
    s->ier = ier & 0x0f;
    s->lcr = lcr;
    s->mcr = mcr & 0x1f;
    s->msr = msr;
    s->scr = scr;
    s->fcr = fcr;
    s->dll = dll;
    s->dlm = dlm;
    s->thri_pending = thri;
    s->lsr_bi = bi;
    s->rx_head = 0;
    s->rx_count = n;
    memcpy(s->rx, rx, n);
    s->irq_level = -1; /* drive the line as saved */
    serial_update_irq(s);
    serial_coalesce(s);
    return 0;
}

static const struct bus_state_ops serial_state = {
    .save = serial_save, .load = serial_load,
};

int serial_create(struct bus *bus, uint16_t base, unsigned irq,
                  struct serial **out)
{
    struct serial *s = calloc(1, sizeof(*s));
    int ret;

    if (!s)
        return -ENOMEM;
    s->bus = bus;
    s->base = base;
    s->irq = irq;
    serial_reset(s);
    ret = bus_own(bus, s);
    if (ret) {
        free(s);
        return ret;
    }
    *out = s;
    ret = bus_register_reset(bus, serial_reset, s);
    if (!ret) {
        char name[32];

        snprintf(name, sizeof(name), "serial 0x%x", base);
        ret = bus_register_state(bus, name, &serial_state, s);
    }
    return ret ? ret : bus_register_pio(bus, base, 8, serial_pio, s);
}
