/* virtio-blk (virtio 1.2, 5.2): one queue served by a dedicated I/O
 * thread that reads and writes guest memory through the block layer
 * (iovecs point into guest RAM: segments contiguous in it go as one
 * request, raw files take scattered ones in one preadv/pwritev, and the
 * other formats gather them in a per-thread buffer, see blk_preadv).
 *
 * A guest must not be able to hold calf up: a request obeys the size_max
 * and seg_max that configuration space advertises (else VIRTIO_BLK_S_IOERR),
 * and is served in bounded pieces (VBLK_PIECE, VBLK_ZERO_PIECE).  Between
 * two pieces, and between two requests, the queue's thread looks whether
 * calf is tearing the device down or the guest reset it, and if so drops
 * what it serves.  A reset (on a vCPU, under the bus lock) or calf's exit
 * thus waits for one piece of I/O, never for a full ring. */
#include "devices/virtio/virtio.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>

#include "block/block.h"
#include "devices/byteorder.h"
#include "devices/disk.h"
#include "devices/guest-mem.h"

#define VBLK_QUEUE_SIZE  256
/* Advertised in configuration space and enforced: data segments in one
 * request (the chain holds a header and a status besides), and bytes in
 * one segment.  A request is thus at most 254 MiB. */
#define VBLK_SEG_MAX     (VBLK_QUEUE_SIZE - 2)
#define VBLK_SIZE_MAX    (1u << 20)
/* The bounded pieces a request is served in (the longest a reset or
 * calf's exit waits for): reads and writes, and write-zeroes and discard
 * (metadata work mostly; a format without write-zeroes writes zeros).
 * Pieces end on multiples of their size on the disk, so that they stay
 * cluster-aligned for the formats' sake. */
#define VBLK_PIECE       (1u << 20)
#define VBLK_ZERO_PIECE  (16u << 20)
/* Not a virtio status: the request was dropped, nothing is completed. */
#define VBLK_S_DROPPED   0xff
#define VBLK_DISCARD_SEG 32
#define VBLK_MAX_ZERO_SECTORS (1u << 22) /* 2 GiB per segment */
/* Where a field of configuration space is (struct virtio_blk_config). */
#define VBLK_CFG(field)  offsetof(struct virtio_blk_config, field)
/* The fields up to write_zeroes_may_unmap (and its padding): 0x3c bytes,
 * no secure erase. */
#define VBLK_CONFIG_SIZE VBLK_CFG(max_secure_erase_sectors)
_Static_assert(VBLK_CONFIG_SIZE == 0x3c, "virtio_blk_config");

struct vblk;

/* One virtqueue and the thread that serves it. */
struct vblk_queue {
    struct vblk *vb;
    unsigned index;
    pthread_t thread;
    bool started;
    struct virtq_req req;
    struct iovec data[VIRTQ_MAX_CHAIN];
    struct iovec piece[VBLK_SEG_MAX]; /* one piece of data[] */
};

struct vblk {
    struct virtio_pci *vp;
    /* The image, thread-safe (the queues share it), through the live
     * handle the monitor switches it with (devices/disk.h): every
     * block-layer request is between disk_live_enter() and _leave(). */
    struct disk_live *live;
    uint64_t size;        /* bytes; a switch keeps it */
    bool readonly, unmap;
    char serial[VIRTIO_BLK_ID_BYTES];
    uint8_t config[VBLK_CONFIG_SIZE];
    atomic_bool stop; /* teardown: the queue threads end */
    unsigned nq;
    struct vblk_queue q[VIRTIO_MAX_QUEUES];
    char *name; /* the image, for messages */
    struct disk_stats *stats; /* query-blockstats, BLOCK_IO_ERROR; or NULL */
};

/* ---- iovec helpers ---- */

static size_t iov_size(const struct iovec *iov, unsigned n)
{
    size_t len = 0;

    for (unsigned i = 0; i < n; i++)
        len += iov[i].iov_len;
    return len;
}

/* The part [skip, skip+len) of iov as a new vector in dst; returns its
 * count (the caller checked that iov holds that many bytes). */
static unsigned iov_slice(const struct iovec *iov, unsigned n, size_t skip,
                          size_t len, struct iovec *dst)
{
    unsigned k = 0;

    for (unsigned i = 0; i < n && len; i++) {
        size_t l = iov[i].iov_len;

        if (skip >= l) {
            skip -= l;
            continue;
        }
        l -= skip;
        if (l > len)
            l = len;
        dst[k++] = (struct iovec){ (uint8_t *)iov[i].iov_base + skip, l };
        len -= l;
        skip = 0;
    }
    return k;
}

