/* ct.dstress=1: the block layer's integrity under concurrency, end to end.
 * Requests stay outstanding on every queue of the first virtio-blk disk
 * at once (calf serves each queue on its own I/O thread) while IDE
 * bus-master DMA runs on the primary master beside them; both disks are
 * qcow2 overlays over one backing file.  Every sector written carries a
 * stamp naming who wrote it, so the guest checks what it reads back and
 * the host (guest-tests/disk-stress.t) checks the images afterwards.
 *
 * Every 64-bit word of sector s is
 *     tag << 56 | round << 52 | queue << 48 | req << 40 | s
 * with tag 0xBA for the backing file (round, queue, req 0), 0xD5 for the
 * virtio writes, 0x1D for the IDE writes (queue 15).
 *
 * Virtio disk, sectors from VBASE = 2048 (the backing covers 8 MiB):
 *   round 1: request i < 32 writes [VBASE + 44i, +37) on queue (i+1) % nq,
 *            while reads of the gaps [VBASE + 44i + 37, +7) on queue
 *            (i+2) % nq must see the backing file's data as clusters
 *            around them are allocated (copy on write);
 *   round 2: once round 1 is done, request i (not i % 8 == 7) writes
 *            [VBASE + 44i + 20, +44) on queue (i+2) % nq: over the tail of
 *            round 1's request i, its gap and the head of request i+1;
 *            neighbours on different queues share 4 KiB blocks (a
 *            read-modify-write under cache=none); a flush on every queue;
 *   round 3: [VBASE - 64, VBASE + 1472) read back in 8 pieces over the
 *            queues and checked sector by sector.
 * IDE disk (ct.dide=1), beside rounds 1-3, one command after another:
 * WRITE DMA of [4099, +130) (round 1, req 0), of [4163, +130) (round 2,
 * req 1), and a READ DMA of [4096, +256) checked.
 *
 * ct.dhuge=1 then reads, writes and reads again one request of 254
 * segments of 1 MiB - 512 bytes (the device's seg_max and size_max;
 * 512-byte aligned in memory and on the disk, never 4 KiB aligned) at
 * sector 16379 (over the backing file's last 5 sectors): sector k of
 * segment g (2047 sectors each) is 0x4B << 56 | s when k % 128 == 0 or
 * k == 2046, else what was there before (backing below 16384, zeros);
 * the 512 bytes between two segments must stay untouched.  Needs 288 MiB
 * of guest RAM and a 320 MiB disk.
 *
 * Ring-0 code is emulated here (~2 M instructions/s): requests are posted
 * to every ring first and the queues notified back to back (so the I/O
 * threads start together), sectors are filled and compared a string
 * instruction at a time, and the huge range only at samples; the rounds
 * cost well under a second of guest time, the huge case a few. */
#include "guest.h"
#include "pci.h"

#define DQSZ 64
#define SLOTS (DQSZ / 3)     /* a chain: header, data, status */
#define MAXQ 8
#define POLL_LIMIT 200000000u

#define F_SIZE_MAX   1
#define F_SEG_MAX    2
#define F_BLK_SIZE   6
#define F_FLUSH      9
#define F_MQ         12
#define F_INDIRECT   28
#define F_VERSION_1  32

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

#define TAG_BACKING 0xbaULL
#define TAG_VIRTIO  0xd5ULL
#define TAG_IDE     0x1dULL
#define TAG_HUGE    0x4bULL

#define VBASE 2048u
#define NREQ 32u
#define STRIDE 44u
#define LEN1 37u
#define OFF2 20u
#define LEN2 44u
#define RD_FIRST (VBASE - 64)
#define RD_PIECE 192u
#define RD_PIECES 8u

#define IDE_LBA 4096u
#define HSECTOR 16379u   /* 8 MiB - 2.5 KiB: starts over the backing file */
#define HSEG_LEN ((1u << 20) - 512)

