/* qcow2 driver: opening (with validation of every header field), the
 * header and its extensions, flush/close, info, resize and creation.
 * Guest I/O is in qcow2-cluster.c, refcounts in qcow2-refcount.c. */
#include "block/qcow2.h"
#include "block/tool-util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *blk_img_tool = "calf-img";

#define HEADER_V2_LEN 72
#define HEADER_V3_LEN 112

static int qcow2_probe(const uint8_t *buf, size_t len)
{
    if (len < 8 || qcow2_be32(buf) != QCOW2_MAGIC)
        return 0;
    uint32_t v = qcow2_be32(buf + 4);
    /* Any other version still is no raw image: open it here to refuse it
     * by name (a qcow v1 driver, when there is one, scores v1 higher). */
    return v >= 2 ? 100 : 50;
}

/* An error while opening: the message alone, as QEMU words it; the tools
 * put "Could not open 'FILE': " (or their own prefix) in front. */
static int bad(Qcow2State *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(Qcow2State *s, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    (void)s;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    blk_set_error("%s", msg);
    return err;
}

/* A runtime error: names the file, since the caller may not */
static int bad_io(Qcow2State *s, int err, const char *what)
{
    blk_set_error("%s: %s: %s", s->bs->filename, what, strerror(-err));
    return err;
}

int qcow2_sync(Qcow2State *s)
{
    bool hooks = s->rt_hook_hi > s->rt_hook_lo;
    s->need_sync = s->deps_unsynced = false;
    int e = 0;
    if (s->bs->flags & BLK_O_UNSAFE) {
        if (hooks && (e = qcow2_write_hookups(s)) < 0)
            s->need_sync = s->deps_unsynced = true; /* the entries are still owed */
        return e;
    }
    const char *failed = s->bs->filename; /* the file whose sync failed */
    if (hooks) {
        /* the new refcount blocks are on disk before the table entries
         * that point to them, and those before anything that relies on
         * the blocks (the sync below) */
        if ((e = blk_file_sync(s->fd)) == 0 && (e = qcow2_write_hookups(s)) < 0)
            failed = NULL; /* qcow2_write_hookups() said why */
    }
    /* data before the metadata that points to it */
    if (e == 0 && s->data_fd != s->fd && s->data_fd >= 0 && (e = blk_file_sync(s->data_fd)) < 0)
        failed = s->data_bs ? s->data_bs->filename : s->data_file_name;
    if (e == 0)
        e = blk_file_sync(s->fd);
    if (e < 0) {
        if (failed)
            blk_set_error("%s: flush failed: %s", failed, strerror(-e));
        /* still owed, whichever step failed: the next write that relies
         * on this sync is preceded by one that succeeds (after a failed
         * fdatasync none does: blk_file_sync fails every later sync of
         * that file, see util.c) */
        s->need_sync = s->deps_unsynced = true;
        return e;
    }
    return 0;
}

int qcow2_mark_corrupt(Qcow2State *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bool check = s->bs->flags & BLK_O_CHECK;
    if (!s->bs->read_only && !check && !s->corrupt_marked) {
        /* Stop writing: later writes could make the damage worse.  QEMU
         * says so on stderr whatever the caller reports (an errno, often),
         * and so does calf, in its words, once per open image. */
        fprintf(stderr, "qcow2: Marking image as corrupt: %s; further corruption events will "
                "be suppressed\n", msg);
        s->corrupt_marked = s->corrupt_signaled = true;
        s->incompat |= QCOW2_INCOMPAT_CORRUPT;
        qcow2_update_header(s);
        qcow2_sync(s);
        s->bs->read_only = true;
        blk_set_error("%s: image is corrupt and is now marked so (repair it with "
                      "'%s check -r all'): %s", s->bs->filename, blk_img_tool, msg);
    } else {
        if (!check && !s->corrupt_signaled)
            fprintf(stderr, "qcow2: Image is corrupt: %s; further non-fatal corruption events "
                    "will be suppressed\n", msg);
        s->corrupt_signaled = true;
        blk_set_error("%s: image is corrupt: %s", s->bs->filename, msg);
    }
    return -EIO;
}

/* ---- header ---- */

static const struct {
    uint8_t type, bit;
    const char *name;
} feature_table[] = {
    {0, 0, "dirty bit"},
    {0, 1, "corrupt bit"},
    {0, 2, "external data file"},
    {0, 3, "compression type"},
    {0, 4, "extended L2 entries"},
    {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},
    {2, 1, "raw external data"},
};

static size_t put_ext(uint8_t *buf, size_t pos, size_t cap, uint32_t type, const void *data,
                      uint32_t len)
{
    size_t need = 8 + qcow2_align_up(len, 8);
    if (pos + need > cap)
        return 0;
    qcow2_put32(buf + pos, type);
    qcow2_put32(buf + pos + 4, len);
    if (len)
        memcpy(buf + pos + 8, data, len);
    memset(buf + pos + 8 + len, 0, need - 8 - len);
    return pos + need;
}

/* Serializes the whole header cluster (fields, extensions, backing name)
 * into buf; returns its length or 0 if it does not fit. */
static size_t header_serialize(Qcow2State *s, uint8_t *buf, size_t cap)
{
    memset(buf, 0, cap);
    qcow2_put32(buf, QCOW2_MAGIC);
    qcow2_put32(buf + 4, s->version);
    qcow2_put32(buf + 20, s->cluster_bits);
    qcow2_put64(buf + 24, s->bs->size);
    qcow2_put32(buf + 32, s->crypt_method);
    qcow2_put32(buf + 36, s->l1_size);
    qcow2_put64(buf + 40, s->l1_offset);
    qcow2_put64(buf + 48, s->rt_offset);
    qcow2_put32(buf + 56, s->rt_clusters);
    qcow2_put32(buf + 60, s->sn_unread ? s->sn_hdr_nb : s->nb_snapshots);
    qcow2_put64(buf + 64, s->sn_unread ? s->sn_hdr_offset : s->snapshots_offset);
    size_t pos = HEADER_V2_LEN;
    if (s->version >= 3) {
        qcow2_put64(buf + 72, s->incompat);
        qcow2_put64(buf + 80, s->compat);
        qcow2_put64(buf + 88, s->autoclear);
        qcow2_put32(buf + 96, s->refcount_order);
        uint32_t hl = HEADER_V3_LEN + s->header_tail_len;
        qcow2_put32(buf + 100, hl);
        buf[104] = s->compression_type;
        if (s->header_tail_len)
            memcpy(buf + HEADER_V3_LEN, s->header_tail, s->header_tail_len);
        pos = hl;
    }
    BlockDriverState *bs = s->bs;
    if (bs->backing_format[0]) {
        pos = put_ext(buf, pos, cap, QCOW2_EXT_BACKING_FMT, bs->backing_format,
                      strlen(bs->backing_format));
        if (!pos)
            return 0;
    }
    /* QEMU's order: backing format, data file, encryption, feature table,
     * bitmaps, then the extensions it does not know, as they came */
    if (s->data_file_name) {
        pos = put_ext(buf, pos, cap, QCOW2_EXT_DATA_FILE, s->data_file_name,
                      strlen(s->data_file_name));
        if (!pos)
            return 0;
    }
    for (int i = 0; i < s->nexts; i++) {
        if (s->exts[i].type != QCOW2_EXT_CRYPTO)
            continue;
        pos = put_ext(buf, pos, cap, s->exts[i].type, s->exts[i].data, s->exts[i].len);
        if (!pos)
            return 0;
    }
    /* QEMU leaves the table out of small header clusters (4 KiB and
     * less); do the same so that images stay byte-identical. */
    if (s->version >= 3 && s->cluster_size > 4096) {
        uint8_t ft[sizeof(feature_table) / sizeof(feature_table[0]) * 48];
        memset(ft, 0, sizeof(ft));
        for (size_t i = 0; i < sizeof(feature_table) / sizeof(feature_table[0]); i++) {
            ft[i * 48] = feature_table[i].type;
            ft[i * 48 + 1] = feature_table[i].bit;
            strncpy((char *)ft + i * 48 + 2, feature_table[i].name, 46);
        }
        pos = put_ext(buf, pos, cap, QCOW2_EXT_FEATURE_TBL, ft, sizeof(ft));
        if (!pos)
            return 0;
    }
    uint8_t bm[24];
    if (qcow2_bitmap_ext_data(s, bm) &&
        !(pos = put_ext(buf, pos, cap, QCOW2_EXT_BITMAPS, bm, sizeof(bm))))
        return 0;
    for (int i = 0; i < s->nexts; i++) {
        uint32_t t = s->exts[i].type;
        if (t == QCOW2_EXT_DATA_FILE || t == QCOW2_EXT_CRYPTO || t == QCOW2_EXT_BITMAPS)
            continue;
        pos = put_ext(buf, pos, cap, t, s->exts[i].data, s->exts[i].len);
        if (!pos)
            return 0;
    }
    pos = put_ext(buf, pos, cap, QCOW2_EXT_END, NULL, 0);
    if (!pos)
        return 0;
    size_t blen = strlen(bs->backing_file);
    if (blen) {
        if (pos + blen > cap)
            return 0;
        memcpy(buf + pos, bs->backing_file, blen);
        qcow2_put64(buf + 8, pos);
        qcow2_put32(buf + 16, (uint32_t)blen);
        pos += blen;
    }
    return pos;
}

/* whole: the entire cluster, zeros after the header included (creation:
 * the file's allocation then matches QEMU's, which QEMU's preallocation
 * heuristic reads, and so map's output; see looks_preallocated) */
static int write_header(Qcow2State *s, bool whole)
{
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf)
        return -ENOMEM;
    size_t len = header_serialize(s, buf, s->cluster_size);
    int r;
    if (!len) {
        blk_set_error("%s: the header extensions and backing file name do not fit in "
                      "the first cluster", s->bs->filename);
        r = -ENOSPC;
    } else {
        r = blk_file_pwrite(s->fd, buf, whole ? s->cluster_size : len, 0);
        if (r < 0)
            bad_io(s, r, "cannot write the header");
        s->need_sync = true;
    }
    free(buf);
    return r;
}

