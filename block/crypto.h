/* Sector ciphers for encrypted images: qcow's legacy AES and the ciphers
 * a LUKS header names (aes-{128,192,256} in xts/cbc/ecb mode with a
 * plain/plain64/essiv IV), all through OpenSSL.  Data is encrypted in
 * 512-byte sectors, each with its own IV derived from a sector number
 * the caller chooses (guest offset for legacy AES, host offset for LUKS
 * in qcow2: docs/ARCHITECTURE.md section 9). */
#ifndef CALF_CRYPTO_H
#define CALF_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"

#define BLK_CRYPTO_SECTOR 512
#define BLK_CRYPTO_MAX_KEY 64

enum blk_ivgen { BLK_IVGEN_PLAIN, BLK_IVGEN_PLAIN64, BLK_IVGEN_ESSIV };
enum blk_cmode { BLK_CMODE_ECB, BLK_CMODE_CBC, BLK_CMODE_XTS };

/* What a cipher is, by name; key_bytes is the key a LUKS header stores
 * (twice the AES key for xts). */
typedef struct BlkCipherSpec {
    int aes_bits;            /* 128, 192, 256 */
    enum blk_cmode mode;
    enum blk_ivgen ivgen;
    char ivhash[16];         /* essiv only: "sha256" */
} BlkCipherSpec;

typedef struct BlkCipher BlkCipher;

size_t blk_cipher_key_bytes(const BlkCipherSpec *spec);
/* "aes-256", "xts", "plain64", "sha256" (ivhash, essiv only) into a
 * spec; -EINVAL with a message (blk_set_error) for anything else. */
int blk_cipher_spec_parse(BlkCipherSpec *spec, const char *alg, const char *mode,
                          const char *ivgen, const char *ivhash);
/* A keyed cipher; key is blk_cipher_key_bytes() long.  NULL on error
 * (message set). */
BlkCipher *blk_cipher_new(const BlkCipherSpec *spec, const uint8_t *key);
/* qcow/qcow2 crypt_method 1: AES-128-CBC, plain64 IV, the passphrase
 * bytes cut at 16 and zero padded as the key. */
BlkCipher *blk_cipher_new_legacy_aes(const char *passphrase);
void blk_cipher_free(BlkCipher *c);
/* En/decrypts buf in place, sector by sector starting at sector number
 * `sector`; len must be a multiple of 16 (a short last sector is allowed,
 * as LUKS key material needs).  Safe to call from several threads. */
int blk_cipher_crypt(BlkCipher *c, uint64_t sector, uint8_t *buf, size_t len, bool encrypt);

/* Writing to an image stored in encrypted 512-byte sectors: the partial
 * sectors at either end of [off, off+len) are read, patched and written
 * back whole under lock, exclusively per sector (a reader must hold the
 * range shared: meanwhile the sector is half old, half new on disk);
 * whole sectors go straight to ops->write under the range held shared.
 * buf NULL writes zeros: ops->zero(zflags) for whole sectors where the
 * format has it, else ops->write with buf NULL. */
typedef struct BlkSectorOps {
    int (*read)(BlockDriverState *bs, uint64_t off, uint8_t *buf, size_t len);
    int (*write)(BlockDriverState *bs, uint64_t off, const uint8_t *buf, size_t len);
    int (*zero)(BlockDriverState *bs, uint64_t off, uint64_t len, int flags); /* may be NULL */
} BlkSectorOps;
int blk_sector_pwrite(BlockDriverState *bs, BlkRangeLock *lock, const BlkSectorOps *ops,
                      uint64_t off, const uint8_t *buf, uint64_t len, int zflags);

/* PBKDF2-HMAC with the named hash; 0 or -errno. */
int blk_pbkdf2(const char *hash, const void *pass, size_t passlen, const uint8_t *salt,
               size_t saltlen, uint32_t iterations, uint8_t *out, size_t outlen);
/* Iterations of PBKDF2 with hash that take ms milliseconds of CPU on
 * this machine (measured); 0 on error. */
uint64_t blk_pbkdf2_iters_for(const char *hash, uint64_t ms);
/* Cryptographically random bytes; 0 or -EIO. */
int blk_random_bytes(uint8_t *buf, size_t len);

#endif
