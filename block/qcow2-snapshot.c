/* qcow2 internal snapshots: create, apply, delete.
 *
 * A snapshot is a copy of the active L1 table plus one more reference on
 * every L2 table and data cluster that L1 reaches; the snapshot table
 * (SPEC 1.5) lists them.  Crash safety follows qcow2-refcount.c:
 *  - create: refcounts go up first, then COPIED is cleared in the active
 *    tables, then the new snapshot table is written and the header
 *    switched to it; a crash in between leaves leaked references only;
 *  - apply: the snapshot's tree gains a reference before the active L1 is
 *    overwritten with its entries, and the old active tree loses one only
 *    after that L1 is on disk;
 *  - delete: the table without the entry is on disk before the
 *    snapshot's tree loses its references.
 * COPIED flags in the active tree are recomputed from the refcounts at the
 * end of every operation, once those refcounts are on disk. */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* QEMU writes vm_state_size_large, disk_size and icount */
#define SN_EXTRA_KNOWN 24

static uint64_t per_l1_bytes(const Qcow2State *s)
{
    return s->cluster_size * s->l2_size;
}

static int read_l1(Qcow2State *s, uint64_t off, uint32_t n, uint64_t **out)
{
    uint64_t *l1 = calloc(n ? n : 1, 8);
    if (!l1)
        return -ENOMEM;
    int r = blk_file_pread(s->fd, l1, (uint64_t)n * 8, off);
    if (r < 0) {
        free(l1);
        blk_set_error("%s: cannot read a snapshot L1 table: %s", s->bs->filename, strerror(-r));
        return r;
    }
    for (uint32_t i = 0; i < n; i++)
        l1[i] = qcow2_be64(&l1[i]);
    *out = l1;
    return 0;
}

static int write_l1(Qcow2State *s, uint64_t off, const uint64_t *l1, uint32_t n)
{
    uint8_t *buf = malloc(n ? (size_t)n * 8 : 1);
    if (!buf)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        qcow2_put64(buf + 8 * i, l1[i]);
    int r = blk_file_pwrite(s->fd, buf, (uint64_t)n * 8, off);
    free(buf);
    if (r < 0)
        blk_set_error("%s: cannot write an L1 table: %s", s->bs->filename, strerror(-r));
    s->need_sync = true;
    return r;
}

/* A reference the metadata would make to a cluster outside the file is
 * damage: never turn it into refcount updates. */
static int check_ref(Qcow2State *s, uint64_t off, const char *what)
{
    if ((off & (s->cluster_size - 1)) || off >= qcow2_align_up(s->file_end, s->cluster_size))
        return qcow2_mark_corrupt(s, "%s at 0x%" PRIx64 " is misaligned or beyond the end of "
                                  "the file", what, off);
    return 0;
}

/* Adds one reference (delta > 0) to, or drops one (delta < 0) from, every
 * L2 table and data cluster the L1 table reaches.  Increments are written
 * through; decrements are deferred (qcow2_free_later) because the caller
 * has already stopped referencing them.  At most limit updates are made;
 * *done counts them, so a failed increment can be undone exactly. */
static int tree_refcounts(Qcow2State *s, const uint64_t *l1, uint32_t l1_size, int delta,
                          uint64_t limit, uint64_t *done)
{
    uint64_t cs = s->cluster_size;
    uint8_t *buf = malloc(cs);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    *done = 0;
    for (uint32_t i = 0; i < l1_size && r == 0 && *done < limit; i++) {
        uint64_t l2_off = l1[i] & L1E_OFFSET_MASK;
        if (!l2_off)
            continue;
        if ((r = check_ref(s, l2_off, "an L2 table")) < 0)
            break;
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
        if (!t) {
            r = err;
            break;
        }
        memcpy(buf, t, cs);
        for (uint64_t j = 0; j < s->l2_size && r == 0 && *done < limit; j++) {
            uint64_t l2e = qcow2_be64(buf + j * s->l2_entry_bytes);
            int ct = qcow2_cluster_type(s, l2e);
            if (ct == QCOW2_COMPRESSED) {
                uint64_t off, bytes;
                qcow2_compressed_span(s, l2e, &off, &bytes);
                if (off >= s->file_end) {
                    r = qcow2_mark_corrupt(s, "compressed cluster at 0x%" PRIx64 " is beyond "
                                           "the end of the file", off);
                    break;
                }
                if (delta > 0)
                    r = qcow2_update_refcount(s, off, bytes, delta);
                else
                    r = qcow2_free_compressed_later(s, l2e);
            } else if (ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC) {
                uint64_t host = l2e & L2E_OFFSET_MASK;
                if ((r = check_ref(s, host, "a data cluster")) < 0)
                    break;
                if (delta > 0)
                    r = qcow2_update_refcount(s, host, cs, delta);
                else
                    r = qcow2_free_later(s, host, 1, FREE_NORMAL);
            } else {
                continue;
            }
            if (r == 0)
                (*done)++;
        }
        if (r < 0 || *done >= limit)
            break;
        if (delta > 0)
            r = qcow2_update_refcount(s, l2_off, cs, delta);
        else
            r = qcow2_free_later(s, l2_off, 1, FREE_NORMAL);
        if (r == 0)
            (*done)++;
    }
    free(buf);
    return r;
}

