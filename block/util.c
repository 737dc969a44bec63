/* Small shared pieces of the block layer: option lists, size parsing,
 * the error message slot, host file I/O and image locking. */
#include "block/block.h"
#include "block/blkdebug.h"
#include "block/proto.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <pthread.h>

static __thread char blk_errbuf[1024];

void blk_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(blk_errbuf, sizeof(blk_errbuf), fmt, ap);
    va_end(ap);
}

const char *blk_error(void)
{
    return blk_errbuf[0] ? blk_errbuf : "unknown error";
}

/* ---- option lists ---- */

int blkopts_set(BlockOptions *o, const char *key, const char *value)
{
    for (int i = 0; i < o->n; i++) {
        if (!strcmp(o->opt[i].key, key)) {
            char *v = strdup(value);
            if (!v)
                return -ENOMEM;
            free(o->opt[i].value);
            o->opt[i].value = v;
            o->opt[i].used = false;
            return 0;
        }
    }
    BlockOpt *n = realloc(o->opt, (o->n + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    o->opt = n;
    n[o->n].key = strdup(key);
    n[o->n].value = strdup(value);
    n[o->n].used = false;
    if (!n[o->n].key || !n[o->n].value)
        return -ENOMEM;
    o->n++;
    return 0;
}

int blkopts_parse(BlockOptions *o, const char *str)
{
    size_t len = strlen(str);
    char *buf = malloc(len + 1);
    if (!buf)
        return -ENOMEM;
    const char *p = str;
    while (*p) {
        /* key up to '=' or ','; value up to a single ',' (",," is a comma) */
        size_t k = 0;
        while (*p && *p != '=' && *p != ',')
            buf[k++] = *p++;
        buf[k] = 0;
        char *key = strdup(buf);
        if (!key) {
            free(buf);
            return -ENOMEM;
        }
        size_t v = 0;
        bool has_value = false;
        if (*p == '=') {
            has_value = true;
            p++;
            while (*p) {
                if (*p == ',') {
                    if (p[1] == ',') {
                        buf[v++] = ',';
                        p += 2;
                        continue;
                    }
                    break;
                }
                buf[v++] = *p++;
            }
        }
        buf[v] = 0;
        if (*p == ',')
            p++;
        if (!key[0]) {
            free(key);
            continue;
        }
        /* "help" and bare flags ("-o lazy_refcounts") mean on */
        int r = blkopts_set(o, key, has_value ? buf : "on");
        free(key);
        if (r < 0) {
            free(buf);
            return r;
        }
    }
    free(buf);
    return 0;
}

static BlockOpt *blkopts_find(BlockOptions *o, const char *key)
{
    if (!o)
        return NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->opt[i].key, key)) {
            o->opt[i].used = true;
            return &o->opt[i];
        }
    return NULL;
}

const char *blkopts_get(BlockOptions *o, const char *key)
{
    BlockOpt *opt = blkopts_find(o, key);
    return opt ? opt->value : NULL;
}

int blkopts_get_bool(BlockOptions *o, const char *key, bool def, bool *out)
{
    const char *v = blkopts_get(o, key);
    *out = def;
    if (!v)
        return 0;
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0")) {
        *out = false;
        return 0;
    }
    blk_set_error("Parameter '%s' expects 'on' or 'off'", key);
    return -EINVAL;
}

int blkopts_get_size(BlockOptions *o, const char *key, uint64_t def, uint64_t *out)
{
    const char *v = blkopts_get(o, key);
    *out = def;
    if (!v)
        return 0;
    if (blk_parse_size(v, out) < 0) {
        blk_set_error("Parameter '%s' expects a size (got '%s')", key, v);
        return -EINVAL;
    }
    return 0;
}

