/* qcow2 persistent dirty bitmaps: the bitmaps header extension, the
 * bitmap directory, bitmap tables and data clusters (QEMU's
 * docs/interop/qcow2.txt, "Bitmaps extension").
 *
 * As in QEMU, enabled bitmaps record guest writes: from the first write
 * of an open they are held in memory and marked in-use on disk, and
 * close stores them valid again.  A crash leaves them in-use: their
 * content is no longer trusted, but the structure stays consistent, the
 * autoclear bit stays set and disabled bitmaps (which record nothing)
 * stay valid.
 *
 * Every store writes new tables and a new directory, switches the header
 * to them, then frees the old clusters: a crash leaves either the old
 * bitmaps or the new ones, plus leaked clusters at worst. */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BM_EXT_LEN 24
#define BM_MAX_BITMAPS 65535
#define BM_MAX_DIR_SIZE (1024u * BM_MAX_BITMAPS)
#define BM_MAX_TABLE_SIZE 0x8000000u
#define BM_MAX_PHYS_SIZE 0x20000000u /* data bytes of one bitmap, as QEMU */
#define BM_MIN_GRAN_BITS 9
#define BM_MAX_GRAN_BITS 31
#define BM_MAX_NAME 1023
#define BM_ENTRY_HDR 24

#define BM_FLAG_IN_USE (1u << 0)
#define BM_FLAG_AUTO   (1u << 1)
#define BM_RESERVED_FLAGS 0xfffffffcu
#define BM_TYPE_DIRTY 1

#define BMT_RESERVED   UINT64_C(0xff000000000001fe)
#define BMT_OFFSET     UINT64_C(0x00fffffffffffe00)
#define BMT_ALL_ONES   UINT64_C(1)

typedef struct Qcow2Bitmap {
    char *name;
    uint64_t table_offset;
    uint32_t table_size;      /* entries */
    uint32_t flags;
    uint8_t gran_bits;
    /* the content while a session edits it (see "changes" below): one
     * cluster of bits per table entry, NULL where all bits are clear;
     * NULL as a whole where it is only on disk */
    uint8_t **chunks;
    uint32_t nchunks;
    /* in-use on disk because this open records guest writes in it (held
     * in memory); stored without the flag at close */
    bool tracked;
} Qcow2Bitmap;

/* in-use and not recorded here: its content cannot be trusted */
static bool broken(const Qcow2Bitmap *bm)
{
    return (bm->flags & BM_FLAG_IN_USE) && !bm->tracked;
}

static int bm_error(Qcow2State *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bm_error(Qcow2State *s, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    blk_set_error("%s: %s", s->bs->filename, msg);
    return err;
}

int qcow2_bitmap_ext_read(Qcow2State *s, const uint8_t *d, uint32_t len)
{
    if (len != BM_EXT_LEN)
        return bm_error(s, -EINVAL, "bitmaps_ext: Invalid extension length");
    if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
        /* A program without bitmap support wrote the image since: the
         * bitmaps are stale, their clusters leaks.  QEMU drops the
         * extension on its next header write; so does this. */
        s->bm_ext_dropped = true;
        return 0;
    }
    uint32_t n = qcow2_be32(d);
    uint64_t size = qcow2_be64(d + 8), off = qcow2_be64(d + 16);
    if (qcow2_be32(d + 4))
        return bm_error(s, -EINVAL, "bitmaps_ext: Reserved field is not zero");
    if (n > BM_MAX_BITMAPS)
        return bm_error(s, -EINVAL, "bitmaps_ext: Image has %u bitmaps, exceeding the QEMU "
                        "supported maximum of %d", n, BM_MAX_BITMAPS);
    if (n == 0)
        return bm_error(s, -EINVAL, "found bitmaps extension with zero bitmaps");
    if (off & (s->cluster_size - 1))
        return bm_error(s, -EINVAL, "bitmaps_ext: invalid bitmap directory offset");
    if (size > BM_MAX_DIR_SIZE)
        return bm_error(s, -EINVAL, "bitmaps_ext: bitmap directory size (%" PRIu64 ") exceeds "
                        "the maximum supported size (%u)", size, BM_MAX_DIR_SIZE);
    s->nb_bitmaps = s->bm_dir_count = n;
    s->bm_dir_size = size;
    s->bm_dir_offset = off;
    return 0;
}

bool qcow2_bitmap_ext_data(const Qcow2State *s, uint8_t out[24])
{
    if (!s->bm_dir_count)
        return false;
    qcow2_put32(out, s->bm_dir_count);
    qcow2_put32(out + 4, 0);
    qcow2_put64(out + 8, s->bm_dir_size);
    qcow2_put64(out + 16, s->bm_dir_offset);
    return true;
}

