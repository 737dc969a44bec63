/* Cache of whole metadata tables (L2 tables, refcount blocks), least
 * recently used out.  Dirty tables are written back by their owner's
 * flush, never silently dropped. */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int qcow2_cache_init(Qcow2Cache *c, int n, size_t table_size)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->table_size = table_size;
    c->offset = calloc(n, sizeof(*c->offset));
    c->lru = calloc(n, sizeof(*c->lru));
    c->dirty = calloc(n, sizeof(*c->dirty));
    c->data = malloc((size_t)n * table_size);
    uint32_t isize = 16;
    while (isize < 4u * (uint32_t)n && isize < (1u << 20))
        isize *= 2;
    c->index = calloc(isize, sizeof(*c->index));
    c->index_mask = isize - 1;
    if (!c->offset || !c->lru || !c->dirty || !c->data || !c->index) {
        qcow2_cache_destroy(c);
        return -ENOMEM;
    }
    return 0;
}

void qcow2_cache_destroy(Qcow2Cache *c)
{
    free(c->offset);
    free(c->lru);
    free(c->dirty);
    free(c->data);
    free(c->index);
    memset(c, 0, sizeof(*c));
}

static uint32_t index_of(const Qcow2Cache *c, uint64_t off)
{
    return (uint32_t)(((off / c->table_size) * 0x9E3779B97F4A7C15ULL) >> 40) & c->index_mask;
}

/* slot i now holds the table at off */
static void index_set(Qcow2Cache *c, int i, uint64_t off)
{
    c->offset[i] = off;
    c->index[index_of(c, off)] = i + 1;
}

static int slot_of(const Qcow2Cache *c, const uint8_t *table)
{
    return (int)((table - c->data) / c->table_size);
}

static int cache_write_slot(Qcow2State *s, Qcow2Cache *c, int i)
{
    if (!c->dirty[i])
        return 0;
    /* Refcount blocks are written before the L2 tables that rely on
     * them (unless lazy refcounts left the dirty bit to cover them), and
     * the data an L2 entry points to is on disk first. */
    if (c == &s->l2_cache) {
        int r = s->lazy && s->dirty_set ? 0 : qcow2_cache_flush(s, &s->rb_cache);
        if (r < 0)
            return r;
        if (s->deps_unsynced && (r = qcow2_sync(s)) < 0)
            return r;
    }
    blkdebug_event(s->bs, c == &s->l2_cache ? BLKDBG_L2_UPDATE : BLKDBG_REFBLOCK_UPDATE_PART);
    int r = blk_file_pwrite(s->fd, c->data + (size_t)i * c->table_size, c->table_size,
                            c->offset[i]);
    if (r < 0) {
        blk_set_error("%s: cannot write metadata at 0x%" PRIx64 ": %s", s->bs->filename,
                      c->offset[i], strerror(-r));
        return r;
    }
    c->dirty[i] = false;
    s->need_sync = true;
    if (c == &s->rb_cache)
        s->deps_unsynced = true;
    return 0;
}

static int cache_find(Qcow2State *s, Qcow2Cache *c, uint64_t off, bool *hit, int *err)
{
    /* requests come in runs on one table: ask the last one found first.
     * It is the most recent already, so nothing is written: a store here
     * would move this cache line between the CPUs on every lookup. */
    if (c->n && c->offset[c->last] == off && off) {
        *hit = true;
        return c->last;
    }
    /* then where the index says: a cache of a whole 4 GiB image's 2048 L2
     * tables of 4 KiB was scanned slot by slot on every other lookup */
    int j = off ? c->index[index_of(c, off)] - 1 : -1;
    if (j >= 0 && j < c->n && c->offset[j] == off) {
        *hit = true;
        c->lru[j] = ++c->clock;
        return c->last = j;
    }
    int victim = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->offset[i] == off) {
            *hit = true;
            c->lru[i] = ++c->clock;
            if (off)
                index_set(c, i, off);
            return c->last = i;
        }
        if (c->lru[i] < c->lru[victim])
            victim = i;
    }
    *hit = false;
    int r = cache_write_slot(s, c, victim);
    if (r < 0) {
        *err = r;
        return -1;
    }
    c->offset[victim] = 0;
    c->lru[victim] = ++c->clock;
    return c->last = victim;
}

uint8_t *qcow2_cache_get(Qcow2State *s, Qcow2Cache *c, uint64_t off, int *err)
{
    bool hit;
    int i = cache_find(s, c, off, &hit, err);
    if (i < 0)
        return NULL;
    uint8_t *t = c->data + (size_t)i * c->table_size;
    if (hit)
        return t;
    if (off + c->table_size > s->file_end) {
        *err = qcow2_mark_corrupt(s, "metadata table at 0x%" PRIx64
                                  " is beyond the end of the file", off);
        return NULL;
    }
    if (c == &s->l2_cache)
        blkdebug_event(s->bs, BLKDBG_L2_LOAD);
    int r = blk_file_pread(s->fd, t, c->table_size, off);
    if (r < 0) {
        blk_set_error("%s: cannot read metadata at 0x%" PRIx64 ": %s", s->bs->filename, off,
                      strerror(-r));
        *err = r;
        return NULL;
    }
    index_set(c, i, off);
    return t;
}

uint8_t *qcow2_cache_get_empty(Qcow2State *s, Qcow2Cache *c, uint64_t off, int *err)
{
    bool hit;
    int i = cache_find(s, c, off, &hit, err);
    if (i < 0)
        return NULL;
    uint8_t *t = c->data + (size_t)i * c->table_size;
    memset(t, 0, c->table_size);
    index_set(c, i, off);
    return t;
}

void qcow2_cache_mark_dirty(Qcow2Cache *c, const uint8_t *table)
{
    c->dirty[slot_of(c, table)] = true;
}

int qcow2_cache_write_table(Qcow2State *s, Qcow2Cache *c, const uint8_t *table)
{
    int i = slot_of(c, table);
    c->dirty[i] = true;
    /* a table written at once (a new L2 table) has its refcount on disk
     * first even with lazy refcounts, as QEMU's l2_allocate has */
    if (c == &s->l2_cache) {
        int r = qcow2_cache_flush(s, &s->rb_cache);
        if (r < 0)
            return r;
    }
    return cache_write_slot(s, c, i);
}

int qcow2_cache_flush(Qcow2State *s, Qcow2Cache *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->dirty[i]) {
            int r = cache_write_slot(s, c, i);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

void qcow2_cache_discard(Qcow2Cache *c, uint64_t off)
{
    for (int i = 0; i < c->n; i++)
        if (c->offset[i] == off) {
            c->offset[i] = 0;
            c->dirty[i] = false;
            c->lru[i] = 0;
        }
}