int blkopts_get_uint(BlockOptions *o, const char *key, uint64_t def, uint64_t *out)
{
    const char *v = blkopts_get(o, key);
    *out = def;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (errno || end == v || *end || v[0] == '-') {
        blk_set_error("Parameter '%s' expects a number (got '%s')", key, v);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

const char *blkopts_first_unused(const BlockOptions *o)
{
    if (!o)
        return NULL;
    for (int i = 0; i < o->n; i++)
        if (!o->opt[i].used)
            return o->opt[i].key;
    return NULL;
}

void blkopts_free(BlockOptions *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++) {
        free(o->opt[i].key);
        free(o->opt[i].value);
    }
    free(o->opt);
    o->opt = NULL;
    o->n = 0;
}

/* ---- sizes ---- */

int blk_parse_size(const char *s, uint64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s) && *s != '.')
        return -EINVAL;
    char *end;
    errno = 0;
    /* integers exactly; fractions ("1.5G") through long double; as in
     * QEMU, an integer may be hex ("0x10000"), without a fraction */
    bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    unsigned long long ival = strtoull(s, &end, hex ? 16 : 10);
    long double val = ival;
    bool frac = false;
    if (errno || (hex && end == s + 2))
        return -EINVAL;
    if (*end == '.' && !hex) {
        val = strtold(s, &end);
        frac = true;
    }
    uint64_t mul = 1;
    switch (*end) {
    case 0: break;
    case 'b': case 'B': mul = 1; end++; break;
    case 'k': case 'K': mul = 1ULL << 10; end++; break;
    case 'm': case 'M': mul = 1ULL << 20; end++; break;
    case 'g': case 'G': mul = 1ULL << 30; end++; break;
    case 't': case 'T': mul = 1ULL << 40; end++; break;
    case 'p': case 'P': mul = 1ULL << 50; end++; break;
    case 'e': case 'E': mul = 1ULL << 60; end++; break;
    default: return -EINVAL;
    }
    if (*end)
        return -EINVAL;
    if (frac) {
        long double r = val * mul;
        if (r >= 18446744073709551615.0L || r < 0)
            return -EINVAL;
        *out = (uint64_t)r;
        return 0;
    }
    if (mul > 1 && ival > UINT64_MAX / mul)
        return -EINVAL;
    *out = ival * mul;
    return 0;
}

char *blk_size_to_str(uint64_t size, char *buf, size_t len)
{
    static const char *suffix[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    long double v = size;
    while (v >= 1024 && i < 6) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, len, "%" PRIu64 " B", size);
    else {
        /* qemu prints three significant digits ("1.5 GiB", "64 MiB") */
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%.*Lf", v >= 100 ? 0 : v >= 10 ? 1 : 2, v);
        /* drop trailing zeros of the fraction */
        char *dot = strchr(tmp, '.');
        if (dot) {
            char *e = tmp + strlen(tmp) - 1;
            while (e > dot && *e == '0')
                *e-- = 0;
            if (e == dot)
                *e = 0;
        }
        snprintf(buf, len, "%s %s", tmp, suffix[i]);
    }
    return buf;
}

int blk_prealloc_parse(const char *s)
{
    if (!s || !strcmp(s, "off"))
        return BLK_PREALLOC_OFF;
    if (!strcmp(s, "metadata"))
        return BLK_PREALLOC_METADATA;
    if (!strcmp(s, "falloc"))
        return BLK_PREALLOC_FALLOC;
    if (!strcmp(s, "full"))
        return BLK_PREALLOC_FULL;
    return -EINVAL;
}

const char *blk_prealloc_name(int mode)
{
    static const char *n[] = {"off", "metadata", "falloc", "full"};
    return mode >= 0 && mode <= 3 ? n[mode] : "?";
}

/* ---- host files ---- */

/* ---- range locks ---- */

static bool range_conflicts(const BlkRangeLock *l, uint64_t key, uint64_t lo, uint64_t hi,
                            bool excl)
{
    for (const BlkRange *r = l->head; r; r = r->next)
        if (r->key == key && r->lo < hi && lo < r->hi && (r->excl || excl))
            return true;
    return false;
}

void blk_range_lock(BlkRangeLock *l, BlkRange *r, uint64_t key, uint64_t lo, uint64_t hi,
                    bool excl)
{
    *r = (BlkRange){.key = key, .lo = lo, .hi = hi, .excl = excl};
    pthread_mutex_lock(&l->mu);
    while (range_conflicts(l, key, lo, hi, excl))
        pthread_cond_wait(&l->cond, &l->mu);
    r->next = l->head;
    l->head = r;
    pthread_mutex_unlock(&l->mu);
}