/* Guest-physical buffers (identity mapped; nothing else lives there). */
#define WBUF1 0x1000000ULL     /* round 1 writes: 64 KiB per request */
#define WBUF2 0x1200000ULL     /* round 2 */
#define GBUF  0x1400000ULL     /* round 1 gap reads, 4 KiB each */
#define RBUF  0x1600000ULL     /* round 3 reads, 128 KiB each */
#define IBUF  0x1800000ULL     /* IDE: 64 KiB per PRD entry */
#define HBUF  0x2000000ULL     /* the huge request: 32 MiB up */

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct dq {
    struct desc desc[DQSZ];
    uint16_t avail_flags, avail_idx, avail_ring[DQSZ], used_event;
    uint8_t pad[4096 - 16 * DQSZ - 6 - 2 * DQSZ];
    uint16_t used_flags, used_idx;
    struct { uint32_t id, len; } used_ring[DQSZ];
    uint16_t avail_event;
} __attribute__((aligned(4096))); /* so that every queue of dqs[] is */

struct req_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

struct job {
    uint64_t sector;
    uint8_t *buf;
    uint32_t nsec;
    uint8_t type, q, state, status;
};

enum { JOB_WAITING, JOB_POSTED, JOB_DONE }; /* job.state */

static struct dq dqs[MAXQ] IOBSS;
static struct req_hdr hdrs[MAXQ][SLOTS] IOBSS;
static volatile uint8_t stat[MAXQ][SLOTS] IOBSS;
static struct desc itbl[258] IOBSS __attribute__((aligned(16)));
static struct job jobs[2 * NREQ + MAXQ];

static struct {
    unsigned slot, nq;
    volatile uint8_t *common, *notify, *devcfg;
    uint32_t notify_mult;
    volatile uint16_t *qnotify[MAXQ];
    uint16_t last_used[MAXQ];
    int slot_job[MAXQ][SLOTS]; /* -1: free */
    uint64_t features;
} dv;

static int failures;

static void dfail(const char *what)
{
    serial_puts("calf-test: dstress: check failed: ");
    serial_puts(what);
    serial_puts("\n");
    failures++;
}

static void say(const char *what, uint64_t n, const char *rest)
{
    serial_puts("calf-test: dstress: ");
    serial_puts(what);
    serial_put_dec(n);
    serial_puts(rest);
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return lo | (uint64_t)hi << 32;
}

static uint64_t stamp(uint64_t tag, uint64_t round, uint64_t q, uint64_t req,
                      uint32_t sector)
{
    return tag << 56 | round << 52 | q << 48 | req << 40 | sector;
}

/* Every word of a sector holds its stamp, so that rep stosq writes it
 * and repe scasq checks it: one emulated step per word instead of a
 * loop's five. */
static void set_words(uint64_t *w, uint64_t v, uint64_t n)
{
    __asm__ volatile("rep stosq" : "+D"(w), "+c"(n) : "a"(v) : "memory");
}

/* How many of the n words at w, from the first, equal v. */
static uint64_t same_words(const uint64_t *w, uint64_t v, uint64_t n)
{
    uint64_t left = n;

    if (!n)
        return 0;
    __asm__ volatile("repe scasq" : "+D"(w), "+c"(left) : "a"(v) : "memory", "cc");
    /* repe stops after the first word that differs, having counted it */
    return w[-1] == v ? n : n - left - 1;
}

static void fill(void *p, uint32_t first, uint32_t nsec, uint64_t tag,
                 uint64_t round, uint64_t q, uint64_t req)
{
    for (uint32_t s = first; s < first + nsec; s++)
        set_words((uint64_t *)p + 64 * (s - first), stamp(tag, round, q, req, s), 64);
}

static void poison(void *p, uint32_t nsec)
{
    set_words(p, 0xdeadbeefdeadbeefULL, 64ULL * nsec);
}

/* Compares nsec sectors from first against expect(s); reports the first
 * few differences (what is there names who wrote it). */
static void check(const void *p, uint32_t first, uint32_t nsec,
                  uint64_t (*expect)(uint32_t), const char *what)
{
    const uint64_t *w = p;
    int bad = 0;

    for (uint32_t s = first; s < first + nsec; s++, w += 64) {
        uint64_t want = expect(s), j = same_words(w, want, 64);

        if (j == 64)
            continue;
        if (bad++ < 3) {
            serial_puts("calf-test: dstress: ");
            serial_puts(what);
            serial_puts(": sector ");
            serial_put_dec(s);
            serial_puts(" word ");
            serial_put_dec(j);
            serial_puts(" is ");
            serial_put_hex(w[j]);
            serial_puts(", expected ");
            serial_put_hex(want);
            serial_puts("\n");
        }
    }
    if (bad) {
        dfail(what);
        say("sectors that differ: ", (uint64_t)bad, "\n");
    }
}

