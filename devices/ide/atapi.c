/* ATAPI CD-ROM (SFF-8020i / MMC): the PACKET protocol on top of the
 * IDE registers and the SCSI commands firmware and drivers send to a
 * read-only data disc of 2048-byte blocks. */
#include "devices/ide/ide-int.h"

#include <errno.h>
#include <string.h>

/* sense keys and additional sense codes */
#define SK_NONE            0x0
#define SK_NOT_READY       0x2
#define SK_MEDIUM_ERROR    0x3
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION  0x6
#define ASC_READ_ERROR        0x11
#define ASC_INVALID_OPCODE    0x20
#define ASC_LBA_OUT_OF_RANGE  0x21
#define ASC_INVALID_FIELD     0x24
#define ASC_MEDIUM_CHANGED    0x28
#define ASC_SAVING_PARAMS     0x39
#define ASC_NO_MEDIUM         0x3a
#define ASC_REMOVAL_PREVENTED 0x53

#define CD_MAX_BLOCKS 333000 /* more than a CD holds: call it a DVD */

void atapi_identify(struct ide_drive *d, uint16_t *w)
{
    memset(w, 0, 512);
    /* ATAPI, CD-ROM, removable, DRQ within 50 us, 12-byte packets */
    w[0] = 0x8000 | 5 << 8 | 1 << 7 | 2 << 5;
    ide_put_string(w + 10, d->serial, 10);
    ide_put_string(w + 23, "1.0", 4);
    ide_put_string(w + 27, "CALF DVD-ROM", 20);
    w[49] = 1 << 11 | 1 << 9 | 1 << 8; /* IORDY, LBA, DMA */
    w[53] = 0x0007;
    w[63] = 0x0007 |
            ((d->xfer_mode & 0xf8) == 0x20 ? 0x100 << (d->xfer_mode & 7) : 0);
    w[64] = 0x0003;
    w[65] = w[66] = w[67] = w[68] = 120;
    w[71] = 30;                        /* PACKET to bus release, ns */
    w[72] = 30;
    w[80] = 0x00f0;
    w[82] = 1 << 14 | 1 << 4;          /* NOP, PACKET */
    w[83] = 1 << 14;
    w[84] = 1 << 14;
    w[85] = 1 << 14 | 1 << 4;
    w[87] = 1 << 14;
    w[88] = 0x003f |
            ((d->xfer_mode & 0xf8) == 0x40 ? 0x100 << (d->xfer_mode & 7) : 0);
}

/* ---- phases ---- */

void atapi_packet(struct ide_drive *d)
{
    struct ide_channel *ch = d->ch;
    unsigned limit = ch->lba_mid | ch->lba_high << 8;

    /* 0xffff reads as 0xfffe, as on QEMU (hosts write it for "no
     * limit"); other odd limits are made even only where a chunk must be
     * (atapi_chunk), and 0 and 1 are refused at data-in. */
    d->limit = limit == 0xffff ? 0xfffe : limit;
    d->from_disk = false;
    d->dma = ch->feature & 1;
    ch->count = IR_CD;
    ide_pio_start(d, sizeof(d->cdb), PIO_ATAPI_CDB, false);
}

static void atapi_done(struct ide_drive *d)
{
    d->ch->count = IR_CD | IR_IO;
    d->error = 0;
    d->status = ST_DRDY | ST_DSC;
    d->pio = PIO_NONE;
    ide_raise_irq(d->ch);
}

static void atapi_fail(struct ide_drive *d, uint8_t key, uint8_t asc)
{
    d->sense_key = key;
    d->asc = asc;
    d->ascq = 0;
    d->ch->count = IR_CD | IR_IO;
    ide_abort(d, (uint8_t)(key << 4 | ER_ABRT));
}

/* The next DRQ chunk: all that is left when the byte count limit allows
 * it, else the limit made even - only a transfer's last chunk may have an
 * odd length (ATA8-ACS, PACKET; QEMU does the same).  Never 0 once
 * atapi_data_in() accepted the limit. */
