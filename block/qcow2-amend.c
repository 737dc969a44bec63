/* qcow2 changes in place: emptying the image, the backing file link, amend. */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shrinking (qcow2_truncate) ---- */

/* Metadata must not make us free or write clusters outside the file. */
static bool bad_offset(const Qcow2State *s, uint64_t off)
{
    return (off & (s->cluster_size - 1)) || off >= qcow2_align_up(s->file_end, s->cluster_size);
}

/* Drops the L2 tables of L1 entries [first, l1_size): the L1 stops
 * pointing to them on disk before any refcount goes down. */
static int drop_l1_tail(Qcow2State *s, uint64_t first)
{
    uint64_t n = 0;
    uint64_t *dropped = calloc(s->l1_size > first ? s->l1_size - first : 1, 8);
    uint64_t *dropped_l1i = calloc(s->l1_size > first ? s->l1_size - first : 1, 8);
    if (!dropped || !dropped_l1i) {
        free(dropped);
        free(dropped_l1i);
        return -ENOMEM;
    }
    for (uint64_t i = first; i < s->l1_size; i++) {
        uint64_t l2_off = s->l1[i] & L1E_OFFSET_MASK;
        if (!l2_off)
            continue;
        if (bad_offset(s, l2_off)) {
            free(dropped);
            free(dropped_l1i);
            return qcow2_mark_corrupt(s, "L2 table offset 0x%" PRIx64 " is invalid", l2_off);
        }
        dropped_l1i[n] = i;
        dropped[n++] = l2_off;
        s->l1[i] = 0;
    }
    int r = 0;
    if (n) {
        uint8_t *buf = malloc((size_t)s->l1_size * 8);
        if (!buf) {
            free(dropped);
            free(dropped_l1i);
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < s->l1_size; i++)
            qcow2_put64(buf + 8 * i, s->l1[i]);
        r = blk_file_pwrite(s->fd, buf, (uint64_t)s->l1_size * 8, s->l1_offset);
        free(buf);
        if (r < 0)
            blk_set_error("%s: cannot write the L1 table: %s", s->bs->filename, strerror(-r));
        s->need_sync = true;
        if (r == 0)
            r = qcow2_sync(s);
    }
    uint8_t *t2 = malloc(s->cluster_size);
    if (!t2)
        r = r < 0 ? r : -ENOMEM;
    /* Every path L1 -> L2 -> cluster is one reference (a table shared
     * with a snapshot counts its clusters once per L1 reaching it), so the
     * clusters of a dropped table lose one whether or not it is shared. */
    for (uint64_t k = 0; k < n && r == 0; k++) {
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, dropped[k], &err);
        if (!t) {
            r = err;
            break;
        }
        memcpy(t2, t, s->cluster_size);
        for (uint64_t j = 0; j < s->l2_size && r == 0; j++) {
            uint64_t l2e = qcow2_be64(t2 + j * s->l2_entry_bytes);
            int ct = qcow2_cluster_type(s, l2e);
            if (ct == QCOW2_COMPRESSED) {
                r = qcow2_free_compressed_later(s, l2e);
            } else if ((ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC) &&
                       qcow2_has_data_file(s)) {
                /* no refcount: its bytes go, as a discard's do (only
                 * those at the guest offset the table maps) */
                uint64_t host = l2e & L2E_OFFSET_MASK;
                uint64_t guest = (dropped_l1i[k] * s->l2_size + j) << s->cluster_bits;
                if (host == guest)
                    blk_file_zero(s->data_fd, host, s->cluster_size);
            } else if (ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC) {
                uint64_t host = l2e & L2E_OFFSET_MASK;
                if (bad_offset(s, host))
                    r = qcow2_mark_corrupt(s, "data cluster offset 0x%" PRIx64 " is invalid",
                                           host);
                else
                    r = qcow2_free_later(s, host, 1, FREE_NORMAL);
            }
        }
        if (r == 0)
            r = qcow2_free_later(s, dropped[k], 1, FREE_NORMAL);
    }
    free(t2);
    free(dropped);
    free(dropped_l1i);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    return r;
}

