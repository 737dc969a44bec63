/* virtio-pci (virtio 1.2, 4.1): the modern transport and the creation
 * of the PCI function (virtio_pci_create), with the split virtqueue in
 * queue.c and the legacy register block in pci-legacy.c.  The modern
 * BAR holds the common configuration (0x0000), the ISR byte (0x1000), the
 * device configuration (0x2000) and the notify area (0x3000, 4 bytes per
 * queue); BAR 1 holds the MSI-X table and PBA.  The guest finds them
 * through vendor capabilities in configuration space, and can reach any
 * of it through the PCI_CFG capability's window too (4.1.4.9).
 *
 * Modern-only (1af4:1040+n, revision 1): the modern BAR is BAR 0.
 * Transitional (1af4:1000-103f, the spec's table: 1000 network, 1001
 * block, 1005 entropy; subsystem id n, revision 0; QEMU's default
 * on a PCI bus): BAR 0 is the legacy register block in I/O space (4.1.4.8)
 * and the modern BAR is BAR 4.  A driver that goes through the legacy
 * block negotiates without VERSION_1 and places the rings itself (one
 * page frame number, legacy layout with the used ring 4096-aligned). */
#include "devices/virtio/virtio-int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "devices/byteorder.h"

#define BAR0_SIZE    0x4000  /* the modern BAR, whichever number it has */
#define BAR1_SIZE    0x1000
#define MODERN_BAR_TRANSITIONAL 4
#define OFF_COMMON   0x0000
#define OFF_ISR      0x1000
#define OFF_DEVICE   0x2000
#define OFF_NOTIFY   0x3000
#define NOTIFY_MULT  4
/* pci_cfg_data in the PCI_CFG capability: bar, offset and length above
 * it are the fields of every virtio capability. */
#define PCICFG_DATA  offsetof(struct virtio_pci_cfg_cap, pci_cfg_data)

_Static_assert(sizeof(struct virtio_pci_common_cfg) == 0x38,
               "virtio_pci_common_cfg");
_Static_assert(sizeof(struct virtio_pci_cfg_cap) == 20, "virtio_pci_cfg_cap");

/* ---- interrupts ---- */

void virtio_irq(struct virtio_pci *vp, uint16_t vector, uint8_t isr)
{
    if (pci_msix_enabled(vp->dev)) {
        pci_msix_notify(vp->dev, vector);
        return;
    }
    pthread_mutex_lock(&vp->isr_lock);
    vp->isr |= isr;
    pci_set_intx(vp->dev, 1);
    pthread_mutex_unlock(&vp->isr_lock);
}

uint8_t virtio_isr_read(struct virtio_pci *vp)
{
    uint8_t v;

    pthread_mutex_lock(&vp->isr_lock);
    v = vp->isr;
    vp->isr = 0;
    pci_set_intx(vp->dev, 0);
    pthread_mutex_unlock(&vp->isr_lock);
    return v;
}

/* The guest broke the queue rules: stop serving until it resets us. */
void virtio_set_needs_reset(struct virtio_pci *vp)
{
    /* Queue threads may get here at once: one of them tells the guest. */
    uint8_t old = atomic_fetch_or(&vp->status, VIRTIO_CONFIG_S_NEEDS_RESET);

    if (old & VIRTIO_CONFIG_S_NEEDS_RESET)
        return;
    if (old & VIRTIO_CONFIG_S_DRIVER_OK)
        virtio_irq(vp, vp->config_vector, VIRTIO_PCI_ISR_CONFIG);
}

/* ---- the common configuration ---- */

/* Runs on a vCPU under the bus lock and vp->lock (or on the main thread
 * for a machine reset, vCPUs stopped).  Status 0 goes out first: a queue
 * thread in the middle of a request sees it (virtq_ready()) between two
 * bounded pieces and drops the request, so taking each queue's lock
 * below waits for one piece of I/O, not for what the ring holds. */
