/* virtio-net (devices/virtio/net.c) with user-mode networking
 * (devices/net/slirp.c) on the real bus and virtio PCI transport,
 * without a VM: a fake host whose guest RAM is a plain buffer, the modern
 * register block driven as a driver does, frames put in the transmit
 * queue and taken from the receive queue by hand.  This program is the
 * guest; real sockets on 127.0.0.1 are the outside world.
 *
 * Checks: configuration space (MAC, link up) and features; ARP for the
 * gateway 10.0.2.2 answered by slirp with its MAC; UDP from the guest to
 * 10.0.2.2:PORT reaches a host socket on 127.0.0.1:PORT (restrict=off,
 * the default)
 * with its payload, also with the checksum left to the device
 * (NEEDS_CSUM: slirp drops a UDP datagram whose checksum is wrong); UDP
 * from a host socket to the hostfwd port reaches the guest as a frame to
 * 10.0.2.15 with the payload; with mergeable buffers a frame spans
 * several and says so in num_buffers; restrict=on keeps the guest from
 * the host; bad frames (oversized, a GSO type, a checksum offset outside
 * the frame, a header shorter than the virtio one) are dropped and the
 * device goes on; a receive ring the guest never refills holds a bounded
 * backlog and then drops; a frame no full ring can hold is dropped;
 * hostile chains make the device ask for a reset.  With root, a tap made
 * for the test and a packet socket on it: the tap's frames come without
 * DATA_VALID, a completed UDP checksum that folds to 0 goes out as
 * 0xffff, and the tap deleted under the device does not make its thread
 * spin.
 * Stress (the threads): N datagrams each way at once, host sender thread
 * against the device's I/O thread, checked against the model of what was
 * sent (every payload, in order, none twice; losses only where the
 * receive ring was full).  TAP. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "devices/bus.h"
#include "devices/net/net.h"
#include "devices/pci.h"
#include "devices/virtio/virtio.h"

#define RAM_SIZE (8u << 20)
/* the rings' size (the driver's choice; 64 but in one test) */
#define QSZ qsz
static unsigned qsz = 64;
/* queue q's rings at QBASE(q): descriptors, available, used; buffers
 * of the receive queue at RXBUF, of the transmit queue at TXBUF */
#define QBASE(q) (0x10000u + (q) * 0x10000u)
#define RXBUF 0x100000u
#define RXBUF_SIZE 2048u
#define TXBUF 0x400000u
#define TXBUF_SIZE 0x11000u

struct q {
    uint16_t next_avail, last_used;
    unsigned next_desc;
};

struct dev {
    struct bus *bus;
    struct pci *pci;
    uint64_t bar, features;
    struct q q[2];
    unsigned hl;
};

#include "tests/unit/unit-virtio.h"

static uint16_t *avail(unsigned q) { return (uint16_t *)(ram + QBASE(q) + 0x1000); }
static uint16_t *used(unsigned q) { return (uint16_t *)(ram + QBASE(q) + 0x2000); }

static void put_desc(unsigned q, unsigned i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    struct vring_desc *t = (struct vring_desc *)(ram + QBASE(q));

    t[i % QSZ] = (struct vring_desc){ addr, len, flags, next };
}

static void offer(struct dev *d, unsigned q, unsigned head, bool kick)
{
    struct q *s = &d->q[q];

    avail(q)[2 + s->next_avail % QSZ] = (uint16_t)head;
    s->next_avail++;
    __atomic_store_n(&avail(q)[1], s->next_avail, __ATOMIC_RELEASE);
    if (kick)
        mw(d, 0x3000 + 4 * q, 2, q);
}

/* Posts n receive buffers of size bytes each (one descriptor each). */
static void rx_post(struct dev *d, unsigned n, uint32_t size)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned idx = d->q[0].next_desc++ % QSZ;

        put_desc(0, idx, RXBUF + idx * RXBUF_SIZE, size, VRING_DESC_F_WRITE, 0);
        offer(d, 0, idx, i + 1 == n);
    }
}