/* Drops refcount blocks that describe only free clusters (and maybe
 * themselves), as QEMU's qcow2_shrink_reftable does, so that a block
 * allocated at the end of the file does not keep the file long.  The
 * table entry is cleared on disk before the block's own refcount goes. */
static int shrink_reftable(Qcow2State *s)
{
    uint64_t per_block = 1ULL << s->rb_bits;
    int r = qcow2_flush_metadata(s);
    for (uint64_t i = 1; i < s->rt_size && r == 0; i++) {
        uint64_t off = s->rt[i] & REFT_OFFSET_MASK;
        if (!off)
            continue;
        uint64_t self = off >> s->cluster_bits;
        bool self_inside = (self >> s->rb_bits) == i, empty = true;
        for (uint64_t c = i * per_block; c < (i + 1) * per_block && empty; c++) {
            uint64_t ref;
            if ((r = qcow2_get_refcount(s, c, &ref)) < 0)
                return r;
            if (ref && !(c == self && ref == 1))
                empty = false;
        }
        if (!empty)
            continue;
        s->rt[i] = 0;
        uint8_t e[8] = {0};
        if ((r = blk_file_pwrite(s->fd, e, 8, s->rt_offset + i * 8)) < 0) {
            blk_set_error("%s: cannot write the refcount table: %s", s->bs->filename,
                          strerror(-r));
            return r;
        }
        s->need_sync = true;
        if ((r = qcow2_sync(s)) < 0)
            return r;
        qcow2_cache_discard(&s->rb_cache, off);
        if (!self_inside)
            r = qcow2_update_refcount(s, off, s->cluster_size, -1);
        blk_file_punch(s->fd, off, s->cluster_size);
    }
    if (r == 0)
        r = qcow2_flush_metadata(s);
    return r;
}

/* Cuts the host file after the last cluster in use. */
static int truncate_file_tail(Qcow2State *s)
{
    uint64_t c = qcow2_align_up(s->file_end, s->cluster_size) >> s->cluster_bits;
    while (c > 1) {
        uint64_t ref;
        int r = qcow2_get_refcount(s, c - 1, &ref);
        if (r < 0)
            return r;
        if (ref)
            break;
        c--;
    }
    uint64_t end = c << s->cluster_bits;
    int64_t fsize = blk_file_size(s->fd);
    if (fsize >= 0 && (uint64_t)fsize > end) {
        int e = blk_file_truncate(s->fd, end);
        if (e < 0) {
            blk_set_error("%s: cannot truncate the file: %s", s->bs->filename, strerror(-e));
            return e;
        }
        s->file_end = end;
    }
    return 0;
}

int qcow2_shrink(BlockDriverState *bs, uint64_t size)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size, per_l1 = cs * s->l2_size;
    pthread_mutex_lock(&s->lock);
    uint64_t old = bs->size;
    int r = qcow2_flush_metadata(s);
    /* the guest never sees a half-discarded tail: the size goes first */
    if (r == 0) {
        bs->size = size;
        if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0)
            bs->size = old;
    }
    uint64_t first_l1 = qcow2_align_up(size, per_l1) / per_l1;
    uint64_t cut = qcow2_align_up(size, cs);
    uint64_t bend = first_l1 * per_l1 < old ? first_l1 * per_l1 : old;
    bool partial = r == 0 && cut < bend && (s->l1[cut / per_l1] & L1E_OFFSET_MASK);
    pthread_mutex_unlock(&s->lock);
    if (partial)
        r = qcow2_discard_tail(bs, cut, bend - cut);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->lock);
    r = drop_l1_tail(s, first_l1);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        r = shrink_reftable(s);
    if (r == 0)
        r = truncate_file_tail(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* ---- emptying, the backing link ---- */

static void cache_drop_all(Qcow2Cache *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->offset[i])
            qcow2_cache_discard(c, c->offset[i]);
}

/* The file after it failed half way: what it says and what is in memory
 * differ, so nothing more is written to it (QEMU ejects the driver); the
 * dirty bit has it repaired at the next open. */
