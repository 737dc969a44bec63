/* qcow2's VM state area (qemu-io's read -b / write -b, QEMU's savevm):
 * bytes kept past the end of the guest disk in the same L1/L2 mapping,
 * from the first L1 entry the disk does not use.  Internal snapshots copy
 * the whole L1 table, so a snapshot keeps the VM state it was taken with. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "block/qcow2.h"

/* Bytes one L1 entry maps. */
static uint64_t l1_span(const Qcow2State *s)
{
    return s->cluster_size << s->l2_bits;
}

/* The guest offset of VM state byte pos (QEMU's qcow2_vm_state_offset()
 * plus pos), or -EIO where [pos, pos+len) leaves what a request may
 * address (QEMU's limit: INT64_MAX). */
static int vmstate_offset(const Qcow2State *s, uint64_t pos, size_t len, uint64_t *off)
{
    uint64_t span = l1_span(s);
    uint64_t base = (s->bs->size / span + !!(s->bs->size % span)) * span;
    if (base > (uint64_t)INT64_MAX || pos > (uint64_t)INT64_MAX - base ||
        len > (uint64_t)INT64_MAX - base - pos) {
        blk_set_error("%s: VM state offset out of range", s->bs->filename);
        return -EIO;
    }
    *off = base + pos;
    return 0;
}

int qcow2_save_vmstate(BlockDriverState *bs, const void *buf, uint64_t pos, size_t len)
{
    Qcow2State *s = bs->opaque;
    uint64_t off;
    int r = vmstate_offset(s, pos, len, &off);
    if (r < 0 || !len)
        return r;
    /* the L1 table first grows to reach the area (as QEMU's does) */
    uint64_t span = l1_span(s), end = off + len;
    pthread_mutex_lock(&s->lock);
    r = qcow2_grow_l1(s, end / span + !!(end % span));
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    return qcow2_pwrite(bs, off, buf, len);
}

int qcow2_load_vmstate(BlockDriverState *bs, void *buf, uint64_t pos, size_t len)
{
    Qcow2State *s = bs->opaque;
    uint64_t off;
    int r = vmstate_offset(s, pos, len, &off);
    if (r < 0 || !len)
        return r;
    /* what no L1 entry reaches was never written: zeros */
    pthread_mutex_lock(&s->lock);
    uint64_t covered = (uint64_t)s->l1_size * l1_span(s);
    pthread_mutex_unlock(&s->lock);
    size_t n = off >= covered ? 0 : covered - off < len ? (size_t)(covered - off) : len;
    /* through the driver's read: an encrypted image's partial-sector
     * rewrites (crypt_rmw) finish first */
    if (n && (r = qcow2_guest_pread(bs, off, buf, n)) < 0)
        return r;
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

int qcow2_vmstate_reserve(BlockDriverState *bs, uint64_t pos, uint64_t len)
{
    Qcow2State *s = bs->opaque;
    uint64_t off, span = l1_span(s);
    int r = vmstate_offset(s, pos, len, &off);
    if (r < 0 || !len)
        return r;
    if (qcow2_has_data_file(s))
        return -ENOTSUP;
    uint64_t end = off + len, cs = s->cluster_size, dstart = off & ~(cs - 1);
    pthread_mutex_lock(&s->lock);
    r = qcow2_grow_l1(s, end / span + !!(end % span));
    pthread_mutex_unlock(&s->lock);
    /* whatever the active image maps there goes first (a copy shared
     * with a snapshot would be copied cluster by cluster on write) */
    if (r == 0)
        r = qcow2_discard_tail(bs, dstart, qcow2_align_up(end, cs) - dstart);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->lock);
    /* L2 tables first, then every missing data cluster in one run */
    r = qcow2_preallocate(s, off, end, BLK_PREALLOC_OFF);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_vmstate_host_range(BlockDriverState *bs, uint64_t pos, uint64_t len, int *fd,
                             uint64_t *off)
{
    Qcow2State *s = bs->opaque;
    uint64_t goff, host;
    int r = vmstate_offset(s, pos, len, &goff);
    if (r < 0)
        return r;
    if (s->crypt_method || qcow2_has_data_file(s) || !len)
        return -ENOTSUP;
    pthread_mutex_lock(&s->lock);
    uint64_t covered = (uint64_t)s->l1_size * l1_span(s);
    r = goff + len > covered ? -ENOTSUP : qcow2_host_run(s, goff, len, &host);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    *fd = s->fd;
    *off = host;
    return 0;
}

int qcow2_vmstate_zero(BlockDriverState *bs, uint64_t pos, uint64_t len)
{
    Qcow2State *s = bs->opaque;
    uint64_t off, host;
    int r = vmstate_offset(s, pos, len, &off);
    if (r < 0 || !len)
        return r;
    pthread_mutex_lock(&s->lock);
    uint64_t covered = (uint64_t)s->l1_size * l1_span(s);
    r = off + len > covered ? -ENOTSUP : qcow2_host_run_owned(s, off, len, &host);
    if (r == 0) {
        /* clusters of the active image alone, allocated: zeros in place
         * (a hole where the file system can), counted as I/O so that
         * nothing frees them meanwhile */
        unsigned io = qcow2_io_begin(s);
        pthread_mutex_unlock(&s->lock);
        r = blk_file_zero(s->fd, host, len);
        qcow2_io_end(s, io);
        if (r < 0)
            blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
        return r;
    }
    pthread_mutex_unlock(&s->lock);
    if (r != -ENOTSUP)
        return r;
    /* else written out as zeros */
    static const uint8_t zero[65536];
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < sizeof(zero) ? (size_t)(len - done) : sizeof(zero);
        if ((r = qcow2_save_vmstate(bs, zero, pos + done, n)) < 0)
            return r;
        done += n;
    }
    return 0;
}
