/* qcow2 guest I/O: mapping guest offsets through L1/L2 (and the
 * subcluster bitmaps of extended L2 entries), reads, allocating writes
 * with copy-on-write, zero writes, discard and block status.
 *
 * Metadata is touched under s->lock.  Reads and overwrites of clusters the
 * image owns alone (COPIED) do their data I/O outside it. */
#include "block/qcow2.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SC_COUNT 32
#define BITMAP_ALL_ALLOC 0x00000000ffffffffULL
#define BITMAP_ALL_ZERO  0xffffffff00000000ULL

/* What one contiguous run of guest bytes maps to. */
struct extent {
    int type;          /* enum qcow2_sc_type */
    uint64_t host;     /* host offset of the first byte (NORMAL, ZERO_ALLOC) */
    uint64_t l2e;      /* the L2 entry (COMPRESSED) */
    uint64_t len;
};

enum qcow2_cluster_type qcow2_cluster_type(const Qcow2State *s, uint64_t l2e)
{
    if (l2e & QCOW_OFLAG_COMPRESSED)
        return QCOW2_COMPRESSED;
    if ((l2e & QCOW_OFLAG_ZERO) && !s->extl2)
        return (l2e & L2E_OFFSET_MASK) ? QCOW2_ZERO_ALLOC : QCOW2_ZERO_PLAIN;
    /* Offset 0 is a cluster of an external data file too: those all have
     * refcount 1, so COPIED tells it from an unallocated one (as QEMU). */
    if (!(l2e & L2E_OFFSET_MASK) && !(qcow2_has_data_file(s) && (l2e & QCOW_OFLAG_COPIED)))
        return QCOW2_UNALLOCATED;
    return QCOW2_NORMAL;
}

void qcow2_compressed_span(const Qcow2State *s, uint64_t l2e, uint64_t *off, uint64_t *bytes)
{
    *off = l2e & s->cluster_offset_mask;
    uint64_t sectors = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
    *bytes = sectors * BLK_SECTOR_SIZE - (*off & (BLK_SECTOR_SIZE - 1));
}

/* Type of subcluster sc of a cluster (sc is 0 without extended L2). */
static int sc_type(const Qcow2State *s, uint64_t l2e, uint64_t bitmap, int sc)
{
    enum qcow2_cluster_type ct = qcow2_cluster_type(s, l2e);
    if (!s->extl2) {
        switch (ct) {
        case QCOW2_UNALLOCATED: return SC_UNALLOCATED_PLAIN;
        case QCOW2_ZERO_PLAIN: return s->version < 3 ? SC_INVALID : SC_ZERO_PLAIN;
        case QCOW2_ZERO_ALLOC: return s->version < 3 ? SC_INVALID : SC_ZERO_ALLOC;
        case QCOW2_NORMAL: return SC_NORMAL;
        case QCOW2_COMPRESSED: return SC_COMPRESSED;
        }
    }
    /* As QEMU: bit 0 (the zero flag of a standard descriptor) is unused
     * with extended L2 and ignored, and so is the bitmap of a compressed
     * cluster; a subcluster both allocated and zero anywhere in the entry
     * (or allocated without a host cluster) makes the whole entry invalid. */
    bool alloc = (bitmap >> sc) & 1, zero = (bitmap >> (32 + sc)) & 1;
    switch (ct) {
    case QCOW2_COMPRESSED:
        return SC_COMPRESSED;
    case QCOW2_UNALLOCATED:
        if (bitmap & BITMAP_ALL_ALLOC)
            return SC_INVALID;
        return zero ? SC_ZERO_PLAIN : SC_UNALLOCATED_PLAIN;
    default:
        if ((bitmap >> 32) & bitmap)
            return SC_INVALID;
        return zero ? SC_ZERO_ALLOC : alloc ? SC_NORMAL : SC_UNALLOCATED_ALLOC;
    }
}

/* The host offset of the L2 table of guest offset off (for messages). */
static uint64_t l2_table_offset(const Qcow2State *s, uint64_t off)
{
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    return l1i < s->l1_size ? s->l1[l1i] & L1E_OFFSET_MASK : 0;
}

/* QEMU's report of an invalid L2 entry; its read path words it with two
 * spaces, its write path with one. */
static int invalid_entry(Qcow2State *s, uint64_t off, bool write)
{
    return qcow2_mark_corrupt(s, "Invalid cluster entry found %s(L2 offset: %#" PRIx64
                              ", L2 index: %#x)", write ? "" : " ", l2_table_offset(s, off),
                              (unsigned)((off >> s->cluster_bits) & (s->l2_size - 1)));
}

static bool sc_has_host(int t)
{
    return t == SC_NORMAL || t == SC_ZERO_ALLOC;
}

/* Host clusters for n new data clusters from guest offset off: in an
 * external data file they are where the guest offset is (as QEMU puts
 * them, so that a raw data file stays the guest's view), with no refcount. */
static int64_t qcow2_alloc_data(Qcow2State *s, uint64_t off, uint64_t n)
{
    if (qcow2_has_data_file(s))
        return (int64_t)(off & ~(s->cluster_size - 1));
    return qcow2_alloc_clusters(s, n);
}

/* A data file cluster is where its guest offset is: an L2 entry that
 * says otherwise is corrupt (QEMU's check and message), and must not
 * send I/O to some other place of the data file. */
static int check_data_host(Qcow2State *s, uint64_t guest, uint64_t l2e)
{
    if (!qcow2_has_data_file(s))
        return 0;
    int ct = qcow2_cluster_type(s, l2e);
    uint64_t host = l2e & L2E_OFFSET_MASK, gc = guest & ~(s->cluster_size - 1);
    if ((ct != QCOW2_NORMAL && ct != QCOW2_ZERO_ALLOC) || host == gc)
        return 0;
    return qcow2_mark_corrupt(s, "External data file host cluster offset %#" PRIx64 " does not "
                              "match guest cluster offset: %#" PRIx64 ", L2 index: %#" PRIx64
                              ")", host, gc, (guest >> s->cluster_bits) & (s->l2_size - 1));
}

/* The BlockDriverState of the file guest data goes to. */
static BlockDriverState *data_bs(Qcow2State *s)
{
    return s->data_bs ? s->data_bs : s->bs;
}

/* ---- L2 tables ---- */

static uint64_t l1_index(const Qcow2State *s, uint64_t off)
{
    return off >> (s->cluster_bits + s->l2_bits);
}

static uint64_t l2_index(const Qcow2State *s, uint64_t off)
{
    return (off >> s->cluster_bits) & (s->l2_size - 1);
}

/* The L2 table for guest offset off, or *table = NULL if unallocated. */
static int l2_load(Qcow2State *s, uint64_t off, uint8_t **table)
{
    uint64_t l1i = l1_index(s, off);
    *table = NULL;
    if (l1i >= s->l1_size)
        return qcow2_mark_corrupt(s, "guest offset 0x%" PRIx64 " is beyond the L1 table", off);
    uint64_t l1e = s->l1[l1i];
    uint64_t l2_off = l1e & L1E_OFFSET_MASK;
    if (!l2_off)
        return 0;
    if (l2_off & (s->cluster_size - 1))
        return qcow2_mark_corrupt(s, "L2 table offset %#" PRIx64 " unaligned (L1 index: %#"
                                  PRIx64 ")", l2_off, l1i);
    int err = 0;
    *table = qcow2_cache_get(s, &s->l2_cache, l2_off, &err);
    return *table ? 0 : err;
}

static void l2_entry(const Qcow2State *s, const uint8_t *table, uint64_t idx, uint64_t *l2e,
                     uint64_t *bitmap)
{
    const uint8_t *p = table + idx * s->l2_entry_bytes;
    *l2e = qcow2_be64(p);
    *bitmap = s->extl2 ? qcow2_be64(p + 8) : 0;
}

static void l2_set(Qcow2State *s, uint8_t *table, uint64_t idx, uint64_t l2e, uint64_t bitmap)
{
    uint8_t *p = table + idx * s->l2_entry_bytes;
    qcow2_put64(p, l2e);
    if (s->extl2)
        qcow2_put64(p + 8, bitmap);
    qcow2_cache_mark_dirty(&s->l2_cache, table);
}

static int write_l1_entry(Qcow2State *s, uint64_t l1i)
{
    uint8_t e[8];
    qcow2_put64(e, s->l1[l1i]);
    blkdebug_event(s->bs, BLKDBG_L1_UPDATE);
    int r = blk_file_pwrite(s->fd, e, 8, s->l1_offset + l1i * 8);
    if (r < 0)
        blk_set_error("%s: cannot write the L1 table: %s", s->bs->filename, strerror(-r));
    s->need_sync = true;
    return r;
}

/* Gives guest offset off an L2 table of its own (allocating one, or
 * copying a table shared with a snapshot) and returns it. */
static int l2_get_writable(Qcow2State *s, uint64_t off, uint8_t **table)
{
    uint64_t l1i = l1_index(s, off);
    /* only VM state lies past the L1 table (guest offsets are checked) */
    int r = l1i >= s->l1_size ? qcow2_grow_l1(s, l1i + 1) : 0;
    if (r < 0)
        return r;
    r = l2_load(s, off, table);
    if (r < 0)
        return r;
    uint64_t l1e = s->l1[l1i];
    if (*table && (l1e & QCOW_OFLAG_COPIED)) /* written in place: not over fixed metadata */
        return qcow2_check_overlap(s, l1e & L1E_OFFSET_MASK, s->cluster_size);
    uint64_t old = l1e & L1E_OFFSET_MASK;
    uint8_t *copy = NULL;
    if (*table) {
        blkdebug_event(s->bs, BLKDBG_L2_ALLOC_COW_READ);
        copy = malloc(s->cluster_size);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, *table, s->cluster_size);
    }
    if ((r = qcow2_mark_dirty(s)) < 0) {
        free(copy);
        return r;
    }
    int64_t new_off = qcow2_alloc_clusters(s, 1);
    if (new_off < 0) {
        free(copy);
        return (int)new_off;
    }
    int err = 0;
    uint8_t *t = qcow2_cache_get_empty(s, &s->l2_cache, new_off, &err);
    if (!t) {
        free(copy);
        return err;
    }
    if (copy)
        memcpy(t, copy, s->cluster_size);
    free(copy);
    blkdebug_event(s->bs, BLKDBG_L2_ALLOC_WRITE);
    /* the table is on disk before the L1 entry that points to it */
    if ((r = qcow2_cache_write_table(s, &s->l2_cache, t)) < 0 || (r = qcow2_sync(s)) < 0)
        return r;
    s->l1[l1i] = (uint64_t)new_off | QCOW_OFLAG_COPIED;
    if ((r = write_l1_entry(s, l1i)) < 0) {
        /* The file still points at the old table: so must memory, or
         * everything written through the new one is lost to the file
         * (and the old one's clusters counted once too few).  The new
         * table is left as a leak, as nothing points to it. */
        s->l1[l1i] = l1e;
        qcow2_cache_discard(&s->l2_cache, (uint64_t)new_off);
        return r;
    }
    if (old && (r = qcow2_free_later(s, old, 1, FREE_NORMAL)) < 0)
        return r;
    return l2_load(s, off, table);
}

