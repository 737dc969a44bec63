/* Races in the block layer, made to happen every time.  The libc calls
 * the block layer makes on its files (pread, pwrite, pwritev, fallocate,
 * ftruncate, fstat: linked with --wrap, see tests/fault.mk) can be held at a
 * chosen point by a chosen thread while another thread runs, so an
 * interleaving that a real disk produces once in a blue moon (a write
 * stalled in the kernel) is produced on demand.
 *
 *   blk-race SCENARIO DIR
 *
 * Each scenario builds its images in DIR, runs two threads A and B with
 * A held at a hook, lets B run (for at most HOLD_MS: where the fix makes
 * B wait for A, it waits), releases A, and checks what reads back.  It
 * prints "blk-race SCENARIO: ok" and exits 0, or says what went wrong
 * and exits 1; 77 means the machine cannot run it (no O_DIRECT).  The
 * images stay in DIR for qemu-img check (tests/blk-race.t).
 *
 *   ztail        an allocating write whose zero tail goes past the end of
 *                the file extends the file while another thread's
 *                multi-cluster write lands beyond it (it must not be cut)
 *   dio-sector   cache=none: two writes to different sectors of one 4 KiB
 *                block (both must stay)
 *   dio-meta     cache=none, 512-byte clusters: a data write's
 *                read-modify-write of a block that holds an L2 table and
 *                refcounts another thread updates (the update must stay)
 *   discard-write  an overwrite stalled while its cluster is discarded,
 *                freed and reused by another guest cluster (the other
 *                cluster's data must stay)
 *   discard-read   a read stalled likewise (it must not return the other
 *                cluster's data)
 *   discard-read2  the same for a read of two extents (cluster 0's end and
 *                unallocated cluster 1), which takes the lock between them
 *   crypt-sector two sub-sector writes to one sector of an encrypted image
 *                (both must stay)
 *   luks-sector  the same in a luks image
 *   alloc-handoff  a write over two clusters, both allocated at once and
 *                held in c0's copy-on-write, while another thread
 *                allocates c1 (the first frees its c1 and writes into the
 *                other's: both parts stay, nothing leaks)
 *   prealloc-full  a resize with preallocation=full while another
 *                thread's new clusters past the end of the file wait for
 *                their data (the zero fill must not land on them)
 *   prealloc-status  two threads ask a freshly opened preallocated qcow2
 *                image for the status of a cluster with no data blocks:
 *                the first is held in the once-per-open preallocation
 *                guess (its fstat); the second must get the same answer
 *                (zeros), not the guess's default before it is made
 */
#include "block/block.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* How long B may run while A is held.  On the code these scenarios were
 * written against B finished well within it; a fixed engine makes B wait
 * for A, so this is also what each such scenario costs. */
#define HOLD_MS 1000
#define KB 1024ull

/* ---- hooks ---- */

enum { ARMED, STALLED, RUNNING, DONE };

struct hook {
    bool used;
    int who;          /* thread id (tid below) */
    int fd;
    const char *ops;  /* r pread, w pwrite(v), f fallocate, t ftruncate, s fstat */
    uint64_t lo, hi;  /* the call touches these bytes */
    uint64_t minlen;
    bool after;       /* stall once the real call returned, not before */
    int state;
    uint64_t at, len; /* the call it matched */
};

static pthread_mutex_t hmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hcond = PTHREAD_COND_INITIALIZER;
static struct hook hooks[4];
static __thread int tid;

static struct hook *hook_arm(int who, int fd, const char *ops, uint64_t lo, uint64_t hi,
                             uint64_t minlen, bool after)
{
    pthread_mutex_lock(&hmu);
    struct hook *h = NULL;
    for (int i = 0; i < 4 && !h; i++)
        if (!hooks[i].used)
            h = &hooks[i];
    *h = (struct hook){true, who, fd, ops, lo, hi, minlen, after, ARMED, 0, 0};
    pthread_mutex_unlock(&hmu);
    return h;
}

static void stall(struct hook *h)
{
    h->state = STALLED;
    pthread_cond_broadcast(&hcond);
    while (h->state == STALLED)
        pthread_cond_wait(&hcond, &hmu);
}

