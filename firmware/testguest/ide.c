/* A minimal IDE driver that tests calf's PIIX3 IDE function: finds it
 * by PCI ID (8086:7010 at 00:01.1), IDENTIFY, PIO reads and writes with
 * and without READ/WRITE MULTIPLE, CHS addressing, LBA48 beyond 128 GiB,
 * bus-master DMA through PRD tables, FLUSH, resets and signatures,
 * interrupts (through the PIC's IRR with the lines level-triggered),
 * a read-only disk and an ATAPI CD-ROM.  Polled; ring-0 code is emulated
 * here, so data moves with rep insw/outsw and checks are short.
 *
 * Command line (ct.ide=1 runs the disk part on the primary master):
 *   ct.idesize=N     the master has N sectors (IDENTIFY must say so)
 *   ct.idebig=1      the master is > 128 GiB: LBA48 writes up there
 *   ct.idero=1       the primary slave is a read-only disk
 *   ct.idecd=N       the secondary master is a CD of N 2048-byte blocks
 *                    (block 16 an ISO9660 descriptor, every word of
 *                    block b >= 18 is 0xCD000000 | b)
 *   ct.idehostile=1  broken PRD tables, DMA without bus mastering,
 *                    commands in the wrong state, garbage packets,
 *                    resets during a 32 MiB DMA transfer (with ct.idecd,
 *                    a CD of at least 16384 blocks gets the ATAPI one),
 *                    byte count limits of 0, 1 and odd
 *   ct.idepair=N     the primary slave is a CD of N >= 16384 blocks:
 *                    a DEVICE RESET of it, while its DMA or the master's
 *                    runs and the other waits, leaves the master's alone
 *                    (the master's sector 0 must hold 0x11)
 *   ct.idepeer=1     another IDE model (QEMU's): skip what ATA leaves open
 *   ct.idewatch=1    last, for ever: watch the secondary master CD's media
 *                    as a desktop does (GET EVENT STATUS NOTIFICATION,
 *                    polled) while the host ejects and changes it (QMP);
 *                    prints every media status change and event, TEST
 *                    UNIT READY's answer without a disc, and after a new
 *                    disc the answers TEST UNIT READY gave until ready,
 *                    the capacity and block 0's first byte (cd_watch);
 *                    ct.idewatch=lock: lock the tray first (PREVENT)
 *   ct.idepat=N      ct.vpat's pattern over the master's first N sectors
 *                    through PIO, pass after pass, for ever (pio_pattern)
 *
 * What it writes on the master, for the host to check:
 *   0x5a at [1 MiB, +4 KiB), 0x6b at [1 MiB + 4 KiB, +16 KiB) (MULTIPLE),
 *   0x7c at [2 MiB, +64 KiB) (DMA); with ct.idebig=1 also 0x8d, 0x9e,
 *   0xaf at BIG_LBA: 4 KiB PIO, 4 KiB DMA, 8 KiB MULTIPLE EXT.
 */
#include "guest.h"

#define ST_ERR  0x01
#define ST_DRQ  0x08
#define ST_DRDY 0x40
#define ST_BSY  0x80
#define ER_ABRT 0x04
#define ER_IDNF 0x10

#define BM_START  0x01
#define BM_TO_MEM 0x08
#define BM_ERR    0x02
#define BM_INT    0x04

#define BIG_LBA (0x10000000ULL + 0x100000) /* 128.5 GiB */
#define WAIT_LOOPS 4000000

struct chan {
    uint16_t cmd, ctl, bm;
    uint8_t pic_bit;    /* IRQ 14/15 on the slave PIC */
    const char *name;
};

struct prd {
    uint32_t addr;
    uint16_t count, flags;
};

static struct chan pri = { 0x1f0, 0x3f6, 0, 0x40, "primary" };
static struct chan sec = { 0x170, 0x376, 0, 0x80, "secondary" };
/* A PRD table owns a 64 KiB region: the endless-table case fills it. */
static struct prd prds[8192] IOBSS __attribute__((aligned(65536)));
static uint8_t buf[65536] IOBSS __attribute__((aligned(4096)));
static uint16_t ident[256];
static int failures;

static void ifail(const char *what)
{
    serial_puts("calf-test: ide: check failed: ");
    serial_puts(what);
    serial_puts("\n");
    failures++;
}

static void check(int cond, const char *what)
{
    if (!cond)
        ifail(what);
}

static void say(const char *s)
{
    serial_puts("calf-test: ide: ");
    serial_puts(s);
    serial_puts("\n");
}

static void insw(uint16_t port, void *p, size_t words)
{
    __asm__ volatile("rep insw" : "+D"(p), "+c"(words) : "d"(port) : "memory");
}

static void insl(uint16_t port, void *p, size_t dwords)
{
    __asm__ volatile("rep insl" : "+D"(p), "+c"(dwords) : "d"(port) : "memory");
}

static void outsw(uint16_t port, const void *p, size_t words)
{
    __asm__ volatile("rep outsw" : "+S"(p), "+c"(words) : "d"(port) : "memory");
}

/* Configuration space of 00:01.fn. */
static uint32_t cfg_read(unsigned fn, unsigned off)
{
    outl(0xcf8, 0x80000000u | 1u << 11 | fn << 8 | (off & 0xfc));
    return inl(0xcfc);
}

static void cfg_write(unsigned fn, unsigned off, uint32_t v)
{
    outl(0xcf8, 0x80000000u | 1u << 11 | fn << 8 | (off & 0xfc));
    outl(0xcfc, v);
}

/* ---- the protocol ---- */

static uint8_t wait_idle(struct chan *c)
{
    for (int i = 0; i < WAIT_LOOPS; i++) {
        uint8_t st = inb(c->ctl);

        if (!(st & ST_BSY))
            return st;
    }
    ifail("BSY never cleared");
    return 0xff;
}

static void issue(struct chan *c, unsigned unit, uint64_t lba, unsigned count,
                  int ext, uint8_t feature, uint8_t cmd)
{
    outb(c->cmd + 6, (uint8_t)(0xe0 | unit << 4 | (ext ? 0 : (lba >> 24) & 0x0f)));
    if (ext) {
        outb(c->cmd + 1, 0);
        outb(c->cmd + 2, (uint8_t)(count >> 8));
        outb(c->cmd + 3, (uint8_t)(lba >> 24));
        outb(c->cmd + 4, (uint8_t)(lba >> 32));
        outb(c->cmd + 5, (uint8_t)(lba >> 40));
    }
    outb(c->cmd + 1, feature);
    outb(c->cmd + 2, (uint8_t)count);
    outb(c->cmd + 3, (uint8_t)lba);
    outb(c->cmd + 4, (uint8_t)(lba >> 8));
    outb(c->cmd + 5, (uint8_t)(lba >> 16));
    outb(c->cmd + 7, cmd);
}

/* A non-data command: the final status (the interrupt cleared). */
static uint8_t nodata(struct chan *c, unsigned unit, uint64_t lba, unsigned count,
                      int ext, uint8_t feature, uint8_t cmd)
{
    issue(c, unit, lba, count, ext, feature, cmd);
    wait_idle(c);
    return inb(c->cmd + 7);
}

/* PIO data-in of count sectors in blocks of block sectors: 0 or -1. */
static int pio_in(struct chan *c, unsigned unit, uint8_t cmd, uint64_t lba,
                  unsigned count, int ext, unsigned block, void *dst)
{
    uint8_t *p = dst, st;

    issue(c, unit, lba, count, ext, 0, cmd);
    while (count) {
        unsigned n = count < block ? count : block;

        st = wait_idle(c);
        if ((st & (ST_ERR | ST_DRQ)) != ST_DRQ)
            return -1;
        insw(c->cmd, p, n * 256);
        p += n * 512;
        count -= n;
    }
    st = wait_idle(c);
    inb(c->cmd + 7);
    return (st & (ST_ERR | ST_DRQ)) || !(st & ST_DRDY) ? -1 : 0;
}