static void drop_chunks(Qcow2Bitmap *bm)
{
    for (uint32_t i = 0; bm->chunks && i < bm->nchunks; i++)
        free(bm->chunks[i]);
    free(bm->chunks);
    bm->chunks = NULL;
}

static void free_list(Qcow2Bitmap *l, uint32_t n)
{
    for (uint32_t i = 0; l && i < n; i++) {
        free(l[i].name);
        drop_chunks(&l[i]);
    }
    free(l);
}

void qcow2_bitmaps_free(Qcow2State *s)
{
    free_list(s->bitmaps, s->nb_bitmaps);
    s->bitmaps = NULL;
}

static uint64_t entry_size(size_t name_len)
{
    return qcow2_align_up(BM_ENTRY_HDR + name_len, 8);
}

static uint64_t data_bytes(const Qcow2State *s, const Qcow2Bitmap *bm)
{
    return blk_bitmap_bytes(s->bs->size, 1u << bm->gran_bits);
}

/* QEMU's check_dir_entry(): the constraints every entry must meet. */
static bool entry_ok(const Qcow2State *s, const Qcow2Bitmap *bm, uint8_t type)
{
    if (!bm->table_size || !bm->table_offset || (bm->table_offset & (s->cluster_size - 1)) ||
        bm->table_size > BM_MAX_TABLE_SIZE || bm->gran_bits > BM_MAX_GRAN_BITS ||
        bm->gran_bits < BM_MIN_GRAN_BITS || (bm->flags & BM_RESERVED_FLAGS) ||
        type != BM_TYPE_DIRTY)
        return false;
    uint64_t phys = (uint64_t)bm->table_size * s->cluster_size;
    if (phys > BM_MAX_PHYS_SIZE)
        return false;
    /* a bitmap whose table is too short for the disk is only acceptable
     * while it is in-use (not saved after a resize) */
    return (bm->flags & BM_FLAG_IN_USE) || data_bytes(s, bm) <= phys;
}

static int load_dir(Qcow2State *s)
{
    uint64_t size = s->bm_dir_size, off = s->bm_dir_offset;
    if (!off || size > s->file_end || off > s->file_end - size)
        return bm_error(s, -EINVAL, "bitmap directory (0x%" PRIx64 ", %" PRIu64 " bytes) is "
                        "beyond the end of the file", off, size);
    uint8_t *dir = malloc(size ? size : 1);
    Qcow2Bitmap *l = calloc(s->nb_bitmaps, sizeof(*l));
    int r = -ENOMEM;
    if (!dir || !l)
        goto fail;
    if ((r = blk_file_pread(s->fd, dir, size, off)) < 0) {
        bm_error(s, r, "cannot read the bitmap directory: %s", strerror(-r));
        goto fail;
    }
    /* QEMU's messages (bitmap_list_load()) */
    const char *broken = "Broken bitmap directory";
    uint64_t pos = 0;
    r = -EINVAL;
    if (!size) {
        bm_error(s, r, "Requested bitmap directory size is zero");
        goto fail;
    }
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (size - pos < BM_ENTRY_HDR) {
            bm_error(s, r, "%s", pos == size ? "Less bitmaps found than specified in header "
                     "extension" : broken);
            goto fail;
        }
        const uint8_t *e = dir + pos;
        Qcow2Bitmap *bm = &l[i];
        bm->table_offset = qcow2_be64(e);
        bm->table_size = qcow2_be32(e + 8);
        bm->flags = qcow2_be32(e + 12);
        bm->gran_bits = e[17];
        uint32_t name_len = qcow2_be16(e + 18), extra = qcow2_be32(e + 20);
        if ((uint64_t)extra + name_len > size - pos - BM_ENTRY_HDR) {
            bm_error(s, r, "%s", broken);
            goto fail;
        }
        if (extra) {
            bm_error(s, -ENOTSUP, "Bitmap extra data is not supported");
            r = -ENOTSUP;
            goto fail;
        }
        if (name_len > BM_MAX_NAME || !entry_ok(s, bm, e[16])) {
            bm_error(s, r, "Bitmap '%.*s' doesn't satisfy the constraints",
                     (int)(name_len > 64 ? 64 : name_len), (const char *)e + BM_ENTRY_HDR);
            goto fail;
        }
        if (!(bm->name = malloc(name_len + 1))) {
            r = -ENOMEM;
            goto fail;
        }
        memcpy(bm->name, e + BM_ENTRY_HDR, name_len);
        bm->name[name_len] = 0;
        if (strlen(bm->name) != name_len) {
            bm_error(s, r, "%s", broken);
            goto fail;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (!strcmp(l[j].name, bm->name)) {
                bm_error(s, r, "bitmap '%s' appears twice", bm->name);
                goto fail;
            }
        }
        uint64_t tbytes = (uint64_t)bm->table_size * 8;
        if (bm->table_offset > s->file_end || tbytes > s->file_end - bm->table_offset) {
            bm_error(s, r, "bitmap '%s' has its table beyond the end of the file", bm->name);
            goto fail;
        }
        pos += entry_size(name_len);
        if (pos > size) {
            bm_error(s, r, "%s", broken); /* the padding is missing */
            goto fail;
        }
    }
    if (pos != size) {
        bm_error(s, r, "%s", size - pos >= BM_ENTRY_HDR ? "More bitmaps found than specified in "
                 "header extension" : broken);
        goto fail;
    }
    free(dir);
    s->bitmaps = l;
    return 0;