static int driver_init(struct dev *d, uint64_t want)
{
    uint64_t f;

    memset(ram + QBASE(0), 0, 0x20000);
    memset(d->q, 0, sizeof(d->q));
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, 0);
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, 3);
    mw(d, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
    f = mr(d, VIRTIO_PCI_COMMON_DF, 4);
    mw(d, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
    f |= mr(d, VIRTIO_PCI_COMMON_DF, 4) << 32;
    d->features = f & (want | 1ULL << VIRTIO_F_VERSION_1);
    mw(d, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
    mw(d, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)d->features);
    mw(d, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
    mw(d, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(d->features >> 32));
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, 0x0b);
    if (!(status(d) & VIRTIO_CONFIG_S_FEATURES_OK))
        return -1;
    for (unsigned q = 0; q < 2; q++) {
        mw(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
        mw(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, QSZ);
        mw(d, VIRTIO_PCI_COMMON_Q_DESCLO, 8, QBASE(q));
        mw(d, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, QBASE(q) + 0x1000);
        mw(d, VIRTIO_PCI_COMMON_Q_USEDLO, 8, QBASE(q) + 0x2000);
        mw(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    }
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, 0x0f);
    d->hl = 12;
    return status(d) == 0x0f ? 0 : -1;
}

static const uint64_t WANT = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS |
                             1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_GUEST_CSUM;

static int dev_create(struct dev *d, const char *spec, uint64_t want)
{
    struct net_opts o;

    memset(d, 0, sizeof(*d));
    d->bus = bus_create(&fake_ops, NULL);
    if (!d->bus || net_parse(spec, 0, &o) || pci_create(d->bus, 0xe0000000ULL, &d->pci))
        return -1;
    o.modern = true; /* the virtio structures in memory BAR 0 */
    if (virtio_net_add(d->pci, SLOT, &o))
        return -1;
    map_bar0(d);
    return driver_init(d, want);
}

/* The next used element of queue q within ms: its id (len in *len), -1. */
static int wait_used(struct dev *d, unsigned q, unsigned ms, uint32_t *len)
{
    struct q *s = &d->q[q];
    struct vring_used_elem *ring = (struct vring_used_elem *)(used(q) + 2);
    uint64_t end = ms_now() + ms;

    while (__atomic_load_n(&used(q)[1], __ATOMIC_ACQUIRE) == s->last_used) {
        if (ms_now() >= end)
            return -1;
        usleep(200);
    }
    *len = ring[s->last_used % QSZ].len;
    return (int)ring[s->last_used++ % QSZ].id;
}

/* ---- frames ---- */

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static uint8_t gw_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint16_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 2)
        sum += (uint32_t)p[i] << 8 | (i + 1 < n ? p[i + 1] : 0);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

/* Ethernet + IPv4 + UDP from 10.0.2.15:sport to dst:dport.  partial: the
 * UDP checksum field holds only the pseudo-header sum (NEEDS_CSUM). */
static size_t udp_frame(uint8_t *f, const char *dst, uint16_t sport, uint16_t dport,
                        const void *payload, size_t n, bool partial)
{
    uint8_t *ip = f + 14, *udp = ip + 20, pseudo[12];
    struct in_addr src, dsta;
    uint16_t sum;

    inet_pton(AF_INET, "10.0.2.15", &src);
    inet_pton(AF_INET, dst, &dsta);
    memcpy(f, gw_mac, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, 0x0800);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + 8 + n));
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, &src, 4);
    memcpy(ip + 16, &dsta, 4);
    put16(ip + 10, (uint16_t)~csum_add(0, ip, 20));
    put16(udp, sport);
    put16(udp + 2, dport);
    put16(udp + 4, (uint16_t)(8 + n));
    put16(udp + 6, 0);
    memcpy(udp + 8, payload, n);
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = 17;
    put16(pseudo + 10, (uint16_t)(8 + n));
    sum = csum_add(0, pseudo, 12);
    if (partial) {
        put16(udp + 6, sum);
    } else {
        sum = (uint16_t)~csum_add(sum, udp, 8 + n);
        put16(udp + 6, sum ? sum : 0xffff);
    }
    return 14 + 20 + 8 + n;
}

static size_t arp_request(uint8_t *f, const char *who)
{
    struct in_addr me, target;

    inet_pton(AF_INET, "10.0.2.15", &me);
    inet_pton(AF_INET, who, &target);
    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, 0x0806);
    put16(f + 14, 1);
    put16(f + 16, 0x0800);
    f[18] = 6;
    f[19] = 4;
    put16(f + 20, 1);
    memcpy(f + 22, guest_mac, 6);
    memcpy(f + 28, &me, 4);
    memset(f + 32, 0, 6);
    memcpy(f + 38, &target, 4);
    return 42;
}