int qcow2_update_header(Qcow2State *s)
{
    return write_header(s, false);
}

/* ---- opening ---- */

static char *dup_field(const uint8_t *p, size_t len)
{
    char *c = malloc(len + 1);
    if (c) {
        memcpy(c, p, len);
        c[len] = 0;
    }
    return c;
}

/* Walks the header extensions in hdr[start, end) as QEMU does: an
 * extension whose header or data passes end is an error.  With only_ft,
 * nothing is kept and *ft gets the feature name table (for the message
 * about unknown features). */
static int read_extensions(Qcow2State *s, const uint8_t *hdr, uint64_t start, uint64_t end,
                           bool only_ft, const uint8_t **ft, uint32_t *ft_len)
{
    BlockDriverState *bs = s->bs;
    uint64_t pos = start;
    while (pos < end) {
        if (end - pos < 8)
            return bad(s, -EINVAL, "Header extension too large");
        uint32_t type = qcow2_be32(hdr + pos), len = qcow2_be32(hdr + pos + 4);
        pos += 8;
        if (len > end - pos)
            return bad(s, -EINVAL, "Header extension too large");
        if (type == QCOW2_EXT_END)
            return 0;
        const uint8_t *d = hdr + pos;
        if (type == QCOW2_EXT_FEATURE_TBL) {
            /* rewritten from our own table: only read for messages */
            if (ft) {
                *ft = d;
                *ft_len = len;
            }
        } else if (only_ft) {
            /* nothing else is needed to refuse the image */
        } else if (type == QCOW2_EXT_CRYPTO && s->crypt_method != 2) {
            return bad(s, -EINVAL, "CRYPTO header extension only expected with LUKS encryption "
                       "method");
        } else if (type == QCOW2_EXT_CRYPTO && len != 16) {
            return bad(s, -EINVAL, "CRYPTO header extension size %u, but expected size 16", len);
        } else if (type == QCOW2_EXT_BACKING_FMT) {
            /* a later one replaces an earlier one, as in QEMU */
            if (len >= sizeof(bs->backing_format))
                return bad(s, -EINVAL, "ERROR: ext_backing_format: len=%u too large (>=%zu)",
                           len, sizeof(bs->backing_format));
            memcpy(bs->backing_format, d, len);
            bs->backing_format[len] = 0;
        } else if (type == QCOW2_EXT_DATA_FILE) {
            /* info shows it in a 1 KiB field, as for a backing file name */
            if (len > 1023)
                return bad(s, -EINVAL, "data file name is too long (%u bytes)", len);
            if (memchr(d, 0, len))
                return bad(s, -EINVAL, "data file name contains a NUL byte");
            free(s->data_file_name);
            if (!(s->data_file_name = dup_field(d, len)))
                return -ENOMEM;
        } else if (type == QCOW2_EXT_BITMAPS) {
            int r = qcow2_bitmap_ext_read(s, d, len);
            if (r < 0)
                return r;
        } else {
            Qcow2Ext *n = realloc(s->exts, (s->nexts + 1) * sizeof(*n));
            if (!n)
                return -ENOMEM;
            s->exts = n;
            n[s->nexts].type = type;
            n[s->nexts].len = len;
            n[s->nexts].data = malloc(len ? len : 1);
            if (!n[s->nexts].data)
                return -ENOMEM;
            memcpy(n[s->nexts].data, d, len);
            s->nexts++;
        }
        pos += qcow2_align_up(len, 8);
    }
    return 0;
}

static int check_table(Qcow2State *s, const char *what, uint64_t offset, uint64_t bytes)
{
    if (offset & (s->cluster_size - 1))
        return bad(s, -EINVAL, "%s offset 0x%" PRIx64 " is not aligned to a cluster", what,
                   offset);
    if (bytes && offset == 0)
        return bad(s, -EINVAL, "%s overlaps the header (offset 0)", what);
    if (offset > UINT64_MAX - bytes || offset + bytes > s->file_end)
        return bad(s, -EINVAL, "%s (0x%" PRIx64 ", %" PRIu64 " bytes) is beyond the end of "
                   "the file", what, offset, bytes);
    return 0;
}

static int read_table(Qcow2State *s, const char *what, uint64_t offset, uint64_t n,
                      uint64_t **out)
{
    *out = calloc(n ? n : 1, 8);
    if (!*out)
        return bad(s, -ENOMEM, "out of memory for the %s (%" PRIu64 " entries)", what, n);
    if (!n)
        return 0;
    int r = blk_file_pread(s->fd, *out, n * 8, offset);
    if (r < 0)
        return bad(s, r, "cannot read the %s: %s", what, strerror(-r));
    for (uint64_t i = 0; i < n; i++)
        (*out)[i] = qcow2_be64(&(*out)[i]);
    return 0;
}

static void free_snapshots(Qcow2State *s)
{
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        free(s->snapshots[i].id);
        free(s->snapshots[i].name);
        free(s->snapshots[i].extra);
    }
    free(s->snapshots);
    s->snapshots = NULL;
}

/* QEMU's qcow2_validate_table(): a size limit and an offset that is
 * cluster aligned and leaves the table below 2^63 */
static int validate_table(Qcow2State *s, const char *name, uint64_t offset, uint64_t entries,
                          uint64_t entry_len, uint64_t max_bytes)
{
    if (entries > max_bytes / entry_len)
        return bad(s, -EFBIG, "%s too large", name);
    if ((uint64_t)INT64_MAX - entries * entry_len < offset || (offset & (s->cluster_size - 1)))
        return bad(s, -EINVAL, "%s offset invalid", name);
    return 0;
}

#define SNAPSHOT_MAX_EXTRA 1024

/* Reads len bytes at off; what lies past the end of the file reads as zeros */
static int pread_zeros(Qcow2State *s, uint8_t *buf, size_t len, uint64_t off)
{
    memset(buf, 0, len);
    if (off >= s->file_end)
        return 0;
    if (len > s->file_end - off)
        len = s->file_end - off;
    return blk_file_pread(s->fd, buf, len, off);
}

