/* LUKS1 headers (see luks.h): parse and validate, unlock a key slot,
 * create.  Facts from the LUKS1 on-disk format and QEMU's behaviour:
 * big-endian fields, key slot offsets in 512-byte sectors relative to
 * the start of the header, key material encrypted with the data cipher
 * from sector 0, anti-forensic split with a diffusion hash. */
#include "block/luks.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "block/ossl.h"

static const uint8_t luks_magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
#define SLOT_ENABLED  0x00ac71f3u
#define SLOT_DISABLED 0x0000deadu
#define KEY_SLOT_OFFSET 4096 /* key material starts here, 4 KiB aligned */
#define MIN_ITERS 1000

uint32_t luks_max_iters = LUKS_MAX_ITERS;

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    blk_set_error("LUKS header: %s", msg);
    return -EINVAL;
}

/* A NUL-terminated printable string in a fixed field. */
static int get_str(char *dst, const uint8_t *src, size_t len, const char *what)
{
    size_t n = strnlen((const char *)src, len);
    if (n == len)
        return bad("%s is not terminated", what);
    for (size_t i = 0; i < n; i++)
        if (src[i] < 0x20 || src[i] > 0x7e)
            return bad("%s contains unprintable bytes", what);
    memcpy(dst, src, n + 1);
    return 0;
}

static bool hash_supported(const char *h)
{
    static const char *const ok[] = {"sha1", "sha224", "sha256", "sha384", "sha512",
                                     "ripemd160"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(h, ok[i]))
            return EVP_get_digestbyname(h) != NULL;
    return false;
}

/* "xts-plain64", "cbc-essiv:sha256" with the key size into a spec. */
static int parse_cipher(LuksHeader *h)
{
    if (strcmp(h->cipher_name, "aes"))
        return bad("cipher '%s' is not supported (only aes)", h->cipher_name);
    char mode[32], *ivgen, *ivhash;
    snprintf(mode, sizeof(mode), "%s", h->cipher_mode);
    if (!(ivgen = strchr(mode, '-')))
        return bad("unexpected cipher mode string '%s'", h->cipher_mode);
    *ivgen++ = 0;
    if ((ivhash = strchr(ivgen, ':')))
        *ivhash++ = 0;
    bool xts = !strcmp(mode, "xts");
    uint32_t kb = xts ? h->key_bytes / 2 : h->key_bytes;
    if ((kb != 16 && kb != 24 && kb != 32) || (xts && h->key_bytes % 2))
        return bad("key length %" PRIu32 " does not fit the cipher", h->key_bytes);
    char alg[16];
    snprintf(alg, sizeof(alg), "aes-%u", kb * 8);
    if ((ivhash && strcmp(ivgen, "essiv")) || (!ivhash && !strcmp(ivgen, "essiv")))
        return bad("IV generator '%s' is malformed", h->cipher_mode);
    if (blk_cipher_spec_parse(&h->spec, alg, mode, ivgen, ivhash) < 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s", blk_error());
        return bad("%s", msg);
    }
    return 0;
}

static uint64_t split_sectors(uint32_t key_bytes)
{
    return ((uint64_t)key_bytes * LUKS_STRIPES + BLK_CRYPTO_SECTOR - 1) / BLK_CRYPTO_SECTOR;
}

static int check_slots(const LuksHeader *h, uint64_t region_len)
{
    uint64_t n = split_sectors(h->key_bytes);
    uint64_t hdr_sectors = (LUKS_HEADER_SIZE + BLK_CRYPTO_SECTOR - 1) / BLK_CRYPTO_SECTOR;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        uint64_t a = h->slot[i].key_sector;
        if (h->slot[i].stripes != LUKS_STRIPES)
            return bad("key slot %d has a stripe count other than 4000", i);
        if (a < hdr_sectors)
            return bad("key slot %d overlaps the header", i);
        if (a + n > h->payload_sector)
            return bad("key slot %d overlaps the encrypted payload", i);
        /* only active slots are ever read (QEMU checks no more) */
        if (h->slot[i].active && (a + n) * BLK_CRYPTO_SECTOR > region_len)
            return bad("key slot %d lies outside the header region", i);
        for (int j = 0; j < i; j++) {
            uint64_t b = h->slot[j].key_sector;
            if (a < b + n && b < a + n)
                return bad("key slot %d overlaps another key slot", i);
        }
        if (h->slot[i].active && (h->slot[i].iters < 1 || h->slot[i].iters > luks_max_iters))
            return bad("key slot %d has an iteration count out of range", i);
    }
    return 0;
}