/* One more reference on a whole tree, or none at all. */
static int tree_ref(Qcow2State *s, const uint64_t *l1, uint32_t l1_size)
{
    uint64_t done = 0, undone;
    int r = tree_refcounts(s, l1, l1_size, 1, UINT64_MAX, &done);
    if (r < 0) {
        /* nothing references the new counts yet: give them back */
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", blk_error());
        if (tree_refcounts(s, l1, l1_size, -1, done, &undone) == 0)
            qcow2_flush_metadata(s);
        blk_set_error("%s", msg);
        return r;
    }
    return qcow2_sync(s);
}

/* Makes COPIED in the active L1 and L2 tables say "refcount is 1".  The
 * refcounts must be on disk: setting COPIED allows writes in place. */
static int fix_copied(Qcow2State *s)
{
    bool l1_changed = false;
    int r = 0;
    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t l1e = s->l1[i], l2_off = l1e & L1E_OFFSET_MASK;
        if (!l2_off)
            continue;
        if ((r = check_ref(s, l2_off, "an L2 table")) < 0)
            break;
        uint64_t ref;
        if ((r = qcow2_get_refcount(s, l2_off >> s->cluster_bits, &ref)) < 0)
            break;
        uint64_t n1 = ref == 1 ? (l1e | QCOW_OFLAG_COPIED) : (l1e & ~QCOW_OFLAG_COPIED);
        if (n1 != l1e) {
            s->l1[i] = n1;
            l1_changed = true;
        }
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
        if (!t)
            return err;
        bool changed = false;
        for (uint64_t j = 0; j < s->l2_size; j++) {
            uint8_t *p = t + j * s->l2_entry_bytes;
            uint64_t l2e = qcow2_be64(p);
            int ct = qcow2_cluster_type(s, l2e);
            uint64_t n2 = l2e;
            if (ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC) {
                if ((r = qcow2_get_refcount(s, (l2e & L2E_OFFSET_MASK) >> s->cluster_bits,
                                            &ref)) < 0)
                    return r;
                n2 = ref == 1 ? (l2e | QCOW_OFLAG_COPIED) : (l2e & ~QCOW_OFLAG_COPIED);
            } else if (ct != QCOW2_UNALLOCATED || (l2e & L2E_OFFSET_MASK)) {
                n2 = l2e & ~QCOW_OFLAG_COPIED; /* never on compressed or zero entries */
            }
            if (n2 != l2e) {
                qcow2_put64(p, n2);
                changed = true;
            }
        }
        if (changed)
            r = qcow2_cache_write_table(s, &s->l2_cache, t);
    }
    if (r == 0 && l1_changed)
        r = write_l1(s, s->l1_offset, s->l1, s->l1_size);
    if (r == 0)
        r = qcow2_sync(s);
    qcow2_cbuf_invalidate(s);
    return r;
}

/* ---- the snapshot table ---- */

static uint64_t entry_size(const Qcow2Snapshot *sn)
{
    return qcow2_align_up(40 + sn->extra_size + strlen(sn->id) + strlen(sn->name), 8);
}

static uint64_t table_size(const Qcow2Snapshot *list, uint32_t n)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < n; i++)
        t += entry_size(&list[i]);
    return t;
}

