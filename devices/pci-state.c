/* Saved state of PCI bus 0 and its functions (devices/bus.h,
 * docs/VMSTATE.md): the configuration address latch, and per function
 * its configuration space, MSI-X table and pending bits, INTx level and
 * then whatever the function itself keeps (pci_func_ops.state).
 *
 * Loading restores only the configuration bits the guest can write
 * (wmask); the status register's interrupt bit follows INTx.  The
 * read-only bytes
 * describe the function, which the machine built again from the same
 * options, so a state cannot rewrite a capability chain or a BAR size. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/pci-int.h"
#include "devices/vmstate.h"

static int pci_bus_save(void *opaque, struct vmstate_cursor *w)
{
    struct pci *pci = opaque;

    vms_put_u32(w, pci->cf8);
    vms_put_u8(w, pci->rcr);
    return w->err;
}

static int pci_bus_load(void *opaque, struct vmstate_cursor *r)
{
    struct pci *pci = opaque;
    uint32_t cf8 = vms_get_u32(r);
    uint8_t rcr = vms_get_u8(r);

    if (vms_finish(r))
        return r->err;
    pci->cf8 = cf8;
    pci->rcr = rcr & 0x02;
    return 0;
}

static const struct bus_state_ops pci_bus_state = {
    .save = pci_bus_save, .load = pci_bus_load,
};

int pci_state_register_bus(struct pci *pci)
{
    return bus_register_state(pci->bus, "pci", &pci_bus_state, pci);
}

static int pci_fn_save(void *opaque, struct vmstate_cursor *w)
{
    struct pci_dev *d = opaque;
    uint8_t cfg[PCI_CFG_SPACE_SIZE];
    struct vmstate_cursor own;

    if (d->ops && !d->ops->state)
        return vms_fail(w, -ENOTSUP, "PCI function %s (%04x:%04x) cannot "
                        "be saved", d->name, cfg_get_le(d, PCI_VENDOR_ID, 2),
                        cfg_get_le(d, PCI_DEVICE_ID, 2));
    /* The function's own state first, into a buffer: its save quiesces
     * it (virtio waits for the request in flight, whose completion may
     * raise INTx or set a pending bit), so the interrupt state recorded
     * next is final.  The stream keeps its order: PCI, then the
     * function's own bytes. */
    vms_writer_init(&own);
    if (d->ops && d->ops->state->save(d->opaque, &own) && !own.err)
        own.err = -EIO;
    if (own.err) {
        vms_fail(w, own.err, "%s", own.msg[0] ? own.msg
                                               : "the function's state");
        vms_free(&own);
        return w->err;
    }
    cfg_copy_out(d, cfg, 0, PCI_CFG_SPACE_SIZE);
    vms_put(w, cfg, sizeof(cfg));
    pthread_mutex_lock(&d->pci->irq_lock);
    vms_put_u8(w, (uint8_t)d->msix_n);
    for (unsigned v = 0; v < d->msix_n; v++) {
        vms_put_u32(w, d->msix[v].addr_lo);
        vms_put_u32(w, d->msix[v].addr_hi);
        vms_put_u32(w, d->msix[v].data);
        vms_put_u32(w, d->msix[v].ctrl);
    }
    vms_put_u64(w, d->msix_pending);
    vms_put_u8(w, d->intx_level ? 1 : 0);
    pthread_mutex_unlock(&d->pci->irq_lock);
    if (own.len)
        vms_put(w, own.buf, own.len);
    vms_free(&own);
    return w->err;
}

static int pci_fn_load(void *opaque, struct vmstate_cursor *r)
{
    struct pci_dev *d = opaque;
    uint8_t cfg[PCI_CFG_SPACE_SIZE];
    struct msix_entry tab[PCI_MAX_MSIX];
    uint64_t pending;
    unsigned n;
    bool intx;

    vms_get(r, cfg, sizeof(cfg));
    n = vms_get_u8(r);
    if (!r->err && n != d->msix_n)
        return vms_fail(r, -EINVAL, "PCI %s has %u MSI-X vectors, the "
                        "state %u", d->name, d->msix_n, n);
    for (unsigned v = 0; v < n; v++) {
        tab[v].addr_lo = vms_get_u32(r);
        tab[v].addr_hi = vms_get_u32(r);
        tab[v].data = vms_get_u32(r);
        tab[v].ctrl = vms_get_u32(r) & PCI_MSIX_ENTRY_CTRL_MASKBIT;
    }
    pending = vms_get_u64(r);
    intx = vms_get_bool(r);
    if (r->err)
        return r->err;
    if (!d->ops && vms_finish(r))
        return r->err;
    if (n < 64)
        pending &= (1ULL << n) - 1;
    /* the power-on configuration, for a later machine reset */
    if (!d->reset_saved) {
        cfg_copy_out(d, d->reset_cfg, 0, PCI_CFG_SPACE_SIZE);
        d->reset_saved = true;
    }
    for (unsigned o = 0; o < PCI_CFG_SPACE_SIZE; o++)
        if (d->wmask[o])
            cfg_byte_set(d, o, (uint8_t)((cfg_byte(d, o) & ~d->wmask[o]) |
                                         (cfg[o] & d->wmask[o])));
    pthread_mutex_lock(&d->pci->irq_lock);
    memcpy(d->msix, tab, n * sizeof(tab[0]));
    d->msix_pending = pending;
    d->pci->routes_stale = true;
    pthread_mutex_unlock(&d->pci->irq_lock);
    pci_bars_update(d);
    if (d->msix_n)
        msix_ctrl_written(d);
    if (d->ops && d->ops->cfg_written)
        d->ops->cfg_written(d->opaque, PCI_STD_HEADER_SIZEOF,
                            PCI_CFG_SPACE_SIZE - PCI_STD_HEADER_SIZEOF);
    pthread_mutex_lock(&d->pci->irq_lock);
    if (d->intx)
        intx_drive_locked(d, intx);
    pthread_mutex_unlock(&d->pci->irq_lock);
    if (!d->ops)
        return 0;
    return d->ops->state->load(d->opaque, r);
}

static void pci_fn_resume(void *opaque)
{
    struct pci_dev *d = opaque;

    if (d->ops && d->ops->state && d->ops->state->resume)
        d->ops->state->resume(d->opaque);
}

static const struct bus_state_ops pci_fn_state = {
    .save = pci_fn_save, .load = pci_fn_load, .resume = pci_fn_resume,
};

int pci_state_register_fn(struct pci_dev *d)
{
    char name[48];

    snprintf(name, sizeof(name), "pci %s %04x:%04x", d->name,
             cfg_get_le(d, PCI_VENDOR_ID, 2), cfg_get_le(d, PCI_DEVICE_ID, 2));
    return bus_register_state(d->pci->bus, name, &pci_fn_state, d);
}