int qcow2_read_snapshots(Qcow2State *s, bool repair, uint32_t *reduced, uint32_t *dropped)
{
    free_snapshots(s);
    s->snapshots_size = 0;
    if (!s->nb_snapshots)
        return 0;
    /* Unlike QEMU, which reads zeros there, calf refuses a table that
     * runs past the end of the file: a later write could grow the file
     * over it. */
    /* check's words are QEMU's check's */
    int r = validate_table(s, reduced ? "snapshot table" : "Snapshot table", s->snapshots_offset,
                           s->nb_snapshots, 40, 40 * QCOW2_MAX_SNAPSHOTS);
    if (r < 0) {
        s->sn_repairable = s->nb_snapshots > QCOW2_MAX_SNAPSHOTS;
        return r;
    }
    s->snapshots = calloc(s->nb_snapshots, sizeof(*s->snapshots));
    /* room for the largest variable part: extra data, id and name */
    uint8_t *buf = malloc(SNAPSHOT_MAX_EXTRA + 2 * 65535);
    if (!s->snapshots || !buf) {
        free(buf);
        return -ENOMEM;
    }
    uint64_t pos = s->snapshots_offset, end = pos;
    uint64_t table_len = 0; /* as it will be written: dropped extra data left out */
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (pos + 40 > s->file_end) {
            r = bad(s, -EINVAL, "snapshot table is beyond the end of the file");
            break;
        }
        uint8_t h[40];
        if ((r = blk_file_pread(s->fd, h, 40, pos)) < 0)
            break;
        Qcow2Snapshot *sn = &s->snapshots[i];
        sn->l1_offset = qcow2_be64(h);
        sn->l1_size = qcow2_be32(h + 8);
        uint16_t id_len = qcow2_be16(h + 12), name_len = qcow2_be16(h + 14);
        sn->date_sec = qcow2_be32(h + 16);
        sn->date_nsec = qcow2_be32(h + 20);
        sn->vm_clock_nsec = qcow2_be64(h + 24);
        sn->vm_state_size = qcow2_be32(h + 32);
        sn->extra_size = qcow2_be32(h + 36);
        sn->icount = UINT64_MAX;
        uint64_t disk_extra = sn->extra_size; /* what the entry spans on disk */
        if (sn->extra_size > SNAPSHOT_MAX_EXTRA) {
            if (!repair) {
                s->sn_repairable = true;
                r = bad(s, -EFBIG,
                        "Too much extra metadata in snapshot table entry %u\n"
                        "You can force-remove this extra metadata with %s check -r all",
                        i, blk_img_tool);
                break;
            }
            fprintf(stderr,
                    "Discarding too much extra metadata in snapshot table entry %u (%u > %u)\n",
                    i, sn->extra_size, SNAPSHOT_MAX_EXTRA);
            (*dropped)++;
            sn->extra_size = SNAPSHOT_MAX_EXTRA;
        }
        uint64_t vlen = (uint64_t)sn->extra_size + id_len + name_len;
        table_len = qcow2_align_up(table_len, 8) + 40 + vlen;
        uint64_t next = pos + 40 + disk_extra + id_len + name_len;
        if (table_len > QCOW2_MAX_SNAPSHOT_TABLE || next - s->snapshots_offset > INT32_MAX) {
            uint32_t over = s->nb_snapshots - i;
            if (!repair) {
                s->sn_repairable = true;
                r = bad(s, -EFBIG,
                        "Snapshot table is too big\n"
                        "You can force-remove all %u overhanging snapshots with %s check -r all",
                        over, blk_img_tool);
                break;
            }
            /* the entries left out leak their clusters: the check that
             * follows frees them */
            fprintf(stderr, "Discarding %u overhanging snapshots (snapshot table is too big)\n",
                    over);
            *reduced += over;
            s->nb_snapshots = i;
            break;
        }
        /* Dropped extra data may run past the end of the file, and so
         * what follows it: that reads as zeros, as in QEMU, since the
         * table is rewritten whole after the repair. */
        if (next > s->file_end && !(repair && *dropped)) {
            r = bad(s, -EINVAL, "snapshot %u is beyond the end of the file", i);
            break;
        }
        if ((r = pread_zeros(s, buf, sn->extra_size, pos + 40)) < 0 ||
            (r = pread_zeros(s, buf + sn->extra_size, (size_t)id_len + name_len,
                             pos + 40 + disk_extra)) < 0)
            break;
        sn->extra = malloc(sn->extra_size ? sn->extra_size : 1);
        sn->id = dup_field(buf + sn->extra_size, id_len);
        sn->name = dup_field(buf + sn->extra_size + id_len, name_len);
        if (!sn->extra || !sn->id || !sn->name) {
            r = -ENOMEM;
            break;
        }
        memcpy(sn->extra, buf, sn->extra_size);
        if (sn->extra_size >= 8)
            sn->vm_state_size = qcow2_be64(buf);
        if (sn->extra_size >= 16)
            sn->disk_size = qcow2_be64(buf + 8);
        else
            sn->disk_size = s->bs->size;
        if (sn->extra_size >= 24)
            sn->icount = qcow2_be64(buf + 16);
        /* QEMU finds a bad L1 table when a snapshot is used; calf refuses
         * the image, with the words QEMU uses then */
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
            r = bad(s, -EFBIG, "Snapshot L1 table too large");
            break;
        }
        if (sn->l1_offset & (s->cluster_size - 1)) {
            r = bad(s, -EINVAL, "Snapshot L1 table offset invalid");
            break;
        }
        if ((r = check_table(s, "snapshot L1 table", sn->l1_offset, (uint64_t)sn->l1_size * 8)) < 0)
            break;
        end = next;
        pos = qcow2_align_up(next, 8);
    }
    free(buf);
    if (r < 0) {
        free_snapshots(s);
        return r;
    }
    s->snapshots_size = end - s->snapshots_offset;
    return 0;
}

/* Check mode opens an image whose snapshot table check -r all can
 * repair (too many entries, too big, too much extra data in an entry),
 * as QEMU does, so that check can report it or, with -r all, repair it.
 * Other damage still fails the open, naming the file.
 * Until then the image has no snapshots in memory; the header keeps
 * the table. */
static int open_snapshots(Qcow2State *s)
{
    s->sn_repairable = false;
    int r = qcow2_read_snapshots(s, false, NULL, NULL);
    if (r >= 0 || !(s->bs->flags & BLK_O_CHECK) || !s->sn_repairable)
        return r;
    s->sn_unread = true;
    s->sn_hdr_nb = s->nb_snapshots;
    s->sn_hdr_offset = s->snapshots_offset;
    s->nb_snapshots = 0;
    s->snapshots_offset = 0;
    return 0;
}