/* Gives a snapshot at least the extra data QEMU writes, keeping what is
 * there byte for byte. */
static int ensure_extra(Qcow2Snapshot *sn)
{
    if (sn->extra_size >= SN_EXTRA_KNOWN)
        return 0;
    uint8_t *e = calloc(1, SN_EXTRA_KNOWN);
    if (!e)
        return -ENOMEM;
    qcow2_put64(e, sn->vm_state_size);
    qcow2_put64(e + 8, sn->disk_size);
    qcow2_put64(e + 16, sn->icount);
    if (sn->extra_size)
        memcpy(e, sn->extra, sn->extra_size);
    free(sn->extra);
    sn->extra = e;
    sn->extra_size = SN_EXTRA_KNOWN;
    return 0;
}

static void serialize(const Qcow2Snapshot *list, uint32_t n, uint8_t *buf)
{
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        const Qcow2Snapshot *sn = &list[i];
        uint8_t *p = buf + pos;
        size_t il = strlen(sn->id), nl = strlen(sn->name);
        qcow2_put64(p, sn->l1_offset);
        qcow2_put32(p + 8, sn->l1_size);
        qcow2_put16(p + 12, (uint16_t)il);
        qcow2_put16(p + 14, (uint16_t)nl);
        qcow2_put32(p + 16, sn->date_sec);
        qcow2_put32(p + 20, sn->date_nsec);
        qcow2_put64(p + 24, sn->vm_clock_nsec);
        qcow2_put32(p + 32, (uint32_t)sn->vm_state_size);
        qcow2_put32(p + 36, sn->extra_size);
        memcpy(p + 40, sn->extra, sn->extra_size);
        memcpy(p + 40 + sn->extra_size, sn->id, il);
        memcpy(p + 40 + sn->extra_size + il, sn->name, nl);
        pos += entry_size(sn);
    }
}

/* Writes list as the new snapshot table, switches the header to it and
 * frees the old table.  On success s->snapshots is list (the old array
 * is freed, not the strings it shares). */
static int write_table(Qcow2State *s, Qcow2Snapshot *list, uint32_t n)
{
    uint64_t cs = s->cluster_size;
    uint64_t size = table_size(list, n);
    if (size > QCOW2_MAX_SNAPSHOT_TABLE || n > QCOW2_MAX_SNAPSHOTS) {
        blk_set_error("%s: the snapshot table would be too large", s->bs->filename);
        return -EFBIG;
    }
    uint64_t old_off = s->snapshots_offset;
    uint64_t old_bytes = s->nb_snapshots ? table_size(s->snapshots, s->nb_snapshots) : 0;
    /* the old table may span more, with extra data check -r all drops */
    if (s->nb_snapshots && old_bytes < s->snapshots_size)
        old_bytes = s->snapshots_size;
    uint32_t old_n = s->nb_snapshots;
    uint64_t new_off = 0;
    int r = 0;
    if (n) {
        uint64_t clusters = qcow2_align_up(size, cs) / cs;
        uint8_t *buf = calloc(1, size);
        if (!buf)
            return -ENOMEM;
        serialize(list, n, buf);
        int64_t off = qcow2_alloc_clusters(s, clusters);
        if (off < 0) {
            free(buf);
            return (int)off;
        }
        new_off = (uint64_t)off;
        r = blk_file_pwrite(s->fd, buf, size, new_off);
        free(buf);
        if (r < 0) {
            blk_set_error("%s: cannot write the snapshot table: %s", s->bs->filename,
                          strerror(-r));
            return r;
        }
        s->need_sync = true;
        if ((r = qcow2_sync(s)) < 0)
            return r;
    }
    s->snapshots_offset = new_off;
    s->nb_snapshots = n;
    uint64_t old_size = s->snapshots_size;
    s->snapshots_size = 0;
    if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0) {
        s->snapshots_offset = old_off;
        s->nb_snapshots = old_n;
        s->snapshots_size = old_size;
        return r;
    }
    free(s->snapshots);
    s->snapshots = list;
    /* The new table is in place and s->snapshots owns list: a failure to
     * free the old table only leaks it, and must not make the caller free
     * list (a use-after-free found by the fuzzer on damaged refcounts). */
    if (old_n && old_bytes &&
        qcow2_free_later(s, old_off, qcow2_align_up(old_bytes, cs) / cs, FREE_NORMAL) == 0)
        qcow2_flush_metadata(s);
    return 0;
}

