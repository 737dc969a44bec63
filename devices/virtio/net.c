/* virtio-net (virtio 1.2, 5.1): a receive queue (0) and a transmit queue
 * (1), and a network backend (devices/net/net.h), all served by one I/O
 * thread.  The thread polls the queues' kick eventfds (which KVM signals
 * through ioeventfds: no exit on the data path), a stop eventfd and the
 * backend's descriptors; completions leave through virtq_notify(), that
 * is MSI-X irqfds.
 *
 * Features: MAC, STATUS (link always up), MRG_RXBUF, CSUM (the guest may
 * leave a packet's checksum to the device, which computes it before the
 * backend sees the frame) and GUEST_CSUM (frames from a backend that
 * checks checksums, slirp, come with DATA_VALID; a tap's do not, the
 * guest checks them).  No TSO, no control queue.
 *
 * A guest must not be able to hold calf up or make it allocate without
 * bound: a transmitted frame longer than NET_MAX_FRAME, or with a GSO
 * type or checksum request the device did not offer or that points
 * outside the frame, is dropped (and its buffers given back); a received
 * frame that finds no buffers waits in a backlog of at most VNET_BACKLOG
 * frames (a ring the guest never refills costs that much, then frames
 * are dropped); one frame spans at most VNET_MERGE_MAX buffers, and one
 * that does not fit all the buffers a full ring holds is dropped; the
 * thread sends at most VNET_TX_BATCH frames before it looks at the rest
 * of its work. */
#include "devices/virtio/virtio.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "devices/byteorder.h"
#include "devices/guest-mem.h"
#include "devices/net/net.h"

#define VNET_QUEUE_SIZE 256
#define VNET_RX 0
#define VNET_TX 1
#define VNET_BACKLOG    256
#define VNET_MERGE_MAX  64
#define VNET_TX_BATCH   256
/* mac, status, max_virtqueue_pairs */
#define VNET_CONFIG_SIZE 10

struct vnet_frame {
    struct vnet_frame *next;
    size_t len;
    uint8_t data[];
};

struct vnet {
    struct virtio_pci *vp;
    struct net_backend *be;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    int stop_fd;
    uint8_t config[VNET_CONFIG_SIZE];
    /* What follows belongs to the I/O thread. */
    struct vnet_frame *backlog, **backlog_tail;
    unsigned backlog_n;
    unsigned long rx_dropped, tx_dropped;
    struct net_pollset ps;
    struct virtq_req txreq;
    struct virtq_req rxreq[VNET_MERGE_MAX];
    uint32_t rxlen[VNET_MERGE_MAX];
    uint8_t txbuf[sizeof(struct virtio_net_hdr_mrg_rxbuf) + NET_MAX_FRAME];
};

static size_t iov_size(const struct iovec *iov, unsigned n)
{
    size_t len = 0;

    for (unsigned i = 0; i < n; i++)
        len += iov[i].iov_len;
    return len;
}

/* Copies len bytes between buf and iov from byte off of iov on; returns
 * how many (fewer when iov ends first). */
static size_t iov_xfer(const struct iovec *iov, unsigned n, size_t off,
                       void *buf, size_t len, bool to_iov)
{
    size_t done = 0;

    guest_mem_acquire(iov, n); /* the guest's memory: devices/guest-mem.h */
    for (unsigned i = 0; i < n && done < len; i++) {
        size_t l = iov[i].iov_len, k;

        if (off >= l) {
            off -= l;
            continue;
        }
        k = l - off < len - done ? l - off : len - done;
        if (to_iov)
            memcpy((uint8_t *)iov[i].iov_base + off, (uint8_t *)buf + done, k);
        else
            memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off, k);
        done += k;
        off = 0;
    }
    guest_mem_release(iov, n);
    return done;
}

static bool has(uint64_t features, unsigned bit)
{
    return features >> bit & 1;
}

/* The header before every frame: 12 bytes with VERSION_1 or MRG_RXBUF
 * (num_buffers), else the legacy 10. */
static size_t hdr_len(uint64_t f)
{
    return has(f, VIRTIO_F_VERSION_1) || has(f, VIRTIO_NET_F_MRG_RXBUF)
               ? sizeof(struct virtio_net_hdr_mrg_rxbuf)
               : sizeof(struct virtio_net_hdr);
}

/* ---- receive (queue 0) ---- */

/* One frame into the receive ring (its lock held): 1 delivered, 0 no
 * buffers yet (nothing taken), -1 dropped. */