int qcow2_grow_l1(Qcow2State *s, uint64_t min_size)
{
    if (min_size <= s->l1_size)
        return 0;
    if (min_size > QCOW2_MAX_L1_BYTES / 8) {
        blk_set_error("%s: the L1 table would be too large", s->bs->filename);
        return -EFBIG;
    }
    uint64_t bytes = qcow2_align_up(min_size * 8, s->cluster_size);
    uint8_t *buf = calloc(1, bytes);
    if (!buf)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->l1_size; i++)
        qcow2_put64(buf + 8 * i, s->l1[i]);
    uint64_t *nl1 = calloc(min_size, 8);
    if (!nl1) {
        free(buf);
        return -ENOMEM;
    }
    if (s->l1_size) /* s->l1 is NULL while an image is being created */
        memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
    blkdebug_event(s->bs, BLKDBG_L1_GROW_ALLOC_TABLE);
    int64_t off = qcow2_alloc_clusters(s, bytes >> s->cluster_bits);
    int r = off < 0 ? (int)off : 0;
    if (r == 0)
        blkdebug_event(s->bs, BLKDBG_L1_GROW_WRITE_TABLE);
    /* only the entries: the rest of the last cluster reads as zeros */
    if (r == 0 && (r = blk_file_pwrite(s->fd, buf, min_size * 8, off)) < 0)
        blk_set_error("%s: cannot write the L1 table: %s", s->bs->filename, strerror(-r));
    s->need_sync = true;
    if (r == 0)
        r = qcow2_sync(s);
    free(buf);
    if (r < 0) {
        free(nl1);
        return r;
    }
    uint64_t old_off = s->l1_offset, old_bytes = qcow2_align_up((uint64_t)s->l1_size * 8,
                                                                s->cluster_size);
    uint8_t h[12];
    qcow2_put32(h, (uint32_t)min_size);
    qcow2_put64(h + 4, (uint64_t)off);
    blkdebug_event(s->bs, BLKDBG_L1_GROW_ACTIVATE_TABLE);
    if ((r = blk_file_pwrite(s->fd, h, 12, 36)) < 0) {
        /* the file still names the old table: so does memory (the new
         * one is left as a leak), or later L1 entries would go where the
         * file does not look */
        blk_set_error("%s: cannot update the header: %s", s->bs->filename, strerror(-r));
        free(nl1);
        return r;
    }
    free(s->l1);
    s->l1 = nl1;
    s->l1_offset = off;
    s->l1_size = (uint32_t)min_size;
    s->need_sync = true;
    if ((r = qcow2_sync(s)) < 0)
        return r;
    if (old_off && old_bytes)
        r = qcow2_update_refcount(s, old_off, old_bytes, -1);
    return r;
}

/* ---- mapping ---- */

static int get_extent(Qcow2State *s, uint64_t off, uint64_t maxlen, struct extent *e)
{
    uint8_t *table;
    int r = l2_load(s, off, &table);
    if (r < 0)
        return r;
    uint64_t span = s->cluster_size << s->l2_bits;
    uint64_t to_l1_end = span - (off & (span - 1));
    if (maxlen > to_l1_end)
        maxlen = to_l1_end;
    if (!table) {
        *e = (struct extent){.type = SC_UNALLOCATED_PLAIN, .len = maxlen};
        return 0;
    }
    uint64_t scs = s->subcluster_size;
    uint64_t pos = off, first_host = 0;
    e->len = 0;
    while (e->len < maxlen) {
        uint64_t idx = l2_index(s, pos), l2e, bitmap;
        l2_entry(s, table, idx, &l2e, &bitmap);
        int sc = s->extl2 ? (int)((pos & (s->cluster_size - 1)) / scs) : 0;
        int t = sc_type(s, l2e, bitmap, sc);
        uint64_t host = (l2e & L2E_OFFSET_MASK) + (pos & (s->cluster_size - 1));
        if (t == SC_INVALID)
            return invalid_entry(s, pos, false);
        if ((sc_has_host(t) || t == SC_UNALLOCATED_ALLOC) &&
            ((l2e & L2E_OFFSET_MASK) & (s->cluster_size - 1)))
            return qcow2_mark_corrupt(s, "Cluster allocation offset %#" PRIx64 " unaligned "
                                      "(L2 offset: %#" PRIx64 ", L2 index: %#x)",
                                      l2e & L2E_OFFSET_MASK, l2_table_offset(s, pos),
                                      (unsigned)l2_index(s, pos));
        if ((r = check_data_host(s, pos, l2e)) < 0)
            return r;
        if (e->len == 0) {
            e->type = t;
            e->l2e = l2e;
            first_host = host;
        } else if (t != e->type ||
                   ((sc_has_host(t) || t == SC_UNALLOCATED_ALLOC) && host != first_host + e->len) ||
                   t == SC_COMPRESSED) {
            break;
        }
        uint64_t step = scs - (pos & (scs - 1));
        e->len += step;
        pos += step;
    }
    if (e->len > maxlen)
        e->len = maxlen;
    e->host = first_host;
    return 0;
}

/* ---- compressed clusters ---- */

/* Compressed reads decompress outside the image lock, into a buffer of
 * the reading thread, so that threads decompress in parallel.  The buffer
 * keeps the last cluster the thread decompressed, for small reads inside
 * one cluster; it is valid while its image's cbuf_gen is unchanged. */
struct cbuf {
    uint8_t *data, *in;
    size_t cap, in_cap;
    const Qcow2State *s;
    uint64_t gen, l2e;
};

static pthread_key_t cbuf_key;
static pthread_once_t cbuf_once = PTHREAD_ONCE_INIT;
static uint64_t cbuf_clock;

static void cbuf_free(void *p)
{
    struct cbuf *b = p;
    free(b->data);
    free(b->in);
    free(b);
}

static void cbuf_key_init(void)
{
    pthread_key_create(&cbuf_key, cbuf_free);
}

void qcow2_cbuf_invalidate(Qcow2State *s)
{
    s->cbuf_gen = __atomic_add_fetch(&cbuf_clock, 1, __ATOMIC_RELAXED);
}

