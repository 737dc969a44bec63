/* libcrypto loaded on first use: see ossl.h. */
#define CALF_OSSL_IMPL
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/rand.h>

#include "block/block.h"
#include "block/ossl.h"

#define STR_(x) #x
#define STR(x) STR_(x)
/* the soname of the libcrypto calf was built against: libcrypto.so.3 */
#define SONAME "libcrypto.so." STR(OPENSSL_VERSION_MAJOR)

#define POINTER(f) static __typeof__(&f) p_##f;
CALF_OSSL_FUNCS(POINTER)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;
static char why[256];

static void load(void)
{
    void *lib = dlopen(SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, sizeof(why), "encryption needs OpenSSL's %s: %s", SONAME, dlerror());
        return;
    }
#define RESOLVE(f)                                                                           \
    if (!(p_##f = (__typeof__(p_##f))dlsym(lib, #f))) {                                    \
        snprintf(why, sizeof(why), "%s has no %s: not the OpenSSL calf was built for",      \
                 SONAME, #f);                                                              \
        return;                                                                            \
    }
    CALF_OSSL_FUNCS(RESOLVE)
    loaded = true; /* the library stays loaded until exit */
}

static bool ready(void)
{
    pthread_once(&once, load);
    return loaded;
}

bool calf_ossl_ready(void)
{
    if (ready())
        return true;
    blk_set_error("%s", why);
    return false;
}

/* Each wrapper: the real function once loaded, else its own failure. */
#define WRAP(ret, f, params, args, fail)                                                     \
    ret calf_ossl_##f params { return ready() ? p_##f args : fail; }
#define WRAP_VOID(f, params, args)                                                           \
    void calf_ossl_##f params { if (ready()) p_##f args; }

WRAP(const EVP_CIPHER *, EVP_aes_128_ecb, (void), (), NULL)
WRAP(const EVP_CIPHER *, EVP_aes_192_ecb, (void), (), NULL)
WRAP(const EVP_CIPHER *, EVP_aes_256_ecb, (void), (), NULL)
WRAP(const EVP_CIPHER *, EVP_aes_128_cbc, (void), (), NULL)
WRAP(const EVP_CIPHER *, EVP_aes_192_cbc, (void), (), NULL)
WRAP(const EVP_CIPHER *, EVP_aes_256_cbc, (void), (), NULL)
WRAP(const EVP_CIPHER *, EVP_aes_128_xts, (void), (), NULL)
WRAP(const EVP_CIPHER *, EVP_aes_256_xts, (void), (), NULL)
WRAP(const EVP_MD *, EVP_get_digestbyname, (const char *name), (name), NULL)
WRAP(int, EVP_MD_get_size, (const EVP_MD *md), (md), -1)
WRAP(int, EVP_Digest,
     (const void *data, size_t count, unsigned char *md, unsigned int *size, const EVP_MD *type,
      ENGINE *impl),
     (data, count, md, size, type, impl), 0)
WRAP(EVP_MD_CTX *, EVP_MD_CTX_new, (void), (), NULL)
WRAP_VOID(EVP_MD_CTX_free, (EVP_MD_CTX *ctx), (ctx))
WRAP(int, EVP_DigestInit_ex, (EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl),
     (ctx, type, impl), 0)
WRAP(int, EVP_DigestUpdate, (EVP_MD_CTX *ctx, const void *d, size_t cnt), (ctx, d, cnt), 0)
WRAP(int, EVP_DigestFinal_ex, (EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s),
     (ctx, md, s), 0)
WRAP(EVP_CIPHER_CTX *, EVP_CIPHER_CTX_new, (void), (), NULL)
WRAP_VOID(EVP_CIPHER_CTX_free, (EVP_CIPHER_CTX *c), (c))
WRAP(int, EVP_CIPHER_CTX_set_padding, (EVP_CIPHER_CTX *c, int pad), (c, pad), 0)
WRAP(int, EVP_CipherInit_ex,
     (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key,
      const unsigned char *iv, int enc),
     (ctx, cipher, impl, key, iv, enc), 0)
WRAP(int, EVP_CipherUpdate,
     (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl),
     (ctx, out, outl, in, inl), 0)
WRAP(int, EVP_EncryptInit_ex,
     (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key,
      const unsigned char *iv),
     (ctx, cipher, impl, key, iv), 0)
WRAP(int, EVP_EncryptUpdate,
     (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl),
     (ctx, out, outl, in, inl), 0)
WRAP(int, PKCS5_PBKDF2_HMAC,
     (const char *pass, int passlen, const unsigned char *salt, int saltlen, int iter,
      const EVP_MD *digest, int keylen, unsigned char *out),
     (pass, passlen, salt, saltlen, iter, digest, keylen, out), 0)
WRAP(int, RAND_bytes, (unsigned char *buf, int num), (buf, num), 0)
WRAP(int, EVP_DecodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n), -1)

/* These two must work without the library too: clearing a key and
 * comparing digests are done on the way out of a failure as well. */
void calf_ossl_OPENSSL_cleanse(void *ptr, size_t len)
{
    if (ready())
        p_OPENSSL_cleanse(ptr, len);
    else
        explicit_bzero(ptr, len);
}

int calf_ossl_CRYPTO_memcmp(const void *in_a, const void *in_b, size_t len)
{
    if (ready())
        return p_CRYPTO_memcmp(in_a, in_b, len);
    const volatile unsigned char *a = in_a, *b = in_b;
    unsigned char d = 0;
    for (size_t i = 0; i < len; i++)
        d |= a[i] ^ b[i];
    return d != 0;
}
