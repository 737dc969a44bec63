/* libFuzzer harness: virtio-blk over PCI (devices/virtio/, linked
 * unchanged but for the hooks in blk.c): the modern and the legacy
 * register blocks mixed at will, split virtqueues in guest RAM with
 * direct and indirect descriptors, virtio-blk requests of every type,
 * MSI-X, device and machine resets in the middle of I/O.  The disk is a
 * small raw or qcow2 file (the first input byte picks it, and a
 * transitional or modern-only device), put back to its first contents
 * before every input.  The input is a byte program (fuzz-dev.h); the
 * harness's own operations:
 *   9   modern common configuration write: offset, size, value
 *   10  legacy register write (transitional only): offset, size, value
 *   11  set up a queue in one of four RAM regions, modern or legacy
 *   12  a virtio-blk request on a queue set up by 11: type, sector, up to
 *       four data buffers, optionally through an indirect table, then
 *       the doorbell (modern notify or the legacy notify port)
 *   13  the driver's init sequence: reset, ACKNOWLEDGE, DRIVER, features,
 *       FEATURES_OK, DRIVER_OK, modern or legacy
 * KVM takes notify writes through ioeventfds; the fake host here does
 * the same (fz_host.take_ioeventfds), and after every operation the
 * harness waits until the queue threads have served every kick
 * (fuzz_virtio_settle), so a replay does what the fuzzer did.
 *
 * Built with -DFZ_VIRTIO_RNG (tests/fuzz.mk) it is the virtio-rng harness
 * (fuzz-vrng): the same program drives a virtio-rng function instead,
 * whose single queue takes the same chains (the "requests" are buffers to
 * fill, the header and status bytes just more of them); first byte bit 2
 * turns on a rate limit (max-bytes 1..256 per 1..8 ms from the next
 * byte), so requests also wait for the next period.
 *
 * Built with -DFZ_VIRTIO_NET it is the virtio-net harness (fuzz-vnet):
 * a virtio-net function on user-mode networking (libslirp, restrict=on,
 * so nothing leaves the process); queue 0 receives, queue 1 transmits,
 * and the "requests" on queue 1 are frames (header and data as the
 * program wrote them into RAM) that slirp answers (ARP, DHCP, ICMP...)
 * into whatever receive buffers the program offered on queue 0. */
#include "tests/fuzz/fuzz-dev.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "block/block.h"
#include "devices/disk.h"
#include "devices/net/net.h"
#include "devices/virtio/virtio.h"
#include "tests/fuzz/fuzz-hooks.h"
#include "devices/pci.h"

#define VIO_DEVFN 0x08
#define NQUEUES 2
#define DISK_SIZE (256 << 10)
#define DATA_BASE 0x80000u

static char dir[256], path_raw[300], path_qcow2[300];
static uint8_t *pristine_qcow2;
static size_t pristine_qcow2_len;

static bool modern_only;
static struct vq_state {
    bool set;
    uint64_t desc, avail, used;
    uint16_t size, next;
} vqs[4];

static void images_cleanup(void)
{
    unlink(path_raw);
    unlink(path_qcow2);
    rmdir(dir);
}

static void images_init(void)
{
    fz_scratch_dir(dir, sizeof(dir), "fuzz-virtio");
    atexit(images_cleanup);
    snprintf(path_raw, sizeof(path_raw), "%s/disk.raw", dir);
    snprintf(path_qcow2, sizeof(path_qcow2), "%s/disk.qcow2", dir);
    fz_pristine_qcow2(path_qcow2, DISK_SIZE, 64 << 10, 5, &pristine_qcow2, &pristine_qcow2_len);
}

static void images_reset(void)
{
    static uint8_t raw[DISK_SIZE];

    if (!raw[1])
        fill_pattern(raw, sizeof(raw), 1);
    write_file(path_raw, raw, sizeof(raw));
    write_file(path_qcow2, pristine_qcow2, pristine_qcow2_len);
}

static void fz_settle(struct bus *bus)
{
    (void)bus;
    fuzz_virtio_settle();
}

static uint64_t mbar(struct bus *bus)
{
    bool io;
    uint64_t a = fz_bar_addr(bus, VIO_DEVFN, modern_only ? 0 : 4, &io);

    return io ? 0 : a;
}

static uint16_t lbar(struct bus *bus)
{
    bool io;
    uint64_t a = modern_only ? 0 : fz_bar_addr(bus, VIO_DEVFN, 0, &io);

    return a && io ? (uint16_t)a : 0;
}