static int pio_out(struct chan *c, unsigned unit, uint8_t cmd, uint64_t lba,
                   unsigned count, int ext, unsigned block, const void *src)
{
    const uint8_t *p = src;
    uint8_t st;

    issue(c, unit, lba, count, ext, 0, cmd);
    while (count) {
        unsigned n = count < block ? count : block;

        st = wait_idle(c);
        if ((st & (ST_ERR | ST_DRQ)) != ST_DRQ)
            return -1;
        outsw(c->cmd, p, n * 256);
        p += n * 512;
        count -= n;
    }
    st = wait_idle(c);
    inb(c->cmd + 7);
    return (st & (ST_ERR | ST_DRQ)) ? -1 : 0;
}

/* Runs a DMA command over the PRD table at prd; 0, or -1 with the drive
 * or bus-master error. */
static int dma_cmd(struct chan *c, unsigned unit, uint8_t cmd, uint64_t lba,
                   unsigned count, int ext, int to_mem, const struct prd *prd)
{
    uint8_t st, bst = 0;

    outb(c->bm, 0);
    outb(c->bm + 2, BM_ERR | BM_INT);
    outl(c->bm + 4, (uint32_t)(uint64_t)prd);
    outb(c->bm, to_mem ? BM_TO_MEM : 0);
    issue(c, unit, lba, count, ext, 0, cmd);
    outb(c->bm, (uint8_t)((to_mem ? BM_TO_MEM : 0) | BM_START));
    for (int i = 0; i < WAIT_LOOPS; i++) {
        bst = inb(c->bm + 2);
        if (bst & BM_INT)
            break;
    }
    st = wait_idle(c);
    outb(c->bm, 0);
    outb(c->bm + 2, BM_ERR | BM_INT);
    inb(c->cmd + 7);
    if (!(bst & BM_INT))
        ifail("no bus-master interrupt after a DMA command");
    return (st & ST_ERR) || (bst & BM_ERR) ? -1 : 0;
}

static void prd_set(struct prd *p, const void *addr, uint32_t len, int last)
{
    p->addr = (uint32_t)(uint64_t)addr;
    p->count = (uint16_t)len; /* 65536 wraps to 0, which means 64 KiB */
    p->flags = last ? 0x8000 : 0;
}

static void fill(void *p, uint8_t v, size_t n)
{
    memset(p, v, n);
}

static int all(const void *p, uint8_t v, size_t n)
{
    const uint64_t *q = p;
    uint64_t w = 0x0101010101010101ULL * v;

    for (size_t i = 0; i < n / 8; i++)
        if (q[i] != w)
            return 0;
    return 1;
}

static int irq_pending(struct chan *c)
{
    outb(0xa0, 0x0a); /* OCW3: read IRR */
    return inb(0xa0) & c->pic_bit;
}

static void put_ata_string(const uint16_t *w, unsigned words)
{
    char s[41];
    unsigned n = 0;

    for (unsigned i = 0; i < words && n < 40; i++) {
        s[n++] = (char)(w[i] >> 8);
        s[n++] = (char)w[i];
    }
    while (n && s[n - 1] == ' ')
        n--;
    s[n] = 0;
    serial_puts(s);
}

static int identify(struct chan *c, unsigned unit, uint8_t cmd)
{
    return pio_in(c, unit, cmd, 0, 1, 0, 1, ident);
}

/* ---- the disk on the primary master ---- */

static void disk_identify(uint64_t want)
{
    uint64_t lba28, lba48;
    uint8_t sum = 0;

    if (identify(&pri, 0, 0xec)) {
        ifail("IDENTIFY DEVICE");
        return;
    }
    lba28 = ident[60] | (uint64_t)ident[61] << 16;
    lba48 = ident[100] | (uint64_t)ident[101] << 16 | (uint64_t)ident[102] << 32 |
            (uint64_t)ident[103] << 48;
    serial_puts("calf-test: ide: master '");
    put_ata_string(ident + 27, 20);
    serial_puts("' serial '");
    put_ata_string(ident + 10, 10);
    serial_puts("' sectors ");
    serial_put_dec(lba48);
    serial_puts(" lba28 ");
    serial_put_dec(lba28);
    serial_puts(" chs ");
    serial_put_dec(ident[1]);
    serial_puts("/");
    serial_put_dec(ident[3]);
    serial_puts("/");
    serial_put_dec(ident[6]);
    serial_puts("\n");
    check(!(ident[0] & 0x8000), "IDENTIFY word 0 says ATA");
    check(ident[49] & (1 << 9) && ident[49] & (1 << 8), "IDENTIFY: LBA and DMA");
    check(ident[83] & (1 << 10) && ident[86] & (1 << 10), "IDENTIFY: LBA48");
    check(lba28 == (want > 0x0fffffff ? 0x0fffffff : want), "IDENTIFY: LBA28 size");
    if (want)
        check(lba48 == want, "IDENTIFY: LBA48 size is ct.idesize");
    check((ident[47] & 0xff) >= 2, "IDENTIFY: READ/WRITE MULTIPLE");
    if ((ident[255] & 0xff) == 0xa5) {
        for (int i = 0; i < 512; i++)
            sum = (uint8_t)(sum + ((const uint8_t *)ident)[i]);
        check(sum == 0, "IDENTIFY checksum (word 255)");
    }
}

static void disk_pio(void)
{
    fill(buf, 0x5a, 4096);
    check(!pio_out(&pri, 0, 0x30, 2048, 8, 0, 1, buf), "WRITE SECTORS");
    check((nodata(&pri, 0, 0, 4, 0, 0, 0xc6) & ST_ERR) == 0, "SET MULTIPLE MODE 4");
    check(nodata(&pri, 0, 0, 3, 0, 0, 0xc6) & ST_ERR, "SET MULTIPLE MODE 3 aborts");
    fill(buf, 0x6b, 16384);
    check(!pio_out(&pri, 0, 0xc5, 2056, 32, 0, 4, buf), "WRITE MULTIPLE");
    fill(buf, 0, 16384);
    check(!pio_in(&pri, 0, 0x20, 2056, 32, 0, 1, buf) && all(buf, 0x6b, 16384),
          "READ SECTORS reads back what WRITE MULTIPLE wrote");
    fill(buf, 0, 4096);
    check(!pio_in(&pri, 0, 0xc4, 2048, 8, 0, 4, buf) && all(buf, 0x5a, 4096),
          "READ MULTIPLE reads back what WRITE SECTORS wrote");
    /* 32-bit data port accesses (PIIX3 passes them as two words) */
    fill(buf, 0, 1024);
    issue(&pri, 0, 2056, 2, 0, 0, 0x20);
    for (int i = 0; i < 2; i++) {
        check((wait_idle(&pri) & (ST_ERR | ST_DRQ)) == ST_DRQ, "DRQ for a 32-bit PIO read");
        insl(pri.cmd, buf + 512 * i, 128);
    }
    check(!(wait_idle(&pri) & (ST_DRQ | ST_ERR)) && all(buf, 0x6b, 1024),
          "READ SECTORS through 32-bit data port reads");
    inb(pri.cmd + 7);
    /* sector 0 through CHS 0/0/1: the host wrote 0x11 there */
    outb(pri.cmd + 6, 0xa0); /* CHS: LBA bit off, master, head 0 */
    outb(pri.cmd + 2, 1);
    outb(pri.cmd + 3, 1);    /* sectors count from 1 */
    outb(pri.cmd + 4, 0);
    outb(pri.cmd + 5, 0);
    outb(pri.cmd + 7, 0x20);
    check((wait_idle(&pri) & (ST_ERR | ST_DRQ)) == ST_DRQ, "CHS read of 0/0/1");
    insw(pri.cmd, buf, 256);
    inb(pri.cmd + 7);
    serial_puts("calf-test: ide: sector 0 byte ");
    serial_put_hex(buf[0]);
    serial_puts("\n");
    /* CHS 1/2/3 with the default 16 heads, 63 sectors: LBA 1136 (0x22);
     * with 4 heads, 17 sectors after INITIALIZE DEVICE PARAMETERS: LBA
     * 104 (0x33). */
    for (int geo = 0; geo < 2; geo++) {
        if (geo) {
            outb(pri.cmd + 6, 0xa0 | 3);  /* heads - 1 */
            outb(pri.cmd + 2, 17);
            outb(pri.cmd + 7, 0x91);
            wait_idle(&pri);
            check(!(inb(pri.cmd + 7) & ST_ERR), "INITIALIZE DEVICE PARAMETERS");
        }
        outb(pri.cmd + 6, 0xa0 | 2);
        outb(pri.cmd + 2, 1);
        outb(pri.cmd + 3, 3);
        outb(pri.cmd + 4, 1);
        outb(pri.cmd + 5, 0);
        outb(pri.cmd + 7, 0x20);
        check((wait_idle(&pri) & (ST_ERR | ST_DRQ)) == ST_DRQ, "CHS read");
        insw(pri.cmd, buf, 256);
        inb(pri.cmd + 7);
        check(all(buf, geo ? 0x33 : 0x22, 512), geo ? "CHS 1/2/3 is LBA 104 with 4 heads, 17 sectors"
                                                    : "CHS 1/2/3 is LBA 1136 with 16 heads, 63 sectors");
    }
}