static struct hook *hook_before(char op, int fd, uint64_t off, uint64_t len)
{
    struct hook *m = NULL;
    pthread_mutex_lock(&hmu);
    for (int i = 0; i < 4 && !m; i++) {
        struct hook *h = &hooks[i];
        if (h->used && h->state == ARMED && h->who == tid && h->fd == fd &&
            strchr(h->ops, op) && off < h->hi && h->lo < off + len && len >= h->minlen)
            m = h;
    }
    if (m) {
        m->at = off;
        m->len = len;
        if (m->after)
            m->state = RUNNING;
        else
            stall(m);
    }
    pthread_mutex_unlock(&hmu);
    return m;
}

static void hook_after(struct hook *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&hmu);
    if (h->after)
        stall(h);
    h->state = DONE;
    pthread_cond_broadcast(&hcond);
    pthread_mutex_unlock(&hmu);
}

/* The time ms from now, for pthread_cond_timedwait. */
static struct timespec deadline(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Waits until h is in state st (or past it), for at most ms. */
static bool hook_wait(struct hook *h, int st, int ms)
{
    struct timespec t = deadline(ms);
    pthread_mutex_lock(&hmu);
    int r = 0;
    while (h->state < st && r == 0)
        r = pthread_cond_timedwait(&hcond, &hmu, &t);
    bool ok = h->state >= st;
    pthread_mutex_unlock(&hmu);
    return ok;
}

static void hook_release(struct hook *h)
{
    pthread_mutex_lock(&hmu);
    if (h->state == STALLED)
        h->state = RUNNING;
    pthread_cond_broadcast(&hcond);
    pthread_mutex_unlock(&hmu);
}

ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev64(int fd, const struct iovec *iov, int cnt, off_t off);
int __real_fallocate64(int fd, int mode, off_t off, off_t len);
int __real_ftruncate64(int fd, off_t len);

ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off)
{
    struct hook *h = hook_before('r', fd, (uint64_t)off, n);
    ssize_t r = __real_pread64(fd, buf, n, off);
    hook_after(h);
    return r;
}

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    struct hook *h = hook_before('w', fd, (uint64_t)off, n);
    ssize_t r = __real_pwrite64(fd, buf, n, off);
    hook_after(h);
    return r;
}

ssize_t __wrap_pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    uint64_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    struct hook *h = hook_before('w', fd, (uint64_t)off, n);
    ssize_t r = __real_pwritev64(fd, iov, cnt, off);
    hook_after(h);
    return r;
}

int __wrap_fallocate64(int fd, int mode, off_t off, off_t len)
{
    struct hook *h = hook_before('f', fd, (uint64_t)off, (uint64_t)len);
    int r = __real_fallocate64(fd, mode, off, len);
    hook_after(h);
    return r;
}

int __wrap_ftruncate64(int fd, off_t len)
{
    struct hook *h = hook_before('t', fd, 0, UINT64_MAX);
    int r = __real_ftruncate64(fd, len);
    hook_after(h);
    return r;
}

int __real_fstat64(int fd, struct stat *st);

int __wrap_fstat64(int fd, struct stat *st)
{
    struct hook *h = hook_before('s', fd, 0, UINT64_MAX);
    int r = __real_fstat64(fd, st);
    hook_after(h);
    return r;
}

/* ---- threads ---- */

struct op {
    int id;
    int (*fn)(struct op *);
    BlockDriverState *bs;
    uint64_t off, len;
    uint8_t *buf;
    int ret;
    bool done;
    char err[256];
};

static void *op_thread(void *arg)
{
    struct op *o = arg;
    tid = o->id;
    o->ret = o->fn(o);
    if (o->ret < 0)
        snprintf(o->err, sizeof(o->err), "%s", blk_error());
    pthread_mutex_lock(&hmu);
    o->done = true;
    pthread_cond_broadcast(&hcond);
    pthread_mutex_unlock(&hmu);
    return NULL;
}

static bool op_wait(struct op *o, int ms)
{
    struct timespec t = deadline(ms);
    pthread_mutex_lock(&hmu);
    int r = 0;
    while (!o->done && r == 0)
        r = pthread_cond_timedwait(&hcond, &hmu, &t);
    bool done = o->done;
    pthread_mutex_unlock(&hmu);
    return done;
}