void blk_range_unlock(BlkRangeLock *l, BlkRange *r)
{
    pthread_mutex_lock(&l->mu);
    for (BlkRange **p = &l->head; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

/* O_DIRECT (cache=none) needs buffers, offsets and lengths aligned to
 * the device's block: requests that are not (metadata entries, unaligned
 * guest requests) go through an aligned bounce buffer, read-modify-write
 * for writes.
 *
 * A read-modify-write rewrites bytes it was not asked to write, so it
 * must not overlap any other write of the same blocks: two guest writes
 * to different sectors of one 4 KiB block would lose one, and with
 * clusters smaller than 4 KiB a data write would put back an L2 or
 * refcount entry that the image lock let another thread change.  Every
 * write to an O_DIRECT file therefore holds its 4 KiB blocks in
 * direct_writes while it runs: shared for a plain aligned write,
 * exclusive for a read-modify-write (and for fallocate on such a file).
 * The bounce works in pieces of at most DIRECT_CHUNK, so a huge
 * unaligned request costs bounded memory. */
#define DIRECT_ALIGN 4096
#define DIRECT_CHUNK (256u << 10)

static BlkRangeLock direct_writes = BLK_RANGE_LOCK_INIT;

/* Set once anything in the process is opened with O_DIRECT: until then
 * no write needs the range lock, nor the fcntl that would say so. */
static bool direct_opened;

void blk_file_direct_opened(void)
{
    __atomic_store_n(&direct_opened, true, __ATOMIC_RELAXED);
}

static bool is_direct(int fd)
{
    if (!__atomic_load_n(&direct_opened, __ATOMIC_RELAXED))
        return false;
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_DIRECT);
}

static uint64_t align_down(uint64_t v)
{
    return v & ~(uint64_t)(DIRECT_ALIGN - 1);
}

static uint64_t align_up(uint64_t v)
{
    return align_down(v + DIRECT_ALIGN - 1);
}

static int plain_pread(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0) {
            memset(p, 0, len);
            return 0;
        }
        p += r;
        len -= r;
        off += r;
    }
    return 0;
}

static int plain_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = pwrite(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        p += r;
        len -= r;
        off += r;
    }
    return 0;
}

/* One piece of a bounced request: [off, off+len) lies inside
 * [a0, a1), which is aligned and at most DIRECT_CHUNK long. */
static int bounce_piece(int fd, uint8_t *b, void *rbuf, const void *wbuf, size_t len,
                        uint64_t off, uint64_t a0, uint64_t a1)
{
    int r = 0;
    if (rbuf) {
        if ((r = plain_pread(fd, b, a1 - a0, a0)) == 0)
            memcpy(rbuf, b + (off - a0), len);
        return r;
    }
    BlkRange held;
    bool head = off > a0, tail = off + len < a1;
    blk_range_lock(&direct_writes, &held, (uint64_t)fd, a0, a1, head || tail);
    /* only the partial blocks at the ends need their old bytes */
    if (head)
        r = plain_pread(fd, b, DIRECT_ALIGN, a0);
    if (r == 0 && tail && (!head || a1 - DIRECT_ALIGN > a0))
        r = plain_pread(fd, b + (a1 - a0 - DIRECT_ALIGN), DIRECT_ALIGN, a1 - DIRECT_ALIGN);
    if (r == 0) {
        memcpy(b + (off - a0), wbuf, len);
        r = plain_pwrite(fd, b, a1 - a0, a0);
    }
    blk_range_unlock(&direct_writes, &held);
    return r;
}

static int bounce(int fd, void *rbuf, const void *wbuf, size_t len, uint64_t off)
{
    uint64_t span = align_up(off + len) - align_down(off);
    uint8_t *b = aligned_alloc(DIRECT_ALIGN, span < DIRECT_CHUNK ? span : DIRECT_CHUNK);
    if (!b)
        return -ENOMEM;
    int r = 0;
    while (len && r == 0) {
        uint64_t a0 = align_down(off), a1 = align_up(off + len);
        if (a1 - a0 > DIRECT_CHUNK)
            a1 = a0 + DIRECT_CHUNK;
        size_t n = off + len < a1 ? len : a1 - off;
        r = bounce_piece(fd, b, rbuf, wbuf, n, off, a0, a1);
        off += n;
        len -= n;
        if (rbuf)
            rbuf = (uint8_t *)rbuf + n;
        if (wbuf)
            wbuf = (const uint8_t *)wbuf + n;
    }
    free(b);
    return r;
}