int luks_parse(const uint8_t *buf, size_t len, uint64_t region_len, LuksHeader *h)
{
    memset(h, 0, sizeof(*h));
    if (len < LUKS_HEADER_SIZE || region_len < LUKS_HEADER_SIZE)
        return bad("the header region is too small (%" PRIu64 " bytes)", region_len);
    if (region_len > LUKS_MAX_REGION)
        return bad("the header region is too large (%" PRIu64 " bytes)", region_len);
    if (memcmp(buf, luks_magic, 6))
        return bad("bad magic");
    if (((buf[6] << 8) | buf[7]) != 1)
        return bad("unsupported version %" PRIu64, (uint64_t)((buf[6] << 8) | buf[7]));
    int r;
    if ((r = get_str(h->cipher_name, buf + 8, 32, "cipher name")) < 0 ||
        (r = get_str(h->cipher_mode, buf + 40, 32, "cipher mode")) < 0 ||
        (r = get_str(h->hash, buf + 72, 32, "hash name")) < 0 ||
        (r = get_str(h->uuid, buf + 168, 40, "uuid")) < 0)
        return r;
    h->payload_sector = get32(buf + 104);
    h->key_bytes = get32(buf + 108);
    memcpy(h->mk_digest, buf + 112, LUKS_DIGEST_LEN);
    memcpy(h->mk_salt, buf + 132, LUKS_SALT_LEN);
    h->mk_iters = get32(buf + 164);
    if (!hash_supported(h->hash))
        return bad("hash '%s' is not supported", h->hash);
    if ((r = parse_cipher(h)) < 0)
        return r;
    if (h->mk_iters < 1 || h->mk_iters > luks_max_iters)
        return bad("master key iteration count %" PRIu32 " is out of range", h->mk_iters);
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const uint8_t *s = buf + 208 + 48 * i;
        uint32_t active = get32(s);
        if (active != SLOT_ENABLED && active != SLOT_DISABLED)
            return bad("key slot %d has an invalid state", i);
        h->slot[i].active = active == SLOT_ENABLED;
        h->slot[i].iters = get32(s + 4);
        memcpy(h->slot[i].salt, s + 8, LUKS_SALT_LEN);
        h->slot[i].key_sector = get32(s + 40);
        h->slot[i].stripes = get32(s + 44);
    }
    return check_slots(h, region_len);
}

/* The anti-forensic diffusion: each digest-sized piece of the block is
 * replaced by hash(be32 index || piece), truncated to the piece. */
static int af_diffuse(const EVP_MD *md, uint8_t *block, size_t len)
{
    size_t dl = (size_t)EVP_MD_get_size(md);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0, pos = 0; pos < len && r == 0; i++, pos += dl) {
        size_t n = len - pos < dl ? len - pos : dl;
        uint8_t idx[4], out[EVP_MAX_MD_SIZE];
        put32(idx, (uint32_t)i);
        if (EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, idx, 4) != 1 ||
            EVP_DigestUpdate(ctx, block + pos, n) != 1 || EVP_DigestFinal_ex(ctx, out, NULL) != 1)
            r = -EIO;
        else
            memcpy(block + pos, out, n);
    }
    EVP_MD_CTX_free(ctx);
    return r;
}

/* Merges the stripes of split (stripes * len bytes) into key. */
static int af_merge(const char *hash, const uint8_t *split, size_t len, uint8_t *key)
{
    const EVP_MD *md = EVP_get_digestbyname(hash);
    uint8_t block[BLK_CRYPTO_MAX_KEY] = {0};
    if (!md || len > sizeof(block))
        return -EINVAL;
    for (int s = 0; s < LUKS_STRIPES - 1; s++) {
        for (size_t i = 0; i < len; i++)
            block[i] ^= split[s * len + i];
        int r = af_diffuse(md, block, len);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < len; i++)
        key[i] = block[i] ^ split[(LUKS_STRIPES - 1) * len + i];
    OPENSSL_cleanse(block, sizeof(block));
    return 0;
}

