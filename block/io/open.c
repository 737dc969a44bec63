/* calf-io: opening, closing and reopening the image, as qemu-io does:
 * for the file on the command line and the open/close/reopen commands. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/blkdebug.h"
#include "block/img/img.h"
#include "block/io/io.h"
#include "block/tool-util.h"

int io_parse_cache(const char *mode, int *flags, bool *writethrough)
{
    int f = *flags & ~(BLK_O_NOCACHE | BLK_O_UNSAFE);
    bool wt = false;
    if (!strcmp(mode, "none") || !strcmp(mode, "off"))
        f |= BLK_O_NOCACHE;
    else if (!strcmp(mode, "directsync"))
        f |= BLK_O_NOCACHE, wt = true;
    else if (!strcmp(mode, "unsafe"))
        f |= BLK_O_UNSAFE;
    else if (!strcmp(mode, "writethrough"))
        wt = true;
    else if (strcmp(mode, "writeback"))
        return -EINVAL;
    *flags = f;
    *writethrough = wt;
    return 0;
}

int io_check_tuning(int opt, const char *value, int *flags)
{
    static const char *const discard[] = {"off", "ignore", "on", "unmap", NULL};
    static const char *const aio[] = {"threads", "native", "io_uring", NULL};
    for (const char *const *v = opt == 'd' ? discard : aio; *v; v++) {
        if (strcmp(*v, value))
            continue;
        if (opt == 'i' && !strcmp(value, "native"))
            *flags |= IO_O_NATIVE_AIO; /* (and stays, whatever -i says next) */
        return 0;
    }
    fprintf(stderr, "%s: Invalid %s option: %s\n", tool_progname, opt == 'd' ? "discard" : "aio",
            value);
    return -EINVAL;
}

/* reopen's errors read "qemu-io: why", not "can't open ...: why" */
static bool reopening;

static void open_error(const char *filename, const char *msg)
{
    if (reopening)
        fprintf(stderr, "%s: %s\n", tool_progname, msg);
    else if (filename)
        fprintf(stderr, "%s: can't open device %s: %s\n", tool_progname, filename, msg);
    else
        fprintf(stderr, "%s: can't open: %s\n", tool_progname, msg);
}

/* QEMU's protocol drivers for host files: what they demand of the file
 * (file-posix's checks, in their words), before calf reads it as raw. */
static bool is_protocol(const char *drv)
{
    return drv && (!strcmp(drv, "file") || !strcmp(drv, "host_device") ||
                   !strcmp(drv, "host_cdrom"));
}

static int protocol_check(const char *drv, const char *fn, bool rw)
{
    int fd = open(fn, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        blk_set_error("Could not open '%s': %s", fn, strerror(e));
        return -e;
    }
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    close(fd);
    if (r < 0) {
        blk_set_error("Could not stat file: %s", strerror(-r));
        return r;
    }
    if (!strcmp(drv, "file") && !S_ISREG(st.st_mode)) {
        blk_set_error("'%s' driver requires '%s' to be a regular file", drv, fn);
        return -EINVAL;
    }
    if (strcmp(drv, "file") && !S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
        blk_set_error("'%s' driver requires '%s' to be either a character or block device",
                      drv, fn);
        return -EINVAL;
    }
    return 0;
}

/* The options qemu-io's block layer takes for every node, which calf's
 * drivers do not know: applied to flags here, or only remembered (node
 * names: reopen compares them).  Marks them used; -EINVAL on a bad value,
 * 1 when read-only=on meets a backend that wants to write (an error only
 * once the image has opened, as in QEMU). */