int qcow2_snapshot_complete_table(Qcow2State *s)
{
    if (!s->nb_snapshots)
        return 0;
    int r = 0;
    for (uint32_t i = 0; r == 0 && i < s->nb_snapshots; i++)
        r = ensure_extra(&s->snapshots[i]);
    /* the list shares the strings and extra data of s->snapshots */
    Qcow2Snapshot *list = r < 0 ? NULL : calloc(s->nb_snapshots, sizeof(*list));
    if (!list)
        return r < 0 ? r : -ENOMEM;
    memcpy(list, s->snapshots, s->nb_snapshots * sizeof(*list));
    if ((r = write_table(s, list, s->nb_snapshots)) < 0)
        free(list);
    return r;
}

static int find_snapshot(Qcow2State *s, const char *name_or_id)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snapshots[i].id, name_or_id))
            return (int)i;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snapshots[i].name, name_or_id))
            return (int)i;
    return -1;
}

/* One operation's state.  Refcounts are written through while it runs,
 * so that the ordering above holds even on a lazy_refcounts image.  On a
 * version 3 image the dirty bit is set while references and COPIED flags
 * disagree (between a refcount change and the COPIED recomputation no
 * order of writes is clean, as in QEMU): a crash then leaves an image
 * that the next read-write open repairs, by QEMU or by calf. */
struct sn_op {
    bool lazy;
    bool marked; /* we set the dirty bit */
    bool undone; /* failed, but left nothing half done */
};

static int begin(Qcow2State *s, struct sn_op *op)
{
    memset(op, 0, sizeof(*op));
    op->lazy = s->lazy;
    int r = qcow2_flush_metadata(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        s->lazy = false;
    return r;
}

static int mark_busy(Qcow2State *s, struct sn_op *op)
{
    if (s->version < 3 || (s->incompat & QCOW2_INCOMPAT_DIRTY))
        return 0;
    s->incompat |= QCOW2_INCOMPAT_DIRTY;
    int r = qcow2_update_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
        return r;
    }
    op->marked = true;
    return 0;
}

static int end(Qcow2State *s, struct sn_op *op, int r)
{
    /* A failed step may have left refcounts changed (a refcount block
     * write that failed still updated the cached block): make COPIED
     * agree with them, so that what is left is a leak, not a flag that
     * allows writes in place into a shared cluster. */
    if (r < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", blk_error());
        fix_copied(s);
        blk_set_error("%s", msg);
    }
    int f = qcow2_flush_metadata(s);
    if (f == 0)
        f = qcow2_sync(s);
    s->lazy = op->lazy;
    if (f == 0 && op->marked && (r == 0 || op->undone)) {
        s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
        if ((f = qcow2_update_header(s)) == 0)
            f = qcow2_sync(s);
    }
    return r < 0 ? r : f;
}