static int parse_header(Qcow2State *s, const uint8_t *h, uint64_t hdr_bytes)
{
    BlockDriverState *bs = s->bs;
    if (qcow2_be32(h) != QCOW2_MAGIC)
        return bad(s, -EINVAL, "Image is not in qcow2 format");
    s->version = qcow2_be32(h + 4);
    if (s->version < 2 || s->version > 3)
        return bad(s, -ENOTSUP, "Unsupported qcow2 version %u", s->version);
    s->cluster_bits = qcow2_be32(h + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return bad(s, -EINVAL, "Unsupported cluster size: 2^%u", s->cluster_bits);
    s->cluster_size = 1ULL << s->cluster_bits;
    bs->size = qcow2_be64(h + 24);
    s->crypt_method = qcow2_be32(h + 32);
    s->l1_size = qcow2_be32(h + 36);
    s->l1_offset = qcow2_be64(h + 40);
    s->rt_offset = qcow2_be64(h + 48);
    s->rt_clusters = qcow2_be32(h + 56);
    s->nb_snapshots = qcow2_be32(h + 60);
    s->snapshots_offset = qcow2_be64(h + 64);
    s->refcount_order = 4;
    s->header_length = HEADER_V2_LEN;
    if (s->version >= 3) {
        s->incompat = qcow2_be64(h + 72);
        s->compat = qcow2_be64(h + 80);
        s->autoclear = qcow2_be64(h + 88);
        s->refcount_order = qcow2_be32(h + 96);
        s->header_length = qcow2_be32(h + 100);
        if (s->header_length < 104)
            return bad(s, -EINVAL, "qcow2 header too short");
    }
    if (s->header_length > s->cluster_size)
        return bad(s, -EINVAL, "qcow2 header exceeds cluster size");
    /* QEMU takes any length; extensions at an odd offset are calf's limit */
    if (s->header_length % 8)
        return bad(s, -EINVAL, "qcow2 header length %u is not a multiple of 8",
                   s->header_length);
    if (s->version >= 3) {
        if (s->header_length > 104)
            s->compression_type = h[104];
        if (s->header_length > HEADER_V3_LEN && s->header_length <= hdr_bytes) {
            /* header_length <= cluster size, checked above */
            s->header_tail_len = s->header_length - HEADER_V3_LEN;
            free(s->header_tail);
            if (!(s->header_tail = malloc(s->header_tail_len)))
                return bad(s, -ENOMEM, "Could not read unknown qcow2 header fields");
            memcpy(s->header_tail, h + HEADER_V3_LEN, s->header_tail_len);
        }
    }
    if (qcow2_be64(h + 8) > s->cluster_size)
        return bad(s, -EINVAL, "Invalid backing file offset");
    return 0;
}

/* "Unsupported qcow2 feature(s): ..." as QEMU builds it: the names the
 * image's feature table gives, in the table's order, then the bits left. */
static int unsupported_features(Qcow2State *s, const uint8_t *ft, uint32_t ft_len,
                                uint64_t mask)
{
    char names[1024] = "";
    size_t l = 0;
    /* an entry is 48 bytes (type, bit, 46 of name); one cut short reads
     * as zeros past the end, and an empty name ends the table */
    for (uint32_t i = 0; ft && i < ft_len; i += 48) {
        uint8_t e[48] = {0};
        memcpy(e, ft + i, ft_len - i < 48 ? ft_len - i : 48);
        if (!e[2])
            break;
        if (e[0] != 0 || e[1] >= 64 || !(mask & (UINT64_C(1) << e[1])))
            continue;
        mask &= ~(UINT64_C(1) << e[1]);
        l += snprintf(names + l, sizeof(names) - l, "%s%.46s", l ? ", " : "", (char *)e + 2);
        if (l >= sizeof(names))
            l = sizeof(names) - 1;
    }
    if (mask)
        snprintf(names + l, sizeof(names) - l, "%sUnknown incompatible feature: %" PRIx64,
                 l ? ", " : "", mask);
    return bad(s, -ENOTSUP, "Unsupported qcow2 feature(s): %s", names);
}

/* Feature bits and what depends on them, before any table is read */
static int check_features(Qcow2State *s, const uint8_t *hdr, uint64_t ext_end)
{
    if (s->compression_type > 1)
        return bad(s, -ENOTSUP, "qcow2: unknown compression type: %u", s->compression_type);
    bool has_ctype = s->incompat & QCOW2_INCOMPAT_COMPRESSION;
    if (has_ctype && s->compression_type == 0)
        return bad(s, -EINVAL, "qcow2: Compression type incompatible feature bit must not "
                   "be set");
    if (!has_ctype && s->compression_type != 0)
        return bad(s, -EINVAL, "qcow2: Compression type incompatible feature bit must be set");
    uint64_t unknown = s->incompat & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
        /* errors in the extensions do not matter here: the image is
         * refused anyway, with the names found before them */
        const uint8_t *ft = NULL;
        uint32_t ft_len = 0;
        read_extensions(s, hdr, s->header_length, ext_end, true, &ft, &ft_len);
        return unsupported_features(s, ft, ft_len, unknown);
    }
    if (qcow2_has_data_file(s) && s->version < 3)
        return bad(s, -EINVAL, "version 2 images cannot have an external data file");
    if ((s->incompat & QCOW2_INCOMPAT_CORRUPT) && !s->bs->read_only &&
        !(s->bs->flags & BLK_O_CHECK))
        return bad(s, -EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
    s->extl2 = s->incompat & QCOW2_INCOMPAT_EXTL2;
    if (s->extl2 && s->cluster_bits < 14)
        return bad(s, -EINVAL, "Unsupported subcluster size: %" PRIu64, s->cluster_size / 32);
    if (s->refcount_order > 6)
        return bad(s, -EINVAL, "Reference count entry width too large; may not exceed 64 bits");
    return 0;
}

static void derive(Qcow2State *s)
{
    s->l2_entry_bytes = s->extl2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->extl2 ? 4 : 3);
    s->l2_size = 1ULL << s->l2_bits;
    s->subcluster_size = s->extl2 ? s->cluster_size / 32 : s->cluster_size;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ULL << (s->cluster_bits - 8)) - 1;
    s->cluster_offset_mask = (1ULL << s->csize_shift) - 1;
    s->refcount_bits = 1u << s->refcount_order;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ULL << s->refcount_bits) - 1;
}

static int qcow2_rebuild_if_dirty(Qcow2State *s);

/* The table offsets and sizes of the header, in QEMU's order and words;
 * then calf's own limit, the end of the file (QEMU would read zeros). */
static int check_tables(Qcow2State *s)
{
    BlockDriverState *bs = s->bs;
    int r;
    if (s->rt_clusters == 0)
        return bad(s, -EINVAL, "Image does not contain a reference count table");
    if ((r = validate_table(s, "Reference count table", s->rt_offset, s->rt_clusters,
                            s->cluster_size, QCOW2_MAX_REFTABLE_BYTES)) < 0)
        return r;
    if (!(bs->flags & BLK_O_CHECK) &&
        (r = validate_table(s, "Snapshot table", s->snapshots_offset, s->nb_snapshots, 40,
                            40 * QCOW2_MAX_SNAPSHOTS)) < 0)
        return r;
    if ((r = validate_table(s, "Active L1 table", s->l1_offset, s->l1_size, 8,
                            QCOW2_MAX_L1_BYTES)) < 0)
        return r;
    uint64_t per_l1 = s->cluster_size * s->l2_size; /* bytes one L1 entry maps */
    uint64_t need = bs->size / per_l1 + (bs->size % per_l1 != 0);
    if (need > INT32_MAX || bs->size > INT64_MAX)
        return bad(s, -EFBIG, "Image is too big");
    if (s->l1_size < need)
        return bad(s, -EINVAL, "L1 table is too small");
    if ((r = check_table(s, "L1 table", s->l1_offset, (uint64_t)s->l1_size * 8)) < 0)
        return r;
    return check_table(s, "refcount table", s->rt_offset,
                       (uint64_t)s->rt_clusters << s->cluster_bits);
}

/* The cache options, validated as QEMU does; calf's caches hold whole
 * clusters, so an L2 cache entry size only has to be valid. */
static int cache_options(Qcow2State *s, BlockOptions *opts, int *l2_n, int *rb_n)
{
    uint64_t cs = s->cluster_size;
    uint64_t l2_max = qcow2_align_up((s->bs->size + cs - 1) / cs * s->l2_entry_bytes, cs);
    bool all_set = blkopts_get(opts, "cache-size"), l2_set = blkopts_get(opts, "l2-cache-size");
    bool rb_set = blkopts_get(opts, "refcount-cache-size");
    uint64_t all, l2, rb, entry, interval;
    int r;
    if ((r = blkopts_get_size(opts, "cache-size", 0, &all)) < 0 ||
        (r = blkopts_get_size(opts, "l2-cache-size", 32u << 20, &l2)) < 0 ||
        (r = blkopts_get_size(opts, "refcount-cache-size", 0, &rb)) < 0 ||
        (r = blkopts_get_size(opts, "l2-cache-entry-size", cs, &entry)) < 0 ||
        (r = blkopts_get_uint(opts, "cache-clean-interval", 600, &interval)) < 0)
        return r;
    uint64_t l2_size = l2 < l2_max ? l2 : l2_max;
    if (all_set) {
        if (l2_set && rb_set)
            return bad(s, -EINVAL, "cache-size, l2-cache-size and refcount-cache-size may not "
                       "be set at the same time");
        if (l2_set && l2 > all)
            return bad(s, -EINVAL, "l2-cache-size may not exceed cache-size");
        if (rb > all)
            return bad(s, -EINVAL, "refcount-cache-size may not exceed cache-size");
        if (l2_set) {
            rb = all - l2_size;
        } else if (rb_set) {
            l2_size = all - rb;
        } else if (all >= l2_max + 4 * cs) {
            l2_size = l2_max;
            rb = all - l2_size;
        } else {
            rb = all < 4 * cs ? all : 4 * cs;
            l2_size = all - rb;
        }
    }
    if (entry < 512 || entry > cs || (entry & (entry - 1)))
        return bad(s, -EINVAL, "L2 cache entry size must be a power of two between 512 and "
                   "the cluster size (%" PRIu64 ")", cs);
    if (interval > UINT32_MAX)
        return bad(s, -EINVAL, "Cache clean interval too big");
    /* whole clusters, at least two of each, at most 64 Ki */
    uint64_t ln = l2_size / cs, rn = rb / cs;
    *l2_n = (int)(ln < 2 ? 2 : ln > 65536 ? 65536 : ln);
    *rb_n = (int)(rn < 4 ? 4 : rn > 65536 ? 65536 : rn);
    return 0;
}

/* Everything a valid image's tables need, past the header cluster */
static int open_tables(Qcow2State *s, BlockOptions *opts)
{
    int r, l2n = 2, rbn = 4;
    s->rt_size = ((uint64_t)s->rt_clusters << s->cluster_bits) / 8;
    if ((r = read_table(s, "L1 table", s->l1_offset, s->l1_size, &s->l1)) < 0 ||
        (r = cache_options(s, opts, &l2n, &rbn)) < 0)
        return r;
    if (s->crypt_method > 2)
        return bad(s, -EINVAL, "Unsupported encryption method %u", s->crypt_method);
    if (qcow2_cache_init(&s->l2_cache, l2n, s->cluster_size) < 0 ||
        qcow2_cache_init(&s->rb_cache, rbn, s->cluster_size) < 0)
        return bad(s, -ENOMEM, "Could not allocate metadata caches");
    if ((r = read_table(s, "refcount table", s->rt_offset, s->rt_size, &s->rt)) < 0)
        return r;
    return qcow2_refcount_init(s);
}

