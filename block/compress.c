/* Cluster compression shared by the qcow and qcow2 drivers: raw deflate
 * with a 4 KiB window (windowBits -12, as QEMU writes it) or zstd. */
#include "block/block.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* Compresses cs bytes of src into dst (at most cs - 1 bytes).  Returns
 * the compressed size, -ENOSPC when the data does not shrink, or
 * another negative errno. */
ssize_t blk_compress_cluster(int type, uint8_t *dst, size_t dst_len, const uint8_t *src,
                                size_t cs)
{
    if (type == 1) {
        size_t n = ZSTD_compress(dst, dst_len, src, cs, ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(n))
            return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
        return (ssize_t)n;
    }
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (uint8_t *)src;
    z.avail_in = cs;
    z.next_out = dst;
    z.avail_out = dst_len;
    int zr = deflate(&z, Z_FINISH);
    ssize_t r = zr == Z_STREAM_END ? (ssize_t)(dst_len - z.avail_out)
                                   : zr == Z_OK || zr == Z_BUF_ERROR ? -ENOSPC : -EIO;
    deflateEnd(&z);
    return r;
}

int blk_decompress_cluster(int type, const uint8_t *in, size_t in_len, uint8_t *out, size_t cs)
{
    if (type == 1) {
        ZSTD_DCtx *dctx = ZSTD_createDCtx();
        if (!dctx)
            return -ENOMEM;
        ZSTD_inBuffer ib = {in, in_len, 0};
        ZSTD_outBuffer ob = {out, cs, 0};
        int r = 0;
        while (ob.pos < cs) {
            size_t z = ZSTD_decompressStream(dctx, &ob, &ib);
            if (ZSTD_isError(z)) {
                r = -EIO;
                break;
            }
            if (z == 0 || (ib.pos == ib.size && ob.pos < cs)) {
                if (ob.pos < cs)
                    r = -EIO;
                break;
            }
        }
        ZSTD_freeDCtx(dctx);
        return r;
    }
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
