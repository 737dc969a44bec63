/* PIIX3 IDE (8086:7010, class 01 01 80): legacy-mode channels at
 * 0x1F0/0x3F6 (IRQ 14) and 0x170/0x376 (IRQ 15), the ATA command set
 * for disks, PIO on the vCPU thread against a sector buffer.  ATAPI
 * lives in atapi.c, bus-master DMA in dma.c (see ide-int.h for
 * the locking).  Register semantics follow ATA/ATAPI-6 (T13 1410D). */
#include "devices/ide/ide.h"
#include "devices/ide/ide-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci.h"

#define IDE_TIMING_PRI 0x40   /* IDETIM, 16 bits per channel */
#define IDE_TIMING_SEC 0x42
#define IDE_SIDETIM    0x44
/* IDE decode enable: Linux's ata_piix checks it */
#define IDETIM_DECODE  0x8000
#define CMD_IO         0x0001

/* ---- interrupts ---- */

static void ide_update_irq(struct ide_channel *ch)
{
    int level = ch->intrq && !(ch->control & CTL_NIEN);

    if (level == ch->irq_level)
        return;
    ch->irq_level = level;
    bus_set_irq(ch->ide->bus, ch->irq, level);
}

void ide_sync_irq(struct ide_channel *ch)
{
    ch->irq_level = -1;
    ide_update_irq(ch);
}

void ide_raise_irq(struct ide_channel *ch)
{
    /* The bus-master interrupt bit follows the INTRQ pin, which nIEN
     * floats. */
    if (!(ch->control & CTL_NIEN))
        ch->bm_status |= 0x04;
    ch->intrq = true;
    ide_update_irq(ch);
}

void ide_lower_irq(struct ide_channel *ch)
{
    ch->intrq = false;
    ide_update_irq(ch);
}

/* ---- small helpers ---- */

void ide_abort(struct ide_drive *d, uint8_t error)
{
    d->error = error;
    d->status = ST_DRDY | ST_ERR;
    d->pio = PIO_NONE;
    d->pos = d->end = 0;
    ide_raise_irq(d->ch);
}

static void ide_complete(struct ide_drive *d)
{
    d->error = 0;
    d->status = ST_DRDY | ST_DSC;
    d->pio = PIO_NONE;
    ide_raise_irq(d->ch);
}

void ide_pio_start(struct ide_drive *d, unsigned len, int next, bool irq)
{
    d->pos = 0;
    d->end = len;
    d->pio = next;
    d->error = 0;
    d->status = ST_DRDY | ST_DSC | ST_DRQ;
    if (irq)
        ide_raise_irq(d->ch);
}

/* ---- addressing ---- */

static bool cmd_is_ext(uint8_t cmd)
{
    switch (cmd) {
    case 0x24: case 0x25: case 0x29: case 0x34: case 0x35: case 0x39:
    case 0x42:
        return true;
    }
    return false;
}

static uint64_t tf_lba(struct ide_drive *d, bool ext)
{
    struct ide_channel *ch = d->ch;

    if (ext)
        return (uint64_t)ch->hob_lba_high << 40 |
               (uint64_t)ch->hob_lba_mid << 32 |
               (uint64_t)ch->hob_lba_low << 24 |
               (uint64_t)ch->lba_high << 16 |
               (uint64_t)ch->lba_mid << 8 | ch->lba_low;
    if (ch->device & DEV_LBA)
        return (uint64_t)(ch->device & 0x0f) << 24 |
               (uint64_t)ch->lba_high << 16 |
               (uint64_t)ch->lba_mid << 8 | ch->lba_low;
    /* CHS through the geometry INITIALIZE DEVICE PARAMETERS set:
     * sector numbers start at 1; 0 is an invalid address. */
    if (!ch->lba_low || !d->lspt || !d->lheads)
        return UINT64_MAX;
    return (((uint64_t)ch->lba_high << 8 | ch->lba_mid) * d->lheads +
            (ch->device & 0x0f)) * d->lspt + ch->lba_low - 1;
}

static uint64_t tf_count(struct ide_channel *ch, bool ext)
{
    if (ext)
        return (ch->hob_count << 8 | ch->count)
                   ? (uint64_t)(ch->hob_count << 8 | ch->count)
                   : 65536;
    return ch->count ? ch->count : 256;
}