static int read_backing_name(Qcow2State *s, const uint8_t *hdr, uint64_t hdr_bytes)
{
    BlockDriverState *bs = s->bs;
    uint64_t off = qcow2_be64(hdr + 8);
    uint32_t len = qcow2_be32(hdr + 16);
    s->backing_offset = off;
    if (!off)
        return 0;
    /* off <= the cluster size: parse_header checked it */
    if (len > 1023 || len > hdr_bytes - off || len >= sizeof(bs->backing_file))
        return bad(s, -EINVAL, "Backing file name too long");
    memcpy(bs->backing_file, hdr + off, len);
    bs->backing_file[len] = 0;
    if (strlen(bs->backing_file) != len)
        return bad(s, -EINVAL, "backing file name contains a NUL byte");
    return 0;
}

static int open_data_file_opts(Qcow2State *s, BlockOptions *sub);

static int open_data_file(Qcow2State *s, BlockOptions *opts)
{
    /* The node as --image-opts gives it: data-file.X options become X
     * of the data file's own open (data-file.filename, or
     * data-file.driver=raw with data-file.file.filename).  A plain
     * data-file=NAME names a node in QEMU, and calf has none. */
    const char *node = blkopts_get(opts, "data-file");
    if (node) {
        blk_set_error("Cannot find device='%s' nor node-name='%s'", node, node);
        return -EINVAL;
    }
    BlockOptions sub = {0};
    for (int i = 0; opts && i < opts->n; i++) {
        if (!strncmp(opts->opt[i].key, "data-file.", 10)) {
            opts->opt[i].used = true;
            if (blkopts_set(&sub, opts->opt[i].key + 10, opts->opt[i].value) < 0) {
                blkopts_free(&sub);
                return -ENOMEM;
            }
        }
    }
    int r = open_data_file_opts(s, &sub);
    blkopts_free(&sub);
    return r;
}

/* Opens the external data file: the data-file options name it, else the
 * name in the header.  A relative name is relative to the current
 * directory, not to the image (unlike a backing file name): QEMU opens
 * it so.  It is a raw image, opened (and locked) as the image is. */
