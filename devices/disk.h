/* The --disk option shared by every disk model (virtio-blk, IDE): one
 * parser and one way to open the image, so that format, readonly,
 * snapshot, cache, discard, serial and locking mean the same whatever
 * bus the disk sits on. */
#ifndef CALF_DEVICES_DISK_H
#define CALF_DEVICES_DISK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

#define DISK_SERIAL_MAX 20 /* virtio-blk GET_ID and ATA IDENTIFY both hold 20 */

enum disk_if { DISK_IF_VIRTIO, DISK_IF_IDE };
enum disk_cache { DISK_CACHE_WRITEBACK, DISK_CACHE_NONE, DISK_CACHE_UNSAFE };

struct disk_stats;

struct disk_opts {
    char *spec;            /* the parsed copy: file points into it */
    const char *file;
    const char *format;    /* NULL: probe */
    int iface;             /* enum disk_if */
    int index;             /* IDE slot 0-3 (index=N), -1: next free */
    bool cdrom;            /* media=cdrom: an ATAPI drive, read-only */
    bool readonly, snapshot, unmap;
    bool modern;           /* disable-legacy: virtio 1af4:1042 only */
    int cache;             /* enum disk_cache */
    char serial[DISK_SERIAL_MAX + 1];
    /* Where the drive counts its requests (the monitor's
     * query-blockstats, vmm/qmp.c); NULL: not counted.  Set by the
     * machine, owned by it, outlives the drive. */
    struct disk_stats *stats;
    int arg;               /* its place among the --disk options, -1: none */
};

/* FILE[,format=F][,if=virtio|ide][,index=N][,media=disk|cdrom][,readonly]
 * [,snapshot][,cache=writeback|none|unsafe][,discard=ignore|unmap]
 * [,serial=S][,disable-legacy[=on|off]] (virtio only); ",," is a comma
 * inside FILE.  Prints "calf: --disk ..." on a bad spec; returns 0 or a
 * negative errno.  disk_opts_free() after. */
int disk_parse(const char *spec, struct disk_opts *o);
void disk_opts_free(struct disk_opts *o);

/* Opens the image as the options say (write-locked unless read-only or a
 * snapshot overlay); prints what went wrong and returns NULL on failure. */
BlockDriverState *disk_open(const struct disk_opts *o);

/* The images disk_open() opened, in opening order (the machine opens
 * them in --disk order): for saving and restoring the VM into them
 * (vmm/snapshot.c).  Valid until the disk models close them
 * (machine_destroy()).  Returns how many; fills at most max. */
struct disk_opened {
    BlockDriverState *bs;
    const char *file;      /* as given to --disk */
    bool overlay;          /* ,snapshot: a throw-away overlay */
};
int disk_opened_list(struct disk_opened *out, int max);
/* bs is about to be closed before the machine ends (a CD's medium the
 * monitor changed): it leaves that list. */
void disk_forget(BlockDriverState *bs);

/* ---- A disk's live image (the monitor's live snapshot and commit) ----
 *
 * A disk model does its block-layer requests on the image that
 * disk_live_enter() gives and says disk_live_leave() when the request is
 * done.  The monitor (vmm) quiesces a disk with disk_live_hold(): it
 * waits until no request is between enter and leave, and from then on
 * enter waits, so that no request is lost or reordered while the image
 * changes under the disk (disk_live_set_bs()); disk_live_release() lets
 * the waiting requests go on, on the new image.  A request that is split
 * in pieces (virtio-blk's VBLK_PIECE, IDE's DMA_IOV) enters once per
 * piece: its pieces before the switch land in the old image, those after
 * in the new one, which reads the old as its backing file, so the guest
 * sees one disk throughout.
 *
 * Enter may wait (for the length of a hold); a model calls it where it
 * may block on I/O anyway (its I/O thread, or a vCPU in a PIO access).
 * Holds are taken by one thread at a time per disk (others wait).
 *
 * Write tracking (an active commit's mirror): between
 * disk_live_track_start() and _stop(), every write a model reports at
 * leave marks its range dirty (at leave, after the data is in the image,
 * so a copier that takes a range clean and then reads it either sees
 * the write or finds the range dirty again). */
struct disk_live;

/* The live image of the disk that disk_open(o) opened (o->arg), NULL if
 * none.  Valid until the process ends. */
struct disk_live *disk_live_get(int arg);
struct disk_live *disk_live_of(BlockDriverState *bs); /* by its first image */
BlockDriverState *disk_live_enter(struct disk_live *l);
void disk_live_leave(struct disk_live *l, uint64_t off, uint64_t len,
                     bool write);
/* The image, for a model's setup and teardown, or the holder. */
BlockDriverState *disk_live_bs(struct disk_live *l);
/* Teardown (the model's threads stopped): closes the image's chain. */
void disk_live_close(struct disk_live *l);
void disk_live_hold(struct disk_live *l);
void disk_live_release(struct disk_live *l);
/* Held: the image the disk serves from now on. */
void disk_live_set_bs(struct disk_live *l, BlockDriverState *bs);
/* Tracking in units of gran bytes (a power of two), all clean at first;
 * -ENOMEM, -EBUSY if already on. */