static void disk_dma(void)
{
    struct prd *p = prds;

    /* three entries of 16, 32 and 16 KiB from separate places */
    fill(buf, 0x7c, 65536);
    prd_set(&p[0], buf + 32768, 16384, 0);
    prd_set(&p[1], buf, 32768, 0);
    prd_set(&p[2], buf + 49152, 16384, 1);
    check(!dma_cmd(&pri, 0, 0xca, 4096, 128, 0, 0, p), "WRITE DMA with three PRD entries");
    fill(buf, 0, 65536);
    prd_set(&p[0], buf, 65536, 1); /* a count of 0: 64 KiB */
    check(!dma_cmd(&pri, 0, 0xc8, 4096, 128, 0, 1, p) && all(buf, 0x7c, 65536),
          "READ DMA into one 64 KiB PRD entry (count 0)");
    fill(buf, 0, 4096);
    prd_set(&p[0], buf, 4096, 1);
    check(!dma_cmd(&pri, 0, 0xc8, 2048, 8, 0, 1, p) && all(buf, 0x5a, 4096),
          "READ DMA of what WRITE SECTORS wrote");
}

static void disk_big(void)
{
    struct prd *p = prds;

    fill(buf, 0x8d, 4096);
    check(!pio_out(&pri, 0, 0x34, BIG_LBA, 8, 1, 1, buf), "WRITE SECTORS EXT above 128 GiB");
    fill(buf, 0x9e, 4096);
    prd_set(&p[0], buf, 4096, 1);
    check(!dma_cmd(&pri, 0, 0x35, BIG_LBA + 8, 8, 1, 0, p), "WRITE DMA EXT above 128 GiB");
    fill(buf, 0xaf, 8192);
    check(!pio_out(&pri, 0, 0x39, BIG_LBA + 16, 16, 1, 4, buf), "WRITE MULTIPLE EXT above 128 GiB");
    fill(buf, 0, 16384);
    prd_set(&p[0], buf, 16384, 1);
    check(!dma_cmd(&pri, 0, 0x25, BIG_LBA, 32, 1, 1, p) && all(buf, 0x8d, 4096) &&
          all(buf + 4096, 0x9e, 4096) && all(buf + 8192, 0xaf, 8192),
          "READ DMA EXT above 128 GiB");
    fill(buf, 0, 16384);
    check(!pio_in(&pri, 0, 0x24, BIG_LBA, 32, 1, 1, buf) && all(buf, 0x8d, 4096) &&
          all(buf + 4096, 0x9e, 4096) && all(buf + 8192, 0xaf, 8192),
          "READ SECTORS EXT above 128 GiB");
    fill(buf, 0, 16384);
    check(!pio_in(&pri, 0, 0x29, BIG_LBA, 32, 1, 4, buf) && all(buf, 0x8d, 4096) &&
          all(buf + 4096, 0x9e, 4096) && all(buf + 8192, 0xaf, 8192),
          "READ MULTIPLE EXT above 128 GiB");
    say("LBA48 above 128 GiB ok");
}

/* ct.idepeer=1: the guest runs on another IDE model (QEMU's, to show the
 * checks encode IDE and not calf's reading of it); what ATA leaves to the
 * device there is not checked. */
static int peer;

static void disk_misc(uint64_t size)
{
    uint8_t st;

    check(!(nodata(&pri, 0, 0, 0, 0, 0, 0xe7) & ST_ERR), "FLUSH CACHE");
    check(!(nodata(&pri, 0, 0, 0, 1, 0, 0xea) & ST_ERR), "FLUSH CACHE EXT");
    check(!(nodata(&pri, 0, 2048, 8, 0, 0, 0x40) & ST_ERR), "READ VERIFY");
    if (!peer) {
        /* calf refuses before any data moves (QEMU: data, then an error;
         * it does not check READ VERIFY at all) */
        st = nodata(&pri, 0, size, 1, 1, 0, 0x42);
        check((st & ST_ERR) && (inb(pri.cmd + 1) & ER_IDNF), "READ VERIFY EXT past the end: IDNF");
        st = nodata(&pri, 0, size - 1, 2, 1, 0, 0x24);
        check((st & ST_ERR) && !(st & ST_DRQ), "READ SECTORS EXT across the end is refused");
    }
    check(!(nodata(&pri, 0, 0, 0x22, 0, 0x03, 0xef) & ST_ERR), "SET FEATURES: multiword DMA 2");
    identify(&pri, 0, 0xec);
    /* QEMU answers IDENTIFY from a copy made the first time */
    check(peer || (ident[63] & (1 << 10)), "IDENTIFY word 63 shows MWDMA2 selected");
    st = nodata(&pri, 0, 0, 0, 0, 0x77, 0xef);
    check((st & ST_ERR) && (inb(pri.cmd + 1) & ER_ABRT), "an unknown SET FEATURES aborts");
    st = nodata(&pri, 0, 0, 0, 0, 0, 0xf0);
    check((st & (ST_ERR | ST_DRDY)) == (ST_ERR | ST_DRDY) && inb(pri.cmd + 1) == ER_ABRT,
          "an unknown command gets ABRT");
    check(nodata(&pri, 0, 0, 0, 0, 0, 0xa0) & ST_ERR, "PACKET to a disk aborts");
    check(nodata(&pri, 0, 0, 0, 0, 0, 0xa1) & ST_ERR, "IDENTIFY PACKET DEVICE to a disk aborts");
}

/* Interrupts: INTRQ reaches IRQ 14, reading status clears it, nIEN
 * masks it (the PIC's IRR shows the line while ELCR makes it level). */
static void disk_irq(void)
{
    outb(0x4d1, inb(0x4d1) | 0xc0);
    outb(pri.cmd + 6, 0xe0);
    outb(pri.cmd + 7, 0xe7);
    wait_idle(&pri);
    check(irq_pending(&pri) != 0, "a finished command raises IRQ 14");
    check(inb(pri.bm + 2) & BM_INT, "and sets the bus-master interrupt bit");
    outb(pri.bm + 2, BM_INT);
    inb(pri.ctl);
    check(irq_pending(&pri) != 0, "reading the alternate status keeps it");
    inb(pri.cmd + 7);
    check(irq_pending(&pri) == 0, "reading the status register clears IRQ 14");
    outb(pri.ctl, 0x02);
    outb(pri.cmd + 7, 0xe7);
    wait_idle(&pri);
    check(irq_pending(&pri) == 0, "nIEN keeps IRQ 14 down");
    inb(pri.cmd + 7);
    outb(pri.ctl, 0x00);
    check(irq_pending(&pri) == 0, "nothing pending after nIEN goes");
    say("interrupts ok");
}

static int signature_is(struct chan *c, uint8_t mid, uint8_t high)
{
    return inb(c->cmd + 2) == 1 && inb(c->cmd + 3) == 1 &&
           inb(c->cmd + 4) == mid && inb(c->cmd + 5) == high;
}