static int make_empty_broken(Qcow2State *s, int r)
{
    s->broken = true;
    return r;
}

/* Emptying a version 3 image as QEMU's make_completely_empty does, step
 * for step, since the steps and their blkdebug events decide what a
 * failure leaves behind (iotest 098): dirty bit, the L1 table zeroed,
 * clusters 1 to 3 + L1 zeroed for a new refcount table (1), refcount
 * block (2) and L1 table (3), the header pointed at them, the refcount
 * block entered, then the clusters in use counted, the image marked
 * clean and the file cut after them.  Lock held. */
static int make_completely_empty(Qcow2State *s, uint64_t l1_clusters)
{
    uint64_t cs = s->cluster_size;
    int r = qcow2_flush_metadata(s);
    if (r < 0)
        return r;
    qcow2_io_drain(s);
    /* refcounts will be wrong on disk until the end: dirty, lazy or not */
    if (!(s->incompat & QCOW2_INCOMPAT_DIRTY)) {
        s->incompat |= QCOW2_INCOMPAT_DIRTY;
        if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0) {
            s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
            return r;
        }
    }
    s->dirty_set = true;
    blkdebug_event(s->bs, BLKDBG_L1_UPDATE);
    if ((r = blk_file_zero(s->fd, s->l1_offset, l1_clusters * cs)) < 0)
        goto io_err;
    memset(s->l1, 0, (size_t)s->l1_size * 8);
    blkdebug_event(s->bs, BLKDBG_EMPTY_IMAGE_PREPARE);
    if ((r = blk_file_zero(s->fd, cs, (2 + l1_clusters) * cs)) < 0)
        goto io_err;
    blkdebug_event(s->bs, BLKDBG_L1_UPDATE);
    blkdebug_event(s->bs, BLKDBG_REFTABLE_UPDATE);
    uint8_t hdr[20];
    qcow2_put64(hdr, 3 * cs);
    qcow2_put64(hdr + 8, cs);
    qcow2_put32(hdr + 16, 1);
    /* l1_table_offset, refcount_table_offset, refcount_table_clusters;
     * nothing of the old table is owed to the file after this (the
     * sync below would write it into the new one) */
    qcow2_rt_replaced(s);
    if ((r = blk_file_pwrite(s->fd, hdr, sizeof(hdr), 40)) < 0 || (r = qcow2_sync(s)) < 0)
        goto io_err;
    uint64_t *rt = calloc(cs / 8, 8);
    if (!rt)
        return make_empty_broken(s, -ENOMEM);
    free(s->rt);
    s->rt = rt;
    s->rt_offset = cs;
    s->rt_clusters = 1;
    s->rt_size = cs / 8;
    s->l1_offset = 3 * cs;
    /* every cached table is somewhere that holds nothing now */
    cache_drop_all(&s->l2_cache);
    cache_drop_all(&s->rb_cache);
    s->npending = 0;
    s->free_byte_offset = 0;
    s->prealloc_checked = false;
    qcow2_cbuf_invalidate(s);
    blkdebug_event(s->bs, BLKDBG_REFBLOCK_ALLOC);
    uint8_t rte[8];
    qcow2_put64(rte, 2 * cs);
    if ((r = blk_file_pwrite(s->fd, rte, 8, cs)) < 0 || (r = qcow2_sync(s)) < 0)
        goto io_err;
    s->rt[0] = 2 * cs;
    s->free_hint = 0;
    if ((r = qcow2_update_refcount(s, 0, (3 + l1_clusters) * cs, 1)) < 0 ||
        (r = qcow2_flush_metadata(s)) < 0 || (r = qcow2_sync(s)) < 0)
        return make_empty_broken(s, r);
    s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
    s->dirty_set = false;
    if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0)
        return r;
    if ((r = blk_file_truncate(s->fd, (3 + l1_clusters) * cs)) < 0) {
        blk_set_error("%s: cannot truncate the file: %s", s->bs->filename, strerror(-r));
        return r;
    }
    s->file_end = (3 + l1_clusters) * cs;
    return 0;
