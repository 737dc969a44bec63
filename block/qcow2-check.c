/* qcow2 refcount repair. */
#include "block/qcow2.h"

#include <errno.h>

int qcow2_repair_refcounts(Qcow2State *s)
{
    blk_set_error("%s: image is dirty (not closed cleanly) and its refcounts cannot be "
                  "repaired yet; open it read-only", s->bs->filename);
    return -ENOTSUP;
}
