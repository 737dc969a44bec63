/* qcow2 internal snapshots: create, apply, delete. */
#include "block/qcow2.h"

#include <errno.h>

static int not_yet(BlockDriverState *bs)
{
    blk_set_error("%s: internal snapshots are not supported yet", bs->filename);
    return -ENOTSUP;
}

int qcow2_snapshot_create(BlockDriverState *bs, const char *name)
{
    (void)name;
    return not_yet(bs);
}

int qcow2_snapshot_apply(BlockDriverState *bs, const char *name_or_id)
{
    (void)name_or_id;
    return not_yet(bs);
}

int qcow2_snapshot_delete(BlockDriverState *bs, const char *name_or_id)
{
    (void)name_or_id;
    return not_yet(bs);
}
