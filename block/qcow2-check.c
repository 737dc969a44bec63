/* qcow2 consistency check and repair.
 *
 * The checker counts every reference the metadata makes (header, L1 and
 * L2 tables of the active state and of each snapshot, data and compressed
 * clusters, the refcount table and blocks, the snapshot table) and
 * compares the counts with the stored refcounts.  Repairs:
 *  - leaks only: stored refcounts are lowered in place;
 *  - anything worse: the refcount structure is rebuilt from the counts at
 *    the end of the file and the header switched to it (the old structure
 *    becomes free space), then COPIED flags are made to agree.
 * The same rebuild repairs a dirty image (lazy refcounts) on open. */
#include "block/qcow2.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* refs per host cluster, as the metadata says */
struct refmap {
    uint32_t *r;
    uint64_t n;
    uint64_t limit;
};

struct walk {
    Qcow2State *s;
    struct refmap map;
    BlockCheckResult *res;
    bool quiet;           /* no per-problem lines (repair on open) */
    uint64_t file_len;    /* of the host file, when the walk started */
    int fix;              /* BLK_CHECK_FIX_*: what the walk itself may repair */
    uint64_t next_contig; /* fragmentation counting */
    uint8_t *l2buf;
    /* every L2 table any L1 points to, with how many times: each distinct
     * table is read once and its references counted that many times, so
     * a hostile image pointing thousands of L1 entries at one table costs
     * no more than a sane one */
    struct l2ref *l2refs;
    size_t nl2refs, l2refs_cap;
    uint32_t times;       /* multiplier for map increments */
    /* amend -p: counting is the first half of the work (one step per L2
     * table), writing the new refcount blocks the second */
    bool progress;
    uint64_t walked;
};

struct l2ref {
    uint64_t off;
    uint32_t count;
    bool walked;
};

/* Counts one more reference to every cluster of [off, off+len), growing
 * the map as needed (up to its limit: a hostile image cannot make it
 * unbounded). */
static int map_add(struct walk *w, uint64_t off, uint64_t len)
{
    Qcow2State *s = w->s;
    if (!len)
        return 0;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    if (last >= w->map.limit) {
        if (!w->quiet)
            fprintf(stderr, "ERROR: reference to 0x%" PRIx64 " is beyond any possible end of "
                    "the image\n", off);
        w->res->corruptions++;
        return 0;
    }
    if (last >= w->map.n) {
        uint64_t n = w->map.n * 2 > last + 1 ? w->map.n * 2 : last + 1;
        uint32_t *r = realloc(w->map.r, n * sizeof(*r));
        if (!r)
            return -ENOMEM;
        memset(r + w->map.n, 0, (n - w->map.n) * sizeof(*r));
        w->map.r = r;
        w->map.n = n;
    }
    uint32_t times = w->times ? w->times : 1;
    for (uint64_t c = first; c <= last; c++)
        w->map.r[c] = w->map.r[c] > UINT32_MAX - times ? UINT32_MAX : w->map.r[c] + times;
    return 0;
}

/* A reference the metadata makes.  The last cluster of an image may be
 * only partly written (compressed data, a snapshot table, a subcluster),
 * so a region may end less than a cluster past the end of the file;
 * one that reaches a whole cluster further is corrupt and, as in QEMU,
 * not counted. */
static int map_inc(struct walk *w, uint64_t off, uint64_t len)
{
    Qcow2State *s = w->s;
    if (!len)
        return 0;
    if (off + len >= w->file_len + s->cluster_size) {
        if (!w->quiet)
            fprintf(stderr, "ERROR: counting reference for region exceeding the end of the "
                    "file by one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64 "\n",
                    off, len);
        w->res->corruptions++;
        return 0;
    }
    return map_add(w, off, len);
}