fail:
    free(dir);
    free_list(l, s->nb_bitmaps);
    return r;
}

static size_t dir_serialize(const Qcow2Bitmap *l, uint32_t n, uint8_t *out)
{
    size_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t nl = strlen(l[i].name), es = entry_size(nl);
        if (out) {
            uint8_t *e = out + pos;
            memset(e, 0, es);
            qcow2_put64(e, l[i].table_offset);
            qcow2_put32(e + 8, l[i].table_size);
            qcow2_put32(e + 12, l[i].flags);
            e[16] = BM_TYPE_DIRTY;
            e[17] = l[i].gran_bits;
            qcow2_put16(e + 18, (uint16_t)nl);
            memcpy(e + BM_ENTRY_HDR, l[i].name, nl);
        }
        pos += es;
    }
    return pos;
}

int qcow2_bitmaps_open(Qcow2State *s)
{
    if (!s->nb_bitmaps)
        return 0;
    int r = load_dir(s);
    if (r < 0)
        return r;
    BlockDriverState *bs = s->bs;
    if (bs->read_only || (bs->flags & BLK_O_CHECK))
        return 0;
    if (bs->flags & BLK_O_BITMAPS) {
        /* QEMU stores every bitmap it loaded when it closes the image:
         * doing the same lays images out as it does */
        s->bm_dirty = true;
        return 0;
    }
    return 0;
}

static int bitmap_info_locked(Qcow2State *s, BlockInfo *info)
{
    if (!s->nb_bitmaps)
        return 0;
    info->bitmaps = calloc(s->nb_bitmaps, sizeof(*info->bitmaps));
    if (!info->bitmaps)
        return -ENOMEM;
    info->nb_bitmaps = (int)s->nb_bitmaps;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        BlockBitmapInfo *o = &info->bitmaps[i];
        snprintf(o->name, sizeof(o->name), "%s", s->bitmaps[i].name);
        o->granularity = 1u << s->bitmaps[i].gran_bits;
        o->in_use = s->bitmaps[i].flags & BM_FLAG_IN_USE;
        o->enabled = s->bitmaps[i].flags & BM_FLAG_AUTO;
    }
    return 0;
}

int qcow2_bitmap_info(Qcow2State *s, BlockInfo *info)
{
    pthread_mutex_lock(&s->lock); /* a session may be editing the list */
    int r = bitmap_info_locked(s, info);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* The table of bm, host order; *n entries. */
static int load_table(Qcow2State *s, const Qcow2Bitmap *bm, uint64_t **out)
{
    uint64_t *t = calloc(bm->table_size, 8);
    if (!t)
        return -ENOMEM;
    int r = blk_file_pread(s->fd, t, (uint64_t)bm->table_size * 8, bm->table_offset);
    if (r < 0) {
        free(t);
        return bm_error(s, r, "cannot read the table of bitmap '%s': %s", bm->name,
                        strerror(-r));
    }
    for (uint32_t i = 0; i < bm->table_size; i++)
        t[i] = qcow2_be64(&t[i]);
    *out = t;
    return 0;
}

static bool table_entry_ok(const Qcow2State *s, uint64_t e)
{
    uint64_t off = e & BMT_OFFSET;
    if (e & BMT_RESERVED)
        return false;
    if (off && ((e & BMT_ALL_ONES) || off + s->cluster_size > s->file_end))
        return false;
    return true;
}

int qcow2_bitmap_refs(Qcow2State *s, int (*ref)(void *opaque, uint64_t off, uint64_t len),
                      void *opaque)
{
    if (!s->nb_bitmaps || !s->bitmaps)
        return 0;
    int r = ref(opaque, s->bm_dir_offset, s->bm_dir_size);
    bool corrupt = false;
    for (uint32_t i = 0; i < s->nb_bitmaps && r >= 0; i++) {
        const Qcow2Bitmap *bm = &s->bitmaps[i];
        uint64_t *t;
        if (!bm->table_offset)
            continue; /* not stored yet */
        if ((r = ref(opaque, bm->table_offset, (uint64_t)bm->table_size * 8)) < 0 ||
            (r = load_table(s, bm, &t)) < 0)
            break;
        for (uint32_t j = 0; j < bm->table_size && r >= 0; j++) {
            if (!table_entry_ok(s, t[j]))
                corrupt = true;
            else if (t[j] & BMT_OFFSET)
                r = ref(opaque, t[j] & BMT_OFFSET, s->cluster_size);
        }
        free(t);
    }
    return r < 0 ? r : corrupt;
}

/* ---- changes ----
 *
 * As in QEMU, a session that edits bitmaps holds their content in
 * memory and stores every consistent bitmap anew when it flushes or
 * closes: new data clusters and tables, then a new directory named by
 * the header, then the old tables and directory are freed.  Only
 * removal goes to the disk at once. */

static uint32_t nchunks(const Qcow2State *s, const Qcow2Bitmap *bm)
{
    uint64_t n = (data_bytes(s, bm) + s->cluster_size - 1) >> s->cluster_bits;
    return n ? (uint32_t)n : 1; /* an empty disk still has a table */
}

/* An empty content for bm, all bits clear. */
static int new_chunks(Qcow2State *s, Qcow2Bitmap *bm)
{
    drop_chunks(bm);
    bm->nchunks = nchunks(s, bm);
    bm->chunks = calloc(bm->nchunks, sizeof(*bm->chunks));
    return bm->chunks ? 0 : -ENOMEM;
}

static Qcow2Bitmap *find(Qcow2State *s, const char *name)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        if (!strcmp(s->bitmaps[i].name, name))
            return &s->bitmaps[i];
    return NULL;
}