static unsigned atapi_chunk(const struct ide_drive *d)
{
    if (d->left <= d->limit)
        return (unsigned)d->left;
    return d->limit & ~1u;
}

/* Sends the next DRQ chunk of a data-in: at most the byte count limit. */
void atapi_next_chunk(struct ide_drive *d)
{
    struct ide_channel *ch = d->ch;
    unsigned n;

    if (!d->left) {
        atapi_done(d);
        return;
    }
    n = atapi_chunk(d);
    if (d->from_disk && !d->bs) { /* the monitor took the disc out */
        atapi_fail(d, SK_NOT_READY, ASC_NO_MEDIUM);
        return;
    }
    if (d->from_disk) {
        int64_t t0 = disk_acct_now();
        int ret;

        if (n > IDE_BUF_SIZE)
            n = IDE_BUF_SIZE;
        ret = blk_pread(d->bs, d->lba, d->buf, n);
        /* QEMU reads (and counts) a PIO transfer a 2048-byte block at a
         * time: one request for each block that starts in this chunk (a
         * block split over two chunks is read once) */
        for (uint64_t at = (d->lba + CD_BLOCK - 1) / CD_BLOCK * CD_BLOCK;
             ret >= 0 && at < d->lba + n; at += CD_BLOCK)
            disk_acct_done(d->stats, DISK_ACCT_READ, CD_BLOCK,
                           at > d->lba ? disk_acct_now() : t0, false);
        if (ret < 0) {
            /* counted failed; QEMU's PIO path tells only the guest, no
             * BLOCK_IO_ERROR (its DMA path sends one) */
            disk_acct_done(d->stats, DISK_ACCT_READ, 0, t0, true);
            atapi_fail(d, SK_MEDIUM_ERROR, ASC_READ_ERROR);
            return;
        }
        d->pos = 0;
    } else {
        d->pos = d->end; /* the reply sits in buf, sent in pieces */
    }
    d->lba += n;
    d->left -= n;
    d->end = d->pos + n;
    ch->lba_mid = (uint8_t)n;
    ch->lba_high = (uint8_t)(n >> 8);
    ch->count = IR_IO;
    d->pio = PIO_ATAPI_DATA;
    d->error = 0;
    d->status = ST_DRDY | ST_DSC | ST_DRQ;
    ide_raise_irq(ch);
}

/* A data-in of len bytes: from buf (a reply) or the image at off. */
static void atapi_data_in(struct ide_drive *d, uint64_t off, uint64_t len,
                          bool from_disk)
{
    if (!len) {
        atapi_done(d);
        return;
    }
    d->from_disk = from_disk;
    if (d->dma) {
        ide_dma_submit(d, true, off, len, from_disk);
        return;
    }
    if (len > d->limit && d->limit < 2) {
        /* A limit of 0, or of 1 with more than a byte to send, leaves no
         * chunk to offer: a chunk of 0 would sit with DRQ set forever.
         * The PACKET command aborts at the ATA level, no sense data, as
         * QEMU does for a limit of 0 (ATA8-ACS: the limit shall not be
         * 0 for a PIO data transfer). */
        d->ch->count = IR_CD | IR_IO;
        ide_abort(d, ER_ABRT);
        return;
    }
    d->lba = off;
    d->left = len;
    d->pos = d->end = 0;
    atapi_next_chunk(d);
}

static void atapi_reply(struct ide_drive *d, unsigned len, unsigned alloc)
{
    atapi_data_in(d, 0, len < alloc ? len : alloc, false);
}

void atapi_dma_done(struct ide_drive *d, int error)
{
    if (error == -EIO)
        atapi_fail(d, SK_MEDIUM_ERROR, ASC_READ_ERROR);
    else if (error == -ENOMEDIUM)
        atapi_fail(d, SK_NOT_READY, ASC_NO_MEDIUM);
    else if (error)
        atapi_fail(d, SK_ILLEGAL_REQUEST, 0);
    else
        atapi_done(d);
}

/* ---- commands ---- */