static void channel_reset(struct chan *c, uint8_t mid, uint8_t high)
{
    /* The master selected around the pulse: an absent slave's status
     * reads 0, which would end the wait before the reset (QEMU resets
     * asynchronously and keeps the selection). */
    outb(c->cmd + 6, 0xa0);
    outb(c->ctl, 0x04);
    outb(c->ctl, 0x00);
    wait_idle(c);
    outb(c->cmd + 6, 0xa0);
    wait_idle(c);
    if (!signature_is(c, mid, high) || inb(c->cmd + 1) != 0x01) {
        serial_puts("calf-test: ide: after SRST: error/count/lba ");
        for (int r = 1; r <= 5; r++) {
            serial_put_hex(inb((uint16_t)(c->cmd + r)));
            serial_puts(" ");
        }
        serial_puts("\n");
    }
    check(signature_is(c, mid, high), "the signature after SRST");
    check(inb(c->cmd + 1) == 0x01, "the diagnostic code after SRST");
}

/* ---- the read-only primary slave ---- */

static void disk_readonly(void)
{
    uint8_t st;

    fill(buf, 0, 512);
    check(!pio_in(&pri, 1, 0x20, 0, 1, 0, 1, buf) && all(buf, 0x44, 512),
          "the read-only slave reads (0x44 at sector 0)");
    st = nodata(&pri, 1, 0, 1, 0, 0, 0x30);
    check((st & ST_ERR) && !(st & ST_DRQ) && (inb(pri.cmd + 1) & ER_ABRT),
          "WRITE SECTORS to the read-only disk: ABRT");
    fill(buf, 0x99, 512);
    prd_set(&prds[0], buf, 512, 1);
    check(dma_cmd(&pri, 1, 0xca, 0, 1, 0, 0, prds) && (inb(pri.cmd + 1) & ER_ABRT),
          "WRITE DMA to the read-only disk: ABRT");
    say("read-only slave refused writes");
}

/* ---- ATAPI on the secondary master ---- */

static uint8_t cdb[12];
static uint8_t cd_sense[3];
static uint8_t cd_error; /* the error register of the last failed PACKET */

/* PACKET with cdb; data-in into dst (max bytes, and one spare byte for
 * an odd last chunk); returns the bytes received or -1 on CHECK
 * CONDITION or an abort (sense fetched into cd_sense, the error register
 * in cd_error), -3 for a chunk that breaks the protocol. */
static int packet_pio(const uint8_t *c12, void *dst, unsigned max, unsigned limit,
                      unsigned *chunks);

static int request_sense(void)
{
    static const uint8_t rs[12] = { 0x03, 0, 0, 0, 18 };
    uint8_t s[18];
    int n = packet_pio(rs, s, sizeof(s), 18, 0);

    cd_sense[0] = n >= 14 ? s[2] & 0x0f : 0xff;
    cd_sense[1] = n >= 14 ? s[12] : 0xff;
    cd_sense[2] = n >= 14 ? s[13] : 0xff;
    return n;
}

static int packet_pio(const uint8_t *c12, void *dst, unsigned max, unsigned limit,
                      unsigned *chunks)
{
    uint8_t *p = dst, st;
    unsigned got = 0;

    outb(sec.cmd + 6, 0xa0);
    outb(sec.cmd + 1, 0);
    outb(sec.cmd + 4, (uint8_t)limit);
    outb(sec.cmd + 5, (uint8_t)(limit >> 8));
    outb(sec.cmd + 7, 0xa0);
    st = wait_idle(&sec);
    if ((st & (ST_DRQ | ST_ERR)) != ST_DRQ || (inb(sec.cmd + 2) & 3) != 1)
        return -2;
    outsw(sec.cmd, c12, 6);
    for (;;) {
        unsigned n, ir;

        st = wait_idle(&sec);
        ir = inb(sec.cmd + 2) & 3;
        inb(sec.cmd + 7);
        if (!(st & ST_DRQ))
            break;
        n = inb(sec.cmd + 4) | inb(sec.cmd + 5) << 8;
        /* a chunk of 0 would keep DRQ forever: this loop with it */
        if (ir != 2 || !n || n > limit || got + n > max)
            return -3;
        insw(sec.cmd, p + got, (n + 1) / 2);
        got += n;
        if (chunks)
            (*chunks)++;
    }
    if (st & ST_ERR) {
        cd_error = inb(sec.cmd + 1);
        if (c12[0] != 0x03)
            request_sense();
        return -1;
    }
    return (int)got;
}

static void cdb_set(uint8_t op, uint32_t lba, uint32_t len, unsigned len_at, unsigned len_bytes)
{
    memset(cdb, 0, sizeof(cdb));
    cdb[0] = op;
    cdb[2] = (uint8_t)(lba >> 24);
    cdb[3] = (uint8_t)(lba >> 16);
    cdb[4] = (uint8_t)(lba >> 8);
    cdb[5] = (uint8_t)lba;
    for (unsigned i = 0; i < len_bytes; i++)
        cdb[len_at + i] = (uint8_t)(len >> (8 * (len_bytes - 1 - i)));
}

static int cd_block_ok(const uint8_t *b, uint32_t block)
{
    const uint32_t *w = (const uint32_t *)b;

    for (int i = 0; i < 512; i++)
        if (w[i] != (0xcd000000u | block))
            return 0;
    return 1;
}

/* n blocks from block on, each one whole */
static int cd_blocks_ok(const uint8_t *b, uint32_t block, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!cd_block_ok(b + 2048 * i, block + i))
            return 0;
    return 1;
}

static int sense_is(uint8_t key, uint8_t asc)
{
    return cd_sense[0] == key && cd_sense[1] == asc;
}

static void cd_identify(void)
{
    uint8_t st;

    st = nodata(&sec, 0, 0, 0, 0, 0, 0xec);
    check((st & ST_ERR) && signature_is(&sec, 0x14, 0xeb),
          "IDENTIFY DEVICE to the CD aborts with the ATAPI signature");
    if (identify(&sec, 0, 0xa1)) {
        ifail("IDENTIFY PACKET DEVICE");
        return;
    }
    check((ident[0] & 0xc000) == 0x8000 && ((ident[0] >> 8) & 0x1f) == 5,
          "IDENTIFY PACKET DEVICE: an ATAPI CD-ROM");
    serial_puts("calf-test: ide: cdrom '");
    put_ata_string(ident + 27, 20);
    serial_puts("'\n");
}

static void cd_reads(uint32_t blocks)
{
    unsigned chunks = 0;
    int n;

    cdb_set(0x12, 0, 36, 4, 1);
    n = packet_pio(cdb, buf, 36, 36, 0);
    check(n == 36 && buf[0] == 0x05 && (buf[1] & 0x80), "INQUIRY: a removable CD/DVD device");
    memset(cdb, 0, sizeof(cdb));
    check(packet_pio(cdb, buf, 0, 2, 0) == 0, "TEST UNIT READY");
    cdb_set(0x25, 0, 0, 0, 0);
    n = packet_pio(cdb, buf, 8, 8, 0);
    check(n == 8 && (uint32_t)(buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3]) == blocks - 1 &&
          buf[6] == 0x08 && buf[7] == 0, "READ CAPACITY: the last block and 2048-byte blocks");
    cdb_set(0x28, 16, 1, 7, 2);
    n = packet_pio(cdb, buf, 2048, 2048, 0);
    check(n == 2048 && buf[0] == 1 && buf[1] == 'C' && buf[2] == 'D' && buf[5] == '1',
          "READ(10) of block 16: the ISO9660 primary volume descriptor");
    /* 4 blocks with a byte count limit of 2048: four DRQ chunks */
    fill(buf, 0, 8192);
    cdb_set(0x28, 20, 4, 7, 2);
    n = packet_pio(cdb, buf, 8192, 2048, &chunks);
    check(n == 8192 && chunks == 4 && cd_blocks_ok(buf, 20, 4),
          "READ(10) of 4 blocks in 2048-byte chunks (the byte count limit)");
    fill(buf, 0, 4096);
    cdb_set(0xa8, blocks - 2, 2, 6, 4);
    n = packet_pio(cdb, buf, 4096, 0xfffe, 0);
    check(n == 4096 && cd_blocks_ok(buf, blocks - 2, 2), "READ(12) of the last two blocks");
    cdb_set(0x28, blocks - 1, 2, 7, 2);
    check(packet_pio(cdb, buf, 4096, 4096, 0) == -1 && sense_is(5, 0x21),
          "READ(10) past the end: ILLEGAL REQUEST, LBA out of range");
}

