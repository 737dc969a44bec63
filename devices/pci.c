/* PCI bus 0: configuration mechanism #1, BARs and INTx (MSI-X is in
 * msix.c).  See pci.h for the model; the register layout is the PCI 3.0
 * type-0 header, named as in <linux/pci_regs.h>. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci-int.h"

/* Without a router: INTA of slot s reaches I/O APIC pin 16 + (s & 3),
 * what the ACPI _PRT and the MP table say. */
static int intx_default_gsi(int slot, int pin)
{
    return PCI_INTX_GSI_BASE + ((slot + pin) & (PCI_INTX_LINES - 1));
}

static int intx_gsi(const struct pci_dev *d)
{
    struct pci *pci = d->pci;

    if (pci->route)
        return pci->route(pci->route_opaque, d->slot, 0);
    return intx_default_gsi(d->slot, 0);
}

/* ---- interrupts ---- */

void intx_drive_locked(struct pci_dev *d, int level)
{
    struct pci *pci = d->pci;
    uint16_t cmd = (uint16_t)cfg_get_le(d, PCI_COMMAND, 2);
    int gsi;

    if (cmd & PCI_COMMAND_INTX_DISABLE)
        level = 0;
    if (!!level == !!d->intx_level)
        return;
    d->intx_level = !!level;
    /* An atomic read-modify-write: the bus lock is not held here, and
     * cfg_write never stores this read-only byte back (it skips bytes
     * without writable bits), so no guest write can lose the bit. */
    if (level)
        __atomic_fetch_or(&d->cfg[PCI_STATUS], PCI_STATUS_INTERRUPT,
                          __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&d->cfg[PCI_STATUS], (uint8_t)~PCI_STATUS_INTERRUPT,
                           __ATOMIC_RELAXED);
    if (level) {
        /* The route is read when the line rises and remembered, so the
         * same pin is lowered even if the guest re-routes meanwhile. */
        gsi = intx_gsi(d);
        if (gsi < 0 || gsi >= PCI_ISA_IRQS)
            gsi = -1;
        d->intx_gsi = gsi;
        if (gsi >= 0 && pci->intx_count[gsi]++ == 0)
            bus_set_irq(pci->bus, (unsigned)gsi, 1);
    } else {
        gsi = d->intx_gsi;
        d->intx_gsi = -1;
        if (gsi >= 0 && --pci->intx_count[gsi] == 0)
            bus_set_irq(pci->bus, (unsigned)gsi, 0);
    }
}

void pci_share_isa_irq(struct pci *pci, unsigned irq, int level)
{
    if (irq >= PCI_ISA_IRQS)
        return;
    pthread_mutex_lock(&pci->irq_lock);
    if (level ? pci->intx_count[irq]++ == 0 : --pci->intx_count[irq] == 0)
        bus_set_irq(pci->bus, irq, level ? 1 : 0);
    pthread_mutex_unlock(&pci->irq_lock);
}

void pci_set_intx(struct pci_dev *d, int level)
{
    if (!d->intx)
        return;
    pthread_mutex_lock(&d->pci->irq_lock);
    intx_drive_locked(d, level);
    pthread_mutex_unlock(&d->pci->irq_lock);
}

/* ---- BARs ---- */

static bool bar_is_io(const struct pci_dev *d, int bar)
{
    return d->bar_io >> bar & 1;
}

/* Recomputes where each BAR decodes after a BAR or command write and
 * tells the function about moves. */
static void bars_update(struct pci_dev *d);

void pci_bars_update(struct pci_dev *d)
{
    bars_update(d);
}

static void bars_update(struct pci_dev *d)
{
    uint16_t cmd = (uint16_t)cfg_get_le(d, PCI_COMMAND, 2);

    for (int b = 0; b < PCI_MAX_BARS; b++) {
        uint64_t addr = 0;

        if (!d->bar_size[b])
            continue;
        if (cmd & (bar_is_io(d, b) ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY))
            addr = cfg_get_le(d, PCI_BASE_ADDRESS_0 + 4 * b, 4) &
                   (bar_is_io(d, b) ? 0xfffcULL : ~0xfULL);
        if (addr == d->bar_addr[b])
            continue;
        d->bar_addr[b] = addr;
        if (d->ops && d->ops->bar_moved)
            d->ops->bar_moved(d->opaque, b, addr);
    }
}

