/* quorum: QEMU's replication node ("driver=quorum,vote-threshold=N,
 * children.0.driver=file,children.0.filename=A,children.1...").  Every
 * write goes to every child and succeeds when at least vote-threshold of
 * them took it; a read reads every child (read-pattern=quorum) and
 * returns the content most children agree on, if at least vote-threshold
 * do, else EIO; with read-pattern=fifo the first child that answers.
 * rewrite-corrupted=on writes the winning content back over the
 * children that disagreed.  A node without a host file of its own
 * (no_file); a format sits on it through block/proto.c. */
#include "block/block.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUORUM_MAX 16

typedef struct QuorumState {
    int n;
    BlockDriverState *child[QUORUM_MAX];
    uint64_t threshold;
    bool fifo, rewrite;
    /* Writes hold their range exclusively, reads shared: two writes of
     * the same bytes reach every child in the same order, and a read
     * never sees one child before a write and another after it (the
     * children would disagree with nothing wrong) */
    BlkRangeLock ranges;
} QuorumState;

static void quorum_close(BlockDriverState *bs)
{
    QuorumState *s = bs->opaque;
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        blk_close(s->child[i]);
    free(s);
    bs->opaque = NULL;
}

/* children.I.*: the child's own options */
static int child_opts(BlockOptions *opts, int i, BlockOptions *out, bool *any)
{
    char prefix[32];
    size_t pl = (size_t)snprintf(prefix, sizeof(prefix), "children.%d.", i);
    *any = false;
    for (int k = 0; k < opts->n; k++) {
        BlockOpt *o = &opts->opt[k];
        if (!strncmp(o->key, prefix, pl - 1) && o->key[pl - 1] == '\0') {
            blk_set_error("Cannot find device='%s' nor node-name='%s'", o->value, o->value);
            return -EINVAL;
        }
        if (strncmp(o->key, prefix, pl))
            continue;
        o->used = true;
        *any = true;
        if (blkopts_set(out, o->key + pl, o->value ? o->value : "on") < 0)
            return -ENOMEM;
    }
    return 0;
}

static int do_open(BlockDriverState *bs, BlockOptions *opts)
{
    QuorumState *s = calloc(1, sizeof(*s));
    if (!s) {
        blk_set_error("out of memory");
        return -ENOMEM;
    }
    s->ranges = (BlkRangeLock)BLK_RANGE_LOCK_INIT;
    bs->opaque = s;
    int r = 0;
    /* count the children first: QEMU's order of complaints */
    int n = 0;
    for (int i = 0; i < opts->n; i++) {
        unsigned idx;
        if (sscanf(opts->opt[i].key, "children.%u", &idx) == 1 && idx < QUORUM_MAX &&
            (int)idx + 1 > n)
            n = (int)idx + 1;
    }
    if (n < 1) {
        blk_set_error("Number of provided children must be 1 or more");
        return -EINVAL;
    }
    const char *pattern = blkopts_get(opts, "read-pattern");
    if (blkopts_get_uint(opts, "vote-threshold", 0, &s->threshold) < 0 ||
        blkopts_get_bool(opts, "rewrite-corrupted", false, &s->rewrite) < 0)
        return -EINVAL;
    bool verify;
    if (blkopts_get_bool(opts, "blkverify", false, &verify) < 0)
        return -EINVAL;
    if (s->threshold < 1) {
        blk_set_error("Parameter 'vote-threshold' expects a value >= 1");
        return -ERANGE;
    }
    if (s->threshold > (uint64_t)n) {
        blk_set_error("threshold may not exceed children count");
        return -ERANGE;
    }
    if (pattern && strcmp(pattern, "quorum") && strcmp(pattern, "fifo")) {
        blk_set_error("Please set read-pattern as fifo or quorum");
        return -EINVAL;
    }
    s->fifo = pattern && !strcmp(pattern, "fifo");
    if (!s->fifo && verify && (n != 2 || s->threshold != 2)) {
        blk_set_error("blkverify=on can only be set if there are exactly two files and "
                      "vote-threshold is 2");
        return -EINVAL;
    }
    if (!s->fifo && verify && s->rewrite) {
        blk_set_error("rewrite-corrupted=on cannot be used with blkverify=on");
        return -EINVAL;
    }
    int cflags = bs->flags & (BLK_O_RDWR | BLK_O_SHARE | BLK_O_NOCACHE | BLK_O_UNSAFE);
    for (int i = 0; i < n && r == 0; i++) {
        BlockOptions co = {0};
        bool any;
        if ((r = child_opts(opts, i, &co, &any)) == 0 && !any) {
            blk_set_error("Option children is not a valid array");
            r = -EINVAL;
        }
        if (r == 0) {
            /* a child of its own: a host file is opened as raw */
            s->child[i] = blk_open(NULL, NULL, cflags, &co);
            if (!s->child[i])
                r = -EINVAL;
            else
                s->n = i + 1;
        }
        blkopts_free(&co);
    }
    if (r == -ENOMEM)
        blk_set_error("out of memory");
    if (r < 0)
        return r;
    /* every child the same length, as QEMU's getlength demands */
    bs->size = s->child[0]->size;
    for (int i = 1; i < s->n; i++)
        if (s->child[i]->size != bs->size) {
            blk_set_error("Could not refresh total sector count: Input/output error");
            return -EIO;
        }
    return 0;
}