static bool range_ok(struct ide_drive *d, uint64_t lba, uint64_t n)
{
    return lba != UINT64_MAX && lba <= d->sectors && n <= d->sectors - lba;
}

/* ---- PIO reads and writes ---- */

/* Fills the buffer with the next DRQ block of a read command. */
static void ata_read_block(struct ide_drive *d, bool irq)
{
    unsigned n = d->left < d->block ? (unsigned)d->left : d->block;
    uint64_t off = d->lba * BLK_SECTOR_SIZE;
    int64_t t0 = disk_acct_now();
    int ret = blk_pread(ide_disk_enter(d), off, d->buf,
                        (size_t)n * BLK_SECTOR_SIZE);

    ide_disk_leave(d, off, (uint64_t)n * BLK_SECTOR_SIZE, false);
    /* As QEMU: each DRQ block is one request. */
    disk_acct_done(d->stats, DISK_ACCT_READ, (uint64_t)n * BLK_SECTOR_SIZE,
                   t0, ret < 0);
    if (ret < 0) {
        disk_io_error(d->stats, false, -ret);
        ide_abort(d, ER_UNC | ER_ABRT);
        return;
    }
    d->lba += n;
    d->left -= n;
    ide_pio_start(d, n * BLK_SECTOR_SIZE, d->left ? PIO_ATA_READ : PIO_DONE,
                  irq);
}

static void ata_write_next(struct ide_drive *d, bool irq)
{
    unsigned n = d->left < d->block ? (unsigned)d->left : d->block;

    ide_pio_start(d, n * BLK_SECTOR_SIZE, PIO_ATA_WRITE, irq);
}

/* The host filled the buffer: it goes to the image now. */
static void ata_write_block(struct ide_drive *d)
{
    unsigned n = d->end / BLK_SECTOR_SIZE;
    uint64_t off = d->lba * BLK_SECTOR_SIZE;
    int64_t t0 = disk_acct_now();
    int ret = blk_pwrite(ide_disk_enter(d), off, d->buf, d->end);

    ide_disk_leave(d, off, d->end, true);
    disk_acct_done(d->stats, DISK_ACCT_WRITE, d->end, t0, ret < 0);
    if (ret < 0) {
        disk_io_error(d->stats, true, -ret);
        ide_abort(d, ER_ABRT);
        return;
    }
    disk_acct_wr_end(d->stats, d->lba * BLK_SECTOR_SIZE, d->end);
    d->lba += n;
    d->left -= n;
    if (d->left)
        ata_write_next(d, true);
    else
        ide_complete(d);
}

/* Sets up a read/write command; returns false when it was aborted. */
static bool ata_rw_setup(struct ide_drive *d, uint8_t cmd, bool write,
                         bool multiple)
{
    bool ext = cmd_is_ext(cmd);
    uint64_t lba = tf_lba(d, ext), n = tf_count(d->ch, ext);

    if (d->atapi || (multiple && !d->mult) || (write && d->readonly)) {
        ide_abort(d, ER_ABRT);
        return false;
    }
    if (!range_ok(d, lba, n)) {
        disk_acct_invalid(d->stats, write ? DISK_ACCT_WRITE : DISK_ACCT_READ);
        ide_abort(d, ER_IDNF | ER_ABRT);
        return false;
    }
    d->lba = lba;
    d->left = n;
    d->block = multiple ? d->mult : 1;
    return true;
}

static void ata_dma_cmd(struct ide_drive *d, uint8_t cmd, bool write)
{
    if (!ata_rw_setup(d, cmd, write, false))
        return;
    ide_dma_submit(d, !write, d->lba * BLK_SECTOR_SIZE,
                   d->left * BLK_SECTOR_SIZE, true);
}

void ide_ata_dma_done(struct ide_drive *d, int error)
{
    if (error)
        ide_abort(d, ER_ABRT | (error == -EIO ? ER_UNC : 0));
    else
        ide_complete(d);
}

static void ata_verify(struct ide_drive *d, uint8_t cmd)
{
    bool ext = cmd_is_ext(cmd);

    if (d->atapi)
        ide_abort(d, ER_ABRT);
    else if (!range_ok(d, tf_lba(d, ext), tf_count(d->ch, ext)))
        ide_abort(d, ER_IDNF | ER_ABRT);
    else
        ide_complete(d);
}

/* ---- other commands ---- */