/* ---- what each range must hold ---- */

static uint64_t backing(uint32_t s)
{
    return stamp(TAG_BACKING, 0, 0, 0, s);
}

static uint64_t virtio_final(uint32_t s)
{
    uint32_t rel = s - VBASE, i;

    if (s < VBASE)
        return backing(s);
    i = rel >= OFF2 ? (rel - OFF2) / STRIDE : NREQ;
    if (i < NREQ && i % 8 != 7)
        return stamp(TAG_VIRTIO, 2, (i + 2) % dv.nq, i, s);
    i = rel / STRIDE;
    if (i < NREQ && rel % STRIDE < LEN1)
        return stamp(TAG_VIRTIO, 1, (i + 1) % dv.nq, i, s);
    return backing(s);
}

static uint64_t ide_final(uint32_t s)
{
    if (s >= IDE_LBA + 67 && s < IDE_LBA + 67 + 130)
        return stamp(TAG_IDE, 2, 15, 1, s);
    if (s >= IDE_LBA + 3 && s < IDE_LBA + 3 + 130)
        return stamp(TAG_IDE, 1, 15, 0, s);
    return backing(s);
}

/* ---- the virtio-blk device: modern interface, nq polled queues ---- */

static int find_caps(void)
{
    unsigned cap = pci_read8(dv.slot, 0x34), found = 0;

    for (int n = 0; cap && n < 16; n++, cap = pci_read8(dv.slot, cap + 1)) {
        uint32_t w0 = pci_read32(dv.slot, cap);
        unsigned type = w0 >> 24, bar = pci_read8(dv.slot, cap + 4);
        uint32_t lo;
        uint64_t base;
        volatile uint8_t *at;

        if ((w0 & 0xff) != 0x09 || type < 1 || type > 4 || type == 3 || bar > 5)
            continue;
        lo = pci_read32(dv.slot, 0x10 + 4 * bar);
        base = (lo & ~0xfull) |
               ((lo & 6) == 4 ? (uint64_t)pci_read32(dv.slot, 0x14 + 4 * bar) << 32 : 0);
        at = (volatile uint8_t *)(base + pci_read32(dv.slot, cap + 8));
        if (type == 1)
            dv.common = at;
        else if (type == 2) {
            dv.notify = at;
            dv.notify_mult = pci_read32(dv.slot, cap + 16);
        } else
            dv.devcfg = at;
        found |= 1u << type;
    }
    return found == 0x16 ? 0 : -1;
}

static void c8(unsigned off, uint8_t v) { dv.common[off] = v; }
static void c16(unsigned off, uint16_t v) { *(volatile uint16_t *)(dv.common + off) = v; }
static void c32(unsigned off, uint32_t v) { *(volatile uint32_t *)(dv.common + off) = v; }
static void c64(unsigned off, uint64_t v)
{
    c32(off, (uint32_t)v);
    c32(off + 4, (uint32_t)(v >> 32));
}
static uint16_t r16(unsigned off) { return *(volatile uint16_t *)(dv.common + off); }
static uint32_t r32(unsigned off) { return *(volatile uint32_t *)(dv.common + off); }