static int generic_options(BlockOptions *o, int *flags, bool *force_share)
{
    static const char *const ignored[] = {
        "node-name", "file.node-name", "backing.node-name", "auto-read-only", "discard",
        "detect-zeroes", "file.aio", "file.locking", "locking",
    };
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        blkopts_get(o, ignored[i]);
    /* ignored, but only values QEMU takes (its words for the others) */
    const char *dz = blkopts_get(o, "detect-zeroes"), *dc = blkopts_get(o, "discard");
    if (dz && strcmp(dz, "off") && strcmp(dz, "on") && strcmp(dz, "unmap")) {
        blk_set_error("invalid parameter value: %s", dz);
        return -EINVAL;
    }
    if (dc && strcmp(dc, "ignore") && strcmp(dc, "off") && strcmp(dc, "unmap") &&
        strcmp(dc, "on")) {
        blk_set_error("Invalid discard option");
        return -EINVAL;
    }
    /* the host file is what calf opens anyway; another protocol is for
     * the block layer to take or refuse */
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->opt[i].key, "file.driver") && !strcmp(o->opt[i].value, "file"))
            o->opt[i].used = true;
    bool ro, direct, noflush, fs, aro;
    int r;
    if ((r = blkopts_get_bool(o, "read-only", !(*flags & BLK_O_RDWR), &ro)) < 0 ||
        (r = blkopts_get_bool(o, "auto-read-only", false, &aro)) < 0 ||
        (r = blkopts_get_bool(o, "cache.direct", *flags & BLK_O_NOCACHE, &direct)) < 0 ||
        (r = blkopts_get_bool(o, "cache.no-flush", *flags & BLK_O_UNSAFE, &noflush)) < 0 ||
        (r = blkopts_get_bool(o, "force-share", *force_share, &fs)) < 0)
        return r;
    /* qemu-io wants to write unless -r: a read-only node cannot do */
    bool conflict = ro && (*flags & BLK_O_RDWR) && blkopts_get(o, "read-only");
    const char *aio = blkopts_get(o, "file.aio");
    if (aio)
        *flags = !strcmp(aio, "native") ? *flags | IO_O_NATIVE_AIO : *flags & ~IO_O_NATIVE_AIO;
    const char *lock = blkopts_get(o, "locking");
    if (!lock)
        lock = blkopts_get(o, "file.locking");
    *flags = (*flags & ~(BLK_O_RDWR | BLK_O_NOCACHE | BLK_O_UNSAFE)) | (ro ? 0 : BLK_O_RDWR) |
             (direct ? BLK_O_NOCACHE : 0) | (noflush ? BLK_O_UNSAFE : 0);
    if (lock && !strcmp(lock, "off"))
        *flags |= BLK_O_SHARE; /* no lock taken */
    *force_share = fs;
    return conflict;
}

/* "k=v,k=v" of the options nobody used yet (",," for a comma in a value),
 * for the --image-opts open; NULL on ENOMEM. */
static char *unused_options(const BlockOptions *o)
{
    size_t len = 1;
    for (int i = 0; i < o->n; i++)
        len += strlen(o->opt[i].key) + 2 * strlen(o->opt[i].value) + 2;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (int i = 0; i < o->n; i++) {
        if (o->opt[i].used)
            continue;
        if (p != s)
            *p++ = ',';
        p += sprintf(p, "%s=", o->opt[i].key);
        for (const char *v = o->opt[i].value; *v; v++) {
            if (*v == ',')
                *p++ = ',';
            *p++ = *v;
        }
    }
    *p = 0;
    return s;
}

/* Opens the image for io_open (which see); *flags and *force_share come
 * back as the options made them, *fn the file name used.  filter: opts
 * are a copy-on-read filter's child's. */
