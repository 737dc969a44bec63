/* Saved state of a virtio PCI function (pci_func_ops.state,
 * docs/VMSTATE.md): the transport (status, features, selectors, ISR,
 * vectors) and every queue (size, vector, ring addresses, the device's
 * ring indexes), for devices whose own state is only that
 * (virtio_dev_ops.saveable: virtio-blk, virtio-rng).  Another device
 * (virtio-net, whose backend holds frames and connections) is saved only
 * while the guest has not set it up (status 0), and refused, naming it,
 * once it has.
 *
 * Requests in flight: a queue's I/O thread holds the queue's lock from
 * the pop of a request to its push and notify.  The save marks the
 * device frozen (virtq_pop() finds nothing: what the driver queued stays
 * in the ring) and then takes every queue's lock, which waits for the
 * request each thread is serving, so none is half done; until resume
 * the threads touch no ring and raise no interrupt, so the rings in
 * guest RAM, written after the device sections, still match the indexes
 * saved, and the vCPUs' interrupt state (saved after the devices) holds
 * every interrupt the device raised.  A load
 * leaves the device frozen too, until the disks are reverted (resume),
 * and resume kicks every queue: what the driver queued before the save
 * and the device had not served yet is served then. */
#include <errno.h>
#include <stdatomic.h>

#include <linux/virtio_pci.h>

#include "devices/virtio/virtio-int.h"
#include "devices/vmstate.h"

#define STATUS_BITS (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | \
                     VIRTIO_CONFIG_S_DRIVER_OK | \
                     VIRTIO_CONFIG_S_FEATURES_OK | \
                     VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)

static int virtio_state_save(void *opaque, struct vmstate_cursor *w)
{
    struct virtio_pci *vp = opaque;
    uint8_t status;

    pthread_mutex_lock(&vp->lock);
    /* No new request is popped from here on; taking each queue's lock
     * waits for the one its thread is serving (pushed and notified). */
    atomic_store(&vp->frozen, true);
    for (unsigned q = 0; q < vp->nq; q++)
        pthread_mutex_lock(&vp->vq[q].lock);
    status = atomic_load(&vp->status);
    if (status && !vp->ops->saveable) {
        vms_fail(w, -EBUSY, "virtio device at %s is in use by the guest "
                 "(status 0x%02x): saving this kind of virtio device while "
                 "the guest drives it is not supported",
                 pci_dev_name(vp->dev), status);
        goto out;
    }
    vms_put_u8(w, status);
    vms_put_u8(w, atomic_load(&vp->legacy));
    vms_put_u64(w, vp->dev_features);
    vms_put_u64(w, vp->drv_features);
    vms_put_u32(w, vp->dfsel);
    vms_put_u32(w, vp->gfsel);
    vms_put_u8(w, vp->config_gen);
    pthread_mutex_lock(&vp->isr_lock);
    vms_put_u8(w, vp->isr);
    pthread_mutex_unlock(&vp->isr_lock);
    vms_put_u16(w, vp->qsel);
    vms_put_u16(w, atomic_load(&vp->config_vector));
    vms_put_u8(w, (uint8_t)vp->nq);
    for (unsigned q = 0; q < vp->nq; q++) {
        struct virtq *vq = &vp->vq[q];

        vms_put_u16(w, vq->size);
        vms_put_u16(w, atomic_load(&vq->vector));
        vms_put_u8(w, vq->enabled);
        vms_put_u64(w, vq->desc_gpa);
        vms_put_u64(w, vq->avail_gpa);
        vms_put_u64(w, vq->used_gpa);
        vms_put_u16(w, vq->last_avail);
        vms_put_u16(w, vq->used_idx);
        vms_put_u16(w, vq->signalled_used);
        vms_put_u8(w, vq->signalled_valid);
    }
out:
    for (unsigned q = vp->nq; q-- > 0;)
        pthread_mutex_unlock(&vp->vq[q].lock);
    pthread_mutex_unlock(&vp->lock);
    return w->err;
}

struct saved_queue {
    uint16_t size, vector, last_avail, used_idx, signalled_used;
    bool enabled, signalled_valid;
    uint64_t desc, avail, used;
};

/* The host views of an enabled queue's rings (as virtq_enable() makes
 * them), or a message. */
static int queue_map(struct virtio_pci *vp, unsigned q,
                     const struct saved_queue *s, struct vmstate_cursor *r)
{
    struct virtq *vq = &vp->vq[q];
    unsigned n = s->size;

    if (!n || n > vp->queue_max || (n & (n - 1)) ||
        s->desc % VRING_DESC_ALIGN_SIZE || s->avail % VRING_AVAIL_ALIGN_SIZE ||
        s->used % VRING_USED_ALIGN_SIZE)
        return vms_fail(r, -EINVAL, "virtio device at %s: queue %u has "
                        "size %u, rings at 0x%llx 0x%llx 0x%llx",
                        pci_dev_name(vp->dev), q, n,
                        (unsigned long long)s->desc,
                        (unsigned long long)s->avail,
                        (unsigned long long)s->used);
    vq->desc = pci_dma(vp->dev, s->desc, virtq_desc_bytes(n));
    vq->avail = pci_dma(vp->dev, s->avail, virtq_avail_bytes(n));
    vq->used = pci_dma(vp->dev, s->used, virtq_used_bytes(n));
    if (!vq->desc || !vq->avail || !vq->used) {
        vq->desc = NULL;
        vq->avail = NULL;
        vq->used = NULL;
        return vms_fail(r, -EINVAL, "virtio device at %s: queue %u's rings "
                        "are not in guest RAM (or bus mastering is off)",
                        pci_dev_name(vp->dev), q);
    }
    return 0;
}