static int vsetup(void)
{
    uint64_t want = 1ULL << F_VERSION_1 | 1ULL << F_FLUSH | 1ULL << F_MQ |
                    1ULL << F_INDIRECT | 1ULL << F_SEG_MAX | 1ULL << F_SIZE_MAX |
                    1ULL << F_BLK_SIZE;

    pci_write16(dv.slot, 0x04, 0x0006); /* memory, bus master */
    if (find_caps())
        return -1;
    c8(0x14, 0);
    c8(0x14, 1 | 2);
    c32(0x00, 0);
    dv.features = r32(0x04);
    c32(0x00, 1);
    dv.features |= (uint64_t)r32(0x04) << 32;
    dv.features &= want;
    if (!(dv.features >> F_VERSION_1 & 1) || !(dv.features >> F_INDIRECT & 1))
        return -1;
    c32(0x08, 0);
    c32(0x0c, (uint32_t)dv.features);
    c32(0x08, 1);
    c32(0x0c, (uint32_t)(dv.features >> 32));
    c8(0x14, 1 | 2 | 8);
    if (!(dv.common[0x14] & 8))
        return -1;
    dv.nq = r16(0x12);
    if (dv.nq > MAXQ)
        dv.nq = MAXQ;
    for (unsigned q = 0; q < dv.nq; q++) {
        struct dq *r = &dqs[q];

        memset(r, 0, sizeof(*r));
        r->avail_flags = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT: we poll */
        c16(0x16, (uint16_t)q);
        if (r16(0x18) < DQSZ)
            return -1;
        c16(0x18, DQSZ);
        c16(0x1a, 0xffff);
        c64(0x20, (uint64_t)r->desc);
        c64(0x28, (uint64_t)&r->avail_flags);
        c64(0x30, (uint64_t)&r->used_flags);
        dv.qnotify[q] = (volatile uint16_t *)(dv.notify + r16(0x1e) * dv.notify_mult);
        c16(0x1c, 1);
        dv.last_used[q] = 0;
        for (unsigned s = 0; s < SLOTS; s++)
            dv.slot_job[q][s] = -1;
    }
    c8(0x14, 1 | 2 | 8 | 4);
    return dv.common[0x14] & 0x40 ? -1 : 0;
}

static int free_slot(unsigned q)
{
    for (unsigned s = 0; s < SLOTS; s++)
        if (dv.slot_job[q][s] < 0)
            return (int)s;
    return -1;
}

/* Puts job j in its queue's ring (not yet notified); 0, or -1 when the
 * queue has no free slot. */
static int post(struct job *jb, int j)
{
    unsigned q = jb->q;
    int s = free_slot(q);
    struct dq *r = &dqs[q];
    struct desc *d;

    if (s < 0)
        return -1;
    d = &r->desc[3 * s];
    hdrs[q][s] = (struct req_hdr){ jb->type, 0, jb->sector };
    stat[q][s] = 0xff;
    d[0] = (struct desc){ (uint64_t)&hdrs[q][s], sizeof(struct req_hdr), D_NEXT,
                          (uint16_t)(3 * s + 1) };
    if (jb->type == T_FLUSH) {
        d[0].next = (uint16_t)(3 * s + 2);
    } else if (jb->nsec > 0x7fffff) { /* the huge one: an indirect table */
        d[0] = (struct desc){ (uint64_t)itbl, (254 + 2) * 16, D_INDIRECT, 0 };
    } else {
        d[1] = (struct desc){ (uint64_t)jb->buf, jb->nsec * 512,
                              (uint16_t)(D_NEXT | (jb->type == T_IN ? D_WRITE : 0)),
                              (uint16_t)(3 * s + 2) };
    }
    d[2] = (struct desc){ (uint64_t)&stat[q][s], 1, D_WRITE, 0 };
    dv.slot_job[q][s] = j;
    r->avail_ring[r->avail_idx % DQSZ] = (uint16_t)(3 * s);
    __asm__ volatile("mfence" ::: "memory");
    r->avail_idx++;
    jb->state = JOB_POSTED;
    return 0;
}

/* Takes what queue q completed; returns how many jobs. */
static unsigned reap(struct job *js, unsigned q)
{
    struct dq *r = &dqs[q];
    unsigned n = 0;

    while (*(volatile uint16_t *)&r->used_idx != dv.last_used[q]) {
        uint32_t id = r->used_ring[dv.last_used[q] % DQSZ].id;
        unsigned s = id / 3;

        dv.last_used[q]++;
        if (id % 3 || s >= SLOTS || dv.slot_job[q][s] < 0) {
            dfail("the device completed a chain that was not posted");
            continue;
        }
        js[dv.slot_job[q][s]].status = stat[q][s];
        js[dv.slot_job[q][s]].state = JOB_DONE;
        dv.slot_job[q][s] = -1;
        n++;
    }
    return n;
}

/* ---- the IDE script beside the virtio rounds ---- */

