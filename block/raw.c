/* The raw format: guest offset == file offset. */
#include "block/block.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int raw_probe(const uint8_t *buf, size_t len)
{
    (void)buf;
    (void)len;
    return 1; /* anything is a raw image, as a last resort */
}

static int raw_open(BlockDriverState *bs, BlockOptions *opts)
{
    (void)opts;
    int64_t size = blk_file_size(bs->fd);
    if (size < 0) {
        blk_set_error("%s: cannot get the file size: %s", bs->filename, strerror(-size));
        return size;
    }
    struct stat st;
    if (blk_file_stat(bs->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
        int64_t end = blk_file_seek(bs->fd, 0, SEEK_END);
        if (end > 0)
            size = end;
    }
    /* QEMU counts whole sectors: the tail of the last one reads as zeros */
    bs->size = (size + BLK_SECTOR_SIZE - 1) & ~(int64_t)(BLK_SECTOR_SIZE - 1);
    return 0;
}

static int raw_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    int r = blk_file_pread(bs->fd, buf, len, off);
    if (r < 0)
        blk_set_error("%s: read error: %s", bs->filename, strerror(-r));
    return r;
}

static int raw_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    blk_fill(bs, off, len);
    int r = blk_file_pwrite(bs->fd, buf, len, off);
    if (r < 0)
        blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
    return r;
}

static int raw_preadv(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    int r = blk_file_preadv(bs->fd, iov, iovcnt, off);
    if (r < 0 && r != -ENOTSUP)
        blk_set_error("%s: read error: %s", bs->filename, strerror(-r));
    return r;
}

static int raw_pwritev(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    blk_fill(bs, off, blk_iov_total(iov, iovcnt));
    int r = blk_file_pwritev(bs->fd, iov, iovcnt, off);
    if (r < 0 && r != -ENOTSUP)
        blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
    return r;
}

/* A reflink: the range shares the source's blocks, no byte is copied.
 * Where the filesystem has none (ext4), -ENOTSUP: the kernel's own copy
 * (copy_file_range) was tried there and cost more than writing from the
 * mapping.  -EINVAL: not this range (the filesystem wants whole blocks). */
static int raw_copy_from_file(BlockDriverState *bs, uint64_t off, int src_fd, uint64_t src_off,
                              uint64_t len)
{
    /* not past the O_DIRECT range lock (blk_file_pwrite): written instead */
    if (bs->flags & BLK_O_NOCACHE)
        return -ENOTSUP;
    int r = blk_file_clone(bs->fd, off, src_fd, src_off, len);
    struct stat st;
    if (r == 0)
        return 0;
    if (r == -EINVAL) /* a block device target says so too: never, then */
        return blk_file_stat(bs->fd, &st) == 0 && S_ISREG(st.st_mode) ? -EINVAL : -ENOTSUP;
    if (r == -EOPNOTSUPP || r == -EXDEV || r == -ENOTTY || r == -ENOSYS || r == -EBADF ||
        r == -EPERM || r == -ETXTBSY)
        return -ENOTSUP;
    blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
    return r;
}

static int raw_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    (void)flags;
    int r = blk_file_zero(bs->fd, off, len);
    if (r < 0)
        blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
    return r;
}

static int raw_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    blk_file_punch(bs->fd, off, len); /* advisory: failure is fine */
    (void)bs;
    return 0;
}

static int raw_flush(BlockDriverState *bs)
{
    if (bs->flags & BLK_O_UNSAFE)
        return 0;
    int e = blk_file_sync(bs->fd);
    if (e < 0) {
        blk_set_error("%s: flush failed: %s", bs->filename, strerror(-e));
        return e;
    }
    return 0;
}