/* One corruption, with its line unless the walk is quiet. */
static void report(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(struct walk *w, const char *fmt, ...)
{
    w->res->corruptions++;
    if (w->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* -r all on a misaligned entry that holds no data: it becomes a zero
 * cluster (zero subclusters where it had allocated ones), as in QEMU. */
static int zero_l2_entry(struct walk *w, uint64_t l2_off, uint64_t j, uint64_t bitmap)
{
    Qcow2State *s = w->s;
    uint8_t e[16];
    if (s->extl2) {
        bitmap |= bitmap << 32;
        qcow2_put64(e, 0);
        qcow2_put64(e + 8, bitmap & 0xffffffff00000000ULL);
    } else {
        qcow2_put64(e, QCOW_OFLAG_ZERO);
    }
    uint64_t at = l2_off + j * s->l2_entry_bytes;
    if (qcow2_check_overlap(s, at, s->l2_entry_bytes) < 0)
        return -EIO;
    int r = blk_file_pwrite(s->fd, e, s->l2_entry_bytes, at);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        fprintf(stderr, "ERROR: Failed to overwrite L2 table entry: %s\n", strerror(-r));
        w->res->check_errors++;
        return r;
    }
    /* the cached copy, if any, is stale now (the check flushed it) */
    qcow2_cache_discard(&s->l2_cache, l2_off);
    return 0;
}

static int walk_l2(struct walk *w, uint64_t l2_off, bool active)
{
    Qcow2State *s = w->s;
    int err = 0;
    uint8_t *t = l2_off + s->cluster_size <= s->file_end
                     ? qcow2_cache_get(s, &s->l2_cache, l2_off, &err) : NULL;
    if (t) {
        memcpy(w->l2buf, t, s->cluster_size);
    } else if (blk_file_pread(s->fd, w->l2buf, s->cluster_size, l2_off) < 0) {
        /* (a table the end of the file cuts reads as zeros past it, as
         * in QEMU) */
        if (!w->quiet)
            fprintf(stderr, "ERROR: cannot read the L2 table at 0x%" PRIx64 "\n", l2_off);
        w->res->check_errors++;
        return 0;
    }
    /* fragmentation is counted within each L2 table, as QEMU counts it */
    w->next_contig = 0;
    for (uint64_t j = 0; j < s->l2_size; j++) {
        const uint8_t *p = w->l2buf + j * s->l2_entry_bytes;
        uint64_t l2e = qcow2_be64(p), bitmap = s->extl2 ? qcow2_be64(p + 8) : 0;
        int ct = qcow2_cluster_type(s, l2e);
        int r = 0;
        if (ct != QCOW2_COMPRESSED && (l2e & L2E_STD_RESERVED))
            report(w, "ERROR found l2 entry with reserved bits set: %" PRIx64 "\n", l2e);
        if (ct == QCOW2_COMPRESSED && qcow2_has_data_file(s)) {
            /* QEMU's message, index and all */
            report(w, "ERROR compressed cluster %d with data file, entry=0x%" PRIx64 "\n",
                   (int)j, l2e);
        } else if (ct == QCOW2_COMPRESSED) {
            if (l2e & QCOW_OFLAG_COPIED)
                report(w, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
                       "compressed clusters\n", l2e & s->cluster_offset_mask);
            if (bitmap) {
                report(w, "ERROR compressed cluster %d with non-zero subcluster allocation "
                       "bitmap, entry=0x%" PRIx64 "\n", (int)j, l2e);
                continue;
            }
            uint64_t off, bytes;
            qcow2_compressed_span(s, l2e, &off, &bytes);
            if (active) {
                /* compressed clusters count as fragmented, as in QEMU */
                w->res->allocated_clusters++;
                w->res->compressed_clusters++;
                w->res->fragmented_clusters++;
            }
            r = map_inc(w, off, bytes);
        } else if (ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC) {
            uint64_t host = l2e & L2E_OFFSET_MASK;
            if ((bitmap >> 32) & bitmap)
                report(w, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
                       "subcluster allocation bitmap\n", host);
            if (host & (s->cluster_size - 1)) {
                bool data = s->extl2 ? (bitmap & 0xffffffffULL) : !(l2e & QCOW_OFLAG_ZERO);
                if (data) {
                    /* still counted, where it points, as QEMU does */
                    report(w, "ERROR offset=%" PRIx64 ": Data cluster is not properly "
                           "aligned; L2 entry corrupted.\n", host);
                } else {
                    bool fix = w->fix & BLK_CHECK_FIX_ERRORS;
                    report(w, "%s offset=%" PRIx64 ": Preallocated cluster is not properly "
                           "aligned; L2 entry corrupted.\n", fix ? "Repairing" : "ERROR", host);
                    if (fix && zero_l2_entry(w, l2_off, j, bitmap) == 0) {
                        w->res->corruptions--;
                        w->res->corruptions_fixed++;
                        continue;
                    }
                }
            }
            if (active) {
                w->res->allocated_clusters++;
                if (w->next_contig && host != w->next_contig)
                    w->res->fragmented_clusters++;
                w->next_contig = host + s->cluster_size;
            }
            /* data file clusters have no refcount */
            if (!qcow2_has_data_file(s))
                r = map_inc(w, host, s->cluster_size);
        } else if ((ct == QCOW2_ZERO_PLAIN) && s->version < 3) {
            report(w, "ERROR: zero cluster in a version 2 image (L2 entry 0x%016" PRIx64 ")\n",
                   l2e);
        } else if (ct == QCOW2_UNALLOCATED && (bitmap & 0xffffffffULL)) {
            report(w, "ERROR: Unallocated cluster has non-zero subcluster allocation map\n");
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static int l2ref_cmp(const void *a, const void *b)
{
    const struct l2ref *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static struct l2ref *l2ref_find(struct walk *w, uint64_t off)
{
    struct l2ref key = {.off = off};
    return bsearch(&key, w->l2refs, w->nl2refs, sizeof(key), l2ref_cmp);
}

/* Pass 1: note every L2 table an L1 table points to. */
static int collect_l1(struct walk *w, const uint64_t *l1, uint32_t l1_size)
{
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2_off = l1[i] & L1E_OFFSET_MASK;
        if (!l2_off || (l2_off & (w->s->cluster_size - 1)))
            continue;
        if (w->nl2refs == w->l2refs_cap) {
            size_t cap = w->l2refs_cap ? w->l2refs_cap * 2 : 256;
            struct l2ref *n = realloc(w->l2refs, cap * sizeof(*n));
            if (!n)
                return -ENOMEM;
            w->l2refs = n;
            w->l2refs_cap = cap;
        }
        w->l2refs[w->nl2refs++] = (struct l2ref){l2_off, 1, false};
    }
    return 0;
}

/* Sorts the references and folds duplicates into counts. */
static void fold_l2refs(struct walk *w)
{
    if (!w->nl2refs)
        return;
    qsort(w->l2refs, w->nl2refs, sizeof(*w->l2refs), l2ref_cmp);
    size_t out = 0;
    for (size_t i = 1; i < w->nl2refs; i++) {
        if (w->l2refs[i].off == w->l2refs[out].off)
            w->l2refs[out].count += w->l2refs[out].count < UINT32_MAX;
        else
            w->l2refs[++out] = w->l2refs[i];
    }
    w->nl2refs = out + 1;
}

/* Pass 2: the L1 table's own clusters, and each L2 table it reaches that
 * was not read yet, counted for all its references at once. */
static int walk_l1(struct walk *w, const uint64_t *l1, uint32_t l1_size, uint64_t l1_off,
                   bool active)
{
    Qcow2State *s = w->s;
    int r = map_inc(w, l1_off, (uint64_t)l1_size * 8);
    for (uint32_t i = 0; i < l1_size && r == 0; i++) {
        uint64_t l2_off = l1[i] & L1E_OFFSET_MASK;
        if (!l2_off)
            continue;
        if (l2_off & (s->cluster_size - 1)) {
            if (!w->quiet)
                fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; "
                        "L1 entry corrupted\n", l2_off);
            w->res->corruptions++;
            continue;
        }
        struct l2ref *ref = l2ref_find(w, l2_off);
        if (!ref || ref->walked)
            continue;
        ref->walked = true;
        w->times = ref->count;
        if ((r = map_inc(w, l2_off, s->cluster_size)) == 0 && l2_off < w->file_len)
            r = walk_l2(w, l2_off, active);
        w->times = 1;
        if (w->progress)
            blk_progress(s->bs, 500 * ++w->walked / w->nl2refs, 1000);
    }
    return r;
}

static int bitmap_ref(void *opaque, uint64_t off, uint64_t len)
{
    return map_inc(opaque, off, len);
}

/* Counts every reference except those of the refcount structure. */
static int count_refs(struct walk *w)
{
    Qcow2State *s = w->s;
    int r = map_inc(w, 0, s->cluster_size);
    if (r < 0)
        return r;
    if (qcow2_has_data_file(s) && s->nb_snapshots) {
        if (!w->quiet)
            fprintf(stderr, "ERROR %u snapshots in image with data file\n", s->nb_snapshots);
        w->res->corruptions++;
    }
    uint64_t **snap_l1 = calloc(s->nb_snapshots ? s->nb_snapshots : 1, sizeof(*snap_l1));
    if (!snap_l1)
        return -ENOMEM;
    r = collect_l1(w, s->l1, s->l1_size);
    for (uint32_t i = 0; i < s->nb_snapshots && r == 0; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        if (!(snap_l1[i] = calloc(sn->l1_size ? sn->l1_size : 1, 8))) {
            r = -ENOMEM;
            break;
        }
        r = blk_file_pread(s->fd, snap_l1[i], (uint64_t)sn->l1_size * 8, sn->l1_offset);
        for (uint32_t j = 0; j < sn->l1_size; j++)
            snap_l1[i][j] = qcow2_be64(&snap_l1[i][j]);
        if (r == 0)
            r = collect_l1(w, snap_l1[i], sn->l1_size);
    }
    fold_l2refs(w);
    if (r == 0)
        r = walk_l1(w, s->l1, s->l1_size, s->l1_offset, true);
    for (uint32_t i = 0; i < s->nb_snapshots && r == 0; i++)
        r = walk_l1(w, snap_l1[i], s->snapshots[i].l1_size, s->snapshots[i].l1_offset, false);
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        free(snap_l1[i]);
    free(snap_l1);
    if (r < 0)
        return r;
    if (s->nb_snapshots) {
        /* the table itself: entries are variable-sized; re-measure */
        uint64_t pos = s->snapshots_offset, end = pos;
        for (uint32_t i = 0; i < s->nb_snapshots; i++) {
            const Qcow2Snapshot *sn = &s->snapshots[i];
            end = pos + 40 + sn->extra_size + strlen(sn->id) + strlen(sn->name);
            pos = qcow2_align_up(end, 8);
        }
        /* but it spans more on disk while extra data that check -r all
         * dropped is still there */
        if (end - s->snapshots_offset < s->snapshots_size)
            end = s->snapshots_offset + s->snapshots_size;
        /* the padding after the last entry is not part of the table
         * (QEMU does not write it) */
        if ((r = map_inc(w, s->snapshots_offset, end - s->snapshots_offset)) < 0)
            return r;
    }
    for (int i = 0; i < s->nexts; i++) {
        /* LUKS header region: referenced by the crypto extension */
        if (s->exts[i].type == QCOW2_EXT_CRYPTO && s->exts[i].len >= 16)
            if ((r = map_inc(w, qcow2_be64(s->exts[i].data), qcow2_be64(s->exts[i].data + 8))) < 0)
                return r;
    }
    /* persistent bitmaps: directory, tables and data clusters */
    if ((r = qcow2_bitmap_refs(s, bitmap_ref, w)) > 0) {
        if (!w->quiet)
            fprintf(stderr, "ERROR bitmap table entries are corrupt\n");
        w->res->corruptions++;
        r = 0;
    }
    return r;
}

static int count_refcount_structure(struct walk *w)
{
    Qcow2State *s = w->s;
    int r = map_inc(w, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits);
    for (uint64_t i = 0; i < s->rt_size && r == 0; i++) {
        uint64_t off = s->rt[i] & REFT_OFFSET_MASK;
        if (s->rt[i] & ~REFT_OFFSET_MASK) {
            if (!w->quiet)
                fprintf(stderr, "ERROR refcount table entry %" PRIu64 " has reserved bits "
                        "set\n", i);
            w->res->corruptions++;
        }
        if (!off)
            continue;
        if (off & (s->cluster_size - 1)) {
            if (!w->quiet)
                fprintf(stderr, "ERROR refcount block %" PRIu64 " is not cluster aligned; "
                        "refcount table entry corrupted\n", i);
            w->res->corruptions++;
            continue;
        }
        r = map_inc(w, off, s->cluster_size);
    }
    return r;
}

/* Writes a fresh refcount table and blocks for w->map after the last
 * referenced cluster, in s->refcount_order's width, and makes them the
 * in-memory structure; the caller points the header to them. */
static int rebuild_structure(struct walk *w)
{
    Qcow2State *s = w->s;
    uint64_t cs = s->cluster_size, per_block = 1ULL << s->rb_bits;
    uint64_t start = w->map.n;
    uint64_t fe = qcow2_align_up(s->file_end, cs) >> s->cluster_bits;
    if (fe > start)
        start = fe;
    uint64_t nb = 0, tc = 1;
    for (;;) {
        uint64_t end = start + tc + nb;
        uint64_t nb2 = (end + per_block - 1) / per_block;
        uint64_t tc2 = qcow2_align_up(nb2 * 8, cs) / cs;
        if (nb2 == nb && tc2 == tc)
            break;
        nb = nb2;
        tc = tc2;
    }
    if (tc * cs > QCOW2_MAX_REFTABLE_BYTES) {
        blk_set_error("%s: the rebuilt refcount table would be too large", s->bs->filename);
        return -EFBIG;
    }
    uint64_t end = start + tc + nb;
    int r = map_add(w, start << s->cluster_bits, (tc + nb) << s->cluster_bits);
    if (r < 0)
        return r;
    uint8_t *tbl = calloc(tc, cs), *blk = malloc(cs);
    if (!tbl || !blk) {
        free(tbl);
        free(blk);
        return -ENOMEM;
    }
    /* temporarily describe entries with the rb helpers via a scratch state */
    for (uint64_t b = 0; b < nb && r == 0; b++) {
        memset(blk, 0, cs);
        for (uint64_t i = 0; i < per_block; i++) {
            uint64_t c = b * per_block + i;
            uint64_t v = c < w->map.n ? w->map.r[c] : 0;
            if (!v)
                continue;
            uint32_t bits = s->refcount_bits;
            if (v > s->refcount_max)
                v = s->refcount_max;
            if (bits >= 8) {
                for (uint32_t k = 0; k < bits / 8; k++)
                    blk[i * bits / 8 + k] = (uint8_t)(v >> (8 * (bits / 8 - 1 - k)));
            } else {
                uint64_t bit = i * bits;
                blk[bit / 8] |= (uint8_t)(v << (bit % 8));
            }
        }
        uint64_t boff = (start + tc + b) << s->cluster_bits;
        qcow2_put64(tbl + 8 * b, boff);
        r = blk_file_pwrite(s->fd, blk, cs, boff);
        if (w->progress)
            blk_progress(s->bs, 500 + 500 * (b + 1) / nb, 1000);
    }
    if (r == 0)
        r = blk_file_pwrite(s->fd, tbl, tc * cs, start << s->cluster_bits);
    free(blk);
    if (r < 0) {
        free(tbl);
        blk_set_error("%s: cannot write the rebuilt refcount structure: %s", s->bs->filename,
                      strerror(-r));
        return r;
    }
    s->need_sync = true;
    if ((r = qcow2_sync(s)) < 0) {
        free(tbl);
        return r;
    }
    uint64_t *nrt = calloc(tc * cs / 8, 8);
    if (!nrt) {
        free(tbl);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < tc * cs / 8; i++)
        nrt[i] = qcow2_be64(tbl + 8 * i);
    free(tbl);
    free(s->rt);
    s->rt = nrt;
    qcow2_rt_replaced(s);
    s->rt_size = tc * cs / 8;
    s->rt_offset = start << s->cluster_bits;
    s->rt_clusters = (uint32_t)tc;
    if (end << s->cluster_bits > s->file_end)
        s->file_end = end << s->cluster_bits;
    for (int i = 0; i < s->rb_cache.n; i++) {
        s->rb_cache.offset[i] = 0;
        s->rb_cache.dirty[i] = false;
    }
    s->free_hint = 0;
    return 0;
}

/* ---- check -r all's rebuild, with QEMU's layout ----
 * The counts (the old refcount structure included) are one big refcount
 * block.  Each new block takes the first free cluster of the range it
 * describes or after it, the new table the first free run of the file;
 * the old structure is left leaked for the caller to repair, as QEMU's
 * rebuild_refcount_structure leaves it, so that both print the same and
 * lay the image out the same. */

struct qrebuild {
    struct walk *w;
    uint64_t *rt;    /* the new table, in memory */
    uint64_t entries;
    uint8_t *blk;
};

static int map_grow(struct walk *w, uint64_t n)
{
    if (n <= w->map.n)
        return 0;
    if (n > w->map.limit) {
        blk_set_error("%s: the rebuilt refcount structure would be too large",
                      w->s->bs->filename);
        return -EFBIG;
    }
    uint32_t *r = realloc(w->map.r, n * sizeof(*r));
    if (!r)
        return -ENOMEM;
    memset(r + w->map.n, 0, (n - w->map.n) * sizeof(*r));
    w->map.r = r;
    w->map.n = n;
    return 0;
}

/* count free clusters from *first_free (the first free one seen goes
 * back there), the file growing where none are: the first cluster */
static int64_t qr_alloc(struct walk *w, uint64_t count, uint64_t *first_free)
{
    uint64_t c = *first_free, run = 0;
    bool first_gap = true;
    for (; c < w->map.n && run < count; c++) {
        if (w->map.r[c]) {
            run = 0;
            continue;
        }
        run++;
        if (first_gap) {
            *first_free = c;
            first_gap = false;
        }
    }
    if (run < count) {
        int r = map_grow(w, c + count - run);
        if (r < 0)
            return r;
        c += count - run;
    }
    c -= count;
    for (uint64_t i = 0; i < count; i++)
        w->map.r[c + i] = 1;
    return (int64_t)c;
}

/* Writes the blocks for the clusters of [first, end) that have counts;
 * 1 if the table had to grow, 0, or a negative errno. */
static int qr_write_blocks(struct qrebuild *q, uint64_t first, uint64_t end)
{
    struct walk *w = q->w;
    Qcow2State *s = w->s;
    uint64_t per_block = 1ULL << s->rb_bits, first_free = 0, cs = s->cluster_size;
    int grown = 0;
    for (uint64_t c = first; c < end && c < w->map.n; c++) {
        if (!w->map.r[c])
            continue;
        uint64_t idx = c >> s->rb_bits, start = idx << s->rb_bits;
        uint64_t boff;
        if (q->entries > idx && q->rt[idx]) {
            boff = q->rt[idx];
        } else {
            if (first_free < start)
                first_free = start;
            int64_t b = qr_alloc(w, 1, &first_free);
            if (b < 0)
                return (int)b;
            if ((uint64_t)b >= end)
                end = (uint64_t)b + 1; /* its own refcount must be written too */
            if (q->entries <= idx) {
                uint64_t n = qcow2_align_up((idx + 1) * 8, cs) / 8;
                uint64_t *nrt = realloc(q->rt, n * 8);
                if (!nrt)
                    return -ENOMEM;
                memset(nrt + q->entries, 0, (n - q->entries) * 8);
                q->rt = nrt;
                q->entries = n;
                grown = 1;
            }
            boff = (uint64_t)b << s->cluster_bits;
            q->rt[idx] = boff;
        }
        memset(q->blk, 0, cs);
        for (uint64_t i = 0; i < per_block && start + i < w->map.n; i++) {
            uint64_t v = w->map.r[start + i];
            if (!v)
                continue;
            uint32_t bits = s->refcount_bits;
            if (v > s->refcount_max)
                v = s->refcount_max;
            if (bits >= 8) {
                for (uint32_t k = 0; k < bits / 8; k++)
                    q->blk[i * bits / 8 + k] = (uint8_t)(v >> (8 * (bits / 8 - 1 - k)));
            } else {
                uint64_t bit = i * bits;
                q->blk[bit / 8] |= (uint8_t)(v << (bit % 8));
            }
        }
        int r = blk_file_pwrite(s->fd, q->blk, cs, boff);
        if (r < 0) {
            blk_set_error("%s: cannot write a rebuilt refcount block: %s", s->bs->filename,
                          strerror(-r));
            return r;
        }
        if (boff + cs > s->file_end)
            s->file_end = boff + cs;
        c = start + per_block - 1;
    }
    return grown;
}

static int rebuild_qemu_layout(struct walk *w)
{
    Qcow2State *s = w->s;
    uint64_t cs = s->cluster_size;
    struct qrebuild q = {.w = w, .blk = malloc(cs)};
    if (!q.blk)
        return -ENOMEM;
    for (int i = 0; i < s->rb_cache.n; i++) {
        s->rb_cache.offset[i] = 0;
        s->rb_cache.dirty[i] = false;
    }
    int r = qr_write_blocks(&q, 0, w->map.n);
    int64_t toff = -1;
    uint64_t tclusters = 0;
    while (r > 0) {
        uint64_t first_free = 0;
        tclusters = qcow2_align_up(q.entries * 8, cs) / cs;
        if (tclusters * cs > QCOW2_MAX_REFTABLE_BYTES) {
            blk_set_error("%s: the rebuilt refcount table would be too large",
                          s->bs->filename);
            r = -EFBIG;
            break;
        }
        if ((toff = qr_alloc(w, tclusters, &first_free)) < 0) {
            r = (int)toff;
            break;
        }
        r = qr_write_blocks(&q, (uint64_t)toff, (uint64_t)toff + tclusters);
    }
    uint8_t *tbl = r < 0 ? NULL : calloc(tclusters, cs);
    if (r == 0 && !tbl)
        r = -ENOMEM;
    if (r == 0) {
        for (uint64_t i = 0; i < q.entries; i++)
            qcow2_put64(tbl + 8 * i, q.rt[i]);
        uint64_t off = (uint64_t)toff << s->cluster_bits;
        if ((r = blk_file_pwrite(s->fd, tbl, tclusters * cs, off)) < 0)
            blk_set_error("%s: cannot write the rebuilt refcount table: %s",
                          s->bs->filename, strerror(-r));
        if (off + tclusters * cs > s->file_end)
            s->file_end = off + tclusters * cs;
    }
    free(tbl);
    free(q.blk);
    /* the new structure is complete on disk before the header names it */
    s->need_sync = true;
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0) {
        uint8_t h[12];
        qcow2_put64(h, (uint64_t)toff << s->cluster_bits);
        qcow2_put32(h + 8, (uint32_t)tclusters);
        if ((r = blk_file_pwrite(s->fd, h, 12, 48)) < 0)
            blk_set_error("%s: cannot update the header: %s", s->bs->filename, strerror(-r));
        else
            r = qcow2_sync(s);
    }
    if (r < 0) {
        free(q.rt);
        return r;
    }
    free(s->rt);
    s->rt = q.rt;
    qcow2_rt_replaced(s);
    s->rt_size = q.entries;
    s->rt_offset = (uint64_t)toff << s->cluster_bits;
    s->rt_clusters = (uint32_t)tclusters;
    s->free_hint = 0;
    return 0;
}

/* Makes COPIED in the active L1 and L2 tables say "refcount is 1".  As in
 * QEMU, -r leaks repairs them too when the refcounts are known good by
 * then; a repaired entry counts as fixed, not as a corruption. */
static int check_copied(struct walk *w, int fix)
{
    Qcow2State *s = w->s;
    BlockCheckResult *res = w->res;
    int r = 0;
    if (!(fix & BLK_CHECK_FIX_ERRORS))
        fix = (fix & BLK_CHECK_FIX_LEAKS) && !res->check_errors && !res->corruptions &&
              !res->leaks;
    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t l1e = s->l1[i], l2_off = l1e & L1E_OFFSET_MASK;
        if (!l2_off || (l2_off & (s->cluster_size - 1)) || l2_off + s->cluster_size > s->file_end)
            continue;
        uint64_t ref;
        if (qcow2_get_refcount(s, l2_off >> s->cluster_bits, &ref) < 0)
            continue; /* refcount block damaged: counted already */
        if ((ref == 1) != !!(l1e & QCOW_OFLAG_COPIED)) {
            if (!w->quiet)
                fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%" PRIx64
                        " refcount=%" PRIu64 "\n", fix ? "Repairing" : "ERROR", i, l1e, ref);
            w->res->corruptions += !fix;
            if (fix) {
                s->l1[i] = ref == 1 ? (l1e | QCOW_OFLAG_COPIED) : (l1e & ~QCOW_OFLAG_COPIED);
                uint8_t e[8];
                qcow2_put64(e, s->l1[i]);
                if ((r = blk_file_pwrite(s->fd, e, 8, s->l1_offset + 8ULL * i)) < 0)
                    return r;
                w->res->corruptions_fixed++;
            }
        }
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
        if (!t)
            return err;
        memcpy(w->l2buf, t, s->cluster_size);
        bool changed = false;
        for (uint64_t j = 0; j < s->l2_size; j++) {
            uint8_t *p = w->l2buf + j * s->l2_entry_bytes;
            uint64_t l2e = qcow2_be64(p);
            int ct = qcow2_cluster_type(s, l2e);
            if (ct != QCOW2_NORMAL && ct != QCOW2_ZERO_ALLOC)
                continue;
            uint64_t host = l2e & L2E_OFFSET_MASK;
            if (host & (s->cluster_size - 1))
                continue;
            if (qcow2_has_data_file(s))
                ref = 1; /* every data file cluster is the image's alone */
            else if (qcow2_get_refcount(s, host >> s->cluster_bits, &ref) < 0)
                continue;
            if ((ref == 1) == !!(l2e & QCOW_OFLAG_COPIED))
                continue;
            if (!w->quiet)
                fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%"
                        PRIu64 "\n", fix ? "Repairing" : "ERROR", l2e, ref);
            w->res->corruptions += !fix;
            if (fix) {
                qcow2_put64(p, ref == 1 ? (l2e | QCOW_OFLAG_COPIED) : (l2e & ~QCOW_OFLAG_COPIED));
                changed = true;
                w->res->corruptions_fixed++;
            }
        }
        if (changed) {
            t = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
            if (!t)
                return err;
            memcpy(t, w->l2buf, s->cluster_size);
            if ((r = qcow2_cache_write_table(s, &s->l2_cache, t)) < 0)
                return r;
        }
    }
    return r;
}

