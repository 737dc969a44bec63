/* Inside the PIIX3 IDE model: state shared by ide.c (registers, ATA,
 * PIO), atapi.c (PACKET commands) and dma.c (bus master).
 *
 * Locking: every register access runs on a vCPU thread under the bus
 * lock and takes its channel's lock; a channel's DMA thread takes the
 * same lock to pick up a request and to complete it, and drops it while
 * it moves data.  While a DMA request is out the drive shows BSY, so the
 * guest cannot change what the thread is using.  The DMA thread never
 * takes the bus lock, so a reset may wait for it while holding the bus
 * lock (ide_dma_stop). */
#ifndef CALF_DEVICES_IDE_INT_H
#define CALF_DEVICES_IDE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "devices/byteorder.h"
#include "devices/disk.h"

/* status register */
#define ST_ERR  0x01
#define ST_DRQ  0x08
#define ST_DSC  0x10
#define ST_DF   0x20
#define ST_DRDY 0x40
#define ST_BSY  0x80
/* error register */
#define ER_AMNF 0x01
#define ER_ABRT 0x04
#define ER_IDNF 0x10
#define ER_UNC  0x40
/* device control */
#define CTL_NIEN 0x02
#define CTL_SRST 0x04
#define CTL_HOB  0x80
/* device register */
#define DEV_LBA  0x40
#define DEV_SLAVE 0x10

/* ATAPI interrupt reason (sector count register) */
#define IR_CD 0x01
#define IR_IO 0x02

#define CD_BLOCK 2048
#define IDE_BUF_SIZE (64 * 1024)
#define IDE_MAX_MULT 16

/* What finishing the data in the buffer means. */
enum ide_pio {
    PIO_NONE,
    PIO_DONE,        /* the last data-in block: back to idle */
    PIO_ATA_READ,    /* read the next block of a read command */
    PIO_ATA_WRITE,   /* write the block the host just sent */
    PIO_ATAPI_CDB,   /* the 12 command bytes of a PACKET */
    PIO_ATAPI_DATA,  /* the next chunk of a PACKET's data-in */
};

struct ide_channel;

struct ide_drive {
    struct ide_channel *ch;
    int unit;                 /* 0 master, 1 slave */
    bool present, atapi, readonly;
    /* A CD's image (ATAPI); a disk's goes through live, which the
     * monitor may switch (devices/disk.h): a disk's block-layer requests
     * are between ide_disk_enter() and ide_disk_leave(). */
    BlockDriverState *bs;
    struct disk_live *live;
    char *name;               /* the image, for messages */
    /* 512-byte sectors (ATA), 2048-byte blocks (ATAPI) */
    uint64_t sectors;
    char serial[21];
    uint16_t cyls, heads, spt;   /* default geometry */
    uint16_t lheads, lspt;       /* INITIALIZE DEVICE PARAMETERS */
    uint8_t status, error;
    /* Bumped by a reset of this drive (DEVICE RESET, SRST, machine
     * reset): its DMA request made before drops, the other drive's goes
     * on.  Written under ch->lock, read atomically by the channel's
     * thread between block-layer requests. */
    unsigned dma_gen;
    unsigned mult;            /* SET MULTIPLE MODE, 0: off */
    bool wcache;
    uint8_t xfer_mode;        /* SET FEATURES 03h value */
    /* PIO */
    uint8_t *buf;
    unsigned pos, end;        /* the DRQ block in buf */
    int pio;                  /* enum ide_pio */
    uint64_t lba;             /* next sector (ATA) or byte offset (ATAPI) */
    uint64_t left;            /* sectors (ATA) or bytes (ATAPI) still to go */
    unsigned block;           /* sectors per DRQ block (ATA) */
    bool from_disk;           /* ATAPI data-in comes from the image */
    bool dma;                 /* ATAPI: the PACKET asked for DMA */
    unsigned limit;           /* ATAPI byte count limit */
    /* ATAPI */
    uint8_t cdb[12];
    uint8_t sense_key, asc, ascq;
    bool ejected, locked;     /* ejected: the tray is open */
    /* A medium change by the monitor (QEMU's): the next commands report
     * it, NOT READY (1), then UNIT ATTENTION (2), so that a guest that
     * only polls TEST UNIT READY sees the disc go and come; and GET
     * EVENT STATUS NOTIFICATION's media events, each reported once. */
    uint8_t cdrom_changed;
    bool ev_new_media, ev_eject_request;
    struct disk_stats *stats; /* query-blockstats, BLOCK_IO_ERROR; or NULL */
};