static BlockDriverState *open_bs(const char *filename, const char *fmt, const char *opts,
                                 bool filter, int *flags, bool snapshot, bool *force_share,
                                 const char **fn)
{
    BlockOptions o = {0};
    BlockDriverState *bs = NULL;
    *fn = filename;
    if (opts && blkopts_parse(&o, opts) < 0) {
        blk_set_error("Invalid options: %s", opts);
        open_error(filename, blk_error());
        return NULL;
    }
    int conflict = generic_options(&o, flags, force_share);
    if (conflict < 0) {
        open_error(filename, blk_error());
        goto out;
    }
    if (*force_share && (*flags & BLK_O_RDWR)) {
        open_error(filename, "force-share=on can only be used with read-only images");
        goto out;
    }
    const char *drv = blkopts_get(&o, "driver");
    const char *name = filename;
    if (!name && is_protocol(drv))
        name = blkopts_get(&o, "filename");
    if (!name && snapshot)
        name = blkopts_get(&o, "file.filename");
    if (drv)
        fmt = drv;
    int f = (*flags & ~IO_O_NATIVE_AIO) | (*force_share ? BLK_O_SHARE : 0);
    if (!name && is_protocol(drv)) {
        char msg[64];
        snprintf(msg, sizeof(msg), "The '%s' block driver requires a file name", drv);
        open_error(NULL, msg);
        goto out;
    }
    if (!name) {
        /* the options name the file: the --image-opts way */
        char *rest = unused_options(&o);
        if (!rest) {
            open_error(NULL, "out of memory");
            goto out;
        }
        if (!*rest && !drv) {
            /* a filter's child must be named, the image itself by something */
            open_error(NULL, filter ? "A block device must be specified for \"file\"" :
                       "Must specify either driver or file");
            free(rest);
            goto out;
        }
        if (drv) {
            char *full = malloc(strlen(rest) + strlen(drv) + 16);
            if (full)
                sprintf(full, "driver=%s%s%s", drv, *rest ? "," : "", rest);
            free(rest);
            rest = full;
        }
        bs = rest ? img_open_image_opts(rest, f) : NULL;
        free(rest);
        goto opened;
    }
    *fn = name;
    if (is_protocol(fmt)) {
        if (protocol_check(fmt, name, *flags & BLK_O_RDWR) < 0) {
            open_error(filename, blk_error());
            goto out;
        }
        fmt = "raw";
    }
    blkopts_get(&o, "file.filename");
    if (snapshot) {
        /* the overlay is writable; -r still makes the image read-only */
        bs = blk_open_snapshot(name, fmt, f);
        if (bs && !(*flags & BLK_O_RDWR))
            bs->read_only = true;
    } else {
        /* what calf-io does not take itself is the drivers' to judge */
        BlockOptions rest = {0};
        for (int i = 0; i < o.n; i++)
            if (!o.opt[i].used && !(filename && !strcmp(o.opt[i].key, "filename")))
                blkopts_set(&rest, o.opt[i].key, o.opt[i].value);
        bs = blk_open(name, fmt, f, rest.n ? &rest : NULL);
        blkopts_free(&rest);
    }
    if (!bs)
        open_error(filename, blk_error());
opened:
    if (bs && conflict) {
        open_error(filename, "Block node is read-only");
        blk_close(bs);
        bs = NULL;
    }
    if (bs && (*flags & IO_O_NATIVE_AIO) && !(*flags & BLK_O_NOCACHE)) {
        /* QEMU's file driver demands it once the file has opened */
        open_error(filename, "aio=native was specified, but it requires cache.direct=on, "
                   "which was not specified.");
        blk_close(bs);
        bs = NULL;
    }
out:
    blkopts_free(&o);
    return bs;
}

/* QEMU's copy-on-read filter driver ("driver=copy-on-read,file.driver=
 * qcow2"): calf opens its file child, the image, as -C does.  *inner gets
 * the options with the filter taken off (file.X becomes X); 1 if opts name
 * the filter, 0 if not, -ENOMEM. */
static int cor_filter_options(const char *opts, char **inner)
{
    BlockOptions o = {0}, in = {0};
    int r = 0;
    if (blkopts_parse(&o, opts) == 0 && blkopts_get(&o, "driver") &&
        !strcmp(blkopts_get(&o, "driver"), "copy-on-read")) {
        for (int i = 0; i < o.n && r == 0; i++) {
            const char *k = o.opt[i].key;
            if (strcmp(k, "driver"))
                r = blkopts_set(&in, strncmp(k, "file.", 5) ? k : k + 5, o.opt[i].value);
        }
        r = r < 0 ? r : (*inner = unused_options(&in)) ? 1 : -ENOMEM;
    }
    blkopts_free(&o);
    blkopts_free(&in);
    return r;
}

