/* The luks format: a LUKS1 container on its own, as QEMU's block/crypto.c
 * keeps it.  The header region (header, then the key slots' material)
 * runs from offset 0 to the payload offset the header names; the guest
 * data follows, encrypted in 512-byte sectors, each with the IV of its
 * guest sector number (not its place in the file, unlike LUKS in qcow2).
 *
 * Requests run on several I/O threads at once: the cipher keeps no state
 * between calls (blk_cipher_crypt makes its context per call), and a
 * write of part of a sector, which must read, patch and re-encrypt the
 * whole sector, holds that sector exclusively (rmw) against other
 * writes of it.  The header is only changed by amend, with the image
 * opened for writing by one tool (the image lock). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include "block/ossl.h"

#include "block/luks.h"

#define SECTOR BLK_CRYPTO_SECTOR
/* Bytes encrypted at a time on their way to the file: a write copies
 * the caller's data (it is const) into a buffer this large at most. */
#define CHUNK (1u << 20)

typedef struct LuksFmtState {
    LuksHeader h;
    BlkCipher *cipher; /* NULL when opened for metadata only */
    uint64_t payload;  /* bytes before the guest data */
    BlkRangeLock rmw;
} LuksFmtState;

static int luks_fmt_probe(const uint8_t *buf, size_t len)
{
    static const uint8_t magic[8] = {'L', 'U', 'K', 'S', 0xba, 0xbe, 0, 1};
    return len >= sizeof(magic) && !memcmp(buf, magic, sizeof(magic)) ? 100 : 0;
}

/* The host file's size, a block device's included. */
static int64_t file_size(int fd)
{
    struct stat st;
    int r = blk_file_stat(fd, &st);
    if (r < 0)
        return r;
    if (S_ISBLK(st.st_mode))
        return blk_file_seek(fd, 0, SEEK_END);
    return st.st_size;
}

/* The header region [0, payload offset), read and parsed into s. */
static int read_region(BlockDriverState *bs, LuksFmtState *s, uint8_t **region)
{
    uint8_t hdr[LUKS_HEADER_SIZE];
    *region = NULL;
    int r = blk_file_pread(bs->fd, hdr, sizeof(hdr), 0);
    if (r < 0) {
        blk_set_error("Could not read encryption header: %s", strerror(-r));
        return r;
    }
    int64_t fsize = file_size(bs->fd);
    if (fsize < 0) {
        blk_set_error("%s: cannot get the file size: %s", bs->filename, strerror(-fsize));
        return (int)fsize;
    }
    /* QEMU's words for -f luks on another file, or on LUKS2 */
    if (memcmp(hdr, "LUKS\xba\xbe", 6)) {
        blk_set_error("Volume is not in LUKS format");
        return -EINVAL;
    }
    if (luks_fmt_probe(hdr, sizeof(hdr)) == 0) {
        blk_set_error("LUKS version %u is not supported", (unsigned)((hdr[6] << 8) | hdr[7]));
        return -EINVAL;
    }
    /* the header alone first: a hostile one may name a payload offset
     * of up to 2 TiB, which is checked before anything that large is
     * read; then again with the region, where the active key slots
     * must lie */
    if ((r = luks_parse(hdr, sizeof(hdr), LUKS_MAX_REGION, &s->h)) < 0)
        return r;
    uint64_t payload = (uint64_t)s->h.payload_sector * SECTOR;
    if (payload > LUKS_MAX_REGION || payload > (uint64_t)fsize) {
        blk_set_error("LUKS header: the payload offset %" PRIu64 " is beyond the end of the "
                      "file or too large", payload);
        return -EINVAL;
    }
    if (!(*region = malloc(payload)))
        return -ENOMEM;
    if ((r = blk_file_pread(bs->fd, *region, payload, 0)) < 0)
        blk_set_error("Could not read encryption header: %s", strerror(-r));
    else
        r = luks_parse(*region, payload, payload, &s->h);
    if (r < 0) {
        free(*region);
        *region = NULL;
        return r;
    }
    s->payload = payload;
    /* the virtual size counts whole sectors, as QEMU's does */
    uint64_t end = ((uint64_t)fsize + SECTOR - 1) & ~(uint64_t)(SECTOR - 1);
    bs->size = end - payload;
    return 0;
}