/* Sends one frame with a virtio header (hdr: NULL for none needed)
 * through the transmit queue and waits until the device took it. */
static int tx(struct dev *d, const uint8_t *frame, size_t len,
              const struct virtio_net_hdr *h)
{
    unsigned idx = d->q[1].next_desc++ % QSZ;
    uint64_t at = TXBUF + (idx % 4) * TXBUF_SIZE;
    struct virtio_net_hdr_mrg_rxbuf hdr;
    uint32_t ulen;

    memset(&hdr, 0, sizeof(hdr));
    if (h)
        hdr.hdr = *h;
    memcpy(ram + at, &hdr, d->hl);
    memcpy(ram + at + d->hl, frame, len);
    put_desc(1, idx, at, (uint32_t)(d->hl + len), 0, 0);
    offer(d, 1, idx, true);
    return wait_used(d, 1, 5000, &ulen) < 0 ? -1 : 0;
}

/* The virtio header's flags of the last frame rx() took. */
static unsigned rx_flags;

/* The next received frame (virtio header stripped) into buf, within ms;
 * its length, or -1.  *nbuf: the header's num_buffers.  The buffer goes
 * back to the ring at once. */
static long rx(struct dev *d, uint8_t *buf, size_t cap, unsigned ms, unsigned *nbuf)
{
    uint32_t len;
    int id = wait_used(d, 0, ms, &len);
    size_t n;

    if (id < 0)
        return -1;
    rx_flags = ram[RXBUF + (unsigned)id * RXBUF_SIZE];
    if (nbuf)
        *nbuf = ram[RXBUF + (unsigned)id * RXBUF_SIZE + 10] |
                ram[RXBUF + (unsigned)id * RXBUF_SIZE + 11] << 8;
    n = len > d->hl ? len - d->hl : 0;
    if (n > cap)
        n = cap;
    memcpy(buf, ram + RXBUF + (unsigned)id * RXBUF_SIZE + d->hl, n);
    /* the same buffer again (the descriptor still says its size) */
    offer(d, 0, (unsigned)id, true);
    return (long)(len - d->hl);
}

/* Receives until a UDP frame to 10.0.2.15:port comes; its payload. */
static long rx_udp(struct dev *d, uint16_t port, uint8_t *payload, size_t cap, unsigned ms)
{
    static uint8_t f[RXBUF_SIZE];
    uint64_t end = ms_now() + ms;

    while (ms_now() < end) {
        long n = rx(d, f, sizeof(f), (unsigned)(end - ms_now()), NULL);

        if (n < 42)
            continue;
        if (f[12] == 8 && f[13] == 0 && f[23] == 17 && (f[36] << 8 | f[37]) == port) {
            size_t pl = (size_t)n - 42 < cap ? (size_t)n - 42 : cap;

            memcpy(payload, f + 42, pl);
            return (long)pl;
        }
    }
    return -1;
}

static int udp_socket(uint16_t *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof(a);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(s, (struct sockaddr *)&a, &l))
        return -1;
    *port = ntohs(a.sin_port);
    return s;
}

/* A free UDP port on 127.0.0.1 (for a hostfwd rule). */
static uint16_t free_port(void)
{
    uint16_t p = 0;
    int s = udp_socket(&p);

    close(s);
    return p;
}

static long sock_recv(int s, void *buf, size_t n, int ms)
{
    struct pollfd p = { .fd = s, .events = POLLIN };

    if (poll(&p, 1, ms) <= 0)
        return -1;
    return recv(s, buf, n, 0);
}

static int sock_send_to(int s, uint16_t port, const void *buf, size_t n)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

    return sendto(s, buf, n, 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)n ? 0 : -1;
}

/* ARP for the gateway: slirp learns the guest's MAC, the guest the
 * gateway's. */
static void learn_gw(struct dev *d)
{
    uint8_t f[RXBUF_SIZE];

    tx(d, f, arp_request(f, "10.0.2.2"), NULL);
    if (rx(d, f, sizeof(f), 5000, NULL) >= 42)
        memcpy(gw_mac, f + 22, 6);
}

/* ---- the checks ---- */