static void ata_set_features(struct ide_drive *d)
{
    struct ide_channel *ch = d->ch;

    switch (ch->feature) {
    case 0x02: d->wcache = true; break;
    case 0x82: d->wcache = false; break;
    case 0x03:
        /* PIO default/flow control, multiword DMA 0-2, UDMA 0-5 */
        if (ch->count > 0x0c && !(ch->count >= 0x20 && ch->count <= 0x22) &&
            !(ch->count >= 0x40 && ch->count <= 0x45)) {
            ide_abort(d, ER_ABRT);
            return;
        }
        d->xfer_mode = ch->count;
        break;
    case 0x55: case 0xaa: case 0x66: case 0xcc: /* look-ahead, defaults */
        break;
    default:
        ide_abort(d, ER_ABRT);
        return;
    }
    ide_complete(d);
}

static void ata_set_multiple(struct ide_drive *d)
{
    unsigned n = d->ch->count;

    if (d->atapi || n > IDE_MAX_MULT || (n & (n - 1))) {
        ide_abort(d, ER_ABRT);
        return;
    }
    d->mult = n;
    ide_complete(d);
}

static void ata_init_params(struct ide_drive *d)
{
    struct ide_channel *ch = d->ch;

    if (d->atapi || !ch->count) {
        ide_abort(d, ER_ABRT);
        return;
    }
    d->lspt = ch->count;
    d->lheads = (uint16_t)((ch->device & 0x0f) + 1);
    ide_complete(d);
}

static void ata_flush(struct ide_drive *d)
{
    if (d->atapi && !d->bs) {
        ide_complete(d);
        return;
    }
    int64_t t0 = disk_acct_now();
    int ret = d->readonly ? 0 : blk_flush(ide_disk_enter(d));

    if (!d->readonly)
        ide_disk_leave(d, 0, 0, false);
    disk_acct_done(d->stats, DISK_ACCT_FLUSH, 0, t0, ret < 0);
    if (ret < 0) {
        disk_io_error(d->stats, true, -ret);
        ide_abort(d, ER_ABRT);
    } else {
        ide_complete(d);
    }
}

/* The signature after a reset or diagnostic: 1/1 and 0xEB14 for ATAPI. */
static void ide_set_signature(struct ide_channel *ch, struct ide_drive *d)
{
    ch->count = ch->lba_low = 1;
    ch->lba_mid = d->atapi ? 0x14 : 0;
    ch->lba_high = d->atapi ? 0xeb : 0;
    ch->device &= DEV_SLAVE;
}

static void drive_reset(struct ide_drive *d)
{
    d->pio = PIO_NONE;
    d->pos = d->end = 0;
    d->error = 1; /* diagnostic code: no error */
    d->status = d->atapi ? 0 : ST_DRDY | ST_DSC;
    d->lheads = d->heads;
    d->lspt = d->spt;
}

static void ata_exec_diagnostic(struct ide_channel *ch)
{
    for (int u = 0; u < 2; u++)
        if (ch->drive[u].present)
            drive_reset(&ch->drive[u]);
    ch->device = 0;
    ide_set_signature(ch, &ch->drive[0]);
    ide_raise_irq(ch);
}

static void ide_identify(struct ide_drive *d, bool packet)
{
    if (packet != d->atapi) {
        /* ATAPI devices abort IDENTIFY DEVICE with their signature in the
         * registers: that is how drivers tell them apart. */
        if (d->atapi)
            ide_set_signature(d->ch, d);
        ide_abort(d, ER_ABRT);
        return;
    }
    if (packet)
        atapi_identify(d, (uint16_t *)d->buf);
    else
        ata_identify(d, (uint16_t *)d->buf);
    ide_pio_start(d, 512, PIO_DONE, true);
}

static bool ata_command_rw(struct ide_drive *d, uint8_t cmd)
{
    switch (cmd) {
    case 0x20: case 0x21: case 0x24:
    case 0xc4: case 0x29:
        if (ata_rw_setup(d, cmd, false, cmd == 0xc4 || cmd == 0x29))
            ata_read_block(d, true);
        return true;
    case 0x30: case 0x31: case 0x34:
    case 0xc5: case 0x39:
        /* The first block of a write is asked for without an interrupt. */
        if (ata_rw_setup(d, cmd, true, cmd == 0xc5 || cmd == 0x39))
            ata_write_next(d, false);
        return true;
    case 0xc8: case 0xc9: case 0x25:
        ata_dma_cmd(d, cmd, false);
        return true;
    case 0xca: case 0xcb: case 0x35:
        ata_dma_cmd(d, cmd, true);
        return true;
    case 0x40: case 0x41: case 0x42:
        ata_verify(d, cmd);
        return true;
    }
    return false;
}