static int do_write(struct op *o) { return blk_pwrite(o->bs, o->off, o->buf, o->len); }
/* the status of [off, off+len): into ret (the flags) and buf[0..7] (pnum) */
static int do_status(struct op *o)
{
    uint64_t pnum = 0, host;
    int st = blk_block_status(o->bs, o->off, o->len, &pnum, &host);
    memcpy(o->buf, &pnum, sizeof(pnum));
    return st;
}
static int do_read(struct op *o) { return blk_pread(o->bs, o->off, o->buf, o->len); }

static int do_write_flush(struct op *o)
{
    int r = blk_pwrite(o->bs, o->off, o->buf, o->len);
    return r < 0 ? r : blk_flush(o->bs);
}

/* discard the first cluster, flush (frees it), write cluster 5, flush */
static int do_discard_reuse(struct op *o)
{
    int r = blk_discard(o->bs, 0, o->len);
    if (r == 0)
        r = blk_flush(o->bs);
    if (r == 0)
        r = blk_pwrite(o->bs, 5 * o->len, o->buf, o->len);
    if (r == 0)
        r = blk_flush(o->bs);
    return r;
}

static struct op *op_start(pthread_t *th, int id, int (*fn)(struct op *), BlockDriverState *bs,
                           uint64_t off, uint64_t len, int fill)
{
    struct op *o = calloc(1, sizeof(*o));
    o->id = id;
    o->fn = fn;
    o->bs = bs;
    o->off = off;
    o->len = len;
    o->buf = malloc(len);
    memset(o->buf, fill, len);
    pthread_create(th, NULL, op_thread, o);
    return o;
}

static void op_free(struct op *o)
{
    free(o->buf);
    free(o);
}

/* ---- checks ---- */

static const char *scenario;
static int failures;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "blk-race %s: ", scenario);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    failures++;
}

static void die(const char *what)
{
    fprintf(stderr, "blk-race %s: %s: %s\n", scenario, what, blk_error());
    exit(1);
}

/* [off, off+len) of bs reads as bytes v */
static bool reads_as(BlockDriverState *bs, uint64_t off, uint64_t len, int v)
{
    uint8_t *b = malloc(len);
    bool ok = blk_pread(bs, off, b, len) == 0;
    for (uint64_t i = 0; ok && i < len; i++)
        if (b[i] != (uint8_t)v) {
            fail("byte 0x%" PRIx64 " reads 0x%02x, not 0x%02x", off + i, b[i], v);
            ok = false;
        }
    free(b);
    return ok;
}

static bool all_bytes(const uint8_t *b, uint64_t len, int v)
{
    for (uint64_t i = 0; i < len; i++)
        if (b[i] != (uint8_t)v)
            return false;
    return true;
}

static BlockDriverState *make(const char *dir, const char *name, const char *fmt,
                              uint64_t size, const char *opts, int oflags, const char *oopts)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    BlockOptions o = {0};
    if (opts && blkopts_parse(&o, opts) < 0)
        die("options");
    if (blk_create(fmt, path, size, &o) < 0)
        die("create");
    blkopts_free(&o);
    BlockOptions oo = {0};
    if (oopts && blkopts_parse(&oo, oopts) < 0)
        die("options");
    BlockDriverState *bs = blk_open(path, fmt, BLK_O_RDWR | oflags, oopts ? &oo : NULL);
    blkopts_free(&oo);
    if (!bs && (oflags & BLK_O_NOCACHE)) {
        printf("blk-race %s: skip: cannot open with O_DIRECT here: %s\n", scenario, blk_error());
        exit(77);
    }
    if (!bs)
        die("open");
    return bs;
}

static uint64_t host_of(BlockDriverState *bs, uint64_t off)
{
    uint64_t pnum, host = 0;
    int st = blk_block_status(bs, off, 512, &pnum, &host);
    return st >= 0 && (st & BLK_STATUS_OFFSET) ? host : UINT64_MAX;
}

/* A is held at its hook; B runs for at most HOLD_MS (a fixed engine makes
 * it wait for A); then A goes on and both end. */