static void pci_mmio(void *opaque, uint64_t addr, uint8_t *data,
                     unsigned size, bool is_write)
{
    struct pci *pci = opaque;

    for (unsigned s = 0; s < pci->npresent; s++) {
        struct pci_dev *d = pci->present[s];

        for (int b = 0; d && b < PCI_MAX_BARS; b++) {
            uint64_t off = addr - d->bar_addr[b];

            if (!d->bar_addr[b] || bar_is_io(d, b) || off >= d->bar_size[b])
                continue;
            if (off + size > d->bar_size[b])
                return; /* straddles the end: dropped, reads all ones */
            if (d->msix_n && b == d->msix_bar)
                msix_table_rw(d, off, data, size, is_write);
            else if (d->ops && d->ops->bar_rw)
                d->ops->bar_rw(d->opaque, b, off, data, size, is_write);
            return;
        }
    }
}

/* Ports no ISA device claimed: the I/O BARs as the guest set them. */
static void pci_io_bars(void *opaque, uint16_t port, uint8_t *data,
                        unsigned size, bool is_write)
{
    struct pci *pci = opaque;

    for (unsigned s = 0; s < pci->npresent; s++) {
        struct pci_dev *d = pci->present[s];

        for (int b = 0; d && b < PCI_MAX_BARS; b++) {
            uint64_t off = (uint64_t)port - d->bar_addr[b];

            if (!d->bar_addr[b] || !bar_is_io(d, b) || off >= d->bar_size[b])
                continue;
            if (off + size <= d->bar_size[b] && d->ops && d->ops->bar_rw)
                d->ops->bar_rw(d->opaque, b, off, data, size, is_write);
            return;
        }
    }
}

/* ---- configuration space ---- */

static void cfg_write(struct pci_dev *d, unsigned off, const uint8_t *data,
                      unsigned size)
{
    bool bars = false, cmd = false, msix = false, own = false;

    if (!d->reset_saved) {
        cfg_copy_out(d, d->reset_cfg, 0, PCI_CFG_SPACE_SIZE);
        d->reset_saved = true;
    }

    for (unsigned i = 0; i < size; i++) {
        unsigned o = off + i;

        if (!d->wmask[o])
            continue; /* read-only: nothing to store (see intx_drive_locked) */
        cfg_byte_set(d, o, (uint8_t)((cfg_byte(d, o) & ~d->wmask[o]) |
                                     (data[i] & d->wmask[o])));
        bars |= o >= PCI_BASE_ADDRESS_0 &&
                o < PCI_BASE_ADDRESS_0 + 4 * PCI_MAX_BARS;
        cmd |= o == PCI_COMMAND || o == PCI_COMMAND + 1;
        msix |= d->msix_n && (o == d->msix_cap + 3u);
        own |= o >= PCI_STD_HEADER_SIZEOF && d->wmask[o];
    }
    if (cmd) {
        pthread_mutex_lock(&d->pci->irq_lock);
        if (cfg_byte(d, PCI_COMMAND + 1) & (PCI_COMMAND_INTX_DISABLE >> 8))
            intx_drive_locked(d, 0);
        pthread_mutex_unlock(&d->pci->irq_lock);
    }
    if (bars || cmd)
        bars_update(d);
    if (msix)
        msix_ctrl_written(d);
    if (own && d->ops && d->ops->cfg_written)
        d->ops->cfg_written(d->opaque, off, size);
}

static struct pci_dev *cfg_target(struct pci *pci, unsigned *reg)
{
    uint32_t a = pci->cf8;

    if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0)
        return NULL; /* bus 0 only */
    *reg = a & 0xfc;
    return pci->devs[(a >> 8) & 0xff];
}