static void ata_command(struct ide_channel *ch, uint8_t cmd)
{
    struct ide_drive *d = ide_selected(ch);

    /* Commands to an absent slave go nowhere; the master answers for it
     * only through status 0. */
    if (!d->present)
        return;
    if ((d->status & (ST_BSY | ST_DRQ)) && cmd != 0x08)
        return; /* a new command while busy: ignored, the first goes on */
    ide_lower_irq(ch);
    if (!d->atapi && ata_command_rw(d, cmd))
        return;
    switch (cmd) {
    case 0xec: ide_identify(d, false); break;
    case 0xa1: ide_identify(d, true); break;
    case 0xa0:
        if (d->atapi)
            atapi_packet(d);
        else
            ide_abort(d, ER_ABRT);
        break;
    case 0x08: /* DEVICE RESET: ATAPI only */
        if (!d->atapi) {
            ide_abort(d, ER_ABRT);
            break;
        }
        ide_dma_stop(ch, d);
        drive_reset(d);
        ide_set_signature(ch, d);
        break;
    case 0x90: ata_exec_diagnostic(ch); break;
    case 0xe7: case 0xea: ata_flush(d); break;
    case 0xef: ata_set_features(d); break;
    case 0xc6: ata_set_multiple(d); break;
    case 0x91: ata_init_params(d); break;
    case 0xe5: case 0x98: /* CHECK POWER MODE: active */
        ch->count = 0xff;
        ide_complete(d);
        break;
    case 0x00: /* NOP: always aborts */
        ide_abort(d, ER_ABRT);
        break;
    default:
        /* RECALIBRATE (1xh), SEEK (7xh), idle and standby: nothing to do
         * for a disk without heads; anything else is unknown. */
        if (!d->atapi && ((cmd & 0xf0) == 0x10 || (cmd & 0xf0) == 0x70 ||
                          (cmd >= 0xe0 && cmd <= 0xe3) || cmd == 0x94 ||
                          cmd == 0x95 || cmd == 0x96 || cmd == 0x97))
            ide_complete(d);
        else
            ide_abort(d, ER_ABRT);
        break;
    }
}

/* ---- the data port ---- */

/* The host moved the last byte of the DRQ block. */
static void pio_block_done(struct ide_drive *d)
{
    int next = d->pio;

    d->status &= (uint8_t)~ST_DRQ;
    d->pio = PIO_NONE;
    switch (next) {
    case PIO_DONE:
        d->status = ST_DRDY | ST_DSC;
        break;
    case PIO_ATA_READ:
        ata_read_block(d, true);
        break;
    case PIO_ATA_WRITE:
        ata_write_block(d);
        break;
    case PIO_ATAPI_CDB:
        memcpy(d->cdb, d->buf, sizeof(d->cdb));
        atapi_cdb_received(d);
        break;
    case PIO_ATAPI_DATA:
        atapi_next_chunk(d);
        break;
    }
}

static void data_rw(struct ide_channel *ch, uint8_t *data, unsigned size,
                    bool is_write)
{
    struct ide_drive *d = ide_selected(ch);

    /* Without DRQ the port is not part of any transfer: reads float. */
    if (!d->present || !(d->status & ST_DRQ) || size == 1 || d->pos >= d->end)
        return;
    if (size > d->end - d->pos)
        size = d->end - d->pos;
    if (is_write)
        memcpy(d->buf + d->pos, data, size);
    else
        memcpy(data, d->buf + d->pos, size);
    d->pos += size;
    if (d->pos >= d->end)
        pio_block_done(d);
}

/* ---- the task file ---- */

static uint8_t status_read(struct ide_channel *ch, bool clear_irq)
{
    struct ide_drive *d = ide_selected(ch);

    if (!d->present)
        return 0; /* only the other drive is there: it answers 0 for us */
    if (clear_irq)
        ide_lower_irq(ch);
    return d->status;
}