static int walk_init(struct walk *w, Qcow2State *s, BlockCheckResult *res, bool quiet)
{
    memset(w, 0, sizeof(*w));
    w->s = s;
    w->res = res;
    w->quiet = quiet;
    int64_t len = blk_file_size(s->fd);
    w->file_len = len < 0 ? s->file_end : (uint64_t)len;
    w->map.n = (qcow2_align_up(w->file_len, s->cluster_size) >> s->cluster_bits) + 1;
    w->map.limit = 1ULL << (56 - s->cluster_bits);
    if (w->map.limit > (1ULL << 32))
        w->map.limit = 1ULL << 32;
    /* references far past the end of the file are corrupt: counting
     * them must not grow the map without bound (room stays for a rebuilt
     * refcount structure, at most 1M blocks plus its table) */
    if (w->map.limit > w->map.n + (1ULL << 22))
        w->map.limit = w->map.n + (1ULL << 22);
    w->map.r = calloc(w->map.n, sizeof(*w->map.r));
    w->l2buf = malloc(s->cluster_size);
    if (!w->map.r || !w->l2buf) {
        free(w->map.r);
        free(w->l2buf);
        blk_set_error("%s: out of memory for the refcount check", s->bs->filename);
        return -ENOMEM;
    }
    return 0;
}

