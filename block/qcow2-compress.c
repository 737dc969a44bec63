/* qcow2 compressed writes (qemu-img convert -c, calf-io write -c).
 *
 * Each guest cluster is compressed on the caller's thread with no lock
 * held, so several threads compress in parallel; only the allocation,
 * the small data write and the L2 update run under s->lock.
 *
 * As in QEMU: whole clusters only (a short last cluster is zero padded),
 * write-once (the target cluster must not have a host offset), deflate
 * as a raw stream with a 4 KiB window or a zstd frame, and data that
 * does not shrink below the cluster size is written as a plain cluster.
 * Compressed data is packed at byte granularity: a chunk may share host
 * clusters with other chunks and takes one reference on every host
 * cluster it touches. */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Host bytes for a compressed chunk of size bytes, with one reference
 * counted on every host cluster it touches (QEMU's qcow2_alloc_bytes). */
static int64_t alloc_bytes(Qcow2State *s, uint64_t size)
{
    uint64_t cs = s->cluster_size, off = s->free_byte_offset;
    int r;
    if (off) {
        uint64_t ref;
        if ((r = qcow2_get_refcount(s, off >> s->cluster_bits, &ref)) < 0)
            return r;
        if (ref == 0 || ref >= s->refcount_max)
            off = 0;
    }
    uint64_t room = off ? cs - (off & (cs - 1)) : 0;
    if (off && room >= size) {
        if ((r = qcow2_update_refcount(s, off, size, 1)) < 0)
            return r;
    } else {
        int64_t nc = qcow2_alloc_clusters(s, 1);
        if (nc < 0)
            return nc;
        if (off && (uint64_t)nc == off + room) {
            /* contiguous: the chunk spans the old tail and the new cluster */
            if ((r = qcow2_update_refcount(s, off, 1, 1)) < 0)
                return r;
        } else {
            off = (uint64_t)nc;
        }
    }
    s->free_byte_offset = (off + size) & (cs - 1) ? off + size : 0;
    return (int64_t)off;
}

/* Stores one compressed chunk for the guest cluster at off.  Lock held. */
static int store_compressed(Qcow2State *s, uint64_t off, const uint8_t *data, size_t clen)
{
    BlockDriverState *bs = s->bs;
    uint8_t *table;
    qcow2_inflight_wait(s, off >> s->cluster_bits, 1);
    int r = qcow2_l2_get_writable(s, off, &table);
    if (r < 0)
        return r;
    uint64_t idx = (off >> s->cluster_bits) & (s->l2_size - 1);
    uint8_t *e = table + idx * s->l2_entry_bytes;
    uint64_t l2e = qcow2_be64(e);
    if ((l2e & QCOW_OFLAG_COMPRESSED) || (l2e & L2E_OFFSET_MASK)) {
        blk_set_error("%s: compression cannot overwrite the allocated cluster at guest "
                      "offset 0x%" PRIx64, bs->filename, off);
        return -EIO;
    }
    if ((r = qcow2_mark_dirty(s)) < 0)
        return r;
    int64_t host = alloc_bytes(s, clen);
    if (host < 0)
        return (int)host;
    /* pad to the end of the sector so that sector-based readers never
     * read past the end of the file; later chunks overwrite the padding */
    uint64_t end = qcow2_align_up((uint64_t)host + clen, BLK_SECTOR_SIZE);
    uint8_t *buf = malloc(end - host);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, data, clen);
    memset(buf + clen, 0, end - host - clen);
    r = blk_file_pwrite(s->fd, buf, end - host, host);
    free(buf);
    if (r < 0) {
        blk_set_error("%s: write error: %s", bs->filename, strerror(-r));
        return r;
    }
    s->need_sync = s->deps_unsynced = true;
    /* the L2 table may have been evicted by the allocation */
    if ((r = qcow2_l2_get_writable(s, off, &table)) < 0)
        return r;
    e = table + idx * s->l2_entry_bytes;
    uint64_t nb = (((uint64_t)host + clen - 1) >> 9) - ((uint64_t)host >> 9);
    qcow2_put64(e, (uint64_t)host | QCOW_OFLAG_COMPRESSED | (nb << s->csize_shift));
    if (s->extl2)
        qcow2_put64(e + 8, 0);
    qcow2_cache_mark_dirty(&s->l2_cache, table);
    qcow2_cbuf_invalidate(s);
    return 0;
}

static int write_one(BlockDriverState *bs, uint64_t off, const uint8_t *src, size_t n,
                     uint8_t *in, uint8_t *out)
{
    Qcow2State *s = bs->opaque;
    size_t cs = s->cluster_size;
    if (n < cs) {
        memcpy(in, src, n);
        memset(in + n, 0, cs - n);
        src = in;
    }
    ssize_t clen = blk_compress_cluster(s->compression_type, out, cs - 1, src, cs);
    if (clen == -ENOSPC)
        return bs->drv->pwrite(bs, off, src, n); /* does not shrink: plain */
    if (clen < 0) {
        blk_set_error("%s: compression failed", bs->filename);
        return (int)clen;
    }
    pthread_mutex_lock(&s->lock);
    int r = store_compressed(s, off, out, (size_t)clen);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_pwrite_compressed(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    if (s->crypt_method) {
        blk_set_error("%s: compressed writes to encrypted images are not supported",
                      bs->filename);
        return -ENOTSUP;
    }
    /* a data file cluster is at its guest offset, whole: nothing to pack */
    if (qcow2_has_data_file(s)) {
        blk_set_error("%s: compressed writes to an image with a data file are not supported",
                      bs->filename);
        return -ENOTSUP;
    }
    if (off & (cs - 1) || ((len & (cs - 1)) && off + len != bs->size)) {
        blk_set_error("%s: compressed writes must cover whole clusters (offset %" PRIu64
                      ", length %zu)", bs->filename, off, len);
        return -EINVAL;
    }
    uint8_t *in = malloc(cs), *out = malloc(cs);
    int r = in && out ? 0 : -ENOMEM;
    const uint8_t *p = buf;
    while (r == 0 && len) {
        size_t n = len < cs ? len : cs;
        r = write_one(bs, off, p, n, in, out);
        off += n;
        p += n;
        len -= n;
    }
    free(in);
    free(out);
    return r;
}
