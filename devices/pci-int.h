/* Inside the PCI core: the state devices/pci.c (configuration space,
 * BARs, INTx) and devices/msix.c (the MSI-X capability, table and PBA)
 * share.  Nothing outside those two files includes this; functions see
 * only devices/pci.h. */
#ifndef CALF_DEVICES_PCI_INT_H
#define CALF_DEVICES_PCI_INT_H

#include <linux/pci_regs.h>
#include <pthread.h>

#include "devices/byteorder.h"
#include "devices/pci.h"

#define PCI_DEVFNS (PCI_SLOTS * 8)
#define PCI_ISA_IRQS 24

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
    uint8_t cfg[PCI_CFG_SPACE_SIZE];
    uint8_t wmask[PCI_CFG_SPACE_SIZE];
    /* The configuration space as the guest first found it, taken at its
     * first configuration write: what a machine reset restores. */
    uint8_t reset_cfg[PCI_CFG_SPACE_SIZE];
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
static inline uint8_t cfg_byte(const struct pci_dev *d, unsigned off)
{
    return __atomic_load_n(&d->cfg[off], __ATOMIC_RELAXED);
}

static inline void cfg_byte_set(struct pci_dev *d, unsigned off, uint8_t v)
{
    __atomic_store_n(&d->cfg[off], v, __ATOMIC_RELAXED);
}

static inline uint32_t cfg_get_le(const struct pci_dev *d, unsigned off,
                                  unsigned size)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < size && i < 4; i++)
        v |= (uint32_t)cfg_byte(d, off + i) << (8 * i);
    return v;
}

static inline void cfg_copy_out(const struct pci_dev *d, uint8_t *dst,
                                unsigned off, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        dst[i] = cfg_byte(d, off + i);
}

static inline void cfg_copy_in(struct pci_dev *d, unsigned off,
                               const uint8_t *src, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        cfg_byte_set(d, off + i, src[i]);
}

/* pci-state.c: registers the saved state of function d ("pci 00:02.0
 * VVVV:DDDD") and of the bus itself. */
int pci_state_register_fn(struct pci_dev *d);
int pci_state_register_bus(struct pci *pci);
/* pci.c, for pci-state.c */
void pci_bars_update(struct pci_dev *d);

/* pci.c */
/* Drives d's INTx line to level; irq_lock held. */
void intx_drive_locked(struct pci_dev *d, int level);

/* msix.c; irq_lock taken inside unless named _locked */
/* The capability at configuration setup (cfg->msix_vectors of them). */
int msix_setup(struct pci_dev *d, const struct pci_dev_config *cfg);
/* A guest access to the table or the PBA, at off in the MSI-X BAR. */
void msix_table_rw(struct pci_dev *d, uint64_t off, uint8_t *data,
                   unsigned size, bool is_write);
/* The guest wrote the capability's control word. */
void msix_ctrl_written(struct pci_dev *d);
/* Machine reset: every vector masked, nothing pending. */
void msix_reset_locked(struct pci_dev *d);
/* Teardown: closes the vectors' irqfds (KVM drops an irqfd whose
 * eventfd closes). */
void msix_release(struct pci_dev *d);

#endif