/* Writes len bytes of buf into newly allocated clusters (the last one
 * padded with zeros): *off, or a negative errno. */
static int write_new(Qcow2State *s, const void *buf, uint64_t len, uint64_t *off)
{
    uint64_t n = (len + s->cluster_size - 1) >> s->cluster_bits;
    int64_t o = qcow2_alloc_clusters(s, n);
    if (o < 0)
        return (int)o;
    int r = blk_file_pwrite(s->fd, buf, len, (uint64_t)o);
    if (r < 0) {
        qcow2_update_refcount(s, (uint64_t)o, n << s->cluster_bits, -1);
        return bm_error(s, r, "cannot write bitmap data: %s", strerror(-r));
    }
    *off = (uint64_t)o;
    return 0;
}

static int free_clusters(Qcow2State *s, uint64_t off, uint64_t len)
{
    if (!off || !len)
        return 0;
    return qcow2_free_later(s, off, (len + s->cluster_size - 1) >> s->cluster_bits,
                            FREE_NORMAL);
}

/* Frees a table (and the data clusters it names) no entry names now. */
static int free_table(Qcow2State *s, const Qcow2Bitmap *bm)
{
    if (!bm->table_offset)
        return 0;
    uint64_t *t;
    int r = load_table(s, bm, &t);
    if (r < 0)
        return r;
    for (uint32_t j = 0; j < bm->table_size && r == 0; j++)
        if (table_entry_ok(s, t[j]) && (t[j] & BMT_OFFSET))
            r = free_clusters(s, t[j] & BMT_OFFSET, s->cluster_size);
    free(t);
    if (r == 0)
        r = free_clusters(s, bm->table_offset, (uint64_t)bm->table_size * 8);
    return r;
}

/* Writes a new directory of every entry with a table, switches the
 * header to it and frees the old one. */
static int commit_dir(Qcow2State *s)
{
    uint32_t n = 0;
    uint64_t size = 0, off = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (s->bitmaps[i].table_offset) {
            n++;
            size += entry_size(strlen(s->bitmaps[i].name));
        }
    }
    if (size > BM_MAX_DIR_SIZE)
        return bm_error(s, -EFBIG, "the bitmap directory would be too large");
    int r = 0;
    if (n) {
        uint8_t *dir = malloc(size), *p = dir;
        if (!dir)
            return -ENOMEM;
        for (uint32_t i = 0; i < s->nb_bitmaps; i++)
            if (s->bitmaps[i].table_offset)
                p += dir_serialize(&s->bitmaps[i], 1, p);
        r = write_new(s, dir, size, &off);
        free(dir);
    }
    /* what the new directory names reaches the disk before the header
     * names it */
    if (r == 0 && (r = qcow2_flush_metadata(s)) == 0)
        r = qcow2_sync(s);
    if (r < 0)
        return r;
    uint64_t old_off = s->bm_dir_offset, old_size = s->bm_dir_size;
    s->bm_dir_count = n;
    s->bm_dir_offset = off;
    s->bm_dir_size = n ? size : 0;
    if (n)
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    else
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0)
        return r;
    return free_clusters(s, old_off, old_size);
}