static void walk_free(struct walk *w)
{
    free(w->map.r);
    free(w->l2buf);
    free(w->l2refs);
}

static int qcow2_check_locked(Qcow2State *s, BlockCheckResult *res, int fix);

int qcow2_repair_refcounts(Qcow2State *s)
{
    BlockCheckResult res = {0};
    struct walk w;
    int r = walk_init(&w, s, &res, true);
    if (r < 0)
        return r;
    if ((r = qcow2_flush_metadata(s)) == 0 && (r = count_refs(&w)) == 0 && res.corruptions) {
        /* damaged metadata (say, references far past the end of the
         * file) is no lazy-refcount leftover: rebuilding around it would
         * write a refcount structure wherever the damage points */
        blk_set_error("%s: image is dirty and its metadata is damaged (%" PRId64 " errors); "
                      "repair it with '%s check -r all'", s->bs->filename,
                      (int64_t)res.corruptions, blk_img_tool);
        r = -EIO;
    }
    walk_free(&w);
    if (r < 0)
        return r;
    /* then what QEMU does with a dirty image: check -r all, its lines on
     * stderr included (a rebuild only where refcounts are missing) */
    r = qcow2_check_locked(s, &res, BLK_CHECK_FIX_LEAKS | BLK_CHECK_FIX_ERRORS);
    /* the caller clears the header's dirty bit: the next lazy refcount
     * update must set it again */
    s->dirty_set = false;
    if (r == 0)
        r = qcow2_flush_metadata(s);
    return r;
}

