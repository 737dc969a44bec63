/* Sector ciphers (see crypto.h).  One implementation for qcow v1, qcow2
 * legacy AES and LUKS. */
#include "block/crypto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include "block/ossl.h"

#include "block/block.h"

struct BlkCipher {
    BlkCipherSpec spec;
    const EVP_CIPHER *evp;
    uint8_t key[BLK_CRYPTO_MAX_KEY];
    const EVP_CIPHER *essiv_evp; /* ECB cipher keyed with hash(key) */
    uint8_t essiv_key[BLK_CRYPTO_MAX_KEY];
};

size_t blk_cipher_key_bytes(const BlkCipherSpec *spec)
{
    return (size_t)spec->aes_bits / 8 * (spec->mode == BLK_CMODE_XTS ? 2 : 1);
}

static const EVP_CIPHER *evp_for(int bits, enum blk_cmode mode)
{
    switch (mode) {
    case BLK_CMODE_ECB:
        return bits == 128 ? EVP_aes_128_ecb()
             : bits == 192 ? EVP_aes_192_ecb() : EVP_aes_256_ecb();
    case BLK_CMODE_CBC:
        return bits == 128 ? EVP_aes_128_cbc()
             : bits == 192 ? EVP_aes_192_cbc() : EVP_aes_256_cbc();
    case BLK_CMODE_XTS:
        /* OpenSSL has no XTS for AES-192 */
        return bits == 128 ? EVP_aes_128_xts() : bits == 256 ? EVP_aes_256_xts() : NULL;
    }
    return NULL;
}

int blk_cipher_spec_parse(BlkCipherSpec *spec, const char *alg, const char *mode,
                          const char *ivgen, const char *ivhash)
{
    memset(spec, 0, sizeof(*spec));
    if (!strcmp(alg, "aes-128") || !strcmp(alg, "aes-192") || !strcmp(alg, "aes-256")) {
        spec->aes_bits = atoi(alg + 4);
    } else {
        blk_set_error("Cipher algorithm '%s' is not supported (aes-128, aes-192, aes-256)", alg);
        return -EINVAL;
    }
    if (!strcmp(mode, "xts"))
        spec->mode = BLK_CMODE_XTS;
    else if (!strcmp(mode, "cbc"))
        spec->mode = BLK_CMODE_CBC;
    else if (!strcmp(mode, "ecb"))
        spec->mode = BLK_CMODE_ECB;
    else {
        blk_set_error("Cipher mode '%s' is not supported (xts, cbc, ecb)", mode);
        return -EINVAL;
    }
    if (!evp_for(spec->aes_bits, spec->mode)) {
        blk_set_error("Cipher '%s' in mode '%s' is not supported", alg, mode);
        return -EINVAL;
    }
    if (!strcmp(ivgen, "plain"))
        spec->ivgen = BLK_IVGEN_PLAIN;
    else if (!strcmp(ivgen, "plain64"))
        spec->ivgen = BLK_IVGEN_PLAIN64;
    else if (!strcmp(ivgen, "essiv"))
        spec->ivgen = BLK_IVGEN_ESSIV;
    else {
        blk_set_error("IV generator '%s' is not supported (plain, plain64, essiv)", ivgen);
        return -EINVAL;
    }
    if (spec->ivgen == BLK_IVGEN_ESSIV) {
        const char *h = ivhash ? ivhash : "sha256";
        const EVP_MD *md = EVP_get_digestbyname(h);
        /* the ESSIV key is the hash of the key, used as an AES key */
        int n = md ? EVP_MD_get_size(md) : 0;
        if (strlen(h) >= sizeof(spec->ivhash) || (n != 16 && n != 24 && n != 32)) {
            blk_set_error("Hash '%s' cannot key an ESSIV cipher", h);
            return -EINVAL;
        }
        strcpy(spec->ivhash, h);
    }
    return 0;
}

BlkCipher *blk_cipher_new(const BlkCipherSpec *spec, const uint8_t *key)
{
    if (!calf_ossl_ready())
        return NULL;
    BlkCipher *c = calloc(1, sizeof(*c));
    if (!c) {
        blk_set_error("out of memory");
        return NULL;
    }
    c->spec = *spec;
    c->evp = evp_for(spec->aes_bits, spec->mode);
    size_t kb = blk_cipher_key_bytes(spec);
    if (!c->evp || kb > sizeof(c->key)) {
        blk_set_error("unsupported cipher");
        free(c);
        return NULL;
    }
    memcpy(c->key, key, kb);
    if (spec->ivgen == BLK_IVGEN_ESSIV) {
        const EVP_MD *md = EVP_get_digestbyname(spec->ivhash);
        unsigned int n = 0;
        if (!md || EVP_Digest(key, kb, c->essiv_key, &n, md, NULL) != 1 ||
            !(c->essiv_evp = evp_for((int)n * 8, BLK_CMODE_ECB))) {
            blk_set_error("cannot set up the ESSIV cipher");
            blk_cipher_free(c);
            return NULL;
        }
    }
    return c;
}

BlkCipher *blk_cipher_new_legacy_aes(const char *passphrase)
{
    BlkCipherSpec spec = {.aes_bits = 128, .mode = BLK_CMODE_CBC, .ivgen = BLK_IVGEN_PLAIN64};
    uint8_t key[16] = {0};
    size_t n = strlen(passphrase);
    memcpy(key, passphrase, n < 16 ? n : 16);
    return blk_cipher_new(&spec, key);
}

