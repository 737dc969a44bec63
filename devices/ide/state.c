/* Saved state of a PIIX3 IDE channel (docs/VMSTATE.md): the task file,
 * the bus-master registers, a DMA command waiting for its start bit, and
 * per drive its registers, settings and the PIO or PACKET command in
 * progress (with the data buffer while one is).
 *
 * A DMA transfer the channel's thread is moving is not saved half done:
 * the save waits for it (ch->cond, as a reset does; it ends within one
 * pass over the PRD table) and saves what it left, its completion and
 * interrupt included.  With the vCPUs stopped nothing starts another.
 * A loaded state is checked against the drives this machine has and
 * against every bound the command code relies on (buffer positions,
 * sector ranges, block sizes), so no value of it can make a later
 * register access read or write out of place. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/bus.h"
#include "devices/ide/ide-int.h"
#include "devices/vmstate.h"

/* the buffer is saved only while a command uses it */
static bool buf_in_use(const struct ide_channel *ch, const struct ide_drive *d)
{
    return d->pio != PIO_NONE || (ch->dma_pending && ch->req.d == d);
}

static void drive_save(const struct ide_channel *ch, const struct ide_drive *d,
                       struct vmstate_cursor *w)
{
    vms_put_u8(w, (uint8_t)(d->present | d->atapi << 1));
    if (!d->present)
        return;
    vms_put_u8(w, d->status);
    vms_put_u8(w, d->error);
    vms_put_u16(w, d->lheads);
    vms_put_u16(w, d->lspt);
    vms_put_u8(w, (uint8_t)d->mult);
    vms_put_u8(w, d->wcache);
    vms_put_u8(w, d->xfer_mode);
    vms_put_u8(w, (uint8_t)d->pio);
    vms_put_u32(w, d->pos);
    vms_put_u32(w, d->end);
    vms_put_u64(w, d->lba);
    vms_put_u64(w, d->left);
    vms_put_u32(w, d->block);
    vms_put_u8(w, d->from_disk);
    vms_put_u8(w, d->dma);
    vms_put_u32(w, d->limit);
    vms_put(w, d->cdb, sizeof(d->cdb));
    vms_put_u8(w, d->sense_key);
    vms_put_u8(w, d->asc);
    vms_put_u8(w, d->ascq);
    vms_put_u8(w, d->ejected);
    vms_put_u8(w, d->locked);
    vms_put_u8(w, buf_in_use(ch, d));
    if (buf_in_use(ch, d))
        vms_put(w, d->buf, IDE_BUF_SIZE);
}

static int ide_state_save(void *opaque, struct vmstate_cursor *w)
{
    struct ide_channel *ch = opaque;

    pthread_mutex_lock(&ch->lock);
    /* a transfer being moved ends first, its completion with it */
    while (ch->dma_running)
        pthread_cond_wait(&ch->cond, &ch->lock);
    vms_put_u8(w, ch->feature);
    vms_put_u8(w, ch->count);
    vms_put_u8(w, ch->lba_low);
    vms_put_u8(w, ch->lba_mid);
    vms_put_u8(w, ch->lba_high);
    vms_put_u8(w, ch->hob_feature);
    vms_put_u8(w, ch->hob_count);
    vms_put_u8(w, ch->hob_lba_low);
    vms_put_u8(w, ch->hob_lba_mid);
    vms_put_u8(w, ch->hob_lba_high);
    vms_put_u8(w, ch->device);
    vms_put_u8(w, ch->control);
    vms_put_u8(w, ch->intrq);
    vms_put_u8(w, ch->bm_cmd);
    vms_put_u8(w, ch->bm_status);
    vms_put_u32(w, ch->prd_addr);
    vms_put_u8(w, ch->dma_pending);
    if (ch->dma_pending) {
        vms_put_u8(w, (uint8_t)ch->req.d->unit);
        vms_put_u8(w, ch->req.to_mem);
        vms_put_u8(w, ch->req.from_disk);
        vms_put_u64(w, ch->req.off);
        vms_put_u64(w, ch->req.bytes);
    }
    for (int u = 0; u < 2; u++)
        drive_save(ch, &ch->drive[u], w);
    pthread_mutex_unlock(&ch->lock);
    return w->err;
}

/* A drive's state as read, applied only once all of it checked out. */
struct drive_state {
    uint8_t status, error, xfer_mode, sense_key, asc, ascq;
    uint16_t lheads, lspt;
    unsigned mult, pos, end, block, limit;
    int pio;
    uint64_t lba, left;
    bool wcache, from_disk, dma, ejected, locked, has_buf;
    uint8_t cdb[12];
};

