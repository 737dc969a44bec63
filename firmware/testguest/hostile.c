/* ct.hostile=1: garbage to the devices that a well-behaved test never
 * upsets: fw_cfg, PCI configuration space (every function), the 16550A,
 * the i8042 and the CMOS/RTC.  Each part does what a broken or malicious
 * driver could, puts back what the rest of the run needs, and then
 * checks that the device still answers sanely; the host side
 * (guest-tests/hostile.t) checks that calf neither crashed, hung nor
 * grew.  Every loop is short: ring 0 is emulated at ~2 M instructions/s
 * and each port access is a VM exit.  Prints "hostile: <part>: ok" per
 * part, or what went wrong; returns the failure count. */
#include "guest.h"

static int hfail(const char *part, const char *what)
{
    serial_puts("calf-test: hostile: ");
    serial_puts(part);
    serial_puts(": ");
    serial_puts(what);
    serial_puts("\n");
    return 1;
}

static void hok(const char *part)
{
    serial_puts("calf-test: hostile: ");
    serial_puts(part);
    serial_puts(": ok\n");
}

/* ---- fw_cfg (0x510 selector, 0x511 data, 0x514/0x518 DMA) ---- */

#define FWCFG_SEL  0x510
#define FWCFG_DATA 0x511
#define FWCFG_DMA  0x514