static int vnet_rx_one(struct vnet *vn, const uint8_t *frame, size_t len)
{
    struct virtio_pci *vp = vn->vp;
    uint64_t f;
    bool mrg;
    size_t hl, total, done = 0;
    unsigned n = 0, max;
    struct virtio_net_hdr_mrg_rxbuf h;

    /* the features only once the driver is done with them (DRIVER_OK
     * makes the queue ready; a vCPU writes them before, under the
     * transport's lock) */
    if (!virtq_ready(vp, VNET_RX))
        return 0;
    f = virtio_features(vp);
    mrg = has(f, VIRTIO_NET_F_MRG_RXBUF);
    hl = hdr_len(f);
    total = hl + len;
    max = mrg ? VNET_MERGE_MAX : 1;
    while (done < total) {
        struct virtq_req *r = &vn->rxreq[n];
        const struct iovec *in;
        size_t room, off = 0;
        int ret;

        if (n == max) { /* the guest's buffers are too small for it */
            virtq_unpop(vp, VNET_RX, n);
            return -1;
        }
        ret = virtq_pop(vp, VNET_RX, r);
        if (ret < 0)
            return -1; /* the device needs a reset now */
        if (ret == 0) {
            virtq_unpop(vp, VNET_RX, n);
            /* every buffer the ring can hold is in hand, and too small
             * together: waiting would block receive for good */
            return n && n >= virtq_size(vp, VNET_RX) ? -1 : 0;
        }
        in = r->iov + r->n_out;
        room = iov_size(in, r->n_in);
        n++;
        if (n == 1) {
            /* the header goes into the first buffers, once the count of
             * buffers is known */
            if (room < hl || (!mrg && room < total)) {
                virtq_push(vp, VNET_RX, r, 0); /* given back empty */
                return -1;
            }
            off = hl;
            done = hl;
        }
        vn->rxlen[n - 1] = (uint32_t)(off + iov_xfer(in, r->n_in, off,
                                                     (uint8_t *)frame +
                                                         (done - hl),
                                                     total - done, true));
        done += vn->rxlen[n - 1] - off;
    }
    memset(&h, 0, sizeof(h));
    if (has(f, VIRTIO_NET_F_GUEST_CSUM) && vn->be->csum_checked)
        h.hdr.flags = VIRTIO_NET_HDR_F_DATA_VALID;
    h.hdr.gso_type = VIRTIO_NET_HDR_GSO_NONE;
    put_le16((uint8_t *)&h.num_buffers, (uint16_t)n);
    iov_xfer(vn->rxreq[0].iov + vn->rxreq[0].n_out, vn->rxreq[0].n_in, 0, &h,
             hl, true);
    for (unsigned i = 0; i < n; i++)
        virtq_push(vp, VNET_RX, &vn->rxreq[i], vn->rxlen[i]);
    return 1;
}

/* What waits for buffers, in order, while there are buffers. */
static void vnet_rx_flush(struct vnet *vn)
{
    virtq_lock(vn->vp, VNET_RX);
    while (vn->backlog) {
        struct vnet_frame *fr = vn->backlog;
        int r = vnet_rx_one(vn, fr->data, fr->len);

        if (r == 0)
            break;
        if (r < 0)
            vn->rx_dropped++;
        vn->backlog = fr->next;
        if (!vn->backlog)
            vn->backlog_tail = &vn->backlog;
        vn->backlog_n--;
        free(fr);
    }
    virtq_notify(vn->vp, VNET_RX);
    virtq_unlock(vn->vp, VNET_RX);
}

/* The backend's receive callback (the I/O thread). */
static void vnet_receive(void *opaque, const uint8_t *frame, size_t len)
{
    struct vnet *vn = opaque;
    struct vnet_frame *fr;

    if (len < 14 || len > NET_MAX_FRAME) {
        vn->rx_dropped++;
        return;
    }
    if (!vn->backlog) {
        int r;

        virtq_lock(vn->vp, VNET_RX);
        r = vnet_rx_one(vn, frame, len);
        virtq_notify(vn->vp, VNET_RX);
        virtq_unlock(vn->vp, VNET_RX);
        if (r < 0)
            vn->rx_dropped++;
        if (r)
            return;
    }
    if (vn->backlog_n == VNET_BACKLOG || !(fr = malloc(sizeof(*fr) + len))) {
        vn->rx_dropped++;
        return;
    }
    fr->next = NULL;
    fr->len = len;
    memcpy(fr->data, frame, len);
    *vn->backlog_tail = fr;
    vn->backlog_tail = &fr->next;
    vn->backlog_n++;
}