static int luks_fmt_open(BlockDriverState *bs, BlockOptions *opts)
{
    const char *key = opts ? blkopts_get(opts, "key-secret") : NULL;
    if (!calf_ossl_ready())
        return -ENOTSUP;
    if (bs->flags & BLK_O_NO_IO)
        key = NULL; /* as QEMU's info: the header is read, nothing unlocked */
    else if (!key) {
        blk_set_error("Parameter 'key-secret' is required for cipher");
        return -EACCES;
    }
    LuksFmtState *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->rmw = (BlkRangeLock)BLK_RANGE_LOCK_INIT;
    uint8_t *region = NULL;
    int r = read_region(bs, s, &region);
    if (r == 0 && key)
        r = luks_unlock(&s->h, region, s->payload, key, &s->cipher);
    if (region) {
        OPENSSL_cleanse(region, s->payload);
        free(region);
    }
    if (r < 0) {
        OPENSSL_cleanse(s, sizeof(*s));
        free(s);
        return r;
    }
    bs->opaque = s;
    return 0;
}

static void luks_fmt_close(BlockDriverState *bs)
{
    LuksFmtState *s = bs->opaque;
    if (!s)
        return;
    blk_cipher_free(s->cipher);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
    bs->opaque = NULL;
}

static int no_key(BlockDriverState *bs)
{
    blk_set_error("%s: the image was opened without its key", bs->filename);
    return -EACCES;
}

/* Whole sectors [off, off+len) of the payload into buf, decrypted. */
static int read_sectors(BlockDriverState *bs, uint64_t off, uint8_t *buf, size_t len)
{
    LuksFmtState *s = bs->opaque;
    int r = blk_file_pread(bs->fd, buf, len, s->payload + off);
    if (r < 0) {
        blk_set_error("%s: read error: %s", bs->filename, strerror(-r));
        return r;
    }
    return blk_cipher_crypt(s->cipher, off / SECTOR, buf, len, false);
}

static int luks_fmt_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    LuksFmtState *s = bs->opaque;
    uint8_t *p = buf;
    if (!s->cipher)
        return no_key(bs);
    /* Not while a sector of the range is read-modify-written: the file
     * holds it half old, half new meanwhile, which decrypts to noise
     * (with CBC, noise up to the sector's end). */
    BlkRange held;
    blk_range_lock(&s->rmw, &held, 0, off & ~(uint64_t)(SECTOR - 1),
                   (off + len + SECTOR - 1) & ~(uint64_t)(SECTOR - 1), false);
    int r = 0;
    while (len && r == 0) {
        uint64_t in = off & (SECTOR - 1);
        size_t n;
        if (in || len < SECTOR) {
            uint8_t sec[SECTOR];
            n = SECTOR - in < len ? SECTOR - in : len;
            if ((r = read_sectors(bs, off - in, sec, SECTOR)) == 0)
                memcpy(p, sec + in, n);
        } else {
            n = len & ~(size_t)(SECTOR - 1);
            r = read_sectors(bs, off, p, n);
        }
        off += n;
        p += n;
        len -= n;
    }
    blk_range_unlock(&s->rmw, &held);
    return r;
}

/* Whole sectors from buf (NULL: zeros), encrypted through a bounce buffer. */
static int write_sectors(BlockDriverState *bs, uint64_t off, const uint8_t *buf, size_t len)
{
    LuksFmtState *s = bs->opaque;
    size_t cap = len < CHUNK ? (size_t)len : CHUNK;
    uint8_t *tmp = malloc(cap);
    if (!tmp)
        return -ENOMEM;
    int r = 0;
    while (len && r == 0) {
        size_t n = len < cap ? (size_t)len : cap;
        if (buf)
            memcpy(tmp, buf, n);
        else
            memset(tmp, 0, n);
        if ((r = blk_cipher_crypt(s->cipher, off / SECTOR, tmp, n, true)) < 0)
            break;
        blk_fill(bs, s->payload + off, n);
        if ((r = blk_file_pwrite(bs->fd, tmp, n, s->payload + off)) < 0)
            blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
        off += n;
        len -= n;
        if (buf)
            buf += n;
    }
    free(tmp);
    return r;
}

/* The partial sectors at either end are read, patched and written back
 * whole under the sector's exclusive lock; the whole sectors between
 * them hold theirs shared, so they wait only for such a patch. */
static int write_data(BlockDriverState *bs, uint64_t off, const uint8_t *buf, uint64_t len)
{
    static const BlkSectorOps ops = {read_sectors, write_sectors, NULL};
    LuksFmtState *s = bs->opaque;
    if (!s->cipher)
        return no_key(bs);
    return blk_sector_pwrite(bs, &s->rmw, &ops, off, buf, len, 0);
}