/* Loads bm's content into memory, if it is not there yet. */
static int hold(Qcow2State *s, Qcow2Bitmap *bm)
{
    if (bm->chunks)
        return 0;
    uint32_t n = nchunks(s, bm);
    uint64_t nbytes = data_bytes(s, bm), cs = s->cluster_size;
    if (new_chunks(s, bm) < 0)
        return -ENOMEM;
    if (!bm->table_offset)
        return 0;
    uint64_t *t;
    int r = load_table(s, bm, &t);
    if (r < 0) {
        drop_chunks(bm);
        return r;
    }
    for (uint32_t i = 0; i < n && i < bm->table_size && r == 0; i++) {
        uint64_t len = nbytes - (uint64_t)i * cs < cs ? nbytes - (uint64_t)i * cs : cs;
        if (!table_entry_ok(s, t[i])) {
            r = bm_error(s, -EINVAL, "bitmap '%s' has a corrupt table entry %u", bm->name, i);
            break;
        }
        if (!(t[i] & (BMT_OFFSET | BMT_ALL_ONES)))
            continue;
        if (!(bm->chunks[i] = calloc(1, cs))) {
            r = bm_error(s, -ENOMEM, "out of memory for bitmap '%s'", bm->name);
            break;
        }
        if (t[i] & BMT_OFFSET)
            r = blk_file_pread(s->fd, bm->chunks[i], len, t[i] & BMT_OFFSET);
        else
            memset(bm->chunks[i], 0xff, len);
    }
    free(t);
    if (r < 0)
        drop_chunks(bm);
    return r;
}

/* Data clusters for the chunks of bm with a bit set, then its table:
 * bm's new table_offset and table_size. */
static int store_one(Qcow2State *s, Qcow2Bitmap *bm)
{
    uint32_t n = nchunks(s, bm);
    uint64_t cs = s->cluster_size;
    uint8_t *t = calloc(n, 8);
    if (!t)
        return -ENOMEM;
    int r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        const uint8_t *p = bm->chunks[i];
        bool zero = true;
        for (uint64_t k = 0; p && k < cs && zero; k++)
            zero = !p[k];
        uint64_t off;
        if (!zero && (r = write_new(s, p, cs, &off)) == 0)
            qcow2_put64(t + (uint64_t)i * 8, off);
    }
    uint64_t toff = 0;
    if (r == 0)
        r = write_new(s, t, (uint64_t)n * 8, &toff);
    free(t);
    if (r < 0)
        return r; /* data clusters written so far leak until check -r */
    bm->table_offset = toff;
    bm->table_size = n;
    return 0;
}

static int store_locked(Qcow2State *s)
{
    if (!s->bm_dirty)
        return 0;
    uint32_t n = s->nb_bitmaps;
    Qcow2Bitmap *old = calloc(n ? n : 1, sizeof(*old));
    if (!old)
        return -ENOMEM;
    int r = 0;
    bool any = false;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        Qcow2Bitmap *bm = &s->bitmaps[i];
        if (broken(bm))
            continue; /* kept as it is: nobody can trust or store it */
        if (bm->tracked)
            bm->flags &= ~BM_FLAG_IN_USE; /* every write is in it */
        bm->tracked = false;
        any = true;
        if ((r = hold(s, bm)) == 0) {
            old[i] = *bm;
            old[i].chunks = NULL;
            r = store_one(s, bm);
        }
        /* one bitmap in memory at a time: if the switch fails below, the
         * old table still holds what was on disk */
        drop_chunks(bm);
    }
    if (r == 0 && any)
        r = commit_dir(s);
    if (r < 0) {
        /* the header still names the old directory and tables */
        for (uint32_t i = 0; i < n; i++) {
            if (old[i].name) {
                s->bitmaps[i].table_offset = old[i].table_offset;
                s->bitmaps[i].table_size = old[i].table_size;
            }
        }
        free(old);
        return r;
    }
    for (uint32_t i = 0; i < n && r == 0; i++)
        if (old[i].name)
            r = free_table(s, &old[i]);
    free(old);
    s->bm_dirty = false;
    if (r == 0)
        r = qcow2_flush_metadata(s);
    return r;
}

static int inconsistent(const Qcow2Bitmap *bm)
{
    blk_set_error("Bitmap '%s' is inconsistent and cannot be used\n"
                  "Try block-dirty-bitmap-remove to delete this bitmap from disk", bm->name);
    return -EINVAL;
}

