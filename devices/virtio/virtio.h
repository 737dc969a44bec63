/* virtio 1.x over PCI (the modern transport, devices 1af4:1040+n; by
 * default transitional, 1af4:1000-103f (1001 block, 1005
 * entropy), with the legacy register block in
 * an I/O BAR 0 for drivers without VERSION_1) and the split virtqueue, as
 * a library for virtio device models; and the virtio-blk and virtio-rng
 * devices.  This is what device models and vmm/machine.c use; behind it,
 * in devices/virtio/, queue.c is the split virtqueue, pci.c the modern
 * transport, pci-legacy.c the legacy register block (sharing
 * virtio-int.h), blk.c virtio-blk and rng.c virtio-rng.
 * Register names, feature and status bits are the Linux uapi ones
 * (<linux/virtio_config.h>, <linux/virtio_ring.h>, <linux/virtio_pci.h>).
 *
 * Threads: the transport's registers are served on vCPU threads under the
 * bus lock.  A device serves its queues on its own thread: it waits on a
 * queue's kick eventfd (signalled by KVM through an ioeventfd on the
 * notify address), then takes the queue's lock (virtq_lock()) and pops,
 * serves and pushes requests; queues run in parallel.  Everything a
 * guest put in a queue is validated in virtq_pop(): descriptor indexes,
 * chain lengths and loops, and that every buffer lies in guest RAM.  A
 * chain that breaks the rules marks the device NEEDS_RESET; the VMM
 * keeps running.
 */
#ifndef CALF_DEVICES_VIRTIO_VIRTIO_H
#define CALF_DEVICES_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/pci.h"

#define VIRTIO_MAX_QUEUES 8
#define VIRTQ_MAX_SIZE    256
/* Buffers in one chain, indirect tables included. */
#define VIRTQ_MAX_CHAIN   512

struct virtio_pci;

/* One request: n_out driver-to-device buffers, then n_in device-to-driver
 * ones, all pointing into guest RAM. */
struct virtq_req {
    uint16_t head;
    unsigned n_out, n_in;
    struct iovec iov[VIRTQ_MAX_CHAIN];
};

struct virtio_dev_ops {
    /* Device-specific configuration (BAR offset 0 of its region). */
    void (*config_rw)(void *opaque, uint64_t off, uint8_t *data,
                      unsigned size, bool is_write);
    /* VM teardown: stops the device's threads (the PCI function's stop
     * op; no interrupt after it), then frees it (destroy, which stops
     * them too if stop was not called). */
    void (*stop)(void *opaque);
    void (*destroy)(void *opaque);
    /* The device keeps nothing of its own between requests beyond what
     * the transport and the rings hold (its threads serve a request
     * whole under the queue's lock): a save of the VM may record it
     * while the guest drives it (devices/virtio/state.c). */
    bool saveable;
};

struct virtio_pci_config {
    int slot;               /* PCI slot (function 0) */
    uint16_t device_type;   /* VIRTIO_ID_*: 2 block (<linux/virtio_ids.h>) */
    uint8_t class_code, subclass;
    uint64_t features;      /* device features; the transport adds its own */
    unsigned num_queues;
    uint16_t queue_max;     /* power of 2, <= VIRTQ_MAX_SIZE */
    bool transitional;      /* the legacy interface too (as QEMU's default) */
    unsigned config_size;   /* device configuration bytes (<= 232) */
};

/* Adds the PCI function.  *out is set as soon as it is registered: from
 * then on the function owns opaque (ops->destroy frees it), even when
 * this returns an error. */
int virtio_pci_create(struct pci *pci, const struct virtio_pci_config *cfg,
                      const struct virtio_dev_ops *ops, void *opaque,
                      struct virtio_pci **out);
/* The eventfd a guest notify on queue q signals (blocking reads). */
int virtq_kick_fd(struct virtio_pci *vp, unsigned q);
/* Wakes the thread waiting on queue q's kick fd (teardown). */
void virtq_kick(struct virtio_pci *vp, unsigned q);

