/* The split virtqueue (virtio 1.2, 2.7), for the PCI transport in pci.c
 * and pci-legacy.c: mapping and checking the rings when a queue is
 * enabled, walking descriptor chains (direct and indirect) into requests
 * (virtq_pop), handing them back on the used ring (virtq_push), and
 * whether to interrupt the driver (virtq_notify: event idx or
 * VRING_AVAIL_F_NO_INTERRUPT); also the queues' kick eventfds and locks.
 * Everything a guest put in a queue is checked here; a chain that breaks
 * the rules marks the device NEEDS_RESET. */
#include "devices/virtio/virtio-int.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include <linux/virtio_ring.h>

/* The layouts of <linux/virtio_ring.h> are the ones of the spec. */
_Static_assert(sizeof(struct vring_desc) == 16, "vring_desc");
_Static_assert(sizeof(struct vring_avail) == 4, "vring_avail");
_Static_assert(sizeof(struct vring_used) == 4, "vring_used");
_Static_assert(sizeof(struct vring_used_elem) == 8, "vring_used_elem");

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
           (st & VIRTIO_CONFIG_S_DRIVER_OK) &&
           ((st & VIRTIO_CONFIG_S_FEATURES_OK) || vp->legacy) &&
           !(st & VIRTIO_CONFIG_S_NEEDS_RESET);
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
    if (d->flags & VRING_DESC_F_WRITE) {
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
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (indirect || (d.flags & VRING_DESC_F_NEXT) ||
                !has_feature(vp, VIRTIO_RING_F_INDIRECT_DESC) || !d.len ||
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
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        i = d.next;
    }
}

int virtq_pop(struct virtio_pci *vp, unsigned q, struct virtq_req *req)
{
    struct virtq *vq = &vp->vq[q];
    uint16_t avail_idx, head;
    int ret;

    /* frozen: a save or load holds the rings still (state.c) */
    if (!virtq_ready(vp, q) || atomic_load(&vp->frozen))
        return 0;
    /* Without bus mastering the device may not even read the ring: a
     * device error the driver sees as NEEDS_RESET. */
    if (!pci_bus_master(vp->dev)) {
        virtio_set_needs_reset(vp);
        return -EIO;
    }
    avail_idx = load16(&vq->avail->idx);
    if (avail_idx == vq->last_avail &&
        has_feature(vp, VIRTIO_RING_F_EVENT_IDX)) {
        /* Ask for a kick at the next buffer, then look once more: one
         * may have come in before the driver saw avail_event. */
        store16(&vq->used->ring[vq->size], vq->last_avail); /* avail_event */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        avail_idx = load16(&vq->avail->idx);
    }
    if (avail_idx == vq->last_avail)
        return 0;
    if ((uint16_t)(avail_idx - vq->last_avail) > vq->size) {
        virtio_set_needs_reset(vp);
        return -EINVAL;
    }
    head = load16(&vq->avail->ring[vq->last_avail % vq->size]);
    vq->last_avail++;
    ret = chain_walk(vp, vq, head, req);
    if (ret) {
        virtio_set_needs_reset(vp);
        return ret;
    }
    return 1;
}

unsigned virtq_size(struct virtio_pci *vp, unsigned q)
{
    return vp->vq[q].size;
}

void virtq_unpop(struct virtio_pci *vp, unsigned q, unsigned n)
{
    vp->vq[q].last_avail = (uint16_t)(vp->vq[q].last_avail - n);
}

void virtq_push(struct virtio_pci *vp, unsigned q, const struct virtq_req *req,
                uint32_t len)
{
    struct virtq *vq = &vp->vq[q];
    struct vring_used_elem *elem;

    /* Bus mastering went off while the request was served: it is not
     * completed (the driver must reset the device). */
    if (!pci_bus_master(vp->dev)) {
        virtio_set_needs_reset(vp);
        return;
    }
    elem = &vq->used->ring[vq->used_idx % vq->size];
    elem->id = req->head;
    elem->len = len;
    vq->used_idx++;
    store16(&vq->used->idx, vq->used_idx);
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
    if (has_feature(vp, VIRTIO_RING_F_EVENT_IDX)) {
        uint16_t event = load16(&vq->avail->ring[vq->size]); /* used_event */

        need = !vq->signalled_valid || vring_need_event(event, now, old);
    } else {
        need = !(load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
    }
    vq->signalled_used = now;
    vq->signalled_valid = true;
    if (need)
        virtio_irq(vp, vq->vector, ISR_QUEUE);
}

/* queue_enable: the rings must be aligned (2.7), of a power-of-2 size,
 * and lie in guest RAM; else the device needs a reset. */
void virtq_enable(struct virtio_pci *vp, struct virtq *vq)
{
    unsigned n = vq->size;

    if (!n || n > vp->queue_max || (n & (n - 1)) ||
        vq->desc_gpa % VRING_DESC_ALIGN_SIZE ||
        vq->avail_gpa % VRING_AVAIL_ALIGN_SIZE ||
        vq->used_gpa % VRING_USED_ALIGN_SIZE) {
        virtio_set_needs_reset(vp);
        return;
    }
    vq->desc = pci_dma(vp->dev, vq->desc_gpa, virtq_desc_bytes(n));
    vq->avail = pci_dma(vp->dev, vq->avail_gpa, virtq_avail_bytes(n));
    vq->used = pci_dma(vp->dev, vq->used_gpa, virtq_used_bytes(n));
    if (!vq->desc || !vq->avail || !vq->used) {
        virtio_set_needs_reset(vp);
        return;
    }
    vq->last_avail = vq->used_idx = vq->signalled_used = 0;
    vq->signalled_valid = false;
    vq->enabled = true;
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
