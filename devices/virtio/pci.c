/* virtio-pci (virtio 1.2, 4.1) and split virtqueues (2.7).  The modern
 * BAR holds the common configuration (0x0000), the ISR byte (0x1000), the
 * device configuration (0x2000) and the notify area (0x3000, 4 bytes per
 * queue); BAR 1 holds the MSI-X table and PBA.  The guest finds them
 * through vendor capabilities in configuration space, and can reach any
 * of it through the PCI_CFG capability's window too (4.1.4.9).
 *
 * Modern-only (1af4:1040+n, revision 1): the modern BAR is BAR 0.
 * Transitional (1af4:1000+n-1, subsystem id n, revision 0; QEMU's default
 * on a PCI bus): BAR 0 is the legacy register block in I/O space (4.1.4.8)
 * and the modern BAR is BAR 4.  A driver that goes through the legacy
 * block negotiates without VERSION_1 and places the rings itself (one
 * page frame number, legacy layout with the used ring 4096-aligned). */
#include "devices/virtio/virtio.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define BAR0_SIZE    0x4000  /* the modern BAR, whichever number it has */
#define BAR1_SIZE    0x1000
#define MODERN_BAR_TRANSITIONAL 4
#define OFF_COMMON   0x0000
#define OFF_ISR      0x1000
#define OFF_DEVICE   0x2000
#define OFF_NOTIFY   0x3000
#define NOTIFY_MULT  4

#define CAP_VENDOR   0x09
#define CFG_COMMON   1
#define CFG_NOTIFY   2
#define CFG_ISR      3
#define CFG_DEVICE   4
#define CFG_PCI      5
#define PCICFG_CAP_LEN 20

/* The legacy register block (virtio 0.9.5 / 1.2 4.1.4.8) */
#define LEG_HOST_FEATURES  0x00
#define LEG_GUEST_FEATURES 0x04
#define LEG_QUEUE_PFN      0x08
#define LEG_QUEUE_NUM      0x0c
#define LEG_QUEUE_SEL      0x0e
#define LEG_QUEUE_NOTIFY   0x10
#define LEG_STATUS         0x12
#define LEG_ISR            0x13
#define LEG_CONFIG_VECTOR  0x14 /* these two only while MSI-X is on */
#define LEG_QUEUE_VECTOR   0x16
#define LEG_CONFIG         0x14 /* 0x18 while MSI-X is on */
#define LEG_CONFIG_MSIX    0x18
#define LEG_ALIGN          4096

#define DESC_F_NEXT     1
#define DESC_F_WRITE    2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1

#define ISR_QUEUE  1
#define ISR_CONFIG 2

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct virtq {
    /* Held by the queue's I/O thread while it serves requests, and by
     * the vCPU that enables or resets the queue. */
    pthread_mutex_t lock;
    uint16_t size;
    /* Written by vCPUs (the legacy block even while the queue runs),
     * read by the queue's thread when it interrupts. */
    _Atomic uint16_t vector;
    bool enabled;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* Host views of the rings, valid while enabled. */
    struct vring_desc *desc;
    uint16_t *avail; /* flags, idx, ring[size], used_event */
    uint8_t *used;   /* flags, idx, {id, len}[size], avail_event */
    uint16_t last_avail, used_idx, signalled_used;
    bool signalled_valid;
    int kick_fd;
    bool ioeventfd;
    bool ioeventfd_pio;  /* on the legacy notify port */
};