static void modern_write(struct bus *bus, unsigned off, unsigned size, uint64_t v)
{
    uint64_t base = mbar(bus);
    uint8_t b[8];

    for (unsigned i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    if (base)
        fz_mem(bus, base + off, b, size, true);
}

static uint64_t modern_read(struct bus *bus, unsigned off, unsigned size)
{
    uint64_t base = mbar(bus), v = 0;
    uint8_t b[8] = { 0 };

    if (base)
        fz_mem(bus, base + off, b, size, false);
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static void legacy_write(struct bus *bus, unsigned off, unsigned size, uint32_t v)
{
    uint16_t base = lbar(bus);

    if (base)
        fz_pio(bus, (uint16_t)(base + off), size, &v, true);
}

static uint32_t legacy_read(struct bus *bus, unsigned off, unsigned size)
{
    uint16_t base = lbar(bus);
    uint32_t v = 0;

    if (base)
        fz_pio(bus, (uint16_t)(base + off), size, &v, false);
    return v;
}

static void status_write(struct bus *bus, bool legacy, uint8_t s)
{
    if (legacy)
        legacy_write(bus, VIRTIO_PCI_STATUS, 1, s);
    else
        modern_write(bus, VIRTIO_PCI_COMMON_STATUS, 1, s);
}

static void put16(uint64_t gpa, uint16_t v)
{
    if (gpa + 2 <= FZ_RAM_SIZE)
        memcpy(fz_ram + gpa, &v, 2);
}

static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint8_t d[16];

    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    if (table + 16 * (i + 1) <= FZ_RAM_SIZE)
        memcpy(fz_ram + table + 16 * i, d, 16);
}

static void queue_setup(struct bus *bus, struct fz *f)
{
    uint8_t how = fz_u8(f);
    unsigned q = how & 3, region = how >> 2 & 3;
    uint16_t size = fz_u16(f);
    uint64_t base = 0x10000 + region * 0x10000;
    struct vq_state *s = &vqs[region];
    bool legacy = (how & 0x10) && !modern_only;

    if (legacy) {
        legacy_write(bus, VIRTIO_PCI_QUEUE_SEL, 2, q);
        s->size = (uint16_t)legacy_read(bus, VIRTIO_PCI_QUEUE_NUM, 2);
        s->desc = base;
        s->avail = base + 16ull * s->size;
        s->used = (s->avail + 6 + 2ull * s->size + 4095) & ~4095ull;
        legacy_write(bus, VIRTIO_PCI_QUEUE_PFN, 4,
                     (uint32_t)(base >> VIRTIO_PCI_QUEUE_ADDR_SHIFT));
    } else {
        modern_write(bus, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
        if (how & 0x20)
            modern_write(bus, VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
        s->size = (uint16_t)modern_read(bus, VIRTIO_PCI_COMMON_Q_SIZE, 2);
        s->desc = base;
        s->avail = base + 0x1000;
        s->used = base + 0x2000;
        modern_write(bus, VIRTIO_PCI_COMMON_Q_DESCLO, 8, s->desc);
        modern_write(bus, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, s->avail);
        modern_write(bus, VIRTIO_PCI_COMMON_Q_AVAILHI, 4, 0);
        modern_write(bus, VIRTIO_PCI_COMMON_Q_USEDLO, 8, s->used);
        modern_write(bus, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    }
    s->set = true;
    s->next = 0;
}

/* One request: header, data buffers, status; direct or indirect. */
static void request(struct bus *bus, struct fz *f)
{
    uint8_t how = fz_u8(f);
    unsigned q = how & 3, region = how >> 2 & 3, ndata = fz_u8(f) % 5;
    struct vq_state *s = &vqs[region];
    uint32_t type = fz_u8(f);
    uint64_t sector = fz_le(f, 8), hdr = DATA_BASE, st = DATA_BASE + 0x100;
    bool indirect = how & 0x10, legacy_notify = (how & 0x20) && !modern_only;
    uint64_t table, at = DATA_BASE + 0x1000;
    unsigned n = 0, head;
    uint16_t idx;

    static const uint32_t types[] = { 0, 1, 4, 8, 11, 13 };
    type = type < 0xf0 ? types[type % 6] : type;
    if (!s->set || !s->size)
        return;
    if (sector & 0x8000000000000000ull) /* mostly inside the disk */
        sector %= DISK_SIZE / 512 + 2;
    memcpy(fz_ram + hdr, &type, 4);
    memset(fz_ram + hdr + 4, 0, 4);
    memcpy(fz_ram + hdr + 8, &sector, 8);
    head = s->next % s->size;
    table = indirect ? DATA_BASE + 0x800 : s->desc;
    /* with indirect, the chain lives in its own table from entry 0 */
    unsigned first = indirect ? 0 : head;
    unsigned slot = first;
    put_desc(table, slot, hdr, 16, VRING_DESC_F_NEXT,
             (uint16_t)((slot + 1) % (indirect ? 64 : s->size)));
    slot = (slot + 1) % (indirect ? 64 : s->size);
    n++;
    for (unsigned i = 0; i < ndata; i++) {
        uint16_t len = fz_u16(f);
        uint16_t flags = (uint16_t)(VRING_DESC_F_NEXT |
                                    (type == 0 || type == 8 ? VRING_DESC_F_WRITE : 0));

        if (at + len > FZ_RAM_SIZE)
            len = (uint16_t)(FZ_RAM_SIZE - at);
        put_desc(table, slot, at, len, flags,
                 (uint16_t)((slot + 1) % (indirect ? 64 : s->size)));
        at += len;
        slot = (slot + 1) % (indirect ? 64 : s->size);
        n++;
    }
    put_desc(table, slot, st, 1, VRING_DESC_F_WRITE, 0);
    n++;
    if (indirect)
        put_desc(s->desc, head, table, 16 * n, VRING_DESC_F_INDIRECT, 0);
    /* the ring: head, then the index the device reads */
    put16(s->avail + 4 + 2ull * (s->next % s->size), (uint16_t)head);
    s->next = (uint16_t)(s->next + (indirect ? 1 : n));
    idx = (uint16_t)(fz_u8(f) == 0xff ? fz_u16(f) : s->next);
    put16(s->avail + 2, idx);
    if (legacy_notify) {
        legacy_write(bus, VIRTIO_PCI_QUEUE_NOTIFY, 2, q);
    } else {
        modern_write(bus, 0x3000 + 4 * q, 2, q);
    }
}

static void driver_init(struct bus *bus, struct fz *f)
{
    uint8_t how = fz_u8(f);
    uint64_t feat = fz_le(f, 8);
    bool legacy = (how & 1) && !modern_only;

    if (!(how & 2))
        feat = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC |
               (how & 4 ? 1ull << VIRTIO_RING_F_EVENT_IDX : 0) | 0x3e56; /* blk bits */
    status_write(bus, legacy, 0);
    status_write(bus, legacy, 1);
    status_write(bus, legacy, 3);
    if (legacy) {
        legacy_write(bus, VIRTIO_PCI_GUEST_FEATURES, 4, (uint32_t)feat);
    } else {
        modern_write(bus, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
        modern_write(bus, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)feat);
        modern_write(bus, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
        modern_write(bus, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(feat >> 32));
        status_write(bus, false, 0x0b);
    }
    status_write(bus, legacy, legacy ? 0x07 : 0x0f);
}

static int fz_harness_op(struct bus *bus, unsigned op, struct fz *f)
{
    switch (op % 16) {
    case 9: {
        unsigned off = fz_u8(f) % 0x40, size = fz_size(f, true);

        modern_write(bus, off, size, fz_le(f, 8));
        break;
    }
    case 10: {
        unsigned off = fz_u8(f) % 0x20, size = fz_size(f, false);

        legacy_write(bus, off, size, fz_u32(f));
        break;
    }
    case 11:
        queue_setup(bus, f);
        break;
    case 12:
        request(bus, f);
        break;
    case 13:
        driver_init(bus, f);
        break;
    default:
        break;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = { data, size, 0 };
    struct bus *bus;
    struct pci *pci = NULL;
    struct disk_opts o;
    char spec[400];
    uint8_t how = fz_u8(&f);
    unsigned bdfs[8];
    struct fz_target t = { NULL, 0, bdfs, 0 };

    if (!pristine_qcow2)
        images_init();
    images_reset();
    fuzz_hooks_reset();
    memset(vqs, 0, sizeof(vqs));
    modern_only = how & 2;
    bus = fz_bus_create(true);
#if defined(FZ_VIRTIO_NET)
    {
        struct net_opts no;

        if (net_parse("user", 0, &no) || pci_create(bus, 0xe0000000ULL, &pci)) {
            fprintf(stderr, "fuzz-vnet: cannot create the devices\n");
            abort();
        }
        no.modern = modern_only;
        if (virtio_net_add(pci, VIO_DEVFN >> 3, &no)) {
            fprintf(stderr, "fuzz-vnet: cannot create the devices\n");
            abort();
        }
        (void)o, (void)spec;
    }
#elif defined(FZ_VIRTIO_RNG)
    {
        uint8_t lim = fz_u8(&f);
        struct rng_opts ro = { .on = true, .modern = modern_only,
                               .max_bytes = how & 4 ? 1u + lim : VIRTIO_RNG_MAX_BYTES,
                               .period_ms = how & 4 ? 1u + (lim >> 5) : VIRTIO_RNG_PERIOD_MS };

        if (pci_create(bus, 0xe0000000ULL, &pci) ||
            virtio_rng_add(pci, VIO_DEVFN >> 3, &ro)) {
            fprintf(stderr, "fuzz-vrng: cannot create the devices\n");
            abort();
        }
        (void)o, (void)spec;
    }
#else
    snprintf(spec, sizeof(spec), "%s,format=%s,if=virtio%s", how & 1 ? path_qcow2 : path_raw,
             how & 1 ? "qcow2" : "raw", modern_only ? ",disable-legacy" : "");
    memset(&o, 0, sizeof(o));
    if (disk_parse(spec, &o) || pci_create(bus, 0xe0000000ULL, &pci) ||
        virtio_blk_add(pci, VIO_DEVFN >> 3, &o, NQUEUES)) {
        fprintf(stderr, "fuzz-virtio: cannot create the devices\n");
        abort();
    }
    disk_opts_free(&o);
#endif
    t.nbdfs = fz_pci_scan(bus, bdfs, 8);
    fz_pci_enable(bus, bdfs, t.nbdfs);
    fz_run(bus, &t, &f);
    fz_settle(bus);
    bus_shutdown(bus);
    pci_destroy(pci);
    bus_destroy(bus);
    return 0;
}