int io_open(IoImage *img, const char *filename, const char *fmt, const char *opts, int flags,
            bool snapshot, bool copy_on_read, bool force_share, bool writethrough)
{
    if (img->bs) {
        fprintf(stderr, "%s: file open already, try 'help close'\n", tool_progname);
        return -EBUSY;
    }
    if (img_image_opts && filename && !opts) {
        opts = filename;
        filename = NULL;
    }
    char *inner = NULL;
    int r = opts ? cor_filter_options(opts, &inner) : 0;
    if (r < 0) {
        open_error(filename, strerror(-r));
        return r;
    }
    const char *fn;
    int f = flags;
    bool fs = force_share, filter = r > 0;
    BlockDriverState *bs = open_bs(filename, fmt, filter ? inner : opts, filter, &f, snapshot, &fs,
                                   &fn);
    free(inner);
    if (!bs)
        return -EINVAL;
    if ((copy_on_read || filter) && bs->read_only) {
        /* the filter needs write access to its child; -C says so itself */
        open_error(filename, filter ? "Block node is read-only" :
                   "Can't use copy-on-read on read-only device");
        blk_close(bs);
        return -EINVAL;
    }
    if (!img_image_opts && !opts) {
        /* as qemu-io: an encrypted image needs its key (--image-opts) */
        BlockInfo info = {0};
        bool encrypted = blk_get_info(bs, &info) == 0 && info.encrypted;
        blk_info_free(&info);
        if (encrypted) {
            open_error(filename, "Parameter 'encrypt.key-secret' is required for cipher");
            blk_close(bs);
            return -EINVAL;
        }
        if (!fmt && !bs->read_only && !strcmp(bs->drv->name, "raw"))
            fprintf(stderr, "WARNING: Image format was not specified for '%s' and probing "
                    "guessed raw.\n         Automatically detecting the format is dangerous "
                    "for raw images, write operations on block 0 will be restricted.\n"
                    "         Specify the 'raw' format explicitly to remove the "
                    "restrictions.\n", filename);
    }
    /* writethrough, qemu-io's default: each write is flushed before it
     * completes, and a failed flush fails the write (as QEMU's FUA) */
    if (writethrough)
        bs->flags |= BLK_O_WRITETHROUGH;
    *img = (IoImage){
        .bs = bs,
        .filename = filename ? strdup(filename) : NULL,
        .fmt = fmt ? strdup(fmt) : NULL,
        .opts = opts ? strdup(opts) : NULL,
        .flags = f, /* as the options made them: reopen starts from there */
        .snapshot = snapshot,
        .copy_on_read = copy_on_read || filter,
        .force_share = force_share,
        .writethrough = writethrough,
    };
    return 0;
}

int io_close(IoImage *img)
{
    /* aio requests end first (a request stopped at a blkdebug breakpoint
     * is let go) */
    io_aio_drain();
    if (img->bs) {
        /* As QEMU closes an image: a flush whose failure goes unsaid (the
         * driver's close reports what it could not write back), so the
         * exit status is the commands' alone, as qemu-io's is. */
        blk_flush(img->bs);
        blk_close(img->bs);
    }
    free(img->filename);
    free(img->fmt);
    free(img->opts);
    *img = (IoImage){0};
    return 0;
}

/* Allocation in bs's own layer: 1 allocated, 0 not, or -errno. */
static int top_allocated(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum)
{
    int st = blk_block_status(bs, off, len, pnum, NULL);
    return st < 0 ? st : !!(st & BLK_STATUS_ALLOCATED);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return !n || (!p[0] && !memcmp(p, p + 1, n - 1));
}

#define COR_CHUNK (1u << 20)

