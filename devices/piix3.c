/* PIIX3 PCI-to-ISA bridge, function 0 of slot 1 (8086:7000), as on a PC
 * with an i440FX.  It owns the PIRQ route control registers (0x60-0x63):
 * firmware writes there which ISA IRQ each PCI interrupt line A-D
 * reaches, and under firmware boot calf routes INTx that way.  The IDE
 * function sits beside it at 00:01.1. */
#include <errno.h>
#include <stdlib.h>

#include "devices/devices.h"
#include "devices/vmstate.h"
#include "devices/pci.h"

#define PIIX3_PIRQC 0x60       /* PIRQA..D route control, one byte each */
#define PIRQ_DISABLED 0x80
#define PIRQ_IRQ_MASK 0x0f

struct piix3 {
    struct pci_dev *dev;
};

/* PCI interrupt pin p (0 = INTA) of slot s drives PIRQ (s + p) & 3: the
 * usual rotation, also what the PIIX3 _PRT of firmware ACPI tables says. */
int piix3_route_intx(void *opaque, int slot, int pin)
{
    struct piix3 *p = opaque;
    uint32_t r = pci_cfg_read(p->dev, PIIX3_PIRQC + ((slot + pin) & 3), 1);

    if (r & PIRQ_DISABLED)
        return -1;
    r &= PIRQ_IRQ_MASK;
    /* IRQs 0-2, 8 and 13 are not valid PIRQ targets (the chipset
     * reserves them); a guest that picks one gets no interrupt. */
    if (r < 3 || r == 8 || r == 13)
        return -1;
    return (int)r;
}

int piix3_create(struct pci *pci, int slot, struct bus *bus,
                 struct piix3 **out)
{
    static const struct pci_dev_config cfg = {
        .vendor = 0x8086, .device = 0x7000,
        .class_code = 0x06, .subclass = 0x01, .prog_if = 0x00,
        /* A PIIX3 always reports multi-function: IDE and USB follow. */
        .multifunction = true,
    };
    struct piix3 *p = calloc(1, sizeof(*p));
    int ret;

    if (!p)
        return -ENOMEM;
    ret = bus_own(bus, p);
    if (ret) {
        free(p);
        return ret;
    }
    ret = pci_add_fn(pci, slot, 0, &cfg, NULL, NULL, &p->dev);
    if (ret)
        return ret;
    for (unsigned i = 0; i < 4; i++)
        pci_cfg_init(p->dev, PIIX3_PIRQC + i, 1, PIRQ_DISABLED,
                     PIRQ_DISABLED | PIRQ_IRQ_MASK);
    if (out)
        *out = p;
    return 0;
}

/* System control port A (0x92).  Bit 1 gates A20, which calf never
 * masks (KVM has no A20 gate); it is kept so the firmware reads back
 * what it wrote.  Bit 0 is the fast reset: the machine restarts (or the
 * run ends under --no-reboot), as with the i8042 reset line. */
#define PORT92_RESET 0x01
#define PORT92_A20   0x02

struct port92 {
    struct bus *bus;
    uint8_t value;
};

static void port92_pio(void *opaque, uint16_t port, uint8_t *data,
                       unsigned size, bool is_write)
{
    struct port92 *p = opaque;

    (void)port;
    (void)size;
    if (!is_write) {
        data[0] = p->value;
        return;
    }
    p->value = data[0] & PORT92_A20;
    if (data[0] & PORT92_RESET)
        bus_request_stop(p->bus, BUS_STOP_RESET, 0);
}

/* Saved state (devices/vmstate.h): the A20 bit. */
static int port92_save(void *opaque, struct vmstate_cursor *w)
{
    struct port92 *p = opaque;

    vms_put_u8(w, p->value);
    return w->err;
}

static int port92_load(void *opaque, struct vmstate_cursor *r)
{
    struct port92 *p = opaque;
    uint8_t v = vms_get_u8(r);

    if (vms_finish(r))
        return r->err;
    p->value = v & PORT92_A20;
    return 0;
}

static const struct bus_state_ops port92_state = {
    .save = port92_save, .load = port92_load,
};

int piix3_port92_create(struct bus *bus)
{
    struct port92 *p = calloc(1, sizeof(*p));
    int ret;

    if (!p)
        return -ENOMEM;
    p->bus = bus;
    p->value = PORT92_A20;
    ret = bus_own(bus, p);
    if (ret) {
        free(p);
        return ret;
    }
    ret = bus_register_state(bus, "port92", &port92_state, p);
    return ret ? ret : bus_register_pio(bus, 0x92, 1, port92_pio, p);
}