static int open_data_file_opts(Qcow2State *s, BlockOptions *sub)
{
    BlockDriverState *bs = s->bs;
    const char *drv = blkopts_get(sub, "driver");
    const char *opt = blkopts_get(sub, "filename");
    bool tree = false; /* raw over a filter or a node: the options say what */
    const char *data_fmt = "raw";
    if (drv && !strcmp(drv, "file"))
        drv = NULL; /* a host file: opened as raw */
    else if (drv && !strcmp(drv, "raw") && !opt) {
        /* raw over a host file, over a filter (blkdebug) or over another
         * node: blk_open takes the tree */
        const char *fdrv = blkopts_get(sub, "file.driver");
        if (!fdrv || !strcmp(fdrv, "file")) {
            opt = blkopts_get(sub, "file.filename");
            drv = NULL;
        } else if (blk_find_filter(fdrv) || blk_find_driver(fdrv)) {
            for (int i = 0; i < sub->n; i++)
                if (!strcmp(sub->opt[i].key, "file.driver"))
                    sub->opt[i].used = false;
            tree = true;
            drv = NULL;
        } else {
            drv = fdrv;
        }
    } else if (drv && strcmp(drv, "raw") && blk_find_driver(drv)) {
        /* any other node (null-co...): opened as the options say */
        for (int i = 0; i < sub->n; i++)
            if (!strcmp(sub->opt[i].key, "driver") || !strcmp(sub->opt[i].key, "filename"))
                sub->opt[i].used = false;
        data_fmt = NULL;
        tree = true;
        drv = NULL;
    }
    if (drv) {
        blk_set_error("Unknown driver '%s' for the data file", drv);
        return -EINVAL;
    }
    bool raw = s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    if (!qcow2_has_data_file(s)) {
        if (opt || tree) {
            blk_set_error("'data-file' can only be set for images with an external data file");
            return -EINVAL;
        }
        if (raw) {
            blk_set_error("data-file-raw requires a data file");
            return -EINVAL;
        }
        return 0;
    }
    if (!opt && !tree && !s->data_file_name && (bs->flags & BLK_O_NO_IO)) {
        s->data_fd = -1; /* info: as below */
        return 0;
    }
    if (!opt && !tree && !s->data_file_name) {
        blk_set_error("'data-file' is required for this image");
        return -EINVAL;
    }
    const char *path = opt ? opt : tree ? NULL : s->data_file_name;
    int flags = bs->flags & (BLK_O_RDWR | BLK_O_SHARE | BLK_O_NOCACHE | BLK_O_UNSAFE | BLK_O_FILL);
    if (bs->read_only)
        flags &= ~BLK_O_RDWR;
    /* what named the file (filename, driver) is not an option of its open */
    BlockOptions rest = {0};
    for (int i = 0; i < sub->n; i++)
        if (!sub->opt[i].used && blkopts_set(&rest, sub->opt[i].key, sub->opt[i].value) < 0) {
            blkopts_free(&rest);
            return -ENOMEM;
        }
    /* The name stored in the image is a host file's, whatever it looks
     * like ("json:{...}" included), as QEMU opens it. */
    if (!opt && !tree &&
        (blkopts_set(&rest, "file.driver", "file") < 0 ||
         blkopts_set(&rest, "file.filename", path) < 0)) {
        blkopts_free(&rest);
        return -ENOMEM;
    }
    s->data_bs = blk_open(opt ? path : NULL, data_fmt, flags, rest.n ? &rest : NULL);
    blkopts_free(&rest);
    if (!s->data_bs && (bs->flags & BLK_O_NO_IO)) {
        /* info reads no data: it shows the image without its data file,
         * as qemu-img does; any data I/O fails (EBADF) */
        s->data_fd = -1;
        return 0;
    }
    if (!s->data_bs)
        return -EINVAL; /* blk_open said why */
    /* the name comes from the image: never a FIFO or a device that
     * would block a read forever */
    int dfd = s->data_bs->fd;
    if (dfd < 0) {
        /* a node with no file of its own: the data goes to its requests */
        if ((dfd = blk_vfd_new(s->data_bs)) < 0) {
            blk_close(s->data_bs);
            s->data_bs = NULL;
            return dfd;
        }
        s->data_vfd = dfd;
    }
    struct stat st;
    if (blk_file_stat(dfd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
        blk_set_error("Could not open '%s': data file is not a regular file or block device",
                      path ? path : s->data_bs->filename);
        if (blk_file_is_node(s->data_vfd))
            blk_vfd_release(s->data_vfd);
        s->data_vfd = 0;
        blk_close(s->data_bs);
        s->data_bs = NULL;
        return -EINVAL;
    }
    s->data_fd = dfd;
    bs->data_file = s->data_bs;
    return 0;
}

static void qcow2_free_state(Qcow2State *s)
{
    if (s->data_bs) {
        s->bs->data_file = NULL;
        if (blk_file_is_node(s->data_vfd))
            blk_vfd_release(s->data_vfd);
        blk_close(s->data_bs);
    }
    free(s->data_file_name);
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->rb_cache);
    free(s->l1);
    free(s->rt);
    for (int i = 0; i < s->nexts; i++)
        free(s->exts[i].data);
    free(s->exts);
    free_snapshots(s);
    qcow2_bitmaps_free(s);
    free(s->pending_free);
    free(s->zero_cluster);
    free(s->header_tail);
    free(s->inflight);
    qcow2_crypto_close(s);
    pthread_cond_destroy(&s->alloc_cond);
    pthread_cond_destroy(&s->io_cond);
    pthread_mutex_destroy(&s->io_mu);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int qcow2_open(BlockDriverState *bs, BlockOptions *opts)
{
    Qcow2State *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->alloc_cond, NULL);
    pthread_mutex_init(&s->io_mu, NULL);
    pthread_cond_init(&s->io_cond, NULL);
    s->crypt_rmw = (BlkRangeLock)BLK_RANGE_LOCK_INIT;
    s->bs = bs;
    s->fd = s->data_fd = bs->fd;
    bs->opaque = s;
    int64_t fsize = blk_file_size(bs->fd);
    uint8_t *hdr = NULL;
    int r;
    if (fsize < 0) {
        r = bad(s, (int)fsize, "Could not read qcow2 header: %s", strerror((int)-fsize));
        goto fail;
    }
    s->file_end = fsize;
    /* as in QEMU, a file shorter than the header reads as zeros past its end */
    uint8_t first[HEADER_V3_LEN];
    if ((r = blk_file_pread(bs->fd, first, sizeof(first), 0)) < 0) {
        bad(s, r, "Could not read qcow2 header: %s", strerror(-r));
        goto fail;
    }
    if ((r = parse_header(s, first, sizeof(first))) < 0)
        goto fail;
    hdr = malloc(s->cluster_size);
    if (!hdr || (r = blk_file_pread(bs->fd, hdr, s->cluster_size, 0)) < 0) {
        r = hdr ? r : -ENOMEM;
        bad(s, r, "Could not read qcow2 header: %s", strerror(-r));
        goto fail;
    }
    if ((r = parse_header(s, hdr, s->cluster_size)) < 0)
        goto fail;
    uint64_t ext_end = qcow2_be64(hdr + 8);
    if (!ext_end)
        ext_end = s->cluster_size;
    if ((r = check_features(s, hdr, ext_end)) < 0)
        goto fail;
    derive(s);
    if ((r = check_tables(s)) < 0 || (r = open_tables(s, opts)) < 0 ||
        (r = read_extensions(s, hdr, s->header_length, ext_end, false, NULL, NULL)) < 0 ||
        (r = open_data_file(s, opts)) < 0 || (r = qcow2_crypto_open(s, opts)) < 0 ||
        (r = read_backing_name(s, hdr, s->cluster_size)) < 0 || (r = open_snapshots(s)) < 0)
        goto fail;
    /* QEMU's runtime option: lazy refcounts on or off for this open only */
    bool lazy;
    if ((r = blkopts_get_bool(opts, "lazy-refcounts", s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS,
                              &lazy)) < 0)
        goto fail;
    if (lazy && s->version < 3) {
        blk_set_error("Lazy refcounts require a qcow2 image with at least qemu 1.1 "
                      "compatibility level");
        r = -EINVAL;
        goto fail;
    }
    if ((r = qcow2_bitmaps_open(s)) < 0)
        goto fail;
    if (!bs->read_only) {
        if ((r = qcow2_rebuild_if_dirty(s)) < 0)
            goto fail;
        s->lazy = lazy;
        /* Autoclear bits name features whose data we do not maintain;
         * the bitmaps' we do (qcow2-bitmap.c), and a raw data file we
         * keep raw (every write lands at its guest offset). */
        uint64_t keep = (s->nb_bitmaps ? QCOW2_AUTOCLEAR_BITMAPS : 0) |
                        (s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
        if (s->autoclear != keep || s->bm_ext_dropped) {
            s->autoclear = keep;
            s->bm_ext_dropped = false;
            if ((r = qcow2_update_header(s)) < 0 || (r = qcow2_sync(s)) < 0)
                goto fail;
        }
    }
    free(hdr);
    return 0;
fail:
    free(hdr);
    qcow2_free_state(s);
    bs->opaque = NULL;
    return r;
}

static int qcow2_rebuild_if_dirty(Qcow2State *s)
{
    if (!(s->incompat & QCOW2_INCOMPAT_DIRTY) || (s->bs->flags & BLK_O_CHECK))
        return 0;
    if (s->bs->flags & BLK_O_NO_REPAIR)
        return bad(s, -EACCES, "image is dirty; it can only be opened read-only");
    int r = qcow2_repair_refcounts(s);
    if (r < 0)
        return r;
    s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
    if ((r = qcow2_update_header(s)) < 0)
        return r;
    return qcow2_sync(s);
}

static int qcow2_flush(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    pthread_mutex_lock(&s->lock);
    if (s->broken) {
        /* nothing of this state may reach the file (QEMU's ejected
         * driver flushes nothing either) */
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    blkdebug_event(bs, BLKDBG_FLUSH_TO_OS);
    /* bitmaps that record guest writes are stored at close, as QEMU does */
    int r = s->bm_writes_seen ? 0 : qcow2_bitmaps_store(s);
    if (r == 0 && s->lazy && s->dirty_set) {
        /* lazy refcounts, as in QEMU: the image is marked dirty and its
         * refcounts rebuilt after a crash, so a flush writes the data and
         * the mapping, not the refcounts (close does) */
        r = s->deps_unsynced ? qcow2_sync(s) : 0;
        if (r == 0)
            r = qcow2_cache_flush(s, &s->l2_cache);
    } else if (r == 0) {
        r = qcow2_flush_metadata(s);
    }
    if (r == 0) {
        blkdebug_event(bs, BLKDBG_FLUSH_TO_DISK);
        r = qcow2_sync(s);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void qcow2_start_writeback(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    blk_file_start_writeback(s->fd);
    if (s->data_fd >= 0 && s->data_fd != s->fd)
        blk_file_start_writeback(s->data_fd);
}

static void qcow2_close(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    if (!s)
        return;
    if (!bs->read_only && !s->broken) {
        int r = qcow2_bitmaps_store(s);
        if (r < 0)
            fprintf(stderr, "%s: Lost persistent bitmaps during inactivation of node '%s': "
                    "%s\n", blk_img_tool, bs->filename, blk_error());
        /* QEMU writes back its L2 table cache, then its refcount block
         * cache, each ending with a flush, and names the one that failed;
         * calf's pass covers both: a second try tells whether the error
         * lasts (a one-off failure reads as the L2 tables' alone). */
        r = qcow2_flush_metadata(s);
        if (r == 0)
            r = qcow2_sync(s);
        if (r < 0) {
            fprintf(stderr, "%s: Failed to flush the L2 table cache: %s\n", tool_progname,
                    strerror(-r));
            r = qcow2_flush_metadata(s);
            if (r == 0)
                r = qcow2_sync(s);
            if (r < 0)
                fprintf(stderr, "%s: Failed to flush the refcount block cache: %s\n",
                        tool_progname, strerror(-r));
        }
        if (r == 0 && s->dirty_set) {
            s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
            if (qcow2_update_header(s) == 0)
                qcow2_sync(s);
        }
    }
    qcow2_free_state(s);
    bs->opaque = NULL;
}

static int qcow2_get_info(BlockDriverState *bs, BlockInfo *info)
{
    Qcow2State *s = bs->opaque;
    info->cluster_size = s->cluster_size;
    info->encrypted = s->crypt_method != 0;
    qcow2_crypto_info(s, info);
    info->dirty = (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
    info->is_qcow2 = true;
    info->qcow2_version = s->version;
    info->compression_type = s->compression_type == 1 ? "zstd" : "zlib";
    info->lazy_refcounts = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    info->refcount_bits = s->refcount_bits;
    info->corrupt = (s->incompat & QCOW2_INCOMPAT_CORRUPT) != 0;
    info->extended_l2 = s->extl2;
    if (s->data_file_name)
        snprintf(info->data_file, sizeof(info->data_file), "%s", s->data_file_name);
    info->has_data_file = qcow2_has_data_file(s);
    info->data_file_raw = s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    info->nb_snapshots = s->nb_snapshots;
    int r = qcow2_bitmap_info(s, info);
    if (r < 0)
        return r;
    if (s->nb_snapshots) {
        info->snapshots = calloc(s->nb_snapshots, sizeof(*info->snapshots));
        if (!info->snapshots)
            return -ENOMEM;
        for (uint32_t i = 0; i < s->nb_snapshots; i++) {
            BlockSnapshotInfo *o = &info->snapshots[i];
            const Qcow2Snapshot *sn = &s->snapshots[i];
            snprintf(o->id, sizeof(o->id), "%s", sn->id);
            snprintf(o->name, sizeof(o->name), "%s", sn->name);
            o->vm_state_size = sn->vm_state_size;
            o->date_sec = sn->date_sec;
            o->date_nsec = sn->date_nsec;
            o->vm_clock_nsec = sn->vm_clock_nsec;
            o->icount = sn->icount;
        }
    }
    return 0;
}

static int qcow2_truncate(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink)
{
    Qcow2State *s = bs->opaque;
    bool no_sync = prealloc & BLK_PREALLOC_NO_SYNC;
    prealloc &= ~BLK_PREALLOC_NO_SYNC;
    if (size < bs->size && !shrink) {
        blk_set_error("Use the --shrink option to perform a shrink operation.");
        return -EINVAL;
    }
    if (size % BLK_SECTOR_SIZE) {
        blk_set_error("The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (s->nb_snapshots && s->version < 3) {
        /* v2 snapshot entries do not record their disk size */
        blk_set_error("Can't resize a v2 image which has snapshots");
        return -ENOTSUP;
    }
    uint64_t old_size = bs->size;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_bitmaps_resize_begin(s);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    if (size < bs->size) {
        if (prealloc != BLK_PREALLOC_OFF) {
            blk_set_error("Preallocation can't be used for shrinking an image");
            return -ENOTSUP;
        }
        if ((r = qcow2_shrink(bs, size)) < 0)
            return r;
        /* as QEMU: the data file follows the image's size */
        if (qcow2_has_data_file(s) && (r = blk_file_truncate(s->data_fd, size)) < 0) {
            blk_set_error("%s: cannot resize the data file: %s", s->data_bs->filename,
                          strerror(-r));
            return r;
        }
        pthread_mutex_lock(&s->lock);
        r = qcow2_bitmaps_resize_end(s, old_size);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    /* A raw data file stays the guest's view: the new area is mapped
     * 1:1 too, as at creation. */
    if ((s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && prealloc == BLK_PREALLOC_OFF)
        prealloc = BLK_PREALLOC_METADATA;
    /* the new area must not show a longer backing file (QEMU's block
     * layer asks for zeros then), preallocated or not */
    bool zero_new = bs->backing && bs->backing->size > bs->size;
    if (zero_new && s->version < 3) {
        /* no zero flag: QEMU refuses rather than write the zeros out */
        blk_set_error("Failed to zero out new clusters: Operation not supported");
        return -ENOTSUP;
    }
    pthread_mutex_lock(&s->lock);
    uint64_t per_l1 = s->cluster_size * s->l2_size;
    uint64_t old = bs->size;
    r = qcow2_grow_l1(s, (size + per_l1 - 1) / per_l1);
    if (r == 0) {
        bs->size = size;
        r = qcow2_update_header(s);
        /* a moved L1 table was synced before the header named it; the
         * size alone may wait for the next flush where the caller asks */
        if (r == 0 && no_sync)
            s->need_sync = true;
        else if (r == 0)
            r = qcow2_sync(s);
        if (r < 0)
            bs->size = old;
    }
    if (r == 0 && (prealloc != BLK_PREALLOC_OFF || qcow2_has_data_file(s)))
        r = qcow2_preallocate(s, old, size, prealloc);
    if (r == 0)
        r = qcow2_bitmaps_resize_end(s, old_size);
    pthread_mutex_unlock(&s->lock);
    /* As QEMU does: the new area reads as zeros, not as whatever a longer
     * backing file holds there. */
    if (r == 0 && zero_new) {
        /* preallocated clusters get their zero flags (and explicit
         * zeros up to the first subcluster boundary) over all of it */
        uint64_t zend = bs->backing->size < size && prealloc == BLK_PREALLOC_OFF
                            ? bs->backing->size
                            : size;
        r = qcow2_pwrite_zeroes(bs, old, zend - old, 0);
    }
    return r;
}

/* ---- creation ---- */

struct create_opts {
    int version;
    uint32_t cluster_bits;
    uint32_t refcount_order;
    bool lazy, extl2;
    uint8_t ctype;
    int prealloc;
    const char *backing, *backing_fmt;
    const char *data_file;
    bool data_raw;
    struct qcow2_crypto_create crypt;
};

/* The create options, checked as QEMU does: first the values its QAPI
 * visitor parses (enums by their QAPI names), then qcow2_co_create()'s
 * checks in its order, with its words (QEMU's "version" is compat). */
static int parse_create_opts(BlockOptions *o, struct create_opts *c)
{
    int r;
    const char *v = blkopts_get(o, "compat");
    c->version = 3;
    if (v && (!strcmp(v, "0.10") || !strcmp(v, "v2")))
        c->version = 2;
    else if (v && strcmp(v, "1.1") && strcmp(v, "v3")) {
        blk_set_error("Parameter 'version' does not accept value '%s'", v);
        return -EINVAL;
    }
    c->backing = blkopts_get(o, "backing_file");
    c->backing_fmt = blkopts_get(o, "backing_fmt");
    if ((r = qcow2_crypto_parse_create(o, &c->crypt)) < 0)
        return r;
    uint64_t cs, rb;
    if ((r = blkopts_get_size(o, "cluster_size", 65536, &cs)) < 0)
        return r;
    v = blkopts_get(o, "preallocation");
    c->prealloc = blk_prealloc_parse(v);
    if (c->prealloc < 0) {
        blk_set_error("Parameter 'preallocation' does not accept value '%s'", v);
        return -EINVAL;
    }
    if ((r = blkopts_get_bool(o, "lazy_refcounts", false, &c->lazy)) < 0 ||
        (r = blkopts_get_bool(o, "extended_l2", false, &c->extl2)) < 0)
        return r;
    /* a number as QemuOpts reads one: "-1" is 2^64 - 1 */
    v = blkopts_get(o, "refcount_bits");
    rb = 16;
    if (v) {
        char *end;
        errno = 0;
        rb = strtoull(v, &end, 0);
        if (errno || end == v || *end) {
            blk_set_error("Parameter 'refcount_bits' expects a number");
            return -EINVAL;
        }
    }
    v = blkopts_get(o, "compression_type");
    c->ctype = 0;
    if (v && !strcmp(v, "zstd"))
        c->ctype = 1;
    else if (v && strcmp(v, "zlib")) {
        blk_set_error("Parameter 'compression-type' does not accept value '%s'", v);
        return -EINVAL;
    }

    if (c->extl2 && c->version == 2) {
        blk_set_error("Extended L2 entries are only supported with compatibility level 1.1 "
                      "and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
        blk_set_error("Cluster size must be a power of two between 512 and 2048k");
        return -EINVAL;
    }
    c->cluster_bits = __builtin_ctzll(cs);
    if (c->extl2 && cs < 16384) {
        blk_set_error("Extended L2 entries are only supported with cluster sizes of at least "
                      "16384 bytes");
        return -EINVAL;
    }
    if (c->backing && c->prealloc != BLK_PREALLOC_OFF && !c->extl2) {
        blk_set_error("Backing file and preallocation can only be used at the same time if "
                      "extended_l2 is on");
        return -EINVAL;
    }
    if (c->lazy && c->version == 2) {
        blk_set_error("Lazy refcounts only supported with compatibility level 1.1 and above "
                      "(use version=v3 or greater)");
        return -EINVAL;
    }
    if (rb == 0 || rb > 64 || (rb & (rb - 1))) {
        blk_set_error("Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    c->refcount_order = __builtin_ctzll(rb);
    if (c->version == 2 && rb != 16) {
        blk_set_error("Different refcount widths than 16 bits require compatibility level "
                      "1.1 or above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (c->ctype && c->version == 2) {
        blk_set_error("Non-zlib compression type is only supported with compatibility level "
                      "1.1 and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (c->backing && strlen(c->backing) > 1023) {
        blk_set_error("Backing file name too long");
        return -EINVAL;
    }
    if (c->backing_fmt && !blk_find_driver(c->backing_fmt)) {
        blk_set_error("Unknown backing file format '%s'", c->backing_fmt);
        return -EINVAL;
    }
    blkopts_get(o, "nocow");
    c->data_file = blkopts_get(o, "data_file");
    if ((r = blkopts_get_bool(o, "data_file_raw", false, &c->data_raw)) < 0)
        return r;
    if (c->data_raw && !c->data_file) {
        blk_set_error("data-file-raw requires data-file");
        return -EINVAL;
    }
    if (c->data_raw && c->backing) {
        blk_set_error("Backing file and data-file-raw cannot be used at the same time");
        return -EINVAL;
    }
    /* The raw file must read as the guest sees it whatever looks at the
     * metadata: every cluster is mapped to its place in it. */
    if (c->data_raw && c->prealloc == BLK_PREALLOC_OFF)
        c->prealloc = BLK_PREALLOC_METADATA;
    if (c->data_file && c->version < 3) {
        blk_set_error("External data files are only supported with compatibility level 1.1 "
                      "and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (c->data_file && strlen(c->data_file) > 1023) {
        blk_set_error("Data file name too long");
        return -EINVAL;
    }
    return 0;
}

/* Size of the backing file for images created without a size. */
static int backing_size(const char *filename, const struct create_opts *c, uint64_t *size)
{
    char *path = blk_backing_path(filename, c->backing);
    if (!path)
        return -ENOMEM;
    BlockDriverState *b = blk_open(path, c->backing_fmt, BLK_O_SHARE, NULL);
    free(path);
    if (!b) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", blk_error());
        blk_set_error("%s", msg);
        return -ENOENT;
    }
    *size = b->size;
    blk_close(b);
    return 0;
}

static int qcow2_create(const char *filename, uint64_t size, BlockOptions *opts)
{
    struct create_opts c;
    int r = parse_create_opts(opts, &c);
    if (r < 0)
        return r;
    const char *unused = blkopts_first_unused(opts);
    if (unused) {
        blk_set_error("Invalid parameter '%s'", unused);
        return -EINVAL;
    }
    if (size == BLK_SIZE_UNSET) {
        if (!c.backing) {
            blk_set_error("Image creation needs a size parameter");
            return -EINVAL;
        }
        if ((r = backing_size(filename, &c, &size)) < 0)
            return r;
    }
    if (size % BLK_SECTOR_SIZE) {
        /* qcow2 sizes are whole sectors, as in QEMU */
        size = qcow2_align_up(size, BLK_SECTOR_SIZE);
    }
    /* the data file first, and emptied, as QEMU creates it */
    int dfd = -1;
    if (c.data_file) {
        dfd = open(c.data_file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (dfd < 0) {
            int e = errno;
            blk_set_error("Could not create '%s': %s", c.data_file, strerror(e));
            return -e;
        }
    }
    int fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        blk_set_error("Could not create '%s': %s", filename, strerror(e));
        if (dfd >= 0)
            blk_file_close(dfd);
        return -e;
    }
    struct stat ist, dst;
    if (dfd >= 0 && fstat(fd, &ist) == 0 && fstat(dfd, &dst) == 0 && ist.st_dev == dst.st_dev &&
        ist.st_ino == dst.st_ino) {
        /* the image as its own data file: QEMU's lock conflict */
        blk_set_error("Failed to get shared \"resize\" lock\nIs another process using the "
                      "image [%s]?", c.data_file);
        blk_file_close(fd);
        blk_file_close(dfd);
        unlink(filename);
        return -EBUSY;
    }
    /* Header, refcount table, one refcount block; then the L1 table is
     * allocated through the normal allocator, which puts it at cluster 3
     * as QEMU does. */
    BlockDriverState bs = {.fd = fd, .filename = (char *)filename, .flags = BLK_O_RDWR};
    Qcow2State *s = calloc(1, sizeof(*s));
    if (!s) {
        blk_file_close(fd);
        if (dfd >= 0)
            blk_file_close(dfd);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->alloc_cond, NULL);
    pthread_mutex_init(&s->io_mu, NULL);
    pthread_cond_init(&s->io_cond, NULL);
    s->crypt_rmw = (BlkRangeLock)BLK_RANGE_LOCK_INIT;
    s->bs = &bs;
    s->fd = fd;
    s->data_fd = dfd >= 0 ? dfd : fd;
    bs.opaque = s;
    bs.size = size;
    s->version = c.version;
    s->cluster_bits = c.cluster_bits;
    s->cluster_size = 1ULL << c.cluster_bits;
    s->refcount_order = c.refcount_order;
    s->compression_type = c.ctype;
    s->extl2 = c.extl2;
    if (c.ctype)
        s->incompat |= QCOW2_INCOMPAT_COMPRESSION;
    if (c.extl2)
        s->incompat |= QCOW2_INCOMPAT_EXTL2;
    if (c.lazy)
        s->compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (c.data_file) {
        s->incompat |= QCOW2_INCOMPAT_DATA_FILE;
        if (c.data_raw)
            s->autoclear |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
        /* stored as given: relative to the image when opened */
        s->data_file_name = strdup(c.data_file);
    }
    if (c.backing)
        snprintf(bs.backing_file, sizeof(bs.backing_file), "%s", c.backing);
    if (c.backing_fmt)
        snprintf(bs.backing_format, sizeof(bs.backing_format), "%s", c.backing_fmt);
    derive(s);
    uint64_t cs = s->cluster_size;
    s->rt_offset = cs;
    s->rt_clusters = 1;
    s->rt_size = cs / 8;
    s->rt = calloc(s->rt_size, 8);
    uint8_t *blk = calloc(1, cs);
    r = -ENOMEM;
    if (!s->rt || !blk || (c.data_file && !s->data_file_name) ||
        qcow2_cache_init(&s->l2_cache, 2, cs) < 0 || qcow2_cache_init(&s->rb_cache, 4, cs) < 0)
        goto out;
    s->rt[0] = 2 * cs;
    qcow2_put64(blk, 2 * cs);
    if ((r = blk_file_pwrite(fd, blk, cs, cs)) < 0)
        goto io_err;
    memset(blk, 0, cs);
    for (int i = 0; i < 3; i++) {
        /* refcount 1 for clusters 0..2 */
        uint64_t bit = (uint64_t)i * s->refcount_bits;
        if (s->refcount_bits >= 8)
            blk[(bit / 8) + s->refcount_bits / 8 - 1] = 1;
        else
            blk[bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
    if ((r = blk_file_pwrite(fd, blk, cs, 2 * cs)) < 0)
        goto io_err;
    s->file_end = 3 * cs;
    s->free_hint = 3;
    uint64_t per_l1 = cs * s->l2_size;
    uint64_t l1_entries = (size + per_l1 - 1) / per_l1;
    if (l1_entries * 8 > QCOW2_MAX_L1_BYTES) {
        blk_set_error("The image size is too large for file format 'qcow2' "
                      "(try using a larger cluster size)");
        r = -EFBIG;
        goto out;
    }
    if ((r = qcow2_update_header(s)) < 0)
        goto out;
    if ((r = qcow2_grow_l1(s, l1_entries)) < 0)
        goto out;
    if ((r = write_header(s, true)) < 0)
        goto out;
    if ((r = qcow2_crypto_create(s, &c.crypt)) < 0)
        goto out;
    if ((c.prealloc != BLK_PREALLOC_OFF || c.data_file) &&
        (r = qcow2_preallocate(s, 0, size, c.prealloc)) < 0)
        goto out;
    if ((r = qcow2_flush_metadata(s)) < 0)
        goto out;
    r = qcow2_sync(s);
    goto out;
io_err:
    blk_set_error("Could not write '%s': %s", filename, strerror(-r));
out:
    free(blk);
    qcow2_free_state(s);
    blk_file_close(fd);
    if (dfd >= 0)
        blk_file_close(dfd);
    if (r < 0)
        unlink(filename);
    return r;
}

/* A read of an encrypted image waits for the read-modify-writes of the
 * partial sectors it covers (qcow2_crypto_pwrite, exclusive): meanwhile
 * the file holds such a sector half old, half new, which decrypts to
 * noise.  Internal reads (the read-modify-write's own) go to qcow2_pread. */
int qcow2_guest_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    Qcow2State *s = bs->opaque;
    if (!s->crypt_method)
        return qcow2_pread(bs, off, buf, len);
    BlkRange held;
    blk_range_lock(&s->crypt_rmw, &held, 0, off & ~(uint64_t)(BLK_SECTOR_SIZE - 1),
                   qcow2_align_up(off + len, BLK_SECTOR_SIZE), false);
    int r = qcow2_pread(bs, off, buf, len);
    blk_range_unlock(&s->crypt_rmw, &held);
    return r;
}

const BlockDriver blk_qcow2_driver = {
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .pread = qcow2_guest_pread,
    .pwrite = qcow2_pwrite,
    .copy_from_file = qcow2_copy_from_file,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .discard = qcow2_discard,
    .flush = qcow2_flush,
    .start_writeback = qcow2_start_writeback,
    .block_status = qcow2_block_status,
    .truncate = qcow2_truncate,
    .truncate_no_sync = true,
    .get_info = qcow2_get_info,
    .create = qcow2_create,
    .check = qcow2_check,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .make_empty = qcow2_make_empty,
    .change_backing_file = qcow2_change_backing_file,
    .amend = qcow2_amend,
    .pwrite_compressed = qcow2_pwrite_compressed,
    .save_vmstate = qcow2_save_vmstate,
    .load_vmstate = qcow2_load_vmstate,
    .vmstate_reserve = qcow2_vmstate_reserve,
    .vmstate_zero = qcow2_vmstate_zero,
    .vmstate_host_range = qcow2_vmstate_host_range,
    .snapshot_create_vm = qcow2_snapshot_create_vm,
    .snapshot_apply_disk = qcow2_snapshot_apply_disk,
    .snapshot_vmstate = qcow2_snapshot_vmstate,
    .bitmap = qcow2_bitmap_op,
};
