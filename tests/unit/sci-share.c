/* The ACPI SCI and PCI INTx share IRQ 9 without a VM: PIRQ routes may
 * put a PCI function's INTx on the SCI's line, and the line is the OR
 * of both, so neither source lowering its own level may lower the
 * other's.  A fake bus records the level of IRQ 9; a fake function at
 * 2.0 has its INTx routed to 9; the PIIX4 PM function (at 1.0 here) raises the
 * SCI for an enabled power button (PM1_EN, PM1_STS at ACPI_PM_BASE).
 * Loading the PM function's saved state sets the SCI to what the loaded
 * status and enable bits say.
 * TAP. */
#include <stdio.h>
#include <string.h>

#include "devices/bus.h"
#include "tests/unit/unit-dev.h"
#include "devices/devices.h"
#include "devices/pci.h"
#include "devices/vmstate.h"

static int line9 = -1, writes9;

static int rec_set_irq(void *host, unsigned irq, int level)
{
    (void)host;
    if (irq == ACPI_PM_SCI_IRQ) {
        line9 = level;
        writes9++;
    }
    return 0;
}

static const struct bus_host_ops rec_ops = {
    .set_irq = rec_set_irq,
    .console_write = fake_console,
    .request_stop = fake_stop,
};

static int route9(void *opaque, int slot, int pin)
{
    (void)opaque, (void)slot, (void)pin;
    return ACPI_PM_SCI_IRQ;
}

static void pm_write16(struct bus *bus, uint16_t off, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    bus_pio(bus, (uint16_t)(ACPI_PM_BASE + off), b, 2, true);
}

/* The PM function's state section saved into *w (a new writer). */
static int pm_save(struct bus *bus, struct vmstate_cursor *w)
{
    for (unsigned i = 0; i < bus_state_count(bus); i++)
        if (!strcmp(bus_state_name(bus, i), "acpi-pm")) {
            vms_writer_init(w);
            return bus_state_save(bus, i, w);
        }
    return -1;
}

static int pm_load(struct bus *bus, const struct vmstate_cursor *w)
{
    struct vmstate_cursor r;

    for (unsigned i = 0; i < bus_state_count(bus); i++)
        if (!strcmp(bus_state_name(bus, i), "acpi-pm")) {
            vms_reader_init(&r, w->buf, w->len);
            return bus_state_load(bus, i, &r);
        }
    return -1;
}

int main(void)
{
    static const struct pci_dev_config dev_cfg = {
        .vendor = 0x1af4, .device = 0x1042, .class_code = 0x01,
        .subclass = 0x80, .intx = true,
    };
    struct bus *bus = bus_create(&rec_ops, NULL);
    struct pci *pci = NULL;
    struct pci_dev *dev = NULL;
    struct acpi_pm *pm = NULL;

    if (!bus || pci_create(bus, 0xe0000000ULL, &pci) ||
        acpi_pm_create(pci, 1, 0, bus, false, &pm) ||
        pci_add_fn(pci, 2, 0, &dev_cfg, NULL, NULL, &dev)) {
        printf("not ok 1 - PCI bus, PM and a function created\n1..1\n");
        return 1;
    }
    pci_set_intx_router(pci, route9, NULL);
    pm_write16(bus, 0x02, 0x0100);          /* PM1_EN: PWRBTN_EN */

    pci_set_intx(dev, 1);
    ok(line9 == 1, "INTx routed to IRQ 9 raises it");
    acpi_pm_power_button(pm);
    ok(line9 == 1, "the power button's SCI on IRQ 9 too");
    pci_set_intx(dev, 0);
    ok(line9 == 1, "INTx lowered: IRQ 9 stays up while the SCI is pending");
    pm_write16(bus, 0x00, 0x0100);          /* PM1_STS: clear PWRBTN */
    ok(line9 == 0, "the SCI acknowledged: IRQ 9 falls");

    acpi_pm_power_button(pm);
    ok(line9 == 1, "SCI first this time: IRQ 9 up");
    pci_set_intx(dev, 1);
    pm_write16(bus, 0x00, 0x0100);
    ok(line9 == 1, "SCI acknowledged: IRQ 9 stays up while INTx is");
    pci_set_intx(dev, 0);
    ok(line9 == 0, "INTx lowered too: IRQ 9 falls");

    acpi_pm_power_button(pm);
    bus_reset(bus);
    ok(line9 == 0, "a machine reset lowers the SCI");

    /* saved states: one quiet, one with the power button pending */
    struct vmstate_cursor quiet, pending;
    int e = pm_save(bus, &quiet);
    pm_write16(bus, 0x02, 0x0100);
    acpi_pm_power_button(pm);
    e |= pm_save(bus, &pending);
    ok(!e && line9 == 1, "states saved, quiet and with the power button pending");
    e = pm_load(bus, &quiet);
    ok(!e && line9 == 0, "loading the quiet state lowers the pending SCI");
    bus_reset(bus);
    e = pm_load(bus, &pending);
    ok(!e && line9 == 1, "loading the state with the button pending raises the SCI");
    pm_write16(bus, 0x00, 0x0100);
    ok(line9 == 0, "the loaded SCI acknowledged: IRQ 9 falls");
    pci_set_intx(dev, 1);
    e = pm_load(bus, &pending);
    e |= pm_load(bus, &quiet);
    ok(!e && line9 == 1, "INTx up: loading the SCI up, then down, leaves IRQ 9 up");
    pci_set_intx(dev, 0);
    ok(line9 == 0, "INTx lowered too: IRQ 9 falls");
    vms_free(&quiet);
    vms_free(&pending);
    printf("# IRQ 9 written %d times\n", writes9);
    pci_destroy(pci);
    bus_shutdown(bus);
    bus_destroy(bus);
    printf("1..%d\n", t_num);
    return t_fail != 0;
}
