/* qcow version 1 (QEMU block/qcow.c; docs/ARCHITECTURE.md section 9).
 *
 * A 48-byte header, the backing file name, an L1 table; L2 tables and
 * data clusters are appended at the end of the file.  No refcounts, no
 * snapshots, no zero flag.  Compressed clusters hold a raw deflate stream
 * (window bits -12) packed at byte granularity at the end of the file.
 *
 * Unlike QEMU, a partial write into a new cluster copies the rest of the
 * cluster from the backing file (QEMU only gets away without it because
 * images with a backing file default to 512-byte clusters), and data
 * reaches the file before the table entry that points to it.
 *
 * Every operation runs under one lock, except compression itself. */
#include "block/block.h"
#include "block/crypto.h"
#include "block/ossl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QCOW_MAGIC 0x514649fbu
#define QCOW_HEADER_SIZE 48
#define QCOW_OFLAG_COMPRESSED (UINT64_C(1) << 63)
#define QCOW_L2_CACHE 16

typedef struct QcowState {
    pthread_mutex_t lock;
    BlockDriverState *bs;
    int fd;
    uint32_t cluster_bits, l2_bits;
    uint64_t cluster_size, l2_size; /* l2_size: entries */
    uint64_t cluster_offset_mask;
    uint32_t crypt_method;
    uint64_t l1_offset;
    uint64_t l1_size;
    uint64_t *l1;                   /* host order */
    uint64_t l2_off[QCOW_L2_CACHE];
    uint64_t l2_lru[QCOW_L2_CACHE];
    uint64_t *l2[QCOW_L2_CACHE];    /* host order */
    uint64_t clock;
    uint64_t file_end;
    bool data_unsynced;
    BlkCipher *cipher;              /* legacy AES; NULL: no key given */
    uint8_t *cbuf;                  /* last decompressed cluster */
    uint64_t cbuf_entry;
    bool cbuf_valid;
} QcowState;

