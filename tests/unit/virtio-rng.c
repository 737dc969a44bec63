/* virtio-rng (devices/virtio/rng.c) on the real bus and virtio PCI
 * transport, without a VM: a fake host whose guest RAM is a plain buffer,
 * the modern register block driven as a driver does, requests put in a
 * split virtqueue by hand.
 *
 * What it checks: buffers come back filled (the bytes the test put there
 * are gone, not all bytes equal, two requests differ), a chain of several
 * writable buffers is filled whole, device-readable buffers are not
 * written, a chain with no writable buffer completes with length 0, one
 * request gets at most 64 KiB; hostile chains (a buffer outside RAM, a
 * descriptor loop) make the device ask for a reset and it serves again
 * after one; the rate limit (max-bytes per period) cuts a large request
 * to what is left and holds the next one until the next period; calf's
 * teardown does not wait for a period; and --rng's parser.  TAP. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "devices/bus.h"
#include "devices/pci.h"
#include "devices/virtio/virtio.h"

#define RAM_SIZE (4u << 20)
#define QSZ 16
#define DESC 0x10000u
#define AVAIL 0x11000u
#define USED 0x12000u
#define DATA 0x100000u

struct dev {
    struct bus *bus;
    struct pci *pci;
    uint64_t bar;
    uint16_t next_avail, last_used;
    unsigned next_desc;
};

#include "tests/unit/unit-virtio.h"

/* The driver's side of initialization, one queue of QSZ entries. */
static int driver_init(struct dev *d)
{
    memset(ram + DESC, 0, USED + 0x1000 - DESC);
    d->next_avail = d->last_used = 0;
    d->next_desc = 0;
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, 0);
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE |
                                       VIRTIO_CONFIG_S_DRIVER);
    mw(d, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
    mw(d, VIRTIO_PCI_COMMON_GF, 4, 1); /* VERSION_1 */
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, 0x0b);
    if (!(status(d) & VIRTIO_CONFIG_S_FEATURES_OK))
        return -1;
    mw(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
    mw(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, QSZ);
    mw(d, VIRTIO_PCI_COMMON_Q_DESCLO, 8, DESC);
    mw(d, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, AVAIL);
    mw(d, VIRTIO_PCI_COMMON_Q_USEDLO, 8, USED);
    mw(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    mw(d, VIRTIO_PCI_COMMON_STATUS, 1, 0x0f);
    return status(d) == 0x0f ? 0 : -1;
}

static int dev_create(struct dev *d, const char *spec)
{
    struct rng_opts o;

    memset(d, 0, sizeof(*d));
    d->bus = bus_create(&fake_ops, NULL);
    /* modern only: the virtio structures in memory BAR 0 */
    if (!d->bus || virtio_rng_parse(spec, &o) || !(o.modern = true) ||
        pci_create(d->bus, 0xe0000000ULL, &d->pci) ||
        virtio_rng_add(d->pci, SLOT, &o))
        return -1;
    map_bar0(d);
    return driver_init(d);
}

static void put_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    struct vring_desc *t = (struct vring_desc *)(ram + DESC);

    t[i] = (struct vring_desc){ addr, len, flags, next };
}

/* Offers the chain at head and kicks (no ioeventfd here: the notify write
 * reaches the device through the bus, as without KVM's). */
static void offer(struct dev *d, unsigned head)
{
    uint16_t *avail = (uint16_t *)(ram + AVAIL);

    avail[2 + d->next_avail % QSZ] = (uint16_t)head;
    d->next_avail++;
    __atomic_store_n(&avail[1], d->next_avail, __ATOMIC_RELEASE);
    mw(d, 0x3000, 2, 0);
}