static int snapshot_create_locked(Qcow2State *s, const char *name, struct sn_op *op,
                                  uint64_t vm_state_size, uint64_t vm_clock_nsec)
{
    BlockDriverState *bs = s->bs;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        blk_set_error("%s: too many snapshots", bs->filename);
        return -EFBIG;
    }
    if (strlen(name) > 65535) {
        blk_set_error("%s: snapshot name is too long", bs->filename);
        return -EINVAL;
    }
    uint64_t cs = s->cluster_size;
    /* the snapshot's own copy of the active L1, without COPIED flags */
    uint64_t *copy = calloc(s->l1_size ? s->l1_size : 1, 8);
    if (!copy)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->l1_size; i++)
        copy[i] = s->l1[i] & ~QCOW_OFLAG_COPIED;
    uint64_t l1_clusters = qcow2_align_up((uint64_t)s->l1_size * 8, cs) / cs;
    int64_t l1_off = 0;
    int r = 0;
    if (l1_clusters) {
        l1_off = qcow2_alloc_clusters(s, l1_clusters);
        if (l1_off < 0) {
            free(copy);
            return (int)l1_off;
        }
        if ((r = write_l1(s, l1_off, copy, s->l1_size)) < 0 || (r = qcow2_sync(s)) < 0)
            goto fail_l1;
    }
    if ((r = mark_busy(s, op)) < 0)
        goto fail_l1;
    if ((r = tree_ref(s, copy, s->l1_size)) < 0) {
        op->undone = true;
        if (r == -ERANGE) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", blk_error());
            blk_set_error("%s: refcount overflow: a cluster cannot get another reference "
                          "with refcount_bits=%u (%s)", bs->filename, s->refcount_bits, msg);
            r = -EINVAL; /* QEMU's status for it */
        }
        goto fail_l1;
    }
    /* every reached cluster is shared now: writes must copy first */
    if ((r = fix_copied(s)) < 0)
        goto out;

    /* in memory what will be on disk; the list below shares the strings
     * (every entry with QEMU's extra data, whatever the version) */
    for (uint32_t i = 0; r == 0 && i < s->nb_snapshots; i++)
        r = ensure_extra(&s->snapshots[i]);
    Qcow2Snapshot *list = r < 0 ? NULL : calloc(s->nb_snapshots + 1, sizeof(*list));
    if (!list) {
        r = -ENOMEM;
        goto out;
    }
    if (s->nb_snapshots) /* s->snapshots is NULL without any */
        memcpy(list, s->snapshots, s->nb_snapshots * sizeof(*list));
    Qcow2Snapshot *sn = &list[s->nb_snapshots];
    unsigned long max_id = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long id = strtoul(s->snapshots[i].id, NULL, 10);
        if (id > max_id)
            max_id = id;
    }
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "%lu", max_id + 1);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    sn->l1_offset = (uint64_t)l1_off;
    sn->l1_size = s->l1_size;
    sn->id = strdup(idbuf);
    sn->name = strdup(name);
    sn->date_sec = (uint32_t)tv.tv_sec;
    sn->date_nsec = (uint32_t)tv.tv_usec * 1000;
    sn->disk_size = bs->size;
    sn->icount = 0; /* what qemu-img snapshot -c records */
    sn->vm_state_size = vm_state_size;
    sn->vm_clock_nsec = vm_clock_nsec;
    r = ensure_extra(sn);
    if (!sn->id || !sn->name)
        r = -ENOMEM;
    if (r == 0)
        r = write_table(s, list, s->nb_snapshots + 1);
    if (r < 0) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
        free(list);
    }
    /* a failure here leaves only leaked references */
    goto out;
fail_l1:
    if (l1_off > 0 && qcow2_free_later(s, l1_off, l1_clusters, FREE_NORMAL) == 0)
        qcow2_flush_metadata(s);
out:
    free(copy);
    return r;
}

int qcow2_snapshot_create(BlockDriverState *bs, const char *name)
{
    return qcow2_snapshot_create_vm(bs, name, 0, 0);
}

/* With VM state: the snapshot's L1 keeps the VM state area as it is now;
 * then the active image lets go of it (QEMU's qcow2_snapshot_create
 * discards it the same way), so the snapshot alone holds those clusters. */
int qcow2_snapshot_create_vm(BlockDriverState *bs, const char *name, uint64_t vm_state_size,
                             uint64_t vm_clock_nsec)
{
    Qcow2State *s = bs->opaque;
    struct sn_op op;
    /* data file clusters have no refcount to share with a snapshot
     * (QEMU's message) */
    if (qcow2_has_data_file(s)) {
        blk_set_error("-95 (Operation not supported)");
        return -ENOTSUP;
    }
    pthread_mutex_lock(&s->lock);
    int r = begin(s, &op);
    if (r == 0)
        r = snapshot_create_locked(s, name, &op, vm_state_size, vm_clock_nsec);
    r = end(s, &op, r);
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && vm_state_size) {
        uint64_t span = per_l1_bytes(s);
        uint64_t base = (bs->size / span + !!(bs->size % span)) * span;
        uint64_t len = qcow2_align_up(vm_state_size, s->cluster_size);
        pthread_mutex_lock(&s->lock);
        uint64_t covered = (uint64_t)s->l1_size * span;
        pthread_mutex_unlock(&s->lock);
        /* only what the active L1 reaches (saving the state grew it) */
        if (base < covered)
            r = qcow2_discard_tail(bs, base, covered - base < len ? covered - base : len);
    }
    return r;
}