/* ---- transmit (queue 1) ---- */

/* Completes a checksum the guest left to the device (NEEDS_CSUM): the
 * one's complement sum from csum_start to the end, which includes the
 * pseudo-header sum the guest put in the field, stored at csum_offset.
 * false: a frame to drop. */
static bool vnet_tx_csum(uint64_t f, uint8_t *frame, size_t len,
                         const struct virtio_net_hdr *h)
{
    uint16_t start = get_le16((const uint8_t *)&h->csum_start);
    uint16_t off = get_le16((const uint8_t *)&h->csum_offset);
    uint32_t sum = 0;

    if (h->gso_type != VIRTIO_NET_HDR_GSO_NONE)
        return false; /* no TSO/UFO was offered */
    if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
        return true;
    if (!has(f, VIRTIO_NET_F_CSUM) || start >= len || off > len - start ||
        len - start - off < 2)
        return false;
    for (size_t i = start; i < len; i += 2)
        sum += (uint32_t)frame[i] << 8 | (i + 1 < len ? frame[i + 1] : 0);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    sum = ~sum & 0xffff;
    /* 0 in a UDP checksum means "none": a sum that folds to 0 is sent
     * as 0xffff, its other form (Linux's skb_checksum_help does the same
     * for every protocol; for TCP both forms are equal) */
    if (!sum)
        sum = 0xffff;
    frame[start + off] = (uint8_t)(sum >> 8);
    frame[start + off + 1] = (uint8_t)sum;
    return true;
}

/* Sends up to VNET_TX_BATCH frames; true when more may be waiting. */
static bool vnet_tx(struct vnet *vn)
{
    struct virtio_pci *vp = vn->vp;

    for (unsigned i = 0; i < VNET_TX_BATCH; i++) {
        size_t len = 0, hl = 0, out;
        bool send = false;
        int ret;

        virtq_lock(vp, VNET_TX);
        ret = virtq_pop(vp, VNET_TX, &vn->txreq);
        if (ret > 0) {
            uint64_t f = virtio_features(vp);
            struct virtio_net_hdr h;

            hl = hdr_len(f);
            out = iov_size(vn->txreq.iov, vn->txreq.n_out);
            if (out >= hl + 14 && out - hl <= NET_MAX_FRAME) {
                len = out - hl;
                iov_xfer(vn->txreq.iov, vn->txreq.n_out, 0, vn->txbuf, out,
                         false);
                memcpy(&h, vn->txbuf, sizeof(h));
                send = vnet_tx_csum(f, vn->txbuf + hl, len, &h);
            }
            if (!send)
                vn->tx_dropped++;
            virtq_push(vp, VNET_TX, &vn->txreq, 0);
        }
        virtq_notify(vp, VNET_TX);
        virtq_unlock(vp, VNET_TX);
        if (ret <= 0)
            return false;
        /* outside the queue's lock: the backend may answer at once */
        if (send)
            vn->be->ops->send(vn->be, vn->txbuf + hl, len);
    }
    return true;
}

/* ---- the I/O thread ---- */

static void drain(int fd)
{
    uint64_t n;

    if (read(fd, &n, sizeof(n)) < 0) {
        /* EAGAIN cannot happen: the fd polled readable */
    }
}

/* The I/O thread cannot go on: it says why and the device asks the
 * guest for a reset (which does not start the thread again: the device
 * stays off until calf restarts). */
static void vnet_fail(struct vnet *vn, const char *what, int err)
{
    fprintf(stderr, "calf: virtio-net: I/O thread stops: %s: %s\n", what,
            strerror(err));
    virtio_set_needs_reset(vn->vp);
}

/* Locking: the thread holds one queue's lock at a time, only while it
 * moves frames in or out of that ring (bounded: one frame's buffers, or
 * one transmitted frame); the backend runs with no lock held.  A reset
 * (a vCPU, under the bus lock) thus waits for one frame at most. */