io_err:
    blk_set_error("%s: write error: %s", s->bs->filename, strerror(-r));
    return make_empty_broken(s, r);
}

int qcow2_make_empty(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    /* Emptying resets the image file, which holds no data here: as
     * QEMU, every cluster is discarded instead, the tables stay. */
    if (qcow2_has_data_file(s))
        return qcow2_discard_tail(bs, 0, bs->size);
    pthread_mutex_lock(&s->lock);
    if (s->broken) {
        pthread_mutex_unlock(&s->lock);
        blk_set_error("%s: a failed emptying left the image unusable until reopened",
                      bs->filename);
        return -EIO;
    }
    uint64_t l1_clusters = qcow2_align_up((uint64_t)s->l1_size * 8, s->cluster_size) /
                           s->cluster_size;
    /* QEMU's conditions: nothing else (snapshots, bitmaps, a LUKS header)
     * holds clusters that must survive, and the new metadata fits the
     * first refcount block */
    if (s->version >= 3 && !s->nb_snapshots && !s->nb_bitmaps && s->crypt_method != 2 &&
        3 + l1_clusters <= (UINT64_C(1) << s->rb_bits)) {
        int r = make_completely_empty(s, l1_clusters);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    int r = qcow2_flush_metadata(s);
    if (r == 0)
        r = drop_l1_tail(s, 0);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        r = shrink_reftable(s);
    if (r == 0)
        r = truncate_file_tail(s);
    qcow2_cbuf_invalidate(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_change_backing_file(BlockDriverState *bs, const char *file, const char *fmt)
{
    Qcow2State *s = bs->opaque;
    if (!file)
        file = "";
    if (!fmt || !file[0])
        fmt = "";
    if (strlen(file) >= sizeof(bs->backing_file) || strlen(fmt) >= sizeof(bs->backing_format)) {
        blk_set_error("%s: backing file name or format is too long", bs->filename);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    char old_file[sizeof(bs->backing_file)], old_fmt[sizeof(bs->backing_format)];
    memcpy(old_file, bs->backing_file, sizeof(old_file));
    memcpy(old_fmt, bs->backing_format, sizeof(old_fmt));
    snprintf(bs->backing_file, sizeof(bs->backing_file), "%s", file);
    snprintf(bs->backing_format, sizeof(bs->backing_format), "%s", fmt);
    /* the whole header is one write inside cluster 0 */
    int r = qcow2_update_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        memcpy(bs->backing_file, old_file, sizeof(old_file));
        memcpy(bs->backing_format, old_fmt, sizeof(old_fmt));
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* ---- amend ---- */

static int zero_buf(Qcow2State *s)
{
    if (!s->zero_cluster && !(s->zero_cluster = calloc(1, s->cluster_size)))
        return -ENOMEM;
    return 0;
}

/* Zero clusters of one L2 table become clusters holding zeros (version 2
 * has no zero flag).  A new cluster gets as many references as the table
 * has, and holds its zeros on disk before the entry points to it. */
static int expand_zeros_in_l2(Qcow2State *s, uint64_t l2_off, bool active_copied)
{
    uint64_t cs = s->cluster_size, l2ref;
    int r = qcow2_get_refcount(s, l2_off >> s->cluster_bits, &l2ref);
    if (r < 0)
        return r;
    if ((r = zero_buf(s)) < 0)
        return r;
    for (uint64_t j = 0; j < s->l2_size; j++) {
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
        if (!t)
            return err;
        uint64_t l2e = qcow2_be64(t + j * s->l2_entry_bytes);
        int ct = qcow2_cluster_type(s, l2e);
        uint64_t ne;
        if (ct == QCOW2_ZERO_PLAIN && !s->bs->backing_file[0]) {
            ne = 0; /* nothing below: unallocated reads as zeros */
        } else if (ct == QCOW2_ZERO_PLAIN || ct == QCOW2_ZERO_ALLOC) {
            uint64_t host = l2e & L2E_OFFSET_MASK;
            if (ct == QCOW2_ZERO_PLAIN) {
                int64_t h = qcow2_alloc_clusters(s, 1);
                if (h < 0)
                    return (int)h;
                host = (uint64_t)h;
                if (l2ref > 1 && (r = qcow2_update_refcount(s, host, cs, (int64_t)l2ref - 1)) < 0)
                    return r;
            } else if (bad_offset(s, host)) {
                return qcow2_mark_corrupt(s, "data cluster offset 0x%" PRIx64 " is invalid",
                                          host);
            } else if ((r = qcow2_check_overlap(s, host, cs)) < 0) {
                return r;
            }
            if ((r = blk_file_pwrite(s->fd, s->zero_cluster, cs, host)) < 0) {
                blk_set_error("%s: write error: %s", s->bs->filename, strerror(-r));
                return r;
            }
            if ((r = qcow2_sync(s)) < 0)
                return r;
            if (ct == QCOW2_ZERO_ALLOC)
                ne = host | (l2e & QCOW_OFLAG_COPIED);
            else
                ne = host | ((l2ref == 1 && active_copied) ? QCOW_OFLAG_COPIED : 0);
        } else {
            continue;
        }
        t = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
        if (!t)
            return err;
        qcow2_put64(t + j * s->l2_entry_bytes, ne);
        qcow2_cache_mark_dirty(&s->l2_cache, t);
    }
    return qcow2_flush_metadata(s);
}

/* *done/total: L1 entries visited over all tables, for progress */
static int expand_zeros_in_l1(Qcow2State *s, const uint64_t *l1, uint32_t n, bool active,
                              uint64_t *done, uint64_t total)
{
    int r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        blk_progress(s->bs, ++*done, total);
        uint64_t l2_off = l1[i] & L1E_OFFSET_MASK;
        if (!l2_off)
            continue;
        if ((l2_off & (s->cluster_size - 1)) || l2_off >= s->file_end)
            return qcow2_mark_corrupt(s, "L2 table offset 0x%" PRIx64 " is invalid", l2_off);
        r = expand_zeros_in_l2(s, l2_off, active && (l1[i] & QCOW_OFLAG_COPIED));
    }
    return r;
}

/* amend -o data_file=NAME (empty: no name stored), data_file_raw=off */
static int set_data_file(Qcow2State *s, const char *name, bool raw)
{
    char *old = s->data_file_name;
    uint64_t old_autoclear = s->autoclear;
    if (name) {
        s->data_file_name = *name ? strdup(name) : NULL;
        if (*name && !s->data_file_name) {
            s->data_file_name = old;
            return -ENOMEM;
        }
    }
    if (!raw)
        s->autoclear &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    int r = qcow2_update_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        if (name)
            free(s->data_file_name);
        s->data_file_name = old;
        s->autoclear = old_autoclear;
        return r;
    }
    if (name)
        free(old);
    return 0;
}

static int downgrade(Qcow2State *s)
{
    int r;
    /* QEMU's order of refusals */
    if (s->refcount_order != 4) {
        blk_set_error("compat=0.10 requires refcount_bits=16");
        return -ENOTSUP;
    }
    if (qcow2_has_data_file(s)) {
        blk_set_error("Cannot downgrade an image with a data file");
        return -ENOTSUP;
    }
    if (s->incompat & ~(QCOW2_INCOMPAT_DIRTY)) {
        blk_set_error("Cannot downgrade an image with incompatible features %#" PRIx64 " set",
                      s->incompat & ~QCOW2_INCOMPAT_DIRTY);
        return -ENOTSUP;
    }
    uint64_t done = 0, total = s->l1_size;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        total += s->snapshots[i].l1_size;
    if ((r = expand_zeros_in_l1(s, s->l1, s->l1_size, true, &done, total)) < 0)
        return r;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        uint64_t *l1 = calloc(sn->l1_size ? sn->l1_size : 1, 8);
        if (!l1)
            return -ENOMEM;
        r = blk_file_pread(s->fd, l1, (uint64_t)sn->l1_size * 8, sn->l1_offset);
        for (uint32_t j = 0; j < sn->l1_size; j++)
            l1[j] = qcow2_be64(&l1[j]);
        if (r == 0)
            r = expand_zeros_in_l1(s, l1, sn->l1_size, false, &done, total);
        free(l1);
        if (r < 0)
            return r;
    }
    if ((r = qcow2_flush_metadata(s)) < 0 || (r = qcow2_sync(s)) < 0)
        return r;
    /* no zero flag is left on disk: the header may say version 2 */
    uint32_t old_version = s->version;
    uint64_t old_incompat = s->incompat, old_compat = s->compat, old_auto = s->autoclear;
    s->version = 2;
    s->incompat = s->compat = s->autoclear = 0;
    if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0) {
        s->version = old_version;
        s->incompat = old_incompat;
        s->compat = old_compat;
        s->autoclear = old_auto;
        return r;
    }
    s->lazy = false;
    s->dirty_set = false;
    return 0;
}

static int set_header(Qcow2State *s, uint32_t version, uint64_t compat)
{
    uint32_t ov = s->version;
    uint64_t oc = s->compat;
    s->version = version;
    s->compat = compat;
    int r = qcow2_update_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        s->version = ov;
        s->compat = oc;
    }
    return r;
}

