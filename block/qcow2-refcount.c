/* qcow2 refcounts: reading and updating them, allocating host clusters,
 * growing the refcount table, and freeing clusters in crash-safe order.
 *
 * Ordering rules (the image must survive a kill -9 or power cut at any
 * instant with at most leaked clusters):
 *  - a refcount increment reaches the file before any reference to the
 *    cluster (refcounts are written through unless lazy_refcounts is on,
 *    in which case the dirty bit covers them);
 *  - a refcount decrement reaches the file only after the metadata that
 *    stopped referencing the cluster (frees are deferred until the L2
 *    tables are written back);
 *  - a new refcount block is on disk before the table entry pointing to
 *    it, and a new refcount table before the header pointing to it. */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rb_entry_get(const Qcow2State *s, const uint8_t *b, uint64_t i)
{
    switch (s->refcount_order) {
    case 3:
        return b[i];
    case 4:
        return qcow2_be16(b + 2 * i);
    case 5:
        return qcow2_be32(b + 4 * i);
    case 6:
        return qcow2_be64(b + 8 * i);
    default: {
        uint32_t bits = s->refcount_bits;
        uint64_t bit = i * bits;
        return (b[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    }
}

static void rb_entry_set(const Qcow2State *s, uint8_t *b, uint64_t i, uint64_t v)
{
    switch (s->refcount_order) {
    case 3:
        b[i] = (uint8_t)v;
        break;
    case 4:
        qcow2_put16(b + 2 * i, (uint16_t)v);
        break;
    case 5:
        qcow2_put32(b + 4 * i, (uint32_t)v);
        break;
    case 6:
        qcow2_put64(b + 8 * i, v);
        break;
    default: {
        uint32_t bits = s->refcount_bits;
        uint64_t bit = i * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
        b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        break;
    }
    }
}

/* Byte range of entry i inside its block. */
static uint64_t rb_entry_byte(const Qcow2State *s, uint64_t i)
{
    return i * s->refcount_bits / 8;
}

int qcow2_refcount_init(Qcow2State *s)
{
    s->free_hint = 0;
    return 0;
}

/* The refcount block covering cluster, or NULL (all zero) if none. */
static int rb_lookup(Qcow2State *s, uint64_t cluster, uint8_t **block, uint64_t *block_off)
{
    uint64_t rti = cluster >> s->rb_bits;
    *block = NULL;
    *block_off = 0;
    if (rti >= s->rt_size || !(s->rt[rti] & REFT_OFFSET_MASK))
        return 0;
    uint64_t off = s->rt[rti] & REFT_OFFSET_MASK;
    if (off & (s->cluster_size - 1))
        return qcow2_mark_corrupt(s, "Refblock offset %#" PRIx64 " unaligned (reftable index: "
                                  "%#" PRIx64 ")", off, rti);
    int err = 0;
    uint8_t *b = qcow2_cache_get(s, &s->rb_cache, off, &err);
    if (!b)
        return err;
    *block = b;
    *block_off = off;
    return 0;
}

int qcow2_get_refcount(Qcow2State *s, uint64_t cluster, uint64_t *ref)
{
    uint8_t *b;
    uint64_t boff;
    int r = rb_lookup(s, cluster, &b, &boff);
    if (r < 0)
        return r;
    *ref = b ? rb_entry_get(s, b, cluster & ((1ULL << s->rb_bits) - 1)) : 0;
    return 0;
}

static int64_t find_free(Qcow2State *s, uint64_t n)
{
    uint64_t start = s->free_hint, run = 0;
    for (uint64_t c = s->free_hint;; c++) {
        if (c >= (1ULL << (56 - s->cluster_bits))) {
            blk_set_error("%s: no free host clusters below 2^56 bytes", s->bs->filename);
            return -ENOSPC;
        }
        uint64_t ref;
        int r = qcow2_get_refcount(s, c, &ref);
        if (r < 0)
            return r;
        if (ref) {
            run = 0;
            continue;
        }
        if (!run)
            start = c;
        if (++run == n)
            return (int64_t)start;
    }
}

static int write_rt_entry(Qcow2State *s, uint64_t rti)
{
    uint8_t e[8];
    qcow2_put64(e, s->rt[rti]);
    int r = blk_file_pwrite(s->fd, e, 8, s->rt_offset + rti * 8);
    if (r < 0)
        blk_set_error("%s: cannot write the refcount table: %s", s->bs->filename, strerror(-r));
    s->need_sync = true;
    return r;
}

static int grow_reftable(Qcow2State *s, uint64_t min_entries);

/* Makes sure refcount block rti exists.  The new block goes to the first
 * free cluster; when that cluster is described by the new block itself,
 * the block counts itself. */
static int create_refblock(Qcow2State *s, uint64_t rti)
{
    int r;
    if (rti >= s->rt_size)
        return grow_reftable(s, rti + 1);
    int64_t c = find_free(s, 1);
    if (c < 0)
        return (int)c;
    uint64_t crti = (uint64_t)c >> s->rb_bits;
    if (crti != rti && (crti >= s->rt_size || !s->rt[crti]))
        return create_refblock(s, crti); /* caller retries */
    uint64_t off = (uint64_t)c << s->cluster_bits;
    if ((r = qcow2_check_overlap(s, off, s->cluster_size)) < 0)
        return r;
    int err = 0;
    uint8_t *b = qcow2_cache_get_empty(s, &s->rb_cache, off, &err);
    if (!b)
        return err;
    if (crti == rti)
        rb_entry_set(s, b, (uint64_t)c & ((1ULL << s->rb_bits) - 1), 1);
    blkdebug_event(s->bs, BLKDBG_REFBLOCK_ALLOC_WRITE);
    if ((r = qcow2_cache_write_table(s, &s->rb_cache, b)) < 0)
        return r;
    if (off + s->cluster_size > s->file_end)
        s->file_end = off + s->cluster_size;
    if (crti != rti && (r = qcow2_update_refcount(s, off, s->cluster_size, 1)) < 0)
        return r;
    if (!(s->bs->flags & BLK_O_UNSAFE) && !s->bs->debug) {
        /* The table entry waits for the next sync, which writes it once
         * the block is on disk (qcow2_sync()).  Until then the file does
         * not point at the block, and nothing that points at the clusters
         * it counts is written before that sync either (deps_unsynced):
         * a crash leaks them, as it would leak the block.  An image that
         * grows by a GiB in 4 KiB clusters needs a new block every 8 MiB:
         * they cost one sync together, not one each (a commit into such a
         * base spent most of its time waiting on those syncs).  Under
         * blkdebug the entry is written here, where QEMU writes it, so
         * that an injected error fails the request QEMU's fails. */
        s->rt[rti] = off;
        if (s->rt_hook_hi == s->rt_hook_lo) {
            s->rt_hook_lo = rti;
            s->rt_hook_hi = rti + 1;
        } else {
            if (rti < s->rt_hook_lo)
                s->rt_hook_lo = rti;
            if (rti >= s->rt_hook_hi)
                s->rt_hook_hi = rti + 1;
        }
        s->need_sync = s->deps_unsynced = true;
        return 0;
    }
    if ((r = qcow2_sync(s)) < 0)
        return r;
    s->rt[rti] = off;
    blkdebug_event(s->bs, BLKDBG_REFBLOCK_ALLOC_HOOKUP);
    if ((r = write_rt_entry(s, rti)) < 0) {
        /* The table on disk does not point at the block: neither may the
         * one in memory, or later refcounts would go where no check or
         * reopen finds them (the block is only leaked). */
        s->rt[rti] = 0;
        qcow2_cache_discard(&s->rb_cache, off);
    }
    return r;
}

int qcow2_write_hookups(Qcow2State *s)
{
    /* entries between the new ones are as the file has them already (a
     * table written whole is written from s->rt), so the run is written
     * as one, into the table that is current now */
    uint64_t lo = s->rt_hook_lo, hi = s->rt_hook_hi;
    if (s->broken)
        return 0; /* nothing more reaches the file */
    if (hi > s->rt_size) {
        /* a table that replaces s->rt whole clears the pending range
         * (qcow2_rt_replaced()): entries past its end are a bug here,
         * and are kept owed (every sync fails) rather than dropped */
        blk_set_error("%s: internal error: refcount table entries %" PRIu64 "..%" PRIu64
                      " are pending beyond the table's %" PRIu64, s->bs->filename, lo, hi - 1,
                      s->rt_size);
        return -EIO;
    }
    if (lo < hi) {
        uint8_t *buf = malloc((hi - lo) * 8);
        if (!buf) {
            blk_set_error("%s: cannot write the refcount table: %s", s->bs->filename,
                          strerror(ENOMEM));
            return -ENOMEM;
        }
        for (uint64_t i = lo; i < hi; i++)
            qcow2_put64(buf + (i - lo) * 8, s->rt[i]);
        int r = blk_file_pwrite(s->fd, buf, (hi - lo) * 8, s->rt_offset + lo * 8);
        free(buf);
        if (r < 0) {
            blk_set_error("%s: cannot write the refcount table: %s", s->bs->filename,
                          strerror(-r));
            return r;
        }
    }
    s->rt_hook_lo = s->rt_hook_hi = 0;
    return 0;
}

void qcow2_rt_replaced(Qcow2State *s)
{
    /* the new table was written whole from what s->rt now holds: no
     * entry of the old one is owed to the file any more */
    s->rt_hook_lo = s->rt_hook_hi = 0;
}

static bool rt_missing(const Qcow2State *s, uint64_t rti)
{
    return rti >= s->rt_size || !s->rt[rti];
}

/* Moves the refcount table to the end of the file with room for at least
 * min_entries blocks, together with new blocks for the clusters the move
 * itself uses. */
static int grow_reftable(Qcow2State *s, uint64_t min_entries)
{
    uint64_t cs = s->cluster_size, per_cluster = cs / 8;
    uint64_t entries = s->rt_size + s->rt_size / 2 + 1;
    blkdebug_event(s->bs, BLKDBG_REFTABLE_GROW);
    if (entries < min_entries)
        entries = min_entries;
    uint64_t start = qcow2_align_up(s->file_end, cs) >> s->cluster_bits;
    uint64_t tbl_clusters, nb, end;
    for (;;) {
        entries = qcow2_align_up(entries, per_cluster);
        tbl_clusters = entries / per_cluster;
        nb = 0;
        for (;;) {
            end = start + tbl_clusters + nb;
            uint64_t missing = 0;
            for (uint64_t i = start >> s->rb_bits; i <= (end - 1) >> s->rb_bits; i++)
                missing += rt_missing(s, i);
            if (missing == nb)
                break;
            nb = missing;
        }
        if (((end - 1) >> s->rb_bits) < entries)
            break;
        entries = ((end - 1) >> s->rb_bits) + 1;
    }
    if (entries * 8 > QCOW2_MAX_REFTABLE_BYTES) {
        blk_set_error("%s: the refcount table would exceed %u bytes", s->bs->filename,
                      QCOW2_MAX_REFTABLE_BYTES);
        return -EFBIG;
    }
    uint64_t *nrt = calloc(entries, 8);
    uint8_t *buf = calloc(tbl_clusters, cs);
    if (!nrt || !buf) {
        free(nrt);
        free(buf);
        return -ENOMEM;
    }
    memcpy(nrt, s->rt, s->rt_size * 8);
    int r = 0;
    uint64_t next_block = start + tbl_clusters;
    uint64_t first = start >> s->rb_bits, last = (end - 1) >> s->rb_bits;
    blkdebug_event(s->bs, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS);
    for (uint64_t i = first; i <= last && r == 0; i++) {
        if (!rt_missing(s, i))
            continue;
        uint64_t boff = next_block++ << s->cluster_bits;
        int err = 0;
        uint8_t *b = qcow2_cache_get_empty(s, &s->rb_cache, boff, &err);
        if (!b) {
            r = err;
            break;
        }
        /* count the new clusters this block describes */
        for (uint64_t c = start; c < end; c++)
            if ((c >> s->rb_bits) == i)
                rb_entry_set(s, b, c & ((1ULL << s->rb_bits) - 1), 1);
        r = qcow2_cache_write_table(s, &s->rb_cache, b);
        nrt[i] = boff;
    }
    /* new clusters described by blocks that already exist */
    for (uint64_t c = start; c < end && r == 0; c++)
        if (!rt_missing(s, c >> s->rb_bits))
            r = qcow2_update_refcount(s, c << s->cluster_bits, cs, 1);
    if (r < 0)
        goto out;
    for (uint64_t i = 0; i < entries; i++)
        qcow2_put64(buf + 8 * i, nrt[i]);
    uint64_t new_off = start << s->cluster_bits;
    blkdebug_event(s->bs, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE);
    if ((r = blk_file_pwrite(s->fd, buf, tbl_clusters * cs, new_off)) < 0) {
        blk_set_error("%s: cannot write the refcount table: %s", s->bs->filename, strerror(-r));
        goto out;
    }
    if (end << s->cluster_bits > s->file_end)
        s->file_end = end << s->cluster_bits;
    s->need_sync = true;
    if ((r = qcow2_sync(s)) < 0)
        goto out;
    uint64_t old_off = s->rt_offset, old_clusters = s->rt_clusters;
    uint8_t hdr[12];
    qcow2_put64(hdr, new_off);
    qcow2_put32(hdr + 8, (uint32_t)tbl_clusters);
    blkdebug_event(s->bs, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE);
    if ((r = blk_file_pwrite(s->fd, hdr, 12, 48)) < 0) {
        blk_set_error("%s: cannot update the header: %s", s->bs->filename, strerror(-r));
        goto out;
    }
    s->need_sync = true;
    if ((r = qcow2_sync(s)) < 0)
        goto out;
    s->rt_offset = new_off;
    s->rt_clusters = (uint32_t)tbl_clusters;
    free(s->rt);
    s->rt = nrt;
    qcow2_rt_replaced(s);
    s->rt_size = entries;
    nrt = NULL;
    if (old_off)
        r = qcow2_update_refcount(s, old_off, old_clusters * cs, -1);
out:
    if (nrt) {
        /* Failed before the switch: the new blocks are not reachable from
         * the table on disk, so they must not stay cached as if they were
         * (what they count is leaked, never lost). */
        for (uint64_t i = first; i <= last; i++)
            if (rt_missing(s, i) && nrt[i])
                qcow2_cache_discard(&s->rb_cache, nrt[i]);
    }
    free(nrt);
    free(buf);
    return r;
}

int qcow2_mark_dirty(Qcow2State *s)
{
    if (!s->lazy || s->dirty_set)
        return 0;
    s->incompat |= QCOW2_INCOMPAT_DIRTY;
    int r = qcow2_update_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        s->dirty_set = true;
    return r;
}

int qcow2_update_refcount(Qcow2State *s, uint64_t offset, uint64_t len, int64_t delta)
{
    if (!len)
        return 0;
    /* with lazy refcounts the dirty bit covers refcounts not yet written */
    int dr = qcow2_mark_dirty(s);
    if (dr < 0)
        return dr;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    uint64_t per_block = 1ULL << s->rb_bits;
    for (uint64_t c = first; c <= last;) {
        uint8_t *b;
        uint64_t boff;
        /* QEMU's points: a refcount block is looked up for an update
         * (allocated if missing), and loaded */
        blkdebug_event(s->bs, BLKDBG_REFBLOCK_ALLOC);
        if (!rt_missing(s, c >> s->rb_bits))
            blkdebug_event(s->bs, BLKDBG_REFBLOCK_LOAD);
        int r = rb_lookup(s, c, &b, &boff);
        if (r < 0)
            return r;
        if (!b) {
            if (delta < 0)
                return qcow2_mark_corrupt(s, "freeing cluster 0x%" PRIx64 " that has no "
                                          "refcount block", c << s->cluster_bits);
            if ((r = create_refblock(s, c >> s->rb_bits)) < 0)
                return r;
            continue; /* look again: the block exists now */
        }
        uint64_t block_end = (c | (per_block - 1)) + 1;
        uint64_t stop = block_end <= last ? block_end : last + 1;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (; c < stop; c++) {
            uint64_t i = c & (per_block - 1);
            uint64_t v = rb_entry_get(s, b, i);
            if (delta < 0 && v < (uint64_t)-delta)
                return qcow2_mark_corrupt(s, "refcount of cluster 0x%" PRIx64 " would drop "
                                          "below zero", c << s->cluster_bits);
            if (delta > 0 && s->refcount_max - v < (uint64_t)delta) {
                blk_set_error("%s: refcount of cluster 0x%" PRIx64 " would exceed its maximum "
                              "of %" PRIu64, s->bs->filename, c << s->cluster_bits,
                              s->refcount_max);
                return -ERANGE;
            }
            v += delta;
            rb_entry_set(s, b, i, v);
            if (v == 0 && c < s->free_hint)
                s->free_hint = c;
            /* a freed cluster may be reused: no more compressed packing into it */
            if (v == 0 && s->free_byte_offset && (s->free_byte_offset >> s->cluster_bits) == c)
                s->free_byte_offset = 0;
            uint64_t byte = rb_entry_byte(s, i);
            if (byte < lo)
                lo = byte;
            if (byte > hi)
                hi = byte;
        }
        if (s->lazy) {
            qcow2_cache_mark_dirty(&s->rb_cache, b);
            continue;
        }
        lo &= ~(uint64_t)(BLK_SECTOR_SIZE - 1);
        hi = qcow2_align_up(hi + 1, BLK_SECTOR_SIZE);
        if (hi > s->cluster_size)
            hi = s->cluster_size;
        blkdebug_event(s->bs, BLKDBG_REFBLOCK_UPDATE_PART);
        r = blk_file_pwrite(s->fd, b + lo, hi - lo, boff + lo);
        if (r < 0) {
            blk_set_error("%s: cannot write a refcount block: %s", s->bs->filename,
                          strerror(-r));
            return r;
        }
        s->need_sync = s->deps_unsynced = true;
    }
    return 0;
}

int64_t qcow2_alloc_clusters(Qcow2State *s, uint64_t n)
{
    blkdebug_event(s->bs, BLKDBG_CLUSTER_ALLOC);
    for (;;) {
        int64_t start = find_free(s, n);
        if (start >= 0 && s->npending &&
            ((uint64_t)start + n) << s->cluster_bits > s->file_end) {
            /* QEMU frees at once: clusters freed meanwhile (a discard)
             * are used again before the file grows.  Here they are free
             * once the tables that dropped them are on disk. */
            int r = qcow2_flush_metadata(s);
            if (r < 0)
                return r;
            start = find_free(s, n);
        }
        if (start < 0)
            return start;
        bool created = false;
        for (uint64_t i = (uint64_t)start >> s->rb_bits;
             i <= ((uint64_t)start + n - 1) >> s->rb_bits; i++) {
            if (rt_missing(s, i)) {
                /* QEMU puts the new block after the clusters being
                 * allocated (they are taken first); the same layout keeps
                 * images alike, and they stay free for the next search */
                uint64_t hint = s->free_hint;
                s->free_hint = (uint64_t)start + n;
                int r = create_refblock(s, i);
                if (s->free_hint > hint)
                    s->free_hint = hint;
                if (r < 0)
                    return r;
                created = true;
                break;
            }
        }
        if (created)
            continue; /* the new block took a cluster: search again */
        uint64_t off = (uint64_t)start << s->cluster_bits, len = n << s->cluster_bits;
        int r = qcow2_check_overlap(s, off, len);
        if (r < 0)
            return r;
        if ((r = qcow2_update_refcount(s, off, len, 1)) < 0)
            return r;
        s->free_hint = (uint64_t)start + n;
        if (off + len > s->file_end)
            s->file_end = off + len;
        return (int64_t)off;
    }
}

int qcow2_free_later(Qcow2State *s, uint64_t offset, uint64_t clusters, int kind)
{
    /* a run right after the last one joins it: one refcount update and
     * one hole for a snapshot's contiguous VM state, not one per cluster
     * (a failure then leaks the rest of the run, as it leaks a range) */
    if (kind == FREE_NORMAL && s->npending) {
        Qcow2FreeRange *l = &s->pending_free[s->npending - 1];
        if (l->kind == FREE_NORMAL && l->offset + (l->clusters << s->cluster_bits) == offset &&
            l->clusters + clusters >= clusters) {
            l->clusters += clusters;
            return 0;
        }
    }
    if (s->npending == s->pending_cap) {
        size_t cap = s->pending_cap ? s->pending_cap * 2 : 64;
        Qcow2FreeRange *p = realloc(s->pending_free, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->pending_free = p;
        s->pending_cap = cap;
    }
    s->pending_free[s->npending++] = (Qcow2FreeRange){offset, clusters, kind};
    if (s->npending >= 4096)
        return qcow2_flush_metadata(s);
    return 0;
}

int qcow2_free_compressed_later(Qcow2State *s, uint64_t l2e)
{
    uint64_t off, bytes;
    qcow2_compressed_span(s, l2e, &off, &bytes);
    return qcow2_free_later(s, off, bytes, FREE_COMPRESSED);
}

unsigned qcow2_io_begin(Qcow2State *s)
{
    unsigned e = s->io_epoch & 1;
    __atomic_add_fetch(&s->io_count[e], 1, __ATOMIC_SEQ_CST);
    return e;
}

void qcow2_io_end(Qcow2State *s, unsigned token)
{
    /* The count drops before the waiter count is read, and the drainer
     * raises the waiter count before it reads the I/O count: one of the
     * two sees the other (both sequentially consistent), so no wake-up
     * is lost. */
    if (__atomic_sub_fetch(&s->io_count[token], 1, __ATOMIC_SEQ_CST) == 0 &&
        __atomic_load_n(&s->io_waiters, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&s->io_mu);
        pthread_cond_broadcast(&s->io_cond);
        pthread_mutex_unlock(&s->io_mu);
    }
}

void qcow2_io_drain(Qcow2State *s)
{
    /* Only the current epoch can hold I/O: the previous drain emptied
     * the other one, and nothing begins there until the flip below.
     * I/O that begins after the flip looked its host offset up after
     * the caller's metadata change, so it cannot be on what is freed. */
    unsigned old = s->io_epoch & 1;
    if (!__atomic_load_n(&s->io_count[old], __ATOMIC_SEQ_CST))
        return;
    s->io_epoch++;
    __atomic_add_fetch(&s->io_waiters, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&s->io_mu);
    while (__atomic_load_n(&s->io_count[old], __ATOMIC_SEQ_CST))
        pthread_cond_wait(&s->io_cond, &s->io_mu);
    pthread_mutex_unlock(&s->io_mu);
    __atomic_sub_fetch(&s->io_waiters, 1, __ATOMIC_SEQ_CST);
}

static int cmp_free(const void *a, const void *b)
{
    uint64_t x = ((const Qcow2FreeRange *)a)->offset, y = ((const Qcow2FreeRange *)b)->offset;
    return x < y ? -1 : x > y;
}

static int apply_frees(Qcow2State *s)
{
    int ret = 0;
    /* no I/O that found these clusters before they were unreferenced is
     * still running when they become free */
    qcow2_io_drain(s);
    /* in host order (frees commute): clusters freed together are mostly
     * neighbours in the file, given back to it in one punch per run (a
     * snapshot apply freed thousands of scattered 4 KiB clusters with a
     * ~0.2 ms fallocate each) */
    qsort(s->pending_free, s->npending, sizeof(*s->pending_free), cmp_free);
    uint64_t punch = 0, punch_end = 0;
    for (size_t i = 0; i < s->npending; i++) {
        Qcow2FreeRange *f = &s->pending_free[i];
        uint64_t off = f->offset, len;
        if (f->kind == FREE_COMPRESSED) {
            /* f->clusters holds the compressed byte count */
            uint64_t first = off & ~(s->cluster_size - 1);
            len = qcow2_align_up(off + f->clusters, s->cluster_size) - first;
            off = first;
        } else {
            len = f->clusters << s->cluster_bits;
        }
        blkdebug_event(s->bs, BLKDBG_CLUSTER_FREE);
        int r = qcow2_update_refcount(s, off, len, -1);
        if (r < 0 && !ret)
            ret = r;
        if (r < 0) {
            /* QEMU's words (its callers go on; the range is leaked) */
            fprintf(stderr, "qcow2_free_clusters failed: %s\n", strerror(-r));
            continue;
        }
        /* give fully freed clusters back to the host file system */
        for (uint64_t o = off; o < off + len; o += s->cluster_size) {
            uint64_t ref;
            if (qcow2_get_refcount(s, o >> s->cluster_bits, &ref) == 0 && ref == 0) {
                qcow2_cache_discard(&s->l2_cache, o);
                if (o != punch_end) {
                    if (punch_end > punch)
                        blk_file_punch(s->fd, punch, punch_end - punch);
                    punch = o;
                }
                punch_end = o + s->cluster_size;
            }
        }
    }
    if (punch_end > punch)
        blk_file_punch(s->fd, punch, punch_end - punch);
    s->npending = 0;
    return ret;
}

int qcow2_flush_metadata(Qcow2State *s)
{
    int r = qcow2_cache_flush(s, &s->rb_cache);
    if (r < 0)
        return r;
    if (s->deps_unsynced && (r = qcow2_sync(s)) < 0)
        return r;
    if ((r = qcow2_cache_flush(s, &s->l2_cache)) < 0)
        return r;
    if (s->npending) {
        /* the L2 tables that dropped the references are on disk first */
        if ((r = qcow2_sync(s)) < 0)
            return r;
        if ((r = apply_frees(s)) < 0)
            return r;
    }
    return qcow2_cache_flush(s, &s->rb_cache);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return blen && alen && a < b + blen && b < a + alen;
}

int qcow2_check_overlap(Qcow2State *s, uint64_t offset, uint64_t len)
{
    const char *what = NULL;
    if (overlaps(offset, len, 0, s->cluster_size))
        what = "the header";
    else if (overlaps(offset, len, s->l1_offset, (uint64_t)s->l1_size * 8))
        what = "the active L1 table";
    else if (overlaps(offset, len, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits))
        what = "the refcount table";
    else if (s->nb_snapshots &&
             overlaps(offset, len, s->snapshots_offset, s->cluster_size))
        what = "the snapshot table";
    if (!what)
        return 0;
    return qcow2_mark_corrupt(s, "allocation at 0x%" PRIx64 " would overwrite %s (its "
                              "refcounts are wrong)", offset, what);
}