static uint8_t taskfile_read(struct ide_channel *ch, unsigned reg)
{
    bool hob = ch->control & CTL_HOB;
    struct ide_drive *d = ide_selected(ch);

    switch (reg) {
    case 1: return hob ? ch->hob_feature : d->present ? d->error : 0;
    case 2: return hob ? ch->hob_count : ch->count;
    case 3: return hob ? ch->hob_lba_low : ch->lba_low;
    case 4: return hob ? ch->hob_lba_mid : ch->lba_mid;
    case 5: return hob ? ch->hob_lba_high : ch->lba_high;
    case 6: return ch->device | 0xa0; /* bits 7 and 5 read as one (obsolete) */
    default: return status_read(ch, true);
    }
}

static void hob_write(uint8_t *reg, uint8_t *hob, uint8_t v)
{
    *hob = *reg;
    *reg = v;
}

static void taskfile_write(struct ide_channel *ch, unsigned reg, uint8_t v)
{
    /* Writing the command block clears HOB (ATA-6 7.9.1). */
    ch->control &= (uint8_t)~CTL_HOB;
    switch (reg) {
    case 1: hob_write(&ch->feature, &ch->hob_feature, v); break;
    case 2: hob_write(&ch->count, &ch->hob_count, v); break;
    case 3: hob_write(&ch->lba_low, &ch->hob_lba_low, v); break;
    case 4: hob_write(&ch->lba_mid, &ch->hob_lba_mid, v); break;
    case 5: hob_write(&ch->lba_high, &ch->hob_lba_high, v); break;
    case 6:
        ch->device = v & 0x5f;
        ide_update_irq(ch);
        break;
    case 7: ata_command(ch, v); break;
    }
}

static void control_write(struct ide_channel *ch, uint8_t v)
{
    uint8_t old = ch->control;

    ch->control = v;
    if ((v & CTL_SRST) && !(old & CTL_SRST)) {
        /* Both drives' transfer ends here, before the guest can see the
         * reset done. */
        ide_dma_stop(ch, NULL);
        for (int u = 0; u < 2; u++) {
            ch->drive[u].pio = PIO_NONE;
            ch->drive[u].status = ST_BSY;
        }
        ide_lower_irq(ch);
    } else if (!(v & CTL_SRST) && (old & CTL_SRST)) {
        /* The end of the reset pulse: both drives come back with their
         * signatures, the master selected, no interrupt. */
        for (int u = 0; u < 2; u++)
            drive_reset(&ch->drive[u]);
        ch->device = 0;
        ide_set_signature(ch, &ch->drive[0]);
    }
    ide_update_irq(ch);
}

static bool channel_decodes(struct ide_channel *ch)
{
    struct pci_dev *dev = ch->ide->dev;
    unsigned reg = ch->index ? IDE_TIMING_SEC : IDE_TIMING_PRI;

    return (pci_cfg_read(dev, 0x04, 2) & CMD_IO) &&
           (pci_cfg_read(dev, reg, 2) & IDETIM_DECODE) &&
           (ch->drive[0].present || ch->drive[1].present);
}

static void ide_cmd_pio(void *opaque, uint16_t port, uint8_t *data,
                        unsigned size, bool is_write)
{
    struct ide_channel *ch = opaque;
    unsigned reg = port - ch->cmd_base;

    if (!channel_decodes(ch))
        return;
    pthread_mutex_lock(&ch->lock);
    if (reg == 0) {
        data_rw(ch, data, size, is_write);
    } else if (is_write) {
        for (unsigned i = 0; i < size && reg + i < 8; i++)
            taskfile_write(ch, reg + i, data[i]);
    } else {
        for (unsigned i = 0; i < size && reg + i < 8; i++)
            data[i] = taskfile_read(ch, reg + i);
    }
    pthread_mutex_unlock(&ch->lock);
}

static void ide_ctl_pio(void *opaque, uint16_t port, uint8_t *data,
                        unsigned size, bool is_write)
{
    struct ide_channel *ch = opaque;

    (void)port;
    (void)size;
    if (!channel_decodes(ch))
        return;
    pthread_mutex_lock(&ch->lock);
    if (is_write)
        control_write(ch, data[0]);
    else
        data[0] = status_read(ch, false);
    pthread_mutex_unlock(&ch->lock);
}

/* ---- setup ---- */

static void ide_bar_rw(void *opaque, int bar, uint64_t off, uint8_t *data,
                       unsigned size, bool is_write)
{
    if (bar == 4)
        ide_bm_rw(opaque, off, data, size, is_write);
}

