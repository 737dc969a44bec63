/* PIIX4 power management function (8086:7113 at 00:01.3), the ACPI
 * fixed hardware a PC guest expects: PM1 event and control registers and
 * the 24-bit PM timer at PMBA (0x600, where SeaBIOS puts it too), so the
 * FADT need not declare hardware-reduced ACPI.  That matters: a Linux
 * guest with a hardware-reduced FADT assumes no legacy IRQs, and a legacy
 * IDE controller then cannot get IRQ 14.  Writing SLP_EN with the S5
 * sleep type (0, as the DSDT's _S5 says) powers the machine off.
 * The fixed-feature power button (the FADT's PWR_BUTTON flag clear):
 * acpi_pm_power_button() sets PWRBTN_STS, and the SCI (IRQ 9, level)
 * is high while any status bit is set whose enable bit is too.
 *
 * The I/O block is decoded where PMBA points, as long as that is 0x600
 * (QEMU's place, used under direct boot) or 0xB000 (SeaBIOS's own
 * default, which it keeps when the host bridge does not look like
 * QEMU's); the bus has no movable port ranges. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "devices/devices.h"
#include "devices/vmstate.h"
#include "devices/pci.h"

#define PM_CFG_PMBA     0x40    /* I/O base, bit 0 reads as 1 */
#define PM_CFG_MISC     0x80    /* PMREGMISC: bit 0 enables the I/O block */
#define PM_CFG_DEVACTB  0x58    /* device activity B */
#define DEVACTB_APMC_EN (1u << 25)
#define PM_LEN          0x40

#define PM1_STS         0x00
#define PM1_EN          0x02
#define PM1_CNT         0x04
#define PM_TMR          0x08

#define PM1_STS_TMR     0x0001
#define PM1_STS_PWRBTN  0x0100
#define PM1_STS_WAK     0x8000
#define PM1_CNT_SCI_EN  0x0001
#define PM1_CNT_SLP_TYP 0x1c00
#define PM1_CNT_SLP_EN  0x2000

#define PM_TIMER_HZ     3579545ULL
#define PM_SEABIOS_BASE 0xb000

struct acpi_pm {
    struct bus *bus;
    struct pci *pci;
    struct pci_dev *dev;
    uint16_t sts, en, cnt;
    bool sci;                 /* the level last set on the SCI */
};

static uint32_t pm_timer_now(void)
{
    struct timespec ts;
    unsigned __int128 ticks;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ticks = ((unsigned __int128)ts.tv_sec * 1000000000u +
             (uint64_t)ts.tv_nsec) * PM_TIMER_HZ / 1000000000u;
    return (uint32_t)ticks & 0xffffff;
}

/* The block's base when port falls inside it and it is enabled, else 0. */
static unsigned pm_base_of(struct acpi_pm *pm, uint16_t port)
{
    unsigned base = pci_cfg_read(pm->dev, PM_CFG_PMBA, 4) & 0xffc0;

    if (!(pci_cfg_read(pm->dev, PM_CFG_MISC, 1) & 1) || port < base ||
        port >= base + PM_LEN)
        return 0;
    return base;
}

/* The SCI follows the enabled status bits (PM1_EN has the same layout
 * as PM1_STS for them); bus lock held.  PIRQ routes may put a PCI INTx
 * on IRQ 9 too: the SCI is counted with them (pci_share_isa_irq), on
 * its own level changes only. */
static void pm_update_sci(struct acpi_pm *pm)
{
    bool level = pm->sts & pm->en & (PM1_STS_TMR | PM1_STS_PWRBTN);

    if (level != pm->sci) {
        pm->sci = level;
        pci_share_isa_irq(pm->pci, ACPI_PM_SCI_IRQ, level);
    }
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
    bus_lock(pm->bus);
    pm->sts |= PM1_STS_PWRBTN;
    pm_update_sci(pm);
    bus_unlock(pm->bus);
}

