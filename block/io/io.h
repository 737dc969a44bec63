/* calf-io: qemu-io's core commands over the block layer. */
#ifndef CALF_IO_H
#define CALF_IO_H

#include <stdbool.h>

#include "block/block.h"

/* calf-io's own open flag beside the BLK_O_* ones (never given to the
 * block layer): -k or -i native asked for native AIO, which QEMU allows
 * only with cache.direct=on.  calf has no AIO modes to choose. */
#define IO_O_NATIVE_AIO 0x40000000

/* The image calf-io works on, and how it was opened: reopen opens it
 * again the same way with what it changes. */
typedef struct IoImage {
    BlockDriverState *bs;   /* NULL when no file is open */
    char *filename;         /* NULL when the options name the file */
    char *fmt;              /* -f, or NULL */
    char *opts;             /* "open -o" / --image-opts options, or NULL */
    int flags;              /* BLK_O_* as asked for (BLK_O_RDWR included) */
    bool snapshot;          /* -s: writes go to a throw-away overlay */
    bool copy_on_read;      /* -C: reads from the backing chain are kept */
    bool force_share;       /* -U */
    bool writethrough;      /* flush after every write: qemu-io's default
                               cache mode (QEMU's write cache disabled) */
} IoImage;

/* Opens an image as qemu-io does, for its file argument and the "open"
 * command alike: filename (NULL: opts name it) with the format fmt and
 * the options opts (both may be NULL).  Prints qemu-io's error and
 * returns a negative errno on failure; img is not changed then. */
int io_open(IoImage *img, const char *filename, const char *fmt, const char *opts, int flags,
            bool snapshot, bool copy_on_read, bool force_share, bool writethrough);
/* Flushes and closes the image (nothing if none is open): 0, or the
 * flush's error after printing it. */
int io_close(IoImage *img);
/* qemu-io's cache modes ("none", "writeback", ...) into flags and
 * *writethrough; -EINVAL (nothing changed) for an unknown one. */
int io_parse_cache(const char *mode, int *flags, bool *writethrough);
/* Opens the image again with flags (BLK_O_RDWR as -r/-w made it) and
 * the options opts added to those it has; -r/-w and -c were given when
 * rw_given/cache_given (then opts must not say the same).  Changes
 * nothing but prints qemu-io's error on failure (-errno). */
int io_reopen(IoImage *img, int flags, bool writethrough, const char *opts, bool rw_given,
              bool cache_given);
/* -d discard mode and -i aio mode: checked as QEMU checks them (after
 * printing the error: -EINVAL); -i native sets IO_O_NATIVE_AIO in flags,
 * the rest calf has nothing to tune for. */
int io_check_tuning(int opt, const char *value, int *flags);
/* Copy-on-read: [off, off+len) of the image's top layer gets the bytes
 * its backing chain has for every cluster it does not hold itself.
 * buf: where the read of [off, +len) goes, piece by piece as QEMU reads
 * it (a top blkdebug sees the pieces and copies in that order); NULL:
 * only copy, the caller reads after. */
int io_copy_on_read(IoImage *img, uint64_t off, uint64_t len, void *buf);

/* Runs one command line ("write -P 0xab 0 64k") against img (whose bs
 * may be NULL when no file is open).  Returns 0, or a negative errno if
 * the command failed; *quit is set by "quit". */
int io_command(IoImage *img, const char *line, bool *quit);
/* Waits for the aio requests still running (before the image closes). */
void io_aio_drain(void);

#endif