static void race(struct hook *ha, pthread_t *ta, struct op *a, pthread_t *tb, struct op *b)
{
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("thread A never reached its hook");
        exit(1);
    }
    (void)tb;
    bool b_done = op_wait(b, HOLD_MS);
    printf("# thread B %s while A was held\n", b_done ? "finished" : "waited");
    hook_release(ha);
    pthread_join(*ta, NULL);
    pthread_join(*tb, NULL);
    if (a->ret < 0)
        fail("thread A failed: %s", a->err);
    if (b->ret < 0)
        fail("thread B failed: %s", b->err);
}

/* ---- scenarios ---- */

static void ztail(const char *dir)
{
    const uint64_t cs = 64 * KB;
    char path[4096], opts[4200];
    snprintf(path, sizeof(path), "%s/ztail-base.raw", dir);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    uint8_t base[68 * KB];
    memset(base, 0x5b, sizeof(base));
    if (fd < 0 || write(fd, base, sizeof(base)) != (ssize_t)sizeof(base))
        die("backing file");
    close(fd);
    snprintf(opts, sizeof(opts), "cluster_size=65536,backing_file=%s,backing_fmt=raw", path);
    BlockDriverState *bs = make(dir, "ztail.qcow2", "qcow2", 1024 * KB, opts, 0, NULL);
    /* A: 4K into cluster 1, whose head comes from the backing file (read
     * with the image lock dropped) and whose tail reads as zeros */
    struct hook *ha = hook_arm(1, bs->backing->fd, "r", 0, UINT64_MAX, 0, false);
    struct hook *ha2 = hook_arm(1, bs->fd, "ft", 0, UINT64_MAX, 0, false);
    pthread_t ta, tb;
    struct op *a = op_start(&ta, 1, do_write, bs, cs + 8 * KB, 4 * KB, 0xaa);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A never read the backing file");
        exit(1);
    }
    /* B: four whole clusters, allocated while A waits, written outside
     * the lock: its write is held until A has looked at the file size */
    struct hook *hb = hook_arm(2, bs->fd, "w", 0, UINT64_MAX, 4 * cs, false);
    struct op *b = op_start(&tb, 2, do_write, bs, 4 * cs, 4 * cs, 0xbb);
    if (!hook_wait(hb, STALLED, 5000)) {
        fail("B never wrote");
        exit(1);
    }
    hook_release(ha);
    /* A extends the file over its zero tail: B's data lands just before */
    bool extends = hook_wait(ha2, STALLED, 2000);
    printf("# A %s\n", extends ? "extends the file over its tail" : "writes its tail");
    hook_release(hb);
    if (!hook_wait(hb, DONE, 5000))
        fail("B's write did not end");
    hook_release(ha2);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (a->ret < 0 || b->ret < 0)
        fail("a write failed: %s%s", a->err, b->err);
    if (blk_flush(bs) < 0)
        die("flush");
    reads_as(bs, 4 * cs, 4 * cs, 0xbb);
    reads_as(bs, cs, 4 * KB, 0x5b);
    reads_as(bs, cs + 4 * KB, 4 * KB, 0);
    reads_as(bs, cs + 8 * KB, 4 * KB, 0xaa);
    reads_as(bs, cs + 12 * KB, cs - 12 * KB, 0);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

static void dio_sector(const char *dir)
{
    BlockDriverState *bs = make(dir, "dio-sector.raw", "raw", 64 * KB, NULL, BLK_O_NOCACHE, NULL);
    struct hook *ha = hook_arm(1, bs->fd, "r", 0, 4 * KB, 0, true);
    pthread_t ta, tb;
    struct op *a = op_start(&ta, 1, do_write, bs, 0, 512, 0xaa);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A's write did not read its block");
        exit(1);
    }
    struct op *b = op_start(&tb, 2, do_write, bs, 512, 512, 0xbb);
    race(ha, &ta, a, &tb, b);
    reads_as(bs, 0, 512, 0xaa);
    reads_as(bs, 512, 512, 0xbb);
    reads_as(bs, 1024, 3 * KB, 0);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