/* The inverse: random stripes, the last one makes them merge to key. */
static int af_split(const char *hash, const uint8_t *key, size_t len, uint8_t *split)
{
    const EVP_MD *md = EVP_get_digestbyname(hash);
    uint8_t block[BLK_CRYPTO_MAX_KEY] = {0};
    if (!md || len > sizeof(block))
        return -EINVAL;
    int r = blk_random_bytes(split, len * (LUKS_STRIPES - 1));
    for (int s = 0; r == 0 && s < LUKS_STRIPES - 1; s++) {
        for (size_t i = 0; i < len; i++)
            block[i] ^= split[s * len + i];
        r = af_diffuse(md, block, len);
    }
    for (size_t i = 0; r == 0 && i < len; i++)
        split[(LUKS_STRIPES - 1) * len + i] = block[i] ^ key[i];
    OPENSSL_cleanse(block, sizeof(block));
    return r;
}

/* The master key a slot holds if pass is right (checked by the caller). */
static int slot_master_key(const LuksHeader *h, int i, const uint8_t *region, const char *pass,
                           uint8_t *mk)
{
    size_t kb = h->key_bytes, splitlen = kb * LUKS_STRIPES;
    uint8_t slotkey[BLK_CRYPTO_MAX_KEY];
    uint8_t *split = malloc(splitlen);
    if (!split)
        return -ENOMEM;
    memcpy(split, region + (uint64_t)h->slot[i].key_sector * BLK_CRYPTO_SECTOR, splitlen);
    int r = blk_pbkdf2(h->hash, pass, strlen(pass), h->slot[i].salt, LUKS_SALT_LEN,
                       h->slot[i].iters, slotkey, kb);
    BlkCipher *c = r == 0 ? blk_cipher_new(&h->spec, slotkey) : NULL;
    if (r == 0 && !c)
        r = -EIO;
    if (r == 0)
        r = blk_cipher_crypt(c, 0, split, splitlen, false);
    if (r == 0)
        r = af_merge(h->hash, split, kb, mk);
    blk_cipher_free(c);
    OPENSSL_cleanse(slotkey, sizeof(slotkey));
    OPENSSL_cleanse(split, splitlen);
    free(split);
    return r;
}

/* 1 if pass opens active slot i (mk then holds the master key), 0 if
 * not, or -errno. */
static int slot_try(const LuksHeader *h, int i, const uint8_t *region, const char *pass,
                    uint8_t *mk)
{
    uint8_t digest[LUKS_DIGEST_LEN];
    if (!h->slot[i].active)
        return 0;
    int r = slot_master_key(h, i, region, pass, mk);
    if (r == 0)
        r = blk_pbkdf2(h->hash, mk, h->key_bytes, h->mk_salt, LUKS_SALT_LEN, h->mk_iters,
                       digest, sizeof(digest));
    if (r < 0) {
        blk_set_error("LUKS: cannot derive the key of slot %d", i);
        return r;
    }
    return CRYPTO_memcmp(digest, h->mk_digest, sizeof(digest)) == 0;
}

int luks_unlock(LuksHeader *h, const uint8_t *region, size_t region_len,
                const char *passphrase, BlkCipher **out)
{
    (void)region_len; /* luks_parse() checked every slot against it */
    uint8_t mk[BLK_CRYPTO_MAX_KEY];
    *out = NULL;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        int r = slot_try(h, i, region, passphrase, mk);
        if (r < 0) {
            OPENSSL_cleanse(mk, sizeof(mk));
            return r;
        }
        if (r) {
            *out = blk_cipher_new(&h->spec, mk);
            memcpy(h->master_key, mk, sizeof(mk));
            h->unlocked = *out != NULL;
            OPENSSL_cleanse(mk, sizeof(mk));
            return *out ? 0 : -EIO;
        }
    }
    OPENSSL_cleanse(mk, sizeof(mk));
    blk_set_error("Invalid password, cannot unlock any keyslot");
    return -EACCES;
}

/* A value QEMU's QAPI enum for the option does not have at all (rather
 * than one it has and calf cannot do) is refused in QAPI's words. */
static bool in_enum(const char *v, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(v, *list))
            return true;
    return false;
}