static int set_refcount(Qcow2State *s, uint64_t c, uint64_t from, uint64_t to)
{
    return qcow2_update_refcount(s, c << s->cluster_bits, s->cluster_size,
                                 (int64_t)to - (int64_t)from);
}

/* Compares the stored refcounts with the counts of w, as QEMU's
 * compare_refcounts does: one line per mismatch ("ERROR" for a refcount
 * too low, "Leaked" for one too high, "Repairing" for one fix repairs in
 * place: a leak with FIX_LEAKS, a refcount too low but not zero with
 * FIX_ERRORS).  A referenced cluster without a refcount, or a refcount
 * block that cannot be read, sets *rebuild.  Unrepaired mismatches go
 * to res.  Returns the end (in clusters) of the last cluster that has a
 * refcount or a reference. */
static uint64_t compare_refcounts(struct walk *w, BlockCheckResult *res, int fix, bool *rebuild)
{
    Qcow2State *s = w->s;
    /* past the end of the file only referenced clusters are compared:
     * QEMU's in-memory table ends there */
    uint64_t file_clusters = qcow2_align_up(w->file_len, s->cluster_size) >> s->cluster_bits;
    uint64_t hi = 0;
    for (uint64_t c = 0; c < w->map.n; c++) {
        uint64_t stored, want = w->map.r[c];
        if ((c >> s->rb_bits) >= s->rt_size || !s->rt[c >> s->rb_bits]) {
            stored = 0;
        } else if (qcow2_get_refcount(s, c, &stored) < 0) {
            /* an unaligned block or one past the end of the file, counted
             * as a corruption of the refcount structure already: once,
             * not per cluster */
            *rebuild = true;
            c |= (UINT64_C(1) << s->rb_bits) - 1;
            continue;
        }
        if (!want && c >= file_clusters)
            continue;
        if (stored || want)
            hi = c + 1;
        if (stored == want)
            continue;
        bool repair = false;
        if (!stored)
            *rebuild = true;
        else if (stored > want)
            repair = fix & BLK_CHECK_FIX_LEAKS;
        else
            repair = fix & BLK_CHECK_FIX_ERRORS;
        fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
                repair ? "Repairing" : stored < want ? "ERROR" : "Leaked", c, stored, want);
        if (repair && set_refcount(s, c, stored, want) == 0) {
            if (stored > want)
                res->leaks_fixed++;
            else
                res->corruptions_fixed++;
            continue;
        }
        if (stored < want)
            res->corruptions++;
        else
            res->leaks++;
    }
    return hi;
}