static void pci_cfg_pio(void *opaque, uint16_t port, uint8_t *data,
                        unsigned size, bool is_write)
{
    struct pci *pci = opaque;
    struct pci_dev *d;
    unsigned reg, off;

    if (port < 0xcfc) {
        /* A byte at 0xCF9 is the PIIX3 reset control register: RST_CPU
         * (bit 2) resets the machine, as SeaBIOS and Linux's reboot=pci
         * expect; SYS_RST (bit 1) is kept. */
        if (port == 0xcf9 && size == 1) {
            if (!is_write) {
                data[0] = pci->rcr;
            } else {
                pci->rcr = data[0] & 0x02;
                if (data[0] & 0x04)
                    bus_request_stop(pci->bus, BUS_STOP_RESET, 0);
            }
            return;
        }
        /* Only a dword at 0xCF8 is the address register. */
        if (port != 0xcf8 || size != 4)
            return;
        if (is_write)
            pci->cf8 = get_le(data, 4);
        else
            put_le(data, 4, pci->cf8);
        return;
    }
    d = cfg_target(pci, &reg);
    off = reg + (port - 0xcfc);
    if (!d || off + size > PCI_CFG_SPACE_SIZE)
        return;
    if (is_write) {
        cfg_write(d, off, data, size);
        return;
    }
    if (d->ops && d->ops->cfg_read)
        d->ops->cfg_read(d->opaque, off, size);
    cfg_copy_out(d, data, off, size);
}

/* ---- machine reset ---- */

static void pci_dev_reset(struct pci_dev *d)
{
    if (d->ops && d->ops->reset)
        d->ops->reset(d->opaque); /* quiet first: no interrupt after */
    pthread_mutex_lock(&d->pci->irq_lock);
    intx_drive_locked(d, 0);
    msix_reset_locked(d);
    pthread_mutex_unlock(&d->pci->irq_lock);
    /* Other functions' I/O threads may still read this one's bytes (the
     * PIIX3 routes) until their own reset hook quiets them. */
    if (d->reset_saved)
        cfg_copy_in(d, 0, d->reset_cfg, PCI_CFG_SPACE_SIZE);
    bars_update(d);
    /* Device-specific registers went back too: let the function follow
     * them (PAM, PIRQ routes) as after a guest write. */
    if (d->ops && d->ops->cfg_written)
        d->ops->cfg_written(d->opaque, PCI_STD_HEADER_SIZEOF,
                            PCI_CFG_SPACE_SIZE - PCI_STD_HEADER_SIZEOF);
}

/* A bus reset hook (devices/bus.h): bus lock held, vCPUs stopped. */
static void pci_reset(void *opaque)
{
    struct pci *pci = opaque;

    pci->cf8 = 0;
    for (int s = 0; s < PCI_DEVFNS; s++)
        if (pci->devs[s])
            pci_dev_reset(pci->devs[s]);
}


static void cfg_set(struct pci_dev *d, unsigned off, unsigned size,
                    uint32_t v, uint32_t wmask)
{
    put_le(d->cfg + off, size, v);
    put_le(d->wmask + off, size, wmask);
}

int pci_add_cap(struct pci_dev *d, const uint8_t *cap, unsigned len)
{
    unsigned off = d->cap_end;

    if (len < 2 || off + len > PCI_CFG_SPACE_SIZE)
        return -ENOSPC;
    memcpy(d->cfg + off, cap, len);
    d->cfg[off + 1] = 0;
    if (d->last_cap)
        d->cfg[d->last_cap + 1] = (uint8_t)off;
    else
        d->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
    d->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->last_cap = (uint8_t)off;
    d->cap_end = (uint8_t)((off + len + 3) & ~3u);
    return (int)off;
}
static int bars_setup(struct pci *pci, struct pci_dev *d,
                      const struct pci_dev_config *cfg)
{
    for (int b = 0; b < PCI_MAX_BARS; b++) {
        uint32_t size = cfg->bar_size[b];
        bool io = cfg->bar_io >> b & 1;
        uint64_t addr;

        if (!size)
            continue;
        if (size & (size - 1) || size < (io ? 4u : 4096u) ||
            (io && size > 256))
            return -EINVAL;
        /* Natural alignment, as firmware would place it. */
        if (io) {
            addr = (pci->io_next + size - 1) & ~(uint64_t)(size - 1);
            if (addr + size > 0x10000)
                return -ENOSPC;
            pci->io_next = (uint32_t)(addr + size);
            d->bar_io |= (uint8_t)(1u << b);
            /* All 32 address bits writable, as on QEMU: SeaBIOS sizes
             * an I/O BAR as ~(readback & ~3) + 1 over 32 bits, so upper
             * bits reading back 0 make it 4 GiB - 64 KiB and it gives up
             * ("PCI: out of I/O address space").  Decoding uses the low
             * 16 bits (bars_update). */
            cfg_set(d, PCI_BASE_ADDRESS_0 + 4 * b, 4, (uint32_t)addr | 1,
                    ~(size - 1) & ~3u);
        } else {
            addr = (pci->mmio_next + size - 1) & ~(uint64_t)(size - 1);
            if (addr + size > PCI_MMIO_END)
                return -ENOSPC;
            pci->mmio_next = addr + size;
            cfg_set(d, PCI_BASE_ADDRESS_0 + 4 * b, 4, (uint32_t)addr,
                    ~(size - 1));
        }
        d->bar_size[b] = size;
    }
    return 0;
}