static struct ide_sg isg[4];
static int ide_step = -1; /* -1: no IDE; 3: done */
static int ide_running;

static void ide_next(void)
{
    uint8_t *b = (uint8_t *)IBUF;

    if (ide_step == 0 || ide_step == 1) { /* two writes of 65 + 65 sectors */
        uint32_t lba = IDE_LBA + (ide_step ? 67 : 3);

        for (int k = 0; k < 2; k++) {
            uint8_t *p = b + (ide_step * 2 + k) * 65536;

            fill(p, lba + 65 * (uint32_t)k, 65, TAG_IDE, (uint64_t)ide_step + 1, 15,
                 (uint64_t)ide_step);
            isg[k] = (struct ide_sg){ p, 65 * 512 };
        }
        ide_running = !ide_dma_begin(1, lba, 130, isg, 2);
    } else if (ide_step == 2) { /* a read of 4 x 64 sectors */
        for (int k = 0; k < 4; k++) {
            uint8_t *p = b + (4 + k) * 65536;

            poison(p, 64);
            isg[k] = (struct ide_sg){ p, 64 * 512 };
        }
        ide_running = !ide_dma_begin(0, IDE_LBA, 256, isg, 4);
    } else {
        return;
    }
    if (!ide_running) {
        dfail("IDE: a DMA command could not begin");
        ide_step = 3;
    }
}

/* Moves the IDE script on when its command is done. */
static void ide_poll(void)
{
    int r;

    if (ide_step < 0 || ide_step >= 3 || (r = ide_dma_poll()) == 1)
        return;
    if (r) {
        dfail(ide_step < 2 ? "IDE: WRITE DMA" : "IDE: READ DMA");
    } else if (ide_step == 2) {
        for (int k = 0; k < 4; k++)
            check((uint8_t *)IBUF + (4 + k) * 65536, IDE_LBA + 64 * (uint32_t)k, 64,
                  ide_final, "IDE read back");
    }
    ide_step++;
    ide_next();
}

/* Posts the jobs to every ring, notifies the queues back to back, and
 * takes the completions (posting what waited for a slot) while the IDE
 * script moves on. */
static void run(struct job *js, unsigned n, const char *what)
{
    static unsigned ticks; /* across calls: a round may be short */
    unsigned done = 0, polls = 0;

    while (done < n) {
        unsigned kick = 0;

        for (unsigned j = 0; j < n; j++)
            if (js[j].state == JOB_WAITING && !post(&js[j], (int)j))
                kick |= 1u << js[j].q;
        __asm__ volatile("mfence" ::: "memory");
        for (unsigned q = 0; q < dv.nq; q++)
            if (kick >> q & 1)
                *dv.qnotify[q] = (uint16_t)q;
        for (unsigned q = 0; q < dv.nq; q++)
            done += reap(js, q);
        /* a port read is a VM exit to calf: now and then */
        if (++ticks % 16 == 0)
            ide_poll();
        if (++polls > POLL_LIMIT) {
            dfail(what);
            serial_puts("calf-test: dstress: (requests never completed)\n");
            return;
        }
    }
    for (unsigned j = 0; j < n; j++)
        if (js[j].status != 0) {
            serial_puts("calf-test: dstress: ");
            serial_puts(what);
            say(": request ", j, " failed\n");
            failures++;
        }
}

/* ---- the rounds ---- */

static void round1(void)
{
    unsigned n = 0;

    for (uint32_t i = 0; i < NREQ; i++) {
        uint8_t *w = (uint8_t *)(WBUF1 + i * 65536 + 512 * (i % 8));
        uint8_t *g = (uint8_t *)(GBUF + i * 4096);
        uint32_t s = VBASE + STRIDE * i;

        fill(w, s, LEN1, TAG_VIRTIO, 1, (i + 1) % dv.nq, i);
        poison(g, STRIDE - LEN1);
        jobs[n++] = (struct job){ s, w, LEN1, T_OUT, (uint8_t)((i + 1) % dv.nq), 0, 0 };
        jobs[n++] = (struct job){ s + LEN1, g, STRIDE - LEN1, T_IN,
                                  (uint8_t)((i + 2) % dv.nq), 0, 0 };
    }
    run(jobs, n, "round 1 (writes, gap reads)");
    for (uint32_t i = 0; i < NREQ; i++)
        check((uint8_t *)(GBUF + i * 4096), VBASE + STRIDE * i + LEN1,
              STRIDE - LEN1, backing, "round 1: a gap beside allocating writes");
}