static int check_enums(const LuksCreateOpts *o)
{
    static const char *const algs[] = {"aes-128", "aes-192", "aes-256", "des", "3des",
                                       "cast5-128", "serpent-128", "serpent-192", "serpent-256",
                                       "twofish-128", "twofish-192", "twofish-256", NULL};
    static const char *const modes[] = {"ecb", "cbc", "xts", "ctr", NULL};
    static const char *const ivgens[] = {"plain", "plain64", "essiv", NULL};
    static const char *const hashes[] = {"md5", "sha1", "sha224", "sha256", "sha384", "sha512",
                                         "ripemd160", NULL};
    const struct {
        const char *name, *value;
        const char *const *list;
    } opts[] = {
        {"cipher-alg", o->cipher_alg, algs},         {"cipher-mode", o->cipher_mode, modes},
        {"ivgen-alg", o->ivgen_alg, ivgens},         {"ivgen-hash-alg", o->ivgen_hash_alg, hashes},
        {"hash-alg", o->hash_alg, hashes},
    };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (opts[i].value && !in_enum(opts[i].value, opts[i].list)) {
            blk_set_error("Parameter '%s' does not accept value '%s'", opts[i].name,
                          opts[i].value);
            return -EINVAL;
        }
    }
    return 0;
}

/* Options with QEMU's defaults filled in, checked. */
static int create_spec(const LuksCreateOpts *o, BlkCipherSpec *spec, const char **hash)
{
    if (check_enums(o) < 0)
        return -EINVAL;
    *hash = o->hash_alg ? o->hash_alg : "sha256";
    if (!hash_supported(*hash)) {
        blk_set_error("Hash algorithm '%s' is not supported", *hash);
        return -EINVAL;
    }
    const char *ivgen = o->ivgen_alg ? o->ivgen_alg : "plain64";
    const char *ivhash = o->ivgen_hash_alg ? o->ivgen_hash_alg : *hash;
    if (strcmp(ivgen, "essiv"))
        ivhash = NULL;
    return blk_cipher_spec_parse(spec, o->cipher_alg ? o->cipher_alg : "aes-256",
                                 o->cipher_mode ? o->cipher_mode : "xts", ivgen, ivhash);
}

static uint64_t slot_stride(size_t key_bytes)
{
    /* each slot's material rounded up to 4 KiB, as cryptsetup and QEMU */
    uint64_t n = split_sectors((uint32_t)key_bytes), a = KEY_SLOT_OFFSET / BLK_CRYPTO_SECTOR;
    return (n + a - 1) / a * a;
}

int64_t luks_region_size(const LuksCreateOpts *o)
{
    BlkCipherSpec spec;
    const char *hash;
    if (create_spec(o, &spec, &hash) < 0)
        return -EINVAL;
    uint64_t sectors = KEY_SLOT_OFFSET / BLK_CRYPTO_SECTOR +
                       LUKS_NUM_SLOTS * slot_stride(blk_cipher_key_bytes(&spec));
    return (int64_t)(sectors * BLK_CRYPTO_SECTOR);
}

static uint32_t clamp_iters(uint64_t n)
{
    return n < MIN_ITERS ? MIN_ITERS : n > LUKS_MAX_ITERS ? LUKS_MAX_ITERS : (uint32_t)n;
}

static void mode_string(const BlkCipherSpec *spec, char *buf, size_t len)
{
    static const char *const modes[] = {"ecb", "cbc", "xts"};
    static const char *const ivgens[] = {"plain", "plain64", "essiv"};
    snprintf(buf, len, "%s-%s%s%s", modes[spec->mode], ivgens[spec->ivgen],
             spec->ivgen == BLK_IVGEN_ESSIV ? ":" : "",
             spec->ivgen == BLK_IVGEN_ESSIV ? spec->ivhash : "");
}

static void make_uuid(char *out)
{
    uint8_t u[16];
    blk_random_bytes(u, sizeof(u));
    u[6] = (u[6] & 0x0f) | 0x40; /* version 4 */
    u[8] = (u[8] & 0x3f) | 0x80;
    sprintf(out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
            u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
            u[14], u[15]);
}

/* The master key split and encrypted under pass, as a key slot holds it. */
static int slot_seal(const BlkCipherSpec *spec, const char *hash, uint32_t iters,
                       const uint8_t *salt, const uint8_t *mk, const char *pass, uint8_t *dst)
{
    size_t kb = blk_cipher_key_bytes(spec), splitlen = kb * LUKS_STRIPES;
    uint8_t slotkey[BLK_CRYPTO_MAX_KEY];
    int r = blk_pbkdf2(hash, pass, strlen(pass), salt, LUKS_SALT_LEN, iters, slotkey, kb);
    BlkCipher *c = r == 0 ? blk_cipher_new(spec, slotkey) : NULL;
    if (r == 0 && !c)
        r = -EIO;
    if (r == 0)
        r = af_split(hash, mk, kb, dst);
    if (r == 0)
        r = blk_cipher_crypt(c, 0, dst, splitlen, true);
    blk_cipher_free(c);
    OPENSSL_cleanse(slotkey, sizeof(slotkey));
    return r;
}