/* Counts every reference, the refcount structure's included. */
static int count_all(struct walk *w)
{
    int r = count_refs(w);
    return r < 0 ? r : count_refcount_structure(w);
}

static int qcow2_check_locked(Qcow2State *s, BlockCheckResult *res, int fix)
{
    struct walk w;
    memset(res, 0, sizeof(*res));
    int r = walk_init(&w, s, res, false);
    if (r < 0)
        return r;
    w.fix = fix;
    if (!s->bs->read_only && (r = qcow2_flush_metadata(s)) < 0)
        goto out;
    res->total_clusters = (int64_t)((s->bs->size + s->cluster_size - 1) >> s->cluster_bits);
    if ((r = count_refs(&w)) < 0)
        goto out;
    /* damage of the refcount structure itself (misaligned or reserved
     * table entries) needs a rebuild; damage elsewhere does not (QEMU) */
    int64_t before = res->corruptions;
    if ((r = count_refcount_structure(&w)) < 0)
        goto out;
    bool rebuild_needed = res->corruptions > before;
    /* first every mismatch is reported as it is; only then is anything
     * repaired, as qemu-img does */
    BlockCheckResult pre = *res;
    uint64_t hi = compare_refcounts(&w, res, 0, &rebuild_needed);
    if (rebuild_needed && (fix & BLK_CHECK_FIX_ERRORS)) {
        BlockCheckResult old = *res;
        fprintf(stderr, "Rebuilding refcount structure\n");
        if ((r = rebuild_qemu_layout(&w)) < 0) {
            fprintf(stderr, "%s\n", blk_error());
            goto out;
        }
        /* count again against the new structure */
        walk_free(&w);
        res->corruptions = res->leaks = 0;
        if ((r = walk_init(&w, s, res, false)) < 0)
            return r;
        if ((r = count_all(&w)) < 0)
            goto out;
        int64_t fresh_leaks = 0;
        if (fix & BLK_CHECK_FIX_LEAKS) {
            /* what the rebuild itself leaked is repaired quietly in the
             * result: only leaks it could not repair remain */
            BlockCheckResult saved = *res, cmp = {0};
            bool again = false;
            hi = compare_refcounts(&w, &cmp, BLK_CHECK_FIX_LEAKS, &again);
            if (again)
                fprintf(stderr, "ERROR rebuilt refcount structure is still broken\n");
            fresh_leaks = cmp.leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions)
            res->corruptions_fixed += old.corruptions - res->corruptions;
        if (res->leaks < old.leaks)
            res->leaks_fixed += old.leaks - res->leaks;
        res->leaks += fresh_leaks;
    } else if (fix) {
        if (rebuild_needed) {
            fprintf(stderr, "ERROR need to rebuild refcount structures\n");
            res->check_errors++;
            r = -EIO;
            goto out;
        }
        if (res->leaks || res->corruptions) {
            *res = pre;
            hi = compare_refcounts(&w, res, fix, &rebuild_needed);
        }
    }
    if ((r = check_copied(&w, fix)) < 0)
        goto out;
    if (fix && !s->bs->read_only)
        r = qcow2_flush_metadata(s);
    res->image_end_offset = (hi ? hi : 1) << s->cluster_bits;
out:
    walk_free(&w);
    return r;
}

