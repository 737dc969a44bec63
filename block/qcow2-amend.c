/* qcow2 changes in place: emptying the image, the backing file link, amend. */
#include "block/qcow2.h"

#include <errno.h>

static int not_yet(BlockDriverState *bs, const char *what)
{
    blk_set_error("%s: %s is not supported yet", bs->filename, what);
    return -ENOTSUP;
}

int qcow2_make_empty(BlockDriverState *bs)
{
    return not_yet(bs, "emptying a qcow2 image");
}

int qcow2_change_backing_file(BlockDriverState *bs, const char *file, const char *fmt)
{
    (void)file;
    (void)fmt;
    return not_yet(bs, "changing the backing file");
}

int qcow2_amend(BlockDriverState *bs, BlockOptions *opts, bool force)
{
    (void)opts;
    (void)force;
    return not_yet(bs, "amend");
}