void blk_cipher_free(BlkCipher *c)
{
    if (!c)
        return;
    /* keys should not linger in freed memory */
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

static int make_iv(BlkCipher *c, EVP_CIPHER_CTX *ivctx, uint64_t sector, uint8_t iv[16])
{
    memset(iv, 0, 16);
    int bytes = c->spec.ivgen == BLK_IVGEN_PLAIN ? 4 : 8;
    for (int b = 0; b < bytes; b++)
        iv[b] = (uint8_t)(sector >> (8 * b));
    if (c->spec.ivgen != BLK_IVGEN_ESSIV)
        return 0;
    int outl = 0;
    if (EVP_EncryptUpdate(ivctx, iv, &outl, iv, 16) != 1 || outl != 16)
        return -EIO;
    return 0;
}

int blk_cipher_crypt(BlkCipher *c, uint64_t sector, uint8_t *buf, size_t len, bool encrypt)
{
    if (len % 16) {
        blk_set_error("encrypted I/O of %zu bytes is not a multiple of the block size", len);
        return -EINVAL;
    }
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new(), *ivctx = NULL;
    int r = ctx ? 0 : -ENOMEM;
    if (r == 0 && (EVP_CipherInit_ex(ctx, c->evp, NULL, c->key, NULL, encrypt) != 1 ||
                   EVP_CIPHER_CTX_set_padding(ctx, 0) != 1))
        r = -EIO;
    if (r == 0 && c->essiv_evp) {
        ivctx = EVP_CIPHER_CTX_new();
        if (!ivctx || EVP_EncryptInit_ex(ivctx, c->essiv_evp, NULL, c->essiv_key, NULL) != 1 ||
            EVP_CIPHER_CTX_set_padding(ivctx, 0) != 1)
            r = -EIO;
    }
    for (size_t pos = 0; r == 0 && pos < len; pos += BLK_CRYPTO_SECTOR, sector++) {
        size_t n = len - pos < BLK_CRYPTO_SECTOR ? len - pos : BLK_CRYPTO_SECTOR;
        uint8_t iv[16];
        int outl = 0;
        if ((r = make_iv(c, ivctx, sector, iv)) < 0)
            break;
        if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, c->spec.mode == BLK_CMODE_ECB ? NULL : iv,
                              encrypt) != 1 ||
            EVP_CipherUpdate(ctx, buf + pos, &outl, buf + pos, (int)n) != 1 || (size_t)outl != n)
            r = -EIO;
    }
    if (r == -EIO)
        blk_set_error("%s failed", encrypt ? "encryption" : "decryption");
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_CTX_free(ivctx);
    return r;
}

int blk_pbkdf2(const char *hash, const void *pass, size_t passlen, const uint8_t *salt,
               size_t saltlen, uint32_t iterations, uint8_t *out, size_t outlen)
{
    const EVP_MD *md = EVP_get_digestbyname(hash);
    if (!md || iterations == 0)
        return -EINVAL;
    if (PKCS5_PBKDF2_HMAC(pass, (int)passlen, salt, (int)saltlen, (int)iterations, md,
                          (int)outlen, out) != 1)
        return -EIO;
    return 0;
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

uint64_t blk_pbkdf2_iters_for(const char *hash, uint64_t ms)
{
    static const uint8_t salt[32];
    uint8_t out[32];
    /* double the work until it takes long enough to time reliably */
    for (uint32_t iters = 1 << 10; iters < (1u << 30); iters *= 2) {
        double t0 = thread_cpu_ms();
        if (blk_pbkdf2(hash, "calf", 4, salt, sizeof(salt), iters, out, sizeof(out)) < 0)
            return 0;
        double dt = thread_cpu_ms() - t0;
        if (dt >= 50)
            return (uint64_t)(iters / dt * (double)ms);
    }
    return 0;
}

int blk_random_bytes(uint8_t *buf, size_t len)
{
    if (!calf_ossl_ready())
        return -ENOTSUP;
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -EIO;
}

int blk_sector_pwrite(BlockDriverState *bs, BlkRangeLock *lock, const BlkSectorOps *ops,
                      uint64_t off, const uint8_t *buf, uint64_t len, int zflags)
{
    const uint64_t ss = BLK_SECTOR_SIZE;
    int r = 0;
    while (len && r == 0) {
        uint64_t in = off & (ss - 1), n;
        BlkRange held;
        if (in || len < ss) {
            uint8_t sec[BLK_SECTOR_SIZE];
            n = ss - in < len ? ss - in : len;
            blk_range_lock(lock, &held, 0, off - in, off - in + ss, true);
            if ((r = ops->read(bs, off - in, sec, ss)) == 0) {
                if (buf)
                    memcpy(sec + in, buf, n);
                else
                    memset(sec + in, 0, n);
                r = ops->write(bs, off - in, sec, ss);
            }
        } else {
            n = len & ~(ss - 1);
            blk_range_lock(lock, &held, 0, off, off + n, false);
            r = buf || !ops->zero ? ops->write(bs, off, buf, n) : ops->zero(bs, off, n, zflags);
        }
        blk_range_unlock(lock, &held);
        off += n;
        len -= n;
        if (buf)
            buf += n;
    }
    return r;
}
