/* The VM state area of an image (blk_save_vmstate, blk_load_vmstate). */
#include <errno.h>

#include "block/block.h"

int blk_save_vmstate(BlockDriverState *bs, const void *buf, uint64_t pos, size_t len)
{
    if (bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (!bs->drv->save_vmstate) {
        blk_set_error("%s: the %s format has no VM state area", bs->filename, bs->drv->name);
        return -ENOTSUP;
    }
    int r = bs->drv->save_vmstate(bs, buf, pos, len);
    /* writethrough: on disk before it completes, as a guest write */
    if (r == 0 && len && (bs->flags & BLK_O_WRITETHROUGH))
        r = blk_flush(bs);
    return r;
}

int blk_vmstate_reserve(BlockDriverState *bs, uint64_t pos, uint64_t len)
{
    if (bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (!bs->drv->vmstate_reserve)
        return -ENOTSUP;
    return bs->drv->vmstate_reserve(bs, pos, len);
}

int blk_save_vmstate_zero(BlockDriverState *bs, uint64_t pos, uint64_t len)
{
    static const uint8_t zero[65536];
    int r = 0;
    if (bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (bs->drv->vmstate_zero) {
        r = bs->drv->vmstate_zero(bs, pos, len);
    } else {
        for (uint64_t done = 0; r == 0 && done < len;) {
            size_t n = len - done < sizeof(zero) ? (size_t)(len - done) : sizeof(zero);
            r = blk_save_vmstate(bs, zero, pos + done, n);
            done += n;
        }
        return r;
    }
    if (r == 0 && len && (bs->flags & BLK_O_WRITETHROUGH))
        r = blk_flush(bs);
    return r;
}

int blk_vmstate_host_range(BlockDriverState *bs, uint64_t pos, uint64_t len, int *fd,
                           uint64_t *off)
{
    if (!bs->drv->vmstate_host_range)
        return -ENOTSUP;
    return bs->drv->vmstate_host_range(bs, pos, len, fd, off);
}

int blk_snapshot_create_vm(BlockDriverState *bs, const char *name, uint64_t vm_state_size,
                           uint64_t vm_clock_nsec)
{
    if (bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (!bs->drv->snapshot_create_vm) {
        blk_set_error("%s: the %s format cannot hold a VM state snapshot", bs->filename,
                      bs->drv->name);
        return -ENOTSUP;
    }
    return bs->drv->snapshot_create_vm(bs, name, vm_state_size, vm_clock_nsec);
}

int blk_snapshot_apply_disk(BlockDriverState *bs, const char *name_or_id)
{
    if (bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (!bs->drv->snapshot_apply_disk)
        return -ENOTSUP;
    int r = blk_snapshot_revert_check(bs);
    if (r < 0)
        return r;
    return bs->drv->snapshot_apply_disk(bs, name_or_id);
}

int blk_snapshot_load_vmstate(BlockDriverState *bs, const char *name_or_id, void *buf,
                              uint64_t pos, size_t len)
{
    if (!bs->drv->snapshot_vmstate)
        return -ENOTSUP;
    return bs->drv->snapshot_vmstate(bs, name_or_id, pos, len, buf, NULL, NULL);
}

int blk_snapshot_vmstate_host_range(BlockDriverState *bs, const char *name_or_id, uint64_t pos,
                                    uint64_t len, int *fd, uint64_t *off)
{
    if (!bs->drv->snapshot_vmstate)
        return -ENOTSUP;
    return bs->drv->snapshot_vmstate(bs, name_or_id, pos, len, NULL, fd, off);
}

int blk_load_vmstate(BlockDriverState *bs, void *buf, uint64_t pos, size_t len)
{
    if (!bs->drv->load_vmstate) {
        blk_set_error("%s: the %s format has no VM state area", bs->filename, bs->drv->name);
        return -ENOTSUP;
    }
    return bs->drv->load_vmstate(bs, buf, pos, len);
}
