/* The legacy register block of a transitional virtio-pci device (virtio
 * 0.9.5; virtio 1.2, 4.1.4.8) in its I/O BAR 0: the features' low 32
 * bits, one page frame per queue (the legacy ring layout), the status and
 * ISR bytes, the MSI-X vectors while MSI-X is on, then the device
 * configuration; the notify port and its ioeventfds.  The state is the
 * modern transport's (pci.c): a driver may mix both blocks. */
#include "devices/virtio/virtio-int.h"

#include <pthread.h>
#include <string.h>

#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "devices/byteorder.h"

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
    vq->desc_gpa = (uint64_t)pfn << VIRTIO_PCI_QUEUE_ADDR_SHIFT;
    vq->avail_gpa = vq->desc_gpa + virtq_desc_bytes(n);
    vq->used_gpa = (vq->avail_gpa + virtq_avail_bytes(n) +
                    VIRTIO_PCI_VRING_ALIGN - 1) &
                   ~(uint64_t)(VIRTIO_PCI_VRING_ALIGN - 1);
    vq->size = (uint16_t)n;
    virtq_enable(vp, vq);
    pthread_mutex_unlock(&vq->lock);
}

static unsigned legacy_config_off(struct virtio_pci *vp)
{
    return VIRTIO_PCI_CONFIG_OFF(pci_msix_enabled(vp->dev));
}

static unsigned legacy_field_size(struct virtio_pci *vp, unsigned off)
{
    switch (off) {
    case VIRTIO_PCI_HOST_FEATURES: case VIRTIO_PCI_GUEST_FEATURES:
    case VIRTIO_PCI_QUEUE_PFN:
        return 4;
    case VIRTIO_PCI_QUEUE_NUM: case VIRTIO_PCI_QUEUE_SEL:
    case VIRTIO_PCI_QUEUE_NOTIFY:
        return 2;
    case VIRTIO_PCI_STATUS: case VIRTIO_PCI_ISR:
        return 1;
    /* these two only while MSI-X is on */
    case VIRTIO_MSI_CONFIG_VECTOR: case VIRTIO_MSI_QUEUE_VECTOR:
        return legacy_config_off(vp) == VIRTIO_PCI_CONFIG_OFF(true) ? 2 : 0;
    }
    return 0;
}

static uint64_t legacy_read(struct virtio_pci *vp, unsigned off)
{
    struct virtq *vq = vp->qsel < vp->nq ? &vp->vq[vp->qsel] : NULL;

    switch (off) {
    case VIRTIO_PCI_HOST_FEATURES: return (uint32_t)vp->dev_features;
    case VIRTIO_PCI_GUEST_FEATURES: return (uint32_t)vp->drv_features;
    case VIRTIO_PCI_QUEUE_PFN:
        return vq && vq->enabled
                   ? vq->desc_gpa >> VIRTIO_PCI_QUEUE_ADDR_SHIFT : 0;
    case VIRTIO_PCI_QUEUE_NUM: return vq ? vp->queue_max : 0;
    case VIRTIO_PCI_QUEUE_SEL: return vp->qsel;
    case VIRTIO_PCI_STATUS: return vp->status;
    case VIRTIO_MSI_CONFIG_VECTOR: return vp->config_vector;
    case VIRTIO_MSI_QUEUE_VECTOR:
        return vq ? vq->vector : PCI_MSIX_NO_VECTOR;
    }
    return 0;
}

static void legacy_write(struct virtio_pci *vp, unsigned off, uint32_t v)
{
    struct virtq *vq = vp->qsel < vp->nq ? &vp->vq[vp->qsel] : NULL;

    switch (off) {
    case VIRTIO_PCI_GUEST_FEATURES:
        /* No FEATURES_OK to refuse with: what the device lacks is
         * dropped, and VERSION_1 cannot be asked for from here. */
        if (!virtio_features_frozen(vp)) {
            vp->legacy = true;
            vp->drv_features = v & vp->dev_features & 0xffffffffULL;
        }
        return;
    case VIRTIO_PCI_QUEUE_PFN:
        if (vq) {
            vp->legacy = true;
            legacy_queue_pfn(vp, vq, v);
        }
        return;
    case VIRTIO_PCI_QUEUE_SEL: vp->qsel = (uint16_t)v; return;
    case VIRTIO_PCI_STATUS:
        if (v)
            vp->legacy = true;
        virtio_status_write(vp, (uint8_t)v);
        return;
    case VIRTIO_MSI_CONFIG_VECTOR: vp->config_vector = (uint16_t)v; return;
    case VIRTIO_MSI_QUEUE_VECTOR:
        if (vq)
            vq->vector = (uint16_t)v;
        return;
    }
}

void virtio_legacy_rw(struct virtio_pci *vp, unsigned off, uint8_t *data,
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
    if (off == VIRTIO_PCI_ISR) {
        if (!is_write)
            put_le(data, 1, virtio_isr_read(vp));
        return;
    }
    if (off == VIRTIO_PCI_QUEUE_NOTIFY) {
        /* Only when KVM did not take it through an ioeventfd. */
        if (is_write && get_le16(data) < vp->nq)
            virtq_kick(vp, get_le16(data));
        return;
    }
    pthread_mutex_lock(&vp->lock);
    if (is_write)
        legacy_write(vp, off, (uint32_t)get_le(data, size));
    else
        put_le(data, size, legacy_read(vp, off));
    pthread_mutex_unlock(&vp->lock);
}

/* The legacy notify port: one ioeventfd per queue, told apart by the
 * queue number the driver writes. */
void virtio_legacy_bar_moved(struct virtio_pci *vp, uint16_t port)
{
    struct bus *bus = pci_dev_bus(vp->dev);

    for (unsigned q = 0; q < vp->nq; q++) {
        struct virtq *vq = &vp->vq[q];

        if (vq->ioeventfd_pio)
            bus_ioeventfd_pio(bus,
                              (uint16_t)(vp->iobar + VIRTIO_PCI_QUEUE_NOTIFY),
                              2, q, vq->kick_fd, false);
        vq->ioeventfd_pio =
            port >= PCI_IO_BAR_BASE &&
            bus_ioeventfd_pio(bus, (uint16_t)(port + VIRTIO_PCI_QUEUE_NOTIFY),
                              2, q, vq->kick_fd, true) == 0;
    }
    vp->iobar = port;
}

/* The legacy block: 20 bytes of registers, 4 more with MSI-X, then the
 * device configuration, in a power-of-2 I/O BAR. */
unsigned virtio_legacy_bar_size(unsigned config_size)
{
    unsigned size = 32;

    while (size < VIRTIO_PCI_CONFIG_OFF(true) + config_size)
        size *= 2;
    return size;
}