static void pm_write_cnt(struct acpi_pm *pm, uint16_t v)
{
    /* SCI_EN stays set: there is no SMI handler to switch modes, and the
     * FADT's SMI_CMD of 0 tells the guest ACPI mode is always on. */
    pm->cnt = (uint16_t)((v & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
    if ((v & PM1_CNT_SLP_EN) && (v & PM1_CNT_SLP_TYP) >> 10 == ACPI_PM_S5_TYP)
        bus_request_stop(pm->bus, BUS_STOP_POWEROFF, 0);
    /* Other sleep states are not offered in the DSDT: ignored. */
}

static void pm_pio(void *opaque, uint16_t port, uint8_t *data, unsigned size,
                   bool is_write)
{
    struct acpi_pm *pm = opaque;
    unsigned base = pm_base_of(pm, port), off = port - base;
    uint32_t v = 0;

    if (!base)
        return;
    for (unsigned i = 0; is_write && i < size; i++)
        v |= (uint32_t)data[i] << (8 * i);
    if (off == PM1_STS && size == 2) {
        if (is_write) {
            pm->sts &= (uint16_t)~v; /* write 1 to clear */
            pm_update_sci(pm);
        } else {
            v = pm->sts;
        }
    } else if (off == PM1_EN && size == 2) {
        if (is_write) {
            pm->en = (uint16_t)v;
            pm_update_sci(pm);
        } else {
            v = pm->en;
        }
    } else if (off == PM1_CNT && size == 2) {
        if (is_write)
            pm_write_cnt(pm, (uint16_t)v);
        else
            v = pm->cnt;
    } else if (off == PM_TMR && size == 4 && !is_write) {
        v = pm_timer_now();
    } else {
        return; /* reads stay all ones */
    }
    for (unsigned i = 0; !is_write && i < size; i++)
        data[i] = (uint8_t)(v >> (8 * i));
}

static void acpi_pm_reset(void *opaque)
{
    struct acpi_pm *pm = opaque;

    pm->sts = 0;
    pm->en = 0;
    pm->cnt = PM1_CNT_SCI_EN;
    pm_update_sci(pm);
}

/* Saved state (devices/vmstate.h): PM1 status, enable and control; the
 * base and enable bits live in configuration space (devices/pci.c). */
static int acpi_pm_save(void *opaque, struct vmstate_cursor *w)
{
    struct acpi_pm *pm = opaque;

    vms_put_u16(w, pm->sts);
    vms_put_u16(w, pm->en);
    vms_put_u16(w, pm->cnt);
    return w->err;
}

static int acpi_pm_load(void *opaque, struct vmstate_cursor *r)
{
    struct acpi_pm *pm = opaque;
    uint16_t sts = vms_get_u16(r), en = vms_get_u16(r), cnt = vms_get_u16(r);

    if (vms_finish(r))
        return r->err;
    pm->sts = sts;
    pm->en = en;
    pm->cnt = cnt & (uint16_t)~0x2000; /* never SLP_EN: no sleep on load */
    /* a pending power button or timer event drives the SCI again (on a
     * running machine's loadvm, it may also have to drop it) */
    pm_update_sci(pm);
    return 0;
}

static const struct bus_state_ops acpi_pm_state = {
    .save = acpi_pm_save, .load = acpi_pm_load,
};

int acpi_pm_create(struct pci *pci, int slot, int fn, struct bus *bus,
                   bool firmware, struct acpi_pm **out)
{
    static const struct pci_dev_config cfg = {
        .vendor = 0x8086, .device = 0x7113, .revision = 0x03,
        .class_code = 0x06, .subclass = 0x80,
    };
    struct acpi_pm *pm = calloc(1, sizeof(*pm));
    int ret;

    if (!pm)
        return -ENOMEM;
    ret = bus_own(bus, pm);
    if (ret) {
        free(pm);
        return ret;
    }
    pm->bus = bus;
    pm->pci = pci;
    acpi_pm_reset(pm);
    ret = pci_add_fn(pci, slot, fn, &cfg, NULL, NULL, &pm->dev);
    if (ret)
        return ret;
    /* Firmware programs the base and the enable bit; under direct kernel
     * boot the VMM plays firmware and sets them as SeaBIOS would. */
    pci_cfg_init(pm->dev, PM_CFG_PMBA, 4,
                 firmware ? 1 : ACPI_PM_BASE | 1, 0xffc0);
    pci_cfg_init(pm->dev, PM_CFG_MISC, 1, firmware ? 0 : 1, 0x01);
    /* There is no SMM here.  SeaBIOS installs its SMI handler unless
     * APMC_EN says that was done already, and then waits forever for an
     * SMI to answer on port 0xB3; so the bit reads as set. */
    pci_cfg_init(pm->dev, PM_CFG_DEVACTB, 4, DEVACTB_APMC_EN, 0);
    ret = bus_register_pio(bus, ACPI_PM_BASE, PM_LEN, pm_pio, pm);
    if (!ret)
        ret = bus_register_pio(bus, PM_SEABIOS_BASE, PM_LEN, pm_pio, pm);
    if (!ret)
        ret = bus_register_reset(bus, acpi_pm_reset, pm);
    if (!ret)
        ret = bus_register_state(bus, "acpi-pm", &acpi_pm_state, pm);
    if (!ret && out)
        *out = pm;
    return ret;
}
