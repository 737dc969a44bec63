/* qcow2 driver: placeholder until the engine lands. */
#include "block/block.h"
#include <errno.h>
#include <string.h>

static int qcow2_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && !memcmp(buf, "QFI\xfb", 4) && buf[7] >= 2 ? 100 : 0;
}

static int qcow2_open(BlockDriverState *bs, BlockOptions *opts)
{
    (void)opts;
    blk_set_error("%s: qcow2 is not supported yet", bs->filename);
    return -ENOTSUP;
}

const BlockDriver blk_qcow2_driver = {
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
};