int disk_live_track_start(struct disk_live *l, uint64_t gran);
void disk_live_track_stop(struct disk_live *l);
/* the disk's size: its first image's, what the model shows the guest */
uint64_t disk_live_size(struct disk_live *l);
void disk_live_mark(struct disk_live *l, uint64_t off, uint64_t len);
/* The first dirty unit at or after *pos (wrapping around), made clean:
 * true and *pos its offset, false when none is dirty. */
bool disk_live_take_dirty(struct disk_live *l, uint64_t *pos);
uint64_t disk_live_dirty_count(struct disk_live *l); /* in units */

/* The spec of a --cdrom FILE: FILE with its commas doubled, as an IDE
 * cdrom.  malloc'd; NULL on ENOMEM. */
char *disk_cdrom_spec(const char *file);

/* ---- Request accounting (QEMU's BlockAcctStats, as query-blockstats
 * shows it).  The drives' I/O threads and vCPUs count, the monitor reads
 * on the main thread: every counter is an atomic of its own (a reader
 * may see one request's ops before its bytes, never a torn value).
 * What counts where follows QEMU 7.2's virtio-blk and IDE: a request
 * refused before any I/O (out of range, bad length) is "invalid", one
 * the image failed is "failed", the rest count their operation and
 * bytes when they complete; write-zeroes counts as a write, a discard
 * as nothing (virtio-blk) or an unmap (IDE TRIM). */
enum disk_acct { DISK_ACCT_READ, DISK_ACCT_WRITE, DISK_ACCT_FLUSH,
                 DISK_ACCT_UNMAP, DISK_ACCT_TYPES };

/* Events waiting for the monitor: BLOCK_IO_ERROR (a request failed and
 * the error went to the guest) and DEVICE_TRAY_MOVED (the guest opened
 * or closed a CD's tray).  A small ring: when the monitor falls behind,
 * the oldest I/O errors are dropped and counted (tray events stay
 * while there is an error to drop). */
#define DISK_ERR_RING 32
enum disk_event_kind { DISK_EV_IO_ERROR, DISK_EV_TRAY };
struct disk_event {
    int kind;        /* enum disk_event_kind */
    bool write;      /* "operation": read or write (flush, discard: write) */
    int err;         /* positive errno */
    bool tray_open;  /* DISK_EV_TRAY: where the tray is now */
};

struct disk_stats {
    _Atomic uint64_t bytes[DISK_ACCT_TYPES];
    _Atomic uint64_t ops[DISK_ACCT_TYPES];
    _Atomic uint64_t failed[DISK_ACCT_TYPES];
    _Atomic uint64_t invalid[DISK_ACCT_TYPES];
    _Atomic uint64_t time_ns[DISK_ACCT_TYPES];
    _Atomic uint64_t wr_highest;     /* end of the furthest write, bytes */
    _Atomic int64_t last_ns;   /* the last access (disk_acct_now), 0: none */
    /* images under the drive's own (backing files): QEMU's "backing"
     * nodes; set when the drive opens (or changes) its image */
    atomic_int backing_depth;
    /* the host file's own (QEMU's "file" node driver-specific stats) */
    _Atomic uint64_t discard_ok, discard_failed, discard_bytes_ok;
    /* BLOCK_IO_ERROR: filled by I/O threads, drained by the monitor */
    pthread_mutex_t err_lock;
    bool err_lock_init;
    struct disk_event err[DISK_ERR_RING];
    unsigned err_head, err_count;
    uint64_t err_dropped;
};

/* How many backing images bs stands on (0: none). */
int disk_backing_depth(const BlockDriverState *bs);

/* Makes s ready (zero counters); disk_stats_fini() after. */
void disk_stats_init(struct disk_stats *s);
void disk_stats_fini(struct disk_stats *s);
/* The clock requests are timed with (CLOCK_MONOTONIC, ns). */
int64_t disk_acct_now(void);
/* A request of type t started at start_ns (disk_acct_now()) completed:
 * counted with its bytes, or as failed.  s may be NULL. */
void disk_acct_done(struct disk_stats *s, enum disk_acct t, uint64_t bytes,
                    int64_t start_ns, bool failed);
/* A request refused before any I/O. */
void disk_acct_invalid(struct disk_stats *s, enum disk_acct t);
/* A write (or write-zeroes) to [off, off+len) succeeded. */
void disk_acct_wr_end(struct disk_stats *s, uint64_t off, uint64_t len);
/* The host file's discard of len bytes: done or failed. */
void disk_acct_discard(struct disk_stats *s, uint64_t len, bool ok);
/* A request failed and the guest was told (BLOCK_IO_ERROR). */
void disk_io_error(struct disk_stats *s, bool write, int err);
/* The tray moved (DEVICE_TRAY_MOVED). */
void disk_tray_moved(struct disk_stats *s, bool open);
/* Takes the oldest waiting event into *e: true if there was one. */
bool disk_event_pop(struct disk_stats *s, struct disk_event *e);

#endif
