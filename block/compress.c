/* Cluster compression shared by the qcow and qcow2 drivers: raw deflate
 * with a 4 KiB window (windowBits -12, as QEMU writes it) or zstd. */
#include "block/block.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* Deflate spends as long on data that never shrinks (random, encrypted,
 * already compressed) as on text, about 1 ms per 64 KiB here, and such
 * clusters are stored plain anyway.  Two cheap bounds tell them apart
 * first.  Huffman coding cannot beat the byte entropy, so a cluster whose
 * bytes are near uniform (>= 7.9 bits each) can shrink by at most ~1.25%
 * through literals; LZ matches are the only other saving, and a scan for
 * repeated 4-byte strings within deflate's 4 KiB window bounds those.
 * Only when both say "at most ~2%" is the cluster declared hopeless:
 * qemu-img would then store it compressed at best a few percent smaller
 * (measured: random bytes biased to 7.93 bits shrink by 0.02%, to 7.88
 * bits, below the bound and so still deflated, by 0.7%). */
#define HOPELESS_MIN_ENTROPY 7.9
#define HOPELESS_MAX_REPEAT_SHARE 200 /* repeats cover < 1/200 of the bytes */

static double byte_entropy(const uint8_t *p, size_t n)
{
    /* four tables: consecutive bytes do not wait on the same counter */
    uint32_t h[4][256];
    memset(h, 0, sizeof(h));
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        h[0][p[i]]++;
        h[1][p[i + 1]]++;
        h[2][p[i + 2]]++;
        h[3][p[i + 3]]++;
    }
    for (; i < n; i++)
        h[0][p[i]]++;
    double e = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t c = h[0][b] + h[1][b] + h[2][b] + h[3][b];
        if (c) {
            double q = (double)c / (double)n;
            e -= q * log2(q);
        }
    }
    return e;
}

/* Bytes covered by strings of >= 4 bytes seen earlier within 4 KiB.  The
 * table keeps each string beside its position, so that on data without
 * repeats the one branch is never taken and never mispredicted. */
static size_t repeated_bytes(const uint8_t *p, size_t n)
{
    struct { uint32_t pos, val; } last[4096]; /* pos: position + 1, 0 = none */
    memset(last, 0, sizeof(last));
    size_t m = 0;
    for (size_t i = 0; i + 4 <= n;) {
        uint32_t v;
        memcpy(&v, p + i, 4);
        uint32_t h = (v * 2654435761u) >> 20, j = last[h].pos, w = last[h].val;
        last[h].pos = (uint32_t)i + 1;
        last[h].val = v;
        if (__builtin_expect((w == v) & (j != 0) & (i + 1 - j <= 4096), 0)) {
            size_t l = 4;
            while (i + l < n && p[j - 1 + l] == p[i + l])
                l++;
            m += l;
            i += l;
        } else {
            i++;
        }
    }
    return m;
}

/* True when deflate cannot shrink src by more than ~2%. */
static bool compress_hopeless(const uint8_t *src, size_t cs)
{
    if (cs < 4096 || cs > UINT32_MAX / 2)
        return false; /* small clusters: deflate is cheap, let it decide */
    return byte_entropy(src, cs) >= HOPELESS_MIN_ENTROPY &&
           repeated_bytes(src, cs) < cs / HOPELESS_MAX_REPEAT_SHARE;
}

/* Per-thread compression contexts, kept between clusters: a fresh zstd
 * context per cluster cost more than compressing random data (50 us
 * against 13 us per 64 KiB) and a third of decompressing one; a fresh
 * deflate stream allocates ~270 KiB and clears a 128 KiB hash table. */
typedef struct CompressCtx {
    z_stream def;
    bool def_ready;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
} CompressCtx;

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static bool ctx_key_ok;

static void ctx_free(void *p)
{
    CompressCtx *x = p;
    if (x->def_ready)
        deflateEnd(&x->def);
    ZSTD_freeCCtx(x->cctx);
    ZSTD_freeDCtx(x->dctx);
    free(x);
}

