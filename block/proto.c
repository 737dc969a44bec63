/* A node as the host file of another node: the virtual fds of block.h
 * (blk_file_is_node) and the host file calls on them.
 *
 * Each virtual fd is a slot: the node, and the end of the "file" the
 * format above sees.  The end is the node's size except after a
 * truncate to a size the node cannot take exactly (a qcow2 node grows in
 * whole sectors): reads past it see zeros, as past the end of a file.
 *
 * Locking: the slot's rwlock is held shared by every request and
 * exclusively by what changes the end (a write past it, a truncate), so
 * a node's size never changes under a request through the slot.  A
 * request never takes it twice: a node below is another slot.  The lock
 * is set up the first time its slot is given and never destroyed.  A
 * release holds it exclusively while it ends the generation, and every
 * request checks node and generation again once it holds the lock: a
 * request through a released fd gets EBADF, never the node the slot
 * names next.  vfd_mu guards the choice of a free slot; the order is
 * the slot's lock, then vfd_mu (blk_vfd_new takes no slot lock). */
#include "block/block.h"
#include "block/proto.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vfd {
    BlockDriverState *node; /* NULL: free (set and cleared under vfd_mu) */
    pthread_rwlock_t lock;  /* set up once (ready), never destroyed */
    bool ready;             /* under vfd_mu */
    uint64_t end;           /* under lock */
    bool ahead;             /* the node grew past the end ahead of writes */
    unsigned gen;           /* of the fd number; changes at each release */
};

/* A virtual fd is BLK_VFD_BASE + gen * BLK_VFD_MAX + slot, so that a
 * stale fd kept past its release finds no node rather than the next
 * one given the slot (as long as fewer than GENS reuses come between). */
#define GENS ((unsigned)((INT_MAX - BLK_VFD_BASE) / BLK_VFD_MAX))

static struct vfd vfds[BLK_VFD_MAX];
static pthread_mutex_t vfd_mu = PTHREAD_MUTEX_INITIALIZER;

/* Sizes a node takes: whole sectors. */
static uint64_t node_size(uint64_t end)
{
    return (end + BLK_SECTOR_SIZE - 1) & ~(uint64_t)(BLK_SECTOR_SIZE - 1);
}

int blk_vfd_new(BlockDriverState *node)
{
    pthread_mutex_lock(&vfd_mu);
    for (int i = 0; i < BLK_VFD_MAX; i++) {
        struct vfd *v = &vfds[i];
        if (v->node)
            continue;
        if (!v->ready) {
            pthread_rwlock_init(&v->lock, NULL);
            v->ready = true;
        }
        /* Not under the slot's lock (vfd_mu comes after it): a request
         * through a stale fd of this slot may hold it, but reads nothing
         * past the node and generation, and a request through the new
         * fd sees these through the store of the node. */
        v->end = node->size;
        v->ahead = false;
        unsigned gen = __atomic_load_n(&v->gen, __ATOMIC_RELAXED);
        __atomic_store_n(&v->node, node, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&vfd_mu);
        return BLK_VFD_BASE + (int)(gen * BLK_VFD_MAX) + i;
    }
    pthread_mutex_unlock(&vfd_mu);
    blk_set_error("too many nodes opened as host files (at most %d)", BLK_VFD_MAX);
    return -EMFILE;
}

static unsigned fd_slot(int fd)
{
    return (unsigned)(fd - BLK_VFD_BASE) % BLK_VFD_MAX;
}

static unsigned fd_gen(int fd)
{
    return (unsigned)(fd - BLK_VFD_BASE) / BLK_VFD_MAX;
}

/* Whether fd names v's node now: a first look without the lock, or the
 * answer with it held (node and gen change only under it, exclusively). */
static bool names(struct vfd *v, int fd)
{
    return __atomic_load_n(&v->node, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&v->gen, __ATOMIC_RELAXED) == fd_gen(fd);
}

/* The slot fd names, with its lock held (exclusively if excl), or NULL
 * for an fd that names none: a released one, whose slot may name
 * another node by the time the lock is ours.  A slot that ever had a
 * node has its lock ready (the node's store releases its setup). */
static struct vfd *slot_lock(int fd, bool excl)
{
    if (fd < BLK_VFD_BASE)
        return NULL;
    struct vfd *v = &vfds[fd_slot(fd)];
    if (!names(v, fd))
        return NULL;
    if (excl)
        pthread_rwlock_wrlock(&v->lock);
    else
        pthread_rwlock_rdlock(&v->lock);
    if (names(v, fd))
        return v;
    pthread_rwlock_unlock(&v->lock);
    return NULL;
}