_Static_assert(IDE_MAX_MULT * BLK_SECTOR_SIZE <= IDE_BUF_SIZE,
               "a DRQ block fits the buffer");

static int drive_read(struct ide_channel *ch, struct ide_drive *d,
                      struct drive_state *s, uint8_t *buf,
                      struct vmstate_cursor *r)
{
    uint8_t kind = vms_get_u8(r);
    uint64_t bytes = d->atapi ? d->sectors * CD_BLOCK : d->sectors;

    if (!r->err && kind != (uint8_t)(d->present | d->atapi << 1))
        return vms_fail(r, -EINVAL, "IDE %d-%d: the state has %s, this "
                        "machine %s", ch->index, d->unit,
                        !(kind & 1) ? "no drive" : kind & 2 ? "a CD-ROM"
                                                            : "a disk",
                        !d->present ? "no drive" : d->atapi ? "a CD-ROM"
                                                            : "a disk");
    if (!d->present)
        return r->err;
    s->status = vms_get_u8(r);
    s->error = vms_get_u8(r);
    s->lheads = vms_get_u16(r);
    s->lspt = vms_get_u16(r);
    s->mult = vms_get_u8(r);
    s->wcache = vms_get_bool(r);
    s->xfer_mode = vms_get_u8(r);
    s->pio = vms_get_u8(r);
    s->pos = vms_get_u32(r);
    s->end = vms_get_u32(r);
    s->lba = vms_get_u64(r);
    s->left = vms_get_u64(r);
    s->block = vms_get_u32(r);
    s->from_disk = vms_get_bool(r);
    s->dma = vms_get_bool(r);
    s->limit = vms_get_u32(r);
    vms_get(r, s->cdb, sizeof(s->cdb));
    s->sense_key = vms_get_u8(r);
    s->asc = vms_get_u8(r);
    s->ascq = vms_get_u8(r);
    s->ejected = vms_get_bool(r);
    s->locked = vms_get_bool(r);
    s->has_buf = vms_get_bool(r);
    if (s->has_buf)
        vms_get(r, buf, IDE_BUF_SIZE);
    if (r->err)
        return r->err;
    /* every bound the command code relies on */
    bool ok = s->pio <= PIO_ATAPI_DATA && s->mult <= IDE_MAX_MULT &&
              s->end <= IDE_BUF_SIZE &&
              s->pos <= s->end && (s->pio == PIO_NONE || s->has_buf);
    switch (s->pio) {
    case PIO_ATA_READ: case PIO_ATA_WRITE:
        /* block is 1 or the READ/WRITE MULTIPLE count: bounded before
         * any product, which would wrap in 32 bits */
        ok = ok && !d->atapi && s->block >= 1 && s->block <= IDE_MAX_MULT &&
             s->lba <= bytes && s->left <= bytes - s->lba &&
             s->end % BLK_SECTOR_SIZE == 0 &&
             (s->pio == PIO_ATA_READ || s->end / BLK_SECTOR_SIZE <= s->left);
        break;
    case PIO_ATAPI_CDB:
        ok = ok && d->atapi && s->end == sizeof(s->cdb);
        break;
    case PIO_ATAPI_DATA:
        /* a limit that offers no chunk (0, or 1 with more to send)
         * would stall the transfer: atapi_data_in() refuses it too */
        ok = ok && d->atapi && s->limit <= 0xfffe &&
             (s->limit >= 2 || s->left <= s->limit) &&
             (s->from_disk ? s->lba <= bytes && s->left <= bytes - s->lba
                           : s->left <= IDE_BUF_SIZE - s->end);
        break;
    }
    if (!ok)
        return vms_fail(r, -EINVAL, "IDE %d-%d: command state out of range "
                        "(step %d, data %u-%u, sector %llu + %llu, block %u)",
                        ch->index, d->unit, s->pio, s->pos, s->end,
                        (unsigned long long)s->lba,
                        (unsigned long long)s->left, s->block);
    return 0;
}

