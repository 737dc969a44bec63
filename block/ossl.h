/* OpenSSL's libcrypto, loaded the first time calf needs it (dlopen)
 * rather than linked: loading and relocating it was about 0.65 ms of
 * every start of calf, calf-img and calf-io, and 1.4 MiB of their RSS,
 * and only encrypted images and secrets use it.
 *
 * This header brings the OpenSSL headers calf uses; the OpenSSL functions
 * calf calls then go through wrappers (calf_ossl_NAME, same types) that
 * load the library on first use.  Where it cannot be loaded they fail as
 * the function itself fails (NULL, 0 or -1; nothing for the void ones,
 * OPENSSL_cleanse still clears), and calf_ossl_ready() says why. */
#ifndef CALF_OSSL_H
#define CALF_OSSL_H

#include <stdbool.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define CALF_OSSL_FUNCS(X)                                                                   \
    X(EVP_aes_128_ecb) X(EVP_aes_192_ecb) X(EVP_aes_256_ecb) X(EVP_aes_128_cbc)              \
    X(EVP_aes_192_cbc) X(EVP_aes_256_cbc) X(EVP_aes_128_xts) X(EVP_aes_256_xts)              \
    X(EVP_get_digestbyname) X(EVP_MD_get_size) X(EVP_Digest) X(EVP_MD_CTX_new)               \
    X(EVP_MD_CTX_free) X(EVP_DigestInit_ex) X(EVP_DigestUpdate) X(EVP_DigestFinal_ex)        \
    X(EVP_CIPHER_CTX_new) X(EVP_CIPHER_CTX_free) X(EVP_CIPHER_CTX_set_padding)               \
    X(EVP_CipherInit_ex) X(EVP_CipherUpdate) X(EVP_EncryptInit_ex) X(EVP_EncryptUpdate)      \
    X(PKCS5_PBKDF2_HMAC) X(RAND_bytes) X(OPENSSL_cleanse) X(CRYPTO_memcmp) X(EVP_DecodeBlock)

#define CALF_OSSL_DECLARE(f) extern __typeof__(f) calf_ossl_##f;
CALF_OSSL_FUNCS(CALF_OSSL_DECLARE)
#undef CALF_OSSL_DECLARE

/* Loads libcrypto if it is not yet; false (and the reason set as the
 * block layer's error) where it cannot be. */
bool calf_ossl_ready(void);

#ifndef CALF_OSSL_IMPL
#define EVP_aes_128_ecb calf_ossl_EVP_aes_128_ecb
#define EVP_aes_192_ecb calf_ossl_EVP_aes_192_ecb
#define EVP_aes_256_ecb calf_ossl_EVP_aes_256_ecb
#define EVP_aes_128_cbc calf_ossl_EVP_aes_128_cbc
#define EVP_aes_192_cbc calf_ossl_EVP_aes_192_cbc
#define EVP_aes_256_cbc calf_ossl_EVP_aes_256_cbc
#define EVP_aes_128_xts calf_ossl_EVP_aes_128_xts
#define EVP_aes_256_xts calf_ossl_EVP_aes_256_xts
#define EVP_get_digestbyname calf_ossl_EVP_get_digestbyname
#define EVP_MD_get_size calf_ossl_EVP_MD_get_size
#define EVP_Digest calf_ossl_EVP_Digest
#define EVP_MD_CTX_new calf_ossl_EVP_MD_CTX_new
#define EVP_MD_CTX_free calf_ossl_EVP_MD_CTX_free
#define EVP_DigestInit_ex calf_ossl_EVP_DigestInit_ex
#define EVP_DigestUpdate calf_ossl_EVP_DigestUpdate
#define EVP_DigestFinal_ex calf_ossl_EVP_DigestFinal_ex
#define EVP_CIPHER_CTX_new calf_ossl_EVP_CIPHER_CTX_new
#define EVP_CIPHER_CTX_free calf_ossl_EVP_CIPHER_CTX_free
#define EVP_CIPHER_CTX_set_padding calf_ossl_EVP_CIPHER_CTX_set_padding
#define EVP_CipherInit_ex calf_ossl_EVP_CipherInit_ex
#define EVP_CipherUpdate calf_ossl_EVP_CipherUpdate
#define EVP_EncryptInit_ex calf_ossl_EVP_EncryptInit_ex
#define EVP_EncryptUpdate calf_ossl_EVP_EncryptUpdate
#define PKCS5_PBKDF2_HMAC calf_ossl_PKCS5_PBKDF2_HMAC
#define RAND_bytes calf_ossl_RAND_bytes
#define OPENSSL_cleanse calf_ossl_OPENSSL_cleanse
#define CRYPTO_memcmp calf_ossl_CRYPTO_memcmp
#define EVP_DecodeBlock calf_ossl_EVP_DecodeBlock
#endif

#endif