/* r for a request that does nothing (no bytes, a bad argument), or
 * -EBADF if fd names no node. */
static int or_badf(int fd, int r)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    pthread_rwlock_unlock(&v->lock);
    return r;
}

void blk_vfd_release(int fd)
{
    /* Exclusively: requests through the fd end first, and those that
     * come after see it released.  The shrink runs under the slot's lock
     * only, not vfd_mu: nothing else waits for it. */
    struct vfd *v = slot_lock(fd, true);
    if (!v)
        return;
    if (v->ahead && node_size(v->end) < v->node->size) {
        /* the room grown ahead goes: the node is left the size a file
         * would be (best effort: past the end it reads as zeros) */
        (void)blk_truncate(v->node, node_size(v->end), BLK_PREALLOC_OFF, true);
    }
    pthread_mutex_lock(&vfd_mu);
    __atomic_store_n(&v->gen, (fd_gen(fd) + 1) % GENS, __ATOMIC_RELAXED);
    __atomic_store_n(&v->node, NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vfd_mu);
    pthread_rwlock_unlock(&v->lock);
}

BlockDriverState *blk_vfd_node(int fd)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return NULL;
    BlockDriverState *n = v->node;
    pthread_rwlock_unlock(&v->lock);
    return n;
}

/* Room a write past the end grows the node by: an eighth of it, at
 * least 1 MiB, so that a format allocating at its end (a cluster at a
 * time) grows the node now and then rather than at every cluster. */
#define GROW_MIN (1u << 20)

/* The end moves to at least new_end; the node grows (reading as zeros
 * where it grows) if it must: by what ahead allows (a write) or to the
 * end (a truncate).  The node reads as zeros from the end to its own
 * size (a shrink zeroes what it leaves there), so moving the end up
 * within the node writes nothing.  A grow is not synced on its own: the
 * flush of the format above reaches the node.  Under the exclusive lock. */
static int grow_locked(struct vfd *v, uint64_t new_end, bool ahead)
{
    if (new_end <= v->end)
        return 0;
    BlockDriverState *n = v->node;
    if (new_end > n->size) {
        uint64_t want = node_size(new_end);
        if (want < new_end)
            return -EFBIG; /* within a sector of 2^64 */
        uint64_t room = n->size / 8 > GROW_MIN ? n->size / 8 : GROW_MIN;
        uint64_t more = n->size + room > n->size ? node_size(n->size + room) : 0;
        int r = -1;
        if (ahead && more > want) {
            r = blk_truncate(n, more, BLK_PREALLOC_OFF | BLK_PREALLOC_NO_SYNC, false);
            if (r == 0)
                v->ahead = true;
        }
        /* not ahead, or a node that cannot take more: what is needed */
        if (r < 0 && (r = blk_truncate(n, want, BLK_PREALLOC_OFF | BLK_PREALLOC_NO_SYNC,
                                       false)) < 0)
            return r;
    }
    v->end = new_end;
    return 0;
}

static int grow(int fd, uint64_t new_end)
{
    struct vfd *v = slot_lock(fd, true);
    if (!v)
        return -EBADF;
    int r = grow_locked(v, new_end, true);
    pthread_rwlock_unlock(&v->lock);
    return r;
}

int vfd_pread(int fd, void *buf, size_t len, uint64_t off)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    uint64_t n = off < v->end ? v->end - off : 0;
    if (n > len)
        n = len;
    int r = n ? blk_pread(v->node, off, buf, n) : 0;
    pthread_rwlock_unlock(&v->lock);
    if (r == 0 && n < len)
        memset((uint8_t *)buf + n, 0, len - n); /* past the end: zeros */
    return r;
}

int vfd_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    /* one segment: blk_pwritev hands it to blk_pwrite as it is */
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return vfd_pwritev(fd, &iov, 1, off);
}

int vfd_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    size_t total = blk_iov_total(iov, iovcnt);
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    bool inside = off + total <= v->end;
    int r = inside ? blk_preadv(v->node, off, iov, iovcnt) : 0;
    pthread_rwlock_unlock(&v->lock);
    /* the end is in it: piece by piece, zeros past the end */
    for (int i = 0; !inside && r == 0 && i < iovcnt; off += iov[i].iov_len, i++)
        r = vfd_pread(fd, iov[i].iov_base, iov[i].iov_len, off);
    return r;
}

int vfd_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    size_t total = blk_iov_total(iov, iovcnt);
    if (!total || off + total < off) /* no bytes: as pwritev, the file as it was */
        return or_badf(fd, total ? -EFBIG : 0);
    for (;;) {
        struct vfd *v = slot_lock(fd, false);
        if (!v)
            return -EBADF;
        if (off + total <= v->end) {
            int r = blk_pwritev(v->node, off, iov, iovcnt);
            pthread_rwlock_unlock(&v->lock);
            return r;
        }
        pthread_rwlock_unlock(&v->lock);
        int r = grow(fd, off + total);
        if (r < 0)
            return r;
    }
}