void virtio_reset(struct virtio_pci *vp)
{
    vp->status = 0;
    vp->dfsel = vp->gfsel = 0;
    vp->qsel = 0;
    vp->config_vector = PCI_MSIX_NO_VECTOR;
    for (unsigned q = 0; q < vp->nq; q++) {
        struct virtq *vq = &vp->vq[q];

        pthread_mutex_lock(&vq->lock);
        vq->enabled = false;
        vq->size = vp->queue_max;
        vq->vector = PCI_MSIX_NO_VECTOR;
        vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
        vq->desc = NULL;
        vq->avail = NULL;
        vq->used = NULL;
        pthread_mutex_unlock(&vq->lock);
    }
    /* Every queue thread has now let go of its lock once with the status
     * at 0, and none passes virtq_ready() again before the next
     * DRIVER_OK: from here none reads the features, and none can set
     * NEEDS_RESET from a request it had started before the reset. */
    vp->status = 0;
    vp->legacy = false;
    vp->drv_features = 0;
    virtio_isr_read(vp);
}

void virtio_status_write(struct virtio_pci *vp, uint8_t v)
{
    uint64_t needed = vp->legacy ? 0 : 1ULL << VIRTIO_F_VERSION_1;

    if (!v) {
        virtio_reset(vp);
        return;
    }
    /* FEATURES_OK sticks only for a subset of what the device offered
     * that includes VERSION_1 (a legacy driver has no FEATURES_OK and
     * need not have it; if it sets the bit anyway, the subset rule holds). */
    if ((v & VIRTIO_CONFIG_S_FEATURES_OK) &&
        !(vp->status & VIRTIO_CONFIG_S_FEATURES_OK) &&
        ((vp->drv_features & ~vp->dev_features) ||
         (vp->drv_features & needed) != needed))
        v &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
    /* Bits only come and go together with a reset (the driver must not
     * clear them, 2.1.2): features stay frozen while queues run. */
    if ((v & VIRTIO_CONFIG_S_DRIVER_OK) &&
        !(vp->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
        /* A legacy driver starts without FEATURES_OK: what it gets is
         * what the legacy register could have given it, even if it wrote
         * more through the modern one first.  Set before DRIVER_OK is
         * seen by the queue threads (the status store publishes it). */
        if (vp->legacy && !(vp->status & VIRTIO_CONFIG_S_FEATURES_OK))
            vp->drv_features &= vp->dev_features & 0xffffffffULL;
        vp->status |= v;
        /* Buffers queued before DRIVER_OK get served now. */
        for (unsigned q = 0; q < vp->nq; q++)
            virtq_kick(vp, q);
        return;
    }
    vp->status |= v;
}

/* Reads or writes the field at off; fields are 1, 2, 4 or 8 bytes and
 * a 64-bit address may be written as two halves. */
static uint64_t *common_addr(struct virtq *vq, unsigned off)
{
    switch (off & ~7u) {
    case VIRTIO_PCI_COMMON_Q_DESCLO: return &vq->desc_gpa;
    case VIRTIO_PCI_COMMON_Q_AVAILLO: return &vq->avail_gpa;
    case VIRTIO_PCI_COMMON_Q_USEDLO: return &vq->used_gpa;
    }
    return NULL;
}

static uint64_t common_read(struct virtio_pci *vp, unsigned off)
{
    struct virtq *vq = vp->qsel < vp->nq ? &vp->vq[vp->qsel] : NULL;
    uint64_t *a;

    switch (off) {
    case VIRTIO_PCI_COMMON_DFSELECT: return vp->dfsel;
    case VIRTIO_PCI_COMMON_DF:
        return vp->dfsel < 2
                   ? (uint32_t)(vp->dev_features >> (32 * vp->dfsel)) : 0;
    case VIRTIO_PCI_COMMON_GFSELECT: return vp->gfsel;
    case VIRTIO_PCI_COMMON_GF:
        return vp->gfsel < 2
                   ? (uint32_t)(vp->drv_features >> (32 * vp->gfsel)) : 0;
    case VIRTIO_PCI_COMMON_MSIX: return vp->config_vector;
    case VIRTIO_PCI_COMMON_NUMQ: return vp->nq;
    case VIRTIO_PCI_COMMON_STATUS: return vp->status;
    case VIRTIO_PCI_COMMON_CFGGENERATION: return vp->config_gen;
    case VIRTIO_PCI_COMMON_Q_SELECT: return vp->qsel;
    case VIRTIO_PCI_COMMON_Q_SIZE: return vq ? vq->size : 0;
    case VIRTIO_PCI_COMMON_Q_MSIX: return vq ? vq->vector : PCI_MSIX_NO_VECTOR;
    case VIRTIO_PCI_COMMON_Q_ENABLE: return vq ? vq->enabled : 0;
    case VIRTIO_PCI_COMMON_Q_NOFF: return vp->qsel;
    }
    a = vq ? common_addr(vq, off) : NULL;
    return a ? *a >> (8 * (off & 4)) : 0;
}

static void common_write(struct virtio_pci *vp, unsigned off, uint64_t v,
                         unsigned size)
{
    struct virtq *vq = vp->qsel < vp->nq ? &vp->vq[vp->qsel] : NULL;
    uint64_t *a;

    switch (off) {
    case VIRTIO_PCI_COMMON_DFSELECT: vp->dfsel = (uint32_t)v; return;
    case VIRTIO_PCI_COMMON_GFSELECT: vp->gfsel = (uint32_t)v; return;
    case VIRTIO_PCI_COMMON_GF:
        if (vp->gfsel < 2 && !virtio_features_frozen(vp)) {
            unsigned sh = 32 * vp->gfsel;

            vp->drv_features = (vp->drv_features & ~(0xffffffffULL << sh)) |
                               (v & 0xffffffffULL) << sh;
        }
        return;
    case VIRTIO_PCI_COMMON_MSIX: vp->config_vector = (uint16_t)v; return;
    case VIRTIO_PCI_COMMON_STATUS: virtio_status_write(vp, (uint8_t)v); return;
    case VIRTIO_PCI_COMMON_Q_SELECT: vp->qsel = (uint16_t)v; return;
    }
    if (!vq || vq->enabled)
        return; /* queue fields are frozen while the queue runs */
    switch (off) {
    case VIRTIO_PCI_COMMON_Q_SIZE: vq->size = (uint16_t)v; return;
    case VIRTIO_PCI_COMMON_Q_MSIX: vq->vector = (uint16_t)v; return;
    case VIRTIO_PCI_COMMON_Q_ENABLE:
        if (v == 1) {
            pthread_mutex_lock(&vq->lock);
            virtq_enable(vp, vq);
            pthread_mutex_unlock(&vq->lock);
        }
        return;
    }
    a = common_addr(vq, off);
    if (a && size == 8)
        *a = v;
    else if (a && (off & 4))
        *a = (*a & 0xffffffffULL) | v << 32;
    else if (a)
        *a = (*a & ~0xffffffffULL) | (v & 0xffffffffULL);
}

/* Field sizes by offset; an access must be exactly one field (or half of
 * a 64-bit one). */
static unsigned common_field_size(unsigned off)
{
    if (off < VIRTIO_PCI_COMMON_MSIX)
        return off % 4 ? 0 : 4;
    if (off == VIRTIO_PCI_COMMON_STATUS ||
        off == VIRTIO_PCI_COMMON_CFGGENERATION)
        return 1;
    if (off < VIRTIO_PCI_COMMON_Q_DESCLO)
        return off % 2 ? 0 : 2;
    if (off < sizeof(struct virtio_pci_common_cfg))
        return off % 4 ? 0 : 8;
    return 0;
}

static void common_rw(struct virtio_pci *vp, unsigned off, uint8_t *data,
                      unsigned size, bool is_write)
{
    unsigned fs = common_field_size(off);

    if (!fs || !(size == fs || (fs == 8 && size == 4))) {
        if (!is_write)
            memset(data, 0, size);
        return;
    }
    pthread_mutex_lock(&vp->lock);
    if (is_write)
        common_write(vp, off, get_le(data, size), size);
    else
        put_le(data, size, common_read(vp, off));
    pthread_mutex_unlock(&vp->lock);
}

/* ---- the modern BAR ---- */

static void modern_rw(struct virtio_pci *vp, uint64_t off, uint8_t *data,
                      unsigned size, bool is_write)
{
    if (off < OFF_ISR) {
        common_rw(vp, (unsigned)off, data, size, is_write);
    } else if (off < OFF_DEVICE) {
        if (!is_write)
            put_le(data, size, off == OFF_ISR ? virtio_isr_read(vp) : 0);
    } else if (off < OFF_NOTIFY) {
        if (vp->ops->config_rw)
            vp->ops->config_rw(vp->opaque, off - OFF_DEVICE, data, size,
                               is_write);
    } else if (is_write) {
        unsigned q = (unsigned)(off - OFF_NOTIFY) / NOTIFY_MULT;

        /* Only when KVM did not take it through the ioeventfd. */
        if (q < vp->nq)
            virtq_kick(vp, q);
    } else {
        memset(data, 0, size);
    }
}

static void virtio_bar_rw(void *opaque, int bar, uint64_t off, uint8_t *data,
                          unsigned size, bool is_write)
{
    struct virtio_pci *vp = opaque;

    if (bar == vp->mbar)
        modern_rw(vp, off, data, size, is_write);
    else if (bar == 0 && vp->transitional)
        virtio_legacy_rw(vp, (unsigned)off, data, size, is_write);
    else if (!is_write)
        memset(data, 0, size);
}

/* ---- the PCI_CFG capability: a window on the BARs through
 * configuration space, for drivers that cannot map them (4.1.4.9) ---- */

static void pcicfg_access(struct virtio_pci *vp, bool is_write)
{
    unsigned c = vp->pcicfg_cap;
    unsigned bar = pci_cfg_read(vp->dev, c + VIRTIO_PCI_CAP_BAR, 1);
    uint32_t off = pci_cfg_read(vp->dev, c + VIRTIO_PCI_CAP_OFFSET, 4);
    uint32_t len = pci_cfg_read(vp->dev, c + VIRTIO_PCI_CAP_LENGTH, 4);
    uint64_t bar_size = bar == (unsigned)vp->mbar ? BAR0_SIZE
                      : bar == 0 && vp->transitional ? vp->legacy_size : 0;
    uint8_t data[4] = { 0 };

    /* The driver must use an aligned access of 1, 2 or 4 bytes inside
     * the BAR; anything else does nothing (and reads as zero). */
    if ((len == 1 || len == 2 || len == 4) && !(off % len) &&
        off + (uint64_t)len <= bar_size) {
        if (is_write)
            put_le32(data, pci_cfg_read(vp->dev, c + PCICFG_DATA, 4));
        virtio_bar_rw(vp, (int)bar, off, data, len, is_write);
    }
    if (!is_write)
        pci_cfg_write_ro(vp->dev, c + PCICFG_DATA, 4, get_le32(data));
}

static bool pcicfg_data_hit(struct virtio_pci *vp, unsigned off,
                            unsigned size)
{
    unsigned data = vp->pcicfg_cap + (unsigned)PCICFG_DATA;

    return vp->pcicfg_cap && off < data + 4 && off + size > data;
}

static void virtio_cfg_written(void *opaque, unsigned off, unsigned size)
{
    struct virtio_pci *vp = opaque;

    if (pcicfg_data_hit(vp, off, size))
        pcicfg_access(vp, true);
}

static void virtio_cfg_read(void *opaque, unsigned off, unsigned size)
{
    struct virtio_pci *vp = opaque;

    if (pcicfg_data_hit(vp, off, size))
        pcicfg_access(vp, false);
}

static void virtio_bar_moved(void *opaque, int bar, uint64_t addr)
{
    struct virtio_pci *vp = opaque;
    struct bus *bus = pci_dev_bus(vp->dev);

    if (bar == 0 && vp->transitional) {
        virtio_legacy_bar_moved(vp, (uint16_t)addr);
        return;
    }
    if (bar != vp->mbar)
        return;
    for (unsigned q = 0; q < vp->nq; q++) {
        struct virtq *vq = &vp->vq[q];
        uint64_t at = OFF_NOTIFY + NOTIFY_MULT * q;

        if (vq->ioeventfd)
            bus_ioeventfd(bus, vp->bar0 + at, 2, vq->kick_fd, false);
        /* Without an ioeventfd the notify write exits and kicks. */
        vq->ioeventfd =
            addr && bus_ioeventfd(bus, addr + at, 2, vq->kick_fd, true) == 0;
    }
    vp->bar0 = addr;
}

/* Machine reset: the device forgets the driver, as on a status write of
 * 0.  virtio_reset() takes each queue's lock, so a request the queue's
 * I/O thread is serving completes first and no later one starts. */
static void virtio_machine_reset(void *opaque)
{
    struct virtio_pci *vp = opaque;

    pthread_mutex_lock(&vp->lock);
    virtio_reset(vp);
    vp->config_gen++;
    pthread_mutex_unlock(&vp->lock);
}

static void virtio_stop(void *opaque)
{
    struct virtio_pci *vp = opaque;

    if (vp->ops->stop)
        vp->ops->stop(vp->opaque);
}

static void virtio_destroy(void *opaque)
{
    struct virtio_pci *vp = opaque;

    if (vp->ops->destroy)
        vp->ops->destroy(vp->opaque);
    for (unsigned q = 0; q < vp->nq; q++) {
        if (vp->vq[q].kick_fd >= 0)
            close(vp->vq[q].kick_fd);
        pthread_mutex_destroy(&vp->vq[q].lock);
    }
    pthread_mutex_destroy(&vp->lock);
    pthread_mutex_destroy(&vp->isr_lock);
    free(vp);
}

static const struct pci_func_ops virtio_pci_ops = {
    .bar_rw = virtio_bar_rw,
    .bar_moved = virtio_bar_moved,
    .cfg_written = virtio_cfg_written,
    .cfg_read = virtio_cfg_read,
    .reset = virtio_machine_reset,
    .stop = virtio_stop,
    .destroy = virtio_destroy,
    .state = &virtio_pci_state, /* devices/virtio/state.c */
};

/* ---- setup ---- */

static int add_vendor_cap(struct virtio_pci *vp, uint8_t type, uint32_t off,
                          uint32_t len, bool notify)
{
    uint8_t cap[sizeof(struct virtio_pci_notify_cap)] = {
        [VIRTIO_PCI_CAP_VNDR] = PCI_CAP_ID_VNDR,
        [VIRTIO_PCI_CAP_LEN] = notify ? sizeof(struct virtio_pci_notify_cap)
                                      : sizeof(struct virtio_pci_cap),
        [VIRTIO_PCI_CAP_CFG_TYPE] = type,
        [VIRTIO_PCI_CAP_BAR] = (uint8_t)vp->mbar,
    };

    put_le32(cap + VIRTIO_PCI_CAP_OFFSET, off);
    put_le32(cap + VIRTIO_PCI_CAP_LENGTH, len);
    if (notify)
        put_le32(cap + VIRTIO_PCI_NOTIFY_CAP_MULT, NOTIFY_MULT);
    return pci_add_cap(vp->dev, cap, cap[2]);
}

/* bar, offset, length and pci_cfg_data are the driver's to write. */
static int add_pcicfg_cap(struct virtio_pci *vp)
{
    uint8_t cap[sizeof(struct virtio_pci_cfg_cap)] = {
        [VIRTIO_PCI_CAP_VNDR] = PCI_CAP_ID_VNDR,
        [VIRTIO_PCI_CAP_LEN] = sizeof(struct virtio_pci_cfg_cap),
        [VIRTIO_PCI_CAP_CFG_TYPE] = VIRTIO_PCI_CAP_PCI_CFG,
    };
    int off = pci_add_cap(vp->dev, cap, sizeof(cap));

    if (off < 0)
        return off;
    pci_cfg_init(vp->dev, (unsigned)off + VIRTIO_PCI_CAP_BAR, 1, 0, 0xff);
    pci_cfg_init(vp->dev, (unsigned)off + VIRTIO_PCI_CAP_OFFSET, 4, 0,
                 0xffffffffu);
    pci_cfg_init(vp->dev, (unsigned)off + VIRTIO_PCI_CAP_LENGTH, 4, 0,
                 0xffffffffu);
    pci_cfg_init(vp->dev, (unsigned)off + PCICFG_DATA, 4, 0, 0xffffffffu);
    vp->pcicfg_cap = (uint8_t)off;
    return 0;
}

static int add_caps(struct virtio_pci *vp)
{
    if (add_vendor_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, OFF_COMMON,
                       sizeof(struct virtio_pci_common_cfg), false) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, OFF_NOTIFY,
                       NOTIFY_MULT * vp->nq, true) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, OFF_ISR, 1, false) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, OFF_DEVICE, 0x1000,
                       false) < 0 ||
        add_pcicfg_cap(vp) < 0)
        return -ENOSPC;
    return 0;
}