/* A snapshot table that open could not read: read it again, in check
 * -r all dropping what QEMU drops (entries past the count or size limit,
 * extra data past its limit).  Dropped entries are cut off in the header
 * now, leaking their clusters for the refcount check to free; dropped
 * extra data is counted in *dropped, for the table to be rewritten once
 * the refcounts are sound. */
static int reread_snapshots(Qcow2State *s, BlockCheckResult *res, int fix, uint32_t *dropped)
{
    uint32_t reduced = 0;
    s->sn_unread = false;
    s->nb_snapshots = s->sn_hdr_nb;
    s->snapshots_offset = s->sn_hdr_offset;
    bool repair = fix & BLK_CHECK_FIX_ERRORS;
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS && repair) {
        fprintf(stderr, "Discarding %u overhanging snapshots\n",
                s->nb_snapshots - QCOW2_MAX_SNAPSHOTS);
        reduced = s->nb_snapshots - QCOW2_MAX_SNAPSHOTS;
        s->nb_snapshots = QCOW2_MAX_SNAPSHOTS;
    }
    uint32_t nb = s->nb_snapshots;
    int r = qcow2_read_snapshots(s, repair, &reduced, dropped);
    if (r < 0) {
        res->check_errors++;
        res->error_msg = true;
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", blk_error());
        if (nb > QCOW2_MAX_SNAPSHOTS)
            blk_set_error("ERROR %s\nYou can force-remove all %u overhanging snapshots with %s "
                          "check -r all", msg, nb - QCOW2_MAX_SNAPSHOTS, blk_img_tool);
        else
            blk_set_error("ERROR failed to read the snapshot table: %s", msg);
        s->sn_unread = true;
        s->nb_snapshots = 0;
        s->snapshots_offset = 0;
        return r;
    }
    if (!reduced)
        return 0;
    if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0) {
        res->check_errors++;
        fprintf(stderr, "ERROR failed to update the snapshot count in the image header: %s\n",
                strerror(-r));
        return r;
    }
    res->corruptions_fixed += reduced;
    return 0;
}