static struct cbuf *cbuf_get(size_t cs, size_t in_bytes)
{
    pthread_once(&cbuf_once, cbuf_key_init);
    struct cbuf *b = pthread_getspecific(cbuf_key);
    if (!b) {
        if (!(b = calloc(1, sizeof(*b))) || pthread_setspecific(cbuf_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->cap < cs) {
        free(b->data);
        b->s = NULL;
        b->cap = 0;
        if (!(b->data = malloc(cs)))
            return NULL;
        b->cap = cs;
    }
    if (b->in_cap < in_bytes) {
        free(b->in);
        b->in_cap = 0;
        if (!(b->in = malloc(in_bytes)))
            return NULL;
        b->in_cap = in_bytes;
    }
    return b;
}

/* The guest data of the compressed cluster l2e, in this thread's buffer.
 * Lock held on entry and exit; the compressed bytes are read under it
 * (their host cluster cannot be freed and reused meanwhile), and the lock
 * is dropped while they are decompressed. */
static int load_compressed(Qcow2State *s, uint64_t l2e, const uint8_t **data)
{
    if (!s->cbuf_gen)
        qcow2_cbuf_invalidate(s);
    uint64_t off, bytes;
    qcow2_compressed_span(s, l2e, &off, &bytes);
    struct cbuf *b = cbuf_get(s->cluster_size, bytes);
    if (!b)
        return -ENOMEM;
    if (b->s == s && b->gen == s->cbuf_gen && b->l2e == l2e) {
        *data = b->data;
        return 0;
    }
    b->s = NULL;
    /* As in QEMU, what lies past the end of the file reads as zeros (the
     * size field is an upper bound): the stream decompresses or not. */
    int r = blk_file_pread(s->fd, b->in, bytes, off);
    if (r < 0) {
        blk_set_error("%s: read error: %s", s->bs->filename, strerror(-r));
        return r;
    }
    uint64_t gen = s->cbuf_gen;
    int type = s->compression_type;
    pthread_mutex_unlock(&s->lock);
    r = blk_decompress_cluster(type, b->in, bytes, b->data, s->cluster_size);
    pthread_mutex_lock(&s->lock);
    if (r < 0 && r != -ENOMEM) {
        /* -EBADMSG: qcow2_pread() fails only the read (-EIO), as QEMU does,
         * since a check of the image finds nothing to repair; read_old()
         * marks the image corrupt, as a failed write has changed it */
        blk_set_error("%s: cannot decompress the cluster at host offset 0x%" PRIx64,
                      s->bs->filename, off);
        return -EBADMSG;
    }
    if (r < 0)
        return r;
    /* kept only if nothing changed the mapping while the lock was dropped;
     * the data itself is what l2e pointed to when it was read */
    if (gen == s->cbuf_gen) {
        b->s = s;
        b->gen = gen;
        b->l2e = l2e;
    }
    *data = b->data;
    return 0;
}

/* ---- reads ---- */

/* Reads n bytes at guest offset off that map to extent e. Lock held on
 * entry and exit; dropped around plain data reads. */
static int read_extent(Qcow2State *s, const struct extent *e, uint64_t off, uint8_t *buf,
                       uint64_t n)
{
    int r = 0;
    switch (e->type) {
    case SC_UNALLOCATED_PLAIN:
    case SC_UNALLOCATED_ALLOC:
        pthread_mutex_unlock(&s->lock);
        if (s->bs->backing)
            blkdebug_event(s->bs, BLKDBG_READ_BACKING_AIO);
        r = blk_read_backing(s->bs, off, buf, n);
        pthread_mutex_lock(&s->lock);
        break;
    case SC_ZERO_PLAIN:
    case SC_ZERO_ALLOC:
        memset(buf, 0, n);
        break;
    case SC_NORMAL: {
        unsigned io = qcow2_io_begin(s);
        pthread_mutex_unlock(&s->lock);
        blkdebug_event(s->bs, BLKDBG_READ_AIO);
        blkdebug_event(s->data_bs, BLKDBG_READ_AIO); /* raw data file */
        if (s->crypt_method) {
            r = qcow2_crypt_read(s, off, e->host, buf, n);
        } else {
            r = blk_file_pread(s->data_fd, buf, n, e->host);
            if (r < 0)
                blk_set_error("%s: read error: %s", s->bs->filename, strerror(-r));
        }
        qcow2_io_end(s, io);
        pthread_mutex_lock(&s->lock);
        break;
    }
    case SC_COMPRESSED: {
        const uint8_t *data = NULL;
        r = load_compressed(s, e->l2e, &data);
        if (r == 0)
            memcpy(buf, data + (off & (s->cluster_size - 1)), n);
        break;
    }
    default:
        r = -EIO;
    }
    return r;
}

int qcow2_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    Qcow2State *s = bs->opaque;
    uint8_t *p = buf;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    while (len) {
        struct extent e;
        if ((r = get_extent(s, off, len, &e)) < 0)
            break;
        if (e.len == len && e.type == SC_NORMAL && !s->crypt_method) {
            /* the last piece, plain data: read it without taking the
             * lock again only to drop it (most small reads are this) */
            unsigned io = qcow2_io_begin(s);
            pthread_mutex_unlock(&s->lock);
            blkdebug_event(bs, BLKDBG_READ_AIO);
            blkdebug_event(s->data_bs, BLKDBG_READ_AIO); /* raw data file */
            if ((r = blk_file_pread(s->data_fd, p, len, e.host)) < 0)
                blk_set_error("%s: read error: %s", s->bs->filename, strerror(-r));
            qcow2_io_end(s, io);
            return r;
        }
        if ((r = read_extent(s, &e, off, p, e.len)) < 0) {
            if (r == -EBADMSG)
                r = -EIO;
            break;
        }
        off += e.len;
        p += e.len;
        len -= e.len;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Guest bytes [from, to) of the cluster at guest offset cluster_off as
 * its current L2 entry describes them (for copy-on-write). */
static int read_old(Qcow2State *s, uint64_t cluster_off, uint64_t l2e, uint64_t bitmap,
                    uint64_t from, uint64_t to, uint8_t *dst)
{
    uint64_t scs = s->subcluster_size;
    while (from < to) {
        int sc = s->extl2 ? (int)(from / scs) : 0;
        uint64_t n = (from / scs + 1) * scs - from;
        if (n > to - from)
            n = to - from;
        struct extent e = {.type = sc_type(s, l2e, bitmap, sc),
                           .host = (l2e & L2E_OFFSET_MASK) + from, .l2e = l2e};
        if (e.type == SC_INVALID)
            return invalid_entry(s, cluster_off, true);
        int r = read_extent(s, &e, cluster_off + from, dst, n);
        if (r == -EBADMSG)
            return qcow2_mark_corrupt(s, "cannot decompress the cluster for guest offset %#"
                                      PRIx64, cluster_off);
        if (r < 0)
            return r;
        dst += n;
        from += n;
    }
    return 0;
}

/* ---- writes ---- */

static int zero_cluster_buf(Qcow2State *s)
{
    if (!s->zero_cluster && !(s->zero_cluster = calloc(1, s->cluster_size)))
        return -ENOMEM;
    return 0;
}

static bool reads_zero(BlockDriverState *bs, uint64_t off, uint64_t len);

/* Does [from, to) of the cluster read as zeros before the write? True
 * for zero subclusters and for unallocated ones with nothing beneath:
 * past the backing file's end, or where its whole chain holds nothing
 * (from its status alone, as QEMU's is_zero_cow).  The backing file is
 * asked under this image's lock, as read_old reads it. */
static bool old_reads_zero(Qcow2State *s, uint64_t cluster_off, uint64_t l2e, uint64_t bitmap,
                           uint64_t from, uint64_t to)
{
    uint64_t scs = s->subcluster_size;
    bool backing = false;
    for (uint64_t p = from; p < to; p = (p / scs + 1) * scs) {
        int t = sc_type(s, l2e, bitmap, s->extl2 ? (int)(p / scs) : 0);
        if (t == SC_ZERO_PLAIN || t == SC_ZERO_ALLOC)
            continue;
        if (t == SC_UNALLOCATED_PLAIN || t == SC_UNALLOCATED_ALLOC) {
            backing |= s->bs->backing && cluster_off + p < s->bs->backing->size;
            continue;
        }
        return false;
    }
    return !backing || reads_zero(s->bs->backing, cluster_off + from, to - from);
}

/* Writes guest bytes [lo, hi) of a cluster (cluster-relative) to host
 * cluster `host`: the part [off, off+n) comes from buf, the rest is the
 * old content.  `fresh` says the host cluster holds nothing (a new
 * allocation), so zero COW regions need no write when past the end of
 * the file. */
static int write_with_cow(Qcow2State *s, uint64_t cluster_off, uint64_t l2e, uint64_t bitmap,
                          uint64_t host, uint64_t lo, uint64_t hi, uint64_t in, uint64_t n,
                          const uint8_t *buf, bool fresh)
{
    int r;
    uint8_t *head = NULL, *tail = NULL;
    uint64_t hlen = in - lo, tlen = hi - (in + n);
    bool hzero = old_reads_zero(s, cluster_off, l2e, bitmap, lo, in);
    bool tzero = old_reads_zero(s, cluster_off, l2e, bitmap, in + n, hi);
    if ((r = zero_cluster_buf(s)) < 0)
        return r;
    if ((hlen && !hzero) || (tlen && !tzero))
        blkdebug_event(s->bs, BLKDBG_COW_READ);
    if (hlen && !hzero) {
        if (!(head = malloc(hlen)))
            return -ENOMEM;
        if ((r = read_old(s, cluster_off, l2e, bitmap, lo, in, head)) < 0)
            goto out;
    }
    if (tlen && !tzero) {
        if (!(tail = malloc(tlen))) {
            r = -ENOMEM;
            goto out;
        }
        if ((r = read_old(s, cluster_off, l2e, bitmap, in + n, hi, tail)) < 0)
            goto out;
    }
    struct iovec iov[3];
    int cnt = 0;
    uint64_t start = host + lo;
    bool skip_zero_tail = false, skip_zero_head = false;
    /* encrypted zeros are not zero bytes: the file must hold them */
    if (fresh && !s->crypt_method && ((tzero && tlen) || (hzero && hlen))) {
        /* Past the end of the file zeros need no writing: the data goes
         * in and the file is extended over the rest. */
        struct stat st;
        if (blk_file_stat(s->data_fd, &st) == 0) {
            skip_zero_tail = tzero && tlen && (uint64_t)st.st_size <= host + in + n;
            skip_zero_head = hzero && hlen && (uint64_t)st.st_size <= host + lo;
        }
    }
    /* the skipped parts are allocated (as QEMU's zeroing of a whole new
     * cluster does: no hole in the middle of the file), in one go with
     * the data's blocks, which then need no allocation of their own.
     * Never with ftruncate: another thread's allocation beyond this
     * cluster may have been written since the fstat above, and cutting
     * the file back would lose it (a write path never shrinks a file). */
    if ((skip_zero_head || skip_zero_tail) &&
        (r = blk_file_extend(s->data_fd, host + lo, hi - lo)) < 0) {
        blk_set_error("%s: cannot extend the file: %s", s->bs->filename, strerror(-r));
        goto out;
    }
    if (skip_zero_head)
        start = host + in;
    else if (hlen)
        iov[cnt++] = (struct iovec){head ? head : s->zero_cluster, hlen};
    iov[cnt++] = (struct iovec){(void *)buf, n};
    if (tlen && !skip_zero_tail)
        iov[cnt++] = (struct iovec){tail ? tail : s->zero_cluster, tlen};
    uint64_t total = 0;
    for (int i = 0; i < cnt; i++)
        total += iov[i].iov_len;
    blkdebug_event(s->bs, BLKDBG_WRITE_AIO);
    blkdebug_event(s->data_bs, BLKDBG_WRITE_AIO); /* raw data file */
    /* the pwritev below goes around the host file helpers */
    if ((r = blkdebug_file_check(s->data_fd, BLKDBG_IO_WRITE, start, total)) < 0) {
        blk_set_error("%s: write error: %s", s->bs->filename, strerror(-r));
        goto out;
    }
    if ((s->bs->flags & BLK_O_NOCACHE) || s->crypt_method || blk_file_is_node(s->data_fd)) {
        /* O_DIRECT: one buffer, aligned by blk_file_pwrite as needed;
         * encryption: one buffer encrypted for where it lands */
        uint8_t *flat = malloc(total);
        if (!flat) {
            r = -ENOMEM;
            goto out;
        }
        for (int i = 0, pos = 0; i < cnt; pos += iov[i].iov_len, i++)
            memcpy(flat + pos, iov[i].iov_base, iov[i].iov_len);
        r = 0;
        if (s->crypt_method)
            r = qcow2_crypt(s, cluster_off + (start - host), start, flat, total, true);
        if (r == 0)
            r = blk_file_pwrite(s->data_fd, flat, total, start);
        else
            total = 0;
        free(flat);
        if (r < 0) {
            blk_set_error("%s: write error: %s", s->bs->filename, strerror(-r));
            goto out;
        }
        total = 0;
    }
    for (int i = 0; total;) {
        ssize_t w = pwritev(s->data_fd, iov + i, cnt - i, start);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            blk_set_error("%s: write error: %s", s->bs->filename, strerror(errno));
            goto out;
        }
        start += w;
        total -= w;
        while (w > 0 && i < cnt) {
            if ((size_t)w >= iov[i].iov_len) {
                w -= iov[i].iov_len;
                i++;
            } else {
                iov[i].iov_base = (uint8_t *)iov[i].iov_base + w;
                iov[i].iov_len -= w;
                w = 0;
            }
        }
    }
    s->need_sync = s->deps_unsynced = true;
    r = 0;
out:
    free(head);
    free(tail);
    return r;
}

static uint64_t sc_mask(int first, int last)
{
    uint64_t m = 0;
    for (int i = first; i <= last; i++)
        m |= 1ULL << i;
    return m;
}

/* ---- allocations in flight ---- */

static bool inflight_overlaps(const Qcow2State *s, uint64_t first, uint64_t n)
{
    for (int i = 0; i < s->ninflight; i++)
        if (first < s->inflight[i].first + s->inflight[i].n && s->inflight[i].first < first + n)
            return true;
    return false;
}

/* Waits until nobody is allocating guest clusters [first, first+n). */
static void inflight_wait(Qcow2State *s, uint64_t first, uint64_t n)
{
    while (inflight_overlaps(s, first, n))
        pthread_cond_wait(&s->alloc_cond, &s->lock);
}

static int inflight_add(Qcow2State *s, uint64_t first, uint64_t n)
{
    if (s->ninflight == s->inflight_cap) {
        int cap = s->inflight_cap ? s->inflight_cap * 2 : 8;
        void *p = realloc(s->inflight, cap * sizeof(*s->inflight));
        if (!p)
            return -ENOMEM;
        s->inflight = p;
        s->inflight_cap = cap;
    }
    s->inflight[s->ninflight].first = first;
    s->inflight[s->ninflight].n = n;
    s->ninflight++;
    return 0;
}

static void inflight_del(Qcow2State *s, uint64_t first)
{
    for (int i = 0; i < s->ninflight; i++) {
        if (s->inflight[i].first == first) {
            s->inflight[i] = s->inflight[--s->ninflight];
            break;
        }
    }
    pthread_cond_broadcast(&s->alloc_cond);
}

static int write_cluster_locked(Qcow2State *s, uint64_t off, const uint8_t *buf, uint64_t n,
                                int64_t *prealloc);

/* A data write into n new clusters at host failed: nothing points to
 * them yet, so they are free again at once (a later write may well
 * succeed, and must not leave them leaked).  If this fails too, they
 * are only leaked; the write's own error is the one to report. */
static void unalloc(Qcow2State *s, uint64_t host, uint64_t n)
{
    /* a data file's clusters sit at their guest offsets and have no
     * refcount: host names a cluster of the data file, and the image's
     * cluster at that offset (the header, a table) is not to be touched */
    if (qcow2_has_data_file(s))
        return;
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", blk_error());
    qcow2_update_refcount(s, host, n << s->cluster_bits, -1);
    blk_set_error("%s", msg);
}

/* Writes [off, off+n) inside one cluster.  Lock held; it is dropped for
 * data I/O, with the cluster marked in flight while it is being moved. */
static int write_cluster(Qcow2State *s, uint64_t off, const uint8_t *buf, uint64_t n)
{
    uint64_t c = off >> s->cluster_bits;
    inflight_wait(s, c, 1);
    return write_cluster_locked(s, off, buf, n, NULL);
}

/* prealloc: NULL, or a host cluster allocated for this one beforehand
 * (write_alloc_run); it is set to 0 once used (or freed here when the
 * cluster turns out to need none after all); a non-zero one left on
 * return is the caller's to free. */
static int write_cluster_locked(Qcow2State *s, uint64_t off, const uint8_t *buf, uint64_t n,
                                int64_t *prealloc)
{
    uint8_t *table;
    int r = l2_get_writable(s, off, &table);
    if (r < 0)
        return r;
    uint64_t idx = l2_index(s, off), l2e, bitmap;
    l2_entry(s, table, idx, &l2e, &bitmap);
    uint64_t cs = s->cluster_size, in = off & (cs - 1);
    uint64_t cluster_off = off - in;
    uint64_t scs = s->subcluster_size;
    int ct = qcow2_cluster_type(s, l2e);
    for (int sc = (int)(in / scs); sc <= (int)((in + n - 1) / scs); sc++)
        if (sc_type(s, l2e, bitmap, s->extl2 ? sc : 0) == SC_INVALID)
            return invalid_entry(s, off, true);
    uint64_t host = ct == QCOW2_COMPRESSED ? 0 : l2e & L2E_OFFSET_MASK;
    bool owned = (l2e & QCOW_OFLAG_COPIED) && (ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC);
    bool dfile = qcow2_has_data_file(s);
    if (owned && prealloc && *prealloc) {
        /* another writer allocated it while the lock was dropped */
        unalloc(s, (uint64_t)*prealloc, 1);
        *prealloc = 0;
    }
    if (host && (host & (cs - 1)))
        return qcow2_mark_corrupt(s, "%s cluster offset %#" PRIx64 " unaligned (guest offset: %#"
                                  PRIx64 ")", ct == QCOW2_NORMAL ? "Data" : "Preallocated zero",
                                  host, cluster_off);
    if ((r = check_data_host(s, off, l2e)) < 0)
        return r;
    /* a cluster we own is inside the file and is not fixed metadata (a
     * data file holds nothing else, and grows as it is written) */
    if (owned && !dfile && host >= s->file_end)
        return qcow2_mark_corrupt(s, "cluster offset 0x%" PRIx64 " is beyond the end of the "
                                  "file", host);
    if (owned && !dfile && (r = qcow2_check_overlap(s, host, cs)) < 0)
        return r;
    if (owned && ct == QCOW2_NORMAL && !s->extl2) {
        /* plain overwrite: the cluster may be discarded meanwhile, but
         * it is not freed for reuse before this write has ended */
        uint8_t *enc = NULL;
        unsigned io = qcow2_io_begin(s);
        pthread_mutex_unlock(&s->lock);
        if (s->crypt_method)
            r = qcow2_crypt_copy(s, off, host + in, buf, n, &enc);
        blkdebug_event(s->bs, BLKDBG_WRITE_AIO);
        blkdebug_event(s->data_bs, BLKDBG_WRITE_AIO); /* raw data file */
        if (r == 0 && (r = blk_file_pwrite(s->data_fd, enc ? enc : buf, n, host + in)) < 0)
            blk_set_error("%s: write error: %s", s->bs->filename, strerror(-r));
        qcow2_io_end(s, io);
        pthread_mutex_lock(&s->lock);
        free(enc);
        return r;
    }
    if ((r = qcow2_mark_dirty(s)) < 0)
        return r;
    /* the range to write: whole subclusters (extended L2) or the cluster */
    int sc0 = s->extl2 ? (int)(in / scs) : 0, sc1 = s->extl2 ? (int)((in + n - 1) / scs) : 0;
    uint64_t lo = s->extl2 ? sc0 * scs : 0, hi = s->extl2 ? (sc1 + 1) * scs : cs;
    bool fresh = false;
    uint64_t new_l2e, new_bitmap = 0;
    if (owned) {
        /* allocated here: fill unallocated/zero subclusters in place */
        if (s->extl2) {
            uint64_t touched = sc_mask(sc0, sc1);
            new_bitmap = (bitmap | touched) & ~(touched << 32);
        }
        /* bit 0, unused with extended L2, stays as it is (QEMU leaves
         * the descriptor alone) */
        new_l2e = host | QCOW_OFLAG_COPIED | (s->extl2 ? l2e & QCOW_OFLAG_ZERO : 0);
    } else {
        int64_t nh = prealloc && *prealloc ? *prealloc : qcow2_alloc_data(s, cluster_off, 1);
        if (nh < 0)
            return (int)nh;
        if (prealloc)
            *prealloc = 0; /* ours now: freed below if the write fails */
        fresh = true;
        if (s->extl2 && ct == QCOW2_UNALLOCATED) {
            uint64_t touched = sc_mask(sc0, sc1);
            new_bitmap = (bitmap | touched) & ~(touched << 32);
        } else if (s->extl2 && ct == QCOW2_COMPRESSED) {
            /* copy the whole old cluster: every subcluster now lives here */
            lo = 0;
            hi = cs;
            new_bitmap = BITMAP_ALL_ALLOC;
        } else if (s->extl2) {
            /* a cluster shared with a snapshot: copy the subclusters it
             * has allocated, from the first to the last (and those written
             * between them), as QEMU does.  Unallocated subclusters
             * outside that span keep following the backing file, zero
             * ones keep reading zeros. */
            uint32_t alloc = (uint32_t)(bitmap & BITMAP_ALL_ALLOC);
            int first = sc0, last = sc1;
            if (alloc && __builtin_ctz(alloc) < first)
                first = __builtin_ctz(alloc);
            if (alloc && 31 - __builtin_clz(alloc) > last)
                last = 31 - __builtin_clz(alloc);
            lo = first * scs;
            hi = (last + 1) * scs;
            uint64_t span = sc_mask(first, last);
            new_bitmap = (bitmap | span) & ~(span << 32);
        }
        new_l2e = (uint64_t)nh | QCOW_OFLAG_COPIED;
        host = nh;
    }
    uint64_t c = off >> s->cluster_bits;
    if ((r = inflight_add(s, c, 1)) == 0) {
        r = write_with_cow(s, cluster_off, l2e, bitmap, host, lo, hi, in, n, buf, fresh);
        inflight_del(s, c);
    }
    /* the table may have been evicted while the lock was dropped */
    if (r == 0)
        r = l2_get_writable(s, off, &table);
    if (r < 0) {
        /* a fresh cluster nothing points to yet is ours to give back */
        if (fresh)
            unalloc(s, host, 1);
        return r;
    }
    l2_set(s, table, idx, new_l2e, new_bitmap);
    qcow2_cbuf_invalidate(s);
    if (!owned && !dfile) {
        if (ct == QCOW2_COMPRESSED)
            r = qcow2_free_compressed_later(s, l2e);
        else if (ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC)
            r = qcow2_free_later(s, l2e & L2E_OFFSET_MASK, 1, FREE_NORMAL);
    }
    return r;
}

/* Whole clusters this image owns, one after the other in the file too
 * (normal ones and preallocated zero ones, without subclusters): one data
 * write for them all, as QEMU sends (blkdebug rules count write_aio
 * events: iotest 066), then the zero flags come off.  *done stays 0 where
 * fewer than two such clusters start at off: the caller goes cluster by
 * cluster, which also reports whatever is wrong with them. */
static int write_owned_run(Qcow2State *s, uint64_t off, const uint8_t *buf, uint64_t len,
                           uint64_t *done)
{
    *done = 0;
    uint64_t l1i = l1_index(s, off);
    /* owned data clusters are only found through an L2 table of our own */
    if (s->extl2 || l1i >= s->l1_size || !(s->l1[l1i] & L1E_OFFSET_MASK) ||
        !(s->l1[l1i] & QCOW_OFLAG_COPIED))
        return 0;
    uint8_t *table;
    int r = l2_get_writable(s, off, &table);
    if (r < 0 || !table)
        return r;
    bool dfile = qcow2_has_data_file(s), zeros = false;
    uint64_t idx = l2_index(s, off), k = 0, max = len >> s->cluster_bits, h0 = 0;
    uint64_t c = off >> s->cluster_bits;
    if (inflight_overlaps(s, c, max))
        return 0; /* the cluster-at-a-time path waits for them */
    while (k < max && idx + k < s->l2_size) {
        uint64_t l2e, bitmap, want = h0 + (k << s->cluster_bits);
        l2_entry(s, table, idx + k, &l2e, &bitmap);
        int ct = qcow2_cluster_type(s, l2e);
        uint64_t host = l2e & L2E_OFFSET_MASK;
        if (!(l2e & QCOW_OFLAG_COPIED) || (ct != QCOW2_NORMAL && ct != QCOW2_ZERO_ALLOC) ||
            sc_type(s, l2e, bitmap, 0) == SC_INVALID || (host & (s->cluster_size - 1)) ||
            (k && host != want) ||
            (dfile ? host != off + (k << s->cluster_bits) : host >= s->file_end))
            break;
        if (!k)
            h0 = host;
        zeros |= ct == QCOW2_ZERO_ALLOC;
        k++;
    }
    if (k < 2)
        return 0;
    uint64_t bytes = k << s->cluster_bits;
    if (!dfile && (r = qcow2_check_overlap(s, h0, bytes)) < 0)
        return r;
    if (zeros && (r = qcow2_mark_dirty(s)) < 0)
        return r;
    if ((r = inflight_add(s, c, k)) < 0)
        return r;
    /* the clusters may be discarded meanwhile, but are not freed for
     * reuse before this write has ended */
    unsigned io = qcow2_io_begin(s);
    pthread_mutex_unlock(&s->lock);
    uint8_t *enc = NULL;
    if (s->crypt_method)
        r = qcow2_crypt_copy(s, off, h0, buf, bytes, &enc);
    blkdebug_event(s->bs, BLKDBG_WRITE_AIO);
    blkdebug_event(s->data_bs, BLKDBG_WRITE_AIO); /* raw data file */
    if (r == 0 && (r = blk_file_pwrite(s->data_fd, enc ? enc : buf, bytes, h0)) < 0)
        blk_set_error("%s: write error: %s", s->bs->filename, strerror(-r));
    qcow2_io_end(s, io);
    free(enc);
    pthread_mutex_lock(&s->lock);
    inflight_del(s, c);
    if (r < 0)
        return r;
    if (zeros) {
        /* the data is on its way before the entries that make it visible */
        s->need_sync = s->deps_unsynced = true;
        /* the table may have been evicted while the lock was dropped */
        if ((r = l2_get_writable(s, off, &table)) < 0)
            return r;
        for (uint64_t i = 0; i < k; i++) {
            uint64_t l2e, bitmap, host = h0 + (i << s->cluster_bits);
            l2_entry(s, table, idx + i, &l2e, &bitmap);
            if (qcow2_cluster_type(s, l2e) == QCOW2_ZERO_ALLOC &&
                (l2e & L2E_OFFSET_MASK) == host)
                l2_set(s, table, idx + i, host | QCOW_OFLAG_COPIED, 0);
        }
        qcow2_cbuf_invalidate(s);
    }
    *done = bytes;
    return 0;
}

/* Where write_new_clusters takes its data when not from a buffer: len
 * bytes of host file fd from off, shared by a reflink (or, where the
 * filesystem has none, copied by the kernel: then copied is set). */
struct clone_src {
    int fd;
    uint64_t off;
    bool copied;
};

/* Shares [src->off, +n) of src->fd at host of the image file; where the
 * filesystem cannot, the kernel copies it. */
static int clone_or_copy(Qcow2State *s, struct clone_src *src, uint64_t host, uint64_t n)
{
    blkdebug_event(s->bs, BLKDBG_WRITE_AIO);
    blkdebug_event(s->data_bs, BLKDBG_WRITE_AIO); /* raw data file */
    /* an injected failure fails the write, not just the clone (the
     * copy below goes around the host file helpers) */
    int e = blkdebug_file_check(s->data_fd, BLKDBG_IO_WRITE, host, n);
    if (e < 0)
        return e;
    if (blk_file_clone(s->data_fd, host, src->fd, src->off, n) == 0)
        return 0;
    src->copied = true;
    blk_fill(data_bs(s), host, n);
    loff_t in = (loff_t)src->off, out = (loff_t)host;
    while (n) {
        ssize_t k = copy_file_range(src->fd, &in, s->data_fd, &out, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -EIO;
        n -= (uint64_t)k;
    }
    return 0;
}

/* An L2 entry write_new_clusters takes: nothing allocated, or only
 * QEMU's zero flag (without subclusters). */
static bool empty_entry(const Qcow2State *s, const uint8_t *table, uint64_t i)
{
    uint64_t l2e, bitmap;
    l2_entry(s, table, i, &l2e, &bitmap);
    if (s->extl2)
        return l2e == 0 && !(bitmap & BITMAP_ALL_ALLOC);
    return l2e == 0 || l2e == QCOW_OFLAG_ZERO;
}

static int write_fresh(Qcow2State *s, uint64_t off, const uint8_t *buf, int64_t host,
                       uint64_t k, struct clone_src *src);

/* Many whole clusters that hold nothing yet: one allocation, one write
 * (of buf, or from src where buf is NULL). */
static int write_new_clusters(Qcow2State *s, uint64_t off, const uint8_t *buf, uint64_t len,
                              uint64_t *done, struct clone_src *src)
{
    uint8_t *table;
    *done = 0;
    int r = l2_get_writable(s, off, &table);
    if (r < 0)
        return r;
    uint64_t idx = l2_index(s, off), k = 0, max = len >> s->cluster_bits;
    uint64_t c = off >> s->cluster_bits;
    if (inflight_overlaps(s, c, max))
        return 0; /* take the cluster-at-a-time path, which waits */
    while (k < max && idx + k < s->l2_size) {
        /* (an invalid entry: the cluster path reports it) */
        if (!empty_entry(s, table, idx + k))
            break;
        k++;
    }
    if (k < 2 && !src)
        return 0;
    if (src && k != max)
        return 0; /* the caller writes the bytes instead */
    if ((r = qcow2_mark_dirty(s)) < 0)
        return r;
    int64_t host = qcow2_alloc_data(s, off, k);
    if (host < 0)
        return (int)host;
    if ((r = write_fresh(s, off, buf, host, k, src)) == 0)
        *done = k << s->cluster_bits;
    return r;
}

/* Writes k whole clusters from off on (their L2 entries empty) into the
 * new host clusters at host, with the lock dropped and the clusters in
 * flight, then points the entries at them; on failure they are freed. */
static int write_fresh(Qcow2State *s, uint64_t off, const uint8_t *buf, int64_t host,
                       uint64_t k, struct clone_src *src)
{
    uint8_t *table;
    uint64_t idx = l2_index(s, off), c = off >> s->cluster_bits;
    uint64_t bytes = k << s->cluster_bits;
    int r;
    if ((r = inflight_add(s, c, k)) < 0) {
        unalloc(s, (uint64_t)host, k);
        return r;
    }
    pthread_mutex_unlock(&s->lock);
    uint8_t *enc = NULL;
    if (src)
        r = clone_or_copy(s, src, (uint64_t)host, bytes);
    else if (s->crypt_method)
        r = qcow2_crypt_copy(s, off, (uint64_t)host, buf, bytes, &enc);
    if (r == 0 && !src) {
        blk_fill(data_bs(s), (uint64_t)host, bytes);
        blkdebug_event(s->bs, BLKDBG_WRITE_AIO);
        blkdebug_event(s->data_bs, BLKDBG_WRITE_AIO); /* raw data file */
        r = blk_file_pwrite(s->data_fd, enc ? enc : buf, bytes, host);
    }
    free(enc);
    pthread_mutex_lock(&s->lock);
    inflight_del(s, c);
    if (r < 0) {
        blk_set_error("%s: write error: %s", s->bs->filename, strerror(-r));
        unalloc(s, (uint64_t)host, k);
        return r;
    }
    s->need_sync = s->deps_unsynced = true;
    if ((r = l2_get_writable(s, off, &table)) < 0) {
        unalloc(s, (uint64_t)host, k); /* nothing points to them yet */
        return r;
    }
    for (uint64_t i = 0; i < k; i++)
        l2_set(s, table, idx + i, ((uint64_t)host + (i << s->cluster_bits)) | QCOW_OFLAG_COPIED,
               s->extl2 ? BITMAP_ALL_ALLOC : 0);
    return 0;
}

/* Whether the cluster of this L2 entry needs a new host cluster to be
 * written (QEMU's cluster_needs_new_alloc): it has none, or one that is
 * compressed or shared. */
static bool needs_new_cluster(const Qcow2State *s, uint64_t l2e)
{
    int ct = qcow2_cluster_type(s, l2e);
    return !((ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC) && (l2e & QCOW_OFLAG_COPIED));
}

/* A write over several clusters from off on (the first and last may be
 * partial) that each need a new host cluster: QEMU allocates them as one
 * contiguous run, then writes each with its copy-on-write, so does this
 * (which is where QEMU's images put them).  *done: the bytes written, 0
 * where fewer than two such clusters start at off (or some are in
 * flight): the caller goes cluster by cluster then.  buf NULL: zeros.
 * Lock held; each cluster's write drops it as write_cluster does, and a
 * cluster another writer allocated meanwhile is written in place, its
 * preallocated one freed at once (nothing ever pointed to it). */
#define ALLOC_RUN_MAX (16u << 20)

/* How many whole clusters from off on (at most max, within len) have
 * empty L2 entries and none in flight: 0 where off is not at a cluster's
 * start or the table cannot be had (the cluster path reports why). */
static uint64_t fresh_stretch(Qcow2State *s, uint64_t off, uint64_t in, uint64_t len,
                              uint64_t max)
{
    uint8_t *table;
    if (in || l2_get_writable(s, off, &table) < 0)
        return 0;
    uint64_t idx = l2_index(s, off), m = 0;
    if (max > len >> s->cluster_bits)
        max = len >> s->cluster_bits;
    while (m < max && idx + m < s->l2_size && empty_entry(s, table, idx + m))
        m++;
    return inflight_overlaps(s, off >> s->cluster_bits, m) ? 0 : m;
}

static int write_alloc_run(Qcow2State *s, uint64_t off, const uint8_t *buf, uint64_t len,
                           uint64_t *done)
{
    uint64_t cs = s->cluster_size, in = off & (cs - 1);
    *done = 0;
    /* a data file's clusters sit at their guest offsets: nothing to gather */
    if (qcow2_has_data_file(s) || in + len <= cs)
        return 0;
    uint8_t *table;
    /* the L2 table first, as QEMU allocates it before the data */
    int r = l2_get_writable(s, off, &table);
    if (r < 0)
        return r;
    uint64_t idx = l2_index(s, off), c = off >> s->cluster_bits;
    uint64_t max = (in + len + cs - 1) >> s->cluster_bits, k = 0;
    /* at most 16 MiB: QEMU's write-zeroes fallback hands the format no
     * more at a time, and no run preallocates a whole L2 table's worth */
    if (max > (ALLOC_RUN_MAX >> s->cluster_bits))
        max = ALLOC_RUN_MAX >> s->cluster_bits;
    while (k < max && idx + k < s->l2_size) {
        uint64_t l2e, bitmap;
        l2_entry(s, table, idx + k, &l2e, &bitmap);
        /* an invalid entry: the cluster path reports it */
        if (!needs_new_cluster(s, l2e) ||
            sc_type(s, l2e, bitmap, 0) == SC_INVALID)
            break;
        k++;
    }
    if (k < 2 || inflight_overlaps(s, c, k))
        return 0;
    if ((r = qcow2_mark_dirty(s)) < 0)
        return r;
    int64_t host = qcow2_alloc_clusters(s, k);
    if (host < 0)
        return (int)host;
    if (!buf && (r = zero_cluster_buf(s)) < 0) {
        unalloc(s, (uint64_t)host, k);
        return r;
    }
    uint64_t i = 0;
    for (; i < k && r == 0; i++) {
        uint64_t n = cs - in < len ? cs - in : len;
        int64_t pre = host + (int64_t)(i << s->cluster_bits);
        /* Empty whole clusters, two or more: their preallocated ones are
         * written at once with the lock dropped, as write_new_clusters
         * does (each cluster below is written with it held) */
        uint64_t m = buf ? fresh_stretch(s, off, in, len, k - i) : 0;
        if (m >= 2) {
            /* (on failure write_fresh frees those m, the rest below) */
            r = write_fresh(s, off, buf, pre, m, NULL);
            i += m - 1;
            if (r == 0) {
                off += m << s->cluster_bits;
                len -= m << s->cluster_bits;
                buf += m << s->cluster_bits;
                *done += m << s->cluster_bits;
            }
            continue;
        }
        inflight_wait(s, c + i, 1);
        r = write_cluster_locked(s, off, buf ? buf : s->zero_cluster, n, &pre);
        if (pre)
            unalloc(s, (uint64_t)pre, 1);
        if (r == 0) {
            off += n;
            len -= n;
            if (buf)
                buf += n;
            *done += n;
            in = 0;
        }
    }
    /* after a failure, the clusters not reached yet */
    if (i < k)
        unalloc(s, (uint64_t)host + (i << s->cluster_bits), k - i);
    return r;
}

/* Writes [off, off+len) from buf (NULL: zeros).  Lock held. */
static int pwrite_locked(Qcow2State *s, uint64_t off, const uint8_t *p, uint64_t len)
{
    int r = 0;
    while (len) {
        uint64_t in = off & (s->cluster_size - 1);
        uint64_t done = 0;
        if (p && !in && len >= 2 * s->cluster_size) {
            if ((r = write_owned_run(s, off, p, len, &done)) < 0)
                break;
            if (!done && (r = write_new_clusters(s, off, p, len, &done, NULL)) < 0)
                break;
        }
        if (!done && (r = write_alloc_run(s, off, p, len, &done)) < 0)
            break;
        if (!done) {
            done = s->cluster_size - in;
            if (done > len)
                done = len;
            if (!p && (r = zero_cluster_buf(s)) < 0)
                break;
            if ((r = write_cluster(s, off, p ? p : s->zero_cluster, done)) < 0)
                break;
        }
        off += done;
        if (p)
            p += done;
        len -= done;
    }
    return r;
}

int qcow2_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    Qcow2State *s = bs->opaque;
    if (s->crypt_method)
        return qcow2_crypto_pwrite(bs, off, buf, len, 0);
    return qcow2_pwrite_sectors(bs, off, buf, len);
}

int qcow2_pwrite_sectors(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    Qcow2State *s = bs->opaque;
    pthread_mutex_lock(&s->lock);
    int r = pwrite_locked(s, off, buf, len);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Copy offload into clusters that hold nothing yet (whole ones, in a
 * plain image): they share the source's blocks where the filesystem
 * can (qemu-img's copy_range_to does the same with copy_file_range).
 * Returns 0, 1 when the kernel had to copy instead (not worth asking
 * again), -EINVAL when this range is not such clusters (write it), or
 * -ENOTSUP. */
int qcow2_copy_from_file(BlockDriverState *bs, uint64_t off, int src_fd, uint64_t src_off,
                         uint64_t len)
{
    Qcow2State *s = bs->opaque;
    /* O_DIRECT: the clone or kernel copy would bypass the range lock that
     * keeps read-modify-writes of shared 4 KiB blocks apart (util.c) */
    if (s->crypt_method || (bs->flags & BLK_O_NOCACHE) || blk_file_is_node(s->data_fd) ||
        blk_file_is_node(src_fd))
        return -ENOTSUP;
    if (!len || ((off | len) & (s->cluster_size - 1)))
        return -EINVAL;
    struct clone_src src = { .fd = src_fd, .off = src_off };
    uint64_t done = 0;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    while (len && r == 0) {
        /* one L2 table's worth at a time */
        uint64_t n = (s->l2_size - l2_index(s, off)) << s->cluster_bits;
        n = n < len ? n : len;
        r = write_new_clusters(s, off, NULL, n, &done, &src);
        /* not all new clusters: the caller writes the whole range, also
         * over what an earlier table already shared (correct, if wasted) */
        if (r == 0 && done != n)
            r = -EINVAL;
        off += n;
        len -= n;
        src.off += n;
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0 && r != -EINVAL)
        blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
    return r < 0 ? r : src.copied;
}

/* ---- zero writes and discard ---- */

/* What zero_or_discard does: writes zeros; discards, leaving the range
 * reading as zeros (a zero flag over a backing file); or discards for
 * good, leaving nothing (clusters past a shrunk image's end, which must
 * not come back when it grows again). */
enum { DISCARD_NO, DISCARD_ZERO, DISCARD_FULL };

/* Sets the entry of one whole cluster (or whole subclusters) to read as
 * zeros; frees what it no longer needs.  Returns 1 if the caller must
 * write explicit zeros instead. */
static bool zero_may_extend(int t);

static int zero_in_l2(Qcow2State *s, uint64_t off, uint64_t n, int flags, int mode,
                      bool only_if_free)
{
    bool discard = mode != DISCARD_NO;
    uint64_t cs = s->cluster_size, in = off & (cs - 1), scs = s->subcluster_size;
    uint8_t *table;
    inflight_wait(s, off >> s->cluster_bits, 1);
    int r = l2_get_writable(s, off, &table);
    if (r < 0)
        return r;
    uint64_t idx = l2_index(s, off), l2e, bitmap;
    l2_entry(s, table, idx, &l2e, &bitmap);
    /* a subcluster a write of zeros was widened to: only if this layer
     * holds nothing of its own there, decided here, where no other
     * request can come between the look and the change */
    if (only_if_free &&
        !zero_may_extend(sc_type(s, l2e, bitmap, s->extl2 ? (int)(in / scs) : 0)))
        return 2;
    int ct = qcow2_cluster_type(s, l2e);
    uint64_t host = ct == QCOW2_COMPRESSED ? 0 : l2e & L2E_OFFSET_MASK;
    /* the last cluster of an image whose size is not a multiple of the
     * cluster size is whole when the range reaches the end of the image
     * (but zeros with subclusters go to the subclusters there, as in QEMU) */
    bool at_end = off + n == s->bs->size && mode != DISCARD_FULL && (discard || !s->extl2);
    bool whole = in == 0 && (n == cs || at_end);
    if ((r = check_data_host(s, off, l2e)) < 0)
        return r;
    /* has a host cluster (offset 0 is one in a data file) */
    bool hosted = ct == QCOW2_NORMAL || ct == QCOW2_ZERO_ALLOC;
    bool owned = (l2e & QCOW_OFLAG_COPIED) && hosted;
    bool has_backing = s->bs->backing != NULL;
    uint64_t new_l2e = l2e, new_bitmap = bitmap;
    bool free_old = false;
    if (s->extl2) {
        if (ct == QCOW2_COMPRESSED && !whole)
            return 1;
        uint64_t m = sc_mask((int)(in / scs), (int)((in + n - 1) / scs));
        if (whole && (discard || (flags & BLK_ZERO_MAY_UNMAP) || !owned)) {
            /* QEMU leaves an unallocated cluster alone (zero bits too)
             * when nothing could show through it */
            if (mode == DISCARD_ZERO && !has_backing && ct == QCOW2_UNALLOCATED)
                return 0;
            new_l2e = 0;
            new_bitmap = mode == DISCARD_FULL ? 0 : BITMAP_ALL_ZERO;
            free_old = hosted || ct == QCOW2_COMPRESSED;
        } else if (discard && !whole) {
            return 0; /* partial discards are advisory */
        } else {
            new_bitmap = (bitmap & ~m) | (m << 32);
            if (ct == QCOW2_UNALLOCATED)
                new_bitmap &= BITMAP_ALL_ZERO;
        }
    } else {
        if (!whole)
            return discard ? 0 : 1;
        if (discard) {
            if (mode == DISCARD_ZERO && s->version >= 3 &&
                (has_backing || ct != QCOW2_UNALLOCATED))
                new_l2e = QCOW_OFLAG_ZERO;
            else
                new_l2e = 0;
            free_old = hosted || ct == QCOW2_COMPRESSED;
        } else if (s->version >= 3) {
            if (ct == QCOW2_ZERO_PLAIN)
                return 0;
            if (owned && !(flags & BLK_ZERO_MAY_UNMAP)) {
                new_l2e = host | QCOW_OFLAG_COPIED | QCOW_OFLAG_ZERO;
            } else {
                new_l2e = QCOW_OFLAG_ZERO;
                free_old = hosted || ct == QCOW2_COMPRESSED;
            }
        } else if (!has_backing) {
            new_l2e = 0; /* v2 has no zero flag; unallocated reads zeros */
            free_old = hosted || ct == QCOW2_COMPRESSED;
        } else {
            return 1;
        }
    }
    if (new_l2e == l2e && new_bitmap == bitmap)
        return 0;
    if ((r = qcow2_mark_dirty(s)) < 0)
        return r;
    l2_set(s, table, idx, new_l2e, new_bitmap);
    qcow2_cbuf_invalidate(s);
    if (qcow2_has_data_file(s)) {
        /* No refcount to drop: the data file's bytes are discarded
         * instead, as qemu-io does (a discard reaches the data file).
         * A raw data file stays the guest's view: zeros where the guest
         * reads zeros (guest and host offsets are one there). */
        bool raw = s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
        bool zero_old = free_old && ct != QCOW2_COMPRESSED;
        if (zero_old || (raw && mode == DISCARD_NO)) {
            /* after any write that found the old entry has landed, or
             * it could put its data back under the zero entry */
            qcow2_io_drain(s);
            r = zero_old ? blk_file_zero(s->data_fd, host, cs) : blk_file_zero(s->data_fd, off, n);
        }
        if (r < 0)
            blk_set_error("%s: cannot discard in the data file: %s", s->bs->filename,
                          strerror(-r));
        return r;
    }
    if (!free_old)
        return 0;
    if (ct == QCOW2_COMPRESSED)
        return qcow2_free_compressed_later(s, l2e);
    return qcow2_free_later(s, host, 1, FREE_NORMAL);
}

/* Subcluster types a write of zeros may extend over: nothing of this
 * layer's own data is in them (QEMU's rule). */
static bool zero_may_extend(int t)
{
    return t == SC_UNALLOCATED_PLAIN || t == SC_UNALLOCATED_ALLOC || t == SC_ZERO_PLAIN ||
           t == SC_ZERO_ALLOC;
}

/* Zeros [off, off+len) or discards it (mode).  [lo, off) and [off+len, hi)
 * are the rest of a partly covered head and tail subcluster that read as
 * zeros already (lo == off, hi == off+len: none): where this layer holds
 * no data in them either, the whole subcluster gets the zero flag instead
 * of explicit zeros being written into part of it. */
static int zero_or_discard(BlockDriverState *bs, uint64_t off, uint64_t len, int flags,
                           int mode, uint64_t lo, uint64_t hi)
{
    Qcow2State *s = bs->opaque;
    bool discard = mode != DISCARD_NO;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    struct extent e;
    /* with subclusters, QEMU cannot zero part of a compressed cluster and
     * then writes the whole subcluster-aligned part of the request as
     * explicit zeros instead: [xa, xb).  An unaligned head goes first
     * (explicit zeros into a compressed cluster leave it plain). */
    uint64_t scs = s->subcluster_size, cs = s->cluster_size, end = off + len;
    uint64_t xa = qcow2_align_up(off, scs), xb = end == bs->size ? end : end & ~(scs - 1);
    bool explicit = false;
    if (!discard && s->extl2 && xa < xb) {
        uint64_t tail_c = xb & ~(cs - 1);
        if ((xa & (cs - 1)) && xa == off && (r = get_extent(s, xa, 1, &e)) == 0)
            explicit = e.type == SC_COMPRESSED;
        if (!explicit && r == 0 && (xb & (cs - 1)) && xb != bs->size &&
            tail_c >= qcow2_align_up(xa, cs) && (r = get_extent(s, tail_c, 1, &e)) == 0)
            explicit = e.type == SC_COMPRESSED;
    }
    if (r < 0) {
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    /* the widened head and tail subclusters first, each on its own
     * (zero_in_l2 decides whether it may); what is left of the request
     * then goes the usual way */
    if (lo < off) {
        uint64_t sce = qcow2_align_up(lo + 1, scs) < bs->size ? qcow2_align_up(lo + 1, scs)
                                                              : bs->size;
        if ((r = zero_in_l2(s, lo, sce - lo, flags, mode, true)) < 0)
            goto out;
        if (r == 0) {
            if (hi <= sce)
                goto out; /* one subcluster held the whole request */
            off = sce < end ? sce : end;
        }
        r = 0;
    }
    if (hi > end) {
        uint64_t scb = (hi - 1) & ~(scs - 1);
        if (scb >= off && (r = zero_in_l2(s, scb, hi - scb, flags, mode, true)) < 0)
            goto out;
        if (scb >= off && r == 0)
            end = scb;
        r = 0;
    }
    if (explicit) {
        /* QEMU sends the unaligned head and tail as requests of their
         * own, which become data writes; the subcluster-aligned middle is
         * zeroed from its start for as far as it goes (a whole compressed
         * cluster is dropped, its host cluster freed) until a compressed
         * cluster it cannot zero in part stops it, and then the whole
         * middle is written as zeros: one write, whose new clusters are
         * one allocation (write_alloc_run). */
        if (off < xa && (r = zero_cluster_buf(s)) == 0)
            r = write_cluster(s, off, s->zero_cluster, xa - off);
        for (uint64_t pos = xa, n; r == 0 && pos < xb; pos += n) {
            n = cs - (pos & (cs - 1)) < xb - pos ? cs - (pos & (cs - 1)) : xb - pos;
            if ((r = zero_in_l2(s, pos, n, flags, DISCARD_NO, false)) == 1) {
                r = 0;
                break;
            }
        }
        if (r == 0)
            r = pwrite_locked(s, xa, NULL, xb - xa);
        if (r == 0 && xb < end && (r = zero_cluster_buf(s)) == 0)
            r = write_cluster(s, xb, s->zero_cluster, end - xb);
        goto out;
    }
    len = end - off;
    while (len) {
        uint64_t in = off & (s->cluster_size - 1);
        uint64_t n = s->cluster_size - in;
        if (n > len)
            n = len;
        /* explicit zeros for the parts that are not whole subclusters (a
         * range that reaches the end of the image ends a whole one) */
        uint64_t a = qcow2_align_up(in, scs), b = (in + n) & ~(scs - 1);
        if (mode != DISCARD_FULL && off + n == bs->size && a < in + n)
            b = in + n;
        if (a >= b) {
            a = b = in + n;
        }
        if (!discard && (a > in || b < in + n)) {
            if ((r = zero_cluster_buf(s)) < 0)
                break;
            uint8_t *table;
            if ((r = l2_load(s, off, &table)) < 0)
                break;
            if (a > in &&
                (r = write_cluster(s, off, s->zero_cluster, (a < in + n ? a : in + n) - in)) < 0)
                break;
            if (b < in + n && b >= a &&
                (r = write_cluster(s, off - in + b, s->zero_cluster, in + n - b)) < 0)
                break;
        }
        if (b > a) {
            r = zero_in_l2(s, off - in + a, b - a, flags, mode, false);
            if (r == 1) {
                if ((r = zero_cluster_buf(s)) < 0 ||
                    (r = write_cluster(s, off - in + a, s->zero_cluster, b - a)) < 0)
                    break;
            }
            if (r < 0)
                break;
        }
        off += n;
        len -= n;
    }
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Whether [off, off+len) of bs reads as zeros through its whole chain,
 * from the status alone (no data is read), as QEMU's is_zero(). */
static bool reads_zero(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    if (off >= bs->size)
        return true;
    if (len > bs->size - off)
        len = bs->size - off;
    while (len) {
        uint64_t pnum;
        int st = blk_block_status_above(bs, off, len, &pnum, NULL, NULL, NULL);
        if (st < 0 || !(st & BLK_STATUS_ZERO) || !pnum)
            return false;
        off += pnum;
        len -= pnum;
    }
    return true;
}

int qcow2_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    Qcow2State *s = bs->opaque;
    if (s->crypt_method)
        return qcow2_crypto_pwrite(bs, off, NULL, len, flags);
    /* a head or tail subcluster the request covers only partly: if the
     * rest of it reads as zeros anyway, the whole of it can be zeroed */
    uint64_t scs = s->subcluster_size, end = off + len, lo = off, hi = end;
    uint64_t head_sc = off & ~(scs - 1), tail_sc = (end - 1) & ~(scs - 1);
    uint64_t tail_end = tail_sc + scs < bs->size ? tail_sc + scs : bs->size;
    bool head = off != head_sc, tail = (end & (scs - 1)) && end != bs->size;
    if (head && tail && head_sc == tail_sc) {
        if (reads_zero(bs, head_sc, off - head_sc) && reads_zero(bs, end, tail_end - end)) {
            lo = head_sc;
            hi = tail_end;
        }
    } else {
        if (head && reads_zero(bs, head_sc, off - head_sc))
            lo = head_sc;
        if (tail && reads_zero(bs, end, tail_end - end))
            hi = tail_end;
    }
    return zero_or_discard(bs, off, len, flags, DISCARD_NO, lo, hi);
}

int qcow2_pwrite_zeroes_sectors(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    return zero_or_discard(bs, off, len, flags, DISCARD_NO, off, off + len);
}

int qcow2_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    Qcow2State *s = bs->opaque;
    /* v2 cannot say "zeros": deallocating would expose the backing file,
     * so QEMU ignores the request there; so do we. */
    if (s->version < 3 && bs->backing)
        return 0;
    if (!s->crypt_method)
        return zero_or_discard(bs, off, len, 0, DISCARD_ZERO, off, off + len);
    /* not while a partial sector of the range is read-modify-written */
    BlkRange held;
    blk_range_lock(&s->crypt_rmw, &held, 0, off & ~(uint64_t)(BLK_SECTOR_SIZE - 1),
                   qcow2_align_up(off + len, BLK_SECTOR_SIZE), false);
    int r = zero_or_discard(bs, off, len, 0, DISCARD_ZERO, off, off + len);
    blk_range_unlock(&s->crypt_rmw, &held);
    return r;
}

int qcow2_discard_tail(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    return zero_or_discard(bs, off, len, 0, DISCARD_FULL, off, off + len);
}

/* ---- status ---- */

/* QEMU's heuristic (qcow2_detect_metadata_preallocation): an image with
 * clearly more clusters in use than the file has blocks was preallocated,
 * and only then are holes in the file reported as zeros.  Doing the same
 * keeps map output identical to qemu-img's.  Made once per open, under
 * s->lock (held on entry): threads asking for block status at once all
 * get the answer of the one that makes it, never the flag before it is
 * made (a thread took "checked" and the default "not preallocated"
 * while another was still counting, and ThreadSanitizer saw the race). */
static bool looks_preallocated(Qcow2State *s)
{
    if (s->prealloc_checked)
        return s->prealloc_detected;
    s->prealloc_checked = true;
    s->prealloc_detected = false;
    struct stat st;
    if (blk_file_stat(s->fd, &st) < 0)
        return false;
    int64_t real = (int64_t)((uint64_t)st.st_blocks * 512 / s->cluster_size);
    int64_t threshold = real * 10 / 9 > real + 2 ? real * 10 / 9 : real + 2;
    uint64_t end = (st.st_size + s->cluster_size - 1) >> s->cluster_bits;
    int64_t count = 0;
    for (uint64_t c = 0; c < end && count < threshold; c++) {
        uint64_t ref;
        if (qcow2_get_refcount(s, c, &ref) < 0)
            break;
        count += ref != 0;
    }
    s->prealloc_detected = count >= threshold;
    return s->prealloc_detected;
}

/* BLK_STATUS_ZERO if host bytes [host, host+*pnum) start in a hole of the
 * file (clipping *pnum to the hole or to the data run). */
static int host_hole_status(Qcow2State *s, uint64_t host, uint64_t *pnum)
{
    struct stat st;
    if (blk_file_stat(s->data_fd, &st) < 0)
        return 0;
    if (host >= (uint64_t)st.st_size)
        return BLK_STATUS_ZERO;
    int64_t d = blk_file_seek(s->data_fd, host, SEEK_DATA);
    if (d < 0 || (uint64_t)d > host) {
        uint64_t hole = d < 0 ? (uint64_t)st.st_size - host : (uint64_t)d - host;
        if (hole < *pnum)
            *pnum = hole;
        return BLK_STATUS_ZERO;
    }
    int64_t h = blk_file_seek(s->data_fd, host, SEEK_HOLE);
    if (h > (int64_t)host && (uint64_t)h - host < *pnum)
        *pnum = (uint64_t)h - host;
    return 0;
}

int qcow2_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       uint64_t *host_offset)
{
    Qcow2State *s = bs->opaque;
    struct extent e;
    pthread_mutex_lock(&s->lock);
    int r = get_extent(s, off, len, &e);
    /* a hole under encrypted data does not read as zeros */
    bool holes = r == 0 && e.type == SC_NORMAL && !s->crypt_method && looks_preallocated(s);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    *pnum = e.len;
    *host_offset = e.host;
    /* as QEMU: encrypted data has no offset a reader could use */
    int offset_valid = s->crypt_method ? 0 : BLK_STATUS_OFFSET;
    switch (e.type) {
    case SC_ZERO_PLAIN:
        return BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED;
    case SC_ZERO_ALLOC:
        return BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | offset_valid;
    case SC_COMPRESSED:
        *host_offset = 0;
        return BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_COMPRESSED;
    case SC_NORMAL: {
        int st = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | offset_valid;
        if (holes)
            st |= host_hole_status(s, e.host, pnum);
        return st;
    }
    case SC_UNALLOCATED_ALLOC:
        /* reads from below, but the cluster has its place in the file */
        return offset_valid;
    default:
        return 0;
    }
}

/* ---- preallocation ---- */

/* Calls fn(s, off, table, idx, k) for each run of k clusters without a
 * host offset in [start, end), one L2 table at a time. */
static int for_unallocated_runs(Qcow2State *s, uint64_t start, uint64_t end,
                                int (*fn)(Qcow2State *, uint64_t, uint64_t, uint64_t, void *),
                                void *opaque)
{
    uint64_t cs = s->cluster_size;
    int r = 0;
    for (uint64_t off = start & ~(cs - 1); off < end && r == 0;) {
        uint8_t *table;
        if ((r = l2_get_writable(s, off, &table)) < 0)
            break;
        uint64_t idx = l2_index(s, off), k = 0;
        while (idx + k < s->l2_size && off + (k << s->cluster_bits) < end) {
            uint64_t l2e, bm;
            l2_entry(s, table, idx + k, &l2e, &bm);
            if ((l2e & L2E_OFFSET_MASK) || (l2e & QCOW_OFLAG_COMPRESSED) ||
                qcow2_cluster_type(s, l2e) == QCOW2_NORMAL) /* data file offset 0 */
                break;
            k++;
        }
        if (!k) {
            off += cs;
            continue;
        }
        r = fn(s, off, idx, k, opaque);
        off += k << s->cluster_bits;
    }
    return r;
}

static int count_run(Qcow2State *s, uint64_t off, uint64_t idx, uint64_t k, void *opaque)
{
    (void)s, (void)off, (void)idx;
    *(uint64_t *)opaque += k;
    return 0;
}

/* opaque: the next host offset of a run allocated beforehand, or 0 */
static int map_run(Qcow2State *s, uint64_t off, uint64_t idx, uint64_t k, void *opaque)
{
    uint64_t *next = opaque, host;
    if (qcow2_has_data_file(s)) {
        host = off;
    } else if (*next) {
        host = *next;
        *next += k << s->cluster_bits;
    } else {
        int64_t h = qcow2_alloc_clusters(s, k);
        if (h < 0)
            return (int)h;
        host = h;
    }
    uint8_t *table;
    int r = l2_get_writable(s, off, &table);
    if (r < 0)
        return r;
    /* with subclusters the space is reserved but nothing is allocated:
     * reads still go to the backing file (as QEMU) */
    for (uint64_t i = 0; i < k; i++)
        l2_set(s, table, idx + i, (host + (i << s->cluster_bits)) | QCOW_OFLAG_COPIED, 0);
    return 0;
}

/* An external data file covers the guest's [0, end): extended (never
 * cut) and, for falloc/full, with its blocks allocated or zeros written
 * from start, as QEMU's truncate of the data file does. */
static int size_data_file(Qcow2State *s, uint64_t start, uint64_t end, int mode)
{
    const char *fn = s->data_bs ? s->data_bs->filename : s->data_file_name;
    int64_t cur = blk_file_size(s->data_fd);
    if (cur < 0)
        return (int)cur;
    int r = 0;
    if (mode == BLK_PREALLOC_FALLOC && end > start) {
        int e = blk_file_allocate(s->data_fd, start, end - start);
        if (e < 0) {
            blk_set_error("%s: cannot preallocate: %s", fn, strerror(-e));
            return e;
        }
    } else if (mode == BLK_PREALLOC_FULL) {
        if ((r = zero_cluster_buf(s)) < 0)
            return r;
        for (uint64_t o = (uint64_t)cur > start ? (uint64_t)cur : start; o < end;) {
            uint64_t n = end - o < s->cluster_size ? end - o : s->cluster_size;
            if ((r = blk_file_pwrite(s->data_fd, s->zero_cluster, n, o)) < 0) {
                blk_set_error("%s: cannot preallocate: %s", fn, strerror(-r));
                return r;
            }
            o += n;
        }
    }
    if ((uint64_t)cur < end && (r = blk_file_grow_to(s->data_fd, end)) < 0)
        blk_set_error("%s: cannot resize the data file: %s", fn, strerror(-r));
    return r;
}

int qcow2_preallocate(Qcow2State *s, uint64_t start, uint64_t end, int mode)
{
    uint64_t cs = s->cluster_size, next = 0, run = 0, run_bytes = 0;
    /* what lies past here was allocated by this call (the lock is held
     * throughout); below it, clusters past the end of the file may be a
     * writer's, allocated before and waiting for their data */
    uint64_t own_from = qcow2_align_up(s->file_end, cs);
    int r = 0;
    if (qcow2_has_data_file(s)) {
        /* the metadata maps the data file 1:1; the data file gets what
         * the mode asks for */
        if (mode != BLK_PREALLOC_OFF &&
            (r = for_unallocated_runs(s, start, end, map_run, &next)) < 0)
            return r;
        s->need_sync = s->deps_unsynced = true;
        return size_data_file(s, start, end, mode);
    }
    if (mode != BLK_PREALLOC_METADATA) {
        /* falloc/full: the L2 tables first, then the data in one
         * contiguous run, as QEMU lays it out */
        uint64_t n = 0;
        if ((r = for_unallocated_runs(s, start, end, count_run, &n)) < 0)
            return r;
        if (n) {
            int64_t h = qcow2_alloc_clusters(s, n);
            if (h < 0)
                return (int)h;
            next = run = h;
            run_bytes = n * cs;
        }
    }
    r = for_unallocated_runs(s, start, end, map_run, &next);
    if (r < 0)
        return r;
    /* the file covers every allocated cluster */
    uint64_t fend = s->file_end;
    if (mode == BLK_PREALLOC_FULL || mode == BLK_PREALLOC_FALLOC) {
        int64_t cur = blk_file_size(s->fd);
        if (cur < 0)
            return (int)cur;
        if (mode == BLK_PREALLOC_FALLOC) {
            int e = blk_file_allocate(s->fd, 0, fend);
            if (e < 0) {
                blk_set_error("%s: cannot preallocate: %s", s->bs->filename, strerror(-e));
                return e;
            }
        } else {
            if ((r = zero_cluster_buf(s)) < 0)
                return r;
            /* Zeros go only where this call owns the bytes: its data
             * run (wherever it was allocated), then what it allocated
             * past the end of the file.  A file shorter than file_end
             * may end below clusters another writer allocated before
             * this call and is writing with the lock dropped: zeros
             * there would land after its data, under its L2 entries.
             * Those, and unwritten tables, are left to their writers. */
            uint64_t run_end = run + run_bytes;
            for (uint64_t o = run; o < run_end; o += cs) {
                uint64_t n = run_end - o < cs ? run_end - o : cs;
                if ((r = blk_file_pwrite(s->fd, s->zero_cluster, n, o)) < 0)
                    return r;
            }
            uint64_t from = (uint64_t)cur > own_from ? (uint64_t)cur : own_from;
            for (uint64_t o = from; o < fend; o += cs) {
                if (o >= run && o < run_end) {
                    o = run_end - cs;
                    continue;
                }
                uint64_t n = fend - o < cs ? fend - o : cs;
                if ((r = blk_file_pwrite(s->fd, s->zero_cluster, n, o)) < 0)
                    return r;
            }
        }
    }
    int64_t cur = blk_file_size(s->fd);
    if (cur >= 0 && (uint64_t)cur < fend)
        return blk_file_grow_to(s->fd, fend);
    return 0;
}

int qcow2_host_run(Qcow2State *s, uint64_t off, uint64_t len, uint64_t *host)
{
    uint64_t first = 0, done = 0;
    while (done < len) {
        struct extent e;
        int r = get_extent(s, off + done, len - done, &e);
        if (r < 0)
            return r;
        if (e.type != SC_NORMAL || (done && e.host != first + done))
            return -ENOTSUP;
        if (!done)
            first = e.host;
        done += e.len;
    }
    *host = first;
    return 0;
}

int qcow2_host_run_owned(Qcow2State *s, uint64_t off, uint64_t len, uint64_t *host)
{
    uint64_t cs = s->cluster_size, start = off & ~(cs - 1), first = 0;
    if (s->extl2 || s->crypt_method || qcow2_has_data_file(s))
        return -ENOTSUP;
    for (uint64_t o = start; o < off + len; o += cs) {
        uint8_t *t;
        int r = l2_load(s, o, &t);
        if (r < 0)
            return r;
        if (!t)
            return -ENOTSUP;
        uint64_t l2e, bm;
        l2_entry(s, t, l2_index(s, o), &l2e, &bm);
        uint64_t h = l2e & L2E_OFFSET_MASK;
        if (qcow2_cluster_type(s, l2e) != QCOW2_NORMAL || !(l2e & QCOW_OFLAG_COPIED) ||
            (o != start && h != first + (o - start)))
            return -ENOTSUP;
        if (o == start)
            first = h;
    }
    *host = first + (off - start);
    return 0;
}

/* ---- for qcow2-compress.c ---- */

int qcow2_l2_get_writable(Qcow2State *s, uint64_t off, uint8_t **table)
{
    return l2_get_writable(s, off, table);
}

void qcow2_inflight_wait(Qcow2State *s, uint64_t first, uint64_t n)
{
    inflight_wait(s, first, n);
}
