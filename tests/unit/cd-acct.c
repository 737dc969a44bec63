/* The ATAPI CD's request accounting and sense, against QEMU 7.2's
 * (hw/ide/atapi.c), on the real bus without a VM: a guest's PIO and
 * DMA READs of a patterned image counted as QEMU counts them, errors
 * and UNIT ATTENTION as QEMU reports them.  TAP on stdout. */
#include "tests/fuzz/fuzz-dev.h"

#include <pthread.h>
#include <stdatomic.h>

#include "devices/devices.h"
#include "devices/disk.h"
#include "devices/ide/ide.h"
#include "devices/pci.h"

static int fz_harness_op(struct bus *b, unsigned op, struct fz *f)
{
    (void)b; (void)op; (void)f;
    return 0;
}
static void fz_settle(struct bus *b) { (void)b; }

#define BLOCKS 96
#define BAD_LBA 40 /* blkdebug fails its reads */
#define SLOT 2     /* secondary master */

static struct bus *bus;
static struct ide *ide;
static struct disk_stats st;
static int t_n, t_fail;
static uint8_t data[65536];
static unsigned got;

static void ok(int cond, const char *what)
{
    t_n++;
    if (!cond)
        t_fail++;
    printf("%sok %d - %s\n", cond ? "" : "not ", t_n, what);
}

static void outb(uint16_t port, uint8_t v)
{
    uint32_t w = v;
    fz_pio(bus, port, 1, &w, true);
}
static uint8_t inb(uint16_t port)
{
    uint32_t w = 0;
    fz_pio(bus, port, 1, &w, false);
    return (uint8_t)w;
}

static uint8_t wait_not_busy(void)
{
    for (long i = 0; i < 10000000; i++) {
        uint8_t s = inb(0x376);
        if (!(s & 0x80))
            return s;
    }
    printf("Bail out! the drive stays busy\n");
    exit(1);
}

/* One PACKET command by PIO with byte count limit `limit`: its data in
 * data[] (got bytes); returns the final status, *err the error register. */
static uint8_t packet(uint16_t limit, const uint8_t *cdb, uint8_t *err)
{
    uint8_t s;

    got = 0;
    outb(0x176, 0x00);
    outb(0x171, 0);
    outb(0x174, (uint8_t)limit);
    outb(0x175, (uint8_t)(limit >> 8));
    outb(0x177, 0xa0);
    wait_not_busy();
    for (int i = 0; i < 12; i += 2) {
        uint32_t w = (uint32_t)(cdb[i] | cdb[i + 1] << 8);
        fz_pio(bus, 0x170, 2, &w, true);
    }
    for (;;) {
        s = wait_not_busy();
        if (!(s & 0x08))
            break;
        unsigned n = inb(0x174) | inb(0x175) << 8;
        for (unsigned i = 0; i < (n + 1) / 2; i++) {
            uint32_t w = 0;
            fz_pio(bus, 0x170, 2, &w, false);
            if (got + 2 <= sizeof(data)) {
                data[got] = (uint8_t)w;
                data[got + 1] = (uint8_t)(w >> 8);
            }
            got += 2;
        }
    }
    *err = inb(0x171);
    inb(0x177);
    return s;
}

static void read10(uint8_t *cdb, uint32_t lba, uint16_t n)
{
    memset(cdb, 0, 12);
    cdb[0] = 0x28;
    cdb[2] = (uint8_t)(lba >> 24);
    cdb[3] = (uint8_t)(lba >> 16);
    cdb[4] = (uint8_t)(lba >> 8);
    cdb[5] = (uint8_t)lba;
    cdb[7] = (uint8_t)(n >> 8);
    cdb[8] = (uint8_t)n;
}

/* The guest closes the tray (START STOP UNIT, load) as fast as it can. */
static atomic_bool stop;
static void *closer(void *arg)
{
    static const uint8_t load[12] = { 0x1b, 0, 0, 0, 0x03 };
    uint8_t e;

    (void)arg;
    while (!atomic_load(&stop))
        packet(0xfffe, load, &e);
    return NULL;
}

/* What QMP eject does (vmm/qmp-drive.c): the tray open and the disc out
 * in one step, whatever the guest does meanwhile. */
static int eject_now(void)
{
    return ide_medium_change(ide, SLOT, true, NULL, NULL, false);
}

static uint64_t ld(_Atomic uint64_t *v) { return atomic_load(v); }