/* Holes in the file read as zeros; SEEK_DATA/SEEK_HOLE find them. */
static int raw_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *host_offset)
{
    if (bs->file) /* over a node: what the node says, as QEMU's raw */
        return blk_vfd_block_status(bs->fd, off, len, pnum, host_offset);
    *host_offset = off;
    int64_t fsize = blk_file_size(bs->fd);
    if (fsize >= 0 && off >= (uint64_t)fsize) {
        *pnum = len;
        return BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
    }
    int64_t data = blk_file_seek(bs->fd, off, SEEK_DATA);
    if (data == -ENXIO) {
        *pnum = len; /* only a hole up to the end */
        return BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
    }
    if (data < 0) {
        *pnum = len;
        return BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
    }
    if ((uint64_t)data > off) {
        uint64_t n = data - off;
        *pnum = n < len ? n : len;
        return BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
    }
    int64_t hole = blk_file_seek(bs->fd, off, SEEK_HOLE);
    uint64_t n = hole > (int64_t)off ? (uint64_t)(hole - off) : len;
    *pnum = n < len ? n : len;
    return BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
}

static int raw_truncate(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink)
{
    (void)shrink;
    uint64_t old = bs->size;
    int e = blk_file_truncate(bs->fd, size);
    if (e < 0) {
        blk_set_error("%s: cannot resize: %s", bs->filename, strerror(-e));
        return e;
    }
    if (size > old && old == 0 && prealloc == BLK_PREALLOC_OFF) {
        /* QEMU writes zeros over the first block of a file it grows from
         * empty (for its alignment probing), so that block reads as data
         * in map and measure; best effort, as there. */
        static const uint8_t first[4096];
        (void)blk_file_pwrite(bs->fd, first, size < sizeof(first) ? BLK_SECTOR_SIZE
                                                                    : sizeof(first), 0);
    }
    if (size > old && prealloc != BLK_PREALLOC_OFF) {
        if (prealloc == BLK_PREALLOC_FULL) {
            static const uint8_t zero[65536];
            for (uint64_t o = old; o < size;) {
                size_t n = size - o < sizeof(zero) ? size - o : sizeof(zero);
                int r = blk_file_pwrite(bs->fd, zero, n, o);
                if (r < 0)
                    return r;
                o += n;
            }
        } else if (prealloc == BLK_PREALLOC_FALLOC) {
            int r = blk_file_allocate(bs->fd, old, size - old);
            if (r < 0) {
                blk_set_error("%s: cannot preallocate: %s", bs->filename, strerror(-r));
                return r;
            }
        }
    }
    bs->size = size;
    return 0;
}

static int raw_create(const char *filename, uint64_t size, BlockOptions *opts)
{
    const char *pa = blkopts_get(opts, "preallocation");
    int prealloc = blk_prealloc_parse(pa);
    if (prealloc < 0) {
        blk_set_error("Invalid parameter '%s' for preallocation", pa);
        return -EINVAL;
    }
    const char *unused = blkopts_first_unused(opts);
    if (unused) {
        blk_set_error("Invalid parameter '%s'", unused);
        return -EINVAL;
    }
    if (size == BLK_SIZE_UNSET) {
        blk_set_error("Image creation needs a size parameter");
        return -EINVAL;
    }
    size = (size + BLK_SECTOR_SIZE - 1) & ~(uint64_t)(BLK_SECTOR_SIZE - 1);
    int fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        blk_set_error("Could not create '%s': %s", filename, strerror(e));
        return -e;
    }
    BlockDriverState bs = {.fd = fd, .filename = (char *)filename};
    int r = raw_truncate(&bs, size, prealloc == BLK_PREALLOC_METADATA ? BLK_PREALLOC_OFF : prealloc,
                         false);
    blk_file_close(fd);
    return r;
}

/* Over a node, the node's cluster size is raw's, as QEMU reports it. */
static int raw_get_info(BlockDriverState *bs, BlockInfo *info)
{
    if (!bs->file)
        return 0;
    BlockInfo ci;
    int r = blk_get_info(bs->file, &ci);
    if (r == 0)
        info->cluster_size = ci.cluster_size;
    blk_info_free(&ci);
    return 0;
}

const BlockDriver blk_raw_driver = {
    .name = "raw",
    .probe = raw_probe,
    .copy_from_file = raw_copy_from_file,
    .open = raw_open,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .preadv = raw_preadv,
    .pwritev = raw_pwritev,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .discard = raw_discard,
    .flush = raw_flush,
    .block_status = raw_block_status,
    .truncate = raw_truncate,
    .get_info = raw_get_info,
    .create = raw_create,
};