static void test_basic(void)
{
    struct dev d;
    uint8_t f[2048], got[256];
    char spec[128];
    uint16_t hport = free_port(), sport;
    int s = udp_socket(&sport);
    long n;

    /* the default, restrict=off as QEMU's: the guest reaches the host */
    snprintf(spec, sizeof(spec), "user,hostfwd=udp::%u-:7777", hport);
    if (s < 0 || dev_create(&d, spec, WANT)) {
        ok(0, "virtio-net with --net user is created and set up");
        return;
    }
    ok(1, "virtio-net with --net user is created and set up");
    ok(mr(&d, 0x2000, 4) == 0x12005452 && mr(&d, 0x2004, 2) == 0x5634 &&
           mr(&d, 0x2006, 2) == VIRTIO_NET_S_LINK_UP,
       "configuration: MAC 52:54:00:12:34:56, link up");
    ok((d.features & WANT) == WANT, "MAC, STATUS, CSUM and GUEST_CSUM offered");
    rx_post(&d, 32, RXBUF_SIZE);

    tx(&d, f, arp_request(f, "10.0.2.2"), NULL);
    n = rx(&d, f, sizeof(f), 5000, NULL);
    ok(n >= 42 && f[12] == 8 && f[13] == 6 && f[21] == 2 &&
           !memcmp(f, guest_mac, 6) && !memcmp(f + 32, guest_mac, 6),
       "ARP for 10.0.2.2 is answered to the guest's MAC");
    if (n >= 42)
        memcpy(gw_mac, f + 22, 6);

    n = udp_frame(f, "10.0.2.2", 5555, sport, "hello host", 10, false);
    tx(&d, f, (size_t)n, NULL);
    n = sock_recv(s, got, sizeof(got), 5000);
    ok(n == 10 && !memcmp(got, "hello host", 10),
       "UDP from the guest to 10.0.2.2 reaches a socket on 127.0.0.1");

    {
        struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                    .csum_start = 34, .csum_offset = 6 };

        n = udp_frame(f, "10.0.2.2", 5555, sport, "partial csum", 12, true);
        tx(&d, f, (size_t)n, &h);
        n = sock_recv(s, got, sizeof(got), 5000);
        ok(n == 12 && !memcmp(got, "partial csum", 12),
           "NEEDS_CSUM: the device completes the UDP checksum (slirp checks it)");
        /* the same frame without the device's help: slirp drops it */
        n = udp_frame(f, "10.0.2.2", 5555, sport, "partial csum", 12, true);
        tx(&d, f, (size_t)n, NULL);
        ok(sock_recv(s, got, sizeof(got), 300) < 0,
           "and a frame with that checksum left undone is dropped by slirp");
    }

    sock_send_to(s, hport, "hello guest", 11);
    n = rx_udp(&d, 7777, got, sizeof(got), 5000);
    ok(n == 11 && !memcmp(got, "hello guest", 11),
       "hostfwd=udp::PORT-:7777: a host datagram reaches the guest's port 7777");
    ok(n == 11 && rx_flags == VIRTIO_NET_HDR_F_DATA_VALID,
       "and slirp's frame comes with DATA_VALID (slirp built its checksums)");

    /* bad frames: dropped, the device goes on */
    {
        struct virtio_net_hdr gso = { .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 };
        struct virtio_net_hdr far = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                      .csum_start = 40, .csum_offset = 60000 };
        static uint8_t big[NET_MAX_FRAME + 16];
        size_t l = udp_frame(f, "10.0.2.2", 5555, sport, "x", 1, false);

        memcpy(big, f, l);
        tx(&d, big, sizeof(big), NULL);
        tx(&d, f, l, &gso);
        tx(&d, f, l, &far);
        tx(&d, f, 5, NULL);
        ok(sock_recv(s, got, sizeof(got), 300) < 0 &&
               !(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET),
           "oversized, GSO, checksum offset outside, runt: all dropped");
        l = udp_frame(f, "10.0.2.2", 5555, sport, "after", 5, false);
        tx(&d, f, l, NULL);
        n = sock_recv(s, got, sizeof(got), 5000);
        ok(n == 5 && !memcmp(got, "after", 5), "and the next good frame goes through");
    }
    close(s);
    dev_destroy(&d);
}