static void drive_close(struct ide_drive *d)
{
    if (d->live) {
        disk_live_close(d->live);
    } else if (d->bs) {
        disk_forget(d->bs);
        blk_close(d->bs);
    }
    free(d->buf);
    free(d->name);
}

/* Both channels' DMA threads end (within one block-layer request):
 * pci_destroy() stops every function before it frees any. */
static void ide_stop(void *opaque)
{
    struct ide *ide = opaque;

    for (int c = 0; c < 2; c++)
        ide_dma_stop_thread(&ide->ch[c]);
}

static void ide_destroy(void *opaque)
{
    struct ide *ide = opaque;

    for (int c = 0; c < 2; c++) {
        ide_dma_stop_thread(&ide->ch[c]);
        for (int u = 0; u < 2; u++)
            drive_close(&ide->ch[c].drive[u]);
        free(ide->ch[c].iov);
        pthread_mutex_destroy(&ide->ch[c].lock);
        pthread_cond_destroy(&ide->ch[c].cond);
    }
    free(ide);
}

/* Power-on state of a drive: what SET FEATURES, SET MULTIPLE MODE and
 * the tray changed is forgotten too. */
static void drive_power_on(struct ide_drive *d)
{
    d->wcache = true;
    d->mult = IDE_MAX_MULT;
    d->xfer_mode = 0;
    d->sense_key = d->asc = d->ascq = 0;
    d->ejected = d->locked = false;
    d->cdrom_changed = 0;
    d->ev_new_media = d->ev_eject_request = false;
    d->dma = false;
    drive_reset(d);
}

static void ide_machine_reset(void *opaque)
{
    struct ide *ide = opaque;

    for (int c = 0; c < 2; c++) {
        struct ide_channel *ch = &ide->ch[c];

        pthread_mutex_lock(&ch->lock);
        ide_dma_drain(ch);
        for (int u = 0; u < 2; u++)
            if (ch->drive[u].present)
                drive_power_on(&ch->drive[u]);
        ch->feature = ch->hob_feature = ch->hob_count = 0;
        ch->hob_lba_low = ch->hob_lba_mid = ch->hob_lba_high = 0;
        ch->control = 0;
        ch->device = 0;
        ide_set_signature(ch, &ch->drive[0]);
        ide_lower_irq(ch);
        pthread_mutex_unlock(&ch->lock);
    }
}

static const struct pci_func_ops ide_ops = {
    .bar_rw = ide_bar_rw,
    .reset = ide_machine_reset,
    .stop = ide_stop,
    .destroy = ide_destroy,
    /* configuration space and BARs only: each channel, bus master
     * registers included, saves itself (state.c) */
    .state = &bus_state_none,
};

static void drive_geometry(struct ide_drive *d)
{
    uint64_t cyls = d->sectors / (16 * 63);

    d->heads = 16;
    d->spt = 63;
    d->cyls = (uint16_t)(cyls > 16383 ? 16383 : cyls ? cyls : 1);
    d->lheads = d->heads;
    d->lspt = d->spt;
}

static int drive_open(struct ide_drive *d, const struct disk_opts *o, int slot)
{
    d->name = strdup(o->file);
    d->buf = calloc(1, IDE_BUF_SIZE);
    if (!d->name || !d->buf)
        return -ENOMEM;
    d->bs = disk_open(o);
    if (!d->bs)
        return -EIO;
    d->present = true;
    d->stats = o->stats;
    if (d->stats)
        atomic_store(&d->stats->backing_depth, disk_backing_depth(d->bs));
    d->atapi = o->cdrom;
    d->readonly = o->readonly || d->bs->read_only;
    if (!d->atapi) { /* a disk: its image goes through d->live only */
        d->live = disk_live_of(d->bs);
        if (!d->live) {
            fprintf(stderr, "calf: --disk %s: too many disks\n", o->file);
            return -EMFILE;
        }
        d->sectors = d->bs->size / BLK_SECTOR_SIZE;
        d->bs = NULL;
    }
    if (o->serial[0])
        snprintf(d->serial, sizeof(d->serial), "%s", o->serial);
    else
        snprintf(d->serial, sizeof(d->serial), "CALF%04d", slot);
    if (d->atapi)
        d->sectors = d->bs->size / CD_BLOCK;
    drive_geometry(d);
    drive_power_on(d);
    return 0;
}