static uint64_t be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put64(uint8_t *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static void put32(uint8_t *b, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static int qcow_probe(const uint8_t *buf, size_t len)
{
    if (len >= QCOW_HEADER_SIZE && be32(buf) == QCOW_MAGIC && be32(buf + 4) == 1)
        return 100;
    return 0;
}

static int bad(BlockDriverState *bs, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(BlockDriverState *bs, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    blk_set_error("%s: %s", bs->filename, msg);
    return err;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static int qcow_sync(QcowState *s)
{
    s->data_unsynced = false;
    if (s->bs->flags & BLK_O_UNSAFE)
        return 0;
    int e = blk_file_sync(s->fd);
    if (e < 0)
        return bad(s->bs, e, "flush failed: %s", strerror(-e));
    return 0;
}

static void qcow_free(QcowState *s)
{
    blk_cipher_free(s->cipher);
    free(s->l1);
    for (int i = 0; i < QCOW_L2_CACHE; i++)
        free(s->l2[i]);
    free(s->cbuf);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int qcow_open(BlockDriverState *bs, BlockOptions *opts)
{
    /* the command line resolved --object secret: the value is the passphrase */
    const char *key = blkopts_get(opts, "encrypt.key-secret");
    const char *efmt = blkopts_get(opts, "encrypt.format");
    if (efmt && strcmp(efmt, "aes"))
        return bad(bs, -EINVAL, "encrypt.format '%s' is not valid for qcow (only 'aes')", efmt);
    uint8_t h[QCOW_HEADER_SIZE];
    int64_t fsize = blk_file_size(bs->fd);
    if (fsize < 0)
        return bad(bs, (int)fsize, "cannot get the file size");
    if (fsize < QCOW_HEADER_SIZE)
        return bad(bs, -EINVAL, "file is too small for a qcow header");
    int r = blk_file_pread(bs->fd, h, sizeof(h), 0);
    if (r < 0)
        return bad(bs, r, "cannot read the header: %s", strerror(-r));
    if (be32(h) != QCOW_MAGIC)
        return bad(bs, -EINVAL, "not a qcow image (bad magic)");
    uint32_t version = be32(h + 4);
    if (version != 1)
        return bad(bs, -ENOTSUP, "qcow (v1) does not support qcow version %" PRIu32 "%s",
                   version, version == 2 || version == 3 ? " (try the 'qcow2' driver)" : "");
    uint64_t bf_off = be64(h + 8);
    uint32_t bf_size = be32(h + 16);
    uint64_t size = be64(h + 24);
    uint32_t cluster_bits = h[32], l2_bits = h[33];
    uint32_t crypt = be32(h + 36);
    uint64_t l1_off = be64(h + 40);
    if (size <= 1)
        return bad(bs, -EINVAL, "image size is too small (must be at least 2 bytes)");
    if (size > (UINT64_C(1) << 56))
        return bad(bs, -EFBIG, "image size %" PRIu64 " is too large", size);
    if (cluster_bits < 9 || cluster_bits > 16)
        return bad(bs, -EINVAL, "cluster size must be between 512 and 64k (cluster_bits %u)",
                   cluster_bits);
    if (l2_bits < 6 || l2_bits > 13)
        return bad(bs, -EINVAL, "L2 table size must be between 512 and 64k (l2_bits %u)",
                   l2_bits);
    if (crypt > 1)
        return bad(bs, -EINVAL, "invalid encryption method %u in the qcow header", crypt);
    uint32_t shift = cluster_bits + l2_bits;
    uint64_t l1_size = (size + (UINT64_C(1) << shift) - 1) >> shift;
    if (l1_size > (32u << 20) / 8)
        return bad(bs, -EFBIG, "image too large: the L1 table would have %" PRIu64 " entries",
                   l1_size);
    if (l1_off & 7 || l1_off < QCOW_HEADER_SIZE || l1_off > (uint64_t)fsize ||
        l1_size * 8 > (uint64_t)fsize - l1_off)
        return bad(bs, -EINVAL, "L1 table offset 0x%" PRIx64 " (%" PRIu64 " entries) is "
                   "invalid or beyond the end of the file", l1_off, l1_size);
    if (bf_off) {
        if (bf_size > 1023)
            return bad(bs, -EINVAL, "backing file name too long (%u bytes)", bf_size);
        if (bf_off > (uint64_t)fsize || bf_size > (uint64_t)fsize - bf_off)
            return bad(bs, -EINVAL, "backing file name is beyond the end of the file");
        char name[1024];
        if ((r = blk_file_pread(bs->fd, name, bf_size, bf_off)) < 0)
            return bad(bs, r, "cannot read the backing file name: %s", strerror(-r));
        name[bf_size] = 0;
        if (strlen(name) != bf_size)
            return bad(bs, -EINVAL, "backing file name contains a NUL byte");
        snprintf(bs->backing_file, sizeof(bs->backing_file), "%s", name);
    }
    QcowState *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->bs = bs;
    s->fd = bs->fd;
    s->cluster_bits = cluster_bits;
    s->l2_bits = l2_bits;
    s->cluster_size = UINT64_C(1) << cluster_bits;
    s->l2_size = UINT64_C(1) << l2_bits;
    s->cluster_offset_mask = (UINT64_C(1) << (63 - cluster_bits)) - 1;
    s->crypt_method = crypt;
    if (crypt && !calf_ossl_ready()) {
        qcow_free(s);
        return -ENOTSUP;
    }
    if (crypt && key && !(bs->flags & BLK_O_NO_IO) &&
        !(s->cipher = blk_cipher_new_legacy_aes(key))) {
        qcow_free(s);
        return -EIO;
    }
    s->l1_offset = l1_off;
    s->l1_size = l1_size;
    s->file_end = (uint64_t)fsize;
    s->l1 = calloc(l1_size ? l1_size : 1, 8);
    uint8_t *raw = malloc(l1_size * 8 + 1);
    if (!s->l1 || !raw) {
        free(raw);
        qcow_free(s);
        return -ENOMEM;
    }
    if ((r = blk_file_pread(bs->fd, raw, l1_size * 8, l1_off)) < 0) {
        free(raw);
        qcow_free(s);
        return bad(bs, r, "cannot read the L1 table: %s", strerror(-r));
    }
    for (uint64_t i = 0; i < l1_size; i++)
        s->l1[i] = be64(raw + 8 * i);
    free(raw);
    bs->size = size & ~(uint64_t)(BLK_SECTOR_SIZE - 1);
    bs->opaque = s;
    return 0;
}

static void qcow_close(BlockDriverState *bs)
{
    QcowState *s = bs->opaque;
    if (!s)
        return;
    if (!bs->read_only)
        qcow_sync(s);
    qcow_free(s);
    bs->opaque = NULL;
}

/* The L2 table at host offset off (from the cache or the file). */
static int l2_get(QcowState *s, uint64_t off, uint64_t **table)
{
    int victim = 0;
    for (int i = 0; i < QCOW_L2_CACHE; i++) {
        if (s->l2[i] && s->l2_off[i] == off) {
            s->l2_lru[i] = ++s->clock;
            *table = s->l2[i];
            return 0;
        }
        if (s->l2_lru[i] < s->l2_lru[victim])
            victim = i;
    }
    uint64_t bytes = s->l2_size * 8;
    if (off & 7 || off < QCOW_HEADER_SIZE || off > s->file_end || bytes > s->file_end - off)
        return bad(s->bs, -EIO, "L2 table offset 0x%" PRIx64 " is invalid or beyond the end "
                   "of the file", off);
    if (!s->l2[victim] && !(s->l2[victim] = malloc(bytes)))
        return -ENOMEM;
    uint8_t *raw = malloc(bytes);
    if (!raw)
        return -ENOMEM;
    int r = blk_file_pread(s->fd, raw, bytes, off);
    if (r < 0) {
        free(raw);
        s->l2_lru[victim] = 0;
        s->l2_off[victim] = 0;
        return bad(s->bs, r, "cannot read an L2 table: %s", strerror(-r));
    }
    for (uint64_t i = 0; i < s->l2_size; i++)
        s->l2[victim][i] = be64(raw + 8 * i);
    free(raw);
    s->l2_off[victim] = off;
    s->l2_lru[victim] = ++s->clock;
    *table = s->l2[victim];
    return 0;
}

/* The L2 entry for guest offset off (0 = unallocated). */
static int get_entry(QcowState *s, uint64_t off, uint64_t *entry)
{
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    *entry = 0;
    if (l1i >= s->l1_size || !s->l1[l1i])
        return 0;
    uint64_t *t;
    int r = l2_get(s, s->l1[l1i], &t);
    if (r < 0)
        return r;
    *entry = t[(off >> s->cluster_bits) & (s->l2_size - 1)];
    return 0;
}

static void compressed_span(const QcowState *s, uint64_t e, uint64_t *off, uint64_t *len)
{
    *off = e & s->cluster_offset_mask;
    *len = (e >> (63 - s->cluster_bits)) & (s->cluster_size - 1);
}

static int load_compressed(QcowState *s, uint64_t e)
{
    if (s->cbuf_valid && s->cbuf_entry == e)
        return 0;
    if (!s->cbuf && !(s->cbuf = malloc(s->cluster_size)))
        return -ENOMEM;
    uint64_t off, len;
    compressed_span(s, e, &off, &len);
    if (off > s->file_end || len > s->file_end - off)
        return bad(s->bs, -EIO, "compressed cluster at 0x%" PRIx64 " is beyond the end of the "
                   "file", off);
    uint8_t *in = malloc(len ? len : 1);
    if (!in)
        return -ENOMEM;
    int r = blk_file_pread(s->fd, in, len, off);
    s->cbuf_valid = false;
    if (r == 0 && blk_decompress_cluster(0, in, len, s->cbuf, s->cluster_size) < 0)
        r = bad(s->bs, -EIO, "cannot decompress the cluster at host offset 0x%" PRIx64, off);
    free(in);
    if (r == 0) {
        s->cbuf_valid = true;
        s->cbuf_entry = e;
    }
    return r;
}

/* AES-128-CBC on whole 512-byte sectors, in place; the IV of each sector
 * is its guest sector number ("plain64"). */
static int crypt_sectors(QcowState *s, uint64_t sector, uint8_t *buf, uint64_t len, int enc)
{
    if (!s->cipher)
        return bad(s->bs, -EACCES, "the image is encrypted and no key was given "
                   "(Parameter 'encrypt.key-secret' is required for cipher)");
    int r = blk_cipher_crypt(s->cipher, sector, buf, len, enc);
    if (r < 0)
        return bad(s->bs, r, "AES %s failed", enc ? "encryption" : "decryption");
    return 0;
}

/* Reads n bytes at guest offset off inside one cluster whose entry is e. */
static int read_in_cluster(QcowState *s, uint64_t e, uint64_t off, uint8_t *buf, uint64_t n)
{
    uint64_t in = off & (s->cluster_size - 1);
    if (!e)
        return blk_read_backing(s->bs, off, buf, n);
    if (e & QCOW_OFLAG_COMPRESSED) {
        int r = load_compressed(s, e);
        if (r == 0)
            memcpy(buf, s->cbuf + in, n);
        return r;
    }
    if (e & (s->cluster_size - 1) || e > s->file_end)
        return bad(s->bs, -EIO, "cluster offset 0x%" PRIx64 " is not aligned or beyond the end "
                   "of the file", e);
    if (s->crypt_method) {
        /* whole clusters: decryption works on whole sectors */
        uint8_t *c = malloc(s->cluster_size);
        if (!c)
            return -ENOMEM;
        int r = blk_file_pread(s->fd, c, s->cluster_size, e);
        if (r < 0)
            r = bad(s->bs, r, "read error: %s", strerror(-r));
        else
            r = crypt_sectors(s, (off - in) / BLK_SECTOR_SIZE, c, s->cluster_size, 0);
        if (r == 0)
            memcpy(buf, c + in, n);
        free(c);
        return r;
    }
    int r = blk_file_pread(s->fd, buf, n, e + in);
    if (r < 0)
        return bad(s->bs, r, "read error: %s", strerror(-r));
    return 0;
}

static int qcow_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    QcowState *s = bs->opaque;
    uint8_t *p = buf;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    while (len && r == 0) {
        uint64_t in = off & (s->cluster_size - 1);
        uint64_t n = s->cluster_size - in < len ? s->cluster_size - in : len;
        uint64_t e;
        if ((r = get_entry(s, off, &e)) == 0)
            r = read_in_cluster(s, e, off, p, n);
        off += n;
        p += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Writes the L2 entry of guest offset off (creating the L2 table if
 * needed), after the data it points to is on disk. */
static int set_entry(QcowState *s, uint64_t off, uint64_t e)
{
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2i = (off >> s->cluster_bits) & (s->l2_size - 1);
    int r;
    if (l1i >= s->l1_size)
        return bad(s->bs, -EIO, "guest offset 0x%" PRIx64 " is beyond the L1 table", off);
    if (s->data_unsynced && (r = qcow_sync(s)) < 0)
        return r;
    uint8_t b[8];
    if (!s->l1[l1i]) {
        uint64_t bytes = s->l2_size * 8;
        uint64_t l2_off = align_up(s->file_end, s->cluster_size);
        uint8_t *z = calloc(1, bytes);
        if (!z)
            return -ENOMEM;
        r = blk_file_pwrite(s->fd, z, bytes, l2_off);
        free(z);
        if (r < 0)
            return bad(s->bs, r, "cannot write an L2 table: %s", strerror(-r));
        s->file_end = l2_off + bytes;
        if ((r = qcow_sync(s)) < 0)
            return r;
        put64(b, l2_off);
        if ((r = blk_file_pwrite(s->fd, b, 8, s->l1_offset + l1i * 8)) < 0)
            return bad(s->bs, r, "cannot write the L1 table: %s", strerror(-r));
        s->l1[l1i] = l2_off;
    }
    uint64_t *t;
    if ((r = l2_get(s, s->l1[l1i], &t)) < 0)
        return r;
    put64(b, e);
    if ((r = blk_file_pwrite(s->fd, b, 8, s->l1[l1i] + l2i * 8)) < 0)
        return bad(s->bs, r, "cannot write an L2 table: %s", strerror(-r));
    t[l2i] = e;
    s->cbuf_valid = false;
    return 0;
}

/* Writes [off, off+n) inside one cluster. */
static int write_in_cluster(QcowState *s, uint64_t off, const uint8_t *buf, uint64_t n)
{
    uint64_t cs = s->cluster_size, in = off & (cs - 1), e;
    int r = get_entry(s, off, &e);
    if (r < 0)
        return r;
    if (e && !(e & QCOW_OFLAG_COMPRESSED)) {
        if (e & (cs - 1) || e > s->file_end)
            return bad(s->bs, -EIO, "cluster offset 0x%" PRIx64 " is not aligned or beyond "
                       "the end of the file", e);
        if (s->crypt_method) {
            uint8_t *c = malloc(cs);
            if (!c)
                return -ENOMEM;
            if ((r = read_in_cluster(s, e, off - in, c, cs)) == 0) {
                memcpy(c + in, buf, n);
                r = crypt_sectors(s, (off - in) / BLK_SECTOR_SIZE, c, cs, 1);
            }
            if (r == 0 && (r = blk_file_pwrite(s->fd, c, cs, e)) < 0)
                r = bad(s->bs, r, "write error: %s", strerror(-r));
            free(c);
            return r;
        }
        if ((r = blk_file_pwrite(s->fd, buf, n, e + in)) < 0)
            return bad(s->bs, r, "write error: %s", strerror(-r));
        return 0;
    }
    /* a new cluster: the old content (backing file or compressed) around it */
    uint8_t *c = malloc(cs);
    if (!c)
        return -ENOMEM;
    if (n < cs && (r = read_in_cluster(s, e, off - in, c, cs)) < 0) {
        free(c);
        return r;
    }
    memcpy(c + in, buf, n);
    if (s->crypt_method && (r = crypt_sectors(s, (off - in) / BLK_SECTOR_SIZE, c, cs, 1)) < 0) {
        free(c);
        return r;
    }
    uint64_t host = align_up(s->file_end, cs);
    r = blk_file_pwrite(s->fd, c, cs, host);
    free(c);
    if (r < 0)
        return bad(s->bs, r, "write error: %s", strerror(-r));
    s->file_end = host + cs;
    s->data_unsynced = true;
    return set_entry(s, off, host);
}

static int qcow_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    QcowState *s = bs->opaque;
    const uint8_t *p = buf;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    while (len && r == 0) {
        uint64_t in = off & (s->cluster_size - 1);
        uint64_t n = s->cluster_size - in < len ? s->cluster_size - in : len;
        r = write_in_cluster(s, off, p, n);
        off += n;
        p += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int qcow_pwrite_compressed(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    QcowState *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    if (s->crypt_method) {
        blk_set_error("%s: compressed writes to encrypted images are not supported",
                      bs->filename);
        return -ENOTSUP;
    }
    if (off & (cs - 1) || ((len & (cs - 1)) && off + len != bs->size)) {
        blk_set_error("%s: compressed writes must cover whole clusters", bs->filename);
        return -EINVAL;
    }
    uint8_t *in = malloc(cs), *out = malloc(cs);
    int r = in && out ? 0 : -ENOMEM;
    const uint8_t *p = buf;
    while (r == 0 && len) {
        size_t n = len < cs ? len : cs;
        memcpy(in, p, n);
        memset(in + n, 0, cs - n);
        ssize_t clen = blk_compress_cluster(0, out, cs - 1, in, cs);
        if (clen < 0 && clen != -ENOSPC) {
            r = (int)clen;
            break;
        }
        if (clen == -ENOSPC) {
            r = qcow_pwrite(bs, off, p, n); /* does not shrink: plain */
        } else {
            pthread_mutex_lock(&s->lock);
            uint64_t e;
            if ((r = get_entry(s, off, &e)) == 0 && e)
                r = bad(bs, -EIO, "compression cannot overwrite the allocated cluster at guest "
                        "offset 0x%" PRIx64, off);
            uint64_t host = s->file_end;
            if (r == 0 && (r = blk_file_pwrite(s->fd, out, clen, host)) < 0)
                r = bad(bs, r, "write error: %s", strerror(-r));
            if (r == 0) {
                s->file_end = host + clen;
                s->data_unsynced = true;
                r = set_entry(s, off, host | QCOW_OFLAG_COMPRESSED |
                                          ((uint64_t)clen << (63 - s->cluster_bits)));
            }
            pthread_mutex_unlock(&s->lock);
        }
        off += n;
        p += n;
        len -= n;
    }
    free(in);
    free(out);
    return r;
}

static int qcow_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *host_offset)
{
    QcowState *s = bs->opaque;
    uint64_t cs = s->cluster_size, done = 0, first_e = 0, first_host = 0;
    int st = 0, r = 0;
    pthread_mutex_lock(&s->lock);
    while (done < len) {
        uint64_t pos = off + done, in = pos & (cs - 1), e;
        uint64_t n = cs - in < len - done ? cs - in : len - done;
        if ((r = get_entry(s, pos, &e)) < 0)
            break;
        int t = !e ? 0 : (e & QCOW_OFLAG_COMPRESSED)
                             ? BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_COMPRESSED
                             : BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
        uint64_t host = (t & BLK_STATUS_OFFSET) ? e + in : 0;
        if (done == 0) {
            st = t;
            first_e = e;
            first_host = host;
        } else if (t != st || (t & BLK_STATUS_COMPRESSED) ||
                   ((t & BLK_STATUS_OFFSET) && host != first_host + done)) {
            break;
        }
        done += n;
    }
    pthread_mutex_unlock(&s->lock);
    (void)first_e;
    if (r < 0)
        return r;
    *pnum = done;
    *host_offset = first_host;
    /* as QEMU: encrypted data has no offset a reader could use */
    if (s->crypt_method)
        st &= ~BLK_STATUS_OFFSET;
    return st;
}

static int qcow_flush(BlockDriverState *bs)
{
    QcowState *s = bs->opaque;
    pthread_mutex_lock(&s->lock);
    int r = qcow_sync(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int qcow_get_info(BlockDriverState *bs, BlockInfo *info)
{
    QcowState *s = bs->opaque;
    info->cluster_size = s->cluster_size;
    info->encrypted = s->crypt_method != 0;
    return 0;
}

static int qcow_create(const char *filename, uint64_t size, BlockOptions *opts)
{
    const char *backing = blkopts_get(opts, "backing_file");
    const char *bfmt = blkopts_get(opts, "backing_fmt");
    (void)bfmt; /* qcow has no place for it; the backing file is probed */
    const char *enc = blkopts_get(opts, "encryption");
    const char *encf = blkopts_get(opts, "encrypt.format");
    const char *secret = blkopts_get(opts, "encrypt.key-secret");
    bool encrypt = (enc && strcmp(enc, "off") && strcmp(enc, "no") && strcmp(enc, "false")) ||
                   encf;
    if (encf && strcmp(encf, "aes")) {
        blk_set_error("Unsupported encryption format '%s' for qcow (only 'aes')", encf);
        return -EINVAL;
    }
    if (encrypt && !secret) {
        blk_set_error("Parameter 'encrypt.key-secret' is required for cipher");
        return -EINVAL;
    }
    const char *unused = blkopts_first_unused(opts);
    if (unused) {
        blk_set_error("Invalid parameter '%s'", unused);
        return -EINVAL;
    }
    if (backing && strlen(backing) > 1023) {
        blk_set_error("Backing file name too long");
        return -EINVAL;
    }
    if (size == BLK_SIZE_UNSET) {
        if (!backing) {
            blk_set_error("Image creation needs a size parameter");
            return -EINVAL;
        }
        char *path = blk_backing_path(filename, backing);
        BlockDriverState *b = path ? blk_open(path, bfmt, BLK_O_SHARE, NULL) : NULL;
        free(path);
        if (!b)
            return -ENOENT;
        size = b->size;
        blk_close(b);
    }
    size = align_up(size, BLK_SECTOR_SIZE);
    if (size == 0) {
        blk_set_error("Image size is too small, cannot be zero length");
        return -EINVAL;
    }
    uint8_t h[QCOW_HEADER_SIZE] = {0};
    uint32_t cluster_bits = backing ? 9 : 12, l2_bits = backing ? 12 : 9;
    size_t blen = backing ? strlen(backing) : 0;
    uint64_t hsize = (QCOW_HEADER_SIZE + blen + 7) & ~UINT64_C(7);
    uint32_t shift = cluster_bits + l2_bits;
    uint64_t l1_size = (size + (UINT64_C(1) << shift) - 1) >> shift;
    if (l1_size > (32u << 20) / 8) {
        blk_set_error("Image size is too large for the qcow format");
        return -EFBIG;
    }
    put32(h, QCOW_MAGIC);
    put32(h + 4, 1);
    if (backing) {
        put64(h + 8, QCOW_HEADER_SIZE);
        put32(h + 16, (uint32_t)blen);
    }
    put64(h + 24, size);
    h[32] = (uint8_t)cluster_bits;
    h[33] = (uint8_t)l2_bits;
    put32(h + 36, encrypt ? 1 : 0);
    put64(h + 40, hsize);
    int fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        blk_set_error("Could not create '%s': %s", filename, strerror(e));
        return -e;
    }
    /* the L1 table is written out in whole sectors, as QEMU does */
    uint64_t l1_bytes = align_up(l1_size * 8, BLK_SECTOR_SIZE);
    uint8_t *buf = calloc(1, hsize + l1_bytes);
    int r = buf ? 0 : -ENOMEM;
    if (buf) {
        memcpy(buf, h, sizeof(h));
        if (blen)
            memcpy(buf + QCOW_HEADER_SIZE, backing, blen);
        r = blk_file_pwrite(fd, buf, hsize + l1_bytes, 0);
        if (r == 0 && fdatasync(fd) < 0)
            r = -errno;
        if (r < 0)
            blk_set_error("Could not write '%s': %s", filename, strerror(-r));
    }
    free(buf);
    blk_file_close(fd);
    if (r < 0)
        unlink(filename);
    return r;
}

const BlockDriver blk_qcow_driver = {
    .name = "qcow",
    .probe = qcow_probe,
    .open = qcow_open,
    .close = qcow_close,
    .pread = qcow_pread,
    .pwrite = qcow_pwrite,
    .flush = qcow_flush,
    .block_status = qcow_block_status,
    .get_info = qcow_get_info,
    .create = qcow_create,
    .pwrite_compressed = qcow_pwrite_compressed,
};