static void cd_info(uint32_t blocks)
{
    int n;

    cdb_set(0x5a, 0, 64, 7, 2);
    cdb[2] = 0x2a;
    n = packet_pio(cdb, buf, 64, 64, 0);
    check(n >= 30 && buf[8] == 0x2a, "MODE SENSE(10) page 2Ah");
    cdb_set(0x46, 0, 64, 7, 2);
    n = packet_pio(cdb, buf, 64, 64, 0);
    check(n >= 8 && (buf[6] << 8 | buf[7]) == 0x0008, "GET CONFIGURATION: the CD-ROM profile is current");
    cdb_set(0x43, 0, 20, 7, 2);
    n = packet_pio(cdb, buf, 20, 20, 0);
    check(n == 20 && buf[2] == 1 && buf[3] == 1 && buf[14] == 0xaa &&
          (uint32_t)(buf[16] << 24 | buf[17] << 16 | buf[18] << 8 | buf[19]) == blocks,
          "READ TOC: one data track, the lead-out at the capacity");
    cdb_set(0x4a, 0, 8, 7, 2);
    cdb[1] = 1;
    cdb[4] = 0x10;
    n = packet_pio(cdb, buf, 8, 8, 0);
    check(n == 8 && buf[2] == 4 && (buf[5] & 2), "GET EVENT STATUS NOTIFICATION: media present");
}

static void cd_sense_and_tray(void)
{
    cdb_set(0xff, 0, 0, 0, 0);
    check(packet_pio(cdb, buf, 64, 64, 0) == -1 && sense_is(5, 0x20),
          "an unknown opcode: ILLEGAL REQUEST, invalid command, through REQUEST SENSE");
    cdb_set(0x1e, 0, 0, 0, 0);
    cdb[4] = 1;
    check(packet_pio(cdb, buf, 0, 2, 0) == 0, "PREVENT MEDIUM REMOVAL");
    cdb_set(0x1b, 0, 0, 0, 0);
    cdb[4] = 2;
    /* MMC allows NOT READY (QEMU) or ILLEGAL REQUEST (calf) here */
    check(packet_pio(cdb, buf, 0, 2, 0) == -1 &&
          (sense_is(5, 0x53) || sense_is(2, 0x53)),
          "eject while prevented: MEDIUM REMOVAL PREVENTED");
    cdb_set(0x1e, 0, 0, 0, 0);
    check(packet_pio(cdb, buf, 0, 2, 0) == 0, "ALLOW MEDIUM REMOVAL");
    cdb_set(0x1b, 0, 0, 0, 0);
    cdb[4] = 2;
    check(packet_pio(cdb, buf, 0, 2, 0) == 0, "START STOP UNIT: eject");
    memset(cdb, 0, sizeof(cdb));
    check(packet_pio(cdb, buf, 0, 2, 0) == -1 && sense_is(2, 0x3a),
          "TEST UNIT READY without a disc: NOT READY, medium not present");
    cdb_set(0x1b, 0, 0, 0, 0);
    cdb[4] = 3;
    check(packet_pio(cdb, buf, 0, 2, 0) == 0, "START STOP UNIT: load");
    memset(cdb, 0, sizeof(cdb));
    check(packet_pio(cdb, buf, 0, 2, 0) == 0, "TEST UNIT READY after loading");
}

/* READ(12) through bus-master DMA: the PACKET's DMA feature bit. */
static void cd_dma(void)
{
    uint8_t st, bst = 0;

    fill(buf, 0, 8192);
    prd_set(&prds[0], buf, 8192, 1);
    cdb_set(0xa8, 18, 4, 6, 4);
    outb(sec.bm, 0);
    outb(sec.bm + 2, BM_ERR | BM_INT);
    outl(sec.bm + 4, (uint32_t)(uint64_t)prds);
    outb(sec.bm, BM_TO_MEM);
    outb(sec.cmd + 6, 0xa0);
    outb(sec.cmd + 1, 1); /* DMA */
    outb(sec.cmd + 4, 0);
    outb(sec.cmd + 5, 0);
    outb(sec.cmd + 7, 0xa0);
    wait_idle(&sec);
    outsw(sec.cmd, cdb, 6);
    outb(sec.bm, BM_TO_MEM | BM_START);
    for (int i = 0; i < WAIT_LOOPS && !(bst & BM_INT); i++)
        bst = inb(sec.bm + 2);
    st = wait_idle(&sec);
    outb(sec.bm, 0);
    outb(sec.bm + 2, BM_ERR | BM_INT);
    check(!(st & (ST_ERR | ST_DRQ)) && (inb(sec.cmd + 2) & 3) == 3 && (bst & BM_INT),
          "READ(12) by DMA completes");
    inb(sec.cmd + 7);
    check(cd_blocks_ok(buf, 18, 4), "READ(12) by DMA: the data");
}

static void cdrom_test(uint32_t blocks)
{
    channel_reset(&sec, 0x14, 0xeb);
    cd_identify();
    cd_reads(blocks);
    cd_info(blocks);
    cd_sense_and_tray();
    cd_dma();
    say("ATAPI CD-ROM ok");
}

/* ---- ct.idewatch: media changes by the host ---- */

static void print_sense(void)
{
    serial_put_hex(cd_sense[0]);
    serial_puts("/");
    serial_put_hex(cd_sense[1]);
}

/* READ CAPACITY and block 0: "capacity N byte B" */
static void cd_print_disc(void)
{
    uint32_t last;

    cdb_set(0x25, 0, 0, 0, 0);
    if (packet_pio(cdb, buf, 8, 8, 0) != 8) {
        serial_puts("no capacity\n");
        return;
    }
    last = (uint32_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3];
    cdb_set(0x28, 0, 1, 7, 2);
    buf[0] = 0;
    if (packet_pio(cdb, buf, 2048, 2048, 0) != 2048) {
        serial_puts("no block 0\n");
        return;
    }
    serial_puts("capacity ");
    serial_put_dec((uint64_t)last + 1);
    serial_puts(" byte ");
    serial_put_hex(buf[0]);
    serial_puts("\n");
}

/* TEST UNIT READY until it passes (at most 8): "ready after S S ok: " */
static void cd_until_ready(void)
{
    serial_puts("calf-test: cd: ready after");
    for (int i = 0; i < 8; i++) {
        memset(cdb, 0, sizeof(cdb));
        if (packet_pio(cdb, buf, 0, 2, 0) == 0) {
            serial_puts(" ok: ");
            cd_print_disc();
            return;
        }
        serial_puts(" ");
        print_sense();
    }
    serial_puts(" never\n");
}

static void cd_watch(int lock)
{
    int last = -1;

    channel_reset(&sec, 0x14, 0xeb);
    serial_puts("calf-test: cd: watching: ");
    cd_print_disc();
    if (lock) {
        cdb_set(0x1e, 0, 0, 0, 0);
        cdb[4] = 1;
        if (packet_pio(cdb, buf, 0, 2, 0) == 0)
            serial_puts("calf-test: cd: tray locked\n");
    }
    for (;;) {
        int status, event;

        cdb_set(0x4a, 0, 8, 7, 2);
        cdb[1] = 1;
        cdb[4] = 0x10;
        if (packet_pio(cdb, buf, 8, 8, 0) != 8)
            continue;
        status = buf[5] & 3;
        event = buf[4] & 0x0f;
        if (status != last || event) {
            serial_puts("calf-test: cd: media ");
            serial_put_dec((uint64_t)status);
            serial_puts(" event ");
            serial_put_dec((uint64_t)event);
            if (status != 2) {
                memset(cdb, 0, sizeof(cdb));
                serial_puts(" tur ");
                if (packet_pio(cdb, buf, 0, 2, 0) == 0)
                    serial_puts("ok");
                else
                    print_sense();
            }
            serial_puts("\n");
            if (status == 2 && event == 2)
                cd_until_ready();
        }
        last = status;
        for (volatile int i = 0; i < 20000; i++)
            ;
    }
}

