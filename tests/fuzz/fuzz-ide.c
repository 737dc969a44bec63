/* libFuzzer harness: the PIIX3 IDE function (devices/ide*.c): task file
 * and control registers, ATA commands in PIO and DMA, ATAPI PACKET
 * commands, bus-master DMA with PRD tables in guest RAM, SRST and
 * machine reset, over three drives: a raw disk (primary master), a qcow2
 * disk (primary slave) and a raw CD image (secondary master), each a
 * small file in a temporary directory, put back to its first contents
 * before every input.  The input is a byte program (fuzz-dev.h); the
 * harness's own operations:
 *   9   an ATA command: channel/drive, feature, count, LBA (with the
 *       previous-content HOB bytes), command
 *   10  PIO data: channel, direction, words (up to 32768), seed
 *   11  a PRD table: channel, table address, entries (address, count,
 *       EOT), then the bus-master start bit with a direction: a doorbell
 *   12  an ATAPI packet: channel/drive, DMA bit, byte count limit, the
 *       12 CDB bytes through the data port
 *   13  the monitor at the CD's tray (QMP eject, blockdev-change-medium):
 *       a byte: bits 0-1 open the tray / take the disc out / put in a
 *       second image / close the tray, 2 force, 3 close after, 4 start
 *       the secondary bus master (read) first and change at once, while
 *       its transfer runs
 * DMA runs on the channel's own thread: after every operation the
 * harness waits until no transfer is running (fz_settle), so a replay
 * does what the fuzzer did. */
#include "tests/fuzz/fuzz-dev.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "block/block.h"
#include "devices/devices.h"
#include "devices/disk.h"
#include "devices/ide/ide-int.h"
#include "devices/ide/ide.h"
#include "tests/fuzz/fuzz-hooks.h"
#include "devices/pci.h"

#define IDE_DEVFN 0x09 /* 00:01.1 */

static const uint16_t ide_ports[][2] = {
    { 0x1f0, 8 }, { 0x3f6, 1 }, { 0x170, 8 }, { 0x376, 1 },
};

static char dir[256], path_raw[300], path_qcow2[300], path_cd[300], path_cd2[300];
static struct ide *fz_ide;
static uint8_t *pristine_qcow2;
static size_t pristine_qcow2_len;

#define RAW_SIZE (256 << 10)
#define CD_SIZE  (64 * 2048)

static void images_cleanup(void)
{
    unlink(path_raw);
    unlink(path_qcow2);
    unlink(path_cd);
    unlink(path_cd2);
    rmdir(dir);
}

/* The images, made once: the qcow2 one by the block layer, with some
 * clusters allocated, then kept in memory to be put back. */
static void images_init(void)
{
    fz_scratch_dir(dir, sizeof(dir), "fuzz-ide");
    atexit(images_cleanup);
    snprintf(path_raw, sizeof(path_raw), "%s/disk.raw", dir);
    snprintf(path_qcow2, sizeof(path_qcow2), "%s/disk.qcow2", dir);
    snprintf(path_cd, sizeof(path_cd), "%s/cd.iso", dir);
    snprintf(path_cd2, sizeof(path_cd2), "%s/cd2.iso", dir);
    fz_pristine_qcow2(path_qcow2, 1 << 20, 128 << 10, 3, &pristine_qcow2, &pristine_qcow2_len);
}

static void images_reset(void)
{
    static uint8_t raw[RAW_SIZE], cd[CD_SIZE];

    if (!raw[1]) {
        fill_pattern(raw, sizeof(raw), 1);
        fill_pattern(cd, sizeof(cd), 2);
    }
    write_file(path_raw, raw, sizeof(raw));
    write_file(path_cd, cd, sizeof(cd));
    write_file(path_cd2, cd, sizeof(cd) / 2);
    write_file(path_qcow2, pristine_qcow2, pristine_qcow2_len);
}

static void fz_settle(struct bus *bus)
{
    (void)bus;
    for (int c = 0; c < 2; c++) {
        struct ide_channel *ch = fuzz_pio_opaque(c ? 0x170 : 0x1f0);

        if (!ch)
            continue;
        pthread_mutex_lock(&ch->lock);
        while (ch->dma_running)
            pthread_cond_wait(&ch->cond, &ch->lock);
        pthread_mutex_unlock(&ch->lock);
    }
}

static void outb(struct bus *bus, uint16_t port, uint8_t v)
{
    uint32_t w = v;

    fz_pio(bus, port, 1, &w, true);
}

/* Operation 13: what the monitor's commands do to the CD (slot 2). */
static void media_op(uint8_t how)
{
    bool force = how & 4, close = how & 8;
    BlockDriverState *bs = NULL;

    switch (how & 3) {
    case 0:
        ide_tray_open(fz_ide, 2, force);
        break;
    case 1:
        ide_medium_change(fz_ide, 2, force, NULL, NULL, close);
        break;
    case 2: {
        char *spec = disk_cdrom_spec(path_cd2);
        struct disk_opts o;

        if (spec && !disk_parse(spec, &o)) {
            bs = disk_open(&o);
            disk_opts_free(&o);
        }
        free(spec);
        if (bs && ide_medium_change(fz_ide, 2, force, bs, path_cd2, close)) {
            disk_forget(bs);
            blk_close(bs);
        }
        break;
    }
    default:
        ide_tray_close(fz_ide, 2);
        break;
    }
}