/* disk_only: only the L1 entries of the guest disk are taken from the
 * snapshot; the active image keeps its own VM state area (calf run
 * --loadvm reads the state through the snapshot's L1 instead, so that a
 * restore costs no refcount update per cluster of saved RAM).  Only for
 * a snapshot of the same disk size (-ENOTSUP otherwise). */
static int snapshot_apply_locked(Qcow2State *s, const char *name_or_id, struct sn_op *op,
                                 bool disk_only)
{
    BlockDriverState *bs = s->bs;
    int idx = find_snapshot(s, name_or_id);
    if (idx < 0) {
        blk_set_error("%s: Can't find snapshot '%s'", bs->filename, name_or_id);
        return -ENOENT;
    }
    Qcow2Snapshot *sn = &s->snapshots[idx];
    uint64_t new_size = sn->disk_size;
    if (new_size > INT64_MAX || new_size % BLK_SECTOR_SIZE) { /* open's limit */
        return qcow2_mark_corrupt(s, "snapshot '%s' has an invalid disk size %" PRIu64,
                                  sn->name, new_size);
    }
    uint64_t disk_l1 = (new_size + per_l1_bytes(s) - 1) / per_l1_bytes(s);
    if (disk_only && new_size != bs->size)
        return -ENOTSUP;
    uint64_t *snl1;
    int r = read_l1(s, sn->l1_offset, sn->l1_size, &snl1);
    if (r < 0)
        return r;
    uint32_t take = disk_only && disk_l1 < sn->l1_size ? (uint32_t)disk_l1 : sn->l1_size;
    uint64_t need = disk_l1;
    if (need < take)
        need = take;
    if ((r = qcow2_grow_l1(s, need)) < 0)
        goto out;
    /* the snapshot's tree gains its reference from the active L1 first */
    if ((r = mark_busy(s, op)) < 0)
        goto out;
    if ((r = tree_ref(s, snl1, take)) < 0) {
        op->undone = true;
        goto out;
    }
    uint64_t *nl1 = calloc(s->l1_size ? s->l1_size : 1, 8);
    if (!nl1) {
        r = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < take; i++)
        nl1[i] = snl1[i] & ~QCOW_OFLAG_COPIED;
    /* disk_only: the entries past the disk stay the active image's own;
     * those of the disk the snapshot's L1 does not reach stay zero (the
     * snapshot has nothing there) and lose their reference below */
    uint64_t keep = disk_l1 > take ? disk_l1 : take;
    for (uint64_t i = keep; disk_only && i < s->l1_size; i++)
        nl1[i] = s->l1[i];
    if ((r = write_l1(s, s->l1_offset, nl1, s->l1_size)) < 0 || (r = qcow2_sync(s)) < 0) {
        free(nl1);
        goto out; /* leaks only: both trees are counted */
    }
    uint64_t *old = s->l1;
    s->l1 = nl1;
    qcow2_cbuf_invalidate(s);
    if (new_size != bs->size) {
        uint64_t old_size = bs->size;
        bs->size = new_size;
        if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0) {
            bs->size = old_size;
            free(old);
            goto out;
        }
    }
    /* the old active tree loses its reference now that nothing points to it */
    uint64_t done;
    r = tree_refcounts(s, old, disk_only ? (uint32_t)keep : s->l1_size, -1, UINT64_MAX, &done);
    free(old);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    if (r == 0)
        r = fix_copied(s);
out:
    free(snl1);
    return r;
}

