/* A minimal modern virtio-pci driver core for the test guest's device
 * tests (virtio-rng.c, virtio-net.c): finds the virtio structures
 * through the vendor capabilities, places the BAR, negotiates features
 * and sets up split queues, all polled (no interrupts).  virtio-blk.c
 * keeps its own, older copy with legacy and MSI-X paths. */
#ifndef CALF_TESTGUEST_VIRTIO_H
#define CALF_TESTGUEST_VIRTIO_H

#include <stdint.h>

struct vdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

#define VD_NEXT  1
#define VD_WRITE 2

/* One split queue of n entries, in memory the caller provides. */
struct vqueue {
    struct vdesc *desc;
    volatile uint16_t *avail; /* flags, idx, ring[n], used_event */
    volatile uint16_t *used;  /* flags, idx, then {id, len} pairs */
    volatile uint8_t *notify;
    uint16_t n, q, next_avail, last_used;
};

struct vmod {
    unsigned slot;
    volatile uint8_t *common, *notify, *isr, *devcfg;
    uint32_t notify_mult;
    uint64_t features;
};

/* Places the function's virtio BAR at base, turns on memory decoding and
 * bus mastering, finds the structures; 0 or -1. */
int vmod_open(struct vmod *d, unsigned slot, uint64_t base);
/* Reset, ACKNOWLEDGE|DRIVER, features (VERSION_1 and what want has of
 * what the device offers, kept in d->features), FEATURES_OK; 0 or -1. */
int vmod_negotiate(struct vmod *d, uint64_t want);
/* Queue q with n entries in mem (zeroed here; 3 pages: descriptors,
 * available ring, used ring); 0 or -1. */
int vmod_queue(struct vmod *d, struct vqueue *vq, uint16_t q, uint16_t n,
               void *mem);
int vmod_driver_ok(struct vmod *d);
void vmod_reset(struct vmod *d);
uint8_t vmod_status(struct vmod *d);
/* Offers the chain at head and notifies. */
void vq_offer(struct vqueue *vq, uint16_t head);
/* Waits at most spins polls for a used element: 1 (its length in *len),
 * 0 when none came. */
int vq_wait(struct vqueue *vq, uint32_t spins, uint32_t *len);

#endif