int luks_create(const LuksCreateOpts *o, const char *passphrase, uint8_t **region,
                size_t *len, BlkCipher **out)
{
    BlkCipherSpec spec;
    const char *hash;
    int r = create_spec(o, &spec, &hash);
    if (r < 0)
        return r;
    size_t kb = blk_cipher_key_bytes(&spec);
    uint64_t stride = slot_stride(kb), first = KEY_SLOT_OFFSET / BLK_CRYPTO_SECTOR;
    uint64_t total = (first + LUKS_NUM_SLOTS * stride) * BLK_CRYPTO_SECTOR;
    uint8_t *buf = calloc(1, total), mk[BLK_CRYPTO_MAX_KEY], salt[2][LUKS_SALT_LEN];
    if (!buf)
        return -ENOMEM;
    /* QEMU's split of the time: the digest gets 1/8, each slot all of it */
    uint64_t per = blk_pbkdf2_iters_for(hash, o->iter_time_ms);
    uint32_t slot_iters = clamp_iters(per), mk_iters = clamp_iters(per / 8);
    if ((r = blk_random_bytes(mk, kb)) < 0 || (r = blk_random_bytes(salt[0], LUKS_SALT_LEN)) < 0 ||
        (r = blk_random_bytes(salt[1], LUKS_SALT_LEN)) < 0)
        goto out;
    memcpy(buf, luks_magic, 6);
    buf[7] = 1;
    strcpy((char *)buf + 8, "aes");
    mode_string(&spec, (char *)buf + 40, 32);
    snprintf((char *)buf + 72, 32, "%s", hash);
    put32(buf + 104, (uint32_t)(total / BLK_CRYPTO_SECTOR));
    put32(buf + 108, (uint32_t)kb);
    memcpy(buf + 132, salt[0], LUKS_SALT_LEN);
    put32(buf + 164, mk_iters);
    make_uuid((char *)buf + 168);
    if ((r = blk_pbkdf2(hash, mk, kb, salt[0], LUKS_SALT_LEN, mk_iters, buf + 112,
                        LUKS_DIGEST_LEN)) < 0)
        goto out;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        uint8_t *s = buf + 208 + 48 * i;
        put32(s, i ? SLOT_DISABLED : SLOT_ENABLED);
        put32(s + 4, i ? 0 : slot_iters);
        if (!i)
            memcpy(s + 8, salt[1], LUKS_SALT_LEN);
        put32(s + 40, (uint32_t)(first + i * stride));
        put32(s + 44, LUKS_STRIPES);
    }
    r = slot_seal(&spec, hash, slot_iters, salt[1], mk, passphrase,
                    buf + first * BLK_CRYPTO_SECTOR);
    if (r == 0 && !(*out = blk_cipher_new(&spec, mk)))
        r = -EIO;
out:
    OPENSSL_cleanse(mk, sizeof(mk));
    if (r < 0) {
        blk_set_error("cannot create the LUKS header: %s", strerror(-r));
        free(buf);
        return r;
    }
    *region = buf;
    *len = total;
    return 0;
}

void luks_get_info(const LuksHeader *h, BlockLuksInfo *info)
{
    static const char *const modes[] = {"ecb", "cbc", "xts"};
    static const char *const ivgens[] = {"plain", "plain64", "essiv"};
    memset(info, 0, sizeof(*info));
    snprintf(info->cipher_alg, sizeof(info->cipher_alg), "aes-%d", h->spec.aes_bits);
    snprintf(info->cipher_mode, sizeof(info->cipher_mode), "%s", modes[h->spec.mode]);
    snprintf(info->ivgen_alg, sizeof(info->ivgen_alg), "%s", ivgens[h->spec.ivgen]);
    snprintf(info->ivgen_hash_alg, sizeof(info->ivgen_hash_alg), "%s", h->spec.ivhash);
    snprintf(info->hash_alg, sizeof(info->hash_alg), "%s", h->hash);
    snprintf(info->uuid, sizeof(info->uuid), "%s", h->uuid);
    info->payload_offset = (uint64_t)h->payload_sector * BLK_CRYPTO_SECTOR;
    info->master_key_iters = h->mk_iters;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        info->slots[i].active = h->slot[i].active;
        info->slots[i].iters = h->slot[i].iters;
        info->slots[i].stripes = h->slot[i].stripes;
        info->slots[i].key_offset = (uint64_t)h->slot[i].key_sector * BLK_CRYPTO_SECTOR;
    }
}