static int virtio_state_load(void *opaque, struct vmstate_cursor *r)
{
    struct virtio_pci *vp = opaque;
    struct saved_queue sq[VIRTIO_MAX_QUEUES];
    uint8_t status = vms_get_u8(r), config_gen, isr, nq;
    bool legacy = vms_get_bool(r);
    uint64_t dev_features = vms_get_u64(r), drv_features = vms_get_u64(r);
    uint32_t dfsel = vms_get_u32(r), gfsel = vms_get_u32(r);
    uint16_t qsel, config_vector;
    int ret = 0;

    config_gen = vms_get_u8(r);
    isr = vms_get_u8(r);
    qsel = vms_get_u16(r);
    config_vector = vms_get_u16(r);
    nq = vms_get_u8(r);
    if (r->err)
        return r->err;
    if (status && !vp->ops->saveable)
        return vms_fail(r, -EINVAL, "virtio device at %s: status 0x%02x",
                        pci_dev_name(vp->dev), status);
    if (nq != vp->nq)
        return vms_fail(r, -EINVAL, "virtio device at %s has %u queues, the "
                        "state %u", pci_dev_name(vp->dev), vp->nq, nq);
    if (dev_features != vp->dev_features)
        return vms_fail(r, -EINVAL, "virtio device at %s offers features "
                        "0x%llx, the state 0x%llx", pci_dev_name(vp->dev),
                        (unsigned long long)vp->dev_features,
                        (unsigned long long)dev_features);
    if ((status & ~STATUS_BITS) || (drv_features & ~dev_features) ||
        (isr & ~(ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG)) ||
        (legacy && !vp->transitional))
        return vms_fail(r, -EINVAL, "virtio device at %s: status 0x%02x, "
                        "features 0x%llx, ISR 0x%02x", pci_dev_name(vp->dev),
                        status, (unsigned long long)drv_features, isr);
    for (unsigned q = 0; q < nq; q++) {
        sq[q].size = vms_get_u16(r);
        sq[q].vector = vms_get_u16(r);
        sq[q].enabled = vms_get_bool(r);
        sq[q].desc = vms_get_u64(r);
        sq[q].avail = vms_get_u64(r);
        sq[q].used = vms_get_u64(r);
        sq[q].last_avail = vms_get_u16(r);
        sq[q].used_idx = vms_get_u16(r);
        sq[q].signalled_used = vms_get_u16(r);
        sq[q].signalled_valid = vms_get_bool(r);
        if (!r->err && (!sq[q].size || sq[q].size > vp->queue_max))
            return vms_fail(r, -EINVAL, "virtio device at %s: queue %u has "
                            "size %u (at most %u)", pci_dev_name(vp->dev), q,
                            sq[q].size, vp->queue_max);
    }
    if (vms_finish(r))
        return r->err;
    pthread_mutex_lock(&vp->lock);
    /* frozen until resume: the disks are not reverted yet */
    atomic_store(&vp->frozen, true);
    for (unsigned q = 0; q < nq; q++) {
        struct virtq *vq = &vp->vq[q];

        pthread_mutex_lock(&vq->lock);
        vq->enabled = false;
        vq->desc = NULL;
        vq->avail = NULL;
        vq->used = NULL;
        if (sq[q].enabled)
            ret = ret ? ret : queue_map(vp, q, &sq[q], r);
        vq->size = sq[q].size;
        atomic_store(&vq->vector, sq[q].vector);
        vq->desc_gpa = sq[q].desc;
        vq->avail_gpa = sq[q].avail;
        vq->used_gpa = sq[q].used;
        vq->last_avail = sq[q].last_avail;
        vq->used_idx = sq[q].used_idx;
        vq->signalled_used = sq[q].signalled_used;
        vq->signalled_valid = sq[q].signalled_valid;
        vq->enabled = sq[q].enabled && !ret;
        pthread_mutex_unlock(&vq->lock);
    }
    vp->dfsel = dfsel;
    vp->gfsel = gfsel;
    vp->config_gen = config_gen;
    vp->qsel = qsel;
    atomic_store(&vp->config_vector, config_vector);
    vp->drv_features = drv_features;
    atomic_store(&vp->legacy, legacy);
    atomic_store(&vp->status, ret ? 0 : status);
    pthread_mutex_lock(&vp->isr_lock);
    vp->isr = isr;
    pthread_mutex_unlock(&vp->isr_lock);
    pthread_mutex_unlock(&vp->lock);
    return ret;
}

/* The threads go on; each queue is looked at once. */
static void virtio_state_resume(void *opaque)
{
    struct virtio_pci *vp = opaque;

    if (!atomic_exchange(&vp->frozen, false))
        return;
    for (unsigned q = 0; q < vp->nq; q++)
        virtq_kick(vp, q);
}

const struct bus_state_ops virtio_pci_state = {
    .save = virtio_state_save, .load = virtio_state_load,
    .resume = virtio_state_resume,
};