static void ctx_key_init(void)
{
    ctx_key_ok = pthread_key_create(&ctx_key, ctx_free) == 0;
}

/* This thread's contexts (freed when it exits), or NULL without memory. */
static CompressCtx *ctx_get(void)
{
    pthread_once(&ctx_once, ctx_key_init);
    if (!ctx_key_ok)
        return NULL;
    CompressCtx *x = pthread_getspecific(ctx_key);
    if (x)
        return x;
    x = calloc(1, sizeof(*x));
    if (x && pthread_setspecific(ctx_key, x) != 0) {
        free(x);
        x = NULL;
    }
    return x;
}

static ssize_t compress_zstd(CompressCtx *x, uint8_t *dst, size_t dst_len, const uint8_t *src,
                             size_t cs)
{
    if (!x->cctx && !(x->cctx = ZSTD_createCCtx()))
        return -ENOMEM;
    size_t n = ZSTD_compressCCtx(x->cctx, dst, dst_len, src, cs, ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
    return (ssize_t)n;
}

/* Compresses cs bytes of src into dst (at most cs - 1 bytes).  Returns
 * the compressed size, -ENOSPC when the data does not shrink, or
 * another negative errno. */
ssize_t blk_compress_cluster(int type, uint8_t *dst, size_t dst_len, const uint8_t *src,
                                size_t cs)
{
    CompressCtx *x = ctx_get();
    if (!x)
        return -ENOMEM;
    if (type == 1)
        return compress_zstd(x, dst, dst_len, src, cs);
    if (compress_hopeless(src, cs))
        return -ENOSPC;
    z_stream *z = &x->def;
    if (!x->def_ready) {
        if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
            return -ENOMEM;
        x->def_ready = true;
    } else if (deflateReset(z) != Z_OK) {
        return -EIO;
    }
    z->next_in = (uint8_t *)src;
    z->avail_in = cs;
    z->next_out = dst;
    z->avail_out = dst_len;
    int zr = deflate(z, Z_FINISH);
    return zr == Z_STREAM_END ? (ssize_t)(dst_len - z->avail_out)
                              : zr == Z_OK || zr == Z_BUF_ERROR ? -ENOSPC : -EIO;
}

static int decompress_zstd(const uint8_t *in, size_t in_len, uint8_t *out, size_t cs)
{
    CompressCtx *x = ctx_get();
    if (!x || (!x->dctx && !(x->dctx = ZSTD_createDCtx())))
        return -ENOMEM;
    ZSTD_DCtx_reset(x->dctx, ZSTD_reset_session_only); /* after an error, too */
    ZSTD_inBuffer ib = {in, in_len, 0};
    ZSTD_outBuffer ob = {out, cs, 0};
    while (ob.pos < cs) {
        size_t z = ZSTD_decompressStream(x->dctx, &ob, &ib);
        if (ZSTD_isError(z))
            return -EIO;
        if (z == 0 || (ib.pos == ib.size && ob.pos < cs))
            return ob.pos < cs ? -EIO : 0;
    }
    return 0;
}

int blk_decompress_cluster(int type, const uint8_t *in, size_t in_len, uint8_t *out, size_t cs)
{
    if (type == 1)
        return decompress_zstd(in, in_len, out, cs);
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, -12) != Z_OK)
        return -ENOMEM;
    z.next_in = (uint8_t *)in;
    z.avail_in = in_len;
    z.next_out = out;
    z.avail_out = cs;
    int zr = inflate(&z, Z_FINISH);
    /* The stored length is rounded up to sectors: trailing bytes are
     * fine as long as a whole cluster came out. */
    int r = ((zr == Z_STREAM_END || zr == Z_BUF_ERROR) && z.avail_out == 0) ? 0 : -EIO;
    inflateEnd(&z);
    return r;
}