/* The part of [s, +n) in [off, +len), into buf (at its place there). */
static void put_part(uint8_t *buf, uint64_t off, uint64_t len, const uint8_t *from, uint64_t s,
                     uint64_t n)
{
    uint64_t a = s > off ? s : off, b = s + n < off + len ? s + n : off + len;
    if (buf && a < b)
        memcpy(buf + (a - off), from + (a - s), b - a);
}

int io_copy_on_read(IoImage *img, uint64_t off, uint64_t len, void *out)
{
    BlockDriverState *bs = img->bs;
    if (!len)
        return 0;
    BlockInfo info = {0};
    uint64_t cs = blk_get_info(bs, &info) == 0 && info.cluster_size ? info.cluster_size : 65536;
    blk_info_free(&info);
    /* whole clusters, as QEMU copies them, but not past the end */
    uint64_t start = off / cs * cs, end = (off + len + cs - 1) / cs * cs;
    if (end > bs->size)
        end = bs->size;
    uint8_t *buf = NULL;
    int r = 0;
    while (start < end && r >= 0) {
        uint64_t n = end - start < COR_CHUNK ? end - start : COR_CHUNK, pnum;
        r = top_allocated(bs, start, n, &pnum);
        if (r < 0 || !pnum)
            break;
        if (r == 1 && out) {
            /* allocated here: read as it is, only what was asked */
            uint64_t a = start > off ? start : off;
            uint64_t b = start + pnum < off + len ? start + pnum : off + len;
            r = a < b ? blk_pread(bs, a, (uint8_t *)out + (a - off), b - a) : 0;
        } else if (r == 0) {
            /* read through the chain (zeros without one), keep it in the
             * top layer, as QEMU does: zeros as zeros, data as data */
            if (!buf && !(buf = malloc(COR_CHUNK))) {
                r = -ENOMEM;
                break;
            }
            if ((r = blk_pread(bs, start, buf, pnum)) < 0)
                break;
            put_part(out, off, len, buf, start, pnum);
            /* QEMU's block layer copies at the top node: a blkdebug
             * named as the top node sees it */
            blkdebug_top_event(bs, BLKDBG_COR_WRITE);
            if (all_zero(buf, pnum))
                r = blk_pwrite_zeroes(bs, start, pnum, 0);
            else
                r = blk_pwrite(bs, start, buf, pnum);
        }
        start += pnum;
    }
    free(buf);
    /* what the loop did not get to (no status for it) is read as is */
    if (r >= 0 && out && start < off + len) {
        uint64_t a = start > off ? start : off;
        r = blk_pread(bs, a, (uint8_t *)out + (a - off), off + len - a);
    }
    return r < 0 ? r : 0;
}

static void reopen_error(const char *msg)
{
    fprintf(stderr, "%s: %s\n", tool_progname, msg);
}

/* What QEMU does not let a reopen change: a node's name and driver. */
static int check_unchanged(const IoImage *img, BlockOptions *n)
{
    static const char *const names[] = {"node-name", "file.node-name", "backing.node-name"};
    BlockOptions old = {0};
    if (img->opts)
        blkopts_parse(&old, img->opts);
    int r = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && r == 0; i++) {
        const char *want = blkopts_get(n, names[i]), *had = blkopts_get(&old, names[i]);
        if (want && (!had || strcmp(want, had))) {
            reopen_error("Cannot change the option 'node-name'");
            r = -EINVAL;
        }
    }
    blkopts_free(&old);
    if (r < 0)
        return r;
    const BlockDriverState *bs = img->bs;
    const char *drv = blkopts_get(n, "driver"), *fdrv = blkopts_get(n, "file.driver");
    const char *bdrv = blkopts_get(n, "backing.driver");
    if ((drv && strcmp(drv, bs->drv->name)) || (fdrv && strcmp(fdrv, "file")) ||
        (bdrv && (!bs->backing || strcmp(bdrv, bs->backing->drv->name)))) {
        reopen_error("Cannot change the option 'driver'");
        return -EINVAL;
    }
    return 0;
}