static bool unaligned(const void *buf, size_t len, uint64_t off)
{
    return ((uintptr_t)buf | len | off) & (DIRECT_ALIGN - 1);
}

/* One preadv/pwritev for a scattered request; a short one (end of file,
 * a signal) is redone segment by segment.  -ENOTSUP under O_DIRECT,
 * where guest segments are rarely aligned: the caller gathers instead. */
static int file_rwv(int fd, const struct iovec *iov, int iovcnt, uint64_t off, bool write)
{
    size_t total = 0;
    ssize_t r;

    if (is_direct(fd) || iovcnt > IOV_MAX)
        return -ENOTSUP;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    r = write ? pwritev(fd, iov, iovcnt, (off_t)off) : preadv(fd, iov, iovcnt, (off_t)off);
    if (r >= 0 && (size_t)r == total)
        return 0;
    for (int i = 0; i < iovcnt; off += iov[i].iov_len, i++) {
        int e = write ? plain_pwrite(fd, iov[i].iov_base, iov[i].iov_len, off)
                      : plain_pread(fd, iov[i].iov_base, iov[i].iov_len, off);
        if (e < 0)
            return e;
    }
    return 0;
}

int blk_file_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    if (blk_file_is_node(fd))
        return vfd_preadv(fd, iov, iovcnt, off);
    int r = blkdebug_on() ? blkdebug_file_check_slow(fd, BLKDBG_IO_READ, off,
                                                     blk_iov_total(iov, iovcnt))
                          : 0;
    return r ? r : file_rwv(fd, iov, iovcnt, off, false);
}

int blk_file_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    if (blk_file_is_node(fd))
        return vfd_pwritev(fd, iov, iovcnt, off);
    int r = blkdebug_on() ? blkdebug_file_check_slow(fd, BLKDBG_IO_WRITE, off,
                                                     blk_iov_total(iov, iovcnt))
                          : 0;
    return r ? r : file_rwv(fd, iov, iovcnt, off, true);
}

/* ---- files whose fdatasync failed ----
 * Linux marks the pages whose writeback failed clean: a second fdatasync
 * returns 0 without writing them, and what the caller then writes on the
 * strength of it (a qcow2 L2 entry) points at data that never reached
 * the disk.  As QEMU's file-posix (page_cache_inconsistent): after one
 * failure, every later sync of that open file fails with the same error
 * and tries nothing, so the image above never acknowledges a flush
 * again.  A file opened with O_DIRECT has no page cache in the way and
 * is exempt.  blk_file_close() ends it when the file is closed (every
 * close of an image file in block/ goes through it: a record left
 * behind would hold the next open that gets the same fd number and
 * inode); device and inode also guard an fd number closed elsewhere
 * and given to another file. */
struct sync_err {
    int fd, err;
    dev_t dev;
    ino_t ino;
};
static pthread_mutex_t sync_err_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sync_err *sync_errs; /* under sync_err_mu */
static int nsync_errs;             /* written under sync_err_mu, read atomically */
static int sync_errs_cap;

static void sync_err_drop(int i)
{
    sync_errs[i] = sync_errs[nsync_errs - 1];
    __atomic_store_n(&nsync_errs, nsync_errs - 1, __ATOMIC_RELAXED);
}

/* The error fd's earlier sync failed with (a positive errno), or 0. */
static int sync_err_of(int fd)
{
    if (!__atomic_load_n(&nsync_errs, __ATOMIC_RELAXED))
        return 0;
    int err = 0;
    pthread_mutex_lock(&sync_err_mu);
    for (int i = 0; i < nsync_errs; i++) {
        if (sync_errs[i].fd != fd)
            continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_dev == sync_errs[i].dev &&
            st.st_ino == sync_errs[i].ino)
            err = sync_errs[i].err;
        else
            sync_err_drop(i); /* the number names another file now */
        break;
    }
    pthread_mutex_unlock(&sync_err_mu);
    return err;
}