int qcow2_bitmaps_resize_begin(Qcow2State *s)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        if (broken(&s->bitmaps[i]))
            return inconsistent(&s->bitmaps[i]);
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        int r = hold(s, &s->bitmaps[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

int qcow2_bitmaps_resize_end(Qcow2State *s, uint64_t old_size)
{
    uint64_t cs = s->cluster_size;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        Qcow2Bitmap *bm = &s->bitmaps[i];
        uint32_t n = nchunks(s, bm);
        for (uint32_t j = n; j < bm->nchunks; j++)
            free(bm->chunks[j]);
        uint8_t **c = realloc(bm->chunks, n * sizeof(*c));
        if (!c)
            return -ENOMEM;
        for (uint32_t j = bm->nchunks; j < n; j++)
            c[j] = NULL;
        bm->chunks = c;
        bm->nchunks = n;
        /* bits past the smaller end are clear: the new area is clean */
        uint64_t g = 1ULL << bm->gran_bits;
        uint64_t size = old_size < s->bs->size ? old_size : s->bs->size;
        uint64_t bit = size / g + (size % g != 0);
        uint64_t ci = bit / (cs * 8), in = bit % (cs * 8);
        if (ci < n && c[ci]) {
            uint8_t *p = c[ci];
            if (in % 8)
                p[in / 8] &= (uint8_t)((1u << (in % 8)) - 1);
            uint64_t from = (in + 7) / 8;
            memset(p + from, 0, cs - from);
        }
    }
    if (s->nb_bitmaps)
        s->bm_dirty = true;
    return 0;
}

int qcow2_bitmaps_store(Qcow2State *s)
{
    return s->bm_dirty ? store_locked(s) : 0;
}


static int add(Qcow2State *s, BlockBitmapReq *req)
{
    uint32_t g = req->granularity;
    if (!g) {
        uint64_t cs = s->cluster_size;
        g = (uint32_t)(cs < 4096 ? 4096 : cs > 65536 ? 65536 : cs);
    }
    if (find(s, req->name)) {
        blk_set_error("Bitmap already exists: %s", req->name);
        return -EEXIST;
    }
    const char *why = NULL;
    char msg[128];
    int gbits = __builtin_ctz(g);
    uint64_t bytes = blk_bitmap_bytes(s->bs->size, g);
    uint64_t dir = entry_size(strlen(req->name));
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        dir += entry_size(strlen(s->bitmaps[i].name));
    if (s->version < 3) {
        why = "Cannot store dirty bitmaps in qcow2 v2 files";
    } else if (gbits > BM_MAX_GRAN_BITS || gbits < BM_MIN_GRAN_BITS) {
        snprintf(msg, sizeof(msg), "Granularity %s (%llu bytes)",
                 gbits < BM_MIN_GRAN_BITS ? "is under minimum" : "exceeds maximum",
                 1ULL << (gbits < BM_MIN_GRAN_BITS ? BM_MIN_GRAN_BITS : BM_MAX_GRAN_BITS));
        why = msg;
    } else if (bytes > BM_MAX_PHYS_SIZE || bytes > (uint64_t)BM_MAX_TABLE_SIZE * s->cluster_size) {
        why = "Too much space will be occupied by the bitmap. Use larger granularity";
    } else if (strlen(req->name) > BM_MAX_NAME) {
        why = "Name length exceeds maximum (1023 characters)";
    } else if (s->nb_bitmaps + 1 > BM_MAX_BITMAPS) {
        why = "Maximum number of persistent bitmaps is already reached";
    } else if (dir > BM_MAX_DIR_SIZE) {
        why = "Bitmap directory is too large";
    }
    if (why) {
        blk_set_error("Can't make bitmap '%s' persistent in '%s': %s", req->name,
                      s->bs->filename, why);
        return -EINVAL;
    }
    Qcow2Bitmap *l = realloc(s->bitmaps, (s->nb_bitmaps + 1) * sizeof(*l));
    if (!l)
        return -ENOMEM;
    s->bitmaps = l;
    /* QEMU lists the bitmaps it has in memory newest first and stores the
     * new ones in that order after those on disk: so does this */
    uint32_t at = s->nb_bitmaps;
    while (at > 0 && !l[at - 1].table_offset)
        at--;
    memmove(&l[at + 1], &l[at], (s->nb_bitmaps - at) * sizeof(*l));
    Qcow2Bitmap *bm = &l[at];
    memset(bm, 0, sizeof(*bm));
    bm->gran_bits = (uint8_t)gbits;
    bm->flags = req->enabled ? BM_FLAG_AUTO : 0;
    if (!(bm->name = strdup(req->name)) || new_chunks(s, bm) < 0) {
        free(bm->name);
        memmove(&l[at], &l[at + 1], (s->nb_bitmaps - at) * sizeof(*l));
        return -ENOMEM;
    }
    s->nb_bitmaps++;
    s->bm_dirty = true;
    s->bm_writes_seen = false;
    __atomic_store_n(&s->bs->bitmaps_marked, false, __ATOMIC_RELEASE); /* record from now */
    return 0;
}

static int remove_bitmap(Qcow2State *s, Qcow2Bitmap *bm)
{
    Qcow2Bitmap gone = *bm;
    uint32_t idx = (uint32_t)(bm - s->bitmaps);
    memmove(bm, bm + 1, (s->nb_bitmaps - idx - 1) * sizeof(*bm));
    s->nb_bitmaps--;
    int r = 0;
    if (gone.table_offset) {
        /* on disk at once, as QEMU does */
        if ((r = commit_dir(s)) == 0)
            r = free_table(s, &gone);
        if (r == 0)
            r = qcow2_flush_metadata(s);
    }
    drop_chunks(&gone);
    free(gone.name);
    return r;
}

/* bits (nbytes long) into bm's chunks */
static int set_bits(Qcow2State *s, Qcow2Bitmap *bm, const uint8_t *bits, uint64_t nbytes)
{
    if (nbytes != data_bytes(s, bm)) {
        blk_set_error("Bitmaps are incompatible and can't be merged");
        return -EINVAL;
    }
    uint32_t n = nchunks(s, bm);
    uint64_t cs = s->cluster_size;
    if (new_chunks(s, bm) < 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = (uint64_t)i * cs, len = nbytes - off < cs ? nbytes - off : cs;
        bool zero = true;
        for (uint64_t k = 0; k < len && zero; k++)
            zero = !bits[off + k];
        if (zero)
            continue;
        if (!(bm->chunks[i] = calloc(1, cs))) {
            drop_chunks(bm);
            return -ENOMEM;
        }
        memcpy(bm->chunks[i], bits + off, len);
    }
    return 0;
}

static int get_bits(Qcow2State *s, Qcow2Bitmap *bm, BlockBitmapReq *req)
{
    bool had = bm->chunks != NULL;
    int r = hold(s, bm);
    if (r < 0)
        return r;
    uint64_t nbytes = data_bytes(s, bm), cs = s->cluster_size;
    uint8_t *bits = calloc(nbytes ? nbytes : 1, 1);
    if (!bits)
        r = bm_error(s, -ENOMEM, "out of memory for bitmap '%s'", bm->name);
    for (uint32_t i = 0; bits && i < nchunks(s, bm); i++) {
        uint64_t off = (uint64_t)i * cs;
        if (bm->chunks[i] && off < nbytes)
            memcpy(bits + off, bm->chunks[i], nbytes - off < cs ? nbytes - off : cs);
    }
    uint64_t g = 1ULL << bm->gran_bits;
    uint64_t nbits = s->bs->size / g + (s->bs->size % g != 0);
    if (bits && nbits % 8)
        bits[nbytes - 1] &= (uint8_t)((1u << (nbits % 8)) - 1); /* nothing past the end */
    if (!had)
        drop_chunks(bm); /* only read: no need to keep it */
    req->bits = bits;
    req->nbytes = nbytes;
    req->granularity = (uint32_t)g;
    req->enabled = bm->flags & BM_FLAG_AUTO;
    return r;
}

/* Sets the bits of [off, off+len) in a held bitmap: whole bytes at a
 * time where the run covers them. */
static int set_range(Qcow2State *s, Qcow2Bitmap *bm, uint64_t off, uint64_t len)
{
    uint64_t cs_bits = s->cluster_size * 8;
    uint64_t b = off >> bm->gran_bits, last = (off + len - 1) >> bm->gran_bits;
    while (b <= last) {
        uint64_t ci = b / cs_bits, in = b % cs_bits;
        if (ci >= bm->nchunks)
            break;
        if (!bm->chunks[ci] && !(bm->chunks[ci] = calloc(1, s->cluster_size)))
            return -ENOMEM;
        uint8_t *p = bm->chunks[ci];
        uint64_t end = last - b + 1 < cs_bits - in ? in + (last - b + 1) : cs_bits;
        for (; in < end && in % 8; in++)
            p[in / 8] |= (uint8_t)(1u << (in % 8));
        if (end - in >= 8) {
            memset(p + in / 8, 0xff, (end - in) / 8);
            in += (end - in) / 8 * 8;
        }
        for (; in < end; in++)
            p[in / 8] |= (uint8_t)(1u << (in % 8));
        b = ci * cs_bits + end;
    }
    return 0;
}

/* Guest data of [off, off+len) changes.  The first time in an open, the
 * enabled, consistent bitmaps are loaded and marked in-use in place in
 * the directory (only flags change; synced before the write), as QEMU
 * marks the bitmaps it loads: a crash then leaves them in-use, never
 * silently stale.  Every write then sets its bits in memory; close
 * stores them and clears the flag.  Returns 1 while any bitmap records
 * writes, 0 when none does (the block layer stops asking). */
static int guest_write(Qcow2State *s, uint64_t off, uint64_t len)
{
    int r = 0;
    if (!s->bm_writes_seen) {
        bool *marked = calloc(s->nb_bitmaps ? s->nb_bitmaps : 1, sizeof(*marked));
        bool mark = false;
        if (!marked)
            return -ENOMEM;
        for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
            Qcow2Bitmap *bm = &s->bitmaps[i];
            if ((bm->flags & (BM_FLAG_AUTO | BM_FLAG_IN_USE)) != BM_FLAG_AUTO)
                continue;
            /* one that cannot be loaded (a corrupt table) cannot record
             * the writes: it is left in-use, and the write goes on */
            bm->tracked = hold(s, bm) == 0;
            bm->flags |= BM_FLAG_IN_USE;
            marked[i] = mark = true;
        }
        if (mark && s->bm_dir_count) {
            uint8_t *dir = malloc(s->bm_dir_size), *p = dir;
            r = -ENOMEM;
            if (dir) {
                for (uint32_t i = 0; i < s->nb_bitmaps; i++)
                    if (s->bitmaps[i].table_offset)
                        p += dir_serialize(&s->bitmaps[i], 1, p);
                r = -EIO;
                if ((uint64_t)(p - dir) == s->bm_dir_size)
                    r = blk_file_pwrite(s->fd, dir, s->bm_dir_size, s->bm_dir_offset);
                free(dir);
            }
            if (r < 0)
                bm_error(s, r, "cannot mark the bitmaps in-use: %s", strerror(-r));
            else
                r = qcow2_sync(s);
        }
        if (r < 0) {
            /* not marked on disk: no write may go on, the next one tries again */
            for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
                if (marked[i]) {
                    s->bitmaps[i].flags &= ~BM_FLAG_IN_USE;
                    s->bitmaps[i].tracked = false;
                }
            }
            free(marked);
            return r;
        }
        free(marked);
        s->bm_writes_seen = true;
        if (mark)
            s->bm_dirty = true;
    }
    bool any = false;
    for (uint32_t i = 0; i < s->nb_bitmaps && r == 0; i++) {
        Qcow2Bitmap *bm = &s->bitmaps[i];
        if (bm->tracked && (bm->flags & BM_FLAG_AUTO)) {
            any = true;
            if (len)
                r = set_range(s, bm, off, len);
        }
    }
    /* none records writes: the block layer stops asking.  Set here,
     * under the lock that adding or enabling a bitmap (which clears it)
     * holds too, so a bitmap enabled meanwhile is never missed. */
    if (r == 0 && !any)
        __atomic_store_n(&s->bs->bitmaps_marked, true, __ATOMIC_RELEASE);
    return r < 0 ? r : any;
}