static void be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t be32_get(const volatile uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

static uint32_t bswap32(uint32_t v)
{
    return v >> 24 | (v >> 8 & 0xff00) | (v << 8 & 0xff0000) | v << 24;
}

/* A request block and a landing buffer, 16-byte aligned, in .bss. */
static volatile uint8_t fw_req[16] __attribute__((aligned(16)));
static volatile uint8_t fw_buf[64] __attribute__((aligned(16)));

/* One DMA request at req_gpa (the block at fw_req when 0); returns the
 * control word the device left there. */
static uint32_t fw_dma(uint32_t control, uint32_t len, uint64_t addr,
                       uint64_t req_gpa)
{
    uint64_t gpa = req_gpa ? req_gpa : (uint64_t)(uintptr_t)fw_req;

    be32_put((uint8_t *)fw_req, control);
    be32_put((uint8_t *)fw_req + 4, len);
    be32_put((uint8_t *)fw_req + 8, (uint32_t)(addr >> 32));
    be32_put((uint8_t *)fw_req + 12, (uint32_t)addr);
    __asm__ volatile("" ::: "memory");
    outl(FWCFG_DMA, bswap32((uint32_t)(gpa >> 32)));
    outl(FWCFG_DMA + 4, bswap32((uint32_t)gpa));
    __asm__ volatile("" ::: "memory");
    return be32_get(fw_req);
}

static int fwcfg_present(void)
{
    outw(FWCFG_SEL, 0);
    return inb(FWCFG_DATA) == 'Q' && inb(FWCFG_DATA) == 'E' &&
           inb(FWCFG_DATA) == 'M' && inb(FWCFG_DATA) == 'U';
}

static int hostile_fwcfg(void)
{
    static const uint16_t sels[] = { 0xffff, 0x7fff, 0x4019, 0x8000, 0xbfff,
                                     0x3fff, 0x0100, 0xc000 };
    int bad = 0;
    uint8_t any = 0;

    if (!fwcfg_present()) {
        /* Poke the ports anyway: nothing may answer or break. */
        outw(FWCFG_SEL, 0xffff);
        outl(FWCFG_DMA, 0xffffffffu);
        outl(FWCFG_DMA + 4, 0xfffffff0u);
        serial_puts("calf-test: hostile: fw_cfg: absent on this machine\n");
        return 0;
    }
    /* Selectors nobody defined read as zeros, however wide the read. */
    for (unsigned i = 0; i < sizeof(sels) / sizeof(sels[0]); i++) {
        outw(FWCFG_SEL, sels[i]);
        for (int j = 0; j < 8; j++)
            any |= inb(FWCFG_DATA);
        any |= (uint8_t)inl(FWCFG_DATA);
    }
    if (any)
        bad += hfail("fw_cfg", "an undefined selector reads non-zero");
    /* Past an item's end: the 4-byte signature, then zeros. */
    outw(FWCFG_SEL, 0);
    (void)inl(FWCFG_DATA);
    any = 0;
    for (int j = 0; j < 64; j++)
        any |= inb(FWCFG_DATA);
    if (any)
        bad += hfail("fw_cfg", "reading past an item's end is not zero");
    /* Byte and word writes to the selector and DMA ports; reads of the
     * selector; a high DMA half with no low half. */
    outb(FWCFG_SEL, 0x19);
    outb(FWCFG_SEL + 1, 0xff);
    (void)inw(FWCFG_SEL);
    outw(FWCFG_DMA, 0xffff);
    outb(FWCFG_DMA + 7, 0xff);
    outl(FWCFG_DMA, 0x12345678);
    /* DMA: wild addresses and lengths get the error bit, the request
     * block outside RAM is ignored, and nothing else moves. */
    if (!(fw_dma(0x00000002, 0xffffffffu, (uint64_t)(uintptr_t)fw_buf, 0) & 1))
        bad += hfail("fw_cfg", "a 4 GiB DMA read did not fail");
    if (!(fw_dma(0x00000002, (16u << 20) + 1, (uint64_t)(uintptr_t)fw_buf, 0) & 1))
        bad += hfail("fw_cfg", "a DMA read past 16 MiB did not fail");
    if (!(fw_dma(0x00000002, 64, 0xfffffffffffff000ull, 0) & 1))
        bad += hfail("fw_cfg", "a DMA read to 2^64 - 4 KiB did not fail");
    if (!(fw_dma(0x00000002, 4096, 0xffffff00ull, 0) & 1))
        bad += hfail("fw_cfg", "a DMA read across 4 GiB did not fail");
    if (!(fw_dma(0x00190010, 16, (uint64_t)(uintptr_t)fw_buf, 0) & 1))
        bad += hfail("fw_cfg", "a DMA write was not refused");
    if (fw_dma(0xffff0004, 0xffffffffu, 0, 0) & 1)
        bad += hfail("fw_cfg", "a 4 GiB skip on a garbage selector failed");
    (void)fw_dma(0xffffffffu, 0xffffffffu, 0xffffffffffffffffull, 0);
    (void)fw_dma(0x00000002, 16, 0, 0xfffffffffffffff8ull);
    (void)fw_dma(0x00000002, 16, 0, 0x00000000fffffff8ull);
    /* A good read still works after all that. */
    if (fw_dma(0x00000008 | 0x00000002, 4, (uint64_t)(uintptr_t)fw_buf, 0) ||
        fw_buf[0] != 'Q' || fw_buf[3] != 'U')
        bad += hfail("fw_cfg", "the signature no longer reads through DMA");
    if (!bad)
        hok("fw_cfg");
    return bad;
}

/* ---- PCI configuration space ---- */

static void cfg_addr(unsigned devfn, unsigned off)
{
    outl(0xcf8, 0x80000000u | devfn << 8 | (off & 0xfc));
}

static uint32_t cfg_rd(unsigned devfn, unsigned off)
{
    cfg_addr(devfn, off);
    return inl(0xcfc);
}

static void cfg_wr(unsigned devfn, unsigned off, uint32_t v)
{
    cfg_addr(devfn, off);
    outl(0xcfc, v);
}

/* The garbage for one function: every dword of its configuration space
 * with three patterns, bytes and words at every lane, reads that run
 * off the end; then everything back as it was (the command register
 * last, so no BAR decodes at a garbage address after). */
static void pci_fn_garbage(unsigned devfn)
{
    static const uint32_t pat[] = { 0xffffffffu, 0, 0xa5a5a5a5u };
    uint32_t save[64];

    for (unsigned o = 0; o < 256; o += 4)
        save[o / 4] = cfg_rd(devfn, o);
    for (unsigned o = 4; o < 256; o += 4)
        for (unsigned p = 0; p < 3; p++)
            cfg_wr(devfn, o, pat[p]);
    for (unsigned lane = 1; lane < 4; lane++) {
        cfg_addr(devfn, 0x40);
        outb((uint16_t)(0xcfc + lane), 0x5a);
        outw((uint16_t)(0xcfc + (lane & 2)), 0x5a5a);
        /* off + size past 256: dropped, reads all ones */
        cfg_addr(devfn, 0xfc);
        outl((uint16_t)(0xcfc + lane), 0xffffffffu);
        (void)inl((uint16_t)(0xcfc + lane));
        (void)inw((uint16_t)(0xcfc + lane));
    }
    for (unsigned o = 0x3c; o >= 8; o -= 4)
        cfg_wr(devfn, o, save[o / 4]);
    for (unsigned o = 0x40; o < 256; o += 4)
        cfg_wr(devfn, o, save[o / 4]);
    cfg_wr(devfn, 4, save[1] & 0xffff);
}

/* A memory BAR of devfn moved onto RAM, onto another BAR, to all ones;
 * an I/O BAR onto COM1.  Restored after. */
static void pci_bar_games(unsigned devfn, uint32_t other_bar)
{
    uint32_t cmd = cfg_rd(devfn, 4) & 0xffff;

    for (unsigned b = 0; b < 6; b++) {
        unsigned off = 0x10 + 4 * b;
        uint32_t old = cfg_rd(devfn, off);

        if (!old)
            continue;
        if (old & 1) {
            cfg_wr(devfn, off, 0x3f8 | 1);  /* over COM1: COM1 wins */
            cfg_wr(devfn, 4, cmd | 1);
            (void)inb(0x3f8 + 5);
        } else {
            cfg_wr(devfn, 4, cmd | 2);
            cfg_wr(devfn, off, 0x08000000); /* 128 MiB: in RAM */
            cfg_wr(devfn, off, other_bar & ~0xfu);
            cfg_wr(devfn, off, 0xffffffffu);
            cfg_wr(devfn, off, 0xfee00000u); /* the local APIC */
        }
        cfg_wr(devfn, 4, cmd);
        cfg_wr(devfn, off, old);
    }
    cfg_wr(devfn, 4, cmd);
}

/* The MSI-X capability of devfn, or 0. */
static unsigned msix_cap(unsigned devfn)
{
    unsigned p = cfg_rd(devfn, 0x34) & 0xfc;

    for (int n = 0; p >= 0x40 && n < 48; n++) {
        uint32_t h = cfg_rd(devfn, p);

        if ((h & 0xff) == 0x11)
            return p;
        p = (h >> 8) & 0xfc;
    }
    return 0;
}

/* MSI-X enabled with the table untouched, then the table and PBA full
 * of garbage (addresses outside the APIC window, vectors below 16),
 * accesses of every width and alignment, some past the table.  Every
 * entry stays masked, so no garbage interrupt is actually delivered
 * to this vCPU (an INIT or SMI through an entry would end the guest). */
static int pci_msix_games(unsigned devfn, unsigned cap)
{
    uint32_t ctl = cfg_rd(devfn, cap), tbl = cfg_rd(devfn, cap + 4);
    uint32_t pba = cfg_rd(devfn, cap + 8), cmd = cfg_rd(devfn, 4) & 0xffff;
    unsigned n = ((ctl >> 16) & 0x7ff) + 1, bir = tbl & 7;
    uint32_t bar = cfg_rd(devfn, 0x10 + 4 * bir) & ~0xfu;
    volatile uint32_t *t;
    volatile uint8_t *b;
    int bad = 0;

    cfg_wr(devfn, cap, ctl | 0x80000000u);   /* enable, no table yet */
    cfg_wr(devfn, cap, ctl | 0xc0000000u);   /* and function mask */
    if (bir > 5 || !bar)
        return hfail("pci", "MSI-X table BAR not set");
    cfg_wr(devfn, 4, cmd | 2);
    t = (volatile uint32_t *)(uintptr_t)(bar + (tbl & ~7u));
    b = (volatile uint8_t *)t;
    for (unsigned v = 0; v < n; v++) {
        t[4 * v + 3] = 1;                    /* keep it masked */
        t[4 * v] = 0xdeadbeef;
        t[4 * v + 1] = 0xffffffff;
        t[4 * v + 2] = 0x00000500 | v;        /* INIT mode, vector < 16 */
    }
    b[1] = 0xff;                             /* byte and word writes */
    *(volatile uint16_t *)(b + 2) = 0xffff;
    *(volatile uint64_t *)(b + 8) = ~0ull;
    (void)*(volatile uint32_t *)(b + 16 * n);    /* past the table */
    *(volatile uint32_t *)(b + 16 * n) = 0;
    (void)*(volatile uint32_t *)(uintptr_t)(bar + (pba & ~7u) + 2);
    *(volatile uint32_t *)(uintptr_t)(bar + (pba & ~7u)) = 0xffffffff;
    if (!(t[3] & 1))
        bad += hfail("pci", "an MSI-X entry lost its mask bit");
    if (*(volatile uint32_t *)(uintptr_t)(bar + (pba & ~7u)))
        bad += hfail("pci", "the PBA took a write");
    cfg_wr(devfn, cap, ctl | 0x80000000u);   /* enabled, entries masked */
    cfg_wr(devfn, cap, ctl & ~0xc0000000u);
    for (unsigned v = 0; v < n; v++) {
        t[4 * v] = 0;
        t[4 * v + 1] = 0;
        t[4 * v + 2] = 0;
    }
    cfg_wr(devfn, 4, cmd);
    return bad;
}

static int hostile_pci(void)
{
    unsigned fns = 0, msix = 0;
    uint32_t vga_bar = 0;
    int bad = 0;

    /* The address register: reserved bits, other buses, disabled,
     * bytes and words; a byte at 0xCF9 without the reset bit. */
    outl(0xcf8, 0x00000000u);
    (void)inl(0xcfc);
    outl(0xcf8, 0x80ff0003u);                /* bus 255, low bits set */
    if (inl(0xcfc) != 0xffffffffu)
        bad += hfail("pci", "a function on bus 255 answers");
    outl(0xcfc, 0);
    outl(0xcf8, 0x7fffffffu);
    outl(0xcfc, 0);
    outb(0xcf8, 0xff);
    outw(0xcfa, 0xffff);
    (void)inb(0xcf9);
    outb(0xcf9, 0x02);                       /* SYS_RST only: no reset */
    outb(0xcf9, 0x00);
    for (unsigned devfn = 0; devfn < 256; devfn++) {
        uint32_t id = cfg_rd(devfn, 0);

        if ((id & 0xffff) == 0xffff) {
            if ((devfn & 7) == 0)
                devfn += 7;                  /* no function 0: none */
            continue;
        }
        fns++;
        if (id == 0x11111234u)
            vga_bar = cfg_rd(devfn, 0x10);
        pci_fn_garbage(devfn);
        if (cfg_rd(devfn, 0) != id)
            bad += hfail("pci", "the vendor/device ID changed");
    }
    for (unsigned devfn = 0; devfn < 256; devfn++) {
        uint32_t id = cfg_rd(devfn, 0);
        unsigned cap;

        if ((id & 0xffff) == 0xffff)
            continue;
        pci_bar_games(devfn, vga_bar);
        if ((cap = msix_cap(devfn))) {
            bad += pci_msix_games(devfn, cap);
            msix++;
        }
    }
    serial_puts("calf-test: hostile: pci: ");
    serial_put_dec(fns);
    serial_puts(" functions, ");
    serial_put_dec(msix);
    serial_puts(" with MSI-X\n");
    if (!fns)
        bad += hfail("pci", "no function found");
    if (!bad)
        hok("pci");
    return bad;
}

/* ---- the 16550A at COM1 ---- */

#define COM1 0x3f8

/* COM1 as serial_init() expects it: 8N1, divisor 1, FIFOs on and empty,
 * no interrupts, no loopback. */
static void uart_restore(void)
{
    outb(COM1 + 3, 0x83);
    outb(COM1 + 0, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 4, 0x03);
    outb(COM1 + 2, 0x07);
    for (int i = 0; i < 32 && (inb(COM1 + 5) & 1); i++)
        (void)inb(COM1);
    serial_init();
}

static int hostile_uart(void)
{
    unsigned got = 0;
    int bad = 0, dr;
    uint8_t lsr;

    /* Nothing is printed here until uart_restore(): the console is the
     * device under attack. */
    outb(COM1 + 4, 0x10);                    /* loopback: THR -> RBR */
    for (unsigned r = 1; r < 8; r++)         /* every register, 3 ways */
        if (r != 4) {
            outb((uint16_t)(COM1 + r), 0xff);
            outb((uint16_t)(COM1 + r), 0x00);
            outb((uint16_t)(COM1 + r), 0x5a);
        }
    outb(COM1 + 4, 0xff);                    /* reserved MCR bits too */
    outb(COM1 + 3, 0xff);                    /* DLAB and garbage framing */
    outb(COM1 + 0, 0x00);                    /* divisor 0 */
    outb(COM1 + 1, 0x00);
    (void)inb(COM1 + 0);
    (void)inb(COM1 + 1);
    outb(COM1 + 3, 0x03);
    outw(COM1, 0xffff);                      /* wide accesses */
    outl(COM1 + 4, 0x10101010u);
    (void)inl(COM1);
    outb(COM1 + 2, 0xff);                    /* FCR: every bit */
    outb(COM1 + 1, 0x0f);                    /* every interrupt... */
    (void)inb(COM1 + 2);
    outb(COM1 + 1, 0x00);                    /* ...and off again */
    /* 40 bytes into a 16-byte FIFO in loopback: the rest overrun. */
    outb(COM1 + 2, 0x07);
    outb(COM1 + 4, 0x10);
    for (unsigned i = 0; i < 40; i++)
        outb(COM1, (uint8_t)('a' + i % 26));
    for (; got < 64 && (inb(COM1 + 5) & 1); got++)
        (void)inb(COM1);
    lsr = inb(COM1 + 5);
    /* And one byte still loops back as itself. */
    outb(COM1, 0x5a);
    dr = (inb(COM1 + 5) & 1) && inb(COM1) == 0x5a;
    uart_restore();
    serial_puts("calf-test: hostile: uart: ");
    serial_put_dec(got);
    serial_puts(" of 40 looped-back bytes kept\n");
    if (got != 16)
        bad += hfail("uart", "the receive FIFO did not hold exactly 16 bytes");
    if (!(lsr & 0x20))
        bad += hfail("uart", "THRE clear after the garbage");
    if (!dr)
        bad += hfail("uart", "loopback no longer returns a byte");
    if (!bad)
        hok("uart");
    return bad;
}

/* ---- the i8042 ---- */

static int kbc_wait_in(void)
{
    for (int i = 0; i < 100; i++)
        if (!(inb(0x64) & 0x02))
            return 1;
    return 0;
}

static unsigned kbc_drain(void)
{
    unsigned n = 0;

    while (n < 200 && (inb(0x64) & 0x01)) {
        (void)inb(0x60);
        n++;
    }
    return n;
}

static int kbc_read(void)
{
    for (int i = 0; i < 100; i++)
        if (inb(0x64) & 0x01)
            return inb(0x60);
    return -1;
}

/* Whether controller command c pulses the CPU reset line (F0-FF with
 * bit 0 clear): the one thing a hostile guest may not send here, since
 * it ends this boot by design. */
static int kbc_resets(unsigned c)
{
    return c >= 0xf0 && !(c & 1);
}

static int hostile_i8042(void)
{
    unsigned most = 0, n;
    int bad = 0, ctr, v;

    kbc_drain();
    outb(0x64, 0x20);
    ctr = kbc_read();
    for (unsigned c = 0; c < 256; c++) {     /* every controller command */
        if (kbc_resets(c) || c == 0xd1 || c == 0x60)
            continue;
        kbc_wait_in();
        outb(0x64, (uint8_t)c);
        if (c >= 0xd2 && c <= 0xd4)
            outb(0x60, (uint8_t)c);          /* their data byte */
        n = kbc_drain();
        most = n > most ? n : most;
    }
    /* The output port: every value with the reset line (bit 0) high. */
    for (unsigned v8 = 1; v8 < 256; v8 += 2) {
        outb(0x64, 0xd1);
        outb(0x60, (uint8_t)v8);
    }
    /* Command bytes with every bit pattern, then the original back. */
    for (unsigned b = 0; b < 256; b += 0x11) {
        outb(0x64, 0x60);
        outb(0x60, (uint8_t)b);
        kbc_drain();
    }
    /* Every keyboard command and argument byte. */
    for (unsigned c = 0; c < 256; c++) {
        outb(0x60, (uint8_t)c);
        kbc_drain();
    }
    /* 200 bytes queued with nobody reading: the buffer stays bounded. */
    for (unsigned i = 0; i < 200; i++) {
        outb(0x64, 0xd2);
        outb(0x60, (uint8_t)i);
    }
    n = kbc_drain();
    outb(0x64, 0x60);
    outb(0x60, ctr >= 0 ? (uint8_t)ctr : 0x45);
    kbc_drain();
    outb(0x60, 0xff);                        /* keyboard reset: defaults */
    kbc_drain();
    outb(0x64, 0xaa);
    v = kbc_read();
    serial_puts("calf-test: hostile: i8042: ");
    serial_put_dec(n);
    serial_puts(" of 200 unread bytes kept\n");
    if (n == 0 || n > 64)
        bad += hfail("i8042", "the output buffer is not bounded");
    if (v != 0x55)
        bad += hfail("i8042", "self test no longer answers 0x55");
    if (!bad)
        hok("i8042");
    return bad;
}

/* ---- the CMOS/RTC ---- */

static uint8_t cmos_rd(unsigned idx)
{
    outb(0x70, (uint8_t)idx);
    return inb(0x71);
}

static void cmos_wr(unsigned idx, uint8_t v)
{
    outb(0x70, (uint8_t)idx);
    outb(0x71, v);
}

static int bcd_ok(uint8_t v, unsigned max)
{
    return (v & 0x0f) <= 9 && (v >> 4) <= 9 &&
           (unsigned)((v >> 4) * 10 + (v & 0x0f)) <= max;
}

/* Every clock register reads as valid BCD in its range. */
static int rtc_sane(const char *after)
{
    static const struct { uint8_t reg; uint8_t max; } r[] = {
        { 0x00, 59 }, { 0x02, 59 }, { 0x04, 23 }, { 0x06, 7 },
        { 0x07, 31 }, { 0x08, 12 }, { 0x09, 99 }, { 0x32, 99 },
    };

    for (unsigned i = 0; i < sizeof(r) / sizeof(r[0]); i++)
        if (!bcd_ok(cmos_rd(r[i].reg), r[i].max)) {
            hfail("rtc", after);
            return 1;
        }
    return 0;
}

static int hostile_rtc(void)
{
    static const uint8_t junk[] = { 0xff, 0xaa, 0x00, 0x9a, 0xf9, 0x80 };
    uint8_t save[128], b;
    int bad = 0;

    for (unsigned i = 0; i < 128; i++)
        save[i] = cmos_rd(i);
    b = save[0x0b];
    /* Every index through both NMI-mask halves, read and written; the
     * clock registers and A-D get their turn below. */
    for (unsigned i = 0; i < 256; i++) {
        unsigned r = i & 0x7f;

        (void)cmos_rd(i);
        if (r > 0x0d && r != 0x32)
            cmos_wr(i, (uint8_t)~i);
    }
    (void)inl(0x70);
    outw(0x70, 0xffff);
    /* Bad BCD and out-of-range values into every clock register, in BCD
     * and binary, 12- and 24-hour mode. */
    for (unsigned mode = 0; mode < 4; mode++) {
        cmos_wr(0x0b, (uint8_t)((mode & 1 ? 0x04 : 0) | (mode & 2 ? 0x02 : 0)));
        for (unsigned j = 0; j < sizeof(junk); j++)
            for (unsigned reg = 0; reg <= 9; reg++)
                if (reg != 1 && reg != 3 && reg != 5)
                    cmos_wr(reg, junk[j]);
    }
    cmos_wr(0x0b, 0x02);
    bad += rtc_sane("a clock register is not valid BCD after garbage");
    /* The largest year, then past it: clamped to 9999. */
    cmos_wr(0x09, 0x99);
    cmos_wr(0x08, 0x12);
    cmos_wr(0x32, 0x99);
    for (int k = 0; k < 3; k++)
        cmos_wr(0x09, 0x99);
    cmos_wr(0x0b, 0x06);                     /* binary: year 255 */
    cmos_wr(0x09, 0xff);
    cmos_wr(0x08, 0xff);
    cmos_wr(0x0b, 0x02);
    bad += rtc_sane("a clock register is not valid BCD at a huge year");
    /* The periodic interrupt at its fastest rate, on and off again;
     * registers C and D (read-only) written. */
    cmos_wr(0x0a, 0x23);
    cmos_wr(0x0b, 0x42);
    (void)cmos_rd(0x0c);
    cmos_wr(0x0c, 0xff);
    cmos_wr(0x0d, 0x00);
    cmos_wr(0x0a, 0xff);
    cmos_wr(0x0a, 0x2f);
    cmos_wr(0x0b, b & ~0x70);
    (void)cmos_rd(0x0c);
    if (cmos_rd(0x0d) != 0x80)
        bad += hfail("rtc", "register D took a write");
    /* The CMOS bytes back, the clock at a sane year again. */
    for (unsigned i = 0x0e; i < 128; i++)
        if (i != 0x32)
            cmos_wr(i, save[i]);
    cmos_wr(0x0a, save[0x0a]);
    cmos_wr(0x32, 0x20);
    cmos_wr(0x09, save[0x09]);
    outb(0x70, 0x0d);                        /* index on a harmless one */
    if (!bad)
        hok("rtc");
    return bad;
}

int hostile_test(void)
{
    int bad = 0;

    serial_puts("calf-test: hostile: start\n");
    bad += hostile_uart();
    bad += hostile_rtc();
    bad += hostile_i8042();
    bad += hostile_fwcfg();
    bad += hostile_pci();
    serial_puts(bad ? "calf-test: hostile: FAIL\n" : "calf-test: hostile: survived\n");
    return bad;
}