int qcow2_check(BlockDriverState *bs, BlockCheckResult *res, int fix)
{
    Qcow2State *s = bs->opaque;
    pthread_mutex_lock(&s->lock);
    uint32_t dropped = 0;
    BlockCheckResult sn_res = {0}; /* qcow2_check_locked() clears res */
    if (s->sn_unread) {
        int r = reread_snapshots(s, &sn_res, fix, &dropped);
        if (r < 0) {
            *res = sn_res;
            pthread_mutex_unlock(&s->lock);
            return r;
        }
    }
    /* the snapshot table first, as QEMU: version 3 entries need the
     * extra data of version 3; repaired after the refcounts are */
    int64_t sn_bad = dropped;
    for (uint32_t i = 0; s->version >= 3 && i < s->nb_snapshots; i++) {
        if (!qcow2_snapshot_incomplete(s, i))
            continue;
        fprintf(stderr, "%s snapshot table entry %u is incomplete\n",
                (fix & BLK_CHECK_FIX_ERRORS) ? "Repairing" : "ERROR", i);
        sn_bad++;
    }
    int r = qcow2_check_locked(s, res, fix);
    res->corruptions_fixed += sn_res.corruptions_fixed;
    res->check_errors += sn_res.check_errors;
    if (r == 0 && sn_bad && (fix & BLK_CHECK_FIX_ERRORS)) {
        if ((r = qcow2_snapshot_complete_table(s)) < 0) {
            fprintf(stderr, "ERROR failed to update snapshot table: %s\n", strerror(-r));
            res->check_errors++;
            res->corruptions += sn_bad;
        } else {
            res->corruptions_fixed += sn_bad;
        }
    } else {
        res->corruptions += sn_bad;
    }
    if (r == 0 && fix && (s->incompat & (QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DIRTY)) &&
        !res->corruptions && !res->check_errors) {
        /* repaired: the image may be written again */
        s->incompat &= ~(QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DIRTY);
        r = qcow2_update_header(s);
        if (r == 0)
            r = qcow2_sync(s);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_change_refcount_order(Qcow2State *s, uint32_t order)
{
    BlockCheckResult res = {0};
    struct walk w;
    int r = walk_init(&w, s, &res, true);
    if (r < 0)
        return r;
    w.progress = true;
    if ((r = qcow2_flush_metadata(s)) < 0 || (r = count_refs(&w)) < 0)
        goto out;
    if (res.corruptions) {
        /* refuse rather than write a structure for damaged metadata */
        blk_set_error("%s: the image has corruptions; repair it with 'check -r all' first",
                      s->bs->filename);
        r = -EIO;
        goto out;
    }
    uint64_t new_max = order == 6 ? UINT64_MAX : (1ULL << (1u << order)) - 1;
    for (uint64_t c = 0; c < w.map.n; c++) {
        if (w.map.r[c] > new_max) {
            blk_set_error("Cannot decrease refcount entry width to %u bits: Cluster at offset "
                          "%#" PRIx64 " has a refcount of %u", 1u << order,
                          c << s->cluster_bits, w.map.r[c]);
            r = -EINVAL;
            goto out;
        }
    }
    uint32_t old_order = s->refcount_order, old_bits = s->refcount_bits, old_rb = s->rb_bits;
    uint64_t old_max = s->refcount_max;
    s->refcount_order = order;
    s->refcount_bits = 1u << order;
    s->rb_bits = s->cluster_bits + 3 - order;
    s->refcount_max = new_max;
    /* the old structure is not counted: it becomes free space once the
     * header (offset, size and width in one sector) names the new one */
    r = rebuild_structure(&w);
    if (r < 0) {
        /* nothing switched: the old structure is still the one in use */
        s->refcount_order = old_order;
        s->refcount_bits = old_bits;
        s->rb_bits = old_rb;
        s->refcount_max = old_max;
    } else if ((r = qcow2_update_header(s)) == 0) {
        r = qcow2_sync(s);
    }
out:
    walk_free(&w);
    return r;
}