/* ---- amend: key slots added and erased in place ---- */

static int amend_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int amend_fail(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    blk_set_error("%s", msg);
    return -EINVAL;
}

static int count_active(const LuksHeader *h)
{
    int n = 0;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++)
        n += h->slot[i].active;
    return n;
}

/* QEMU keeps keyslot in an int: larger numbers wrap */
static int32_t keyslot_index(uint64_t v)
{
    return (int32_t)(uint32_t)(v & 0xffffffffu);
}

/* An inactive slot of a hostile header may point past the region. */
static int slot_in_region(const LuksHeader *h, int i, size_t region_len)
{
    if (luks_slot_material_offset(h, i) + luks_slot_material_len(h) > region_len)
        return bad("key slot %d lies outside the header region", i);
    return 0;
}

static int select_add(const LuksHeader *h, size_t region_len, const LuksAmendOpts *o,
                      bool force, unsigned *slots)
{
    if (!o->new_secret)
        return amend_fail("'new-secret' is required to activate a keyslot");
    if (o->old_secret)
        return amend_fail("'old-secret' must not be given when activating keyslots");
    int32_t k = 0;
    if (o->has_keyslot) {
        k = keyslot_index(o->keyslot);
        if (k < 0 || k >= LUKS_NUM_SLOTS)
            return amend_fail("Invalid keyslot %u specified, must be between 0 and %u",
                              (uint32_t)k, LUKS_NUM_SLOTS - 1);
    } else {
        while (k < LUKS_NUM_SLOTS && h->slot[k].active)
            k++;
        if (k == LUKS_NUM_SLOTS)
            return amend_fail("Can't add a keyslot - all keyslots are in use");
    }
    if (!force && h->slot[k].active)
        return amend_fail("Refusing to overwrite active keyslot %d - please erase it first", k);
    if (!h->unlocked)
        return amend_fail("Parameter 'encrypt.key-secret' is required for cipher");
    *slots = 1u << k;
    return slot_in_region(h, k, region_len);
}

static int select_erase_slot(const LuksHeader *h, const uint8_t *region, const LuksAmendOpts *o,
                             bool force, unsigned *slots)
{
    int32_t k = keyslot_index(o->keyslot);
    uint8_t mk[BLK_CRYPTO_MAX_KEY];
    if (k < 0 || k >= LUKS_NUM_SLOTS)
        return amend_fail("Invalid keyslot %d specified, must be between 0 and %d", k,
                          LUKS_NUM_SLOTS - 1);
    if (o->old_secret) {
        int r = slot_try(h, k, region, o->old_secret, mk);
        OPENSSL_cleanse(mk, sizeof(mk));
        if (r < 0)
            return r;
        if (r == 0)
            return amend_fail("Given keyslot %d doesn't contain the given old password for "
                              "erase operation", k);
    }
    if (!force && !h->slot[k].active)
        return amend_fail("Given keyslot %d is already erased (inactive) ", k);
    if (!force && count_active(h) == 1)
        return amend_fail("Attempt to erase the only active keyslot %d which will erase all "
                          "the data in the image irreversibly - refusing operation", k);
    *slots = 1u << k;
    return 0;
}

static int select_erase_matching(const LuksHeader *h, const uint8_t *region, const char *pass,
                                 bool force, unsigned *slots)
{
    uint8_t mk[BLK_CRYPTO_MAX_KEY];
    int n = 0;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        int r = slot_try(h, i, region, pass, mk);
        if (r < 0) {
            OPENSSL_cleanse(mk, sizeof(mk));
            return r;
        }
        if (r) {
            *slots |= 1u << i;
            n++;
        }
    }
    OPENSSL_cleanse(mk, sizeof(mk));
    if (!n)
        return amend_fail("No keyslots match given (old) password for erase operation");
    if (!force && n == count_active(h))
        return amend_fail("All the active keyslots match the (old) password that was given "
                          "and erasing them will erase all the data in the image "
                          "irreversibly - refusing operation");
    return 0;
}