static int snapshot_apply(BlockDriverState *bs, const char *name_or_id, bool disk_only)
{
    Qcow2State *s = bs->opaque;
    struct sn_op op;
    /* data file clusters have no refcount to share with a snapshot
     * (QEMU's message) */
    if (qcow2_has_data_file(s)) {
        blk_set_error("Failed to load snapshot: Operation not supported");
        return -ENOTSUP;
    }
    pthread_mutex_lock(&s->lock);
    int r = begin(s, &op);
    if (r == 0)
        r = snapshot_apply_locked(s, name_or_id, &op, disk_only);
    r = end(s, &op, r);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_snapshot_apply(BlockDriverState *bs, const char *name_or_id)
{
    return snapshot_apply(bs, name_or_id, false);
}

int qcow2_snapshot_apply_disk(BlockDriverState *bs, const char *name_or_id)
{
    return snapshot_apply(bs, name_or_id, true);
}

/* The snapshot's VM state through its own L1 table: read into buf, or
 * (buf NULL) the host offset of [pos, pos+len) when it is one run of
 * plain clusters.  Images whose clusters are not plain bytes of the
 * file (encryption, extended L2, a data file) answer -ENOTSUP. */
int qcow2_snapshot_vmstate(BlockDriverState *bs, const char *name_or_id, uint64_t pos,
                           uint64_t len, void *buf, int *fd, uint64_t *host)
{
    Qcow2State *s = bs->opaque;
    if (s->crypt_method || s->extl2 || qcow2_has_data_file(s))
        return -ENOTSUP;
    pthread_mutex_lock(&s->lock);
    int idx = find_snapshot(s, name_or_id), r = 0;
    if (idx < 0) {
        pthread_mutex_unlock(&s->lock);
        blk_set_error("%s: Can't find snapshot '%s'", bs->filename, name_or_id);
        return -ENOENT;
    }
    Qcow2Snapshot *sn = &s->snapshots[idx];
    uint64_t span = per_l1_bytes(s), cs = s->cluster_size;
    uint64_t base = (sn->disk_size / span + !!(sn->disk_size % span)) * span;
    if (sn->disk_size > INT64_MAX || pos > sn->vm_state_size ||
        len > sn->vm_state_size - pos || base > (uint64_t)INT64_MAX - sn->vm_state_size) {
        pthread_mutex_unlock(&s->lock);
        blk_set_error("%s: VM state range out of the snapshot's", bs->filename);
        return -EINVAL;
    }
    uint64_t *l1;
    if ((r = read_l1(s, sn->l1_offset, sn->l1_size, &l1)) < 0) {
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    uint64_t first = 0;
    uint8_t *out = buf;
    for (uint64_t done = 0; r == 0 && done < len;) {
        uint64_t g = base + pos + done, in = g & (cs - 1);
        uint64_t n = cs - in < len - done ? cs - in : len - done;
        uint64_t l1i = g / span, l2e = 0;
        if (l1i < sn->l1_size && (l1[l1i] & L1E_OFFSET_MASK)) {
            uint64_t l2_off = l1[l1i] & L1E_OFFSET_MASK;
            if ((r = check_ref(s, l2_off, "an L2 table")) < 0)
                break;
            int err = 0;
            uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
            if (!t) {
                r = err;
                break;
            }
            l2e = qcow2_be64(t + ((g / cs) & (s->l2_size - 1)) * s->l2_entry_bytes);
        }
        int ct = qcow2_cluster_type(s, l2e);
        uint64_t h = (l2e & L2E_OFFSET_MASK) + in;
        if (ct == QCOW2_NORMAL && (r = check_ref(s, l2e & L2E_OFFSET_MASK, "a data cluster")) < 0)
            break;
        if (!buf) {
            if (ct != QCOW2_NORMAL || (done && h != first + done))
                r = -ENOTSUP;
            if (!done)
                first = h;
        } else if (ct == QCOW2_NORMAL) {
            if ((r = blk_file_pread(s->fd, out + done, n, h)) < 0)
                blk_set_error("%s: read error: %s", bs->filename, strerror(-r));
        } else if (ct == QCOW2_COMPRESSED) {
            r = -ENOTSUP;
        } else {
            memset(out + done, 0, n); /* never written, or zeros */
        }
        done += n;
    }
    /* a range to map: inside the file as it is (a mapping past its end
     * faults when the guest touches it) and every cluster of it still
     * referenced (else it is not the snapshot's any more); otherwise the
     * caller reads, through the checks a read has */
    if (r == 0 && !buf && len) {
        int64_t fsize = blk_file_size(s->fd);
        uint64_t c0 = first & ~(cs - 1), end = first + len;
        if (fsize < 0 || end < first || end > (uint64_t)fsize)
            r = -ENOTSUP;
        for (uint64_t c = c0; r == 0 && c < end; c += cs) {
            uint64_t ref = 0;
            if (qcow2_get_refcount(s, c / cs, &ref) < 0 || ref < 1)
                r = -ENOTSUP;
        }
        if (r == -ENOTSUP)
            blk_set_error("%s: the VM state is not one referenced run inside the file",
                          bs->filename);
    }
    free(l1);
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && !buf) {
        *fd = s->fd;
        *host = first;
    }
    return r;
}

static int snapshot_delete_locked(Qcow2State *s, const char *name_or_id, struct sn_op *op)
{
    BlockDriverState *bs = s->bs;
    int idx = find_snapshot(s, name_or_id);
    if (idx < 0) {
        blk_set_error("%s: snapshot not found", bs->filename);
        return -ENOENT;
    }
    uint64_t *snl1;
    int r = read_l1(s, s->snapshots[idx].l1_offset, s->snapshots[idx].l1_size, &snl1);
    if (r < 0)
        return r;
    for (uint32_t i = 0; r == 0 && i < s->nb_snapshots; i++)
        r = ensure_extra(&s->snapshots[i]);
    if (r < 0) {
        free(snl1);
        return r;
    }
    uint32_t n = s->nb_snapshots - 1;
    Qcow2Snapshot *list = calloc(n ? n : 1, sizeof(*list));
    if (!list) {
        free(snl1);
        return -ENOMEM;
    }
    Qcow2Snapshot old_entry = s->snapshots[idx];
    memcpy(list, s->snapshots, idx * sizeof(*list));
    memcpy(list + idx, s->snapshots + idx + 1, (n - idx) * sizeof(*list));
    if ((r = mark_busy(s, op)) == 0 && (r = write_table(s, list, n)) < 0)
        op->undone = true; /* the old table is still the one in the header */
    if (r < 0) {
        free(list);
        free(snl1);
        return r;
    }
    /* the table no longer names it: its tree and L1 may go */
    Qcow2Snapshot gone = old_entry;
    uint64_t done;
    r = tree_refcounts(s, snl1, gone.l1_size, -1, UINT64_MAX, &done);
    if (r < 0)
        blk_set_error("Failed to free the cluster and L1 table: %s", strerror(-r));
    uint64_t l1_clusters = qcow2_align_up((uint64_t)gone.l1_size * 8, s->cluster_size) >>
                           s->cluster_bits;
    if (r == 0 && l1_clusters)
        r = qcow2_free_later(s, gone.l1_offset, l1_clusters, FREE_NORMAL);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    if (r == 0)
        r = fix_copied(s);
    free(gone.id);
    free(gone.name);
    free(gone.extra);
    free(snl1);
    return r;
}

int qcow2_snapshot_delete(BlockDriverState *bs, const char *name_or_id)
{
    Qcow2State *s = bs->opaque;
    struct sn_op op;
    pthread_mutex_lock(&s->lock);
    int r = begin(s, &op);
    if (r == 0)
        r = snapshot_delete_locked(s, name_or_id, &op);
    r = end(s, &op, r);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* convert -l: the snapshot's L1 replaces the active one in memory only.
 * The image is read-only, so nothing is written and the active state on
 * disk stays as it is.  Guest offsets past the snapshot's L1 read as
 * unallocated, as in QEMU, so the L1 is padded to the active size. */
int qcow2_snapshot_load_tmp(BlockDriverState *bs, const char *id, const char *name)
{
    Qcow2State *s = bs->opaque;
    int r = -ENOENT;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        Qcow2Snapshot *sn = &s->snapshots[i];
        if ((id && strcmp(sn->id, id)) || (name && strcmp(sn->name, name)) || (!id && !name))
            continue;
        uint64_t *snl1;
        if ((r = read_l1(s, sn->l1_offset, sn->l1_size, &snl1)) < 0)
            break;
        uint32_t n = sn->l1_size > s->l1_size ? sn->l1_size : s->l1_size;
        uint64_t *l1 = calloc(n ? n : 1, 8);
        if (!l1) {
            free(snl1);
            r = -ENOMEM;
            break;
        }
        memcpy(l1, snl1, (size_t)sn->l1_size * 8);
        free(snl1);
        free(s->l1);
        s->l1 = l1;
        s->l1_size = n;
        s->l1_offset = sn->l1_offset;
        qcow2_cbuf_invalidate(s);
        break;
    }
    pthread_mutex_unlock(&s->lock);
    if (r == -ENOENT)
        blk_set_error("Can't find snapshot");
    return r;
}
