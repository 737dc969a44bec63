/* Inside the virtio PCI transport: the device and queue state (struct
 * virtio_pci, struct virtq) and the calls shared by queue.c (the split
 * virtqueue), pci.c (the modern transport, the PCI_CFG window and
 * creation) and pci-legacy.c (the legacy register block).  Device models
 * use only devices/virtio/virtio.h.
 *
 * Locking (see virtio.h): vp->lock guards the common configuration and
 * is taken by vCPUs, under the bus lock; a queue's lock is held by its
 * I/O thread while it serves the ring and by the vCPU that enables or
 * resets the queue; vp->isr_lock guards the ISR byte and the INTx level. */
#ifndef CALF_DEVICES_VIRTIO_INT_H
#define CALF_DEVICES_VIRTIO_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "devices/virtio/virtio.h"

/* The ISR bit for a used buffer; <linux/virtio_pci.h> names only the
 * other one, VIRTIO_PCI_ISR_CONFIG (2). */
#define ISR_QUEUE  1

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
    struct vring_avail *avail; /* flags, idx, ring[size], used_event */
    struct vring_used *used;   /* flags, idx, {id, len}[size], avail_event */
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
    /* Saved or loaded, not resumed yet (state.c): no queue is served. */
    _Atomic bool frozen;
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

/* state.c: saving and restoring the transport (pci_func_ops.state) */
extern const struct bus_state_ops virtio_pci_state;

/* The bytes of a split virtqueue's three parts for a queue of n entries
 * (2.7): the descriptor table; the available ring (flags, idx, ring[n],
 * used_event); the used ring (flags, idx, {id, len}[n], avail_event). */
static inline uint64_t virtq_desc_bytes(uint64_t n)
{
    return sizeof(struct vring_desc) * n;
}

static inline uint64_t virtq_avail_bytes(uint64_t n)
{
    return sizeof(struct vring_avail) + sizeof(__virtio16) * (n + 1);
}

static inline uint64_t virtq_used_bytes(uint64_t n)
{
    return sizeof(struct vring_used) + sizeof(struct vring_used_elem) * n +
           sizeof(__virtio16);
}

/* The driver's features change only before FEATURES_OK (modern) or
 * DRIVER_OK (legacy, or a driver that skipped FEATURES_OK), through
 * either register block: afterwards the queue threads read them. */
static inline bool virtio_features_frozen(const struct virtio_pci *vp)
{
    return vp->status & (VIRTIO_CONFIG_S_FEATURES_OK |
                         VIRTIO_CONFIG_S_DRIVER_OK);
}

/* ---- pci.c ---- */

/* An interrupt: MSI-X vector, or the ISR bits and INTx without MSI-X. */
void virtio_irq(struct virtio_pci *vp, uint16_t vector, uint8_t isr);
/* Reads and clears the ISR byte, and lowers INTx. */
uint8_t virtio_isr_read(struct virtio_pci *vp);
void virtio_reset(struct virtio_pci *vp);
/* A device_status write, from either register block (vp->lock held). */
void virtio_status_write(struct virtio_pci *vp, uint8_t v);

/* ---- queue.c ---- */

void virtq_enable(struct virtio_pci *vp, struct virtq *vq);

/* ---- pci-legacy.c ---- */

/* An access to the legacy block in I/O BAR 0 (transitional devices). */
void virtio_legacy_rw(struct virtio_pci *vp, unsigned off, uint8_t *data,
                      unsigned size, bool is_write);
void virtio_legacy_bar_moved(struct virtio_pci *vp, uint16_t port);
unsigned virtio_legacy_bar_size(unsigned config_size);

#endif