static int luks_fmt_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    return write_data(bs, off, buf, len);
}

/* Zeros are stored encrypted like any data: a hole in the file would
 * read back as the decryption of zeros, which is noise. */
static int luks_fmt_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    (void)flags;
    return write_data(bs, off, NULL, len);
}

static int luks_fmt_flush(BlockDriverState *bs)
{
    if (bs->flags & BLK_O_UNSAFE)
        return 0;
    int e = blk_file_sync(bs->fd);
    if (e < 0) {
        blk_set_error("%s: flush failed: %s", bs->filename, strerror(-e));
        return e;
    }
    return 0;
}

/* The host file becomes end bytes long; what it gains is preallocated
 * as asked (plain zeros on disk, as QEMU leaves them: they read as
 * noise through the cipher). */
static int file_resize(int fd, const char *filename, uint64_t end, int prealloc)
{
    int64_t old = blk_file_size(fd);
    if (old < 0)
        return (int)old;
    int e = blk_file_truncate(fd, end);
    if (e < 0) {
        blk_set_error("%s: cannot resize: %s", filename, strerror(-e));
        return e;
    }
    if (end <= (uint64_t)old || prealloc == BLK_PREALLOC_OFF ||
        prealloc == BLK_PREALLOC_METADATA)
        return 0;
    if (prealloc == BLK_PREALLOC_FALLOC) {
        int r = blk_file_allocate(fd, (uint64_t)old, end - (uint64_t)old);
        if (r < 0) {
            blk_set_error("%s: cannot preallocate: %s", filename, strerror(-r));
            return r;
        }
        return 0;
    }
    static const uint8_t zero[65536];
    for (uint64_t o = (uint64_t)old; o < end;) {
        size_t n = end - o < sizeof(zero) ? (size_t)(end - o) : sizeof(zero);
        int r = blk_file_pwrite(fd, zero, n, o);
        if (r < 0) {
            blk_set_error("%s: write error: %s", filename, strerror(-r));
            return r;
        }
        o += n;
    }
    return 0;
}

static int luks_fmt_truncate(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink)
{
    (void)shrink; /* the tools ask before shrinking */
    LuksFmtState *s = bs->opaque;
    if (size > (uint64_t)INT64_MAX - s->payload) {
        blk_set_error("The requested file size is too large");
        return -EFBIG;
    }
    int r = file_resize(bs->fd, bs->filename, s->payload + size, prealloc);
    if (r == 0)
        bs->size = size;
    return r;
}

static int luks_fmt_get_info(BlockDriverState *bs, BlockInfo *info)
{
    LuksFmtState *s = bs->opaque;
    info->encrypted = true;
    info->is_luks = true;
    luks_get_info(&s->h, &info->luks);
    return 0;
}

/* The create options QEMU's luks driver takes, QEMU's defaults filled
 * in by luks_create() (aes-256, xts, plain64, sha256, 2000 ms). */
static int create_opts(BlockOptions *o, LuksCreateOpts *l, const char **secret, int *prealloc)
{
    const char *pa = blkopts_get(o, "preallocation");
    if ((*prealloc = pa ? blk_prealloc_parse(pa) : BLK_PREALLOC_OFF) < 0) {
        blk_set_error("invalid parameter value: %s", pa); /* QEMU's luks words */
        return -EINVAL;
    }
    memset(l, 0, sizeof(*l));
    *secret = blkopts_get(o, "key-secret");
    l->cipher_alg = blkopts_get(o, "cipher-alg");
    l->cipher_mode = blkopts_get(o, "cipher-mode");
    l->ivgen_alg = blkopts_get(o, "ivgen-alg");
    l->ivgen_hash_alg = blkopts_get(o, "ivgen-hash-alg");
    l->hash_alg = blkopts_get(o, "hash-alg");
    if (blkopts_get_uint(o, "iter-time", 2000, &l->iter_time_ms) < 0) {
        blk_set_error("Parameter 'iter-time' expects a number");
        return -EINVAL;
    }
    const char *unused = blkopts_first_unused(o);
    if (unused) {
        blk_set_error("Invalid parameter '%s'", unused);
        return -EINVAL;
    }
    if (!*secret) {
        blk_set_error("Parameter 'key-secret' is required for cipher");
        return -EINVAL;
    }
    if (!calf_ossl_ready())
        return -ENOTSUP;
    return luks_region_size(l) < 0 ? -EINVAL : 0;
}