int pci_add_fn(struct pci *pci, int slot, int fn,
               const struct pci_dev_config *cfg,
               const struct pci_func_ops *ops, void *opaque,
               struct pci_dev **out)
{
    struct pci_dev *d;
    int ret;

    if (slot < 0 || slot >= PCI_SLOTS || fn < 0 || fn > 7)
        return -EINVAL;
    if (pci->devs[slot << 3 | fn])
        return -EBUSY;
    if (fn && !pci->devs[slot << 3])
        return -ENOENT; /* function 0 first: scans stop without it */
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->pci = pci;
    d->slot = slot;
    d->fn = fn;
    d->ops = ops;
    d->opaque = opaque;
    d->cap_end = PCI_STD_HEADER_SIZEOF;
    d->intx_gsi = -1;
    for (unsigned v = 0; v < PCI_MAX_MSIX; v++)
        d->msix_efd[v] = -1;
    snprintf(d->name, sizeof(d->name), "00:%02x.%d", slot, fn);
    cfg_set(d, PCI_VENDOR_ID, 2, cfg->vendor, 0);
    cfg_set(d, PCI_DEVICE_ID, 2, cfg->device, 0);
    cfg_set(d, PCI_COMMAND, 2, 0,
            PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
            PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
            PCI_COMMAND_INTX_DISABLE);
    cfg_set(d, PCI_CLASS_REVISION, 4,
            cfg->revision | (uint32_t)cfg->prog_if << 8 |
            (uint32_t)cfg->subclass << 16 | (uint32_t)cfg->class_code << 24, 0);
    /* cache line size, latency timer */
    cfg_set(d, PCI_CACHE_LINE_SIZE, 2, 0, 0xffff);
    cfg_set(d, PCI_SUBSYSTEM_VENDOR_ID, 2, cfg->subsys_vendor, 0);
    cfg_set(d, PCI_SUBSYSTEM_ID, 2, cfg->subsys_id, 0);
    d->intx = cfg->intx;
    cfg_set(d, PCI_INTERRUPT_LINE, 1, cfg->intx ? intx_default_gsi(slot, 0)
                                                : 0xff, 0xff);
    cfg_set(d, PCI_INTERRUPT_PIN, 1, cfg->intx ? 1 : 0, 0);
    ret = bars_setup(pci, d, cfg);
    if (!ret)
        ret = msix_setup(d, cfg);
    if (ret) {
        free(d);
        return ret;
    }
    if (cfg->multifunction)
        d->cfg[PCI_HEADER_TYPE] |= 0x80;
    ret = pci_state_register_fn(d);
    if (ret) {
        free(d);
        return ret;
    }
    pci->devs[slot << 3 | fn] = d;
    pci->present[pci->npresent++] = d;
    if (fn)
        pci->devs[slot << 3]->cfg[PCI_HEADER_TYPE] |= 0x80; /* multi-function */
    if (out)
        *out = d;
    return 0;
}

int pci_create(struct bus *bus, uint64_t mmio_base, struct pci **out)
{
    static const struct pci_dev_config host_bridge = {
        .vendor = 0x8086, .device = 0x1237, .class_code = 0x06,
        .subclass = 0x00, .revision = 0x02,
    };
    struct pci *pci = calloc(1, sizeof(*pci));
    int ret;

    if (!pci)
        return -ENOMEM;
    if (mmio_base >= PCI_MMIO_END) {
        free(pci);
        return -EINVAL;
    }
    pci->bus = bus;
    pci->mmio_base = pci->mmio_next = mmio_base;
    pci->io_next = PCI_IO_BAR_BASE;
    pci->next_gsi = BUS_MSI_GSI_BASE;
    pci->irqfd_off = getenv("CALF_NO_IRQFD") != NULL;
    pthread_mutex_init(&pci->irq_lock, NULL);
    ret = pci_add_fn(pci, 0, 0, &host_bridge, NULL, NULL, &pci->host_bridge);
    if (!ret)
        ret = bus_register_pio(bus, 0xcf8, 8, pci_cfg_pio, pci);
    if (!ret)
        ret = bus_register_reset(bus, pci_reset, pci);
    if (!ret)
        ret = pci_state_register_bus(pci);
    if (!ret)
        ret = bus_register_pio(bus, PCI_IO_BAR_BASE,
                               (uint16_t)(0x10000 - PCI_IO_BAR_BASE),
                               pci_io_bars, pci);
    if (!ret)
        ret = bus_register_mmio(bus, mmio_base, PCI_MMIO_END - mmio_base,
                                pci_mmio, pci);
    if (ret) {
        pci_destroy(pci);
        return ret;
    }
    *out = pci;
    return 0;
}