int vfd_sync(int fd)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    int r = blk_flush(v->node);
    pthread_rwlock_unlock(&v->lock);
    return r;
}

int64_t vfd_size(int fd)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    int64_t end = (int64_t)v->end;
    pthread_rwlock_unlock(&v->lock);
    return end;
}

/* What fstat says of a node: a regular file of the node's end, using
 * what the node's files use. */
int vfd_stat(int fd, struct stat *st)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    memset(st, 0, sizeof(*st));
    int64_t used = blk_allocated_size(v->node);
    st->st_size = (off_t)v->end;
    pthread_rwlock_unlock(&v->lock);
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_blksize = 4096;
    st->st_blocks = used > 0 ? used / 512 : 0;
    /* no two nodes are the same file: a chain loop is caught by the
     * files below them */
    st->st_dev = (dev_t)-1;
    st->st_ino = (ino_t)fd;
    return 0;
}

int vfd_truncate(int fd, uint64_t size)
{
    struct vfd *v = slot_lock(fd, true);
    if (!v)
        return -EBADF;
    int r = 0;
    if (size > v->end) {
        r = grow_locked(v, size, false);
    } else if (size < v->end) {
        BlockDriverState *n = v->node;
        uint64_t ns = node_size(size);
        /* What is cut off reads as zeros, as past the end of a file,
         * also once grown again or reopened: zeroed first, as a node
         * that shrinks may keep the bytes of a partial cluster and show
         * them again when it grows (a qcow2 image does, in QEMU too). */
        uint64_t zend = v->end < n->size ? v->end : n->size;
        if (zend > size)
            r = blk_pwrite_zeroes(n, size, zend - size, BLK_ZERO_MAY_UNMAP);
        if (r == 0 && ns < n->size)
            r = blk_truncate(n, ns, BLK_PREALLOC_OFF, true);
        if (r == 0)
            v->end = size;
    }
    pthread_rwlock_unlock(&v->lock);
    return r;
}

int vfd_extend(int fd, uint64_t off, uint64_t len)
{
    if (off + len < off)
        return or_badf(fd, -EFBIG);
    return grow(fd, off + len);
}

int vfd_zero(int fd, uint64_t off, uint64_t len)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    uint64_t n = off < v->end ? v->end - off : 0;
    if (n > len)
        n = len;
    int r = n ? blk_pwrite_zeroes(v->node, off, n, BLK_ZERO_MAY_UNMAP) : 0;
    pthread_rwlock_unlock(&v->lock);
    return r;
}

/* lseek's SEEK_END, SEEK_DATA and SEEK_HOLE on the node: data is what
 * the node (or a backing file below it) stores, a hole what reads as
 * zeros from nowhere. */
int64_t vfd_seek(int fd, uint64_t off, int whence)
{
    if (whence != SEEK_END && whence != SEEK_DATA && whence != SEEK_HOLE)
        return or_badf(fd, -EINVAL);
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    uint64_t end = v->end;
    int64_t r = (int64_t)end;
    if (whence == SEEK_END)
        goto out;
    if (off >= end) {
        r = -ENXIO;
        goto out;
    }
    while (off < end) {
        uint64_t pnum = 0, host;
        int depth;
        int st = blk_block_status_above(v->node, off, end - off, &pnum, &host, &depth, NULL);
        if (st < 0) {
            r = st;
            goto out;
        }
        bool data = (st & BLK_STATUS_DATA) || !(st & BLK_STATUS_ZERO);
        if (data == (whence == SEEK_DATA)) {
            r = (int64_t)off;
            goto out;
        }
        if (!pnum)
            break;
        off += pnum;
    }
    /* no data up to the end; the end is a hole */
    r = whence == SEEK_DATA ? -ENXIO : (int64_t)end;
out:
    pthread_rwlock_unlock(&v->lock);
    return r;
}

int blk_vfd_block_status(int fd, uint64_t off, uint64_t len, uint64_t *pnum,
                         uint64_t *host_offset)
{
    struct vfd *v = slot_lock(fd, false);
    if (!v)
        return -EBADF;
    int r;
    if (off >= v->end) {
        *pnum = len;
        *host_offset = off;
        r = BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
    } else {
        r = blk_block_status(v->node, off, len < v->end - off ? len : v->end - off, pnum,
                             host_offset);
    }
    pthread_rwlock_unlock(&v->lock);
    return r;
}