/* ---- a hostile guest ---- */

static void hostile_dma(void)
{
    struct prd *p = prds;
    uint32_t cmd = cfg_read(1, 0x04);

    prd_set(&p[0], buf, 4096, 1);
    cfg_write(1, 0x04, (cmd & 0xffff) & ~4u);
    check(dma_cmd(&pri, 0, 0xc8, 0, 8, 0, 1, p), "DMA with bus mastering off fails");
    cfg_write(1, 0x04, cmd & 0xffff);
    check(dma_cmd(&pri, 0, 0xc8, 0, 8, 0, 1, (const struct prd *)0xf0000000ULL),
          "a PRD table outside RAM fails");
    p[0].addr = 0xf0000000u;
    check(dma_cmd(&pri, 0, 0xc8, 0, 8, 0, 1, p), "a PRD entry outside RAM fails");
    prd_set(&p[0], buf, 512, 1);
    check(dma_cmd(&pri, 0, 0xc8, 0, 8, 0, 1, p), "a PRD table shorter than the transfer fails");
    /* 8192 two-byte entries without EOT fill the table's 64 KiB: a
     * 64 KiB transfer runs off its end */
    for (int i = 0; i < 8192; i++)
        prd_set(&p[i], buf, 2, 0);
    check(dma_cmd(&pri, 0, 0xc8, 0, 128, 0, 1, p), "an endless PRD table is cut off");
    prd_set(&p[0], buf, 4096, 1);
    check(!dma_cmd(&pri, 0, 0xc8, 2048, 8, 0, 1, p) && all(buf, 0x5a, 4096),
          "DMA works again afterwards");
    /* a command written while a DMA command waits for the start bit
     * (BSY) is ignored: the DMA then moves the first command's data */
    fill(buf, 0, 4096);
    outb(pri.bm, 0);
    outb(pri.bm + 2, BM_ERR | BM_INT);
    outl(pri.bm + 4, (uint32_t)(uint64_t)p);
    outb(pri.bm, BM_TO_MEM);
    issue(&pri, 0, 2048, 8, 0, 0, 0xc8);
    check(inb(pri.ctl) & ST_BSY, "BSY while a DMA command waits for the engine");
    issue(&pri, 0, 4096, 8, 0, 0, 0x20);
    outb(pri.bm, BM_TO_MEM | BM_START);
    for (int i = 0; i < WAIT_LOOPS && !(inb(pri.bm + 2) & BM_INT); i++)
        ;
    check(!(wait_idle(&pri) & (ST_ERR | ST_DRQ)) && all(buf, 0x5a, 4096),
          "a command written during BSY is ignored");
    outb(pri.bm, 0);
    outb(pri.bm + 2, BM_ERR | BM_INT);
    inb(pri.cmd + 7);
}

/* ---- resets during a long DMA transfer ---- */

/* 32 MiB: 512 PRD entries of 64 KiB, all on buf (the canary), so any
 * chunk of the transfer that goes on after a reset writes there; the
 * channel moves DMA_IOV (256) entries per block-layer request, so this
 * is two requests of 16 MiB.  The fence below uses its own buffer. */
#define LONG_DMA_BYTES (32u << 20)
#define LONG_DMA_CHUNK (16u << 20)
#define FENCE_PRD (&prds[4096])
static uint8_t fence_buf[2048] IOBSS __attribute__((aligned(4096)));

static void prd_long(void)
{
    unsigned n = LONG_DMA_BYTES / 65536;

    for (unsigned i = 0; i < n; i++)
        prd_set(&prds[i], buf, 65536, i == n - 1);
}

/* Starts the engine on prds for a command already issued. */
static void bm_start(struct chan *c, int to_mem)
{
    outb(c->bm, 0);
    outb(c->bm + 2, BM_ERR | BM_INT);
    outl(c->bm + 4, (uint32_t)(uint64_t)prds);
    outb(c->bm, (uint8_t)((to_mem ? BM_TO_MEM : 0) | BM_START));
}

/* A few status reads: the channel's thread is then inside its first
 * block-layer request when the reset comes (a reset that arrives before
 * any data moved proves less). */
static void let_dma_run(struct chan *c)
{
    for (int i = 0; i < 50; i++)
        inb(c->ctl);
}

static void bm_stop(struct chan *c)
{
    outb(c->bm, 0);
    outb(c->bm + 2, BM_ERR | BM_INT);
}

/* SRST asserted: from here the old transfer must be over. */
static void srst_assert(struct chan *c)
{
    outb(c->cmd + 6, 0xa0);
    outb(c->ctl, 0x04);
}

static void srst_release(struct chan *c)
{
    outb(c->ctl, 0x00);
    wait_idle(c);
    check(signature_is(c, 0, 0) && inb(c->cmd + 1) == 0x01,
          "the ATA signature after an SRST that stopped a DMA");
    bm_stop(c);
}

/* A channel runs one transfer at a time: a fence DMA completes only
 * after anything still running before it ended, so what the old
 * transfer could still do has been done once the fence is back. */
static void disk_fence(void)
{
    prd_set(FENCE_PRD, fence_buf, 512, 1);
    check(!dma_cmd(&pri, 0, 0xc8, 0, 1, 0, 1, FENCE_PRD), "a DMA command after the reset works");
}

/* SRST while WRITE DMA EXT and READ DMA EXT of 32 MiB run: once the
 * reset is seen done, the old transfer writes neither the disk nor guest
 * memory - not even the rest of the 16 MiB request it was in. */
static void hostile_srst_dma(void)
{
    /* the disk: the guest writes the last sector of the first 16 MiB
     * again after the reset; the old data must not land on it later */
    const uint64_t lba = 65536, canary = lba + LONG_DMA_CHUNK / 512 - 1;

    prd_long();
    fill(buf, 0x5c, 65536);
    issue(&pri, 0, lba, LONG_DMA_BYTES / 512, 1, 0, 0x35);
    bm_start(&pri, 0);
    let_dma_run(&pri);
    srst_assert(&pri);
    srst_release(&pri);
    fill(fence_buf, 0xe8, 512);
    check(!pio_out(&pri, 0, 0x34, canary, 1, 1, 1, fence_buf),
          "WRITE SECTORS EXT after SRST stopped a WRITE DMA EXT");
    disk_fence();
    fill(fence_buf, 0, 512);
    check(!pio_in(&pri, 0, 0x24, canary, 1, 1, 1, fence_buf) && all(fence_buf, 0xe8, 512),
          "SRST: the WRITE DMA EXT it stopped wrote nothing after it");

    /* guest memory: the canary is filled while SRST is still asserted */
    prd_long();
    issue(&pri, 0, lba, LONG_DMA_BYTES / 512, 1, 0, 0x25);
    bm_start(&pri, 1);
    let_dma_run(&pri);
    srst_assert(&pri);
    fill(buf, 0xe7, 65536);
    srst_release(&pri);
    disk_fence();
    check(all(buf, 0xe7, 65536), "SRST: the READ DMA EXT it stopped wrote no memory after it");
}