/* Copies between a flat buffer and [skip, skip+len) of iov. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t skip,
                       void *buf, size_t len, bool to_iov)
{
    struct iovec part[VIRTQ_MAX_CHAIN];
    unsigned k = iov_slice(iov, n, skip, len, part);
    size_t done = 0;

    /* The guest's memory: see devices/guest-mem.h. */
    guest_mem_acquire(part, k);
    for (unsigned i = 0; i < k; i++) {
        if (to_iov)
            memcpy(part[i].iov_base, (uint8_t *)buf + done, part[i].iov_len);
        else
            memcpy((uint8_t *)buf + done, part[i].iov_base, part[i].iov_len);
        done += part[i].iov_len;
    }
    guest_mem_release(part, k);
    return done;
}

/* ---- requests ---- */

static bool vblk_range_ok(struct vblk *vb, uint64_t sector, uint64_t bytes)
{
    uint64_t size = vb->size;

    return sector <= size / BLK_SECTOR_SIZE &&
           bytes <= size - sector * BLK_SECTOR_SIZE;
}

/* Whether the request being served is to be dropped: calf is tearing
 * the device down, or the guest reset it (or it needs a reset).  The
 * queue's lock is held here, which a reset waits for; virtio_reset()
 * stores status 0 before it does, and virtq_ready() reads it. */
static bool vblk_dropping(struct vblk_queue *vq)
{
    return atomic_load(&vq->vb->stop) || !virtq_ready(vq->vb->vp, vq->index);
}

/* How much of [pos, pos+left) the piece at pos takes: up to the next
 * multiple of piece_size on the disk. */
static uint64_t vblk_piece_len(uint64_t pos, uint64_t left, uint64_t piece_size)
{
    uint64_t n = piece_size - pos % piece_size;

    return n < left ? n : left;
}

static uint8_t vblk_rw(struct vblk_queue *vq, const struct virtio_blk_outhdr *h,
                       bool write, const struct iovec *buf, unsigned n,
                       size_t len)
{
    struct vblk *vb = vq->vb;
    uint64_t start = h->sector * BLK_SECTOR_SIZE;
    enum disk_acct t = write ? DISK_ACCT_WRITE : DISK_ACCT_READ;
    int64_t t0 = disk_acct_now();
    unsigned k;

    if (write && vb->readonly) {
        /* QEMU's block layer refuses it (EPERM): a failed request */
        disk_acct_done(vb->stats, t, 0, t0, true);
        disk_io_error(vb->stats, true, EPERM);
        return VIRTIO_BLK_S_IOERR;
    }
    if (len % BLK_SECTOR_SIZE || !vblk_range_ok(vb, h->sector, len)) {
        disk_acct_invalid(vb->stats, t);
        return VIRTIO_BLK_S_IOERR;
    }
    k = iov_slice(buf, n, write ? sizeof(*h) : 0, len, vq->data);
    /* What configuration space promises the driver is what holds. */
    if (k > VBLK_SEG_MAX) {
        disk_acct_invalid(vb->stats, t);
        return VIRTIO_BLK_S_IOERR;
    }
    for (unsigned i = 0; i < k; i++)
        if (vq->data[i].iov_len > VBLK_SIZE_MAX) {
            disk_acct_invalid(vb->stats, t);
            return VIRTIO_BLK_S_IOERR;
        }
    for (size_t done = 0; done < len;) {
        size_t piece = vblk_piece_len(start + done, len - done, VBLK_PIECE);
        unsigned m;
        int ret;

        if (vblk_dropping(vq))
            return VBLK_S_DROPPED;
        BlockDriverState *bs;

        m = iov_slice(vq->data, k, done, piece, vq->piece);
        guest_mem_acquire(vq->piece, m); /* devices/guest-mem.h */
        bs = disk_live_enter(vb->live);
        ret = write ? blk_pwritev(bs, start + done, vq->piece, (int)m)
                    : blk_preadv(bs, start + done, vq->piece, (int)m);
        disk_live_leave(vb->live, start + done, piece, write);
        guest_mem_release(vq->piece, m);
        if (ret < 0) {
            disk_acct_done(vb->stats, t, 0, t0, true);
            disk_io_error(vb->stats, write, -ret);
            return VIRTIO_BLK_S_IOERR;
        }
        done += piece;
    }
    disk_acct_done(vb->stats, t, len, t0, false);
    if (write)
        disk_acct_wr_end(vb->stats, start, len);
    return VIRTIO_BLK_S_OK;
}