/* Options a reopen may give new values: the generic ones and, for qcow2,
 * its runtime options.  ignored: QEMU's that calf has nothing to change
 * for (accepted, as QEMU accepts them). */
static const char *const reopen_generic[] = {
    "read-only", "auto-read-only", "cache.direct", "cache.no-flush", NULL,
};
static const char *const reopen_qcow2[] = {
    "lazy-refcounts", "l2-cache-size", "l2-cache-entry-size", "refcount-cache-size",
    "cache-size", "cache-clean-interval", NULL,
};
static const char *const reopen_ignored[] = {
    "discard", "detect-zeroes", "node-name", "file.node-name", "backing.node-name", "driver",
    "file.driver", "backing.driver", NULL,
};
static const char *const reopen_qcow2_ignored[] = {
    "pass-discard-request", "pass-discard-snapshot", "pass-discard-other", "discard-no-unref",
    "overlap-check", "encrypt.", NULL, /* a trailing '.': the prefix of a group */
};

static bool in_list(const char *const *list, const char *key)
{
    for (; *list; list++) {
        size_t n = strlen(*list);
        if (!strcmp(*list, key) || ((*list)[n - 1] == '.' && !strncmp(*list, key, n)) ||
            (!strncmp(*list, key, n) && key[n] == '.'))
            return true;
    }
    return false;
}

enum { REOPEN_FIXED, REOPEN_TAKEN, REOPEN_IGNORED };

static int reopen_kind(const BlockDriverState *bs, const char *key)
{
    bool qcow2 = !strcmp(bs->drv->name, "qcow2");
    if (in_list(reopen_generic, key) || (qcow2 && in_list(reopen_qcow2, key)))
        return REOPEN_TAKEN;
    if (in_list(reopen_ignored, key) || (qcow2 && in_list(reopen_qcow2_ignored, key)))
        return REOPEN_IGNORED;
    return REOPEN_FIXED;
}

/* Any other option keeps the value it was opened with, as in QEMU. */
static int check_fixed(const IoImage *img, BlockOptions *n)
{
    BlockOptions old = {0};
    if (img->opts)
        blkopts_parse(&old, img->opts);
    int r = 0;
    for (int i = 0; i < n->n && r == 0; i++) {
        const char *key = n->opt[i].key, *had;
        if (reopen_kind(img->bs, key) != REOPEN_FIXED)
            continue;
        had = blkopts_get(&old, key);
        if (!had || strcmp(had, n->opt[i].value)) {
            char msg[300];
            /* QEMU names the file's options as the file node sees them */
            snprintf(msg, sizeof(msg), "Cannot change the option '%s'",
                     strncmp(key, "file.", 5) ? key : key + 5);
            reopen_error(msg);
            r = -EINVAL;
        }
    }
    blkopts_free(&old);
    return r;
}

static int check_reopen_options(const IoImage *img, const char *opts, bool rw_given,
                                bool cache_given)
{
    BlockOptions n = {0};
    if (opts && blkopts_parse(&n, opts) < 0) {
        reopen_error("Invalid options");
        return -EINVAL;
    }
    int r = 0;
    bool v;
    if (blkopts_get(&n, "read-only") && rw_given) {
        reopen_error("Cannot set both -r/-w and 'read-only'");
        r = -EINVAL;
    } else if ((blkopts_get(&n, "cache.direct") || blkopts_get(&n, "cache.no-flush")) &&
               cache_given) {
        reopen_error("Cannot set both -c and the cache options");
        r = -EINVAL;
    } else if (blkopts_get_bool(&n, "read-only", false, &v) < 0 ||
               blkopts_get_bool(&n, "cache.no-flush", false, &v) < 0 ||
               blkopts_get_bool(&n, "cache.direct", false, &v) < 0 ||
               blkopts_get_bool(&n, "auto-read-only", false, &v) < 0) {
        reopen_error(blk_error());
        r = -EINVAL;
    } else if ((r = check_unchanged(img, &n)) == 0) {
        r = check_fixed(img, &n);
    }
    blkopts_free(&n);
    return r;
}