static void sync_err_set(int fd, int err)
{
    struct stat st;
    if (is_direct(fd) || fstat(fd, &st) < 0)
        return;
    pthread_mutex_lock(&sync_err_mu);
    int i = 0;
    while (i < nsync_errs && sync_errs[i].fd != fd)
        i++;
    if (i == nsync_errs && nsync_errs == sync_errs_cap) {
        int cap = sync_errs_cap ? sync_errs_cap * 2 : 8;
        struct sync_err *p = realloc(sync_errs, (size_t)cap * sizeof(*p));
        if (!p) {
            /* the failure itself is reported; only its memory is lost */
            pthread_mutex_unlock(&sync_err_mu);
            return;
        }
        sync_errs = p;
        sync_errs_cap = cap;
    }
    sync_errs[i] = (struct sync_err){fd, err, st.st_dev, st.st_ino};
    if (i == nsync_errs)
        __atomic_store_n(&nsync_errs, nsync_errs + 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&sync_err_mu);
}

static void forget_sync_error(int fd)
{
    if (!__atomic_load_n(&nsync_errs, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&sync_err_mu);
    for (int i = 0; i < nsync_errs; i++) {
        if (sync_errs[i].fd == fd) {
            sync_err_drop(i);
            break;
        }
    }
    pthread_mutex_unlock(&sync_err_mu);
}

void blk_file_close(int fd)
{
    if (fd < 0)
        return;
    forget_sync_error(fd);
    close(fd);
}

/* One sync of a file at a time (QEMU runs one flush per node at once).
 * Linux reports a writeback error to one fdatasync of an open file: one
 * running beside it returns 0, and would acknowledge a flush whose data
 * is lost before the first has recorded its failure.  A sync that
 * starts while another of the same fd is in flight waits for it, then
 * finds its error recorded.  Keyed by fd number; numbers are handed out
 * lowest first, so two open files share a lock only past 256 fds (they
 * then sync one after the other, which is only slower). */
#define SYNC_LOCKS 256
static pthread_mutex_t sync_locks[SYNC_LOCKS] = {[0 ... SYNC_LOCKS - 1] =
                                                     PTHREAD_MUTEX_INITIALIZER};

int blk_file_sync(int fd)
{
    if (blk_file_is_node(fd))
        return vfd_sync(fd);
    int r = sync_err_of(fd);
    if (r)
        return -r;
    /* an injected error is blkdebug's, above the file: not sticky */
    if ((r = blkdebug_file_check(fd, BLKDBG_IO_FLUSH, 0, 0)))
        return r;
    pthread_mutex_t *mu = &sync_locks[(unsigned)fd % SYNC_LOCKS];
    pthread_mutex_lock(mu);
    r = sync_err_of(fd); /* one that ran meanwhile failed */
    if (!r && fdatasync(fd) < 0) {
        r = errno;
        sync_err_set(fd, r);
    }
    pthread_mutex_unlock(mu);
    return -r;
}

void blk_file_start_writeback(int fd)
{
    /* only what the kernel's flusher could write at any moment anyway:
     * no ordering between writes is given or taken away */
    sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int blk_file_clone(int fd, uint64_t off, int src_fd, uint64_t src_off, uint64_t len)
{
    if (blk_file_is_node(fd) || blk_file_is_node(src_fd))
        return -EOPNOTSUPP;
    int e = blkdebug_file_check(fd, BLKDBG_IO_WRITE, off, len);
    if (e)
        return e;
    struct file_clone_range r = { .src_fd = src_fd, .src_offset = src_off, .src_length = len,
                                  .dest_offset = off };
    return ioctl(fd, FICLONERANGE, &r) == 0 ? 0 : -errno;
}

int blk_file_pread(int fd, void *buf, size_t len, uint64_t off)
{
    if (blk_file_is_node(fd))
        return vfd_pread(fd, buf, len, off);
    int r = blkdebug_file_check(fd, BLKDBG_IO_READ, off, len);
    if (r)
        return r;
    if (unaligned(buf, len, off) && is_direct(fd))
        return bounce(fd, buf, NULL, len, off);
    return plain_pread(fd, buf, len, off);
}

int blk_file_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    if (blk_file_is_node(fd))
        return vfd_pwrite(fd, buf, len, off);
    int e = blkdebug_file_check(fd, BLKDBG_IO_WRITE, off, len);
    if (e)
        return e;
    if (!is_direct(fd))
        return plain_pwrite(fd, buf, len, off);
    if (unaligned(buf, len, off))
        return bounce(fd, NULL, buf, len, off);
    BlkRange held;
    blk_range_lock(&direct_writes, &held, (uint64_t)fd, off, off + len, false);
    int r = plain_pwrite(fd, buf, len, off);
    blk_range_unlock(&direct_writes, &held);
    return r;
}

/* fallocate on an O_DIRECT file changes bytes a bounce may be holding:
 * it takes its blocks exclusively (see direct_writes). */
static int file_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
    BlkRange held;
    bool direct = is_direct(fd);
    if (direct)
        blk_range_lock(&direct_writes, &held, (uint64_t)fd, align_down(off),
                       align_up(off + len), true);
    int r = fallocate(fd, mode, (off_t)off, (off_t)len) == 0 ? 0 : -errno;
    if (direct)
        blk_range_unlock(&direct_writes, &held);
    return r;
}