/* DEVICE RESET while an ATAPI READ(12) by DMA of 32 MiB runs. */
static void hostile_cd_reset(uint32_t blocks)
{
    uint8_t st;

    if (blocks < LONG_DMA_BYTES / 2048)
        return;
    prd_long();
    cdb_set(0xa8, 0, LONG_DMA_BYTES / 2048, 6, 4);
    outb(sec.cmd + 6, 0xa0);
    outb(sec.cmd + 1, 1); /* DMA */
    outb(sec.cmd + 7, 0xa0);
    st = wait_idle(&sec);
    check((st & (ST_DRQ | ST_ERR)) == ST_DRQ, "PACKET for a 32 MiB CD DMA");
    outsw(sec.cmd, cdb, 6);
    bm_start(&sec, 1);
    let_dma_run(&sec);
    outb(sec.cmd + 7, 0x08);
    fill(buf, 0xe9, 65536);
    st = wait_idle(&sec);
    bm_stop(&sec);
    check(!(st & (ST_BSY | ST_DRQ)) && signature_is(&sec, 0x14, 0xeb),
          "DEVICE RESET during a CD DMA: the drive comes back with its signature");
    /* the fence: one block by DMA into its own buffer */
    cdb_set(0xa8, 18, 1, 6, 4);
    prd_set(FENCE_PRD, fence_buf, 2048, 1);
    outl(sec.bm + 4, (uint32_t)(uint64_t)FENCE_PRD);
    outb(sec.cmd + 6, 0xa0);
    outb(sec.cmd + 1, 1);
    outb(sec.cmd + 7, 0xa0);
    wait_idle(&sec);
    outsw(sec.cmd, cdb, 6);
    outb(sec.bm, BM_TO_MEM | BM_START);
    for (int i = 0; i < WAIT_LOOPS && !(inb(sec.bm + 2) & BM_INT); i++)
        ;
    st = wait_idle(&sec);
    bm_stop(&sec);
    inb(sec.cmd + 7);
    check(!(st & (ST_ERR | ST_DRQ)) && cd_block_ok(fence_buf, 18),
          "a CD DMA after the DEVICE RESET works");
    check(all(buf, 0xe9, 65536), "DEVICE RESET: the CD DMA it stopped wrote no memory after it");
}

/* ---- ct.idepair: a disk (master) and a CD (slave) on one channel ----
 * DEVICE RESET of the CD drops the CD's DMA only: the disk's transfer
 * that runs or waits for the engine beside it still completes (else the
 * disk stays BSY for good). */

/* PACKET READ(12) by DMA on the primary slave, left to the engine. */
static void slave_cd_read(uint32_t lba, uint32_t blocks)
{
    uint8_t st;

    cdb_set(0xa8, lba, blocks, 6, 4);
    outb(pri.cmd + 6, 0xb0);
    outb(pri.cmd + 1, 1); /* DMA */
    outb(pri.cmd + 7, 0xa0);
    st = wait_idle(&pri);
    check((st & (ST_DRQ | ST_ERR)) == ST_DRQ, "pair: PACKET to the slave CD");
    outsw(pri.cmd, cdb, 6);
}

static void slave_cd_reset(const char *what)
{
    uint8_t st;

    outb(pri.cmd + 6, 0xb0);
    outb(pri.cmd + 7, 0x08);
    st = wait_idle(&pri);
    check(!(st & (ST_BSY | ST_DRQ)) && signature_is(&pri, 0x14, 0xeb), what);
}

/* The master's DMA must end with its interrupt, no error. */
static int master_done(void)
{
    uint8_t bst = 0, st;

    outb(pri.cmd + 6, 0xe0);
    for (int i = 0; i < WAIT_LOOPS && !(bst & BM_INT); i++)
        bst = inb(pri.bm + 2);
    if (!(bst & BM_INT))
        return -1;
    st = wait_idle(&pri);
    bm_stop(&pri);
    inb(pri.cmd + 7);
    return (st & (ST_ERR | ST_DRQ)) || (bst & BM_ERR) ? -1 : 0;
}

static void pair_reset(uint32_t blocks)
{
    if (blocks < LONG_DMA_BYTES / 2048) {
        ifail("ct.idepair needs a CD of at least 16384 blocks");
        return;
    }
    channel_reset(&pri, 0, 0);
    /* the master's 32 MiB READ DMA EXT runs, the CD's read waits */
    prd_long();
    issue(&pri, 0, 65536, LONG_DMA_BYTES / 512, 1, 0, 0x25);
    bm_start(&pri, 1);
    let_dma_run(&pri);
    slave_cd_read(18, 4);
    slave_cd_reset("pair: DEVICE RESET of the CD while the disk's DMA runs");
    check(!master_done(), "pair: the disk's DMA completes after a DEVICE RESET of the CD");
    /* the CD's 32 MiB read runs, the master's read of sector 0 waits */
    prd_long();
    slave_cd_read(0, LONG_DMA_BYTES / 2048);
    bm_start(&pri, 1);
    let_dma_run(&pri);
    fill(buf, 0, 512);
    issue(&pri, 0, 0, 1, 0, 0, 0xc8);
    slave_cd_reset("pair: DEVICE RESET of the CD while its DMA runs and the disk's waits");
    check(!master_done() && all(buf, 0x11, 512),
          "pair: the disk's waiting DMA completes after a DEVICE RESET of the CD");
    say("pair: DEVICE RESET of the CD left the disk's DMA alone");
}

static void hostile_state(void)
{
    uint8_t st;

    outb(pri.cmd + 6, 0xe0);
    (void)inw(pri.cmd);
    (void)inl(pri.cmd);
    st = inb(pri.ctl);
    check(!(st & (ST_BSY | ST_DRQ)), "data port reads without DRQ change nothing");
    /* a second command while the first has DRQ is ignored */
    issue(&pri, 0, 2048, 1, 0, 0, 0x20);
    wait_idle(&pri);
    outb(pri.cmd + 7, 0xec);
    st = wait_idle(&pri);
    insw(pri.cmd, buf, 256);
    inb(pri.cmd + 7);
    check((st & ST_DRQ) && all(buf, 0x5a, 512), "a command written during DRQ is ignored");
    /* a write command left half done, then a reset */
    issue(&pri, 0, 8, 1, 0, 0, 0x30);
    wait_idle(&pri);
    outsw(pri.cmd, buf, 100);
    channel_reset(&pri, 0, 0);
    check(!pio_in(&pri, 0, 0x20, 2048, 1, 0, 1, buf) && all(buf, 0x5a, 512),
          "SRST ends a half-done transfer; the drive works after it");
}