static bool is_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

static int luks_fmt_create(const char *filename, uint64_t size, BlockOptions *opts)
{
    LuksCreateOpts l;
    const char *secret;
    int prealloc;
    int r = create_opts(opts, &l, &secret, &prealloc);
    if (r < 0)
        return r;
    if (size == BLK_SIZE_UNSET) {
        blk_set_error("Image creation needs a size parameter");
        return -EINVAL;
    }
    int64_t hlen = luks_region_size(&l);
    if (size > (uint64_t)INT64_MAX - (uint64_t)hlen) {
        blk_set_error("The requested file size is too large");
        return -EFBIG;
    }
    int fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        blk_set_error("Could not create '%s': %s", filename, strerror(e));
        return -e;
    }
    /* as QEMU: the whole file is sized (and preallocated) first, the
     * header written over its start */
    uint8_t *region = NULL;
    size_t len = 0;
    BlkCipher *c = NULL;
    r = file_resize(fd, filename, (uint64_t)hlen + size, prealloc);
    if (r == 0)
        r = luks_create(&l, secret, &region, &len, &c);
    /* the key slots not in use stay holes, as QEMU leaves them */
    for (size_t at = 0; r == 0 && at < len; at += 4096) {
        size_t n = len - at < 4096 ? len - at : 4096;
        if (!is_zero(region + at, n) && (r = blk_file_pwrite(fd, region + at, n, at)) < 0)
            blk_set_error("Could not write encryption header: %s", strerror(-r));
    }
    if (r == 0 && fsync(fd) < 0) {
        r = -errno;
        blk_set_error("%s: %s", filename, strerror(errno));
    }
    blk_cipher_free(c);
    if (region) {
        OPENSSL_cleanse(region, len);
        free(region);
    }
    blk_file_close(fd);
    if (r < 0)
        unlink(filename); /* as QEMU: what was there is gone anyway */
    return r;
}

static int region_sync(void *opaque)
{
    return luks_fmt_flush(opaque);
}

static int luks_fmt_amend(BlockDriverState *bs, BlockOptions *opts, bool force)
{
    static const char *const creation_only[] = {
        "key-secret", "cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg", "hash-alg",
        "size",
    };
    LuksFmtState *s = bs->opaque;
    for (int i = 0; i < opts->n; i++) {
        for (size_t k = 0; k < sizeof(creation_only) / sizeof(creation_only[0]); k++) {
            if (!strcmp(opts->opt[i].key, creation_only[k])) {
                blk_set_error("Invalid parameter '%s'\nThis option is only supported for image "
                              "creation", opts->opt[i].key);
                return -ENOTSUP;
            }
        }
    }
    bool wanted = luks_amend_wanted(opts, "");
    const char *unused = blkopts_first_unused(opts);
    if (unused) {
        blk_set_error("Invalid parameter '%s'", unused);
        return -EINVAL;
    }
    if (!wanted)
        return 0;
    LuksAmendOpts l;
    int r = luks_amend_parse(opts, "", &l);
    if (r < 0)
        return r;
    /* the header in s is the one on disk: the image is ours to write
     * (the write lock), and unlocked (open asked for the key) */
    uint8_t *region = malloc(s->payload);
    if (!region)
        return -ENOMEM;
    if ((r = blk_file_pread(bs->fd, region, s->payload, 0)) < 0) {
        blk_set_error("Could not read encryption header: %s", strerror(-r));
    } else {
        LuksRegionIO io = {bs->fd, 0, bs->filename, region_sync, bs};
        r = luks_amend_apply(&s->h, region, s->payload, &io, &l, force);
    }
    OPENSSL_cleanse(region, s->payload);
    free(region);
    return r;
}

const BlockDriver blk_luks_driver = {
    .name = "luks",
    .probe = luks_fmt_probe,
    .open = luks_fmt_open,
    .close = luks_fmt_close,
    .pread = luks_fmt_pread,
    .pwrite = luks_fmt_pwrite,
    .pwrite_zeroes = luks_fmt_pwrite_zeroes,
    .flush = luks_fmt_flush,
    .truncate = luks_fmt_truncate,
    .get_info = luks_fmt_get_info,
    .create = luks_fmt_create,
    .amend = luks_fmt_amend,
    .no_zero_init = true,
};