static int channel_setup(struct ide *ide, int c, const struct ide_config *cfg)
{
    struct ide_channel *ch = &ide->ch[c];
    int ret;

    ch->ide = ide;
    ch->index = c;
    ch->cmd_base = c ? 0x170 : 0x1f0;
    ch->ctl_port = c ? 0x376 : 0x3f6;
    ch->irq = c ? 15 : 14;
    for (int u = 0; u < 2; u++) {
        ch->drive[u].ch = ch;
        ch->drive[u].unit = u;
        if (!cfg->used[c * 2 + u])
            continue;
        ret = drive_open(&ch->drive[u], &cfg->drive[c * 2 + u], c * 2 + u);
        if (ret)
            return ret;
    }
    ide_set_signature(ch, &ch->drive[0]);
    ret = bus_register_pio(ide->bus, ch->cmd_base, 8, ide_cmd_pio, ch);
    if (!ret)
        ret = bus_register_pio(ide->bus, ch->ctl_port, 1, ide_ctl_pio, ch);
    if (!ret)
        ret = ide_state_register(ch);
    if (!ret)
        ret = ide_dma_start_thread(ch);
    return ret;
}

int ide_create(struct pci *pci, int slot, int fn, struct bus *bus,
               const struct ide_config *c, struct ide **out)
{
    static const struct pci_dev_config cfg = {
        .vendor = 0x8086, .device = 0x7010,
        .class_code = 0x01, .subclass = 0x01, .prog_if = 0x80,
        .bar_size = { [4] = 16 }, .bar_io = 1 << 4,
    };
    struct ide *ide = calloc(1, sizeof(*ide));
    int ret;

    if (!ide)
        return -ENOMEM;
    ide->bus = bus;
    for (int ch = 0; ch < 2; ch++) {
        pthread_mutex_init(&ide->ch[ch].lock, NULL);
        pthread_cond_init(&ide->ch[ch].cond, NULL);
    }
    ret = pci_add_fn(pci, slot, fn, &cfg, &ide_ops, ide, &ide->dev);
    if (ret) {
        ide_destroy(ide);
        fprintf(stderr, "calf: IDE controller at 00:%02x.%d: %s\n", slot, fn,
                strerror(-ret));
        return ret;
    }
    /* From here the PCI function owns ide: pci_destroy() frees it. */
    for (int ch = 0; ch < 2 && !ret; ch++)
        ret = channel_setup(ide, ch, c);
    if (ret) {
        if (ret != -EIO) /* disk_open() said what went wrong */
            fprintf(stderr, "calf: IDE controller: %s\n", strerror(-ret));
        return ret;
    }
    pci_cfg_init(ide->dev, IDE_TIMING_PRI, 2, IDETIM_DECODE, 0xffff);
    pci_cfg_init(ide->dev, IDE_TIMING_SEC, 2, IDETIM_DECODE, 0xffff);
    pci_cfg_init(ide->dev, IDE_SIDETIM, 1, 0, 0xff);
    if (out)
        *out = ide;
    return 0;
}

/* ---- which drive goes where ---- */

int ide_config_add(struct ide_config *c, struct disk_opts *o)
{
    static const int disk_order[] = { 0, 1, 2, 3 }, cd_order[] = { 2, 3, 0, 1 };
    const int *order = o->cdrom ? cd_order : disk_order;
    int slot = o->index;

    for (int i = 0; slot < 0 && i < IDE_DRIVES; i++)
        if (!c->used[order[i]])
            slot = order[i];
    if (slot < 0 || c->used[slot]) {
        fprintf(stderr, "calf: --disk %s: %s\n", o->file,
                slot < 0 ? "no free IDE slot (4 drives at most)"
                         : "that IDE index is taken");
        disk_opts_free(o);
        return slot < 0 ? -ENOSPC : -EBUSY;
    }
    c->drive[slot] = *o;
    c->used[slot] = true;
    *o = (struct disk_opts){ 0 };
    return slot;
}

bool ide_config_any(const struct ide_config *c)
{
    for (int i = 0; i < IDE_DRIVES; i++)
        if (c->used[i])
            return true;
    return false;
}

void ide_config_free(struct ide_config *c)
{
    for (int i = 0; i < IDE_DRIVES; i++)
        if (c->used[i])
            disk_opts_free(&c->drive[i]);
}