static int bitmap_op_locked(Qcow2State *s, BlockBitmapReq *req)
{
    if (req->op == BLK_BITMAP_GUEST_WRITE)
        return guest_write(s, req->offset, req->nbytes);
    if (req->op == BLK_BITMAP_PROBE)
        return s->version >= 3 ? 0 : -ENOTSUP; /* v2 has no autoclear bits */
    if (!req->name[0]) {
        blk_set_error("Bitmap name cannot be empty");
        return -EINVAL;
    }
    if (req->op == BLK_BITMAP_ADD)
        return add(s, req);
    Qcow2Bitmap *bm = find(s, req->name);
    if (!bm) {
        blk_set_error("Dirty bitmap '%s' not found", req->name);
        return -ENOENT;
    }
    if (req->op == BLK_BITMAP_REMOVE)
        return remove_bitmap(s, bm);
    if (broken(bm))
        return inconsistent(bm);
    if (req->op == BLK_BITMAP_READ)
        return get_bits(s, bm, req);
    int r = 0;
    switch (req->op) {
    case BLK_BITMAP_CLEAR:
        r = new_chunks(s, bm);
        break;
    case BLK_BITMAP_WRITE:
        r = set_bits(s, bm, req->bits, req->nbytes);
        break;
    case BLK_BITMAP_ENABLE:
        bm->flags |= BM_FLAG_AUTO;
        s->bm_writes_seen = false;
        __atomic_store_n(&s->bs->bitmaps_marked, false, __ATOMIC_RELEASE);
        break;
    case BLK_BITMAP_DISABLE:
        bm->flags &= ~BM_FLAG_AUTO;
        break;
    default:
        r = -EINVAL;
    }
    if (r == 0)
        s->bm_dirty = true;
    return r;
}

int qcow2_bitmap_op(BlockDriverState *bs, BlockBitmapReq *req)
{
    Qcow2State *s = bs->opaque;
    pthread_mutex_lock(&s->lock);
    int r = bitmap_op_locked(s, req);
    pthread_mutex_unlock(&s->lock);
    return r;
}
