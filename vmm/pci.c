/* PCI bus 0: configuration mechanism #1, BARs, INTx and MSI-X.  See
 * pci.h for the model; the register layout is the PCI 3.0 type-0 header. */
#include "vmm/pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/devices.h"
#include "devices/disk.h"
#include "devices/ide.h"
#include "devices/virtio.h"
#include "vmm/firmware.h"
#include "vmm/vm.h"

#define PCI_SLOTS 32
#define PCI_DEVFNS (PCI_SLOTS * 8)
#define PCI_CFG_SIZE 256
#define PCI_ISA_IRQS 24

#define CFG_VENDOR    0x00
#define CFG_COMMAND   0x04
#define CFG_STATUS    0x06
#define CFG_REVISION  0x08
#define CFG_HEADER    0x0e
#define CFG_BAR0      0x10
#define CFG_SUBSYS    0x2c
#define CFG_CAP_PTR   0x34
#define CFG_INT_LINE  0x3c
#define CFG_INT_PIN   0x3d
#define CFG_CAP_START 0x40

#define CMD_IO        0x0001
#define CMD_MEM       0x0002
#define CMD_MASTER    0x0004
#define CMD_INTX_OFF  0x0400
#define STATUS_CAPS   0x0010
#define STATUS_INTX   0x0008

#define CAP_MSIX      0x11
#define MSIX_ENABLE   0x8000
#define MSIX_MASKALL  0x4000
#define MSIX_ENTRY_MASKED 0x1

/* INTA of slot s reaches I/O APIC pin 16 + (s & 3): pins above the ISA
 * range are free of legacy devices, and level-triggered there is native. */
#define PCI_INTX_GSI_BASE 16
#define PCI_INTX_LINES 4
/* MSI routes, one per (function, vector) that fired: KVM allows 1024 GSIs
 * or more; past this the vectors use KVM_SIGNAL_MSI. */
#define PCI_MSIX_GSI_MAX 512

struct msix_entry {
    uint32_t addr_lo, addr_hi, data, ctrl;
};

struct pci_dev {
    struct pci *pci;
    int slot, fn;
    char name[16];
    uint8_t cfg[PCI_CFG_SIZE];
    uint8_t wmask[PCI_CFG_SIZE];
    /* The configuration space as the guest first found it, taken at its
     * first configuration write: what a machine reset restores. */
    uint8_t reset_cfg[PCI_CFG_SIZE];
    bool reset_saved;
    uint8_t cap_end;          /* next free capability offset */
    uint8_t last_cap;         /* offset of the last capability, 0: none */
    uint32_t bar_size[PCI_MAX_BARS];
    uint64_t bar_addr[PCI_MAX_BARS]; /* as decoded now, 0: not decoded */
    uint8_t bar_io;           /* bit b: BAR b is an I/O BAR */
    const struct pci_func_ops *ops;
    void *opaque;
    /* MSI-X, under pci->irq_lock */
    unsigned msix_n;
    int msix_bar;
    uint8_t msix_cap;
    uint16_t msix_ctrl;
    struct msix_entry msix[PCI_MAX_MSIX];
    uint64_t msix_pending;
    int msix_efd[PCI_MAX_MSIX];    /* irqfd per vector, -1: none yet */
    unsigned msix_gsi[PCI_MAX_MSIX];
    bool intx;
    int intx_level;
    int intx_gsi;             /* where the asserted level went, -1: none */
};

struct pci {
    struct bus *bus;
    uint64_t mmio_base, mmio_next;
    uint32_t io_next;
    uint32_t cf8;
    uint8_t rcr;              /* 0xCF9, PIIX3 reset control */
    pthread_mutex_t irq_lock;
    unsigned intx_count[PCI_ISA_IRQS];
    pci_intx_route_fn route;
    void *route_opaque;
    /* MSI routes of the irqfds, under irq_lock */
    unsigned next_gsi;
    bool routes_stale;        /* a table entry with a route changed */
    bool irqfd_off;           /* KVM_SIGNAL_MSI only */
    struct pci_dev *host_bridge;
    struct pci_dev *devs[PCI_DEVFNS]; /* by devfn: slot << 3 | function */
    /* The same functions packed, for decoding BAR accesses on every
     * MMIO/PIO exit without walking 256 mostly empty devfns. */
    struct pci_dev *present[PCI_DEVFNS];
    unsigned npresent;
};