/* lazy_refcounts=off: everything the dirty bit covered goes to disk first */
static int lazy_off(Qcow2State *s)
{
    int r = qcow2_flush_metadata(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0)
        return r;
    s->lazy = false;
    if (s->dirty_set) {
        s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
        s->dirty_set = false;
    }
    return set_header(s, s->version, s->compat & ~QCOW2_COMPAT_LAZY_REFCOUNTS);
}

static const char *const creation_only[] = {
    "cluster_size", "encryption", "encrypt.format", "encrypt.key-secret", "encrypt.cipher-alg",
    "encrypt.cipher-mode", "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg", "encrypt.hash-alg",
    "preallocation", "extended_l2", "compression_type", "nocow",
};

/* g_strcmp0() == 0 where the image's "" means absent */
static bool same_or_null(const char *given, const char *stored)
{
    if (!given || !stored[0])
        return !given && !stored[0];
    return !strcmp(given, stored);
}

int qcow2_amend(BlockDriverState *bs, BlockOptions *opts, bool force)
{
    Qcow2State *s = bs->opaque;
    /* qemu-img opens the image with its key to amend anything */
    if (s->crypt_method && !s->crypto) {
        blk_set_error("Parameter 'encrypt.key-secret' is required for cipher");
        return -ENOKEY;
    }
    for (int i = 0; i < opts->n; i++) {
        for (size_t k = 0; k < sizeof(creation_only) / sizeof(creation_only[0]); k++) {
            if (!strcmp(opts->opt[i].key, creation_only[k])) {
                blk_set_error("Invalid parameter '%s'\nThis option is only supported for image "
                              "creation", opts->opt[i].key);
                return -ENOTSUP;
            }
        }
    }
    const char *compat = blkopts_get(opts, "compat");
    const char *bfile = blkopts_get(opts, "backing_file");
    const char *bfmt = blkopts_get(opts, "backing_fmt");
    const char *lazy_s = blkopts_get(opts, "lazy_refcounts");
    const char *rb_s = blkopts_get(opts, "refcount_bits");
    const char *size_s = blkopts_get(opts, "size");
    /* The data file's name can change (the file is not opened or moved:
     * the new name is used from the next open), and data_file_raw can be
     * dropped but not set: nothing proves an existing file raw. */
    const char *dfile = blkopts_get(opts, "data_file");
    if (dfile && !qcow2_has_data_file(s)) {
        blk_set_error("data-file can only be set for images that use an external data file");
        return -EINVAL;
    }
    bool draw = s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    int r;
    if ((r = blkopts_get_bool(opts, "data_file_raw", draw, &draw)) < 0)
        return r;
    if (draw && !(s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW)) {
        blk_set_error("data-file-raw cannot be set on existing images");
        return -EINVAL;
    }
    if (dfile && strlen(dfile) > 1023) {
        blk_set_error("Data file name too long");
        return -EINVAL;
    }
    struct qcow2_crypto_amend crypt;
    r = qcow2_crypto_amend_parse(s, opts, &crypt);
    if (r < 0)
        return r;
    const char *unused = blkopts_first_unused(opts);
    if (unused) {
        blk_set_error("Invalid parameter '%s'", unused);
        return -EINVAL;
    }
    uint32_t new_version = s->version;
    if (compat) {
        if (!strcmp(compat, "0.10") || !strcmp(compat, "v2"))
            new_version = 2;
        else if (!strcmp(compat, "1.1") || !strcmp(compat, "v3"))
            new_version = 3;
        else {
            blk_set_error("Unknown compatibility level %s", compat);
            return -EINVAL;
        }
    }
    bool lazy = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (lazy_s && (r = blkopts_get_bool(opts, "lazy_refcounts", false, &lazy)) < 0)
        return r;
    uint64_t rbits = s->refcount_bits, size = bs->size;
    if (rb_s) {
        if ((r = blkopts_get_uint(opts, "refcount_bits", 16, &rbits)) < 0)
            return r;
        if (rbits == 0 || rbits > 64 || (rbits & (rbits - 1))) {
            blk_set_error("Refcount width must be a power of two and may not exceed 64 bits");
            return -EINVAL;
        }
    }
    if (size_s && (r = blkopts_get_size(opts, "size", bs->size, &size)) < 0) {
        blk_set_error("Parameter 'size' expects a non-negative number below 2^64\nOptional "
                      "suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand "
                      "exabytes, respectively.");
        return r;
    }
    if (lazy_s && lazy && new_version < 3) {
        blk_set_error("Lazy refcounts only supported with compatibility level 1.1 and above "
                      "(use compat=1.1 or greater)");
        return -EINVAL;
    }
    if (new_version < 3 && rbits != 16) {
        blk_set_error(rb_s ? "Refcount widths other than 16 bits require compatibility level "
                      "1.1 or above (use compat=1.1 or greater)"
                           : "compat=0.10 requires refcount_bits=16");
        return -EINVAL;
    }

    /* QEMU 7.2 refuses any change, and a name or format given alone
     * counts as a change when the image has the other (rebase -u is the
     * way); giving both as they are is accepted */
    if ((bfile || bfmt) && (!same_or_null(bfile, bs->backing_file) ||
                            !same_or_null(bfmt, bs->backing_format))) {
        blk_set_error("Cannot amend the backing file\nYou can use '%s rebase' instead.",
                      blk_img_tool);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    r = qcow2_flush_metadata(s);
    if (r == 0 && new_version > s->version) {
        /* as QEMU's upgrade: entries without the extra data version 3
         * needs make the whole table be written again, first */
        bool incomplete = false;
        for (uint32_t i = 0; i < s->nb_snapshots; i++)
            incomplete |= qcow2_snapshot_incomplete(s, i);
        if (incomplete && (r = qcow2_snapshot_complete_table(s)) < 0)
            blk_set_error("Failed to update the snapshot table: %s", strerror(-r));
        if (r == 0)
            r = set_header(s, new_version, s->compat);
    }
    if (r == 0)
        r = qcow2_crypto_amend(s, &crypt, force);
    if (r == 0 && (dfile || draw != !!(s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW)))
        r = set_data_file(s, dfile, draw);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&s->lock);
    if (r == 0 && lazy_s && lazy != !!(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS)) {
        if (lazy) {
            r = set_header(s, s->version, s->compat | QCOW2_COMPAT_LAZY_REFCOUNTS);
            if (r == 0)
                s->lazy = true;
        } else {
            r = lazy_off(s);
        }
    }
    if (r == 0 && rbits != s->refcount_bits)
        r = qcow2_change_refcount_order(s, (uint32_t)__builtin_ctzll(rbits));
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && size != bs->size)
        r = bs->drv->truncate(bs, size, BLK_PREALLOC_OFF, true);
    pthread_mutex_lock(&s->lock);
    if (r == 0 && new_version < s->version) {
        if ((s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) && (r = lazy_off(s)) < 0)
            goto out;
        r = downgrade(s);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}