/* Waits up to ms for the next used element; its length, or -1. */
static long wait_used(struct dev *d, unsigned ms)
{
    uint16_t *used_idx = (uint16_t *)(ram + USED + 2);
    struct vring_used_elem *ring = (struct vring_used_elem *)(ram + USED + 4);
    uint64_t end = ms_now() + ms;

    while (__atomic_load_n(used_idx, __ATOMIC_ACQUIRE) == d->last_used) {
        if (ms_now() >= end)
            return -1;
        usleep(1000);
    }
    return ring[d->last_used++ % QSZ].len;
}

/* One request of n writable buffers of the given lengths, laid out one
 * after another at DATA (filled with 0xa5 first). */
static long request(struct dev *d, const uint32_t *lens, unsigned n,
                    unsigned wait_ms)
{
    unsigned head = d->next_desc % QSZ;
    uint64_t at = DATA;

    for (unsigned i = 0; i < n; i++) {
        unsigned idx = (head + i) % QSZ;

        memset(ram + at, 0xa5, lens[i]);
        put_desc(idx, at, lens[i],
                 (uint16_t)(VRING_DESC_F_WRITE |
                            (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
                 (uint16_t)((idx + 1) % QSZ));
        at += lens[i];
    }
    d->next_desc += n;
    offer(d, head);
    return wait_used(d, wait_ms);
}

/* Whether [p, p+n) was rewritten: not all 0xa5 and not all one byte. */
static int random_looking(const uint8_t *p, size_t n)
{
    size_t same = 0, pat = 0;

    for (size_t i = 0; i < n; i++) {
        same += p[i] == p[0];
        pat += p[i] == 0xa5;
    }
    return same < n && pat < n / 8 + 2;
}

static void test_fill(void)
{
    struct dev d;
    uint8_t first[64];
    uint32_t one = 64, three[3] = { 10, 20, 34 }, big = 256u << 10;
    long len;

    if (dev_create(&d, "on")) {
        ok(0, "virtio-rng is created and a driver sets it up");
        return;
    }
    ok(1, "virtio-rng is created and a driver sets it up");
    len = request(&d, &one, 1, 5000);
    ok(len == 64 && random_looking(ram + DATA, 64),
       "a 64-byte buffer comes back with 64 random bytes");
    memcpy(first, ram + DATA, 64);
    len = request(&d, &one, 1, 5000);
    ok(len == 64 && memcmp(first, ram + DATA, 64),
       "a second request gets other bytes");
    len = request(&d, three, 3, 5000);
    ok(len == 64 && random_looking(ram + DATA, 10) &&
           random_looking(ram + DATA + 10, 20) &&
           random_looking(ram + DATA + 30, 34),
       "a chain of three writable buffers is filled whole (used length 64)");
    len = request(&d, &big, 1, 5000);
    ok(len == 64 << 10 && random_looking(ram + DATA, 64 << 10) &&
           ram[DATA + (64 << 10)] == 0xa5 &&
           ram[DATA + big - 1] == 0xa5,
       "a 256 KiB buffer gets 64 KiB, and nothing past them is written");

    /* readable, then writable: only the writable one is filled */
    memset(ram + DATA, 0x11, 32);
    memset(ram + DATA + 32, 0xa5, 32);
    put_desc(d.next_desc % QSZ, DATA, 32, VRING_DESC_F_NEXT,
             (uint16_t)((d.next_desc + 1) % QSZ));
    put_desc((d.next_desc + 1) % QSZ, DATA + 32, 32, VRING_DESC_F_WRITE, 0);
    offer(&d, d.next_desc % QSZ);
    d.next_desc += 2;
    len = wait_used(&d, 5000);
    ok(len == 32 && ram[DATA] == 0x11 && ram[DATA + 31] == 0x11 &&
           random_looking(ram + DATA + 32, 32),
       "a device-readable buffer is left alone, the writable one filled");
    /* nothing writable: completed empty, the device still serves */
    put_desc(d.next_desc % QSZ, DATA, 32, 0, 0);
    offer(&d, d.next_desc++ % QSZ);
    len = wait_used(&d, 5000);
    ok(len == 0 && !(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET) &&
           request(&d, &one, 1, 5000) == 64,
       "a chain without writable buffers completes with length 0");

    /* hostile chains */
    put_desc(d.next_desc % QSZ, RAM_SIZE - 16, 64, VRING_DESC_F_WRITE, 0);
    offer(&d, d.next_desc++ % QSZ);
    for (int i = 0; i < 5000 && !(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
        usleep(1000);
    ok(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET,
       "a buffer past the end of RAM: the device needs a reset");
    ok(driver_init(&d) == 0 && request(&d, &one, 1, 5000) == 64,
       "after a reset it serves again");
    put_desc(0, DATA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    put_desc(1, DATA + 8, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
    d.next_desc = 0;
    offer(&d, 0);
    for (int i = 0; i < 5000 && !(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
        usleep(1000);
    ok(status(&d) & VIRTIO_CONFIG_S_NEEDS_RESET,
       "a descriptor loop: the device needs a reset, no hang");
    ok(driver_init(&d) == 0 && request(&d, &one, 1, 5000) == 64,
       "and serves again after a reset");
    dev_destroy(&d);
}

static void test_rate_limit(void)
{
    struct dev d;
    uint32_t big = 4096, small = 50;
    uint64_t t0, t1;
    long len;

    if (dev_create(&d, "max-bytes=100,period=400")) {
        ok(0, "virtio-rng with max-bytes=100,period=400");
        return;
    }
    t0 = ms_now();
    len = request(&d, &big, 1, 5000);
    ok(len == 100 && random_looking(ram + DATA, 100) &&
           ram[DATA + 100] == 0xa5,
       "max-bytes=100: a 4096-byte request gets the 100 bytes of the period");
    len = request(&d, &small, 1, 150);
    ok(len < 0, "the next request waits while the period lasts");
    len = wait_used(&d, 5000);
    t1 = ms_now();
    ok(len == 50 && t1 - t0 >= 350,
       "and is served when the next period begins");
    printf("# second request served after %llu ms (period 400 ms)\n",
           (unsigned long long)(t1 - t0));
    dev_destroy(&d);

    /* Teardown while a request waits for a long period. */
    if (dev_create(&d, "max-bytes=10,period=60000")) {
        ok(0, "virtio-rng with period=60000");
        return;
    }
    request(&d, &small, 1, 5000);
    request(&d, &small, 1, 50);
    t0 = ms_now();
    dev_destroy(&d);
    t1 = ms_now();
    ok(t1 - t0 < 2000, "teardown does not wait for the period to end");
}

static void test_parse(void)
{
    struct rng_opts o;

    ok(virtio_rng_parse("off", &o) == 0 && !o.on, "--rng off");
    ok(virtio_rng_parse("on", &o) == 0 && o.on &&
           o.max_bytes == 0x7fffffffffffffffULL && o.period_ms == 65536,
       "--rng on: QEMU's defaults (max-bytes 2^63-1, period 65536 ms)");
    ok(virtio_rng_parse("max-bytes=1024,period=1000,disable-legacy", &o) == 0 &&
           o.on && o.max_bytes == 1024 && o.period_ms == 1000 && o.modern,
       "--rng max-bytes=1024,period=1000,disable-legacy");
    fprintf(stderr, "# the parser's messages for bad values follow:\n");
    ok(virtio_rng_parse("max-bytes=0", &o) == -EINVAL &&
           virtio_rng_parse("max-bytes=-1", &o) == -EINVAL &&
           virtio_rng_parse("period=x", &o) == -EINVAL &&
           virtio_rng_parse("period=0", &o) == -EINVAL &&
           virtio_rng_parse("bogus", &o) == -EINVAL,
       "bad values and unknown options are refused");
}

int main(void)
{
    if (!unit_ram_alloc())
        return 1;
    test_parse();
    test_fill();
    test_rate_limit();
    printf("1..%d\n", t_num);
    free(ram);
    return t_fail ? 1 : 0;
}