static uint32_t get_le(const uint8_t *p, unsigned size)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < size && i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *p, unsigned size, uint64_t v)
{
    for (unsigned i = 0; i < size; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Configuration space is written by vCPUs under the bus lock, but read
 * without it from the I/O threads: the bus-master bit (pci_bus_master),
 * INTx disable and the PIIX3 PIRQ routes (read through the route hook
 * when a line rises, under irq_lock only), and the status register's
 * interrupt bit is set from those threads too.  So once the machine runs,
 * every byte is loaded and stored as a relaxed atomic: no access tears
 * and none is a data race.  Relaxed is enough: each byte is a register
 * of its own that publishes no other memory, and a DMA that read the
 * bus-master bit just before the guest cleared it is one a real device
 * could have started as well. */
static uint8_t cfg_byte(const struct pci_dev *d, unsigned off)
{
    return __atomic_load_n(&d->cfg[off], __ATOMIC_RELAXED);
}

static void cfg_byte_set(struct pci_dev *d, unsigned off, uint8_t v)
{
    __atomic_store_n(&d->cfg[off], v, __ATOMIC_RELAXED);
}

static uint32_t cfg_get_le(const struct pci_dev *d, unsigned off,
                           unsigned size)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < size && i < 4; i++)
        v |= (uint32_t)cfg_byte(d, off + i) << (8 * i);
    return v;
}

static void cfg_copy_out(const struct pci_dev *d, uint8_t *dst,
                         unsigned off, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        dst[i] = cfg_byte(d, off + i);
}

static void cfg_copy_in(struct pci_dev *d, unsigned off, const uint8_t *src,
                        unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        cfg_byte_set(d, off + i, src[i]);
}

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

