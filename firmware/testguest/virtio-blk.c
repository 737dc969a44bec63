/* A minimal virtio-blk driver (virtio 1.x over PCI, one split queue of 16,
 * polled) that tests calf's device: feature negotiation, reads and
 * multi-segment writes, flush, write-zeroes, discard, GET_ID, a read-only
 * disk, out-of-range and unknown requests, BAR sizing and relocation, the
 * PCI_CFG window, the MP table's entry for the slot.
 *
 * ct.vlegacy=1 drives transitional devices (1af4:1001) through the legacy
 * interface instead: I/O BAR 0, no VERSION_1, a 256-entry queue in the
 * legacy layout (used ring at the next 4 KiB), the same requests.
 * Ring-0 code is emulated here (~2 M instructions/s), so every loop is
 * short and data is compared a word at a time.
 *
 * ct.vhostile=1 first sends broken chains to the first disk (buffers
 * outside RAM, loops, absurd lengths, bad indexes, a queue size that is
 * not a power of 2) and checks the device asks for a reset and then
 * serves again; then features written out of turn (unoffered, after
 * FEATURES_OK or DRIVER_OK, through either register block), requests
 * past size_max and seg_max, and a reset with 256 requests of 254 MiB
 * queued (that first disk must be at least 254 MiB; the guest prints how
 * many TSC cycles the reset took, the host judges), and the same with
 * a legacy QUEUE_PFN 0 write (a device reset, as in QEMU) instead.
 *
 * ct.vflood=1 leaves 256 requests of 254 MiB queued on the first disk
 * at the end (with ct.hang=1: calf must still exit on --timeout at once).
 *
 * ct.vpat=SECTORS writes a pattern over the first disk's first SECTORS
 * sectors, pass after pass, for ever (the host ends the run): in pass p
 * (from 1) every 64-bit word of sector s is 0xC5 << 56 | p << 24 | s,
 * written 8 sectors per request in ascending order, one request at a
 * time; each 4 KiB is read before it is written (it must hold pass p-1,
 * zeros before pass 1) and after (pass p).  "calf-test: vpat pass P"
 * after each pass, "calf-test: vpat: bad ..." on a mismatch.  Whatever
 * the host did to the disk in between (a live snapshot, a commit), the
 * image the guest sees thus always holds a prefix of this sequence of
 * writes: pass P up to some sector, pass P-1 after it.  A request may
 * wait (a disk being switched): up to 2^38 TSC cycles, not a spin count.
 *
 * What it writes, for the host to check (ct.virtio=N expects N disks):
 *   bytes 0x5a at [1 MiB, 1 MiB + 32 KiB), except zeros at
 *   [1 MiB + 8 KiB, 1 MiB + 12 KiB) (write-zeroes); 0x5a at
 *   [2 MiB - 4 KiB, 2 MiB + 92 KiB), then a discard of
 *   [2 MiB, 2 MiB + 64 KiB): that range holds 0x5a (discard=ignore) or
 *   zeros (discard=unmap), the rest stays 0x5a.
 */
#include "guest.h"
#include "pci.h"

#define QSZ 16
/* Bounds on waiting for the device: reached only when it never answers
 * (then the check fails), so generous, as a loaded host can keep an I/O
 * thread or an interrupt injection away for seconds. */
#define IRQ_WAIT_SPINS 10000000
#define NEEDS_RESET_POLLS 500000
#define BUF_SIZE (32 * 1024)

#define F_SIZE_MAX     1
#define F_SEG_MAX      2
#define F_RO           5
#define F_BLK_SIZE     6
#define F_FLUSH        9
#define F_DISCARD      13
#define F_WRITE_ZEROES 14
#define F_INDIRECT     28
#define F_EVENT_IDX    29
#define F_VERSION_1    32

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct vq {
    struct desc desc[QSZ];
    uint16_t avail_flags, avail_idx, avail_ring[QSZ], used_event;
    uint8_t pad[4096 - 16 * QSZ - 6 - 2 * QSZ];
    uint16_t used_flags, used_idx;
    struct { uint32_t id, len; } used_ring[QSZ];
    uint16_t avail_event;
};

struct vdev {
    unsigned slot;
    int transitional;      /* 1af4:1001: the legacy interface is there too */
    int legacy;            /* drive it through I/O BAR 0 */
    int use_msix;          /* ct.vmsix with ct.vbench or ct.vlegacy */
    uint16_t iobase;
    uint64_t base;         /* where the modern BAR is */
    /* the queue the requests go to, either layout */
    struct desc *desc;
    volatile uint16_t *avail;  /* flags, idx, ring[qsz], used_event */
    volatile uint16_t *used;   /* flags, idx, ... */
    uint16_t qsz;
    unsigned bar;          /* the BAR of the virtio structures */
    uint32_t notify_mult;
    volatile uint8_t *qnotify; /* queue 0's notify address */
    volatile uint8_t *qnotify1; /* queue 1's, with several queues */
    unsigned nq;
    volatile uint8_t *msix_pba;
    int msix;   /* queue 0 on MSI-X vector 0 */
    unsigned msix_cap;
    volatile uint8_t *msix_table;
    volatile uint8_t *common, *isr, *devcfg, *notify;
    uint64_t features;
    uint16_t last_used;
};

static struct vq vq IOBSS __attribute__((aligned(4096)));
static struct vq vq1 IOBSS __attribute__((aligned(4096))); /* queue 1 (MQ) */

/* The legacy layout for the device's fixed 256 entries. */
#define LQSZ 256
static struct lvq {
    struct desc desc[LQSZ];
    uint16_t avail_flags, avail_idx, avail_ring[LQSZ], used_event;
    uint8_t pad[8192 - 16 * LQSZ - 6 - 2 * LQSZ];
    uint16_t used_flags, used_idx;
    struct { uint32_t id, len; } used_ring[LQSZ];
    uint16_t avail_event;
} lvq IOBSS __attribute__((aligned(4096)));
static uint8_t buf[BUF_SIZE] IOBSS __attribute__((aligned(4096)));
/* Sector 0 as queue 0 read it: what a read on queue 1, or one after a
 * reset, must find too. */
static uint8_t sec0[512] IOBSS __attribute__((aligned(8)));
/* One indirect table: header, up to ITBL - 2 data buffers, status. */
#define ITBL 260
static struct desc itbl[ITBL] IOBSS __attribute__((aligned(16)));
/* Features asked for besides the usual ones (INDIRECT_DESC for the
 * seg_max and flood cases), and a 256-entry ring (lvq) instead of vq. */
static uint64_t want_extra;
static int big_ring;
static struct { uint32_t type, reserved; uint64_t sector; } hdr;
static struct { uint64_t sector; uint32_t num, flags; } seg;
static volatile uint8_t status;
static int failures;
static int patient; /* ct.vpat: requests may wait for a disk switch */

static void vfail(struct vdev *d, const char *what)
{
    serial_puts("calf-test: virtio-blk ");
    serial_put_dec(d->slot);
    serial_puts(": check failed: ");
    serial_puts(what);
    serial_puts("\n");
    failures++;
}

static void w8(volatile uint8_t *p, unsigned off, uint8_t v) { p[off] = v; }
static void w16(volatile uint8_t *p, unsigned off, uint16_t v)
{
    *(volatile uint16_t *)(p + off) = v;
}
static void w32(volatile uint8_t *p, unsigned off, uint32_t v)
{
    *(volatile uint32_t *)(p + off) = v;
}
static uint8_t r8(volatile uint8_t *p, unsigned off) { return p[off]; }
static uint16_t r16(volatile uint8_t *p, unsigned off)
{
    return *(volatile uint16_t *)(p + off);
}
static uint32_t r32(volatile uint8_t *p, unsigned off)
{
    return *(volatile uint32_t *)(p + off);
}

static void w64(volatile uint8_t *p, unsigned off, uint64_t v)
{
    w32(p, off, (uint32_t)v);
    w32(p, off + 4, (uint32_t)(v >> 32));
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return lo | (uint64_t)hi << 32;
}

/* Legacy registers (I/O BAR 0); the device configuration follows at
 * 0x14 while MSI-X is off. */
#define L_HOST_F   0x00
#define L_GUEST_F  0x04
#define L_PFN      0x08
#define L_QNUM     0x0c
#define L_QSEL     0x0e
#define L_NOTIFY   0x10
#define L_STATUS   0x12
#define L_ISR      0x13
#define L_CONFIG   0x14
#define L_CONFIG_VECTOR 0x14 /* while MSI-X is on */
#define L_QUEUE_VECTOR  0x16

/* The same device fields whichever interface drives the device. */
static uint32_t cfg32(struct vdev *d, unsigned off)
{
    /* the legacy MSI-X vector registers push the configuration by 4 */
    return d->legacy ? inl((uint16_t)(d->iobase + L_CONFIG +
                                          (d->msix ? 4 : 0) + off))
                     : r32(d->devcfg, off);
}