/* The transitional device ID of a device type (virtio 1.2, 4.1.2.1):
 * not 0x1000 + type - 1 beyond block, so a table. */
static uint16_t transitional_id(uint16_t type)
{
    switch (type) {
    case 1: return 0x1000; /* network */
    case 2: return 0x1001; /* block */
    case 3: return 0x1003; /* console */
    case 4: return 0x1005; /* entropy */
    case 5: return 0x1002; /* memory balloon */
    case 8: return 0x1004; /* SCSI host */
    case 9: return 0x1009; /* 9P transport */
    default: return 0;
    }
}

/* IDs and BARs: modern-only, or transitional as QEMU lays it out on a
 * PCI bus (legacy I/O BAR 0, MSI-X BAR 1, modern BAR 4). */
static void pci_config_fill(const struct virtio_pci_config *cfg,
                            struct pci_dev_config *pc, unsigned legacy_size)
{
    *pc = (struct pci_dev_config){
        .vendor = 0x1af4, .device = (uint16_t)(0x1040 + cfg->device_type),
        .subsys_vendor = 0x1af4, .subsys_id = 0x1100,
        .class_code = cfg->class_code, .subclass = cfg->subclass,
        .revision = 1, /* modern only (4.1.2.1) */
        .bar_size = { BAR0_SIZE, BAR1_SIZE },
        .msix_vectors = cfg->num_queues + 1, .msix_bar = 1, .intx = true,
    };
    if (!cfg->transitional)
        return;
    pc->device = transitional_id(cfg->device_type);
    pc->subsys_id = cfg->device_type; /* legacy drivers match on it */
    pc->revision = 0;
    pc->bar_size[0] = legacy_size;
    pc->bar_io = 1;
    pc->bar_size[MODERN_BAR_TRANSITIONAL] = BAR0_SIZE;
}