static void intx_drive_locked(struct pci_dev *d, int level)
{
    struct pci *pci = d->pci;
    uint16_t cmd = (uint16_t)cfg_get_le(d, CFG_COMMAND, 2);
    int gsi;

    if (cmd & CMD_INTX_OFF)
        level = 0;
    if (!!level == !!d->intx_level)
        return;
    d->intx_level = !!level;
    /* An atomic read-modify-write: the bus lock is not held here, and
     * cfg_write never stores this read-only byte back (it skips bytes
     * without writable bits), so no guest write can lose the bit. */
    if (level)
        __atomic_fetch_or(&d->cfg[CFG_STATUS], STATUS_INTX, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&d->cfg[CFG_STATUS], (uint8_t)~STATUS_INTX,
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

void pci_set_intx(struct pci_dev *d, int level)
{
    if (!d->intx)
        return;
    pthread_mutex_lock(&d->pci->irq_lock);
    intx_drive_locked(d, level);
    pthread_mutex_unlock(&d->pci->irq_lock);
}

bool pci_msix_enabled(struct pci_dev *d)
{
    bool on;

    pthread_mutex_lock(&d->pci->irq_lock);
    on = d->msix_n && (d->msix_ctrl & MSIX_ENABLE);
    pthread_mutex_unlock(&d->pci->irq_lock);
    return on;
}

static bool msix_masked(const struct pci_dev *d, unsigned v)
{
    return (d->msix_ctrl & MSIX_MASKALL) ||
           (d->msix[v].ctrl & MSIX_ENTRY_MASKED);
}

/* Every vector with a GSI, as the guest's table has it now. */
static int msix_routes_update_locked(struct pci *pci)
{
    struct bus_msi_route r[PCI_MSIX_GSI_MAX]; /* 12 KiB of stack */
    unsigned n = 0;

    for (int s = 0; s < PCI_DEVFNS; s++) {
        struct pci_dev *d = pci->devs[s];

        for (unsigned v = 0; d && v < d->msix_n; v++) {
            if (d->msix_efd[v] < 0 || n == PCI_MSIX_GSI_MAX)
                continue;
            r[n++] = (struct bus_msi_route){
                d->msix_gsi[v],
                d->msix[v].addr_lo | (uint64_t)d->msix[v].addr_hi << 32,
                d->msix[v].data };
        }
    }
    pci->routes_stale = false;
    return bus_msi_routes(pci->bus, r, n);
}

/* The eventfd that raises vector v, made on first use; -1 where irqfds
 * do not work (then KVM_SIGNAL_MSI does the job). */
static int msix_irqfd_locked(struct pci_dev *d, unsigned v)
{
    struct pci *pci = d->pci;
    int fd = d->msix_efd[v];

    if (pci->irqfd_off)
        return -1;
    if (fd < 0) {
        if (pci->next_gsi >= BUS_MSI_GSI_BASE + PCI_MSIX_GSI_MAX)
            return -1;
        fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
            return -1;
        d->msix_efd[v] = fd;
        d->msix_gsi[v] = pci->next_gsi++;
        /* The route first: KVM looks it up when the irqfd fires. */
        if (msix_routes_update_locked(pci) ||
            bus_irqfd(pci->bus, fd, d->msix_gsi[v], true)) {
            close(fd);
            d->msix_efd[v] = -1;
            pci->irqfd_off = true;
            return -1;
        }
    }
    if (pci->routes_stale && msix_routes_update_locked(pci)) {
        pci->irqfd_off = true;
        return -1;
    }
    return fd;
}

static int msix_send_locked(struct pci_dev *d, unsigned v)
{
    const struct msix_entry *e = &d->msix[v];
    uint64_t one = 1;
    int ret, fd;

    if (msix_masked(d, v)) {
        d->msix_pending |= 1ULL << v;
        return 0;
    }
    d->msix_pending &= ~(1ULL << v);
    fd = msix_irqfd_locked(d, v);
    if (fd >= 0 && write(fd, &one, sizeof(one)) == sizeof(one))
        return 0;
    ret = bus_signal_msi(d->pci->bus,
                         e->addr_lo | (uint64_t)e->addr_hi << 32, e->data);
    return ret < 0 ? ret : 0;
}

int pci_msix_notify(struct pci_dev *d, unsigned vector)
{
    int ret = 0;

    pthread_mutex_lock(&d->pci->irq_lock);
    if ((d->msix_ctrl & MSIX_ENABLE) && vector < d->msix_n)
        ret = msix_send_locked(d, vector);
    pthread_mutex_unlock(&d->pci->irq_lock);
    return ret;
}

/* After a mask bit cleared: what was held back goes out now. */
static void msix_flush_pending_locked(struct pci_dev *d)
{
    if (!(d->msix_ctrl & MSIX_ENABLE))
        return;
    for (unsigned v = 0; v < d->msix_n; v++)
        if ((d->msix_pending >> v & 1) && !msix_masked(d, v))
            msix_send_locked(d, v);
}

static void msix_table_rw(struct pci_dev *d, uint64_t off, uint8_t *data,
                          unsigned size, bool is_write)
{
    uint64_t half = d->bar_size[d->msix_bar] / 2;

    pthread_mutex_lock(&d->pci->irq_lock);
    if (off >= half) { /* PBA: read-only */
        off -= half;
        if (!is_write && off + size <= 8)
            put_le(data, size, d->msix_pending >> (8 * off));
    } else if (off / 16 < d->msix_n && (off & 15) + size <= 16 &&
               (size == 4 || size == 8) && !(off & 3)) {
        unsigned v = (unsigned)(off / 16);
        uint32_t *w = &d->msix[v].addr_lo + (off & 15) / 4;

        for (unsigned i = 0; i < size / 4; i++) {
            uint32_t nv = get_le(data + 4 * i, 4);

            /* A new address or data moves the vector's route before
             * its next interrupt (not now: Linux writes an entry as
             * three dwords, each would cost a routing update). */
            if (is_write && w + i != &d->msix[v].ctrl && w[i] != nv &&
                d->msix_efd[v] >= 0)
                d->pci->routes_stale = true;
            if (is_write)
                w[i] = nv;
            else
                put_le(data + 4 * i, 4, w[i]);
        }
        if (is_write)
            msix_flush_pending_locked(d);
    } else if (!is_write) {
        memset(data, 0, size);
    }
    pthread_mutex_unlock(&d->pci->irq_lock);
}

/* ---- BARs ---- */

static bool bar_is_io(const struct pci_dev *d, int bar)
{
    return d->bar_io >> bar & 1;
}

/* Recomputes where each BAR decodes after a BAR or command write and
 * tells the function about moves. */
static void bars_update(struct pci_dev *d)
{
    uint16_t cmd = (uint16_t)cfg_get_le(d, CFG_COMMAND, 2);

    for (int b = 0; b < PCI_MAX_BARS; b++) {
        uint64_t addr = 0;

        if (!d->bar_size[b])
            continue;
        if (bar_is_io(d, b) ? (cmd & CMD_IO) : (cmd & CMD_MEM))
            addr = cfg_get_le(d, CFG_BAR0 + 4 * b, 4) &
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

static void msix_ctrl_written(struct pci_dev *d)
{
    pthread_mutex_lock(&d->pci->irq_lock);
    d->msix_ctrl = (uint16_t)cfg_get_le(d, d->msix_cap + 2u, 2);
    /* With MSI-X on, INTx is not used (PCI 3.0 6.8.2). */
    if (d->msix_ctrl & MSIX_ENABLE)
        intx_drive_locked(d, 0);
    msix_flush_pending_locked(d);
    pthread_mutex_unlock(&d->pci->irq_lock);
}

static void cfg_write(struct pci_dev *d, unsigned off, const uint8_t *data,
                      unsigned size)
{
    bool bars = false, cmd = false, msix = false, own = false;

    if (!d->reset_saved) {
        cfg_copy_out(d, d->reset_cfg, 0, PCI_CFG_SIZE);
        d->reset_saved = true;
    }

    for (unsigned i = 0; i < size; i++) {
        unsigned o = off + i;

        if (!d->wmask[o])
            continue; /* read-only: nothing to store (see intx_drive_locked) */
        cfg_byte_set(d, o, (uint8_t)((cfg_byte(d, o) & ~d->wmask[o]) |
                                     (data[i] & d->wmask[o])));
        bars |= o >= CFG_BAR0 && o < CFG_BAR0 + 4 * PCI_MAX_BARS;
        cmd |= o == CFG_COMMAND || o == CFG_COMMAND + 1;
        msix |= d->msix_n && (o == d->msix_cap + 3u);
        own |= o >= CFG_CAP_START && d->wmask[o];
    }
    if (cmd) {
        pthread_mutex_lock(&d->pci->irq_lock);
        if (cfg_byte(d, CFG_COMMAND + 1) & (CMD_INTX_OFF >> 8))
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
    if (!d || off + size > PCI_CFG_SIZE)
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
    d->msix_ctrl = 0;
    d->msix_pending = 0;
    for (unsigned v = 0; v < d->msix_n; v++)
        d->msix[v] = (struct msix_entry){ .ctrl = MSIX_ENTRY_MASKED };
    d->pci->routes_stale = true; /* the irqfds' routes follow the table */
    pthread_mutex_unlock(&d->pci->irq_lock);
    /* Other functions' I/O threads may still read this one's bytes (the
     * PIIX3 routes) until their own reset hook quiets them. */
    if (d->reset_saved)
        cfg_copy_in(d, 0, d->reset_cfg, PCI_CFG_SIZE);
    bars_update(d);
    /* Device-specific registers went back too: let the function follow
     * them (PAM, PIRQ routes) as after a guest write. */
    if (d->ops && d->ops->cfg_written)
        d->ops->cfg_written(d->opaque, CFG_CAP_START,
                            PCI_CFG_SIZE - CFG_CAP_START);
}

/* A bus reset hook (vmm/bus.h): bus lock held, vCPUs stopped. */
static void pci_reset(void *opaque)
{
    struct pci *pci = opaque;

    pci->cf8 = 0;
    for (int s = 0; s < PCI_DEVFNS; s++)
        if (pci->devs[s])
            pci_dev_reset(pci->devs[s]);
}

/* ---- setup ---- */

static void cfg_set(struct pci_dev *d, unsigned off, unsigned size,
                    uint32_t v, uint32_t wmask)
{
    put_le(d->cfg + off, size, v);
    put_le(d->wmask + off, size, wmask);
}

int pci_add_cap(struct pci_dev *d, const uint8_t *cap, unsigned len)
{
    unsigned off = d->cap_end;

    if (len < 2 || off + len > PCI_CFG_SIZE)
        return -ENOSPC;
    memcpy(d->cfg + off, cap, len);
    d->cfg[off + 1] = 0;
    if (d->last_cap)
        d->cfg[d->last_cap + 1] = (uint8_t)off;
    else
        d->cfg[CFG_CAP_PTR] = (uint8_t)off;
    d->cfg[CFG_STATUS] |= STATUS_CAPS;
    d->last_cap = (uint8_t)off;
    d->cap_end = (uint8_t)((off + len + 3) & ~3u);
    return (int)off;
}

static int msix_setup(struct pci_dev *d, const struct pci_dev_config *cfg)
{
    uint8_t cap[12] = { CAP_MSIX };
    uint32_t half;
    int off;

    if (!cfg->msix_vectors)
        return 0;
    if (cfg->msix_vectors > PCI_MAX_MSIX || cfg->msix_bar < 0 ||
        cfg->msix_bar >= PCI_MAX_BARS ||
        cfg->bar_size[cfg->msix_bar] / 2 < cfg->msix_vectors * 16)
        return -EINVAL;
    half = cfg->bar_size[cfg->msix_bar] / 2;
    put_le(cap + 2, 2, cfg->msix_vectors - 1);
    put_le(cap + 4, 4, (uint32_t)cfg->msix_bar);
    put_le(cap + 8, 4, half | (uint32_t)cfg->msix_bar);
    off = pci_add_cap(d, cap, sizeof(cap));
    if (off < 0)
        return off;
    d->msix_cap = (uint8_t)off;
    d->wmask[off + 3] = (MSIX_ENABLE | MSIX_MASKALL) >> 8;
    d->msix_n = cfg->msix_vectors;
    d->msix_bar = cfg->msix_bar;
    for (unsigned v = 0; v < d->msix_n; v++)
        d->msix[v].ctrl = MSIX_ENTRY_MASKED;
    return 0;
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
            cfg_set(d, CFG_BAR0 + 4 * b, 4, (uint32_t)addr | 1,
                    ~(size - 1) & ~3u);
        } else {
            addr = (pci->mmio_next + size - 1) & ~(uint64_t)(size - 1);
            if (addr + size > PCI_MMIO_END)
                return -ENOSPC;
            pci->mmio_next = addr + size;
            cfg_set(d, CFG_BAR0 + 4 * b, 4, (uint32_t)addr, ~(size - 1));
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
    d->cap_end = CFG_CAP_START;
    d->intx_gsi = -1;
    for (unsigned v = 0; v < PCI_MAX_MSIX; v++)
        d->msix_efd[v] = -1;
    snprintf(d->name, sizeof(d->name), "00:%02x.%d", slot, fn);
    cfg_set(d, CFG_VENDOR, 2, cfg->vendor, 0);
    cfg_set(d, CFG_VENDOR + 2, 2, cfg->device, 0);
    cfg_set(d, CFG_COMMAND, 2, 0,
            CMD_IO | CMD_MEM | CMD_MASTER | 0x0040 | 0x0100 | CMD_INTX_OFF);
    cfg_set(d, CFG_REVISION, 4,
            cfg->revision | (uint32_t)cfg->prog_if << 8 |
            (uint32_t)cfg->subclass << 16 | (uint32_t)cfg->class_code << 24, 0);
    cfg_set(d, 0x0c, 2, 0, 0xffff); /* cache line size, latency timer */
    cfg_set(d, CFG_SUBSYS, 2, cfg->subsys_vendor, 0);
    cfg_set(d, CFG_SUBSYS + 2, 2, cfg->subsys_id, 0);
    d->intx = cfg->intx;
    cfg_set(d, CFG_INT_LINE, 1, cfg->intx ? intx_default_gsi(slot, 0)
                                          : 0xff, 0xff);
    cfg_set(d, CFG_INT_PIN, 1, cfg->intx ? 1 : 0, 0);
    ret = bars_setup(pci, d, cfg);
    if (!ret)
        ret = msix_setup(d, cfg);
    if (ret) {
        free(d);
        return ret;
    }
    if (cfg->multifunction)
        d->cfg[CFG_HEADER] |= 0x80;
    pci->devs[slot << 3 | fn] = d;
    pci->present[pci->npresent++] = d;
    if (fn)
        pci->devs[slot << 3]->cfg[CFG_HEADER] |= 0x80; /* multi-function */
    if (out)
        *out = d;
    return 0;
}

int pci_add(struct pci *pci, const struct pci_dev_config *cfg,
            const struct pci_func_ops *ops, void *opaque,
            struct pci_dev **out)
{
    for (int s = 1; s < PCI_SLOTS; s++)
        if (!pci->devs[s << 3])
            return pci_add_fn(pci, s, 0, cfg, ops, opaque, out);
    return -ENOSPC;
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
        /* KVM drops an irqfd whose eventfd closes. */
        for (unsigned v = 0; v < d->msix_n; v++)
            if (d->msix_efd[v] >= 0)
                close(d->msix_efd[v]);
        free(d);
    }
    pthread_mutex_destroy(&pci->irq_lock);
    free(pci);
}

bool pci_bus_master(struct pci_dev *d)
{
    return cfg_byte(d, CFG_COMMAND) & CMD_MASTER;
}

void *pci_dma(struct pci_dev *d, uint64_t gpa, uint64_t len)
{
    /* A function the guest did not make bus master cannot reach RAM. */
    if (!pci_bus_master(d))
        return NULL;
    return bus_guest_ram(d->pci->bus, gpa, len);
}

void pci_cfg_init(struct pci_dev *d, unsigned off, unsigned size,
                  uint32_t value, uint32_t wmask)
{
    if (off >= CFG_CAP_START && size <= 4 && off + size <= PCI_CFG_SIZE)
        cfg_set(d, off, size, value, wmask);
}

uint32_t pci_cfg_read(struct pci_dev *d, unsigned off, unsigned size)
{
    if (size > 4 || off + size > PCI_CFG_SIZE)
        return 0;
    return cfg_get_le(d, off, size);
}

void pci_cfg_write_ro(struct pci_dev *d, unsigned off, unsigned size,
                      uint32_t value)
{
    uint8_t b[4];

    if (off >= CFG_CAP_START && size <= 4 && off + size <= PCI_CFG_SIZE) {
        put_le(b, size, value);
        cfg_copy_in(d, off, b, size);
    }
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

/* ---- the machine's side ---- */

void *pci_host_guest_ram(void *host, uint64_t gpa, uint64_t len)
{
    return vm_gpa(host, gpa, len);
}

int pci_host_signal_msi(void *host, uint64_t addr, uint32_t data)
{
    struct vm *vm = host;
    struct kvm_msi msi = {
        .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
        .data = data,
    };

    return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

int pci_host_ioeventfd(void *host, uint64_t addr, unsigned len, int fd,
                       bool assign)
{
    struct vm *vm = host;
    struct kvm_ioeventfd io = {
        .addr = addr, .len = len, .fd = fd,
        .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
    };

    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

/* KVM_SET_GSI_ROUTING replaces the whole table: the irqchip routes KVM
 * sets up by default (GSI n on I/O APIC pin n, and on the PICs for n < 16)
 * go in again with the MSI routes. */
int pci_host_msi_routes(void *host, const struct bus_msi_route *routes,
                        unsigned n)
{
    struct vm *vm = host;
    unsigned max = 24 + 16 + n, k = 0;
    struct kvm_irq_routing *t = calloc(1, sizeof(*t) +
                                       max * sizeof(t->entries[0]));
    int ret;

    if (!t)
        return -ENOMEM;
    for (unsigned gsi = 0; gsi < 24; gsi++) {
        t->entries[k].gsi = gsi;
        t->entries[k].type = KVM_IRQ_ROUTING_IRQCHIP;
        t->entries[k].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        t->entries[k++].u.irqchip.pin = gsi;
        if (gsi >= 16)
            continue;
        t->entries[k].gsi = gsi;
        t->entries[k].type = KVM_IRQ_ROUTING_IRQCHIP;
        t->entries[k].u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                                  : KVM_IRQCHIP_PIC_SLAVE;
        t->entries[k++].u.irqchip.pin = gsi % 8;
    }
    for (unsigned i = 0; i < n; i++, k++) {
        t->entries[k].gsi = routes[i].gsi;
        t->entries[k].type = KVM_IRQ_ROUTING_MSI;
        t->entries[k].u.msi.address_lo = (uint32_t)routes[i].addr;
        t->entries[k].u.msi.address_hi = (uint32_t)(routes[i].addr >> 32);
        t->entries[k].u.msi.data = routes[i].data;
    }
    t->nr = k;
    ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, t) < 0 ? -errno : 0;
    free(t);
    return ret;
}

int pci_host_ioeventfd_pio(void *host, uint16_t port, unsigned len,
                           uint32_t value, int fd, bool assign)
{
    struct vm *vm = host;
    struct kvm_ioeventfd io = {
        .datamatch = value, .addr = port, .len = len, .fd = fd,
        .flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH |
                 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };

    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int pci_host_irqfd(void *host, int fd, unsigned gsi, bool assign)
{
    struct vm *vm = host;
    struct kvm_irqfd irqfd = {
        .fd = (uint32_t)fd, .gsi = gsi,
        .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
    };

    return ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

/* BARs go from 3 GiB up, where firmware would put them, even when RAM
 * ends lower (the guest may still move them anywhere in the window). */
#define PCI_BAR_ALLOC_BASE 0xc0000000ULL

/* Tells the firmware where each IDE drive sits, as the OpenFirmware
 * path SeaBIOS matches against "bootorder": channel, then unit. */
static int ide_boot_devices(struct vm *vm, const struct ide_config *ide,
                            const int *arg)
{
    int ret = 0;

    for (int s = 0; s < IDE_DRIVES && !ret; s++) {
        char path[64];

        if (!ide->used[s])
            continue;
        snprintf(path, sizeof(path), "/pci@i0cf8/ide@1,1/drive@%d/disk@%d",
                 s / 2, s % 2);
        ret = firmware_add_boot_device(vm, ide->drive[s].cdrom ? FIRMWARE_BOOT_CDROM
                                                               : FIRMWARE_BOOT_DISK,
                                       arg[s], path);
    }
    return ret;
}

/* Each --disk: virtio-blk functions at once, IDE drives into ide (arg:
 * which --disk each IDE slot came from). */
static int disks_add(struct vm *vm, const char *const *disks, int ndisks,
                     struct ide_config *ide, int *arg)
{
    int ret = 0;

    for (int i = 0; i < ndisks && !ret; i++) {
        struct disk_opts o;

        ret = disk_parse(disks[i], &o);
        if (ret)
            break;
        if (o.iface == DISK_IF_IDE) {
            ret = ide_config_add(ide, &o);
            if (ret >= 0)
                arg[ret] = i;
            ret = ret < 0 ? ret : 0;
            continue;
        }
        ret = virtio_blk_add(vm->pci, &o, (unsigned)vm->ncpus);
        disk_opts_free(&o);
    }
    return ret;
}

int pci_machine_create(struct vm *vm, const char *const *disks, int ndisks)
{
    struct ide_config ide = { 0 };
    int ide_arg[IDE_DRIVES] = { 0 };
    int ret = pci_create(vm->bus, vm->low_size, &vm->pci);

    if (ret) {
        vmm_error("PCI setup: %s", strerror(-ret));
        return ret;
    }
    if (vm->pci->mmio_next < PCI_BAR_ALLOC_BASE)
        vm->pci->mmio_next = PCI_BAR_ALLOC_BASE;
    ret = piix3_create(vm->pci, vm->bus, &vm->piix3);
    if (!ret)
        ret = acpi_pm_create(vm->pci, vm->bus, vm->firmware != NULL,
                             &vm->acpi_pm);
    if (!ret)
        ret = disks_add(vm, disks, ndisks, &ide, ide_arg);
    /* The IDE function only when a drive needs it: an empty controller
     * costs a guest's driver probe time (slow where ring 0 is emulated). */
    if (!ret && ide_config_any(&ide))
        ret = ide_create(vm->pci, vm->bus, &ide);
    if (!ret)
        ret = ide_boot_devices(vm, &ide, ide_arg);
    ide_config_free(&ide);
    return ret;
}

/* ---- ACPI: \_SB.PCI0 for the DSDT ----
 * A guest with ACPI finds PCI roots only in the DSDT (Linux does not
 * probe bus 0 by itself then), so describe the host bridge: its bus
 * range, the config ports, the I/O and memory windows, and _PRT (INTx of
 * slot s, pin p on GSI 16 + ((s + p) & 3), as pci_set_intx drives it). */

struct aml {
    uint8_t *p;
    size_t len, max;
};

static void aml_bytes(struct aml *a, const void *b, size_t n)
{
    if (a->len + n <= a->max)
        memcpy(a->p + a->len, b, n);
    a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

/* Moves the bytes from start on to make room for the PkgLength that
 * covers them (ACPI 6.4, 20.2.4: the length counts its own bytes). */
static void aml_pkg_close(struct aml *a, size_t start)
{
    size_t body = a->len - start, n = body + 1 < 0x40 ? 1 : body + 2 < 0x1000 ? 2 : 3;
    size_t total = body + n;
    uint8_t enc[3];

    if (n == 1) {
        enc[0] = (uint8_t)total;
    } else {
        enc[0] = (uint8_t)((n - 1) << 6 | (total & 0x0f));
        enc[1] = (uint8_t)(total >> 4);
        enc[2] = (uint8_t)(total >> 12);
    }
    if (a->len + n > a->max) {
        a->len += n;
        return;
    }
    memmove(a->p + start + n, a->p + start, body);
    memcpy(a->p + start, enc, n);
    a->len += n;
}

static void aml_int(struct aml *a, uint32_t v)
{
    if (v <= 1) {
        aml_byte(a, (uint8_t)v); /* ZeroOp / OneOp */
    } else if (v <= 0xff) {
        aml_byte(a, 0x0a);
        aml_byte(a, (uint8_t)v);
    } else {
        aml_byte(a, 0x0c);
        for (int i = 0; i < 4; i++)
            aml_byte(a, (uint8_t)(v >> (8 * i)));
    }
}

static void aml_crs(struct aml *a)
{
    static const uint8_t crs[] = {
        /* WordBusNumber 0-0xff */
        0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0x00, 0x00, 0xff, 0x00,
        0, 0, 0x00, 0x01,
        /* IO 0xcf8, 8 ports */
        0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08,
        /* WordIO 0x0000-0x0cf7 and 0x0d00-0xffff */
        0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x00, 0xf7, 0x0c,
        0, 0, 0xf8, 0x0c,
        0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff,
        0, 0, 0x00, 0xf3,
        /* DWordMemory 0xc0000000-0xfebfffff, read-write */
        0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0,
        0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe, 0, 0, 0, 0,
        0x00, 0x00, 0xc0, 0x3e,
        0x79, 0x00, /* end tag */
    };
    size_t start;

    aml_bytes(a, "\x08_CRS\x11", 6); /* Name(_CRS, Buffer */
    start = a->len;
    aml_int(a, sizeof(crs));
    aml_bytes(a, crs, sizeof(crs));
    aml_pkg_close(a, start);
}

static void aml_prt(struct aml *a)
{
    size_t start, entry;

    aml_bytes(a, "\x08_PRT\x12", 6); /* Name(_PRT, Package */
    start = a->len;
    aml_byte(a, (PCI_SLOTS - 1) * 4);
    for (unsigned s = 1; s < PCI_SLOTS; s++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            aml_byte(a, 0x12);
            entry = a->len;
            aml_byte(a, 4);
            aml_int(a, s << 16 | 0xffff);
            aml_int(a, pin);
            aml_int(a, 0); /* no link device: a GSI */
            aml_int(a, PCI_INTX_GSI_BASE + ((s + pin) & (PCI_INTX_LINES - 1)));
            aml_pkg_close(a, entry);
        }
    }
    aml_pkg_close(a, start);
}

size_t pci_acpi_aml(const struct pci *pci, uint8_t *buf, size_t max)
{
    struct aml a = { buf, 0, max };
    size_t scope, dev;

    if (!pci)
        return 0;
    aml_byte(&a, 0x10); /* Scope(\_SB) */
    scope = a.len;
    aml_bytes(&a, "\\_SB_", 5);
    aml_bytes(&a, "\x5b\x82", 2); /* Device(PCI0) */
    dev = a.len;
    aml_bytes(&a, "PCI0", 4);
    aml_bytes(&a, "\x08_HID\x0c\x41\xd0\x0a\x03", 10); /* EisaId PNP0A03 */
    aml_bytes(&a, "\x08_UID\x00", 6);
    aml_bytes(&a, "\x08_BBN\x00", 6);
    aml_crs(&a);
    aml_prt(&a);
    aml_pkg_close(&a, dev);
    aml_pkg_close(&a, scope);
    return a.len <= max ? a.len : 0;
}