static void dio_meta(const char *dir)
{
    BlockDriverState *bs = make(dir, "dio-meta.qcow2", "qcow2", 1024 * KB,
                                "cluster_size=512", BLK_O_NOCACHE, NULL);
    uint8_t one[512];
    memset(one, 0x11, sizeof(one));
    if (blk_pwrite(bs, 0, one, 512) < 0 || blk_flush(bs) < 0)
        die("first write");
    uint64_t d0 = host_of(bs, 0);
    printf("# guest cluster 0 at host 0x%" PRIx64 "\n", d0);
    uint64_t blk = d0 & ~(4 * KB - 1);
    struct hook *ha = hook_arm(1, bs->fd, "r", blk, blk + 4 * KB, 0, true);
    pthread_t ta, tb;
    struct op *a = op_start(&ta, 1, do_write, bs, 0, 512, 0xaa);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A's write did not read its block");
        exit(1);
    }
    /* B allocates guest cluster 1: new data, L2 entry and refcount, all
     * in the block A is rewriting */
    struct op *b = op_start(&tb, 2, do_write_flush, bs, 512, 512, 0xbb);
    race(ha, &ta, a, &tb, b);
    uint64_t d1 = host_of(bs, 512);
    printf("# guest cluster 1 at host 0x%" PRIx64 "\n", d1);
    if (blk_flush(bs) < 0)
        die("flush");
    blk_close(bs);
    char path[4096];
    snprintf(path, sizeof(path), "%s/dio-meta.qcow2", dir);
    if (!(bs = blk_open(path, "qcow2", 0, NULL)))
        die("reopen");
    reads_as(bs, 0, 512, 0xaa);
    reads_as(bs, 512, 512, 0xbb);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

/* read: A reads instead of writing; span: A's read covers the end of
 * cluster 0 and unallocated cluster 1, two extents (the read path that
 * takes the lock again between pieces) */
static void discard(const char *dir, bool read, bool span)
{
    const uint64_t cs = 64 * KB;
    BlockDriverState *bs = make(dir, span ? "discard-read2.qcow2" : read ? "discard-read.qcow2"
                                : "discard-write.qcow2", "qcow2", 1024 * KB,
                                "cluster_size=65536", 0, NULL);
    uint8_t *c = malloc(cs);
    memset(c, 0xa0, cs);
    if (blk_pwrite(bs, 0, c, cs) < 0 || blk_flush(bs) < 0)
        die("first write");
    uint64_t d0 = host_of(bs, 0);
    struct hook *ha = hook_arm(1, bs->fd, read ? "r" : "w", d0, d0 + cs, 0, false);
    pthread_t ta, tb;
    uint64_t a_off = span ? cs - 4 * KB : 0, a_len = span ? 8 * KB : 4 * KB;
    struct op *a = op_start(&ta, 1, read ? do_read : do_write, bs, a_off, a_len, 0xa1);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A's I/O never reached the file");
        exit(1);
    }
    struct op *b = op_start(&tb, 2, do_discard_reuse, bs, 0, cs, 0xb5);
    race(ha, &ta, a, &tb, b);
    uint64_t d5 = host_of(bs, 5 * cs);
    printf("# cluster 0 was at 0x%" PRIx64 ", cluster 5 is at 0x%" PRIx64 "%s\n", d0, d5,
           d0 == d5 ? " (reused)" : "");
    /* the race is only there if cluster 0's host cluster went to cluster 5 */
    if (d5 != d0)
        fail("cluster 5 did not reuse cluster 0's host cluster: the race did not happen");
    reads_as(bs, 5 * cs, cs, 0xb5);
    if (read && !all_bytes(a->buf, 4 * KB, 0xa0) && !all_bytes(a->buf, 4 * KB, 0))
        fail("the read stalled across the discard returned 0x%02x..., neither the old data "
             "nor zeros", a->buf[0]);
    if (span && !all_bytes(a->buf + 4 * KB, 4 * KB, 0))
        fail("the unallocated cluster read as 0x%02x..., not zeros", a->buf[4 * KB]);
    if (!read)
        reads_as(bs, 0, cs, 0);
    free(c);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

