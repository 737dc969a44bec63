/* Encryption in qcow2: legacy AES (crypt_method 1) and LUKS (crypt_method
 * 2, header region named by extension 0x0537be77).  Guest data is
 * encrypted per 512-byte sector; the IV's sector number is the guest
 * offset for AES and the host offset for LUKS (QEMU's
 * crypt_physical_offset), so a LUKS cluster that moves (copy on write)
 * is re-encrypted for its new place.  Compressed clusters are never
 * encrypted (and never written to encrypted images). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include "block/ossl.h"

#include "block/luks.h"
#include "block/qcow2.h"

#define SECTOR BLK_CRYPTO_SECTOR

static Qcow2Ext *crypto_ext(Qcow2State *s)
{
    for (int i = 0; i < s->nexts; i++)
        if (s->exts[i].type == QCOW2_EXT_CRYPTO)
            return &s->exts[i];
    return NULL;
}

/* Reads the LUKS header region the extension points to (not parsed). */
static int luks_read_region(Qcow2State *s, uint8_t **region, uint64_t *off, uint64_t *len)
{
    const char *fn = s->bs->filename;
    Qcow2Ext *e = crypto_ext(s);
    if (!e) {
        blk_set_error("%s: missing the crypto header extension for LUKS encryption", fn);
        return -EINVAL;
    }
    if (e->len != 16) {
        blk_set_error("%s: crypto header extension has length %u, not 16", fn, e->len);
        return -EINVAL;
    }
    uint64_t o = qcow2_be64(e->data), n = qcow2_be64(e->data + 8);
    if (o & (s->cluster_size - 1) || o == 0) {
        blk_set_error("%s: LUKS header offset 0x%" PRIx64 " is not a cluster past the header",
                      fn, o);
        return -EINVAL;
    }
    if (n < LUKS_HEADER_SIZE || n > LUKS_MAX_REGION || o > s->file_end ||
        n > s->file_end - o) {
        blk_set_error("%s: LUKS header region (0x%" PRIx64 ", %" PRIu64 " bytes) is invalid or "
                      "beyond the end of the file", fn, o, n);
        return -EINVAL;
    }
    uint8_t *buf = malloc(n);
    if (!buf)
        return -ENOMEM;
    int r = blk_file_pread(s->fd, buf, n, o);
    if (r < 0) {
        blk_set_error("%s: cannot read the LUKS header: %s", fn, strerror(-r));
        free(buf);
        return r;
    }
    *region = buf;
    *off = o;
    *len = n;
    return 0;
}

/* Reads and checks the LUKS header the extension points to. */
static int luks_load(Qcow2State *s, uint8_t **region, uint64_t *len)
{
    uint8_t *buf;
    uint64_t off, n;
    int r = luks_read_region(s, &buf, &off, &n);
    if (r < 0)
        return r;
    if (!(s->luks = malloc(sizeof(*s->luks))) || (r = luks_parse(buf, n, n, s->luks)) < 0) {
        if (r < 0) {
            char msg[300];
            snprintf(msg, sizeof(msg), "%s", blk_error());
            blk_set_error("%s: %s", s->bs->filename, msg);
        }
        free(buf);
        return r < 0 ? r : -ENOMEM;
    }
    *region = buf;
    *len = n;
    return 0;
}

int qcow2_crypto_open(Qcow2State *s, BlockOptions *opts)
{
    /* the command line resolved --object secret: the value is the passphrase */
    const char *key = opts ? blkopts_get(opts, "encrypt.key-secret") : NULL;
    const char *fmt = opts ? blkopts_get(opts, "encrypt.format") : NULL;
    const char *have = s->crypt_method == 1 ? "aes" : s->crypt_method == 2 ? "luks" : NULL;
    if (fmt && strcmp(fmt, "aes") && strcmp(fmt, "luks")) {
        blk_set_error("Invalid parameter '%s' for encrypt.format", fmt);
        return -EINVAL;
    }
    if (fmt && !have) {
        blk_set_error("No encryption in image header, but options specified format '%s'", fmt);
        return -EINVAL;
    }
    if (fmt && strcmp(fmt, have)) {
        blk_set_error("Header reported '%s' encryption format but options specify '%s'", have,
                      fmt);
        return -EINVAL;
    }
    if (s->crypt_method && !calf_ossl_ready())
        return -ENOTSUP;
    if (s->bs->flags & BLK_O_NO_IO)
        key = NULL; /* as QEMU's info: the header is read, nothing unlocked */
    if (s->crypt_method == 1) {
        if (key && !(s->crypto = blk_cipher_new_legacy_aes(key)))
            return -EIO;
        return 0;
    }
    if (s->crypt_method != 2)
        return 0;
    s->crypt_physical = true;
    uint8_t *region;
    uint64_t len;
    int r = luks_load(s, &region, &len);
    if (r < 0)
        return r;
    if (key)
        r = luks_unlock(s->luks, region, len, key, &s->crypto);
    free(region);
    return r;
}

