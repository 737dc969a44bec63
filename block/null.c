/* null-co: QEMU's image of nothing, "json:{'driver': 'null-co', 'size':
 * 1048576, 'read-zeroes': true}": a size and no host file.  Writes are
 * dropped; reads give zeros (QEMU leaves the buffer as it is unless
 * read-zeroes is set, but zeros are what a reader can count on). */
#include "block/block.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct NullState {
    bool read_zeroes;
} NullState;

static int null_open(BlockDriverState *bs, BlockOptions *opts)
{
    uint64_t size, latency;
    bool zeroes;
    /* latency-ns is QEMU's delay for each request: nothing to time here */
    if (blkopts_get_size(opts, "size", 1ull << 30, &size) < 0 ||
        blkopts_get_uint(opts, "latency-ns", 0, &latency) < 0 ||
        blkopts_get_bool(opts, "read-zeroes", false, &zeroes) < 0)
        return -EINVAL;
    if (size > INT64_MAX) {
        blk_set_error("Parameter 'size' expects a size below 8 EiB");
        return -EINVAL;
    }
    NullState *s = calloc(1, sizeof(*s));
    if (!s) {
        blk_set_error("out of memory");
        return -ENOMEM;
    }
    s->read_zeroes = zeroes;
    bs->opaque = s;
    bs->size = size;
    return 0;
}

static void null_close(BlockDriverState *bs)
{
    free(bs->opaque);
}

static int null_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    (void)bs;
    (void)off;
    memset(buf, 0, len);
    return 0;
}

static int null_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    (void)bs;
    (void)off;
    (void)buf;
    (void)len;
    return 0;
}

static int null_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    (void)bs;
    (void)off;
    (void)len;
    (void)flags;
    return 0;
}

static int null_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *host_offset)
{
    NullState *s = bs->opaque;
    (void)off;
    (void)host_offset; /* no host file to point into */
    *pnum = len;
    /* as QEMU's: zeros only where read-zeroes promises them */
    return BLK_STATUS_ALLOCATED | (s->read_zeroes ? BLK_STATUS_ZERO : BLK_STATUS_DATA);
}

static int64_t null_allocated_size(BlockDriverState *bs)
{
    (void)bs;
    return 0;
}

static int null_get_info(BlockDriverState *bs, BlockInfo *info)
{
    (void)bs;
    (void)info;
    return 0;
}

const BlockDriver blk_null_driver = {
    .name = "null-co",
    .no_file = true,
    .open = null_open,
    .close = null_close,
    .pread = null_pread,
    .pwrite = null_pwrite,
    .pwrite_zeroes = null_pwrite_zeroes,
    .block_status = null_block_status,
    .allocated_size = null_allocated_size,
    .get_info = null_get_info,
};