static void round2(void)
{
    unsigned n = 0;

    for (uint32_t i = 0; i < NREQ; i++) {
        uint8_t *w = (uint8_t *)(WBUF2 + i * 65536 + 512 * (i % 8));
        uint32_t s = VBASE + STRIDE * i + OFF2;

        if (i % 8 == 7)
            continue;
        fill(w, s, LEN2, TAG_VIRTIO, 2, (i + 2) % dv.nq, i);
        jobs[n++] = (struct job){ s, w, LEN2, T_OUT, (uint8_t)((i + 2) % dv.nq), 0, 0 };
    }
    for (unsigned q = 0; q < dv.nq; q++)
        jobs[n++] = (struct job){ 0, 0, 0, T_FLUSH, (uint8_t)q, 0, 0 };
    run(jobs, n, "round 2 (overlapping writes, flushes)");
}

static void round3(void)
{
    for (uint32_t k = 0; k < RD_PIECES; k++) {
        uint8_t *r = (uint8_t *)(RBUF + k * 131072);

        poison(r, RD_PIECE);
        jobs[k] = (struct job){ RD_FIRST + RD_PIECE * k, r, RD_PIECE, T_IN,
                                (uint8_t)(k % dv.nq), 0, 0 };
    }
    run(jobs, RD_PIECES, "round 3 (read back)");
    for (uint32_t k = 0; k < RD_PIECES; k++)
        check((uint8_t *)(RBUF + k * 131072), RD_FIRST + RD_PIECE * k, RD_PIECE,
              virtio_final, "round 3: read back");
}

/* ---- ct.dhuge=1 ----
 * Writing 254 MiB of stamps would take the emulated guest minutes, so
 * the guest stamps sector 0, every 128th and the last of each segment
 * (HSAMPLE) and leaves the rest as the first read found it: the backing
 * file's sectors below 16384, zeros above.  That first read also makes
 * the host back all of the buffer with pages, so calf's peak RSS shows
 * any copy of the request it might make on top of them. */

#define HSEG_SECTORS (HSEG_LEN / 512)
#define HSAMPLE 128u

static uint64_t *hsector(uint32_t seg, uint32_t k)
{
    return (uint64_t *)(HBUF + (uint64_t)seg * (1u << 20) + 512 + 512ULL * k);
}

static uint32_t next_sample(uint32_t k)
{
    if (k + HSAMPLE < HSEG_SECTORS - 1)
        return k + HSAMPLE;
    return k < HSEG_SECTORS - 1 ? HSEG_SECTORS - 1 : HSEG_SECTORS;
}

static uint64_t huge_before(uint32_t s)
{
    return s < 16384 ? backing(s) : 0;
}

/* The huge range's samples: stamp (what=1), poison (2), or check against
 * the stamps (0) or what was there before (-1), with the sector after
 * each sample, which must hold what was there before. */
static int huge_samples(int what)
{
    int bad = 0;

    for (uint32_t seg = 0; seg < 254; seg++) {
        uint64_t *gap = (uint64_t *)(HBUF + (uint64_t)seg * (1u << 20));
        uint64_t canary = 0xca11ab1eca11ab1eULL ^ seg;

        if (what > 0)
            *gap = canary; /* the 512 bytes before each segment */
        else if (*gap != canary && what == 0 && bad++ < 3)
            say("huge read wrote into the gap before segment ", seg, "\n");
        for (uint32_t k = 0; k < HSEG_SECTORS; k = next_sample(k)) {
            uint32_t s = HSECTOR + seg * HSEG_SECTORS + k;
            uint64_t want = what < 0 ? huge_before(s) : TAG_HUGE << 56 | s;

            if (what > 0) {
                set_words(hsector(seg, k), what == 1 ? want : 0xdeadbeefdeadbeefULL, 64);
                continue;
            }
            if ((same_words(hsector(seg, k), want, 64) != 64 ||
                 (k + 1 < HSEG_SECTORS && k % HSAMPLE != HSAMPLE - 1 &&
                  same_words(hsector(seg, k + 1), huge_before(s + 1), 64) != 64)) &&
                bad++ < 3)
                say("huge read: sector ", s, " (or the one after it) differs\n");
        }
    }
    return bad;
}