static uint8_t vblk_seg(struct vblk_queue *vq, uint32_t type,
                        const struct virtio_blk_discard_write_zeroes *s)
{
    struct vblk *vb = vq->vb;
    uint64_t off = s->sector * BLK_SECTOR_SIZE, len;
    bool zero = type == VIRTIO_BLK_T_WRITE_ZEROES;
    int64_t t0 = disk_acct_now();
    int flags = 0;

    /* As QEMU's virtio-blk: write-zeroes counts as a write (refused
     * ones as invalid), a discard is not counted. */
    len = (uint64_t)s->num_sectors * BLK_SECTOR_SIZE;
    if (vb->readonly) {
        if (zero)
            disk_acct_done(vb->stats, DISK_ACCT_WRITE, 0, t0, true);
        disk_io_error(vb->stats, true, EPERM);
        return VIRTIO_BLK_S_IOERR;
    }
    if (s->num_sectors > VBLK_MAX_ZERO_SECTORS ||
        !vblk_range_ok(vb, s->sector, len)) {
        if (zero)
            disk_acct_invalid(vb->stats, DISK_ACCT_WRITE);
        return VIRTIO_BLK_S_IOERR;
    }
    if (type == VIRTIO_BLK_T_DISCARD) {
        if (s->flags)
            return VIRTIO_BLK_S_UNSUPP;
        /* discard=ignore: the hint is dropped, as QEMU does by default. */
        if (!vb->unmap)
            return VIRTIO_BLK_S_OK;
    } else {
        if (s->flags & ~(uint32_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) {
            disk_acct_invalid(vb->stats, DISK_ACCT_WRITE);
            return VIRTIO_BLK_S_UNSUPP;
        }
        if ((s->flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) && vb->unmap)
            flags = BLK_ZERO_MAY_UNMAP;
    }
    for (uint64_t done = 0; done < len;) {
        uint64_t piece = vblk_piece_len(off + done, len - done,
                                        VBLK_ZERO_PIECE);
        BlockDriverState *bs;
        int ret;

        if (vblk_dropping(vq))
            return VBLK_S_DROPPED;
        bs = disk_live_enter(vb->live);
        ret = type == VIRTIO_BLK_T_DISCARD
                  ? blk_discard(bs, off + done, piece)
                  : blk_pwrite_zeroes(bs, off + done, piece, flags);
        disk_live_leave(vb->live, off + done, piece, true);
        if (ret < 0) {
            if (zero)
                disk_acct_done(vb->stats, DISK_ACCT_WRITE, 0, t0, true);
            else
                disk_acct_discard(vb->stats, 0, false);
            disk_io_error(vb->stats, true, -ret);
            return VIRTIO_BLK_S_IOERR;
        }
        done += piece;
    }
    if (zero) {
        disk_acct_done(vb->stats, DISK_ACCT_WRITE, len, t0, false);
        disk_acct_wr_end(vb->stats, off, len);
    } else {
        disk_acct_discard(vb->stats, len, true);
    }
    return VIRTIO_BLK_S_OK;
}

static uint8_t vblk_segments(struct vblk_queue *vq, uint32_t type,
                             const struct iovec *out, unsigned n)
{
    size_t bytes = iov_size(out, n) - sizeof(struct virtio_blk_outhdr);
    size_t nseg = bytes / sizeof(struct virtio_blk_discard_write_zeroes);
    uint8_t st = VIRTIO_BLK_S_OK;

    if (!bytes || bytes % sizeof(struct virtio_blk_discard_write_zeroes) ||
        nseg > VBLK_DISCARD_SEG)
        return VIRTIO_BLK_S_UNSUPP;
    for (size_t i = 0; i < nseg && !st; i++) {
        struct virtio_blk_discard_write_zeroes s;

        iov_copy(out, n, sizeof(struct virtio_blk_outhdr) + i * sizeof(s), &s,
                 sizeof(s), false);
        st = vblk_seg(vq, type, &s);
    }
    return st;
}

static uint8_t vblk_flush(struct vblk *vb)
{
    int64_t t0 = disk_acct_now();
    int ret = 0;

    if (!vb->readonly) {
        ret = blk_flush(disk_live_enter(vb->live));
        disk_live_leave(vb->live, 0, 0, false);
    }
    disk_acct_done(vb->stats, DISK_ACCT_FLUSH, 0, t0, ret < 0);
    if (ret < 0) {
        disk_io_error(vb->stats, true, -ret);
        return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
}

/* Serves one request; *used: the bytes written into its in-buffers.
 * The status byte is the last byte the driver offered for writing.
 * Returns 0, or -EINTR when the request was dropped (nothing to push). */
static int vblk_handle(struct vblk_queue *vq, struct virtq_req *r,
                       uint32_t *used)
{
    struct vblk *vb = vq->vb;
    const struct iovec *out = r->iov, *in = r->iov + r->n_out;
    size_t out_len = iov_size(out, r->n_out), in_len = iov_size(in, r->n_in);
    struct virtio_blk_outhdr h;
    uint8_t st;

    *used = 0;
    if (!in_len)
        return 0; /* nowhere to put a status: the driver gets nothing */
    *used = 1;
    /* seg_max counts data segments; a chain holds a header and a status
     * besides (each may share a buffer with data, vblk_rw counts those). */
    if (out_len < sizeof(h) || r->n_out + r->n_in > VBLK_SEG_MAX + 2) {
        st = VIRTIO_BLK_S_IOERR;
    } else {
        iov_copy(out, r->n_out, 0, &h, sizeof(h), false);
        switch (h.type) {
        case VIRTIO_BLK_T_IN:
            st = vblk_rw(vq, &h, false, in, r->n_in, in_len - 1);
            if (st == VIRTIO_BLK_S_OK)
                *used = (uint32_t)in_len;
            break;
        case VIRTIO_BLK_T_OUT:
            st = vblk_rw(vq, &h, true, out, r->n_out, out_len - sizeof(h));
            break;
        case VIRTIO_BLK_T_FLUSH:
            st = vblk_flush(vb);
            break;
        case VIRTIO_BLK_T_GET_ID:
            *used += (uint32_t)iov_copy(in, r->n_in, 0, vb->serial,
                                        in_len - 1 < VIRTIO_BLK_ID_BYTES
                                            ? in_len - 1 : VIRTIO_BLK_ID_BYTES,
                                        true);
            st = VIRTIO_BLK_S_OK;
            break;
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
            st = vblk_segments(vq, h.type, out, r->n_out);
            break;
        default:
            st = VIRTIO_BLK_S_UNSUPP;
            break;
        }
    }
    if (st == VBLK_S_DROPPED)
        return -EINTR;
    iov_copy(in, r->n_in, in_len - 1, &st, 1, true);
    return 0;
}

/* Locking: the thread holds its queue's lock while it serves the ring;
 * a vCPU that resets the device or moves the queue takes that lock with
 * the bus lock held, and calf's teardown joins the thread.  Both first
 * say so (status 0 in virtio_reset(), vb->stop in vblk_destroy()), and
 * the thread looks between requests and between pieces of one
 * (vblk_dropping()), so either waits for one bounded piece of I/O.  While
 * it holds the queue's lock the thread takes no bus lock and no vp->lock
 * (interrupts go through the PCI core's irq_lock), so no cycle. */
static void *vblk_thread(void *opaque)
{
    struct vblk_queue *vq = opaque;
    struct vblk *vb = vq->vb;
    unsigned q = vq->index;
    int fd = virtq_kick_fd(vb->vp, q);

    for (;;) {
        uint64_t n;

        if (read(fd, &n, sizeof(n)) < 0 && errno != EINTR)
            break;
        if (atomic_load(&vb->stop))
            break;
        virtq_lock(vb->vp, q);
        /* virtq_pop() finds nothing once the device is reset. */
        while (!atomic_load(&vb->stop) && virtq_pop(vb->vp, q, &vq->req) > 0) {
            uint32_t len;

            if (vblk_handle(vq, &vq->req, &len) == 0)
                virtq_push(vb->vp, q, &vq->req, len);
        }
        virtq_notify(vb->vp, q);
        virtq_unlock(vb->vp, q);
    }
    return NULL;
}

/* ---- device ---- */

static void vblk_config_rw(void *opaque, uint64_t off, uint8_t *data,
                           unsigned size, bool is_write)
{
    struct vblk *vb = opaque;

    if (is_write)
        return; /* nothing writable without CONFIG_WCE */
    if (off + size <= sizeof(vb->config))
        memcpy(data, vb->config + off, size);
    else
        memset(data, 0, size);
}

/* The queue threads drop what they serve at the next piece and end;
 * one may still complete a request (and interrupt) on its way out, so
 * pci_destroy() calls this for every function before it frees any. */
static void vblk_stop(void *opaque)
{
    struct vblk *vb = opaque;

    atomic_store(&vb->stop, true);
    for (unsigned q = 0; q < vb->nq; q++) {
        if (!vb->q[q].started)
            continue;
        virtq_kick(vb->vp, q);
        pthread_join(vb->q[q].thread, NULL);
        vb->q[q].started = false;
    }
}

static void vblk_destroy(void *opaque)
{
    struct vblk *vb = opaque;

    vblk_stop(vb);
    if (vb->live)
        disk_live_close(vb->live);
    free(vb->name);
    free(vb);
}

static const struct virtio_dev_ops vblk_ops = {
    .config_rw = vblk_config_rw,
    .stop = vblk_stop,
    .destroy = vblk_destroy,
    .saveable = true,
};

static void vblk_fill_config(struct vblk *vb)
{
    uint64_t sectors = vb->size / BLK_SECTOR_SIZE;
    uint8_t *c = vb->config;

    put_le64(c + VBLK_CFG(capacity), sectors);
    put_le32(c + VBLK_CFG(size_max), VBLK_SIZE_MAX);
    put_le32(c + VBLK_CFG(seg_max), VBLK_SEG_MAX);
    put_le32(c + VBLK_CFG(blk_size), BLK_SECTOR_SIZE);
    put_le32(c + VBLK_CFG(max_discard_sectors), VBLK_MAX_ZERO_SECTORS);
    put_le32(c + VBLK_CFG(max_discard_seg), VBLK_DISCARD_SEG);
    put_le32(c + VBLK_CFG(discard_sector_alignment), 8);
    put_le32(c + VBLK_CFG(max_write_zeroes_sectors), VBLK_MAX_ZERO_SECTORS);
    put_le32(c + VBLK_CFG(max_write_zeroes_seg), VBLK_DISCARD_SEG);
    put_le16(c + VBLK_CFG(num_queues), (uint16_t)vb->nq);
    c[VBLK_CFG(write_zeroes_may_unmap)] = vb->unmap;
}

static int vblk_start(struct pci *pci, int slot, struct vblk *vb,
                      bool modern)
{
    struct virtio_pci_config vc = {
        .slot = slot, .device_type = VIRTIO_ID_BLOCK,
        .class_code = 0x01, .subclass = 0x80,
        .features = 1ULL << VIRTIO_BLK_F_SIZE_MAX |
                    1ULL << VIRTIO_BLK_F_SEG_MAX |
                    1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
                    1ULL << VIRTIO_BLK_F_DISCARD |
                    1ULL << VIRTIO_BLK_F_WRITE_ZEROES |
                    (vb->readonly ? 1ULL << VIRTIO_BLK_F_RO : 0) |
                    (vb->nq > 1 ? 1ULL << VIRTIO_BLK_F_MQ : 0),
        .num_queues = vb->nq, .queue_max = VBLK_QUEUE_SIZE,
        .transitional = !modern, .config_size = VBLK_CONFIG_SIZE,
    };
    int ret = virtio_pci_create(pci, &vc, &vblk_ops, vb, &vb->vp);

    if (ret) {
        if (!vb->vp) /* else the PCI function owns vb */
            vblk_destroy(vb);
        return ret;
    }
    for (unsigned q = 0; q < vb->nq && !ret; q++) {
        vb->q[q].vb = vb;
        vb->q[q].index = q;
        ret = -pthread_create(&vb->q[q].thread, NULL, vblk_thread, &vb->q[q]);
        vb->q[q].started = !ret;
    }
    return ret;
}

int virtio_blk_add(struct pci *pci, int slot, const struct disk_opts *o,
                   unsigned nqueues)
{
    struct vblk *vb = calloc(1, sizeof(*vb));
    BlockDriverState *bs;
    int ret;

    if (!vb)
        return -ENOMEM;
    vb->name = strdup(o->file);
    bs = vb->name ? disk_open(o) : NULL;
    vb->live = disk_live_of(bs);
    if (!vb->live) {
        ret = !vb->name ? -ENOMEM : bs ? -EMFILE : -EIO;
        if (bs)
            fprintf(stderr, "calf: --disk %s: too many disks\n", o->file);
        disk_forget(bs);
        blk_close(bs);
        free(vb->name);
        free(vb);
        return ret;
    }
    vb->size = bs->size;
    vb->readonly = o->readonly || bs->read_only;
    vb->unmap = o->unmap;
    vb->stats = o->stats;
    if (vb->stats)
        atomic_store(&vb->stats->backing_depth, disk_backing_depth(bs));
    vb->nq = nqueues < 1 ? 1 : nqueues > VIRTIO_MAX_QUEUES ? VIRTIO_MAX_QUEUES
                                                           : nqueues;
    memcpy(vb->serial, o->serial, VIRTIO_BLK_ID_BYTES);
    vblk_fill_config(vb);
    ret = vblk_start(pci, slot, vb, o->modern);
    if (ret)
        fprintf(stderr, "calf: --disk %s: cannot attach virtio-blk: %s\n",
                o->file, strerror(-ret));
    return ret;
}