static void test_mergeable(void)
{
    struct dev d;
    uint8_t got[2048], payload[1400];
    char spec[128];
    uint16_t hport = free_port(), sport;
    int s = udp_socket(&sport);
    unsigned nbuf = 0;
    uint32_t len;
    int id;

    snprintf(spec, sizeof(spec), "user,hostfwd=udp::%u-:7777", hport);
    if (s < 0 || dev_create(&d, spec, WANT | 1ULL << VIRTIO_NET_F_MRG_RXBUF)) {
        ok(0, "virtio-net with MRG_RXBUF");
        return;
    }
    /* buffers of 256 bytes: a 1442-byte frame needs six; first an ARP,
     * so that slirp knows the guest's MAC (its answer fits one) */
    rx_post(&d, 32, 256);
    learn_gw(&d);
    for (unsigned i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    sock_send_to(s, hport, payload, sizeof(payload));
    id = wait_used(&d, 0, 5000, &len);
    if (id >= 0) {
        size_t have = len - 12, want = 42 + sizeof(payload);
        uint8_t *fr = got;

        nbuf = ram[RXBUF + (unsigned)id * RXBUF_SIZE + 10];
        memcpy(fr, ram + RXBUF + (unsigned)id * RXBUF_SIZE + 12, have);
        for (unsigned i = 1; i < nbuf; i++) {
            id = wait_used(&d, 0, 1000, &len);
            if (id < 0)
                break;
            memcpy(fr + have, ram + RXBUF + (unsigned)id * RXBUF_SIZE, len);
            have += len;
        }
        ok(nbuf == 6 && have == want && !memcmp(fr + 42, payload, sizeof(payload)),
           "MRG_RXBUF: a 1442-byte frame spans six 256-byte buffers, num_buffers 6");
    } else {
        ok(0, "MRG_RXBUF: a frame spanning buffers");
    }
    dev_destroy(&d);

    /* a ring of 8 buffers of 64 bytes can never hold a 1442-byte frame:
     * it is dropped, and the next frame that fits comes in */
    qsz = 8;
    if (dev_create(&d, spec, WANT | 1ULL << VIRTIO_NET_F_MRG_RXBUF)) {
        ok(0, "virtio-net with a ring of 8");
    } else {
        long n;

        rx_post(&d, 8, 64);
        learn_gw(&d);
        sock_send_to(s, hport, payload, sizeof(payload));
        usleep(100000);
        sock_send_to(s, hport, "after", 5);
        n = rx_udp(&d, 7777, got, sizeof(got), 3000);
        ok(n == 5 && !memcmp(got, "after", 5),
           "MRG_RXBUF, a ring too small for a frame: it is dropped, the next one comes");
    }
    qsz = 64;
    dev_destroy(&d);
    snprintf(spec, sizeof(spec), "user,restrict=on,hostfwd=udp::%u-:7777", hport);
    dev_create(&d, spec, WANT | 1ULL << VIRTIO_NET_F_MRG_RXBUF);
    rx_post(&d, 32, 256);
    learn_gw(&d);

    /* restrict=on: the host is out of reach */
    {
        uint8_t f[128];
        size_t l = udp_frame(f, "10.0.2.2", 5555, sport, "nope", 4, false);

        tx(&d, f, l, NULL);
        ok(sock_recv(s, got, sizeof(got), 300) < 0,
           "restrict=on: UDP from the guest to the host is dropped");
    }
    close(s);
    dev_destroy(&d);
}

static void test_never_refilled(void)
{
    struct dev d;
    char spec[128];
    uint16_t hport = free_port(), sport;
    int s = udp_socket(&sport);
    uint8_t got[64];
    unsigned delivered = 0;
    uint32_t len;

    snprintf(spec, sizeof(spec), "user,hostfwd=udp::%u-:7777", hport);
    if (s < 0 || dev_create(&d, spec, WANT)) {
        ok(0, "virtio-net for the never-refilled ring");
        return;
    }
    /* slirp learns the guest's MAC from its ARP; then no receive
     * buffers at all, and 2000 datagrams from the host */
    rx_post(&d, 1, RXBUF_SIZE);
    learn_gw(&d);
    for (unsigned i = 0; i < 2000; i++) {
        char m[16];

        snprintf(m, sizeof(m), "m%u", i);
        sock_send_to(s, hport, m, strlen(m));
        if (i % 100 == 99)
            usleep(2000);
    }
    usleep(300000);
    ok(!(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET),
       "2000 datagrams to a guest that never posts buffers: no error");
    /* now buffers, 64 at a time, until nothing more comes: what waited
     * comes in order, and no more than the backlog holds (256 frames) */
    {
        int last = -1, in_order = 1, round;
        unsigned post = QSZ - 1; /* the ARP's buffer is still in the ring */

        do {
            round = 0;
            rx_post(&d, post, RXBUF_SIZE);
            post = QSZ;
            for (;;) {
                int id = wait_used(&d, 0, 500, &len);
                const uint8_t *p;
                int k;

                if (id < 0)
                    break;
                p = ram + RXBUF + (unsigned)id * RXBUF_SIZE + 12;
                if (len > 12 + 43 && sscanf((const char *)p + 43, "%d", &k) == 1 &&
                    p[42] == 'm') {
                    in_order &= k > last;
                    last = k;
                }
                delivered++;
                round++;
            }
            d.q[0].next_desc = 0;
        } while (round);
        /* (one buffer, the ARP's, was back in the ring during the flood) */
        ok(delivered >= 128 && delivered <= 1 + 256 && in_order,
           "buffers posted later get what waited, in order, at most the backlog (256)");
        printf("# %u frames delivered after the flood of 2000, the last m%d\n", delivered,
               last);
    }
    (void)got;
    close(s);
    dev_destroy(&d);
}

static void test_hostile(void)
{
    struct dev d;

    if (dev_create(&d, "user", WANT)) {
        ok(0, "virtio-net for hostile chains");
        return;
    }
    put_desc(1, 0, RAM_SIZE - 8, 64, 0, 0);
    offer(&d, 1, 0, true);
    for (int i = 0; i < 5000 && !(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
        usleep(1000);
    ok(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET,
       "a transmit buffer past the end of RAM: the device needs a reset");
    driver_init(&d, WANT);
    put_desc(0, 0, RXBUF, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    put_desc(0, 1, RXBUF, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
    offer(&d, 0, 0, true);
    {
        uint8_t f[64];

        d.q[1].next_desc = 0;
        tx(&d, f, arp_request(f, "10.0.2.2"), NULL); /* an answer to deliver */
    }
    for (int i = 0; i < 5000 && !(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
        usleep(1000);
    ok(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET,
       "a receive descriptor loop: the device needs a reset, no hang");
    dev_destroy(&d);
}

/* ---- tap: the host's frames are not checked ---- */

/* A tap made for the test, up, with a packet socket on it: what the host
 * sends on the interface is the guest's to receive, what the guest sends
 * the socket sees. */
static void test_tap(void)
{
    struct dev d;
    struct ifreq ifr;
    struct sockaddr_ll sll;
    char spec[64], name[IFNAMSIZ];
    uint8_t f[2048], got[256];
    int ctl, ps;
    long n;

    if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK)) {
        for (int i = 0; i < 3; i++)
            printf("ok %d # skip a tap needs root and /dev/net/tun\n", ++t_num);
        return;
    }
    snprintf(name, sizeof(name), "cvn%u", (unsigned)getpid() % 1000000);
    snprintf(spec, sizeof(spec), "tap,ifname=%s", name);
    if (dev_create(&d, spec, WANT)) {
        for (int i = 0; i < 3; i++)
            ok(0, "virtio-net with --net tap");
        return;
    }
    ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ctl < 0 || ps < 0 || ioctl(ctl, SIOCGIFFLAGS, &ifr) < 0 ||
        (ifr.ifr_flags |= IFF_UP, ioctl(ctl, SIOCSIFFLAGS, &ifr) < 0) ||
        ioctl(ctl, SIOCGIFINDEX, &ifr) < 0) {
        for (int i = 0; i < 3; i++)
            printf("ok %d # skip cannot bring up tap %s: %s\n", ++t_num, name,
                   strerror(errno));
        goto out;
    }
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifr.ifr_ifindex;
    bind(ps, (struct sockaddr *)&sll, sizeof(sll));
    rx_post(&d, 32, RXBUF_SIZE);

    /* host to guest, with a UDP checksum that is wrong: the guest must
     * be left to check it */
    n = (long)udp_frame(f, "10.0.2.2", 5555, 7777, "from tap", 8, false);
    memcpy(f, guest_mac, 6);
    memcpy(f + 6, "\x02\x00\x00\x00\x00\x09", 6);
    f[40] ^= 0x5a;
    send(ps, f, (size_t)n, 0);
    n = rx_udp(&d, 7777, got, sizeof(got), 5000);
    ok(n == 8 && !memcmp(got, "from tap", 8) && !(rx_flags & VIRTIO_NET_HDR_F_DATA_VALID),
       "tap: a host frame reaches the guest without DATA_VALID (nobody checked it)");

    /* guest to host, NEEDS_CSUM, with a payload whose checksum folds to
     * 0: on the wire it is 0xffff (0 would mean no checksum) */
    {
        struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                    .csum_start = 34, .csum_offset = 6 };
        uint8_t pl[4] = { 0, 0, 'o', 'k' };
        uint16_t s16;
        uint64_t end = ms_now() + 5000;
        int sum = -1;

        n = (long)udp_frame(f, "10.0.2.2", 5555, 6666, pl, 4, true);
        s16 = csum_add(0, f + 34, 12);
        put16(f + 42, (uint16_t)~s16);
        tx(&d, f, (size_t)n, &h);
        while (sum < 0 && ms_now() < end) {
            struct pollfd pfd = { .fd = ps, .events = POLLIN };
            long m;

            if (poll(&pfd, 1, 200) <= 0)
                continue;
            m = recv(ps, got, sizeof(got), 0);
            if (m == n && got[12] == 8 && got[13] == 0 && got[23] == 17 &&
                (got[36] << 8 | got[37]) == 6666)
                sum = got[40] << 8 | got[41];
        }
        ok(sum == 0xffff, "NEEDS_CSUM: a UDP checksum that folds to 0 is sent as 0xffff");
        if (sum != 0xffff)
            printf("# checksum on the wire: %#x\n", sum);
    }

    /* the interface deleted under the device: its fd polls POLLERR from
     * now on; the I/O thread must not spin on it */
    {
        char cmd[64];
        struct rusage r0, r1;
        long us;

        snprintf(cmd, sizeof(cmd), "ip link delete %s 2>/dev/null", name);
        if (system(cmd) != 0) {
            printf("ok %d # skip cannot delete tap %s\n", ++t_num, name);
        } else {
            usleep(100000);
            getrusage(RUSAGE_SELF, &r0);
            usleep(500000);
            getrusage(RUSAGE_SELF, &r1);
            us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1000000L +
                 (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
                 (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000000L +
                 (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
            ok(us < 50000, "tap deleted under the device: the I/O thread does not spin");
            printf("# CPU time in 0.5 s after the tap went away: %ld us\n", us);
        }
    }
out:
    if (ctl >= 0)
        close(ctl);
    if (ps >= 0)
        close(ps);
    dev_destroy(&d);
}

/* ---- stress: both directions at once ---- */

#define STRESS_N 3000

struct sender {
    int s;
    uint16_t port;
};

static void *host_sender(void *opaque)
{
    struct sender *sd = opaque;

    for (unsigned i = 0; i < STRESS_N; i++) {
        uint8_t m[64];

        for (unsigned k = 0; k < sizeof(m); k++)
            m[k] = (uint8_t)(i * 13 + k);
        memcpy(m, &i, 4);
        sock_send_to(sd->s, sd->port, m, sizeof(m));
        if (i % 16 == 15)
            usleep(1000); /* paced: the receive ring is 64 buffers */
    }
    return NULL;
}

static void test_stress(void)
{
    struct dev d;
    char spec[128];
    uint16_t hport = free_port(), sport;
    int s = udp_socket(&sport), hs;
    struct sender sd;
    pthread_t th;
    unsigned next_in = 0, got_in = 0, bad_in = 0, got_out = 0, bad_out = 0;
    unsigned next_out = 0;
    uint64_t end;
    uint16_t hsport;

    hs = udp_socket(&hsport);
    snprintf(spec, sizeof(spec), "user,restrict=off,hostfwd=udp::%u-:7777", hport);
    if (s < 0 || hs < 0 || dev_create(&d, spec, WANT | 1ULL << VIRTIO_NET_F_MRG_RXBUF)) {
        ok(0, "virtio-net for the stress test");
        return;
    }
    d.hl = 12;
    rx_post(&d, QSZ, RXBUF_SIZE);
    learn_gw(&d);
    sd = (struct sender){ hs, hport };
    pthread_create(&th, NULL, host_sender, &sd);
    end = ms_now() + 30000;
    while (ms_now() < end && (got_in + bad_in < STRESS_N || got_out < STRESS_N)) {
        uint8_t f[RXBUF_SIZE], m[64];
        uint32_t len;
        int id;

        /* one datagram out (the model: its index and a pattern) */
        if (next_out < STRESS_N) {
            size_t l;

            for (unsigned k = 0; k < sizeof(m); k++)
                m[k] = (uint8_t)(next_out * 7 + k);
            memcpy(m, &next_out, 4);
            l = udp_frame(f, "10.0.2.2", 6000, sport, m, sizeof(m), false);
            tx(&d, f, l, NULL);
            next_out++;
        }
        while (sock_recv(s, m, sizeof(m), 0) == (long)sizeof(m)) {
            unsigned i;

            memcpy(&i, m, 4);
            if (i < STRESS_N && m[63] == (uint8_t)(i * 7 + 63))
                got_out++;
            else
                bad_out++;
        }
        /* what came in */
        while ((id = wait_used(&d, 0, 0, &len)) >= 0) {
            uint8_t *p = ram + RXBUF + (unsigned)id * RXBUF_SIZE + 12;
            unsigned i;

            if (len == 12 + 42 + 64 && p[12] == 8 && p[23] == 17) {
                memcpy(&i, p + 42, 4);
                /* in order, never twice; a gap is a drop (full ring) */
                if (i >= next_in && i < STRESS_N && p[42 + 63] == (uint8_t)(i * 13 + 63)) {
                    got_in++;
                    next_in = i + 1;
                } else {
                    bad_in++;
                }
            }
            put_desc(0, (unsigned)id, RXBUF + (unsigned)id * RXBUF_SIZE, RXBUF_SIZE,
                     VRING_DESC_F_WRITE, 0);
            offer(&d, 0, (unsigned)id, true);
        }
        if (next_out >= STRESS_N && next_in >= STRESS_N)
            break;
        if (next_out >= STRESS_N)
            usleep(500);
    }
    pthread_join(th, NULL);
    printf("# stress: guest sent %u, host got %u (%u bad); "
           "host sent %u, guest got %u in order (%u bad)\n",
           next_out, got_out, bad_out, STRESS_N, got_in, bad_in);
    ok(got_out == STRESS_N && !bad_out,
       "stress: every datagram the guest sent reached the host intact");
    /* UDP may drop where the ring and backlog were full (a loaded host
     * can starve this loop), never corrupt, reorder or duplicate */
    ok(!bad_in && got_in >= STRESS_N / 2,
       "stress: host datagrams reach the guest intact, in order, none twice");
    close(s);
    close(hs);
    dev_destroy(&d);
}

static void test_parse(void)
{
    struct net_opts o;

    ok(net_parse("user", 1, &o) == 0 && o.kind == NET_USER && !o.restricted &&
           o.mac[5] == 0x57 && !o.nfwd,
       "--net user: restrict=off (QEMU's default), MAC 52:54:00:12:34:57 for the second device");
    ok(net_parse("user,hostfwd=tcp::2222-:22,hostfwd=udp:10.1.2.3:53-10.0.2.9:5353,"
                 "mac=02:00:00:00:00:01,restrict=on", 0, &o) == 0 &&
           o.nfwd == 2 && !o.fwd[0].udp && o.fwd[0].hport == 2222 &&
           o.fwd[0].gport == 22 && o.fwd[0].haddr.s_addr == htonl(INADDR_LOOPBACK) &&
           o.fwd[0].gaddr.s_addr == inet_addr("10.0.2.15") && o.fwd[1].udp &&
           o.fwd[1].haddr.s_addr == inet_addr("10.1.2.3") &&
           o.fwd[1].gaddr.s_addr == inet_addr("10.0.2.9") && o.mac[0] == 2 &&
           o.mac[5] == 1 && o.restricted,
       "hostfwd rules (127.0.0.1 and 10.0.2.15 by default), mac=, restrict=on");
    fprintf(stderr, "# the parser's messages for bad values follow:\n");
    ok(net_parse("socket", 0, &o) && net_parse("user,hostfwd=tcp::99999-:22", 0, &o) &&
           net_parse("user,hostfwd=tcp:2222-22", 0, &o) &&
           net_parse("user,mac=01:00:00:00:00:00", 0, &o) &&
           net_parse("user,mac=52:54:00", 0, &o) && net_parse("tap,ifname=", 0, &o) &&
           net_parse("user,ifname=x", 0, &o),
       "bad backends, rules, MACs and options are refused");
}

int main(void)
{
    if (!unit_ram_alloc())
        return 1;
    test_parse();
    test_basic();
    test_mergeable();
    test_never_refilled();
    test_hostile();
    test_tap();
    test_stress();
    printf("1..%d\n", t_num);
    free(ram);
    return t_fail ? 1 : 0;
}