int main(int argc, char **argv)
{
    const char *img, *conf, *other;
    char spec[400];
    struct ide_config c;
    struct disk_opts o;
    struct pci *pci = NULL;
    unsigned bdfs[8], nb;
    uint8_t cdb[12], s, e;
    bool pattern = true;

    if (argc != 4) {
        fprintf(stderr, "usage: cd-acct QCOW2 BLKDEBUG-CONF OTHER-ISO\n");
        return 2;
    }
    img = argv[1];
    conf = argv[2];
    other = argv[3];
    disk_stats_init(&st);
    bus = fz_bus_create(false);
    memset(&c, 0, sizeof(c));
    snprintf(spec, sizeof(spec),
             "blkdebug:%s:%s,format=qcow2,if=ide,index=2,media=cdrom", conf, img);
    memset(&o, 0, sizeof(o));
    if (disk_parse(spec, &o))
        abort();
    o.stats = &st;
    if (ide_config_add(&c, &o) < 0)
        abort();
    if (pci_create(bus, 0xe0000000ULL, &pci) || piix3_create(pci, 1, bus, NULL) ||
        ide_create(pci, 1, 1, bus, &c, &ide))
        abort();
    ide_config_free(&c);
    nb = fz_pci_scan(bus, bdfs, 8);
    fz_pci_enable(bus, bdfs, nb);

    /* 1. 16 blocks in chunks of 32766 bytes: block 16 straddles two */
    read10(cdb, 0, 16);
    s = packet(0x7ffe, cdb, &e);
    for (unsigned i = 0; i < 16 * 2048; i++)
        pattern = pattern && data[i] == i / 2048 + 1;
    ok(!(s & 1) && got == 16 * 2048 && pattern,
       "PIO READ(10) of 16 blocks in odd chunks reads the image");
    ok(ld(&st.ops[DISK_ACCT_READ]) == 16 && ld(&st.bytes[DISK_ACCT_READ]) == 32768,
       "counted as QEMU: 16 reads, 32768 bytes");
    printf("# rd_operations %llu rd_bytes %llu\n",
           (unsigned long long)ld(&st.ops[DISK_ACCT_READ]),
           (unsigned long long)ld(&st.bytes[DISK_ACCT_READ]));

    /* 2. a failed PIO read: counted failed, no BLOCK_IO_ERROR (QEMU's
     * PIO path reports it to the guest only) */
    {
        struct disk_event ev;
        uint64_t ops = ld(&st.ops[DISK_ACCT_READ]);

        read10(cdb, BAD_LBA, 1);
        s = packet(0xfffe, cdb, &e);
        ok((s & 1) && got == 0, "PIO READ(10) of the failing block: an error");
        ok(ld(&st.failed[DISK_ACCT_READ]) == 1 &&
               ld(&st.ops[DISK_ACCT_READ]) == ops,
           "counted one failed read");
        ok(!disk_event_pop(&st, &ev), "no BLOCK_IO_ERROR for a PIO read");
    }

    /* 3. READ past the end: refused, not counted invalid; of 0 blocks
     * anywhere: done, before the range check (QEMU's cmd_read) */
    read10(cdb, BLOCKS, 1);
    s = packet(0xfffe, cdb, &e);
    ok((s & 1) && e >> 4 == 5, "READ(10) past the end: ILLEGAL REQUEST");
    read10(cdb, BLOCKS + 100, 0);
    s = packet(0xfffe, cdb, &e);
    ok(!(s & 1) && got == 0, "READ(10) of 0 blocks past the end: done");
    ok(ld(&st.invalid[DISK_ACCT_READ]) == 0, "neither counted invalid");

    /* 4. the monitor swaps the disc: TEST UNIT READY says "no disc",
     * then UNIT ATTENTION; the commands allowed under it (GET EVENT
     * STATUS NOTIFICATION, INQUIRY, GET CONFIGURATION) leave it pending,
     * only REQUEST SENSE takes it (QEMU's ALLOW_UA commands) */
    {
        static const uint8_t tur[12] = { 0x00 };
        static const uint8_t gesn[12] = { 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8 };
        static const uint8_t inq[12] = { 0x12, 0, 0, 0, 36 };
        static const uint8_t gc[12] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 8 };
        static const uint8_t rs[12] = { 0x03, 0, 0, 0, 18 };
        char *ospec = disk_cdrom_spec(other);
        struct disk_opts oo;
        BlockDriverState *bs;
        uint8_t e2, e3;

        if (!ospec || disk_parse(ospec, &oo))
            abort();
        oo.stats = &st;
        bs = disk_open(&oo);
        disk_opts_free(&oo);
        free(ospec);
        if (!bs || ide_tray_open(ide, SLOT, true) ||
            ide_medium_set(ide, SLOT, bs, other) || ide_tray_close(ide, SLOT))
            abort();
        s = packet(0xfffe, tur, &e);
        ok((s & 1) && e >> 4 == 2, "after the swap: NOT READY");
        s = packet(0xfffe, tur, &e);
        ok((s & 1) && e >> 4 == 6, "then UNIT ATTENTION");
        s = packet(0xfffe, gesn, &e);
        ok(!(s & 1) && got >= 8 && data[4] == 0x02,
           "GET EVENT STATUS NOTIFICATION runs under it: new media");
        s = packet(0xfffe, inq, &e2);
        s |= packet(0xfffe, gc, &e3);
        ok(!(s & 1), "INQUIRY and GET CONFIGURATION run under it");
        s = packet(0xfffe, tur, &e);
        ok((s & 1) && e >> 4 == 6, "UNIT ATTENTION still pending after them");
        s = packet(0xfffe, rs, &e);
        ok(!(s & 1) && got >= 14 && data[2] == 6 && data[12] == 0x28,
           "REQUEST SENSE: UNIT ATTENTION, medium may have changed");
        s = packet(0xfffe, tur, &e);
        ok(!(s & 1), "then the drive is ready");
    }

    /* 5. eject while the guest keeps closing the tray: every one works
     * (QEMU's is one step under its big lock) */
    {
        pthread_t t;
        int bad = 0, n;

        pthread_create(&t, NULL, closer, NULL);
        for (n = 0; n < 3000 && !bad; n++)
            bad = eject_now();
        atomic_store(&stop, true);
        pthread_join(t, NULL);
        printf("# %d ejects, the last %d\n", n, bad);
        ok(!bad, "eject while the guest closes the tray: never EBUSY");
    }

    /* SECTIONS */

    printf("1..%d\n", t_n);
    return t_fail != 0;
}
