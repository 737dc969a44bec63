/* QEMU's "compress" filter: a node over a format ("driver=compress,
 * file.driver=qcow2,file.file.filename=PATH", or the json: form) whose
 * data writes become compressed writes of the format.
 *
 * As in QEMU 7.2 (block/filter-compress.c and its block layer):
 * - the format under it must do compressed writes (qcow2, qcow);
 *   straight over a host file it is refused;
 * - its request alignment is the format's cluster size: a write that is
 *   not aligned is padded to whole clusters, the padding read first
 *   (block.c's read-modify-write, as under blkdebug's align), and an
 *   image whose size is not a multiple of it cannot be opened for
 *   writing;
 * - write-zeroes and discard pass through (their partial clusters at
 *   either end are written as compressed data), reads pass through;
 * - a cluster that already has a host offset cannot be written again
 *   (the format's -EIO).
 * Writes through the filter are serialised by block.c (a padded write
 * reads what it writes back), so compression runs one cluster at a time;
 * the filter exists for the tools, not for a guest's disk. */
#include "block/block.h"

#include <errno.h>
#include <stdint.h>

static int compress_open(BlockDriverState *bs, BlockOptions *opts)
{
    (void)opts;
    /* below a format it would sit over the host file, which cannot compress */
    if (!bs->filter_top) {
        blk_set_error("Compression is not supported for underlying format: file");
        return -ENOTSUP;
    }
    if (!bs->drv->pwrite_compressed) {
        blk_set_error("Compression is not supported for underlying format: %s", bs->drv->name);
        return -ENOTSUP;
    }
    return 0;
}

static int compress_opened(BlockDriverState *bs)
{
    BlockInfo info = {0};
    int r = blk_get_info(bs, &info);
    uint64_t cs = info.cluster_size;
    blk_info_free(&info);
    if (r < 0 || cs == 0 || (cs & (cs - 1))) {
        /* QEMU keeps its byte alignment then; calf's formats all have one */
        blk_set_error("Compression is not supported for underlying format: %s", bs->drv->name);
        return -ENOTSUP;
    }
    if (!bs->read_only && bs->size % cs) {
        blk_set_error("Cannot get 'write' permission without 'resize': "
                      "Image size is not a multiple of request alignment");
        return -EPERM;
    }
    bs->compress_align = cs;
    return 0;
}

static void compress_close(BlockDriverState *bs)
{
    bs->compress_align = 0;
}

int blk_compress_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, uint64_t len)
{
    return bs->drv->pwrite_compressed(bs, off, buf, len);
}

static const BlockFilter compress_filter = {
    .name = "compress",
    .child = "file",
    .open = compress_open,
    .close = compress_close,
    .opened = compress_opened,
    .over_host_file = "Compression is not supported for underlying format: %s",
};

/* block.c's write path calls blk_compress_pwrite(), which pulls this
 * file (and so its registration) into every program. */
__attribute__((constructor)) static void compress_register(void)
{
    blk_register_filter(&compress_filter);
}
