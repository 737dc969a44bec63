/* MSI-X for the PCI core: the capability in configuration space, the
 * vector table and pending-bit array in a BAR, and delivery.  An unmasked
 * vector goes out through an irqfd with its own GSI and MSI route (an
 * eventfd write, no ioctl on the hot path); a masked one is remembered in
 * the PBA and sent when unmasked.  All of it runs under pci->irq_lock,
 * because I/O threads send vectors while vCPUs rewrite the table. */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/pci-int.h"

bool pci_msix_enabled(struct pci_dev *d)
{
    bool on;

    pthread_mutex_lock(&d->pci->irq_lock);
    on = d->msix_n && (d->msix_ctrl & PCI_MSIX_FLAGS_ENABLE);
    pthread_mutex_unlock(&d->pci->irq_lock);
    return on;
}

static bool msix_masked(const struct pci_dev *d, unsigned v)
{
    return (d->msix_ctrl & PCI_MSIX_FLAGS_MASKALL) ||
           (d->msix[v].ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
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
    if ((d->msix_ctrl & PCI_MSIX_FLAGS_ENABLE) && vector < d->msix_n)
        ret = msix_send_locked(d, vector);
    pthread_mutex_unlock(&d->pci->irq_lock);
    return ret;
}

/* After a mask bit cleared: what was held back goes out now. */
static void msix_flush_pending_locked(struct pci_dev *d)
{
    if (!(d->msix_ctrl & PCI_MSIX_FLAGS_ENABLE))
        return;
    for (unsigned v = 0; v < d->msix_n; v++)
        if ((d->msix_pending >> v & 1) && !msix_masked(d, v))
            msix_send_locked(d, v);
}

void msix_table_rw(struct pci_dev *d, uint64_t off, uint8_t *data,
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

void msix_ctrl_written(struct pci_dev *d)
{
    pthread_mutex_lock(&d->pci->irq_lock);
    d->msix_ctrl = (uint16_t)cfg_get_le(d, d->msix_cap + 2u, 2);
    /* With MSI-X on, INTx is not used (PCI 3.0 6.8.2). */
    if (d->msix_ctrl & PCI_MSIX_FLAGS_ENABLE)
        intx_drive_locked(d, 0);
    msix_flush_pending_locked(d);
    pthread_mutex_unlock(&d->pci->irq_lock);
}

int msix_setup(struct pci_dev *d, const struct pci_dev_config *cfg)
{
    uint8_t cap[12] = { PCI_CAP_ID_MSIX };
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
    d->wmask[off + 3] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
    d->msix_n = cfg->msix_vectors;
    d->msix_bar = cfg->msix_bar;
    for (unsigned v = 0; v < d->msix_n; v++)
        d->msix[v].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
    return 0;
}

void msix_reset_locked(struct pci_dev *d)
{
    d->msix_ctrl = 0;
    d->msix_pending = 0;
    for (unsigned v = 0; v < d->msix_n; v++)
        d->msix[v] = (struct msix_entry){ .ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT };
    d->pci->routes_stale = true; /* the irqfds' routes follow the table */
}

void msix_release(struct pci_dev *d)
{
    for (unsigned v = 0; v < d->msix_n; v++)
        if (d->msix_efd[v] >= 0)
            close(d->msix_efd[v]);
}