struct virtio_pci {
    struct pci_dev *dev;
    const struct virtio_dev_ops *ops;
    void *opaque;
    pthread_mutex_t lock;      /* the common configuration (vCPUs) */
    pthread_mutex_t isr_lock;  /* ISR byte and the INTx level together */
    uint64_t dev_features, drv_features;
    uint32_t dfsel, gfsel;
    _Atomic uint8_t status;    /* also read and set by I/O threads */
    uint8_t config_gen, isr;
    uint16_t qsel, queue_max;
    _Atomic uint16_t config_vector; /* also read by I/O threads */
    unsigned nq;
    uint64_t bar0; /* where the modern BAR decodes now, 0: nowhere */
    uint16_t iobar; /* where the legacy block decodes now, 0: nowhere */
    int mbar;      /* the modern BAR's number */
    bool transitional;
    /* The driver speaks the legacy interface (since its last reset). */
    _Atomic bool legacy;
    unsigned legacy_size;
    uint8_t pcicfg_cap; /* offset of the PCI_CFG capability */
    struct virtq vq[VIRTIO_MAX_QUEUES];
};

static uint64_t get_le(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *p, unsigned size, uint64_t v)
{
    for (unsigned i = 0; i < size; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- interrupts ---- */

static void virtio_irq(struct virtio_pci *vp, uint16_t vector, uint8_t isr)
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

static uint8_t isr_read(struct virtio_pci *vp)
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
static void virtio_set_needs_reset(struct virtio_pci *vp)
{
    /* Queue threads may get here at once: one of them tells the guest. */
    uint8_t old = atomic_fetch_or(&vp->status, VIRTIO_S_NEEDS_RESET);

    if (old & VIRTIO_S_NEEDS_RESET)
        return;
    if (old & VIRTIO_S_DRIVER_OK)
        virtio_irq(vp, vp->config_vector, ISR_CONFIG);
}

/* ---- the split virtqueue ---- */

static uint16_t load16(const void *p)
{
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static void store16(void *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

bool virtq_ready(struct virtio_pci *vp, unsigned q)
{
    uint8_t st = vp->status;

    /* A legacy driver has no FEATURES_OK: DRIVER_OK is its last word. */
    return q < vp->nq && vp->vq[q].enabled &&
           (st & VIRTIO_S_DRIVER_OK) &&
           ((st & VIRTIO_S_FEATURES_OK) || vp->legacy) &&
           !(st & VIRTIO_S_NEEDS_RESET);
}

/* Only what the device offered counts, whichever way the driver got
 * more into drv_features (a modern write it never confirmed with
 * FEATURES_OK, then the legacy interface). */
static bool has_feature(const struct virtio_pci *vp, unsigned bit)
{
    return (vp->drv_features & vp->dev_features) >> bit & 1;
}

/* Appends one buffer of a chain; device-readable ones must all come
 * before device-writable ones (2.7.4.2). */
static int chain_add(struct virtio_pci *vp, struct virtq_req *req,
                     const struct vring_desc *d)
{
    void *p;

    if (!d->len)
        return 0;
    if (req->n_out + req->n_in == VIRTQ_MAX_CHAIN)
        return -E2BIG;
    p = pci_dma(vp->dev, d->addr, d->len);
    if (!p)
        return -EFAULT;
    if (d->flags & DESC_F_WRITE) {
        req->iov[req->n_out + req->n_in++] = (struct iovec){ p, d->len };
    } else {
        if (req->n_in)
            return -EINVAL;
        req->iov[req->n_out++] = (struct iovec){ p, d->len };
    }
    return 0;
}

/* Walks the chain at head into req.  Every index is checked against the
 * table it indexes, and a chain may visit at most as many descriptors as
 * its table holds, so a loop ends in an error, not a hang. */
static int chain_walk(struct virtio_pci *vp, struct virtq *vq, uint16_t head,
                      struct virtq_req *req)
{
    const struct vring_desc *tbl = vq->desc;
    unsigned n = vq->size, i = head, seen = 0;
    bool indirect = false;
    int ret;

    req->head = head;
    req->n_out = req->n_in = 0;
    for (;;) {
        struct vring_desc d;

        if (i >= n || ++seen > n)
            return -ELOOP;
        memcpy(&d, &tbl[i], sizeof(d)); /* the guest may change it under us */
        if (d.flags & DESC_F_INDIRECT) {
            if (indirect || (d.flags & DESC_F_NEXT) ||
                !has_feature(vp, VIRTIO_F_INDIRECT_DESC) || !d.len ||
                d.len % sizeof(d) || d.len / sizeof(d) > VIRTQ_MAX_CHAIN)
                return -EINVAL;
            tbl = pci_dma(vp->dev, d.addr, d.len);
            if (!tbl)
                return -EFAULT;
            n = d.len / sizeof(d);
            i = 0;
            seen = 0;
            indirect = true;
            continue;
        }
        ret = chain_add(vp, req, &d);
        if (ret)
            return ret;
        if (!(d.flags & DESC_F_NEXT))
            return 0;
        i = d.next;
    }
}

int virtq_pop(struct virtio_pci *vp, unsigned q, struct virtq_req *req)
{
    struct virtq *vq = &vp->vq[q];
    uint16_t avail_idx, head;
    int ret;

    if (!virtq_ready(vp, q))
        return 0;
    /* Without bus mastering the device may not even read the ring: a
     * device error the driver sees as NEEDS_RESET. */
    if (!pci_bus_master(vp->dev)) {
        virtio_set_needs_reset(vp);
        return -EIO;
    }
    avail_idx = load16(&vq->avail[1]);
    if (avail_idx == vq->last_avail && has_feature(vp, VIRTIO_F_EVENT_IDX)) {
        /* Ask for a kick at the next buffer, then look once more: one
         * may have come in before the driver saw avail_event. */
        store16(vq->used + 4 + 8 * vq->size, vq->last_avail);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        avail_idx = load16(&vq->avail[1]);
    }
    if (avail_idx == vq->last_avail)
        return 0;
    if ((uint16_t)(avail_idx - vq->last_avail) > vq->size) {
        virtio_set_needs_reset(vp);
        return -EINVAL;
    }
    head = load16(&vq->avail[2 + vq->last_avail % vq->size]);
    vq->last_avail++;
    ret = chain_walk(vp, vq, head, req);
    if (ret) {
        virtio_set_needs_reset(vp);
        return ret;
    }
    return 1;
}

void virtq_push(struct virtio_pci *vp, unsigned q, const struct virtq_req *req,
                uint32_t len)
{
    struct virtq *vq = &vp->vq[q];
    uint8_t *elem;
    uint32_t id = req->head;

    /* Bus mastering went off while the request was served: it is not
     * completed (the driver must reset the device). */
    if (!pci_bus_master(vp->dev)) {
        virtio_set_needs_reset(vp);
        return;
    }
    elem = vq->used + 4 + 8 * (vq->used_idx % vq->size);
    memcpy(elem, &id, 4);
    memcpy(elem + 4, &len, 4);
    vq->used_idx++;
    store16(vq->used + 2, vq->used_idx);
}

void virtq_notify(struct virtio_pci *vp, unsigned q)
{
    struct virtq *vq = &vp->vq[q];
    uint16_t old = vq->signalled_used, now = vq->used_idx;
    bool need;

    /* Nothing pushed since the last look: no interrupt (a wake-up with
     * an empty ring must not make a spurious one). */
    if (!virtq_ready(vp, q) || old == now)
        return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* used idx before event */
    if (has_feature(vp, VIRTIO_F_EVENT_IDX)) {
        uint16_t event = load16(&vq->avail[2 + vq->size]);

        need = !vq->signalled_valid ||
               (uint16_t)(now - event - 1) < (uint16_t)(now - old);
    } else {
        need = !(load16(&vq->avail[0]) & AVAIL_F_NO_INTERRUPT);
    }
    vq->signalled_used = now;
    vq->signalled_valid = true;
    if (need)
        virtio_irq(vp, vq->vector, ISR_QUEUE);
}

/* queue_enable: the rings must be aligned (2.7), of a power-of-2 size,
 * and lie in guest RAM; else the device needs a reset. */
static void virtq_enable(struct virtio_pci *vp, struct virtq *vq)
{
    unsigned n = vq->size;

    if (!n || n > vp->queue_max || (n & (n - 1)) || vq->desc_gpa % 16 ||
        vq->avail_gpa % 2 || vq->used_gpa % 4) {
        virtio_set_needs_reset(vp);
        return;
    }
    vq->desc = pci_dma(vp->dev, vq->desc_gpa, 16ULL * n);
    vq->avail = pci_dma(vp->dev, vq->avail_gpa, 6 + 2ULL * n);
    vq->used = pci_dma(vp->dev, vq->used_gpa, 6 + 8ULL * n);
    if (!vq->desc || !vq->avail || !vq->used) {
        virtio_set_needs_reset(vp);
        return;
    }
    vq->last_avail = vq->used_idx = vq->signalled_used = 0;
    vq->signalled_valid = false;
    vq->enabled = true;
}

/* ---- the common configuration ---- */

/* Runs on a vCPU under the bus lock and vp->lock (or on the main thread
 * for a machine reset, vCPUs stopped).  Status 0 goes out first: a queue
 * thread in the middle of a request sees it (virtq_ready()) between two
 * bounded pieces and drops the request, so taking each queue's lock
 * below waits for one piece of I/O, not for what the ring holds. */
static void virtio_reset(struct virtio_pci *vp)
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
    isr_read(vp);
}

static void status_write(struct virtio_pci *vp, uint8_t v)
{
    uint64_t needed = vp->legacy ? 0 : 1ULL << VIRTIO_F_VERSION_1;

    if (!v) {
        virtio_reset(vp);
        return;
    }
    /* FEATURES_OK sticks only for a subset of what the device offered
     * that includes VERSION_1 (a legacy driver has no FEATURES_OK and
     * need not have it; if it sets the bit anyway, the subset rule holds). */
    if ((v & VIRTIO_S_FEATURES_OK) && !(vp->status & VIRTIO_S_FEATURES_OK) &&
        ((vp->drv_features & ~vp->dev_features) ||
         (vp->drv_features & needed) != needed))
        v &= (uint8_t)~VIRTIO_S_FEATURES_OK;
    /* Bits only come and go together with a reset (the driver must not
     * clear them, 2.1.2): features stay frozen while queues run. */
    if ((v & VIRTIO_S_DRIVER_OK) && !(vp->status & VIRTIO_S_DRIVER_OK)) {
        /* A legacy driver starts without FEATURES_OK: what it gets is
         * what the legacy register could have given it, even if it wrote
         * more through the modern one first.  Set before DRIVER_OK is
         * seen by the queue threads (the status store publishes it). */
        if (vp->legacy && !(vp->status & VIRTIO_S_FEATURES_OK))
            vp->drv_features &= vp->dev_features & 0xffffffffULL;
        vp->status |= v;
        /* Buffers queued before DRIVER_OK get served now. */
        for (unsigned q = 0; q < vp->nq; q++)
            virtq_kick(vp, q);
        return;
    }
    vp->status |= v;
}

/* The driver's features change only before FEATURES_OK (modern) or
 * DRIVER_OK (legacy, or a driver that skipped FEATURES_OK), through
 * either register block: afterwards the queue threads read them. */
static bool features_frozen(const struct virtio_pci *vp)
{
    return vp->status & (VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
}

/* Reads or writes the field at off; fields are 1, 2, 4 or 8 bytes and
 * a 64-bit address may be written as two halves. */
static uint64_t *common_addr(struct virtq *vq, unsigned off)
{
    switch (off & ~7u) {
    case 0x20: return &vq->desc_gpa;
    case 0x28: return &vq->avail_gpa;
    case 0x30: return &vq->used_gpa;
    }
    return NULL;
}

static uint64_t common_read(struct virtio_pci *vp, unsigned off)
{
    struct virtq *vq = vp->qsel < vp->nq ? &vp->vq[vp->qsel] : NULL;
    uint64_t *a;

    switch (off) {
    case 0x00: return vp->dfsel;
    case 0x04: return vp->dfsel < 2 ? (uint32_t)(vp->dev_features >> (32 * vp->dfsel)) : 0;
    case 0x08: return vp->gfsel;
    case 0x0c: return vp->gfsel < 2 ? (uint32_t)(vp->drv_features >> (32 * vp->gfsel)) : 0;
    case 0x10: return vp->config_vector;
    case 0x12: return vp->nq;
    case 0x14: return vp->status;
    case 0x15: return vp->config_gen;
    case 0x16: return vp->qsel;
    case 0x18: return vq ? vq->size : 0;
    case 0x1a: return vq ? vq->vector : PCI_MSIX_NO_VECTOR;
    case 0x1c: return vq ? vq->enabled : 0;
    case 0x1e: return vp->qsel;
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
    case 0x00: vp->dfsel = (uint32_t)v; return;
    case 0x08: vp->gfsel = (uint32_t)v; return;
    case 0x0c:
        if (vp->gfsel < 2 && !features_frozen(vp)) {
            unsigned sh = 32 * vp->gfsel;

            vp->drv_features = (vp->drv_features & ~(0xffffffffULL << sh)) |
                               (v & 0xffffffffULL) << sh;
        }
        return;
    case 0x10: vp->config_vector = (uint16_t)v; return;
    case 0x14: status_write(vp, (uint8_t)v); return;
    case 0x16: vp->qsel = (uint16_t)v; return;
    }
    if (!vq || vq->enabled)
        return; /* queue fields are frozen while the queue runs */
    switch (off) {
    case 0x18: vq->size = (uint16_t)v; return;
    case 0x1a: vq->vector = (uint16_t)v; return;
    case 0x1c:
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
    if (off < 0x10)
        return off % 4 ? 0 : 4;
    if (off == 0x14 || off == 0x15)
        return 1;
    if (off < 0x20)
        return off % 2 ? 0 : 2;
    if (off < 0x38)
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
            put_le(data, size, off == OFF_ISR ? isr_read(vp) : 0);
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

/* ---- the legacy register block (transitional devices) ---- */

/* A legacy driver gives one page frame: the descriptor table there, the
 * available ring right after it, the used ring at the next 4 KiB
 * boundary; the queue size is the device's.
 *
 * 0 resets the whole device, as in QEMU (a legacy driver writes it when
 * it lets go of its queues).  It must not just take the queue's lock:
 * the queue's thread holds that lock while it serves the ring, and
 * looks only at virtq_ready() between bounded pieces, so a vCPU waiting
 * for it here (with the bus lock held) would wait for the whole ring -
 * minutes with 256 large requests queued.  virtio_reset() stores status
 * 0 first, which the thread sees at its next piece, then takes the
 * lock.  A nonzero frame for a queue that runs is ignored: its fields
 * are frozen while it is enabled, as through the modern block (moving
 * the rings under the thread would need the same wait). */
static void legacy_queue_pfn(struct virtio_pci *vp, struct virtq *vq,
                             uint32_t pfn)
{
    uint64_t n = vp->queue_max;

    if (!pfn) {
        virtio_reset(vp);
        return;
    }
    if (vq->enabled) /* written only under vp->lock, which we hold */
        return;
    /* The queue is off: its thread serves nothing, so this waits at
     * most for the piece it was dropping. */
    pthread_mutex_lock(&vq->lock);
    vq->desc_gpa = (uint64_t)pfn * LEG_ALIGN;
    vq->avail_gpa = vq->desc_gpa + 16 * n;
    vq->used_gpa = (vq->avail_gpa + 6 + 2 * n + LEG_ALIGN - 1) &
                   ~(uint64_t)(LEG_ALIGN - 1);
    vq->size = (uint16_t)n;
    virtq_enable(vp, vq);
    pthread_mutex_unlock(&vq->lock);
}

static unsigned legacy_config_off(struct virtio_pci *vp)
{
    return pci_msix_enabled(vp->dev) ? LEG_CONFIG_MSIX : LEG_CONFIG;
}

static unsigned legacy_field_size(struct virtio_pci *vp, unsigned off)
{
    switch (off) {
    case LEG_HOST_FEATURES: case LEG_GUEST_FEATURES: case LEG_QUEUE_PFN:
        return 4;
    case LEG_QUEUE_NUM: case LEG_QUEUE_SEL: case LEG_QUEUE_NOTIFY:
        return 2;
    case LEG_STATUS: case LEG_ISR:
        return 1;
    case LEG_CONFIG_VECTOR: case LEG_QUEUE_VECTOR:
        return legacy_config_off(vp) == LEG_CONFIG_MSIX ? 2 : 0;
    }
    return 0;
}

static uint64_t legacy_read(struct virtio_pci *vp, unsigned off)
{
    struct virtq *vq = vp->qsel < vp->nq ? &vp->vq[vp->qsel] : NULL;

    switch (off) {
    case LEG_HOST_FEATURES: return (uint32_t)vp->dev_features;
    case LEG_GUEST_FEATURES: return (uint32_t)vp->drv_features;
    case LEG_QUEUE_PFN: return vq && vq->enabled ? vq->desc_gpa / LEG_ALIGN : 0;
    case LEG_QUEUE_NUM: return vq ? vp->queue_max : 0;
    case LEG_QUEUE_SEL: return vp->qsel;
    case LEG_STATUS: return vp->status;
    case LEG_CONFIG_VECTOR: return vp->config_vector;
    case LEG_QUEUE_VECTOR: return vq ? vq->vector : PCI_MSIX_NO_VECTOR;
    }
    return 0;
}

static void legacy_write(struct virtio_pci *vp, unsigned off, uint32_t v)
{
    struct virtq *vq = vp->qsel < vp->nq ? &vp->vq[vp->qsel] : NULL;

    switch (off) {
    case LEG_GUEST_FEATURES:
        /* No FEATURES_OK to refuse with: what the device lacks is
         * dropped, and VERSION_1 cannot be asked for from here. */
        if (!features_frozen(vp)) {
            vp->legacy = true;
            vp->drv_features = v & vp->dev_features & 0xffffffffULL;
        }
        return;
    case LEG_QUEUE_PFN:
        if (vq) {
            vp->legacy = true;
            legacy_queue_pfn(vp, vq, v);
        }
        return;
    case LEG_QUEUE_SEL: vp->qsel = (uint16_t)v; return;
    case LEG_STATUS:
        if (v)
            vp->legacy = true;
        status_write(vp, (uint8_t)v);
        return;
    case LEG_CONFIG_VECTOR: vp->config_vector = (uint16_t)v; return;
    case LEG_QUEUE_VECTOR:
        if (vq)
            vq->vector = (uint16_t)v;
        return;
    }
}

static void legacy_rw(struct virtio_pci *vp, unsigned off, uint8_t *data,
                      unsigned size, bool is_write)
{
    unsigned cfg = legacy_config_off(vp);

    if (off >= cfg) {
        /* native endian, which is little endian on x86 */
        if (vp->ops->config_rw)
            vp->ops->config_rw(vp->opaque, off - cfg, data, size, is_write);
        return;
    }
    if (legacy_field_size(vp, off) != size) {
        if (!is_write)
            memset(data, 0, size);
        return;
    }
    if (off == LEG_ISR) {
        if (!is_write)
            put_le(data, 1, isr_read(vp));
        return;
    }
    if (off == LEG_QUEUE_NOTIFY) {
        /* Only when KVM did not take it through an ioeventfd. */
        if (is_write && get_le(data, 2) < vp->nq)
            virtq_kick(vp, (unsigned)get_le(data, 2));
        return;
    }
    pthread_mutex_lock(&vp->lock);
    if (is_write)
        legacy_write(vp, off, (uint32_t)get_le(data, size));
    else
        put_le(data, size, legacy_read(vp, off));
    pthread_mutex_unlock(&vp->lock);
}

static void virtio_bar_rw(void *opaque, int bar, uint64_t off, uint8_t *data,
                          unsigned size, bool is_write)
{
    struct virtio_pci *vp = opaque;

    if (bar == vp->mbar)
        modern_rw(vp, off, data, size, is_write);
    else if (bar == 0 && vp->transitional)
        legacy_rw(vp, (unsigned)off, data, size, is_write);
    else if (!is_write)
        memset(data, 0, size);
}

/* ---- the PCI_CFG capability: a window on the BARs through
 * configuration space, for drivers that cannot map them (4.1.4.9) ---- */

static void pcicfg_access(struct virtio_pci *vp, bool is_write)
{
    unsigned c = vp->pcicfg_cap;
    unsigned bar = pci_cfg_read(vp->dev, c + 4, 1);
    uint32_t off = pci_cfg_read(vp->dev, c + 8, 4);
    uint32_t len = pci_cfg_read(vp->dev, c + 12, 4);
    uint64_t bar_size = bar == (unsigned)vp->mbar ? BAR0_SIZE
                      : bar == 0 && vp->transitional ? vp->legacy_size : 0;
    uint8_t data[4] = { 0 };

    /* The driver must use an aligned access of 1, 2 or 4 bytes inside
     * the BAR; anything else does nothing (and reads as zero). */
    if ((len == 1 || len == 2 || len == 4) && !(off % len) &&
        off + (uint64_t)len <= bar_size) {
        if (is_write)
            put_le(data, 4, pci_cfg_read(vp->dev, c + 16, 4));
        virtio_bar_rw(vp, (int)bar, off, data, len, is_write);
    }
    if (!is_write)
        pci_cfg_write_ro(vp->dev, c + 16, 4, (uint32_t)get_le(data, 4));
}

static bool pcicfg_data_hit(struct virtio_pci *vp, unsigned off,
                            unsigned size)
{
    unsigned data = vp->pcicfg_cap + 16u;

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

/* The legacy notify port: one ioeventfd per queue, told apart by the
 * queue number the driver writes. */
static void legacy_bar_moved(struct virtio_pci *vp, uint16_t port)
{
    struct bus *bus = pci_dev_bus(vp->dev);

    for (unsigned q = 0; q < vp->nq; q++) {
        struct virtq *vq = &vp->vq[q];

        if (vq->ioeventfd_pio)
            bus_ioeventfd_pio(bus, (uint16_t)(vp->iobar + LEG_QUEUE_NOTIFY),
                              2, q, vq->kick_fd, false);
        vq->ioeventfd_pio =
            port >= PCI_IO_BAR_BASE &&
            bus_ioeventfd_pio(bus, (uint16_t)(port + LEG_QUEUE_NOTIFY), 2, q,
                              vq->kick_fd, true) == 0;
    }
    vp->iobar = port;
}

static void virtio_bar_moved(void *opaque, int bar, uint64_t addr)
{
    struct virtio_pci *vp = opaque;
    struct bus *bus = pci_dev_bus(vp->dev);

    if (bar == 0 && vp->transitional) {
        legacy_bar_moved(vp, (uint16_t)addr);
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
        vq->ioeventfd = addr &&
                        bus_ioeventfd(bus, addr + at, 2, vq->kick_fd, true) == 0;
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
};

/* ---- setup ---- */

static int add_vendor_cap(struct virtio_pci *vp, uint8_t type, uint32_t off,
                          uint32_t len, bool notify)
{
    uint8_t cap[20] = { CAP_VENDOR, 0, notify ? 20 : 16, type,
                        (uint8_t)vp->mbar };

    put_le(cap + 8, 4, off);
    put_le(cap + 12, 4, len);
    if (notify)
        put_le(cap + 16, 4, NOTIFY_MULT);
    return pci_add_cap(vp->dev, cap, cap[2]);
}

/* bar, offset, length and pci_cfg_data are the driver's to write. */
static int add_pcicfg_cap(struct virtio_pci *vp)
{
    uint8_t cap[PCICFG_CAP_LEN] = { CAP_VENDOR, 0, PCICFG_CAP_LEN, CFG_PCI };
    int off = pci_add_cap(vp->dev, cap, sizeof(cap));

    if (off < 0)
        return off;
    pci_cfg_init(vp->dev, (unsigned)off + 4, 1, 0, 0xff);
    pci_cfg_init(vp->dev, (unsigned)off + 8, 4, 0, 0xffffffffu);
    pci_cfg_init(vp->dev, (unsigned)off + 12, 4, 0, 0xffffffffu);
    pci_cfg_init(vp->dev, (unsigned)off + 16, 4, 0, 0xffffffffu);
    vp->pcicfg_cap = (uint8_t)off;
    return 0;
}

static int add_caps(struct virtio_pci *vp)
{
    if (add_vendor_cap(vp, CFG_COMMON, OFF_COMMON, 0x38, false) < 0 ||
        add_vendor_cap(vp, CFG_NOTIFY, OFF_NOTIFY, NOTIFY_MULT * vp->nq,
                       true) < 0 ||
        add_vendor_cap(vp, CFG_ISR, OFF_ISR, 1, false) < 0 ||
        add_vendor_cap(vp, CFG_DEVICE, OFF_DEVICE, 0x1000, false) < 0 ||
        add_pcicfg_cap(vp) < 0)
        return -ENOSPC;
    return 0;
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
    pc->device = (uint16_t)(0x1000 + cfg->device_type - 1);
    pc->subsys_id = cfg->device_type; /* legacy drivers match on it */
    pc->revision = 0;
    pc->bar_size[0] = legacy_size;
    pc->bar_io = 1;
    pc->bar_size[MODERN_BAR_TRANSITIONAL] = BAR0_SIZE;
}

/* The legacy block: 20 bytes of registers, 4 more with MSI-X, then the
 * device configuration, in a power-of-2 I/O BAR. */
static unsigned legacy_bar_size(unsigned config_size)
{
    unsigned size = 32;

    while (size < LEG_CONFIG_MSIX + config_size)
        size *= 2;
    return size;
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
        (cfg->transitional && (!cfg->device_type ||
                               LEG_CONFIG_MSIX + cfg->config_size > 256)))
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
    vp->legacy_size = legacy_bar_size(cfg->config_size);
    pci_config_fill(cfg, &pc, vp->legacy_size);
    vp->dev_features = cfg->features | 1ULL << VIRTIO_F_VERSION_1 |
                       1ULL << VIRTIO_F_INDIRECT_DESC |
                       1ULL << VIRTIO_F_EVENT_IDX;
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

int virtq_kick_fd(struct virtio_pci *vp, unsigned q)
{
    return q < vp->nq ? vp->vq[q].kick_fd : -1;
}

void virtq_kick(struct virtio_pci *vp, unsigned q)
{
    uint64_t one = 1;

    if (q < vp->nq && write(vp->vq[q].kick_fd, &one, sizeof(one)) < 0) {
        /* a saturated counter already means "wake up" */
    }
}

void virtq_lock(struct virtio_pci *vp, unsigned q)
{
    pthread_mutex_lock(&vp->vq[q].lock);
}

void virtq_unlock(struct virtio_pci *vp, unsigned q)
{
    pthread_mutex_unlock(&vp->vq[q].lock);
}

uint64_t virtio_features(struct virtio_pci *vp)
{
    return vp->drv_features & vp->dev_features;
}
