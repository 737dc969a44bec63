/* qcow2 compressed writes. */
#include "block/qcow2.h"

#include <errno.h>

int qcow2_pwrite_compressed(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    (void)off;
    (void)buf;
    (void)len;
    blk_set_error("%s: compressed writes are not supported yet", bs->filename);
    return -ENOTSUP;
}