/* A driver whose open fails is not closed: what it opened, it closes. */
static int quorum_open(BlockDriverState *bs, BlockOptions *opts)
{
    int r = do_open(bs, opts);
    if (r < 0)
        quorum_close(bs);
    return r;
}

static int quorum_read_locked(BlockDriverState *bs, uint64_t off, void *buf, size_t len);

static int quorum_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    QuorumState *s = bs->opaque;
    BlkRange held;
    /* a rewrite of what disagreed is a write: exclusive then */
    blk_range_lock(&s->ranges, &held, 0, off, off + len, s->rewrite);
    int r = quorum_read_locked(bs, off, buf, len);
    blk_range_unlock(&s->ranges, &held);
    return r;
}

static int quorum_read_locked(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    QuorumState *s = bs->opaque;
    if (s->fifo) {
        int r = -EIO;
        for (int i = 0; i < s->n && r < 0; i++)
            r = blk_pread(s->child[i], off, buf, len);
        return r;
    }
    uint8_t *v[QUORUM_MAX] = {0};
    int ret[QUORUM_MAX], ok = 0, err = -EIO, r = 0;
    for (int i = 0; i < s->n; i++) {
        if (!(v[i] = malloc(len ? len : 1))) {
            r = -ENOMEM;
            goto out;
        }
        if ((ret[i] = blk_pread(s->child[i], off, v[i], len)) == 0)
            ok++;
        else
            err = ret[i];
    }
    if ((uint64_t)ok < s->threshold) {
        r = err;
        goto out;
    }
    /* the version with the most votes; the first child's among equals */
    int best = -1, best_votes = 0;
    for (int i = 0; i < s->n; i++) {
        if (ret[i])
            continue;
        int votes = 0;
        for (int j = 0; j < s->n; j++)
            votes += !ret[j] && !memcmp(v[i], v[j], len);
        if (votes > best_votes) {
            best = i;
            best_votes = votes;
        }
    }
    if ((uint64_t)best_votes < s->threshold) {
        blk_set_error("%s: quorum not reached at offset %" PRIu64, bs->filename, off);
        r = -EIO;
        goto out;
    }
    memcpy(buf, v[best], len);
    for (int i = 0; s->rewrite && i < s->n; i++)
        if (!ret[i] && memcmp(v[i], v[best], len))
            (void)blk_pwrite(s->child[i], off, v[best], len); /* best effort */
out:
    for (int i = 0; i < s->n; i++)
        free(v[i]);
    return r;
}

/* A request every child gets: done when at least vote-threshold did it. */
enum { Q_WRITE, Q_ZERO, Q_DISCARD, Q_FLUSH };

static int quorum_all(BlockDriverState *bs, int op, uint64_t off, const void *buf,
                      uint64_t len, int flags)
{
    QuorumState *s = bs->opaque;
    int ok = 0, err = 0;
    BlkRange held;
    if (op != Q_FLUSH)
        blk_range_lock(&s->ranges, &held, 0, off, off + len, true);
    for (int i = 0; i < s->n; i++) {
        BlockDriverState *c = s->child[i];
        int r = op == Q_WRITE     ? blk_pwrite(c, off, buf, len)
                : op == Q_ZERO    ? blk_pwrite_zeroes(c, off, len, flags)
                : op == Q_DISCARD ? blk_discard(c, off, len)
                                  : blk_flush(c);
        if (r == 0)
            ok++;
        else if (!err)
            err = r;
    }
    if (op != Q_FLUSH)
        blk_range_unlock(&s->ranges, &held);
    if (op == Q_FLUSH)
        return ok ? 0 : err; /* QEMU: one child that flushed is enough */
    return (uint64_t)ok >= s->threshold ? 0 : err;
}

static int quorum_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    return quorum_all(bs, Q_WRITE, off, buf, len, 0);
}

static int quorum_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    return quorum_all(bs, Q_ZERO, off, NULL, len, flags);
}

static int quorum_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    return quorum_all(bs, Q_DISCARD, off, NULL, len, 0);
}

static int quorum_flush(BlockDriverState *bs)
{
    return quorum_all(bs, Q_FLUSH, 0, NULL, 0, 0);
}

/* Every child: what a format above writes past the end grows them all,
 * as it grows the files under QEMU's quorum. */
static int quorum_truncate(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink)
{
    QuorumState *s = bs->opaque;
    for (int i = 0; i < s->n; i++) {
        int r = blk_truncate(s->child[i], size, prealloc, shrink);
        if (r < 0)
            return r;
    }
    bs->size = size;
    return 0;
}

static int64_t quorum_allocated_size(BlockDriverState *bs)
{
    QuorumState *s = bs->opaque;
    int64_t sum = 0;
    for (int i = 0; i < s->n; i++) {
        int64_t a = blk_allocated_size(s->child[i]);
        if (a < 0)
            return a;
        sum += a;
    }
    return sum;
}

const BlockDriver blk_quorum_driver = {
    .name = "quorum",
    .no_file = true,
    .open = quorum_open,
    .close = quorum_close,
    .pread = quorum_pread,
    .pwrite = quorum_pwrite,
    .pwrite_zeroes = quorum_pwrite_zeroes,
    .discard = quorum_discard,
    .flush = quorum_flush,
    .truncate = quorum_truncate,
    .allocated_size = quorum_allocated_size,
};