int io_reopen(IoImage *img, int flags, bool writethrough, const char *opts, bool rw_given,
              bool cache_given)
{
    int r = check_reopen_options(img, opts, rw_given, cache_given);
    if (r < 0)
        return r;
    if (img->snapshot) {
        /* the overlay is a deleted file: it stays open, only its
         * read-only state can change */
        BlockOptions n = {0};
        bool ro = !(flags & BLK_O_RDWR);
        if (opts)
            blkopts_parse(&n, opts);
        blkopts_get_bool(&n, "read-only", ro, &ro);
        blkopts_free(&n);
        img->bs->read_only = ro;
        img->writethrough = writethrough;
        return 0;
    }
    IoImage old = *img;
    /* QEMU checks the AIO mode when it opens the file, not on a reopen */
    flags &= ~IO_O_NATIVE_AIO;
    old.flags &= ~IO_O_NATIVE_AIO;
    /* The options it was opened with, overridden by the new ones that a
     * reopen takes (what was found unchanged or is ignored stays out).
     * read-only and cache.* become flags, which -r/-w and -c change. */
    static const char *const as_flags[] = {"read-only", "cache.direct", "cache.no-flush"};
    BlockOptions all = {0}, n = {0};
    if ((old.opts && blkopts_parse(&all, old.opts) < 0) || (opts && blkopts_parse(&n, opts) < 0))
        r = -EINVAL;
    bool ro = !(flags & BLK_O_RDWR), direct = flags & BLK_O_NOCACHE;
    bool noflush = flags & BLK_O_UNSAFE;
    blkopts_get_bool(&n, "read-only", ro, &ro);
    if (r == 0 && ro && (flags & BLK_O_RDWR)) {
        /* qemu-io keeps its write permission unless -r asks it not to */
        const char *name = blkopts_get(&all, "node-name");
        char msg[300];
        snprintf(msg, sizeof(msg), "Read-only block node '%s' cannot support read-write users",
                 name ? name : "#block000");
        reopen_error(msg);
        r = -EPERM;
    }
    blkopts_get_bool(&n, "cache.direct", direct, &direct);
    blkopts_get_bool(&n, "cache.no-flush", noflush, &noflush);
    flags = (flags & ~(BLK_O_RDWR | BLK_O_NOCACHE | BLK_O_UNSAFE)) | (ro ? 0 : BLK_O_RDWR) |
            (direct ? BLK_O_NOCACHE : 0) | (noflush ? BLK_O_UNSAFE : 0);
    for (int i = 0; i < n.n && r == 0; i++)
        if (!n.opt[i].used && reopen_kind(old.bs, n.opt[i].key) == REOPEN_TAKEN)
            r = blkopts_set(&all, n.opt[i].key, n.opt[i].value);
    for (size_t i = 0; i < sizeof(as_flags) / sizeof(as_flags[0]); i++)
        blkopts_get(&all, as_flags[i]);
    char *merged = r == 0 ? unused_options(&all) : NULL;
    blkopts_free(&all);
    blkopts_free(&n);
    if (!merged)
        return r < 0 ? r : -ENOMEM;
    const char *nopts = *merged ? merged : NULL;
    /* the image's own lock is gone before it is taken again (closing
     * writes out what is cached) */
    blk_close(old.bs);
    *img = (IoImage){0};
    reopening = true;
    r = io_open(img, old.filename, old.fmt, nopts, flags, false, old.copy_on_read,
                old.force_share, writethrough);
    if (r < 0) {
        /* back to what it was, as QEMU keeps it */
        r = io_open(img, old.filename, old.fmt, old.opts, old.flags, false, old.copy_on_read,
                    old.force_share, old.writethrough);
        r = r < 0 ? r : -EINVAL;
    }
    reopening = false;
    free(old.filename);
    free(old.fmt);
    free(old.opts);
    free(merged);
    return r;
}