void qcow2_crypto_close(Qcow2State *s)
{
    blk_cipher_free(s->crypto);
    s->crypto = NULL;
    if (s->luks)
        OPENSSL_cleanse(s->luks, sizeof(*s->luks));
    free(s->luks);
    s->luks = NULL;
}

int qcow2_crypt(Qcow2State *s, uint64_t guest, uint64_t host, uint8_t *buf, size_t len,
                bool encrypt)
{
    if (!s->crypto) {
        blk_set_error("%s: the image is encrypted and no key was given (Parameter "
                      "'encrypt.key-secret' is required for cipher)", s->bs->filename);
        return -EACCES;
    }
    if ((guest | host | len) & (SECTOR - 1)) {
        blk_set_error("%s: encrypted I/O must cover whole sectors", s->bs->filename);
        return -EINVAL;
    }
    return blk_cipher_crypt(s->crypto, (s->crypt_physical ? host : guest) / SECTOR, buf, len,
                            encrypt);
}

int qcow2_crypt_copy(Qcow2State *s, uint64_t guest, uint64_t host, const void *buf, size_t len,
                     uint8_t **out)
{
    *out = malloc(len ? len : 1);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, buf, len);
    int r = qcow2_crypt(s, guest, host, *out, len, true);
    if (r < 0) {
        free(*out);
        *out = NULL;
    }
    return r;
}

int qcow2_crypt_read(Qcow2State *s, uint64_t guest, uint64_t host, uint8_t *buf, size_t n)
{
    /* guest and host offsets share their place inside the cluster, so
     * their sector boundaries line up */
    uint64_t head = host & (SECTOR - 1);
    uint64_t len = (head + n + SECTOR - 1) & ~(uint64_t)(SECTOR - 1);
    uint8_t *tmp = malloc(len);
    if (!tmp)
        return -ENOMEM;
    int r = blk_file_pread(s->data_fd, tmp, len, host - head);
    if (r < 0)
        blk_set_error("%s: read error: %s", s->bs->filename, strerror(-r));
    else
        r = qcow2_crypt(s, guest - head, host - head, tmp, len, false);
    if (r == 0)
        memcpy(buf, tmp + head, n);
    free(tmp);
    return r;
}

static int rmw_read(BlockDriverState *bs, uint64_t off, uint8_t *buf, size_t len)
{
    return qcow2_pread(bs, off, buf, len);
}

static int rmw_write(BlockDriverState *bs, uint64_t off, const uint8_t *buf, size_t len)
{
    return qcow2_pwrite_sectors(bs, off, buf, len);
}

/* Encrypted data is stored in whole sectors: the partial sectors at
 * either end of a request are read, patched and written back whole.
 * buf NULL writes zeros. */
int qcow2_crypto_pwrite(BlockDriverState *bs, uint64_t off, const uint8_t *buf, uint64_t len,
                        int zflags)
{
    static const BlkSectorOps ops = {rmw_read, rmw_write, qcow2_pwrite_zeroes_sectors};
    Qcow2State *s = bs->opaque;
    return blk_sector_pwrite(bs, &s->crypt_rmw, &ops, off, buf, len, zflags);
}

/* ---- creation ---- */

int qcow2_crypto_parse_create(BlockOptions *o, struct qcow2_crypto_create *c)
{
    memset(c, 0, sizeof(*c));
    const char *enc = blkopts_get(o, "encryption");
    const char *fmt = blkopts_get(o, "encrypt.format");
    bool legacy = false;
    if (enc && blkopts_get_bool(o, "encryption", false, &legacy) < 0)
        return -EINVAL;
    if (legacy && fmt) {
        blk_set_error("Options \"encryption\" and \"encrypt.format\" are mutually exclusive");
        return -EINVAL;
    }
    if (legacy || (fmt && !strcmp(fmt, "aes")))
        c->method = 1;
    else if (fmt && !strcmp(fmt, "luks"))
        c->method = 2;
    else if (fmt) {
        blk_set_error("Invalid parameter '%s' for encrypt.format", fmt);
        return -EINVAL;
    }
    c->secret = blkopts_get(o, "encrypt.key-secret");
    LuksCreateOpts *l = &c->luks;
    l->cipher_alg = blkopts_get(o, "encrypt.cipher-alg");
    l->cipher_mode = blkopts_get(o, "encrypt.cipher-mode");
    l->ivgen_alg = blkopts_get(o, "encrypt.ivgen-alg");
    l->ivgen_hash_alg = blkopts_get(o, "encrypt.ivgen-hash-alg");
    l->hash_alg = blkopts_get(o, "encrypt.hash-alg");
    int r = blkopts_get_uint(o, "encrypt.iter-time", 2000, &l->iter_time_ms);
    if (r < 0)
        return r;
    bool luks_opts = l->cipher_alg || l->cipher_mode || l->ivgen_alg || l->ivgen_hash_alg ||
                     l->hash_alg || blkopts_get(o, "encrypt.iter-time");
    if (luks_opts && c->method != 2) {
        blk_set_error("Invalid parameter '%s'",
                      c->method ? "encrypt.cipher-alg" : "encrypt.format");
        return -EINVAL;
    }
    if (c->method && !c->secret) {
        blk_set_error("Parameter 'encrypt.key-secret' is required for cipher");
        return -EINVAL;
    }
    if (c->method && !calf_ossl_ready())
        return -ENOTSUP;
    if (c->method == 2 && luks_region_size(l) < 0)
        return -EINVAL;
    return 0;
}