static void cmd_request_sense(struct ide_drive *d)
{
    uint8_t *b = d->buf;

    memset(b, 0, 18);
    b[0] = 0x70;
    b[2] = d->sense_key;
    b[7] = 10;
    b[12] = d->asc;
    b[13] = d->ascq;
    atapi_reply(d, 18, d->cdb[4]);
    if (!(d->status & ST_ERR)) /* an aborted REQUEST SENSE reported nothing */
        d->sense_key = d->asc = d->ascq = 0;
}

static void cmd_inquiry(struct ide_drive *d)
{
    uint8_t *b = d->buf;

    if (d->cdb[1] & 1) { /* no vital product data pages */
        atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    memset(b, 0, 36);
    b[0] = 0x05;  /* CD/DVD device */
    b[1] = 0x80;  /* removable */
    b[2] = 0x00;
    b[3] = 0x21;  /* ATAPI, response data format 1 */
    b[4] = 31;
    memcpy(b + 8, "CALF    ", 8);
    memcpy(b + 16, "CALF DVD-ROM    ", 16);
    memcpy(b + 32, "1.0 ", 4);
    atapi_reply(d, 36, d->cdb[4]);
}

static void cmd_read_capacity(struct ide_drive *d)
{
    put_be32(d->buf, d->sectors ? (uint32_t)(d->sectors - 1) : 0);
    put_be32(d->buf + 4, CD_BLOCK);
    atapi_reply(d, 8, 8);
}

/* As QEMU's cmd_read(): 0 blocks is done wherever, before the range
 * check; a READ out of range is refused, not counted (not "invalid"). */
static void cmd_read(struct ide_drive *d, uint64_t lba, uint64_t n)
{
    if (!n) {
        atapi_done(d);
        return;
    }
    if (lba > d->sectors || n > d->sectors - lba) {
        atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    atapi_data_in(d, lba * CD_BLOCK, n * CD_BLOCK, true);
}

static unsigned mode_page(struct ide_drive *d, unsigned page, uint8_t *p)
{
    switch (page) {
    case 0x01: /* read error recovery */
        memset(p, 0, 8);
        p[0] = 0x01;
        p[1] = 6;
        p[3] = 5;  /* read retry count */
        return 8;
    case 0x2a: /* capabilities and mechanical status */
        memset(p, 0, 22);
        p[0] = 0x2a;
        p[1] = 20;
        p[2] = 0x3b; /* reads CD-R/RW, DVD-ROM/R/RAM */
        p[4] = 0x71; /* multi-session, mode 2 form 1/2, audio play */
        p[5] = 0xff;
        p[6] = 0x29 | (d->locked ? 0x02 : 0); /* tray, eject, lock */
        put_be16(p + 8, 706);   /* max speed, kB/s */
        put_be16(p + 10, 2);    /* volume levels */
        put_be16(p + 12, 512);  /* buffer, KiB */
        put_be16(p + 14, 706);  /* current speed */
        return 22;
    }
    return 0;
}

static void cmd_mode_sense(struct ide_drive *d)
{
    unsigned pc = d->cdb[2] >> 6, page = d->cdb[2] & 0x3f, len = 8;
    uint8_t *b = d->buf;

    if (pc == 3) {
        atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMS);
        return;
    }
    memset(b, 0, 8);
    b[2] = 0x70; /* medium type: no further detail */
    if (page == 0x3f) {
        len += mode_page(d, 0x01, b + len);
        len += mode_page(d, 0x2a, b + len);
    } else {
        unsigned n = mode_page(d, page, b + len);

        if (!n) {
            atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            return;
        }
        len += n;
    }
    put_be16(b, (uint16_t)(len - 2));
    atapi_reply(d, len, get_be16(d->cdb + 7));
}

static unsigned add_feature(uint8_t *p, uint16_t code, uint8_t flags,
                            const uint8_t *data, uint8_t len)
{
    put_be16(p, code);
    p[2] = flags;
    p[3] = len;
    memcpy(p + 4, data, len);
    return 4u + len;
}

static void cmd_get_configuration(struct ide_drive *d)
{
    bool dvd = d->sectors > CD_MAX_BLOCKS;
    unsigned rt = d->cdb[1] & 3, start = get_be16(d->cdb + 2), len = 8;
    uint8_t profiles[8] = { 0x00, 0x10, dvd, 0, 0x00, 0x08, !dvd, 0 };
    uint8_t core[8] = { 0, 0, 0, 2, 1, 0, 0, 0 };        /* ATAPI, DBE */
    uint8_t removable[4] = { 0x29, 0, 0, 0 };            /* tray, eject, lock */
    uint8_t read[8] = { 0x08, 0x00, 0, 1, 0, 0, 0, 0 };  /* random read 2048 */
    const struct {
        uint16_t code;
        const uint8_t *data;
        uint8_t n;
        uint8_t flags;
    } f[] = {
        { 0x0000, profiles, 8, 0x03 }, { 0x0001, core, 8, 0x07 },
        { 0x0003, removable, 4, 0x03 }, { 0x0010, read, 8, 0x01 },
    };
    uint8_t *b = d->buf;

    if (rt == 3) {
        atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    memset(b, 0, 8);
    put_be16(b + 6, dvd ? 0x0010 : 0x0008);
    for (unsigned i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].code < start || (rt == 2 && f[i].code != start))
            continue;
        len += add_feature(b + len, f[i].code, f[i].flags, f[i].data, f[i].n);
    }
    put_be32(b, len - 4);
    atapi_reply(d, len, get_be16(d->cdb + 7));
}