static void huge_request(int write)
{
    uint64_t t;

    itbl[0] = (struct desc){ (uint64_t)&hdrs[0][0], sizeof(struct req_hdr), D_NEXT, 1 };
    for (unsigned i = 1; i <= 254; i++)
        itbl[i] = (struct desc){ (uint64_t)hsector(i - 1, 0), HSEG_LEN,
                                 (uint16_t)(D_NEXT | (write ? 0 : D_WRITE)),
                                 (uint16_t)(i + 1) };
    itbl[255] = (struct desc){ (uint64_t)&stat[0][0], 1, D_WRITE, 0 };
    /* post() gives it queue 0's slot 0 (all are free), whose header and
     * status the table names */
    jobs[0] = (struct job){ HSECTOR, (uint8_t *)HBUF, 0xffffffffu,
                            write ? T_OUT : T_IN, 0, 0, 0 };
    t = rdtsc();
    run(jobs, 1, write ? "huge write" : "huge read");
    say(write ? "huge write of " : "huge read of ", 254ULL * HSEG_LEN, " bytes at sector ");
    serial_put_dec(HSECTOR);
    serial_puts(" in 254 segments: ");
    serial_put_dec((rdtsc() - t) / 1000000);
    serial_puts(" M TSC cycles\n");
}

static void huge(void)
{
    uint64_t cap = *(volatile uint32_t *)dv.devcfg |
                   (uint64_t)*(volatile uint32_t *)(dv.devcfg + 4) << 32;
    uint32_t size_max = *(volatile uint32_t *)(dv.devcfg + 8);
    uint32_t seg_max = *(volatile uint32_t *)(dv.devcfg + 12);

    if (seg_max < 254 || size_max < HSEG_LEN ||
        cap < HSECTOR + 254ULL * HSEG_SECTORS) {
        dfail("ct.dhuge: seg_max 254, size_max 1 MiB and a 320 MiB disk");
        return;
    }
    huge_request(0);
    if (huge_samples(-1))
        dfail("huge read of the untouched range");
    huge_samples(1);
    huge_request(1);
    huge_samples(2);
    huge_request(0);
    if (huge_samples(0))
        dfail("huge read back");
}

int dstress_test(const char *cmdline)
{
    size_t len;
    int slot = pci_find(0x1af4, 0x1001, 0), ide_during;
    uint64_t t;

    iobss_zero();
    if (slot < 0)
        slot = pci_find(0x1af4, 0x1042, 0);
    dv.slot = (unsigned)slot;
    if (slot < 0 || vsetup() || dv.nq < 2) {
        dfail("a virtio-blk disk with VERSION_1, INDIRECT_DESC and 2+ queues");
        return failures;
    }
    say("virtio-blk with ", dv.nq, " queues");
    serial_puts(cmdline_get(cmdline, "ct.dide=", &len) ? ", IDE DMA beside\n" : "\n");
    if (cmdline_get(cmdline, "ct.dide=", &len)) {
        ide_step = 0;
        ide_next();
    }
    t = rdtsc();
    round1();
    round2();
    round3();
    t = rdtsc() - t;
    ide_during = ide_step < 0 ? 0 : ide_step;
    for (unsigned polls = 0; ide_step >= 0 && ide_step < 3; polls++) {
        ide_poll();
        if (polls > POLL_LIMIT / 256) {
            dfail("IDE: the DMA script never finished");
            break;
        }
    }
    if (!failures) {
        say("rounds checked in ", t / 1000000, " M TSC cycles");
        serial_puts("; IDE commands done meanwhile: ");
        serial_put_dec((uint64_t)ide_during);
        serial_puts(" of 3\n");
    }
    if (cmdline_get(cmdline, "ct.dhuge=", &len))
        huge();
    c8(0x14, 0);
    serial_puts(failures ? "calf-test: dstress: FAILED\n" : "calf-test: dstress: ok\n");
    return failures;
}