static void hostile_cd(void)
{
    static const uint8_t garbage[12] = { 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

    check(packet_pio(garbage, buf, 64, 64, 0) == -1 && sense_is(5, 0x20),
          "a garbage packet: ILLEGAL REQUEST");
    cdb_set(0x28, 0xfffffff0u, 0xffff, 7, 2);
    check(packet_pio(cdb, buf, 65536, 65534, 0) == -1 && sense_is(5, 0x21),
          "READ(10) far past the end: LBA out of range");
    memset(cdb, 0, sizeof(cdb));
    check(packet_pio(cdb, buf, 0, 2, 0) == 0, "the CD still answers");
}

/* Byte count limits that leave no even chunk abort the PACKET command
 * at the ATA level (ABRT, no sense), as QEMU does for 0; an odd limit
 * gives even chunks and only the last one may be odd. */
static void hostile_cd_limits(void)
{
    unsigned chunks = 0;

    cdb_set(0x12, 0, 36, 4, 1);
    check(packet_pio(cdb, buf, 64, 1, 0) == -1 && cd_error == ER_ABRT && sense_is(0, 0),
          "byte count limit 1 on a 36-byte INQUIRY: ABRT, no sense");
    check(packet_pio(cdb, buf, 64, 0, 0) == -1 && cd_error == ER_ABRT,
          "byte count limit 0 on a PIO data command: ABRT");
    cdb_set(0x12, 0, 1, 4, 1);
    check(packet_pio(cdb, buf, 1, 1, 0) == 1 && buf[0] == 0x05,
          "byte count limit 1 on a 1-byte INQUIRY: one byte");
    cdb_set(0x12, 0, 36, 4, 1);
    check(packet_pio(cdb, buf, 36, 7, &chunks) == 36 && chunks == 6 && buf[0] == 0x05 &&
          buf[8] == 'C', "byte count limit 7: six 6-byte chunks");
    chunks = 0;
    cdb_set(0x12, 0, 35, 4, 1);
    check(packet_pio(cdb, buf, 35, 35, &chunks) == 35 && chunks == 1,
          "an odd transfer within the limit goes in one odd chunk");
    memset(cdb, 0, sizeof(cdb));
    check(packet_pio(cdb, buf, 0, 0, 0) == 0, "TEST UNIT READY takes a limit of 0");
}

/* ---- ct.dstress (dstress.c): DMA begun now and polled later, so that
 * the virtio-blk queues' requests run on their threads beside it ---- */

static int find_controller(void);

int ide_dma_begin(int write, uint32_t lba, unsigned count,
                  const struct ide_sg *sg, unsigned n)
{
    if (!n || n > 8192 || !count || count > 256 || (!pri.bm && find_controller()))
        return -1;
    for (unsigned i = 0; i < n; i++)
        prd_set(&prds[i], sg[i].addr, sg[i].len, i == n - 1);
    outb(pri.bm, 0);
    outb(pri.bm + 2, BM_ERR | BM_INT);
    outl(pri.bm + 4, (uint32_t)(uint64_t)prds);
    outb(pri.bm, write ? 0 : BM_TO_MEM);
    issue(&pri, 0, lba, count & 0xff, 0, 0, write ? 0xca : 0xc8);
    outb(pri.bm, (uint8_t)((write ? 0 : BM_TO_MEM) | BM_START));
    return 0;
}

int ide_dma_poll(void)
{
    int before = failures;
    uint8_t bst = inb(pri.bm + 2), st;

    if (!(bst & BM_INT))
        return 1;
    st = wait_idle(&pri);
    outb(pri.bm, 0);
    outb(pri.bm + 2, BM_ERR | BM_INT);
    inb(pri.cmd + 7);
    return (st & ST_ERR) || (bst & BM_ERR) || failures != before ? -1 : 0;
}

/* ---- entry ---- */

static int find_controller(void)
{
    uint32_t id = cfg_read(1, 0), class = cfg_read(1, 0x08);
    uint32_t bar4 = cfg_read(1, 0x20);

    if (id != 0x70108086) {
        ifail("no PIIX3 IDE function (8086:7010) at 00:01.1");
        return -1;
    }
    check((class >> 8) == 0x010180, "class 01 01, prog-if 80 (legacy, bus master)");
    check(cfg_read(1, 0x40) & 0x80008000u, "IDE decode enabled in 0x41 and 0x43");
    check(bar4 & 1, "BAR4 is an I/O BAR");
    pri.bm = (uint16_t)(bar4 & 0xfffc);
    sec.bm = (uint16_t)(pri.bm + 8);
    cfg_write(1, 0x04, 0x0005); /* I/O decoding, bus master */
    outb(pri.ctl, 0);
    outb(sec.ctl, 0);
    serial_puts("calf-test: ide: controller at 00:01.1, bus master at ");
    serial_put_hex(pri.bm);
    serial_puts("\n");
    return 0;
}

/* ct.idepat=SECTORS: ct.vpat's pattern (virtio-blk.c, read by
 * guest-tests/vpat-check.py) on the primary master through PIO, pass
 * after pass for ever: each 4 KiB read (READ SECTORS), checked to be
 * the previous pass, written (WRITE SECTORS, or WRITE MULTIPLE in even
 * passes), read back (READ MULTIPLE) and checked; the same serial lines
 * as ct.vpat ("calf-test: vpat pass P", "calf-test: vpat: bad ..."). */
static uint64_t pat_word(uint64_t pass, uint64_t s)
{
    return pass ? 0xC5ULL << 56 | pass << 24 | s : 0;
}

static int pat_is(uint64_t pass, uint64_t s)
{
    for (uint32_t i = 0; i < 4096; i += 8)
        if (*(uint64_t *)(buf + i) != pat_word(pass, s + i / 512))
            return 0;
    return 1;
}

static void pat_bad(const char *what, uint64_t pass, uint64_t s)
{
    serial_puts("calf-test: vpat: bad ");
    serial_puts(what);
    serial_puts(" in pass ");
    serial_put_dec(pass);
    serial_puts(" at sector ");
    serial_put_dec(s);
    serial_puts("\n");
}

static void __attribute__((noreturn)) pio_pattern(uint64_t sectors)
{
    channel_reset(&pri, 0, 0);
    if (nodata(&pri, 0, 0, 8, 0, 0, 0xc6) & ST_ERR)
        pat_bad("SET MULTIPLE", 0, 0);
    serial_puts("calf-test: vpat start\n");
    for (uint64_t pass = 1;; pass++) {
        for (uint64_t s = 0; s + 8 <= sectors; s += 8) {
            if (pio_in(&pri, 0, 0x20, s, 8, 0, 1, buf))
                pat_bad("read", pass, s);
            else if (!pat_is(pass - 1, s))
                pat_bad("old data", pass, s);
            for (uint32_t i = 0; i < 4096; i += 8)
                *(uint64_t *)(buf + i) = pat_word(pass, s + i / 512);
            if (pass % 2 ? pio_out(&pri, 0, 0x30, s, 8, 0, 1, buf)
                         : pio_out(&pri, 0, 0xc5, s, 8, 0, 8, buf))
                pat_bad("write", pass, s);
            fill(buf, 0xee, 4096);
            if (pio_in(&pri, 0, 0xc4, s, 8, 0, 8, buf))
                pat_bad("read back", pass, s);
            else if (!pat_is(pass, s))
                pat_bad("data read back", pass, s);
        }
        serial_puts("calf-test: vpat pass ");
        serial_put_dec(pass);
        serial_puts("\n");
    }
}

int ide_test(const char *cmdline)
{
    size_t len;
    const char *v;
    uint64_t size = 0, cd = 0;

    iobss_zero();
    if (find_controller())
        return failures;
    if ((v = cmdline_get(cmdline, "ct.idepat=", &len)))
        pio_pattern(parse_num(v, len, 10));
    peer = cmdline_get(cmdline, "ct.idepeer=", &len) != 0;
    if ((v = cmdline_get(cmdline, "ct.idesize=", &len)))
        size = parse_num(v, len, 10);
    if ((v = cmdline_get(cmdline, "ct.idecd=", &len)))
        cd = parse_num(v, len, 10);
    if (cmdline_get(cmdline, "ct.ide=", &len)) {
        /* the power-on state (also after a machine reset: ct.reset=1) */
        if (!identify(&pri, 0, 0xec)) {
            check((ident[59] & 0x1ff) == 0x110, "power-on state: MULTIPLE 16 in effect");
            check(peer || !(ident[63] & 0x0700), "power-on state: no DMA mode selected");
        }
        channel_reset(&pri, 0, 0);
        disk_identify(size);
        disk_pio();
        disk_dma();
        disk_misc(size);
        disk_irq();
        if (cmdline_get(cmdline, "ct.idebig=", &len))
            disk_big();
        nodata(&pri, 0, 0, 0, 0, 0, 0x90);
        check(inb(pri.cmd + 1) == 0x01 && signature_is(&pri, 0, 0),
              "EXECUTE DEVICE DIAGNOSTIC: passed, ATA signature");
        say("disk checks done");
    }
    if (cmdline_get(cmdline, "ct.idero=", &len))
        disk_readonly();
    if (cd)
        cdrom_test((uint32_t)cd);
    if ((v = cmdline_get(cmdline, "ct.idepair=", &len)))
        pair_reset((uint32_t)parse_num(v, len, 10));
    if (cmdline_get(cmdline, "ct.idehostile=", &len)) {
        hostile_dma();
        hostile_state();
        hostile_srst_dma();
        if (cd) {
            hostile_cd();
            hostile_cd_reset((uint32_t)cd);
            hostile_cd_limits();
        }
        say("hostile guest done");
    }
    serial_puts(failures ? "calf-test: ide: FAILED\n" : "calf-test: ide: ok\n");
    if ((v = cmdline_get(cmdline, "ct.idewatch=", &len)))
        cd_watch(len == 4 && v[0] == 'l' && v[1] == 'o');
    return failures;
}