struct ide_dma_req {
    struct ide_drive *d;
    BlockDriverState *bs;     /* d->bs when it was made (a CD's may change) */
    bool to_mem;              /* device to memory (a read) */
    uint64_t off, bytes;      /* in the image, or in d->buf if !from_disk */
    bool from_disk;
    unsigned gen;             /* d->dma_gen when it was made */
    int64_t t0;               /* disk_acct_now() when it was made */
};

struct ide_channel {
    struct ide *ide;
    int index;
    uint16_t cmd_base, ctl_port;
    unsigned irq;
    struct ide_drive drive[2];
    /* task file, shared by both drives as on the cable */
    uint8_t feature, count, lba_low, lba_mid, lba_high;
    uint8_t hob_feature, hob_count, hob_lba_low, hob_lba_mid, hob_lba_high;
    uint8_t device, control;
    bool intrq;
    int irq_level;
    /* bus master */
    uint8_t bm_cmd, bm_status;
    uint32_t prd_addr;
    /* DMA: a command waits in req until the start bit (dma_pending); the
     * thread owns it while dma_running */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool thread_started;
    bool stop;                /* teardown: written under lock, read
                                 atomically by the thread mid-transfer */
    bool dma_pending, dma_running;
    struct ide_dma_req req;
    struct ide_dma_req active;  /* what the thread runs while dma_running */
    struct iovec *iov;
};

struct ide {
    struct pci_dev *dev;
    struct bus *bus;
    struct ide_channel ch[2];
};

static inline BlockDriverState *ide_disk_enter(struct ide_drive *d)
{
    return d->live ? disk_live_enter(d->live) : d->bs;
}

static inline void ide_disk_leave(struct ide_drive *d, uint64_t off,
                                  uint64_t len, bool write)
{
    if (d->live)
        disk_live_leave(d->live, off, len, write);
}

static inline struct ide_drive *ide_selected(struct ide_channel *ch)
{
    return &ch->drive[ch->device & DEV_SLAVE ? 1 : 0];
}

/* ide.c */
void ide_raise_irq(struct ide_channel *ch);
/* Drives the IRQ line as INTRQ and nIEN say (a loaded state). */
void ide_sync_irq(struct ide_channel *ch);
void ide_lower_irq(struct ide_channel *ch);
void ide_abort(struct ide_drive *d, uint8_t error);
/* Starts a DRQ data phase of [0, len) of d->buf; next says what ends it. */
void ide_pio_start(struct ide_drive *d, unsigned len, int next, bool irq);

/* atapi.c */
void atapi_packet(struct ide_drive *d);          /* PACKET: ask for the CDB */
void atapi_cdb_received(struct ide_drive *d);
void atapi_next_chunk(struct ide_drive *d);
void atapi_identify(struct ide_drive *d, uint16_t *w);
/* A DMA data-in of an ATAPI command finished (error: -errno). */
void atapi_dma_done(struct ide_drive *d, int error);

/* dma.c */
void ide_bm_rw(struct ide *ide, uint64_t off, uint8_t *data, unsigned size,
               bool is_write);
/* Hands a transfer to the channel's thread once the start bit is set. */
void ide_dma_submit(struct ide_drive *d, bool to_mem, uint64_t off,
                    uint64_t bytes, bool from_disk);
/* A reset of drive d (NULL: both, SRST): drops d's DMA request and, if
 * the thread is moving its data, waits until it stopped, so nothing
 * reaches guest RAM or the image once the reset is seen done.  Its
 * completion is dropped; the other drive's request, waiting or running,
 * is not touched.  ch->lock held (see dma.c for why waiting under
 * the bus lock is safe). */
void ide_dma_stop(struct ide_channel *ch, struct ide_drive *d);
/* Machine reset: ide_dma_stop() of both drives, and the bus-master
 * registers cleared.  ch->lock held. */
void ide_dma_drain(struct ide_channel *ch);
int ide_dma_start_thread(struct ide_channel *ch);
void ide_dma_stop_thread(struct ide_channel *ch);
/* The ATA side of a finished DMA command (ide.c). */
void ide_ata_dma_done(struct ide_drive *d, int error);

/* state.c: saving and restoring a channel (docs/VMSTATE.md) */
int ide_state_register(struct ide_channel *ch);

/* identify.c: the 256 words of IDENTIFY DEVICE for a disk. */
void ata_identify(struct ide_drive *d, uint16_t *w);

/* ATA strings: space-padded, two characters per word, first in the high
 * byte. */
void ide_put_string(uint16_t *w, const char *s, unsigned words);

#endif