static int fz_harness_op(struct bus *bus, unsigned op, struct fz *f)
{
    switch (op % 16) {
    case 9: {
        uint8_t sel = fz_u8(f);
        uint16_t base = sel & 1 ? 0x170 : 0x1f0;
        uint8_t feature = fz_u8(f), count = fz_u8(f), hcount = fz_u8(f);
        uint32_t lba = fz_u32(f);
        uint8_t hlba = fz_u8(f), cmd = fz_u8(f);

        outb(bus, base + 6, (uint8_t)((sel & 2 ? 0x10 : 0) | (sel & 4 ? 0x40 : 0) |
                                      (lba >> 24 & 0x0f)));
        outb(bus, base + 1, 0);
        outb(bus, base + 1, feature);
        outb(bus, base + 2, hcount);
        outb(bus, base + 2, count);
        outb(bus, base + 3, hlba);
        outb(bus, base + 3, (uint8_t)lba);
        outb(bus, base + 4, 0);
        outb(bus, base + 4, (uint8_t)(lba >> 8));
        outb(bus, base + 5, 0);
        outb(bus, base + 5, (uint8_t)(lba >> 16));
        outb(bus, base + 7, cmd);
        break;
    }
    case 10: {
        uint8_t how = fz_u8(f), seed = fz_u8(f);
        unsigned words = fz_u16(f) % 32769;
        uint16_t port = how & 1 ? 0x170 : 0x1f0;

        for (unsigned i = 0; i < words; i++) {
            uint32_t w = (uint16_t)(seed * 257 + i * 3);

            fz_pio(bus, port, how & 4 ? 4 : 2, &w, how & 2);
        }
        break;
    }
    case 11: {
        uint8_t how = fz_u8(f);
        uint32_t table = fz_u32(f) % FZ_RAM_SIZE;
        unsigned n = fz_u8(f) % 9;
        bool io;
        uint64_t bm = fz_bar_addr(bus, IDE_DEVFN, 4, &io) + (how & 1 ? 8 : 0);

        for (unsigned i = 0; i < n; i++) {
            uint32_t addr = fz_u32(f);
            uint16_t cnt = fz_u16(f);
            uint8_t e[8] = { (uint8_t)addr, (uint8_t)(addr >> 8), (uint8_t)(addr >> 16),
                             (uint8_t)(addr >> 24), (uint8_t)cnt, (uint8_t)(cnt >> 8), 0,
                             (uint8_t)(i + 1 == n ? 0x80 : 0) };

            if (how & 4) /* mostly inside RAM */
                addr %= FZ_RAM_SIZE, memcpy(e, &addr, 4);
            if (table + 8 * (i + 1) <= FZ_RAM_SIZE)
                memcpy(fz_ram + table + 8 * i, e, 8);
        }
        if (!io || !bm)
            break;
        fz_outl(bus, (uint16_t)(bm + 4), table);
        outb(bus, (uint16_t)bm, 0);
        outb(bus, (uint16_t)bm, (uint8_t)((how & 2 ? 0x08 : 0) | 1));
        break;
    }
    case 12: {
        uint8_t sel = fz_u8(f), feature = fz_u8(f);
        uint16_t limit = fz_u16(f), base = sel & 1 ? 0x170 : 0x1f0;
        uint8_t cdb[12];

        for (int i = 0; i < 12; i++)
            cdb[i] = fz_u8(f);
        outb(bus, base + 6, sel & 2 ? 0x10 : 0);
        outb(bus, base + 1, feature & 1);
        outb(bus, base + 4, (uint8_t)limit);
        outb(bus, base + 5, (uint8_t)(limit >> 8));
        outb(bus, base + 7, 0xa0);
        for (int i = 0; i < 12; i += 2) {
            uint32_t w = (uint32_t)(cdb[i] | cdb[i + 1] << 8);

            fz_pio(bus, base, 2, &w, true);
        }
        break;
    }
    case 13: {
        uint8_t how = fz_u8(f);

        if (how & 0x10) {
            bool io;
            uint64_t bm = fz_bar_addr(bus, IDE_DEVFN, 4, &io);

            if (io && bm)
                outb(bus, (uint16_t)(bm + 8), 0x09);
        }
        media_op(how);
        break;
    }
    default:
        break;
    }
    return 0;
}

static void add_drive(struct ide_config *c, const char *spec)
{
    struct disk_opts o;

    memset(&o, 0, sizeof(o));
    if (disk_parse(spec, &o) || ide_config_add(c, &o) < 0) {
        fprintf(stderr, "fuzz-ide: --disk %s refused\n", spec);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = { data, size, 0 };
    struct bus *bus;
    struct pci *pci = NULL;
    struct ide_config c;
    char spec[400];
    unsigned bdfs[8];
    struct fz_target t = { ide_ports, sizeof(ide_ports) / sizeof(ide_ports[0]), bdfs, 0 };

    if (!pristine_qcow2)
        images_init();
    images_reset();
    fuzz_hooks_reset();
    bus = fz_bus_create(false);
    memset(&c, 0, sizeof(c));
    snprintf(spec, sizeof(spec), "%s,format=raw,if=ide,index=0", path_raw);
    add_drive(&c, spec);
    snprintf(spec, sizeof(spec), "%s,format=qcow2,if=ide,index=1", path_qcow2);
    add_drive(&c, spec);
    snprintf(spec, sizeof(spec), "%s,format=raw,if=ide,index=2,media=cdrom", path_cd);
    add_drive(&c, spec);
    if (pci_create(bus, 0xe0000000ULL, &pci) || piix3_create(pci, 1, bus, NULL) ||
        ide_create(pci, 1, 1, bus, &c, &fz_ide)) {
        fprintf(stderr, "fuzz-ide: cannot create the devices\n");
        abort();
    }
    ide_config_free(&c);
    t.nbdfs = fz_pci_scan(bus, bdfs, 8);
    fz_pci_enable(bus, bdfs, t.nbdfs);
    fz_run(bus, &t, &f);
    fz_settle(bus);
    bus_shutdown(bus);
    pci_destroy(pci);
    bus_destroy(bus);
    return 0;
}