static uint8_t isr8(struct vdev *d)
{
    return d->legacy ? inb((uint16_t)(d->iobase + L_ISR)) : r8(d->isr, 0);
}

static void dev_reset(struct vdev *d)
{
    if (d->legacy)
        outb((uint16_t)(d->iobase + L_STATUS), 0);
    else
        w8(d->common, 0x14, 0);
}

static void kick(struct vdev *d)
{
    if (d->legacy)
        outw((uint16_t)(d->iobase + L_NOTIFY), 0);
    else
        w16(d->qnotify, 0, 0);
}

/* Finds the four virtio structures through the vendor capabilities. */
/* A memory BAR's address; 64-bit BARs (QEMU's virtio BAR 4) included. */
static uint64_t bar_addr(unsigned slot, unsigned bar)
{
    uint32_t lo = pci_read32(slot, 0x10 + 4 * bar);
    uint64_t hi = (lo & 6) == 4 ? pci_read32(slot, 0x14 + 4 * bar) : 0;

    return (lo & ~0xfull) | hi << 32;
}

/* Which BAR the common configuration lives in (calf: 0, QEMU: 4). */
static int find_bar(struct vdev *d)
{
    unsigned cap = pci_read8(d->slot, 0x34);

    for (int n = 0; cap && n < 16; n++, cap = pci_read8(d->slot, cap + 1)) {
        uint32_t w0 = pci_read32(d->slot, cap);

        if ((w0 & 0xff) == 0x09 && (w0 >> 24) == 1) {
            d->bar = pci_read32(d->slot, cap + 4) & 0xff;
            return d->bar < 6 ? 0 : -1;
        }
    }
    return -1;
}

/* Finds the four virtio structures through the vendor capabilities. */
static int find_caps(struct vdev *d, uint64_t base)
{
    unsigned cap = pci_read8(d->slot, 0x34);
    int found = 0;

    for (int n = 0; cap && n < 16; n++, cap = pci_read8(d->slot, cap + 1)) {
        uint32_t w0 = pci_read32(d->slot, cap);
        uint8_t type = (uint8_t)(w0 >> 24);
        volatile uint8_t *at;

        if ((w0 & 0xff) != 0x09 || (pci_read32(d->slot, cap + 4) & 0xff) != d->bar)
            continue;
        at = (volatile uint8_t *)(base + pci_read32(d->slot, cap + 8));
        if (type == 1) d->common = at;
        else if (type == 2) d->notify = at;
        else if (type == 3) d->isr = at;
        else if (type == 4) d->devcfg = at;
        else continue;
        if (type == 2)
            d->notify_mult = pci_read32(d->slot, cap + 16);
        found |= 1 << type;
    }
    return found == 0x1e ? 0 : -1;
}

/* Sets up the function: BAR sizing, a move of BAR 0 (the device must
 * follow, ioeventfd included), memory decoding and bus mastering. */
static uint64_t setup_bar(struct vdev *d)
{
    unsigned off = 0x10 + 4 * d->bar;
    uint32_t size = pci_bar_size(d->slot, (int)d->bar), moved;

    if (size != 0x4000)
        vfail(d, "virtio BAR size is not 16 KiB");
    moved = 0xd0000000u + d->slot * 0x10000u;
    pci_write32(d->slot, off, moved);
    if ((pci_read32(d->slot, off) & 6) == 4)
        pci_write32(d->slot, off + 4, 0);
    if (bar_addr(d->slot, d->bar) != moved)
        vfail(d, "virtio BAR did not move");
    pci_write16(d->slot, 0x04, 0x0006); /* memory, bus master */
    return moved;
}

static int negotiate_size(struct vdev *d, uint16_t qsz);

static int negotiate(struct vdev *d)
{
    return negotiate_size(d, QSZ);
}