int blk_file_extend(int fd, uint64_t off, uint64_t len)
{
    if (!len)
        return 0;
    if (blk_file_is_node(fd))
        return vfd_extend(fd, off, len);
    int r = blkdebug_file_check(fd, BLKDBG_IO_WRITE_ZEROES, off, len);
    if (r)
        return r;
    r = file_fallocate(fd, 0, off, len);
    if (r != -EOPNOTSUPP && r != -ENOSYS)
        return r;
    /* no fallocate here: write the zeros */
    static const uint8_t zero[65536];
    while (len) {
        size_t n = len < sizeof(zero) ? len : sizeof(zero);
        if ((r = blk_file_pwrite(fd, zero, n, off)) < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

int64_t blk_file_size(int fd)
{
    if (blk_file_is_node(fd))
        return vfd_size(fd);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    return st.st_size;
}

int blk_file_punch(int fd, uint64_t off, uint64_t len)
{
    if (blk_file_is_node(fd))
        return vfd_zero(fd, off, len);
    int r = blkdebug_file_check(fd, BLKDBG_IO_DISCARD, off, len);
    if (r)
        return r;
    return file_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}

/* ext4 handles a buffered write into a hole block by block: each 4 KiB
 * is looked up, reserved (quota included) and entered as a delayed
 * extent, about a quarter of convert's time into a new raw file.  One
 * fallocate of the run first leaves it a single unwritten extent to
 * fill: writing 550 MB of new data took 0.07 s instead of 0.105 s here.
 * XFS gains nothing (its delayed allocation is per extent) and tmpfs
 * loses (it zeroes the pages it allocates), so ext4 only. */
bool blk_file_fill_pays(int fd)
{
    if (blk_file_is_node(fd))
        return false;
    struct statfs f;
    return fstatfs(fd, &f) == 0 && f.f_type == EXT4_SUPER_MAGIC;
}

int blk_file_fill(int fd, uint64_t off, uint64_t len)
{
    if (blk_file_is_node(fd))
        return -EOPNOTSUPP;
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0 ? 0 : -errno;
}

int blk_file_zero(int fd, uint64_t off, uint64_t len)
{
    if (blk_file_is_node(fd))
        return vfd_zero(fd, off, len);
    int r = blkdebug_file_check(fd, BLKDBG_IO_WRITE_ZEROES, off, len);
    if (r)
        return r;
    int64_t size = blk_file_size(fd);
    if (size < 0)
        return size;
    /* Beyond the end of the file everything reads as zeros already. */
    if (off >= (uint64_t)size)
        return 0;
    if (file_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
        return 0;
    if (file_fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
        return 0;
    static const uint8_t zero[65536];
    while (len) {
        size_t n = len < sizeof(zero) ? len : sizeof(zero);
        if ((r = blk_file_pwrite(fd, zero, n, off)) < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

int blk_file_stat(int fd, struct stat *st)
{
    if (blk_file_is_node(fd))
        return vfd_stat(fd, st);
    return fstat(fd, st) < 0 ? -errno : 0;
}

int blk_file_truncate(int fd, uint64_t size)
{
    if (blk_file_is_node(fd))
        return vfd_truncate(fd, size);
    return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

int blk_file_grow_to(int fd, uint64_t size)
{
    if (blk_file_is_node(fd))
        return vfd_extend(fd, 0, size);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if ((uint64_t)st.st_size >= size)
        return 0;
    return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

int blk_file_allocate(int fd, uint64_t off, uint64_t len)
{
    if (blk_file_is_node(fd))
        return vfd_extend(fd, off, len);
    return -posix_fallocate(fd, (off_t)off, (off_t)len);
}

int64_t blk_file_seek(int fd, uint64_t off, int whence)
{
    if (blk_file_is_node(fd))
        return vfd_seek(fd, off, whence);
    off_t r = lseek(fd, (off_t)off, whence);
    return r < 0 ? -errno : r;
}

/* ---- locking ----
 * QEMU's scheme (file-posix.c): byte 100+i is held (shared) by everyone
 * that has permission i, byte 200+i by everyone that does not let others
 * have it.  Permission bits: 0 consistent read, 1 write, 3 resize.  Using
 * the same bytes makes calf and QEMU see each other's locks. */
#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
enum { PERM_READ = 0, PERM_WRITE = 1, PERM_RESIZE = 3 };

static const char *const perm_names[] = {"consistent read", "write", "write unchanged", "resize"};

static int lock_byte(int fd, int byte)
{
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* true when another open file holds a lock on the byte */
static bool byte_taken(int fd, int byte)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return false;
    return fl.l_type != F_UNLCK;
}

/* The refusals read as QEMU's (raw_apply_lock_bytes and
 * raw_check_lock_bytes): a byte that cannot be locked, with the reason
 * unless another lock is it; a permission somebody else holds or will
 * not share, then the question on a line of its own. */
int blk_lock(int fd, bool write, const char *filename)
{
    if (blk_file_is_node(fd)) {
        /* a node opened without its locks (BLK_O_SHARE, as commit opens
         * its top): the files at its bottom take them, as the file of a
         * plain image would (a node with no file of its own has none) */
        BlockDriverState *n = blk_vfd_node(fd);
        if (!n)
            return -EBADF;
        int r = n->fd >= 0 ? blk_lock(n->fd, write, n->filename) : 0;
        if (r == 0 && n->data_file && n->data_file->fd >= 0 && n->data_file->fd != n->fd)
            r = blk_lock(n->data_file->fd, write, n->data_file->filename);
        return r;
    }
    int held[4], nheld = 0, unshared[2] = {PERM_WRITE, PERM_RESIZE};
    held[nheld++] = PERM_READ;
    if (write) {
        held[nheld++] = PERM_WRITE;
        held[nheld++] = PERM_RESIZE;
    }
    int bytes[6], nbytes = 0, r;
    for (int i = 0; i < nheld; i++)
        bytes[nbytes++] = LOCK_PERM_BASE + held[i];
    for (int i = 0; i < 2; i++)
        bytes[nbytes++] = LOCK_SHARED_BASE + unshared[i];
    for (int i = 0; i < nbytes; i++)
        if ((r = lock_byte(fd, bytes[i])) < 0) {
            if (r == -EAGAIN || r == -EACCES)
                blk_set_error("Failed to lock byte %d", bytes[i]);
            else
                blk_set_error("Failed to lock byte %d: %s", bytes[i], strerror(-r));
            return r == -EAGAIN || r == -EACCES ? -EBUSY : r;
        }
    /* Somebody else refuses to share what we hold, or holds what we
     * refuse to share. */
    char what[64];
    for (int i = 0; i < nheld; i++)
        if (byte_taken(fd, LOCK_SHARED_BASE + held[i])) {
            snprintf(what, sizeof(what), "Failed to get \"%s\" lock", perm_names[held[i]]);
            goto busy;
        }
    for (int i = 0; i < 2; i++)
        if (byte_taken(fd, LOCK_PERM_BASE + unshared[i])) {
            snprintf(what, sizeof(what), "Failed to get shared \"%s\" lock",
                     perm_names[unshared[i]]);
            goto busy;
        }
    return 0;
busy:
    blk_set_error("%s\nIs another process using the image [%s]?", what, filename);
    return -EBUSY;
}