int qcow2_crypto_create(Qcow2State *s, const struct qcow2_crypto_create *c)
{
    if (!c->method)
        return 0;
    s->crypt_method = c->method;
    if (c->method == 1) {
        s->crypto = blk_cipher_new_legacy_aes(c->secret);
        return s->crypto ? qcow2_update_header(s) : -EIO;
    }
    uint8_t *region = NULL;
    size_t len = 0;
    int r = luks_create(&c->luks, c->secret, &region, &len, &s->crypto);
    if (r < 0)
        return r;
    int64_t off = qcow2_alloc_clusters(s, qcow2_align_up(len, s->cluster_size) >> s->cluster_bits);
    if (off < 0) {
        free(region);
        return (int)off;
    }
    /* the whole clusters belong to the region: the file covers them */
    uint64_t end = (uint64_t)off + qcow2_align_up(len, s->cluster_size);
    r = blk_file_pwrite(s->fd, region, len, (uint64_t)off);
    free(region);
    if (r == 0 && blk_file_size(s->fd) < (int64_t)end)
        r = blk_file_grow_to(s->fd, end);
    if (r < 0) {
        blk_set_error("%s: cannot write the LUKS header: %s", s->bs->filename, strerror(-r));
        return r;
    }
    Qcow2Ext *n = realloc(s->exts, (s->nexts + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    s->exts = n;
    n[s->nexts] = (Qcow2Ext){.type = QCOW2_EXT_CRYPTO, .len = 16, .data = malloc(16)};
    if (!n[s->nexts].data)
        return -ENOMEM;
    qcow2_put64(n[s->nexts].data, (uint64_t)off);
    qcow2_put64(n[s->nexts].data + 8, len);
    s->nexts++;
    s->crypt_physical = true;
    /* the region, its refcounts and the table entries of any refcount
     * blocks it needed (hooked up at a sync) are on disk before the
     * header names it: 512-byte clusters need 16 new blocks for 2 MiB */
    if ((r = qcow2_flush_metadata(s)) < 0 || (r = qcow2_sync(s)) < 0)
        return r;
    return qcow2_update_header(s);
}

void qcow2_crypto_info(Qcow2State *s, BlockInfo *info)
{
    if (s->crypt_method == 1)
        info->encrypt_format = "aes";
    if (s->crypt_method == 2 && s->luks) {
        info->encrypt_format = "luks";
        luks_get_info(s->luks, &info->luks);
    }
}

/* ---- amend: LUKS key slots ---- */

int qcow2_crypto_amend_parse(Qcow2State *s, BlockOptions *opts, struct qcow2_crypto_amend *a)
{
    memset(a, 0, sizeof(*a));
    if (!(a->wanted = luks_amend_wanted(opts, "encrypt.")))
        return 0;
    if (!s->crypt_method) {
        blk_set_error("Can't amend encryption options - encryption not present");
        return -EINVAL;
    }
    if (s->crypt_method != 2) {
        blk_set_error("Only LUKS encryption options can be amended");
        return -EINVAL;
    }
    return luks_amend_parse(opts, "encrypt.", &a->luks);
}

static int amend_sync(void *opaque)
{
    return qcow2_sync(opaque);
}

int qcow2_crypto_amend(Qcow2State *s, const struct qcow2_crypto_amend *a, bool force)
{
    if (!a->wanted)
        return 0;
    uint8_t *region;
    uint64_t off, len;
    int r = luks_read_region(s, &region, &off, &len);
    if (r < 0)
        return r;
    LuksRegionIO io = {s->fd, off, s->bs->filename, amend_sync, s};
    r = luks_amend_apply(s->luks, region, len, &io, &a->luks, force);
    OPENSSL_cleanse(region, len);
    free(region);
    return r;
}