/* Two passes, because a function's threads may interrupt through
 * another function: an I/O thread that completes a request while it is
 * being stopped raises INTx, and intx_gsi() reads the route from the
 * PIIX3's configuration space (piix3_route_intx), a function at 1.0
 * that devfn order would free before the virtio functions at 2.0 and
 * up.  So every function's threads stop first, with every function
 * still there; only then is anything freed.  The router is dropped in
 * between (under irq_lock, which intx_gsi() runs under): nothing should
 * raise INTx by then, and one that did would take the default route
 * instead of reading a function about to be freed. */
void pci_destroy(struct pci *pci)
{
    if (!pci)
        return;
    for (int s = 0; s < PCI_DEVFNS; s++) {
        struct pci_dev *d = pci->devs[s];

        if (d && d->ops && d->ops->stop)
            d->ops->stop(d->opaque);
    }
    pci_set_intx_router(pci, NULL, NULL);
    for (int s = 0; s < PCI_DEVFNS; s++) {
        struct pci_dev *d = pci->devs[s];

        if (!d)
            continue;
        if (d->ops && d->ops->destroy)
            d->ops->destroy(d->opaque);
        msix_release(d);
        free(d);
    }
    pthread_mutex_destroy(&pci->irq_lock);
    free(pci);
}

bool pci_bus_master(struct pci_dev *d)
{
    return cfg_byte(d, PCI_COMMAND) & PCI_COMMAND_MASTER;
}

void *pci_dma(struct pci_dev *d, uint64_t gpa, uint64_t len)
{
    /* A function the guest did not make bus master cannot reach RAM. */
    if (!pci_bus_master(d))
        return NULL;
    return bus_guest_ram(d->pci->bus, gpa, len);
}

/* A device-specific register of at most a dword (past the header). */
static bool own_reg(unsigned off, unsigned size)
{
    return off >= PCI_STD_HEADER_SIZEOF && size <= 4 &&
           off + size <= PCI_CFG_SPACE_SIZE;
}

void pci_cfg_init(struct pci_dev *d, unsigned off, unsigned size,
                  uint32_t value, uint32_t wmask)
{
    if (own_reg(off, size))
        cfg_set(d, off, size, value, wmask);
}

uint32_t pci_cfg_read(struct pci_dev *d, unsigned off, unsigned size)
{
    if (size > 4 || off + size > PCI_CFG_SPACE_SIZE)
        return 0;
    return cfg_get_le(d, off, size);
}

void pci_cfg_write_ro(struct pci_dev *d, unsigned off, unsigned size,
                      uint32_t value)
{
    uint8_t b[4];

    if (own_reg(off, size)) {
        put_le(b, size, value);
        cfg_copy_in(d, off, b, size);
    }
}

void pci_bar_alloc_from(struct pci *pci, uint64_t addr)
{
    if (pci->mmio_next < addr && addr < PCI_MMIO_END)
        pci->mmio_next = addr;
}

struct pci_dev *pci_host_bridge(struct pci *pci)
{
    return pci->host_bridge;
}

void pci_set_intx_router(struct pci *pci, pci_intx_route_fn route,
                         void *opaque)
{
    pthread_mutex_lock(&pci->irq_lock);
    pci->route = route;
    pci->route_opaque = opaque;
    pthread_mutex_unlock(&pci->irq_lock);
}

struct bus *pci_dev_bus(struct pci_dev *d)
{
    return d->pci->bus;
}

const char *pci_dev_name(struct pci_dev *d)
{
    return d->name;
}