static void drive_apply(struct ide_drive *d, const struct drive_state *s,
                        const uint8_t *buf)
{
    d->status = s->status;
    d->error = s->error;
    d->lheads = s->lheads;
    d->lspt = s->lspt;
    d->mult = s->mult;
    d->wcache = s->wcache;
    d->xfer_mode = s->xfer_mode;
    d->pio = s->pio;
    d->pos = s->pos;
    d->end = s->end;
    d->lba = s->lba;
    d->left = s->left;
    d->block = s->block;
    d->from_disk = s->from_disk;
    d->dma = s->dma;
    d->limit = s->limit;
    memcpy(d->cdb, s->cdb, sizeof(d->cdb));
    d->sense_key = s->sense_key;
    d->asc = s->asc;
    d->ascq = s->ascq;
    d->ejected = s->ejected;
    d->locked = s->locked;
    if (s->has_buf)
        memcpy(d->buf, buf, IDE_BUF_SIZE);
}

static int ide_state_load(void *opaque, struct vmstate_cursor *r)
{
    struct ide_channel *ch = opaque;
    struct drive_state ds[2];
    static uint8_t bufs[2][IDE_BUF_SIZE]; /* bus lock held: one loader */
    uint8_t tf[12], intrq, bm_cmd, bm_status, pending;
    uint8_t unit = 0, to_mem = 0, from_disk = 0;
    uint32_t prd;
    uint64_t off = 0, bytes = 0;

    vms_get(r, tf, sizeof(tf));
    intrq = vms_get_bool(r);
    bm_cmd = vms_get_u8(r);
    bm_status = vms_get_u8(r);
    prd = vms_get_u32(r);
    pending = vms_get_bool(r);
    if (pending) {
        unit = vms_get_u8(r);
        to_mem = vms_get_bool(r);
        from_disk = vms_get_bool(r);
        off = vms_get_u64(r);
        bytes = vms_get_u64(r);
    }
    memset(ds, 0, sizeof(ds));
    for (int u = 0; u < 2 && !r->err; u++)
        drive_read(ch, &ch->drive[u], &ds[u], bufs[u], r);
    if (vms_finish(r))
        return r->err;
    if (pending && unit > 1)
        return vms_fail(r, -EINVAL, "IDE %d: DMA command for drive %u",
                        ch->index, unit);
    if (pending) {
        struct ide_drive *d = &ch->drive[unit];
        uint64_t size = from_disk ? d->sectors * (d->atapi ? CD_BLOCK
                                                           : BLK_SECTOR_SIZE)
                                  : IDE_BUF_SIZE;

        if (!d->present || !ds[unit].has_buf || off > size ||
            bytes > size - off || (!from_disk && !to_mem) ||
            (d->atapi && !to_mem))
            return vms_fail(r, -EINVAL, "IDE %d-%d: DMA command out of "
                            "range (%llu + %llu)", ch->index, unit,
                            (unsigned long long)off,
                            (unsigned long long)bytes);
    }
    pthread_mutex_lock(&ch->lock);
    /* what this machine did before (nothing: it has not run) goes */
    ide_dma_stop(ch, NULL);
    ch->feature = tf[0];
    ch->count = tf[1];
    ch->lba_low = tf[2];
    ch->lba_mid = tf[3];
    ch->lba_high = tf[4];
    ch->hob_feature = tf[5];
    ch->hob_count = tf[6];
    ch->hob_lba_low = tf[7];
    ch->hob_lba_mid = tf[8];
    ch->hob_lba_high = tf[9];
    ch->device = tf[10];
    ch->control = tf[11];
    ch->bm_cmd = bm_cmd & 0x09;
    ch->bm_status = bm_status & 0x67;
    ch->prd_addr = prd & ~3u;
    for (int u = 0; u < 2; u++)
        if (ch->drive[u].present)
            drive_apply(&ch->drive[u], &ds[u], bufs[u]);
    if (pending) {
        struct ide_drive *d = &ch->drive[unit];

        ch->req = (struct ide_dma_req){ .d = d, .to_mem = to_mem,
                                        .off = off, .bytes = bytes,
                                        .from_disk = from_disk,
                                        .gen = d->dma_gen };
        /* waits for the start bit, which the save did not see set */
        ch->dma_pending = true;
    }
    ch->intrq = intrq;
    ide_sync_irq(ch);
    pthread_mutex_unlock(&ch->lock);
    return 0;
}

static const struct bus_state_ops ide_channel_state = {
    .save = ide_state_save, .load = ide_state_load,
};

int ide_state_register(struct ide_channel *ch)
{
    char name[32];

    snprintf(name, sizeof(name), "ide 0x%x", ch->cmd_base);
    return bus_register_state(ch->ide->bus, name, &ide_channel_state, ch);
}