/* LBA to MSF, with the 2-second lead-in. */
static void put_msf(uint8_t *p, uint64_t lba)
{
    lba += 150;
    p[0] = 0;
    p[1] = (uint8_t)(lba / (60 * 75));
    p[2] = (uint8_t)(lba / 75 % 60);
    p[3] = (uint8_t)(lba % 75);
}

static void put_addr(uint8_t *p, uint64_t lba, bool msf)
{
    if (msf)
        put_msf(p, lba);
    else
        put_be32(p, (uint32_t)lba);
}

static void cmd_read_toc(struct ide_drive *d)
{
    bool msf = d->cdb[1] & 2;
    unsigned format = d->cdb[2] & 0x0f, track = d->cdb[6], len = 4;
    uint8_t *b = d->buf;

    if (!format && (d->cdb[9] >> 6))
        format = d->cdb[9] >> 6; /* the old MMC place for it */
    memset(b, 0, 20);
    b[2] = b[3] = 1;
    if (format == 0) {
        if (track > 1 && track != 0xaa) {
            atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            return;
        }
        if (track <= 1) {
            b[len + 1] = 0x14; /* ADR 1, a data track */
            b[len + 2] = 1;
            put_addr(b + len + 4, 0, msf);
            len += 8;
        }
        b[len + 1] = 0x14;
        b[len + 2] = 0xaa; /* lead-out */
        put_addr(b + len + 4, d->sectors, msf);
        len += 8;
    } else if (format == 1) { /* session info: one session at track 1 */
        b[len + 1] = 0x14;
        b[len + 2] = 1;
        put_addr(b + len + 4, 0, msf);
        len += 8;
    } else {
        atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    put_be16(b, (uint16_t)(len - 2));
    atapi_reply(d, len, get_be16(d->cdb + 7));
}

static void cmd_event_status(struct ide_drive *d)
{
    uint8_t *b = d->buf;
    unsigned len = 4;

    if (!(d->cdb[1] & 1)) { /* only polled mode */
        atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return;
    }
    memset(b, 0, 8);
    b[3] = 0x10; /* media events are supported */
    if (d->cdb[4] & 0x10) {
        b[2] = 0x04; /* media class */
        /* tray open (1), or a disc present (2); an event is reported
         * once, and not while the tray is open (as QEMU) */
        b[5] = d->ejected ? 0x01 : d->bs ? 0x02 : 0;
        if (!d->ejected && d->ev_new_media) {
            b[4] = 0x02; /* new media */
            d->ev_new_media = false;
        } else if (!d->ejected && d->ev_eject_request) {
            b[4] = 0x01; /* eject requested */
            d->ev_eject_request = false;
        }
        len = 8;
    } else {
        b[2] = 0x80; /* no event available */
    }
    put_be16(b, (uint16_t)(len - 4));
    atapi_reply(d, len, get_be16(d->cdb + 7));
}

static void cmd_start_stop(struct ide_drive *d)
{
    bool loej = d->cdb[4] & 2, start = d->cdb[4] & 1;

    if (d->cdb[4] & 0xf0) { /* a power condition: no tray movement */
        atapi_done(d);
        return;
    }
    if (loej && !start && !d->ejected && d->locked) {
        atapi_fail(d, d->bs ? SK_NOT_READY : SK_ILLEGAL_REQUEST,
                   ASC_REMOVAL_PREVENTED);
        return;
    }
    if (loej && d->ejected != !start) {
        d->ejected = !start; /* the same disc comes back on load */
        disk_tray_moved(d->stats, d->ejected);
    }
    atapi_done(d);
}

/* Commands that need a disc in the drive. */
static bool needs_medium(uint8_t op)
{
    return op == 0x00 || op == 0x25 || op == 0x28 || op == 0xa8 ||
           op == 0x43 || op == 0x2b;
}

/* Commands that run while a UNIT ATTENTION is pending (MMC; QEMU's). */
static bool allow_ua(uint8_t op)
{
    return op == 0x03 || op == 0x12 || op == 0x46 || op == 0x4a;
}

void atapi_cdb_received(struct ide_drive *d)
{
    const uint8_t *c = d->cdb;

    /* A pending UNIT ATTENTION fails every other command, keeping its
     * sense for REQUEST SENSE. */
    if (d->sense_key == SK_UNIT_ATTENTION && !allow_ua(c[0])) {
        d->ch->count = IR_CD | IR_IO;
        ide_abort(d, (uint8_t)(SK_UNIT_ATTENTION << 4 | ER_ABRT));
        return;
    }
    /* The monitor changed the disc: first "no disc", then "it may have
     * changed", for guests that do not ask GET EVENT STATUS. */
    if (!allow_ua(c[0]) && !d->ejected && d->bs && d->cdrom_changed) {
        if (d->cdrom_changed == 1) {
            atapi_fail(d, SK_NOT_READY, ASC_NO_MEDIUM);
            d->cdrom_changed = 2;
        } else {
            atapi_fail(d, SK_UNIT_ATTENTION, ASC_MEDIUM_CHANGED);
            d->cdrom_changed = 0;
        }
        return;
    }
    if ((d->ejected || !d->bs) && needs_medium(c[0])) {
        atapi_fail(d, SK_NOT_READY, ASC_NO_MEDIUM);
        return;
    }
    /* Any command but REQUEST SENSE starts with a clean sense, but for
     * a pending UNIT ATTENTION: only REQUEST SENSE takes that (QEMU's;
     * a guest polling GET EVENT STATUS NOTIFICATION leaves it). */
    if (c[0] != 0x03 && d->sense_key != SK_UNIT_ATTENTION)
        d->sense_key = d->asc = d->ascq = 0;
    switch (c[0]) {
    case 0x00: atapi_done(d); break;                      /* TEST UNIT READY */
    case 0x03: cmd_request_sense(d); break;
    case 0x12: cmd_inquiry(d); break;
    case 0x1b: cmd_start_stop(d); break;
    case 0x1e: d->locked = c[4] & 1; atapi_done(d); break; /* PREVENT ALLOW */
    case 0x25: cmd_read_capacity(d); break;
    case 0x28: cmd_read(d, get_be32(c + 2), get_be16(c + 7)); break;
    case 0xa8: cmd_read(d, get_be32(c + 2), get_be32(c + 6)); break;
    case 0x2b: atapi_done(d); break;                      /* SEEK */
    case 0x43: cmd_read_toc(d); break;
    case 0x46: cmd_get_configuration(d); break;
    case 0x4a: cmd_event_status(d); break;
    case 0x5a: cmd_mode_sense(d); break;
    default:
        atapi_fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
        break;
    }
}