int virtio_pci_create(struct pci *pci, const struct virtio_pci_config *cfg,
                      const struct virtio_dev_ops *ops, void *opaque,
                      struct virtio_pci **out)
{
    struct pci_dev_config pc;
    struct virtio_pci *vp;
    int ret;

    *out = NULL;
    if (!cfg->num_queues || cfg->num_queues > VIRTIO_MAX_QUEUES ||
        !cfg->queue_max || cfg->queue_max > VIRTQ_MAX_SIZE ||
        (cfg->queue_max & (cfg->queue_max - 1)) ||
        (cfg->transitional && (!transitional_id(cfg->device_type) ||
                               VIRTIO_PCI_CONFIG_OFF(true) +
                                   cfg->config_size > 256)))
        return -EINVAL;
    vp = calloc(1, sizeof(*vp));
    if (!vp)
        return -ENOMEM;
    pthread_mutex_init(&vp->lock, NULL);
    pthread_mutex_init(&vp->isr_lock, NULL);
    vp->ops = ops;
    vp->opaque = opaque;
    vp->nq = cfg->num_queues;
    vp->queue_max = cfg->queue_max;
    vp->transitional = cfg->transitional;
    vp->mbar = cfg->transitional ? MODERN_BAR_TRANSITIONAL : 0;
    vp->legacy_size = virtio_legacy_bar_size(cfg->config_size);
    pci_config_fill(cfg, &pc, vp->legacy_size);
    vp->dev_features = cfg->features | 1ULL << VIRTIO_F_VERSION_1 |
                       1ULL << VIRTIO_RING_F_INDIRECT_DESC |
                       1ULL << VIRTIO_RING_F_EVENT_IDX;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        vp->vq[q].kick_fd = -1;
        pthread_mutex_init(&vp->vq[q].lock, NULL);
    }
    for (unsigned q = 0; q < vp->nq; q++) {
        vp->vq[q].kick_fd = eventfd(0, EFD_CLOEXEC);
        if (vp->vq[q].kick_fd < 0) {
            ret = -errno;
            goto fail;
        }
    }
    ret = pci_add_fn(pci, cfg->slot, 0, &pc, &virtio_pci_ops, vp, &vp->dev);
    if (ret)
        goto fail;
    /* From here vp (and opaque, through ops->destroy) belong to the PCI
     * function: pci_destroy() frees them even if this fails. */
    *out = vp;
    virtio_reset(vp);
    return add_caps(vp);
fail:
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (vp->vq[q].kick_fd >= 0)
            close(vp->vq[q].kick_fd);
        pthread_mutex_destroy(&vp->vq[q].lock);
    }
    free(vp);
    return ret;
}

uint64_t virtio_features(struct virtio_pci *vp)
{
    return vp->drv_features & vp->dev_features;
}