static int select_erase(const LuksHeader *h, const uint8_t *region, size_t region_len,
                        const LuksAmendOpts *o, bool force, unsigned *slots)
{
    if (o->new_secret)
        return amend_fail("'new-secret' must not be given when erasing keyslots");
    if (o->has_iter_time)
        return amend_fail("'iter-time' must not be given when erasing keyslots");
    int r;
    if (o->has_keyslot)
        r = select_erase_slot(h, region, o, force, slots);
    else if (o->old_secret)
        r = select_erase_matching(h, region, o->old_secret, force, slots);
    else
        r = amend_fail("To erase keyslot(s), either explicit keyslot index or the password "
                       "currently contained in them must be given");
    for (int i = 0; r == 0 && i < LUKS_NUM_SLOTS; i++)
        if (*slots & (1u << i))
            r = slot_in_region(h, i, region_len);
    return r;
}

int luks_amend_select(const LuksHeader *h, const uint8_t *region, size_t region_len,
                      const LuksAmendOpts *o, bool force, unsigned *slots)
{
    *slots = 0;
    int r = o->activate ? select_add(h, region_len, o, force, slots)
                        : select_erase(h, region, region_len, o, force, slots);
    if (r < 0)
        *slots = 0;
    return r;
}

int luks_slot_iters(const LuksHeader *h, int i, uint64_t iter_time_ms, uint32_t *iters)
{
    /* QEMU's scaling: iterations per second times the time asked for */
    uint64_t per_second = blk_pbkdf2_iters_for(h->hash, 1000);
    if (!per_second) {
        blk_set_error("Unable to get accurate CPU usage");
        return -EIO;
    }
    if (iter_time_ms && per_second > UINT64_MAX / iter_time_ms) {
        blk_set_error("PBKDF iterations %" PRIu64 " too large to scale: %s\nFailed to write "
                      "to keyslot %d", per_second, strerror(ERANGE), i);
        return -ERANGE;
    }
    *iters = clamp_iters(per_second * iter_time_ms / 1000);
    return 0;
}

int luks_slot_fill(LuksHeader *h, uint8_t *region, int i, const char *pass, uint32_t iters)
{
    uint8_t salt[LUKS_SALT_LEN];
    int r = h->unlocked ? blk_random_bytes(salt, sizeof(salt)) : -EINVAL;
    if (r == 0)
        r = slot_seal(&h->spec, h->hash, iters, salt, h->master_key, pass,
                      region + luks_slot_material_offset(h, i));
    if (r < 0) {
        blk_set_error("Failed to write to keyslot %d: %s", i, strerror(-r));
        return r;
    }
    h->slot[i].iters = iters;
    memcpy(h->slot[i].salt, salt, sizeof(salt));
    return 0;
}

void luks_slot_clear(LuksHeader *h, int i)
{
    h->slot[i].active = false;
    h->slot[i].iters = 0;
    memset(h->slot[i].salt, 0, LUKS_SALT_LEN);
}

void luks_slot_encode(const LuksHeader *h, int i, uint8_t out[48])
{
    put32(out, h->slot[i].active ? SLOT_ENABLED : SLOT_DISABLED);
    put32(out + 4, h->slot[i].iters);
    memcpy(out + 8, h->slot[i].salt, LUKS_SALT_LEN);
    put32(out + 40, h->slot[i].key_sector);
    put32(out + 44, h->slot[i].stripes);
}

size_t luks_slot_entry_offset(int i)
{
    return 208 + 48 * (size_t)i;
}

uint64_t luks_slot_material_offset(const LuksHeader *h, int i)
{
    return (uint64_t)h->slot[i].key_sector * BLK_CRYPTO_SECTOR;
}

size_t luks_slot_material_len(const LuksHeader *h)
{
    return (size_t)h->key_bytes * LUKS_STRIPES;
}

/* ---- amend: the options and their application to a header region ---- */