static void *vnet_thread(void *opaque)
{
    struct vnet *vn = opaque;
    int rx_fd = virtq_kick_fd(vn->vp, VNET_RX);
    int tx_fd = virtq_kick_fd(vn->vp, VNET_TX);
    bool tx_more = false;

    while (!atomic_load(&vn->stop)) {
        int timeout = tx_more ? 0 : -1, r;
        struct net_pollset *ps = &vn->ps;

        ps->n = 0;
        net_pollset_add(ps, vn->stop_fd, POLLIN);
        net_pollset_add(ps, rx_fd, POLLIN);
        net_pollset_add(ps, tx_fd, POLLIN);
        if (ps->n < 3) {
            vnet_fail(vn, "out of memory", ENOMEM);
            break;
        }
        vn->be->ops->fill(vn->be, ps, &timeout);
        r = poll(ps->fds, ps->n, timeout);
        if (atomic_load(&vn->stop))
            break;
        if (r < 0 && errno != EINTR) {
            vnet_fail(vn, "poll", errno);
            break;
        }
        if (r > 0 && (ps->fds[1].revents & POLLIN)) {
            drain(rx_fd);
            vnet_rx_flush(vn);
        }
        if (tx_more || (r > 0 && (ps->fds[2].revents & POLLIN))) {
            if (r > 0 && (ps->fds[2].revents & POLLIN))
                drain(tx_fd);
            tx_more = vnet_tx(vn);
        }
        vn->be->ops->poll(vn->be, ps, r < 0);
    }
    return NULL;
}

/* ---- device ---- */

static void vnet_config_rw(void *opaque, uint64_t off, uint8_t *data,
                           unsigned size, bool is_write)
{
    struct vnet *vn = opaque;

    if (is_write)
        return; /* the MAC stays what calf gave (no CTRL_MAC_ADDR) */
    if (off + size <= sizeof(vn->config))
        memcpy(data, vn->config + off, size);
    else
        memset(data, 0, size);
}

static void vnet_stop(void *opaque)
{
    struct vnet *vn = opaque;
    uint64_t one = 1;

    atomic_store(&vn->stop, true);
    if (!vn->started)
        return;
    if (write(vn->stop_fd, &one, sizeof(one)) < 0) {
        /* a saturated counter already wakes it */
    }
    pthread_join(vn->thread, NULL);
    vn->started = false;
}

static void vnet_destroy(void *opaque)
{
    struct vnet *vn = opaque;

    vnet_stop(vn);
    if (vn->be)
        vn->be->ops->destroy(vn->be);
    while (vn->backlog) {
        struct vnet_frame *fr = vn->backlog;

        vn->backlog = fr->next;
        free(fr);
    }
    if (vn->stop_fd >= 0)
        close(vn->stop_fd);
    free(vn->ps.fds);
    free(vn);
}

static const struct virtio_dev_ops vnet_ops = {
    .config_rw = vnet_config_rw,
    .stop = vnet_stop,
    .destroy = vnet_destroy,
};

int virtio_net_add(struct pci *pci, int slot, const struct net_opts *o)
{
    struct virtio_pci_config vc = {
        .slot = slot, .device_type = VIRTIO_ID_NET,
        .class_code = 0x02, .subclass = 0x00, /* Ethernet controller */
        .features = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS |
                    1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_CSUM |
                    1ULL << VIRTIO_NET_F_GUEST_CSUM,
        .num_queues = 2, .queue_max = VNET_QUEUE_SIZE,
        .transitional = !o->modern, .config_size = VNET_CONFIG_SIZE,
    };
    struct vnet *vn = calloc(1, sizeof(*vn));
    int ret;

    if (!vn)
        return -ENOMEM;
    vn->backlog_tail = &vn->backlog;
    memcpy(vn->config, o->mac, 6);
    put_le16(vn->config + 6, VIRTIO_NET_S_LINK_UP);
    put_le16(vn->config + 8, 1);
    vn->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (vn->stop_fd < 0) {
        ret = -errno;
        free(vn);
        return ret;
    }
    ret = net_backend_create(o, vnet_receive, vn, &vn->be);
    if (ret) {
        vnet_destroy(vn);
        return ret;
    }
    ret = virtio_pci_create(pci, &vc, &vnet_ops, vn, &vn->vp);
    if (ret) {
        if (!vn->vp) /* else the PCI function owns vn */
            vnet_destroy(vn);
    } else {
        ret = -pthread_create(&vn->thread, NULL, vnet_thread, vn);
        vn->started = !ret;
    }
    if (ret)
        fprintf(stderr, "calf: --net: cannot attach virtio-net: %s\n",
                strerror(-ret));
    return ret;
}