/* A queue's thread holds its lock while it serves it; a reset by the
 * guest waits for it, on a vCPU that holds the bus lock.  The calls
 * below need it held. */
void virtq_lock(struct virtio_pci *vp, unsigned q);
void virtq_unlock(struct virtio_pci *vp, unsigned q);
/* Negotiated, and frozen from FEATURES_OK or DRIVER_OK until a reset. */
uint64_t virtio_features(struct virtio_pci *vp);
/* The device cannot go on (the guest broke the rules, or the device's
 * own thread failed): NEEDS_RESET, and a configuration interrupt once
 * the driver is up.  Any thread. */
void virtio_set_needs_reset(struct virtio_pci *vp);
/* DRIVER_OK, queue enabled, device not broken.  A reset makes it false
 * before it waits for the queue's lock: a device looks again between
 * bounded pieces of a long request and drops the request when it turned
 * false, so the reset waits for one piece, not for the whole ring. */
bool virtq_ready(struct virtio_pci *vp, unsigned q);
/* 1: a request, 0: queue empty, <0: the guest broke the rules (the
 * device is now NEEDS_RESET and the queue stops). */
int virtq_pop(struct virtio_pci *vp, unsigned q, struct virtq_req *req);
/* The ring's size as the driver set it: at most that many requests can
 * be popped and not yet pushed. */
unsigned virtq_size(struct virtio_pci *vp, unsigned q);
/* Gives the last n popped requests back to the ring, unserved (a
 * device that found too few buffers for what it had to deliver). */
void virtq_unpop(struct virtio_pci *vp, unsigned q, unsigned n);
/* Hands a request back with len bytes written into its in-buffers. */
void virtq_push(struct virtio_pci *vp, unsigned q, const struct virtq_req *req,
                uint32_t len);
/* Interrupts the driver if it wants to hear about what was pushed. */
void virtq_notify(struct virtio_pci *vp, unsigned q);

/* Opens the image of a parsed --disk (devices/disk.h) and adds a
 * virtio-blk function (transitional, 1af4:1001, as QEMU's default;
 * modern-only 1af4:1042 with disable-legacy) with nqueues queues
 * (VIRTIO_BLK_F_MQ; one I/O thread each, capped at VIRTIO_MAX_QUEUES)
 * at function 0 of slot.  Messages go to stderr ("calf: --disk ...");
 * returns 0 or a negative errno. */
struct disk_opts;
int virtio_blk_add(struct pci *pci, int slot, const struct disk_opts *o,
                   unsigned nqueues);

/* virtio-rng (devices/virtio/rng.c): --rng [on|off][,max-bytes=N]
 * [,period=MS][,disable-legacy].  QEMU's rng defaults: max-bytes
 * 2^63 - 1 per period of 65536 ms (no limit in practice). */
#define VIRTIO_RNG_MAX_BYTES 0x7fffffffffffffffULL
#define VIRTIO_RNG_PERIOD_MS 65536u
struct rng_opts {
    bool on;
    bool modern;          /* disable-legacy: 1af4:1044 only */
    uint64_t max_bytes;   /* bytes per period */
    uint64_t period_ms;
};
/* Parses an --rng value (on by default); prints what is wrong
 * ("calf: --rng: ...") and returns -EINVAL. */
int virtio_rng_parse(const char *spec, struct rng_opts *o);
/* Adds a virtio-rng function (transitional 1af4:1005 as QEMU's default,
 * or 1af4:1044) at function 0 of slot, with its own thread. */
int virtio_rng_add(struct pci *pci, int slot, const struct rng_opts *o);

/* virtio-net (devices/virtio/net.c) on a parsed --net (devices/net/net.h):
 * transitional 1af4:1000 as QEMU's default, or 1af4:1041; receive and
 * transmit queues and the backend served by one I/O thread. */
struct net_opts;
int virtio_net_add(struct pci *pci, int slot, const struct net_opts *o);

#endif