/* QEMU's option number parsing: strtoull rules, so "-1" wraps */
static int amend_number(BlockOptions *o, const char *key, bool *has, uint64_t *out)
{
    const char *v = blkopts_get(o, key);
    *has = v != NULL;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (errno == ERANGE) {
        blk_set_error("Value '%s' is out of range for parameter '%s'", v, key);
        return -EINVAL;
    }
    if (end == v || *end) {
        blk_set_error("Parameter '%s' expects a number", key);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

static const char *const amend_keys[] = {"state", "keyslot", "new-secret", "old-secret",
                                         "iter-time"};

static const char *amend_get(BlockOptions *opts, const char *prefix, const char *name,
                             char *key, size_t len)
{
    snprintf(key, len, "%s%s", prefix, name);
    return blkopts_get(opts, key);
}

bool luks_amend_wanted(BlockOptions *opts, const char *prefix)
{
    char key[64];
    bool wanted = false;
    for (size_t k = 0; k < sizeof(amend_keys) / sizeof(amend_keys[0]); k++)
        if (amend_get(opts, prefix, amend_keys[k], key, sizeof(key)))
            wanted = true;
    return wanted;
}

int luks_amend_parse(BlockOptions *opts, const char *prefix, LuksAmendOpts *l)
{
    char key[64];
    memset(l, 0, sizeof(*l));
    int r;
    amend_get(opts, prefix, "keyslot", key, sizeof(key));
    if ((r = amend_number(opts, key, &l->has_keyslot, &l->keyslot)) < 0)
        return r;
    amend_get(opts, prefix, "iter-time", key, sizeof(key));
    if ((r = amend_number(opts, key, &l->has_iter_time, &l->iter_time_ms)) < 0)
        return r;
    l->new_secret = amend_get(opts, prefix, "new-secret", key, sizeof(key));
    l->old_secret = amend_get(opts, prefix, "old-secret", key, sizeof(key));
    const char *state = amend_get(opts, prefix, "state", key, sizeof(key));
    if (!state) {
        blk_set_error("Parameter 'state' is missing");
        return -EINVAL;
    }
    if (strcmp(state, "active") && strcmp(state, "inactive")) {
        blk_set_error("Parameter 'state' does not accept value '%s'", state);
        return -EINVAL;
    }
    l->activate = !strcmp(state, "active");
    if (!l->has_iter_time)
        l->iter_time_ms = 2000;
    return 0;
}

/* Slot i's header entry as h has it, on disk before anything else. */
static int amend_write_entry(LuksHeader *h, const LuksRegionIO *io, int i)
{
    uint8_t e[48];
    luks_slot_encode(h, i, e);
    int r = blk_file_pwrite(io->fd, e, sizeof(e), io->off + luks_slot_entry_offset(i));
    if (r < 0) {
        blk_set_error("%s: cannot write the LUKS header: %s", io->filename, strerror(-r));
        return r;
    }
    return io->sync(io->opaque);
}

static int amend_write_material(LuksHeader *h, const LuksRegionIO *io, const uint8_t *region,
                                int i)
{
    uint64_t at = luks_slot_material_offset(h, i);
    int r = blk_file_pwrite(io->fd, region + at, luks_slot_material_len(h), io->off + at);
    if (r < 0) {
        blk_set_error("%s: cannot write LUKS key material: %s", io->filename, strerror(-r));
        return r;
    }
    return io->sync(io->opaque);
}

/* The new key's material is on disk before the entry that activates
 * it: a crash in between leaves an inactive slot and the old keys. */
static int amend_add(LuksHeader *h, uint8_t *region, const LuksRegionIO *io, int i,
                     const LuksAmendOpts *o)
{
    int r = 0;
    if (h->slot[i].active) { /* --force: the old key goes first */
        luks_slot_clear(h, i);
        r = amend_write_entry(h, io, i);
    }
    uint32_t iters = 0;
    if (r == 0)
        r = luks_slot_iters(h, i, o->iter_time_ms, &iters);
    if (r == 0)
        r = luks_slot_fill(h, region, i, o->new_secret, iters);
    if (r == 0)
        r = amend_write_material(h, io, region, i);
    if (r == 0) {
        h->slot[i].active = true;
        r = amend_write_entry(h, io, i);
    }
    if (r < 0)
        luks_slot_clear(h, i);
    return r;
}

/* Deactivated on disk before the material is overwritten. */
static int amend_erase(LuksHeader *h, uint8_t *region, const LuksRegionIO *io, int i)
{
    luks_slot_clear(h, i);
    int r = amend_write_entry(h, io, i);
    if (r == 0)
        r = blk_random_bytes(region + luks_slot_material_offset(h, i), luks_slot_material_len(h));
    if (r == 0)
        r = amend_write_material(h, io, region, i);
    return r;
}

int luks_amend_apply(LuksHeader *h, uint8_t *region, size_t region_len, const LuksRegionIO *io,
                     const LuksAmendOpts *o, bool force)
{
    unsigned slots;
    int r = luks_amend_select(h, region, region_len, o, force, &slots);
    for (int i = 0; r == 0 && i < LUKS_NUM_SLOTS; i++) {
        if (!(slots & (1u << i)))
            continue;
        r = o->activate ? amend_add(h, region, io, i, o) : amend_erase(h, region, io, i);
    }
    return r;
}