static void crypt_sector(const char *dir, bool luks)
{
    BlockDriverState *bs = luks ? make(dir, "luks-sector.luks", "luks", 1024 * KB,
                                       "key-secret=calf,iter-time=10", 0, "key-secret=calf")
                                : make(dir, "crypt-sector.qcow2", "qcow2", 1024 * KB,
                                       "encrypt.format=aes,encrypt.key-secret=calf", 0,
                                       "encrypt.key-secret=calf");
    uint8_t *c = malloc(64 * KB);
    memset(c, 0x11, 64 * KB);
    if (blk_pwrite(bs, 0, c, 64 * KB) < 0 || blk_flush(bs) < 0)
        die("first write");
    uint64_t d0 = host_of(bs, 0);
    if (d0 == UINT64_MAX) /* encrypted data has no offset to show: the header is cluster 0 */
        d0 = 0;
    struct hook *ha = hook_arm(1, bs->fd, "r", 0, UINT64_MAX, 0, true);
    pthread_t ta, tb;
    struct op *a = op_start(&ta, 1, do_write, bs, 0, 100, 0xaa);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A's write did not read its sector");
        exit(1);
    }
    struct op *b = op_start(&tb, 2, do_write, bs, 200, 100, 0xbb);
    race(ha, &ta, a, &tb, b);
    reads_as(bs, 0, 100, 0xaa);
    reads_as(bs, 100, 100, 0x11);
    reads_as(bs, 200, 100, 0xbb);
    reads_as(bs, 300, 64 * KB - 300, 0x11);
    free(c);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

/* A write over c0..c1 (unaligned: both need copy-on-write from the
 * backing file) gets both host clusters in one allocation
 * (write_alloc_run) and is held in the backing read of c0's head; B
 * writes c1's tail meanwhile and allocates c1 itself.  A then finds c1
 * owned: its preallocated cluster is freed and it writes into B's (both
 * parts of c1 stay, nothing leaks). */
static void alloc_handoff(const char *dir)
{
    const uint64_t cs = 64 * KB;
    char path[4096], opts[4200];
    snprintf(path, sizeof(path), "%s/handoff-base.raw", dir);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    static uint8_t base[256 * KB];
    memset(base, 0x5b, sizeof(base));
    if (fd < 0 || write(fd, base, sizeof(base)) != (ssize_t)sizeof(base))
        die("backing file");
    close(fd);
    snprintf(opts, sizeof(opts), "cluster_size=65536,backing_file=%s,backing_fmt=raw", path);
    BlockDriverState *bs = make(dir, "alloc-handoff.qcow2", "qcow2", 1024 * KB, opts, 0, NULL);
    /* A: [8K, 72K): c0 from 8K on and c1's first 8K; held reading c0's
     * head from the backing file */
    struct hook *ha = hook_arm(1, bs->backing->fd, "r", 0, cs, 0, false);
    pthread_t ta, tb;
    struct op *a = op_start(&ta, 1, do_write, bs, 8 * KB, cs, 0xaa);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A never read the backing file");
        exit(1);
    }
    /* B: c1's second half */
    struct op *b = op_start(&tb, 2, do_write, bs, cs + 32 * KB, 32 * KB, 0xbb);
    race(ha, &ta, a, &tb, b);
    if (blk_flush(bs) < 0)
        die("flush");
    uint64_t h1 = host_of(bs, cs);
    printf("# c0 at host 0x%" PRIx64 ", c1 at 0x%" PRIx64 "\n", host_of(bs, 0), h1);
    reads_as(bs, 0, 8 * KB, 0x5b);
    reads_as(bs, 8 * KB, cs, 0xaa);
    reads_as(bs, cs + 8 * KB, 24 * KB, 0x5b);
    reads_as(bs, cs + 32 * KB, 32 * KB, 0xbb);
    reads_as(bs, 2 * cs, cs, 0x5b);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

static int do_truncate_full(struct op *o)
{
    return blk_truncate(o->bs, o->off, BLK_PREALLOC_FULL, false);
}

/* A writes two new clusters (write_fresh: allocated under the lock, data
 * written with it dropped) and is held just before its data pwrite, past
 * the end of the file; B grows the image with preallocation=full.  B's
 * zero fill of the file's new end must not cover A's clusters: if it
 * holds B at a write over them, A's data lands first and B's zeros
 * would then replace it under A's L2 entries. */