static int negotiate_size(struct vdev *d, uint16_t qsz)
{
    uint64_t want = 1ULL << F_VERSION_1 | 1ULL << F_FLUSH | 1ULL << F_DISCARD |
                    1ULL << F_WRITE_ZEROES | 1ULL << F_BLK_SIZE |
                    1ULL << F_SEG_MAX | 1ULL << F_SIZE_MAX | 1ULL << F_RO |
                    1ULL << F_EVENT_IDX | want_extra;

    w8(d->common, 0x14, 0);
    if (r8(d->common, 0x14) != 0)
        return -1;
    w8(d->common, 0x14, S_ACK | S_DRIVER);
    w32(d->common, 0x00, 0);
    d->features = r32(d->common, 0x04);
    w32(d->common, 0x00, 1);
    d->features |= (uint64_t)r32(d->common, 0x04) << 32;
    if (!(d->features >> F_VERSION_1 & 1))
        return -1;
    d->features &= want;
    w32(d->common, 0x08, 0);
    w32(d->common, 0x0c, (uint32_t)d->features);
    w32(d->common, 0x08, 1);
    w32(d->common, 0x0c, (uint32_t)(d->features >> 32));
    w8(d->common, 0x14, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(r8(d->common, 0x14) & S_FEATURES_OK))
        return -1;
    w16(d->common, 0x16, 0);
    if (r16(d->common, 0x18) < QSZ)
        return -1;
    w16(d->common, 0x1a, d->msix ? 0 : 0xffff);
    if (d->msix && r16(d->common, 0x1a) != 0)
        return -1;
    d->last_used = 0;
    if (big_ring) { /* the legacy ring's memory, placed field by field */
        if (r16(d->common, 0x18) < LQSZ)
            return -1;
        memset(&lvq, 0, sizeof(lvq));
        d->desc = lvq.desc;
        d->avail = &lvq.avail_flags;
        d->used = &lvq.used_flags;
        d->qsz = qsz = LQSZ;
    } else {
        memset(&vq, 0, sizeof(vq));
        d->desc = vq.desc;
        d->avail = &vq.avail_flags;
        d->used = &vq.used_flags;
        d->qsz = QSZ;
    }
    w16(d->common, 0x18, qsz);
    w64(d->common, 0x20, (uint64_t)d->desc);
    w64(d->common, 0x28, (uint64_t)d->avail);
    w64(d->common, 0x30, (uint64_t)d->used);
    d->qnotify = d->notify + r16(d->common, 0x1e) * d->notify_mult;
    w16(d->common, 0x1c, 1);
    d->nq = r16(d->common, 0x12);
    if (d->nq > 1) { /* queue 1 too, polled, on its own I/O thread */
        w16(d->common, 0x16, 1);
        memset(&vq1, 0, sizeof(vq1));
        w16(d->common, 0x18, QSZ);
        w16(d->common, 0x1a, 0xffff);
        w64(d->common, 0x20, (uint64_t)vq1.desc);
        w64(d->common, 0x28, (uint64_t)&vq1.avail_flags);
        w64(d->common, 0x30, (uint64_t)&vq1.used_flags);
        d->qnotify1 = d->notify + r16(d->common, 0x1e) * d->notify_mult;
        w16(d->common, 0x1c, 1);
        w16(d->common, 0x16, 0);
    }
    w8(d->common, 0x14, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    return r8(d->common, 0x14) & S_NEEDS_RESET ? -1 : 0;
}

/* The legacy handshake: no FEATURES_OK, the queue placed by its page
 * frame number at the device's size. */
static int negotiate_legacy(struct vdev *d)
{
    uint16_t io = d->iobase;
    uint32_t want = 1u << F_FLUSH | 1u << F_DISCARD | 1u << F_WRITE_ZEROES |
                    1u << F_BLK_SIZE | 1u << F_SEG_MAX | 1u << F_SIZE_MAX |
                    1u << F_RO | 1u << F_EVENT_IDX;

    outb((uint16_t)(io + L_STATUS), 0);
    if (inb((uint16_t)(io + L_STATUS)) != 0)
        return -1;
    outb((uint16_t)(io + L_STATUS), S_ACK | S_DRIVER);
    d->features = inl((uint16_t)(io + L_HOST_F)) & want;
    outl((uint16_t)(io + L_GUEST_F), (uint32_t)d->features);
    if (inl((uint16_t)(io + L_GUEST_F)) != d->features)
        return -1;
    outw((uint16_t)(io + L_QSEL), 0);
    if (inw((uint16_t)(io + L_QNUM)) != LQSZ)
        return -1;
    memset(&lvq, 0, sizeof(lvq));
    d->last_used = 0;
    d->desc = lvq.desc;
    d->avail = &lvq.avail_flags;
    d->used = &lvq.used_flags;
    d->qsz = LQSZ;
    outl((uint16_t)(io + L_PFN), (uint32_t)((uint64_t)&lvq >> 12));
    if (inl((uint16_t)(io + L_PFN)) != (uint32_t)((uint64_t)&lvq >> 12))
        return -1;
    if (d->msix) { /* config changes on no vector, queue 0 on vector 0 */
        outw((uint16_t)(io + L_CONFIG_VECTOR), 0xffff);
        outw((uint16_t)(io + L_QUEUE_VECTOR), 0);
        if (inw((uint16_t)(io + L_QUEUE_VECTOR)) != 0 ||
            inw((uint16_t)(io + L_CONFIG_VECTOR)) != 0xffff)
            return -1;
    }
    outb((uint16_t)(io + L_STATUS), S_ACK | S_DRIVER | S_DRIVER_OK);
    return inb((uint16_t)(io + L_STATUS)) & S_NEEDS_RESET ? -1 : 0;
}

/* Offers the chain at descriptor 0 and waits for it; returns the
 * status byte, or -1 when the device never answered. */
static int post(struct vdev *d)
{
    volatile uint16_t *avail = d->avail;

    avail[2 + avail[1] % d->qsz] = 0;
    avail[2 + d->qsz] = d->last_used; /* EVENT_IDX: interrupt for this one */
    __asm__ volatile("mfence" ::: "memory");
    avail[1]++;
    __asm__ volatile("mfence" ::: "memory");
    kick(d);
    uint64_t t0 = rdtsc();
    for (uint32_t spin = 0; d->used[1] == d->last_used; spin++)
        if (patient ? rdtsc() - t0 > (1ULL << 38) : spin > 4000000)
            return -1;
    d->last_used++;
    return status;
}

/* What the requests made through request() must count on the host, by
 * QEMU 7.2's virtio-blk rules: a served read or write (write-zeroes
 * too) counts its bytes, one refused before any I/O (out of range) is
 * invalid, a write to a read-only disk failed; a discard counts nothing.
 * Printed per disk ("acct"); guest-tests/qmp.t compares it with
 * query-blockstats. */
static struct {
    uint64_t rd, rd_bytes, wr, wr_bytes, flush, inv_rd, inv_wr, failed_wr;
    uint64_t high;
} acct;

static void acct_count(struct vdev *d, uint32_t type, uint64_t sector,
                       uint32_t len, int st)
{
    uint64_t end = sector * 512 + len;

    if (type == T_WRITE_ZEROES) {
        end = seg.sector * 512 + (uint64_t)seg.num * 512;
        len = seg.num * 512;
    }
    if (type == T_IN) {
        if (st == 0) {
            acct.rd++;
            acct.rd_bytes += len;
        } else if (st == 1) {
            acct.inv_rd++;
        }
    } else if (type == T_OUT || type == T_WRITE_ZEROES) {
        if (st == 0) {
            acct.wr++;
            acct.wr_bytes += len;
            if (end > acct.high)
                acct.high = end;
        } else if (st == 1 && (d->features >> F_RO & 1)) {
            acct.failed_wr++;
        } else if (st == 1) {
            acct.inv_wr++;
        }
    } else if (type == T_FLUSH && st == 0) {
        acct.flush++;
    }
}

static void acct_print(unsigned slot)
{
    serial_puts("calf-test: virtio-blk ");
    serial_put_dec(slot);
    serial_puts(": acct rd=");
    serial_put_dec(acct.rd);
    serial_puts("/");
    serial_put_dec(acct.rd_bytes);
    serial_puts(" wr=");
    serial_put_dec(acct.wr);
    serial_puts("/");
    serial_put_dec(acct.wr_bytes);
    serial_puts(" flush=");
    serial_put_dec(acct.flush);
    serial_puts(" invalid=");
    serial_put_dec(acct.inv_rd);
    serial_puts("/");
    serial_put_dec(acct.inv_wr);
    serial_puts(" failed_wr=");
    serial_put_dec(acct.failed_wr);
    serial_puts(" high=");
    serial_put_dec(acct.high);
    serial_puts("\n");
}

/* One request: header, the data in nseg equal descriptors, status.
 * Returns the status byte, or -1 when the device never answered. */
static int request(struct vdev *d, uint32_t type, uint64_t sector,
                   void *data, uint32_t len, int nseg, int to_device)
{
    unsigned n = 0;
    int st;

    hdr.type = type;
    hdr.sector = sector;
    d->desc[n++] = (struct desc){ (uint64_t)&hdr, sizeof(hdr), D_NEXT, 1 };
    for (int i = 0; i < nseg && len; i++, n++)
        d->desc[n] = (struct desc){ (uint64_t)data + i * (len / nseg), len / nseg,
                                    (uint16_t)(D_NEXT | (to_device ? 0 : D_WRITE)),
                                    (uint16_t)(n + 1) };
    status = 0xff;
    d->desc[n++] = (struct desc){ (uint64_t)&status, 1, D_WRITE, 0 };
    st = post(d);
    acct_count(d, type, sector, len, st);
    return st;
}

static int expect(struct vdev *d, int got, int want, const char *what)
{
    if (got == want)
        return 0;
    vfail(d, what);
    return -1;
}

static int buf_is(uint32_t from, uint32_t to, uint64_t word)
{
    for (uint32_t i = from; i < to; i += 8)
        if (*(uint64_t *)(buf + i) != word)
            return 0;
    return 1;
}

static void fill(uint64_t word)
{
    for (uint32_t i = 0; i < BUF_SIZE; i += 8)
        *(uint64_t *)(buf + i) = word;
}

/* A read of sector 0 into buf, over a first sector of bytes sentinel (so a
 * read that writes nothing shows); 1 if it is served and buf holds what
 * sec0 does. */
static int sector0_again(struct vdev *d, int sentinel)
{
    memset(buf, sentinel, 512);
    if (request(d, T_IN, 0, buf, 512, 1, 0) != 0)
        return 0;
    for (uint32_t i = 0; i < 512; i += 8)
        if (*(uint64_t *)(buf + i) != *(uint64_t *)(sec0 + i))
            return 0;
    return 1;
}

#define PAT 0x5a5a5a5a5a5a5a5aULL
#define SEC_1M 2048

static void test_rw(struct vdev *d)
{
    uint64_t cap = cfg32(d, 0) | (uint64_t)cfg32(d, 4) << 32;
    uint32_t i;

    fill(PAT);
    if (expect(d, request(d, T_OUT, SEC_1M, buf, BUF_SIZE, 8, 1), 0,
               "32 KiB write in 8 segments"))
        return;
    fill(0);
    if (!expect(d, request(d, T_IN, SEC_1M, buf, BUF_SIZE, 4, 0), 0,
                "32 KiB read in 4 segments") && !buf_is(0, BUF_SIZE, PAT))
        vfail(d, "data read back differs from what was written");
    expect(d, request(d, T_FLUSH, 0, 0, 0, 0, 0), 0, "flush");
    seg = (typeof(seg)){ SEC_1M + 16, 8, 0 };
    expect(d, request(d, T_WRITE_ZEROES, 0, &seg, sizeof(seg), 1, 1), 0,
           "write-zeroes");
    fill(1);
    if (!expect(d, request(d, T_IN, SEC_1M, buf, BUF_SIZE, 1, 0), 0,
                "read after write-zeroes") &&
        (!buf_is(0, 8192, PAT) || !buf_is(8192, 12288, 0) ||
         !buf_is(12288, BUF_SIZE, PAT)))
        vfail(d, "write-zeroes did not zero exactly its range");
    /* Discard [2 MiB, +64 KiB) over data, with data on either side.  It
     * is a hint (discard=ignore drops it): the range reads its old data
     * or zeros, 4 KiB whole each; the host checks it went with unmap. */
    fill(PAT);
    for (i = 0; i < 3; i++)
        expect(d, request(d, T_OUT, 2 * SEC_1M - 8 + 64 * i, buf, BUF_SIZE, 1, 1), 0,
               "write before a discard");
    seg = (typeof(seg)){ 2 * SEC_1M, 128, 0 };
    expect(d, request(d, T_DISCARD, 0, &seg, sizeof(seg), 1, 1), 0, "discard");
    fill(1);
    if (!expect(d, request(d, T_IN, 2 * SEC_1M - 8, buf, 8192, 1, 0), 0,
                "read across the start of a discard") &&
        (!buf_is(0, 4096, PAT) || !(buf_is(4096, 8192, PAT) || buf_is(4096, 8192, 0))))
        vfail(d, "a discard changed data before its range, or left other data than old or zeros");
    fill(1);
    if (!expect(d, request(d, T_IN, 2 * SEC_1M + 120, buf, 8192, 1, 0), 0,
                "read across the end of a discard") &&
        (!buf_is(4096, 8192, PAT) || !(buf_is(0, 4096, PAT) || buf_is(0, 4096, 0))))
        vfail(d, "a discard changed data after its range, or left other data than old or zeros");
    /* the host reads the image after our exit, which need not flush */
    expect(d, request(d, T_FLUSH, 0, 0, 0, 0, 0), 0, "flush after the discard");
    expect(d, request(d, T_IN, cap, buf, 512, 1, 0), 1,
           "a read past the end is an I/O error");
    expect(d, request(d, 99, 0, buf, 512, 1, 0), 2,
           "an unknown request is unsupported");
    i = isr8(d);
    if (!d->msix && !(i & 1))
        vfail(d, "ISR queue bit not set (INTx path)");
}

/* ---- a hostile driver: every broken chain must put the device in
 * NEEDS_RESET (or fail the request) and leave calf serving after a reset ---- */

static int wait_needs_reset(struct vdev *d)
{
    for (int i = 0; i < NEEDS_RESET_POLLS; i++)
        if (r8(d->common, 0x14) & S_NEEDS_RESET)
            return 0;
    return -1;
}

static void submit_head(struct vdev *d, uint16_t head, uint16_t step)
{
    vq.avail_ring[vq.avail_idx % QSZ] = head;
    __asm__ volatile("mfence" ::: "memory");
    vq.avail_idx = (uint16_t)(vq.avail_idx + step);
    __asm__ volatile("mfence" ::: "memory");
    w16(d->qnotify, 0, 0);
}

static const char *const hostile_names[] = {
    "a buffer outside guest RAM", "a loop in a chain",
    "a buffer of 4 GiB - 512", "a next index past the queue",
    "an avail index 1000 ahead", "a queue size of 15",
    "bus mastering turned off",
    /* 7..: indirect tables (INDIRECT_DESC negotiated) */
    "an indirect table outside guest RAM", "an indirect table of 24 bytes",
    "an indirect descriptor in an indirect table", "a loop in an indirect table",
    "an indirect descriptor with NEXT set",
};
#define HOSTILE_CASES 12
#define HOSTILE_FIRST_INDIRECT 7

static void itbl_read(unsigned nseg, uint64_t addr, uint32_t len);

/* A read of sector 0 whose chain lives in a broken indirect table. */
static void hostile_indirect(struct vdev *d, int c)
{
    uint64_t taddr = (uint64_t)itbl;
    uint32_t tlen = 3 * 16;
    uint16_t flags = D_INDIRECT;

    want_extra = 1ULL << F_INDIRECT;
    int r = negotiate(d);
    want_extra = 0;
    if (r || !(d->features >> F_INDIRECT & 1)) {
        vfail(d, "setup with INDIRECT_DESC before a hostile request");
        return;
    }
    itbl_read(1, (uint64_t)buf, 512);
    if (c == 7)
        taddr = 0x100000000000ULL;
    if (c == 8)
        tlen = 24;
    if (c == 9) { /* a well-formed second-level table: only nesting is wrong */
        itbl[1] = (struct desc){ (uint64_t)&itbl[100], 2 * 16, D_INDIRECT, 0 };
        itbl[100] = (struct desc){ (uint64_t)buf, 512, D_NEXT | D_WRITE, 1 };
        itbl[101] = (struct desc){ (uint64_t)&status, 1, D_WRITE, 0 };
    }
    if (c == 10) /* the data buffer's next goes back to the header */
        itbl[1].next = 0;
    if (c == 11)
        flags |= D_NEXT;
    vq.desc[0] = (struct desc){ taddr, tlen, flags, 1 };
    vq.desc[1] = (struct desc){ (uint64_t)&status, 1, D_WRITE, 0 };
    submit_head(d, 0, 1);
    if (wait_needs_reset(d))
        vfail(d, hostile_names[c]);
}

/* The driver takes bus mastering away and then notifies: the device may
 * not touch the ring, so it reports an error and completes nothing. */
static void hostile_no_master(struct vdev *d)
{
    uint16_t cmd = pci_read16(d->slot, 0x04);

    if (negotiate(d)) {
        vfail(d, "setup before a hostile request");
        return;
    }
    pci_write16(d->slot, 0x04, (uint16_t)(cmd & ~4u));
    hdr.type = T_IN;
    hdr.sector = 0;
    vq.desc[0] = (struct desc){ (uint64_t)&hdr, sizeof(hdr), D_NEXT, 1 };
    vq.desc[1] = (struct desc){ (uint64_t)buf, 512, D_NEXT | D_WRITE, 2 };
    vq.desc[2] = (struct desc){ (uint64_t)&status, 1, D_WRITE, 0 };
    status = 0xff;
    submit_head(d, 0, 1);
    if (wait_needs_reset(d))
        vfail(d, hostile_names[6]);
    else if (*(volatile uint16_t *)&vq.used_idx != 0 || status != 0xff)
        vfail(d, "a request completed while bus mastering was off");
    pci_write16(d->slot, 0x04, cmd);
}

static void hostile_case(struct vdev *d, int c)
{
    uint16_t next = 1;
    uint32_t len = 512;
    uint64_t addr = (uint64_t)buf;

    if (c == 5) {
        if (negotiate_size(d, 15) == 0)
            vfail(d, "a queue size of 15 was accepted");
        return;
    }
    if (c == 6) {
        hostile_no_master(d);
        return;
    }
    if (c >= HOSTILE_FIRST_INDIRECT) {
        hostile_indirect(d, c);
        return;
    }
    if (negotiate(d)) {
        vfail(d, "setup before a hostile request");
        return;
    }
    if (c == 0)
        addr = 0x100000000000ULL;
    if (c == 2)
        len = 0xfffffe00u;
    if (c == 3)
        next = 200;
    hdr.type = T_IN;
    hdr.sector = 0;
    vq.desc[0] = (struct desc){ (uint64_t)&hdr, sizeof(hdr), D_NEXT, next };
    vq.desc[1] = (struct desc){ addr, len, D_NEXT | D_WRITE, (uint16_t)(c == 1 ? 0 : 2) };
    vq.desc[2] = (struct desc){ (uint64_t)&status, 1, D_WRITE, 0 };
    submit_head(d, 0, c == 4 ? 1000 : 1);
    if (wait_needs_reset(d))
        vfail(d, hostile_names[c]);
}

/* ---- features written out of turn (a transitional device: both
 * register blocks) ---- */

static void feat_result(struct vdev *d, int good, const char *what)
{
    if (!good) {
        vfail(d, what);
        return;
    }
    serial_puts("calf-test: virtio-blk: features: ");
    serial_puts(what);
    serial_puts(": ok\n");
}

/* Modern handshake up to FEATURES_OK with features f; 1 if it stuck. */
static int modern_features_ok(struct vdev *d, uint64_t f)
{
    w8(d->common, 0x14, 0);
    w8(d->common, 0x14, S_ACK | S_DRIVER);
    w32(d->common, 0x08, 0);
    w32(d->common, 0x0c, (uint32_t)f);
    w32(d->common, 0x08, 1);
    w32(d->common, 0x0c, (uint32_t)(f >> 32));
    w8(d->common, 0x14, S_ACK | S_DRIVER | S_FEATURES_OK);
    return !!(r8(d->common, 0x14) & S_FEATURES_OK);
}

static uint64_t driver_features(struct vdev *d)
{
    uint64_t f;

    w32(d->common, 0x08, 0);
    f = r32(d->common, 0x0c);
    w32(d->common, 0x08, 1);
    return f | (uint64_t)r32(d->common, 0x0c) << 32;
}

static void test_features(struct vdev *d)
{
    uint32_t bar0 = pci_read32(d->slot, 0x10);
    uint64_t host, f = 1ULL << F_VERSION_1 | 1ULL << F_FLUSH;
    uint16_t io;
    unsigned bad;

    if (!d->transitional || !(bar0 & 1)) {
        vfail(d, "the feature checks need the transitional device's I/O BAR 0");
        return;
    }
    d->iobase = io = (uint16_t)(bar0 & 0xfffc);
    pci_write16(d->slot, 0x04, 0x0007); /* I/O too */
    w32(d->common, 0x00, 0);
    host = r32(d->common, 0x04);
    w32(d->common, 0x00, 1);
    host |= (uint64_t)r32(d->common, 0x04) << 32;
    for (bad = 0; bad < 32 && (host >> bad & 1); bad++)
        ;
    if (bad == 32 || (host & f) != f) {
        vfail(d, "feature checks: no unoffered bit below 32, or FLUSH missing");
        return;
    }
    feat_result(d, !modern_features_ok(d, f | 1ULL << bad),
                "an unoffered bit: FEATURES_OK refused");
    modern_features_ok(d, f);
    w32(d->common, 0x08, 0);
    w32(d->common, 0x0c, 0);
    w32(d->common, 0x08, 1);
    w32(d->common, 0x0c, 0);
    feat_result(d, driver_features(d) == f,
                "driver_feature written after FEATURES_OK: ignored");
    modern_features_ok(d, f);
    outl((uint16_t)(io + L_GUEST_F), 0);
    feat_result(d, driver_features(d) == f,
                "legacy guest features written after FEATURES_OK: ignored");
    if (negotiate_legacy(d)) {
        vfail(d, "feature checks: legacy setup");
    } else {
        outl((uint16_t)(io + L_GUEST_F), 0);
        feat_result(d, inl((uint16_t)(io + L_GUEST_F)) == d->features,
                    "legacy guest features written after DRIVER_OK: ignored");
        w32(d->common, 0x08, 0);
        w32(d->common, 0x0c, 0);
        feat_result(d, inl((uint16_t)(io + L_GUEST_F)) == d->features,
                    "driver_feature written after a legacy DRIVER_OK: ignored");
    }
    outb((uint16_t)(io + L_STATUS), 0);
    outb((uint16_t)(io + L_STATUS), S_ACK | S_DRIVER);
    outl((uint16_t)(io + L_GUEST_F), 0xffffffffu);
    feat_result(d, inl((uint16_t)(io + L_GUEST_F)) == (uint32_t)host,
                "legacy guest features: unoffered bits masked");
    /* More through the modern block first, then a legacy DRIVER_OK. */
    outb((uint16_t)(io + L_STATUS), 0);
    outb((uint16_t)(io + L_STATUS), S_ACK | S_DRIVER);
    outl((uint16_t)(io + L_GUEST_F), 1u << F_FLUSH);
    w32(d->common, 0x08, 0);
    w32(d->common, 0x0c, 1u << F_FLUSH | 1u << bad);
    outb((uint16_t)(io + L_STATUS), S_ACK | S_DRIVER | S_DRIVER_OK);
    feat_result(d, inl((uint16_t)(io + L_GUEST_F)) == 1u << F_FLUSH,
                "an unoffered bit through the modern block, then a legacy DRIVER_OK: dropped");
    outb((uint16_t)(io + L_STATUS), 0);
    pci_write16(d->slot, 0x04, 0x0006);
}

/* ---- size_max, seg_max, and a ring full of the largest requests ---- */

#define BIG_BUF 0x1000000ULL /* 16 MiB up in guest RAM, as the benchmark's */

/* A read of sector 0 into nseg buffers of len bytes at addr, all in the
 * indirect table (the same memory each time: the device only writes it). */
static void itbl_read(unsigned nseg, uint64_t addr, uint32_t len)
{
    hdr.type = T_IN;
    hdr.sector = 0;
    itbl[0] = (struct desc){ (uint64_t)&hdr, sizeof(hdr), D_NEXT, 1 };
    for (unsigned i = 1; i <= nseg; i++)
        itbl[i] = (struct desc){ addr, len, D_NEXT | D_WRITE, (uint16_t)(i + 1) };
    itbl[nseg + 1] = (struct desc){ (uint64_t)&status, 1, D_WRITE, 0 };
    status = 0xff;
}

static int request_indirect(struct vdev *d, unsigned nseg, uint32_t len)
{
    itbl_read(nseg, (uint64_t)buf, len);
    d->desc[0] = (struct desc){ (uint64_t)itbl, (nseg + 2) * 16, D_INDIRECT, 0 };
    return post(d);
}

/* Negotiates INDIRECT_DESC too (and the 256-entry ring with big);
 * reads size_max and seg_max, which must fit the indirect table. */
static int setup_limits(struct vdev *d, int big, uint32_t *size_max,
                        uint32_t *seg_max)
{
    uint64_t lim = 1ULL << F_SIZE_MAX | 1ULL << F_SEG_MAX;
    int r;

    want_extra = 1ULL << F_INDIRECT;
    big_ring = big;
    r = negotiate(d);
    want_extra = 0;
    big_ring = 0;
    if (r || !(d->features >> F_INDIRECT & 1) || (d->features & lim) != lim) {
        vfail(d, "setup with INDIRECT_DESC, SIZE_MAX and SEG_MAX");
        return -1;
    }
    *size_max = cfg32(d, 0x08);
    *seg_max = cfg32(d, 0x0c);
    if (*seg_max + 3 > ITBL || *size_max < 512 || *size_max % 512 ||
        *size_max > (8u << 20)) {
        vfail(d, "size_max or seg_max out of what the checks can try");
        return -1;
    }
    return 0;
}

static void test_limits(struct vdev *d)
{
    uint32_t size_max, seg_max;
    int before = failures;

    if (setup_limits(d, 0, &size_max, &seg_max))
        goto out;
    serial_puts("calf-test: virtio-blk: size_max ");
    serial_put_dec(size_max);
    serial_puts(", seg_max ");
    serial_put_dec(seg_max);
    serial_puts("\n");
    expect(d, request_indirect(d, seg_max, 512), 0,
           "a read in seg_max segments");
    expect(d, request_indirect(d, seg_max + 1, 512), 1,
           "a read in seg_max + 1 segments must be an I/O error");
    expect(d, request(d, T_IN, 0, (void *)BIG_BUF, size_max, 1, 0), 0,
           "a read into one segment of size_max bytes");
    expect(d, request(d, T_IN, 0, (void *)BIG_BUF, size_max + 512, 1, 0), 1,
           "a read into one segment of size_max + 512 bytes must be an I/O error");
    if (failures == before)
        serial_puts("calf-test: virtio-blk: size_max and seg_max enforced\n");
out:
    w8(d->common, 0x14, 0);
}

/* Fills a 256-entry ring with reads of seg_max segments of size_max
 * bytes each (the largest the device takes), all of the disk's start,
 * and notifies.  Returns the bytes of one request, 0 on failure. */
static uint64_t flood(struct vdev *d)
{
    uint64_t cap = cfg32(d, 0) | (uint64_t)cfg32(d, 4) << 32, bytes;
    uint32_t size_max, seg_max;

    if (d->legacy || setup_limits(d, 1, &size_max, &seg_max))
        return 0;
    bytes = (uint64_t)seg_max * size_max;
    if (bytes / 512 > cap) {
        vfail(d, "the flood needs a disk of seg_max * size_max bytes");
        return 0;
    }
    itbl_read(seg_max, BIG_BUF, size_max);
    for (unsigned i = 0; i < LQSZ; i++) {
        d->desc[i] = (struct desc){ (uint64_t)itbl, (seg_max + 2) * 16, D_INDIRECT, 0 };
        d->avail[2 + i] = (uint16_t)i;
    }
    __asm__ volatile("mfence" ::: "memory");
    d->avail[1] = LQSZ;
    __asm__ volatile("mfence" ::: "memory");
    kick(d);
    return bytes;
}

static void print_flood(uint64_t bytes)
{
    serial_puts("calf-test: virtio-blk: 256 requests of ");
    serial_put_dec(bytes >> 20);
    serial_puts(" MiB queued");
}

/* The reset write returns only once the device let go of the ring. */
static void test_reset_flood(struct vdev *d)
{
    uint64_t bytes = flood(d), t0, t1;
    uint16_t done;

    if (!bytes)
        return;
    /* Let the I/O thread get well into the first request. */
    for (t0 = rdtsc(); rdtsc() - t0 < 10000000;)
        ;
    t0 = rdtsc();
    w8(d->common, 0x14, 0);
    (void)r8(d->common, 0x14);
    t1 = rdtsc();
    done = d->used[1];
    print_flood(bytes);
    serial_puts(", ");
    serial_put_dec(done);
    serial_puts(" served; the reset took ");
    serial_put_dec(t1 - t0);
    serial_puts(" TSC cycles\n");
    if (done == LQSZ)
        vfail(d, "the whole flood was served before the reset");
    if (negotiate(d) || !sector0_again(d, 0x99))
        vfail(d, "no service, or other data in sector 0, after a reset with a full ring");
    else
        serial_puts("calf-test: virtio-blk: served again after the reset with a full ring\n");
    w8(d->common, 0x14, 0);
}

/* The same flood, let go of through the legacy block of the
 * transitional device: QUEUE_PFN 0 resets the device (as in QEMU), and
 * the write returns once the device let go of the ring, not once it
 * served it. */
static void test_pfn0_flood(struct vdev *d)
{
    uint32_t bar0 = pci_read32(d->slot, 0x10);
    uint64_t bytes, t0, t1;
    uint16_t done;
    uint8_t st;

    if (!d->transitional || !(bar0 & 1))
        return; /* test_features said so */
    d->iobase = (uint16_t)(bar0 & 0xfffc);
    pci_write16(d->slot, 0x04, 0x0007); /* I/O too */
    bytes = flood(d);
    if (!bytes)
        return;
    for (t0 = rdtsc(); rdtsc() - t0 < 10000000;)
        ;
    outw((uint16_t)(d->iobase + L_QSEL), 0);
    t0 = rdtsc();
    outl((uint16_t)(d->iobase + L_PFN), 0);
    st = inb((uint16_t)(d->iobase + L_STATUS));
    t1 = rdtsc();
    done = d->used[1];
    print_flood(bytes);
    serial_puts(", ");
    serial_put_dec(done);
    serial_puts(" served; a legacy QUEUE_PFN 0 took ");
    serial_put_dec(t1 - t0);
    serial_puts(" TSC cycles\n");
    if (st != 0)
        vfail(d, "a legacy QUEUE_PFN 0 must reset the device");
    if (done == LQSZ)
        vfail(d, "the whole flood was served before the QUEUE_PFN 0");
    if (negotiate(d) || !sector0_again(d, 0x99))
        vfail(d, "no service, or other data in sector 0, after a legacy QUEUE_PFN 0 with a full ring");
    else
        serial_puts("calf-test: virtio-blk: served again after a legacy QUEUE_PFN 0 with a full ring\n");
    w8(d->common, 0x14, 0);
}

static void test_hostile(struct vdev *d)
{
    /* what the reads after each case must find */
    memset(buf, 0xee, 512);
    if (request(d, T_IN, 0, buf, 512, 1, 0) != 0)
        vfail(d, "a read of sector 0 before the hostile cases");
    memcpy(sec0, buf, 512);
    for (int c = 0; c < HOSTILE_CASES; c++) {
        int before = failures;

        hostile_case(d, c);
        w8(d->common, 0x14, 0);
        if (negotiate(d) || !sector0_again(d, 0x99))
            vfail(d, "no service, or other data in sector 0, after a reset that followed a hostile request");
        else if (failures == before) {
            serial_puts("calf-test: virtio-blk: NEEDS_RESET on ");
            serial_puts(hostile_names[c]);
            serial_puts(", then served again\n");
        }
        w8(d->common, 0x14, 0);
    }
    test_features(d);
    test_limits(d);
    test_reset_flood(d);
    test_pfn0_flood(d);
}

/* ---- ct.vbench=1: guest-side throughput, in TSC cycles ----
 * 32 sequential 1 MiB writes, the same read back, 256 random 4 KiB reads,
 * all from 16 MiB up in guest RAM (no .bss: nothing to zero).  The host
 * turns cycles into MB/s and compares runs (bench/virtio-blk). */

#define BENCH_BUF 0x1000000ULL
#define MIB_SECTORS 2048

static void bench_report(const char *what, uint64_t cycles)
{
    serial_puts("calf-test: bench ");
    serial_puts(what);
    serial_puts(" tsc ");
    serial_put_dec(cycles);
    serial_puts("\n");
}

static void bench(struct vdev *d)
{
    void *big = (void *)BENCH_BUF;
    uint64_t t, x = 12345;
    int bad = 0;

    t = rdtsc();
    for (int i = 0; i < 32; i++)
        bad |= request(d, T_OUT, (uint64_t)i * MIB_SECTORS, big, 1 << 20, 8, 1);
    bench_report("seq-write-1M x32", rdtsc() - t);
    t = rdtsc();
    for (int i = 0; i < 32; i++)
        bad |= request(d, T_IN, (uint64_t)i * MIB_SECTORS, big, 1 << 20, 8, 0);
    bench_report("seq-read-1M x32", rdtsc() - t);
    t = rdtsc();
    for (int i = 0; i < 256; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        bad |= request(d, T_IN, (x >> 33) % (32 * 256) * 8, big, 4096, 1, 0);
    }
    bench_report("rand-read-4K x256", rdtsc() - t);
    if (bad)
        vfail(d, "a benchmark request failed");
}

/* ---- MSI-X: queue 0 on vector 0 -> IDT vector 0x40 of the BSP ---- */

#define MSI_VECTOR 0x40
#define INTX_VECTOR 0x41
#define MSI_VECTOR2 0x42
#define LAPIC 0xfee00000UL
#define IOAPIC 0xfec00000UL

struct idt_gate {
    uint16_t off_lo, sel;
    uint8_t ist, type;
    uint16_t off_mid;
    uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_gate msi_idt[MSI_VECTOR2 + 1] __attribute__((aligned(16)));
volatile int msi_hits, msi2_hits;
/* Interrupts whose ISR read had the queue bit, and those that found the
 * ISR empty: a level-triggered line may be shared, so a driver takes an
 * empty ISR as "not mine".  On the kvm_pvm backend an extra delivery
 * with the line already low shows up now and then (calf and main alike,
 * not QEMU): counted apart, so only a second completion signal fails. */
static volatile int intx_hits, intx_empty;
static volatile uint8_t *intx_isr_reg;

struct intr_frame;

/* INTx is level-triggered: reading the ISR lowers the line before the
 * EOI, or the I/O APIC would deliver it again. */
__attribute__((interrupt)) static void intx_handler(struct intr_frame *f)
{
    (void)f;
    if (*intx_isr_reg & 1)
        intx_hits++;
    else
        intx_empty++;
    *(volatile uint32_t *)(LAPIC + 0xb0) = 0;
}

static void idt_set(unsigned vec, uint64_t h)
{
    uint16_t cs;

    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    msi_idt[vec] = (struct idt_gate){
        .off_lo = (uint16_t)h, .sel = cs, .type = 0x8e,
        .off_mid = (uint16_t)(h >> 16), .off_hi = (uint32_t)(h >> 32),
    };
}

void msi_handler(void);
__asm__(".text\n"
        "msi_handler:\n"
        "  incl msi_hits(%rip)\n"
        "  pushq %rax\n"
        "  movl $0xfee000b0, %eax\n"
        "  movl $0, (%rax)\n" /* EOI */
        "  popq %rax\n"
        "  iretq\n");

void msi2_handler(void);
__asm__(".text\n"
        "msi2_handler:\n"
        "  incl msi2_hits(%rip)\n"
        "  pushq %rax\n"
        "  movl $0xfee000b0, %eax\n"
        "  movl $0, (%rax)\n"
        "  popq %rax\n"
        "  iretq\n");

static void msi_idt_load(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr;

    idt_set(MSI_VECTOR, (uint64_t)msi_handler);
    idt_set(INTX_VECTOR, (uint64_t)intx_handler);
    idt_set(MSI_VECTOR2, (uint64_t)msi2_handler);
    idtr.limit = sizeof(msi_idt) - 1;
    idtr.base = (uint64_t)msi_idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
    outb(0x21, 0xff); /* no 8259 interrupt may reach this small IDT */
    outb(0xa1, 0xff);
    *(volatile uint32_t *)(LAPIC + 0xf0) = 0x1ff; /* APIC software enable */
}

/* Enables MSI-X with entry 0 aimed at the BSP; returns -1 without it. */
static int msix_setup(struct vdev *d)
{
    unsigned cap = pci_read8(d->slot, 0x34);
    uint32_t tbl;

    while (cap && pci_read8(d->slot, cap) != 0x11)
        cap = pci_read8(d->slot, cap + 1);
    if (!cap)
        return -1;
    tbl = pci_read32(d->slot, cap + 4);
    d->msix_table = (volatile uint8_t *)(bar_addr(d->slot, tbl & 7) + (tbl & ~7u));
    tbl = pci_read32(d->slot, cap + 8);
    d->msix_pba = (volatile uint8_t *)(bar_addr(d->slot, tbl & 7) + (tbl & ~7u));
    w32(d->msix_table, 0, (uint32_t)LAPIC); /* destination APIC 0 */
    w32(d->msix_table, 4, 0);
    w32(d->msix_table, 8, MSI_VECTOR);      /* fixed, edge */
    w32(d->msix_table, 12, 0);              /* unmasked */
    pci_write16(d->slot, cap + 2, 0x8000);  /* MSI-X enable */
    d->msix_cap = cap;
    d->msix = 1;
    return 0;
}

static void ioapic_write(unsigned reg, uint32_t v)
{
    *(volatile uint32_t *)IOAPIC = reg;
    *(volatile uint32_t *)(IOAPIC + 0x10) = v;
}

/* INTx before MSI-X is on: the pin the Interrupt Line register names,
 * level-triggered, active high, to the BSP. */
static void test_intx(struct vdev *d)
{
    unsigned gsi = pci_read8(d->slot, 0x3c);

    if (negotiate(d)) {
        vfail(d, "setup for the INTx test");
        return;
    }
    intx_isr_reg = d->isr;
    (void)r8(d->isr, 0); /* start with the line low */
    ioapic_write(0x11 + 2 * gsi, 0);
    ioapic_write(0x10 + 2 * gsi, INTX_VECTOR | 1u << 15);
    __asm__ volatile("sti");
    if (request(d, T_IN, 0, buf, 512, 1, 0) != 0)
        vfail(d, "read for the INTx test");
    for (int i = 0; i < IRQ_WAIT_SPINS && !intx_hits; i++)
        ;
    __asm__ volatile("cli");
    ioapic_write(0x10 + 2 * gsi, 1u << 16); /* masked again */
    if (intx_empty) {
        serial_puts("calf-test: virtio-blk: INTx deliveries with an empty ISR: ");
        serial_put_dec((uint64_t)intx_empty);
        serial_puts("\n");
    }
    if (intx_hits != 1)
        vfail(d, "no INTx interrupt through the I/O APIC (or more than one)");
    else
        serial_puts("calf-test: virtio-blk: INTx completion through the I/O APIC ok\n");
    w8(d->common, 0x14, 0);
}

static int wait_msi(int want)
{
    for (int i = 0; i < IRQ_WAIT_SPINS; i++)
        if (msi_hits >= want)
            return 0;
    return -1;
}

/* One read with its completion interrupt; then one while the vector is
 * masked: no interrupt, the PBA bit set, delivered on unmask. */
static void test_msix(struct vdev *d)
{
    __asm__ volatile("sti");
    if (request(d, T_IN, 0, buf, 512, 1, 0) != 0 || wait_msi(1))
        vfail(d, "no MSI-X interrupt for a completed request");
    w32(d->msix_table, 12, 1); /* mask entry 0 */
    if (request(d, T_IN, 0, buf, 512, 1, 0) != 0)
        vfail(d, "read with the vector masked");
    /* The device raises the vector just after the used ring moves. */
    for (int i = 0; i < NEEDS_RESET_POLLS && !(r32(d->msix_pba, 0) & 1); i++)
        ;
    if (msi_hits != 1 || !(r32(d->msix_pba, 0) & 1))
        vfail(d, "a masked MSI-X vector must stay pending in the PBA");
    w32(d->msix_table, 12, 0);
    if (wait_msi(2) || (r32(d->msix_pba, 0) & 1))
        vfail(d, "the pending MSI-X vector was not delivered on unmask");
    /* The driver moves the vector (masked, as it must): the next
     * completion arrives where the entry now points. */
    w32(d->msix_table, 12, 1);
    w32(d->msix_table, 8, MSI_VECTOR2);
    w32(d->msix_table, 12, 0);
    if (request(d, T_IN, 0, buf, 512, 1, 0) != 0)
        vfail(d, "read after the MSI-X entry moved");
    for (int i = 0; i < IRQ_WAIT_SPINS && !msi2_hits; i++)
        ;
    if (msi2_hits != 1 || msi_hits != 2)
        vfail(d, "the rewritten MSI-X entry was not followed");
    else
        serial_puts("calf-test: virtio-blk: MSI-X entry rewritten: the interrupt follows it\n");
    w32(d->msix_table, 8, MSI_VECTOR);
    __asm__ volatile("cli");
    serial_puts("calf-test: virtio-blk: MSI-X interrupts: ");
    serial_put_dec((uint64_t)msi_hits);
    serial_puts("\n");
    if (msi_hits == 2)
        serial_puts("calf-test: virtio-blk: MSI-X completion, masking and PBA ok\n");
}

static void test_io(struct vdev *d, int hostile);
static void msi_idt_load(void);
static int msix_setup(struct vdev *d);
extern volatile int msi_hits;

/* IDs and BAR 0 of a transitional device; I/O decoding and mastering. */
static int setup_legacy(struct vdev *d)
{
    uint32_t bar0 = pci_read32(d->slot, 0x10);

    if (!d->transitional) {
        vfail(d, "ct.vlegacy: the device is not transitional (1af4:1001)");
        return -1;
    }
    if (pci_read16(d->slot, 0x2e) != 2 || pci_read8(d->slot, 0x08) != 0 ||
        !(bar0 & 1)) {
        vfail(d, "legacy interface: subsystem id 2, revision 0, I/O BAR 0");
        return -1;
    }
    d->iobase = (uint16_t)(bar0 & 0xfffc);
    /* I/O, memory (the MSI-X table), bus master */
    pci_write16(d->slot, 0x04, 0x0007);
    d->legacy = 1;
    if (d->use_msix) {
        msi_idt_load();
        if (msix_setup(d)) {
            vfail(d, "MSI-X setup for the legacy driver");
            return -1;
        }
    }
    serial_puts("calf-test: virtio-blk: legacy interface at I/O ");
    serial_put_hex(d->iobase);
    serial_puts("\n");
    return 0;
}

/* The PCI_CFG capability: BAR fields read and written through
 * configuration space must be the same as through the BAR. */
static uint32_t pcicfg(struct vdev *d, unsigned cap, uint32_t off,
                       uint32_t len, const uint32_t *wr)
{
    pci_write32(d->slot, cap + 4, d->bar);
    pci_write32(d->slot, cap + 8, off);
    pci_write32(d->slot, cap + 12, len);
    if (wr) {
        pci_write32(d->slot, cap + 16, *wr);
        return 0;
    }
    return pci_read32(d->slot, cap + 16) & (len == 4 ? ~0u : (1u << 8 * len) - 1);
}

static void test_pcicfg(struct vdev *d)
{
    unsigned cap = pci_read8(d->slot, 0x34);
    uint32_t one = 1, devcfg = (uint32_t)((uint64_t)d->devcfg - d->base);

    for (int n = 0; cap && n < 16; n++, cap = pci_read8(d->slot, cap + 1))
        if ((pci_read32(d->slot, cap) & 0xff000000u) == 0x05000000u &&
            pci_read8(d->slot, cap) == 0x09)
            break;
    if (!cap) {
        vfail(d, "no VIRTIO_PCI_CAP_PCI_CFG capability");
        return;
    }
    w32(d->common, 0x00, 0);
    if (pcicfg(d, cap, 0x12, 2, 0) != r16(d->common, 0x12) ||
        pcicfg(d, cap, devcfg, 4, 0) != r32(d->devcfg, 0) ||
        pcicfg(d, cap, devcfg + 0x14, 4, 0) != r32(d->devcfg, 0x14)) {
        vfail(d, "PCI_CFG window reads differ from the BAR");
        return;
    }
    pcicfg(d, cap, 0x00, 4, &one); /* device_feature_select = 1 */
    if (r32(d->common, 0x00) != 1 ||
        pcicfg(d, cap, 0x04, 4, 0) != r32(d->common, 0x04) ||
        !(r32(d->common, 0x04) & 1)) {
        vfail(d, "PCI_CFG window write of device_feature_select");
        return;
    }
    w32(d->common, 0x00, 0);
    serial_puts("calf-test: virtio-blk: PCI_CFG window agrees with the BAR\n");
}

/* A guest without ACPI routes INTx by the MP table: its entry for this
 * slot's pin must name the pin the Interrupt Line register does. */
static void test_mptable(struct vdev *d)
{
    unsigned line = pci_read8(d->slot, 0x3c), pin = pci_read8(d->slot, 0x3d);
    int irq = pin ? mp_pci_irq(d->slot, pin - 1) : MP_NO_ENTRY;

    if (irq == MP_NO_TABLE)
        return; /* ACPI only: nothing to compare */
    if (irq != (int)line) {
        vfail(d, "the MP table has no PCI interrupt entry matching Interrupt Line");
        return;
    }
    serial_puts("calf-test: virtio-blk: MP table sends INT");
    serial_puts(pin == 1 ? "A" : pin == 2 ? "B" : pin == 3 ? "C" : "D");
    serial_puts(" of the slot to I/O APIC pin ");
    serial_put_dec((uint64_t)irq);
    serial_puts(", as Interrupt Line says\n");
}

static void test_disk(struct vdev *d, int hostile)
{
    if (d->legacy) {
        if (!setup_legacy(d))
            test_io(d, 0);
        if (d->msix)
            pci_write16(d->slot, d->msix_cap + 2, 0); /* MSI-X off again */
        d->msix = 0;
        return;
    }
    if (find_bar(d)) {
        vfail(d, "no virtio common configuration capability");
        return;
    }
    d->base = setup_bar(d);
    if (find_caps(d, d->base)) {
        vfail(d, "virtio capabilities missing");
        return;
    }
    if (hostile == -2) { /* benchmark only */
        if (d->use_msix) {
            msi_idt_load(); /* interrupts stay off: they just pile up */
            if (msix_setup(d))
                vfail(d, "MSI-X setup for the benchmark");
        }
        if (negotiate(d))
            vfail(d, "setup for the benchmark");
        else
            bench(d);
        w8(d->common, 0x14, 0);
        if (d->msix)
            pci_write16(d->slot, d->msix_cap + 2, 0);
        return;
    }
    if (hostile < 0) { /* MSI-X test */
        msi_idt_load();
        test_intx(d);
        if (msix_setup(d) || negotiate(d))
            vfail(d, "MSI-X setup");
        else
            test_msix(d);
        w8(d->common, 0x14, 0);
        pci_write16(d->slot, d->msix_cap + 2, 0); /* MSI-X off again */
        d->msix = 0;
        return;
    }
    if (!hostile)
        test_pcicfg(d);
    test_mptable(d);
    test_io(d, hostile);
}

/* The legacy block with MSI-X on: vectors set through its registers,
 * the device configuration moved to 0x18 (cfg32 read it there). */
static void test_legacy_msix(struct vdev *d)
{
    int before, st;

    __asm__ volatile("sti"); /* what the earlier requests left pending */
    for (int i = 0; i < 2000; i++)
        ;
    before = msi_hits;
    st = request(d, T_IN, 0, buf, 512, 1, 0);
    for (int i = 0; i < IRQ_WAIT_SPINS && msi_hits == before; i++)
        ;
    __asm__ volatile("cli");
    if (st != 0 || msi_hits == before)
        vfail(d, "no MSI-X interrupt set up through the legacy vector registers");
    else
        serial_puts("calf-test: virtio-blk: legacy MSI-X: completion on vector 0, configuration at 0x18\n");
}

/* With VIRTIO_BLK_F_MQ: a read on queue 1 (another I/O thread). */
static void test_queue1(struct vdev *d)
{
    struct vdev q1 = *d;

    q1.desc = vq1.desc;
    q1.avail = &vq1.avail_flags;
    q1.used = &vq1.used_flags;
    q1.qnotify = d->qnotify1;
    q1.last_used = 0;
    if (!sector0_again(&q1, 0x99)) {
        vfail(d, "a read on queue 1 (status, or data other than queue 0 read)");
        return;
    }
    serial_puts("calf-test: virtio-blk ");
    serial_put_dec(d->slot);
    serial_puts(": queue 1 of ");
    serial_put_dec(d->nq);
    serial_puts(" served\n");
}

/* Negotiation, then the requests and what they must leave behind. */
static void test_io(struct vdev *d, int hostile)
{
    char id[21];
    int st;

    if (d->legacy ? negotiate_legacy(d) : negotiate(d)) {
        vfail(d, "feature negotiation / queue setup");
        return;
    }
    if (hostile) {
        test_hostile(d);
        if (negotiate(d)) {
            vfail(d, "setup after the hostile cases");
            return;
        }
    }
    memset(buf, 0xee, 512); /* not what a blank disk holds */
    if (expect(d, request(d, T_IN, 0, buf, 512, 1, 0), 0, "read sector 0"))
        return;
    memcpy(sec0, buf, 512);
    if (!d->legacy && d->nq > 1)
        test_queue1(d);
    memset(id, 0, sizeof(id));
    expect(d, request(d, T_GET_ID, 0, id, 20, 1, 0), 0, "GET_ID");
    serial_puts("calf-test: virtio-blk ");
    serial_put_dec(d->slot);
    serial_puts(": ");
    serial_put_dec(cfg32(d, 0) / 2048);
    serial_puts(" MiB, sector 0 byte ");
    serial_put_hex(sec0[0]);
    serial_puts(d->features >> F_RO & 1 ? ", read-only" : "");
    serial_puts(", serial '");
    serial_puts(id);
    serial_puts("'\n");
    if (d->features >> F_RO & 1) {
        st = request(d, T_OUT, SEC_1M, buf, 512, 1, 1);
        expect(d, st, 1, "a write to a read-only disk must fail");
        if (st == 1)
            serial_puts("calf-test: read-only disk refused a write\n");
    } else {
        test_rw(d);
    }
    if (d->legacy && d->msix)
        test_legacy_msix(d);
    dev_reset(d); /* the device lets go of our queue */
}

/* Modern-only (1042) or transitional (1001) virtio-blk functions. */
static int find_vblk(int from)
{
    for (int slot = from; slot < 32; slot++) {
        uint32_t id = pci_read32((unsigned)slot, 0);

        if (id == 0x10421af4u || id == 0x10011af4u)
            return slot;
    }
    return -1;
}

static uint64_t vpat_word(uint64_t pass, uint64_t s)
{
    return pass ? 0xC5ULL << 56 | pass << 24 | s : 0;
}

/* buf[0, 4 KiB) holds pass p of sectors [s, s+8): 1 if so. */
static int vpat_is(uint64_t pass, uint64_t s)
{
    for (uint32_t i = 0; i < 4096; i += 8)
        if (*(uint64_t *)(buf + i) != vpat_word(pass, s + i / 512))
            return 0;
    return 1;
}

static void vpat_bad(const char *what, uint64_t pass, uint64_t s)
{
    serial_puts("calf-test: vpat: bad ");
    serial_puts(what);
    serial_puts(" in pass ");
    serial_put_dec(pass);
    serial_puts(" at sector ");
    serial_put_dec(s);
    serial_puts("\n");
}

static void __attribute__((noreturn)) vpat_run(struct vdev *d, uint64_t sectors)
{
    patient = 1;
    if (find_bar(d) || (d->base = setup_bar(d), find_caps(d, d->base)) ||
        negotiate(d)) {
        serial_puts("calf-test: vpat: bad setup\n");
        for (;;)
            __asm__ volatile("hlt");
    }
    serial_puts("calf-test: vpat start\n");
    for (uint64_t pass = 1;; pass++) {
        for (uint64_t s = 0; s + 8 <= sectors; s += 8) {
            if (request(d, T_IN, s, buf, 4096, 1, 0) != 0)
                vpat_bad("read", pass, s);
            else if (!vpat_is(pass - 1, s))
                vpat_bad("old data", pass, s);
            for (uint32_t i = 0; i < 4096; i += 8)
                *(uint64_t *)(buf + i) = vpat_word(pass, s + i / 512);
            if (request(d, T_OUT, s, buf, 4096, 1, 1) != 0)
                vpat_bad("write", pass, s);
            memset(buf, 0xee, 4096);
            if (request(d, T_IN, s, buf, 4096, 1, 0) != 0)
                vpat_bad("read back", pass, s);
            else if (!vpat_is(pass, s))
                vpat_bad("data read back", pass, s);
        }
        serial_puts("calf-test: vpat pass ");
        serial_put_dec(pass);
        serial_puts("\n");
    }
}

int virtio_blk_pattern(uint64_t sectors)
{
    int slot;

    iobss_zero();
    slot = find_vblk(0);
    if (slot < 0) {
        serial_puts("calf-test: check failed: no virtio-blk disk\n");
        return 1;
    }
    struct vdev d = { .slot = (unsigned)slot };
    vpat_run(&d, sectors);
}

int virtio_blk_test(unsigned expected, unsigned flags)
{
    int hostile = flags & VBLK_TEST_HOSTILE, msix = flags & VBLK_TEST_MSIX;

    unsigned found = 0;
    int slot = 0;

    iobss_zero();
    while ((slot = find_vblk(slot)) >= 0) {
        struct vdev d = { .slot = (unsigned)slot };

        d.transitional = pci_read16(d.slot, 0x02) == 0x1001;
        serial_puts("calf-test: virtio-blk ");
        serial_put_dec(d.slot);
        serial_puts(d.transitional ? ": 1af4:1001 (transitional)\n"
                                   : ": 1af4:1042 (modern only)\n");
        d.legacy = !!(flags & VBLK_TEST_LEGACY);
        d.use_msix = msix;
        int before = failures;

        /* Hostile requests on the first disk only: the others must keep
         * working regardless. */
        memset(&acct, 0, sizeof(acct));
        if (flags & VBLK_TEST_BENCH) {
            if (!found)
                test_disk(&d, -2);
        } else {
            test_disk(&d, hostile && !found);
        }
        if (msix && !found && !d.legacy && !(flags & VBLK_TEST_BENCH))
            test_disk(&d, -1);
        if ((flags & VBLK_TEST_FLOOD) && !found) {
            uint64_t bytes = flood(&d);

            if (bytes) { /* left running */
                print_flood(bytes);
                serial_puts("\n");
            }
        }
        if (!(flags & VBLK_TEST_BENCH) && !(hostile && !found))
            acct_print(d.slot);
        if (failures == before) {
            serial_puts("calf-test: virtio-blk ");
            serial_put_dec(d.slot);
            serial_puts(": ok\n");
        }
        found++;
        slot++;
    }
    serial_puts("calf-test: virtio-blk disks: ");
    serial_put_dec(found);
    serial_puts("\n");
    if (found != expected) {
        serial_puts("calf-test: check failed: virtio-blk disk count\n");
        failures++;
    }
    return failures;
}