static void prealloc_full(const char *dir)
{
    BlockDriverState *bs = make(dir, "prealloc-full.qcow2", "qcow2", 1024 * KB,
                                "cluster_size=65536", 0, NULL);
    struct hook *ha = hook_arm(1, bs->fd, "w", 0, UINT64_MAX, 128 * KB, false);
    pthread_t ta, tb;
    struct op *a = op_start(&ta, 1, do_write, bs, 0, 128 * KB, 0xaa);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A never wrote its data");
        exit(1);
    }
    printf("# A held before its data write at 0x%" PRIx64 "\n", ha->at);
    struct hook *hb = hook_arm(2, bs->fd, "w", ha->at, ha->at + ha->len, 0, false);
    struct op *b = op_start(&tb, 2, do_truncate_full, bs, 2048 * KB, 0, 0);
    bool b_done = op_wait(b, HOLD_MS);
    bool b_over = hook_wait(hb, STALLED, 0);
    printf("# B %s\n", b_done ? "finished while A was held"
                              : b_over ? "writes over A's clusters" : "waited");
    hook_release(ha);
    if (!hook_wait(ha, DONE, 5000))
        fail("A's data write did not end");
    usleep(100 * 1000); /* A takes the lock again, or waits for it */
    hook_release(hb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (a->ret < 0)
        fail("thread A failed: %s", a->err);
    if (b->ret < 0)
        fail("thread B failed: %s", b->err);
    if (blk_flush(bs) < 0)
        die("flush");
    reads_as(bs, 0, 128 * KB, 0xaa);
    reads_as(bs, 128 * KB, 1920 * KB, 0);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

/* A preallocated image (every cluster mapped, no data blocks under
 * them) reads as zeros in the status, as in QEMU, once the image is
 * guessed to be preallocated: the first status request of an open makes
 * the guess.  A is held in it (at its fstat of the image file); B asks
 * meanwhile and must get the guess's answer, not the default it had
 * before the guess was made. */
static void prealloc_status(const char *dir)
{
    const uint64_t cs = 64 * KB;
    BlockDriverState *bs = make(dir, "prealloc-status.qcow2", "qcow2", 8 * cs,
                                "preallocation=metadata", 0, NULL);
    struct hook *ha = hook_arm(1, bs->fd, "s", 0, UINT64_MAX, 0, false);
    pthread_t ta, tb;
    struct op *a = op_start(&ta, 1, do_status, bs, 2 * cs, cs, 0);
    if (!hook_wait(ha, STALLED, 5000)) {
        fail("A never looked at the image file");
        exit(1);
    }
    struct op *b = op_start(&tb, 2, do_status, bs, 3 * cs, cs, 0);
    race(ha, &ta, a, &tb, b);
    const int want = BLK_STATUS_DATA | BLK_STATUS_ZERO;
    if ((a->ret & want) != want)
        fail("A: status %#x, not data and zeros", a->ret);
    if (b->ret != a->ret)
        fail("B: status %#x while A held the guess, A's %#x", b->ret, a->ret);
    op_free(a);
    op_free(b);
    blk_close(bs);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: blk-race SCENARIO DIR\n");
        return 2;
    }
    scenario = argv[1];
    const char *dir = argv[2];
    if (!strcmp(scenario, "ztail"))
        ztail(dir);
    else if (!strcmp(scenario, "dio-sector"))
        dio_sector(dir);
    else if (!strcmp(scenario, "dio-meta"))
        dio_meta(dir);
    else if (!strcmp(scenario, "discard-write"))
        discard(dir, false, false);
    else if (!strcmp(scenario, "discard-read"))
        discard(dir, true, false);
    else if (!strcmp(scenario, "discard-read2"))
        discard(dir, true, true);
    else if (!strcmp(scenario, "crypt-sector"))
        crypt_sector(dir, false);
    else if (!strcmp(scenario, "luks-sector"))
        crypt_sector(dir, true);
    else if (!strcmp(scenario, "alloc-handoff"))
        alloc_handoff(dir);
    else if (!strcmp(scenario, "prealloc-full"))
        prealloc_full(dir);
    else if (!strcmp(scenario, "prealloc-status"))
        prealloc_status(dir);
    else {
        fprintf(stderr, "blk-race: unknown scenario %s\n", scenario);
        return 2;
    }
    if (failures)
        return 1;
    printf("blk-race %s: ok\n", scenario);
    return 0;
}
