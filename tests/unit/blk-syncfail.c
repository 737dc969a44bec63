/* A failed fdatasync is not retried into a success (QEMU's file-posix
 * page_cache_inconsistent): Linux marks the pages whose writeback failed
 * clean, so a second fdatasync returns 0 without writing them.  Linked
 * with --wrap=fdatasync (tests/fault.mk), which fails one chosen call.
 *
 *   blk-syncfail FORMAT IMAGE
 *
 * IMAGE (raw or qcow2, at least 256 KiB, empty) is opened read-write:
 * 64 KiB of 0x01 at 0 are written and flushed; 64 KiB of 0x02 at 64 KiB
 * are written and the flush's first fdatasync fails with EIO.  Every
 * later flush of that open image must fail too, with EIO, without
 * another fdatasync (it would return 0); a qcow2 image must never write
 * the L2 entry of the data whose sync failed, so once the image is
 * closed and opened again (a new open starts clean: its flush works)
 * [64K, 128K) reads as zeros, and [0, 64K) as 0x01.  TAP on stdout.
 *
 *   blk-syncfail create IMAGE LINK
 *
 * A qcow2 create of IMAGE whose fdatasync fails must fail, and must not
 * leave the failure attached to the file: LINK (a hard link made to
 * IMAGE first, so the inode outlives the failed create's unlink), opened
 * next (it gets the create's fd number and inode), must flush with a
 * real fdatasync.
 *
 *   blk-syncfail concurrent IMAGE
 *
 * Two threads flush one raw IMAGE at once; the first one's fdatasync is
 * held, then fails (as Linux, only that call hears of the error): the
 * second flush must wait for it and fail with it (concurrent_flushes). */
#include "block/block.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int n_test, failed;

static void ok(int cond, const char *what)
{
    printf("%sok %d - %s\n", cond ? "" : "not ", ++n_test, what);
    failed |= !cond;
}

int __real_fdatasync(int fd);
static int fail_next; /* the next fdatasync fails with EIO */
static int syncs;     /* fdatasync calls made */

/* concurrent mode: the first fdatasync is held until released, then
 * fails; any other records that it ran while the first was held */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool concurrent;
static int held;       /* 1: the first fdatasync is in; 2: released */
static int ran_inside; /* fdatasync calls made while the first was held */
static int b_done;

int __wrap_fdatasync(int fd)
{
    if (concurrent) {
        pthread_mutex_lock(&mu);
        int first = syncs++ == 0;
        if (first) {
            held = 1;
            pthread_cond_broadcast(&cv);
            while (held != 2)
                pthread_cond_wait(&cv, &mu);
        } else if (held == 1) {
            ran_inside++;
            pthread_cond_broadcast(&cv);
        }
        pthread_mutex_unlock(&mu);
        if (first) {
            errno = EIO; /* Linux reports it to this fdatasync only */
            return -1;
        }
        return __real_fdatasync(fd); /* so the kernel's says 0 here */
    }
    syncs++;
    if (fail_next) {
        fail_next = 0;
        errno = EIO;
        return -1;
    }
    return __real_fdatasync(fd);
}

static int reads_as(BlockDriverState *bs, uint64_t off, size_t len, int v)
{
    static uint8_t b[64 * 1024];
    if (blk_pread(bs, off, b, len) < 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (b[i] != v)
            return 0;
    return 1;
}

static BlockDriverState *cbs;
static int ra, rb;

static void *flush_a(void *arg)
{
    (void)arg;
    ra = blk_flush(cbs);
    return NULL;
}

static void *flush_b(void *arg)
{
    (void)arg;
    rb = blk_flush(cbs);
    pthread_mutex_lock(&mu);
    b_done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* Two flushes of one raw image at once (two virtio-blk queues, two NBD
 * connections).  Linux reports a writeback error to one fdatasync of
 * an open file; one that runs beside it returns 0.  So a flush that
 * starts while another's fdatasync is in flight must wait for it and
 * return its error, never acknowledge on its own fdatasync. */
static int concurrent_flushes(const char *path)
{
    cbs = blk_open(path, "raw", BLK_O_RDWR, NULL);
    if (!cbs) {
        fprintf(stderr, "blk-syncfail: %s\n", blk_error());
        return 2;
    }
    printf("1..4\n");
    static uint8_t b[64 * 1024];
    memset(b, 0x03, sizeof(b));
    int w = blk_pwrite(cbs, 0, b, sizeof(b));
    concurrent = true;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, flush_a, NULL);
    pthread_mutex_lock(&mu);
    while (held != 1)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    pthread_create(&tb, NULL, flush_b, NULL);
    /* B has a second to reach fdatasync (it must not) or to finish */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&mu);
    while (!ran_inside && !b_done && pthread_cond_timedwait(&cv, &mu, &until) == 0)
        ;
    int inside = ran_inside;
    held = 2;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    printf("# first flush %d, second %d; fdatasync calls beside the first: %d\n", ra, rb,
           inside);
    ok(w == 0 && ra == -EIO, "the flush whose fdatasync fails returns EIO");
    ok(rb == -EIO, "a flush started while it was in flight returns its EIO");
    ok(inside == 0, "and did not fdatasync beside it (Linux would say 0)");
    ok(blk_flush(cbs) == -EIO, "a later flush fails too");
    blk_close(cbs);
    return failed;
}

static int create_then_open(const char *path, const char *link_path)
{
    printf("1..3\n");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || close(fd) < 0 || link(path, link_path) < 0) {
        perror("blk-syncfail: link");
        return 2;
    }
    BlockOptions o = {0};
    fail_next = 1;
    int r = blk_create("qcow2", path, 1 << 20, &o);
    fail_next = 0;
    ok(r == -EIO, "a qcow2 create whose fdatasync fails returns EIO");
    BlockDriverState *bs = blk_open(link_path, "raw", BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "blk-syncfail: %s\n", blk_error());
        return 2;
    }
    int before = syncs;
    r = blk_flush(bs);
    printf("# the next open's flush (fd %d): %d (%s), %d fdatasync call(s)\n", bs->fd, r,
           r ? strerror(-r) : "ok", syncs - before);
    ok(r == 0, "the file opened next flushes: the failed create's error is not its");
    ok(syncs > before, "and its flush calls fdatasync");
    blk_close(bs);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "create"))
        return create_then_open(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "concurrent"))
        return concurrent_flushes(argv[2]);
    if (argc != 3) {
        fprintf(stderr, "usage: blk-syncfail FORMAT IMAGE | create IMAGE LINK | "
                        "concurrent IMAGE\n");
        return 2;
    }
    const char *fmt = argv[1], *path = argv[2];
    bool qcow2 = !strcmp(fmt, "qcow2");
    BlockDriverState *bs = blk_open(path, fmt, BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "blk-syncfail: %s\n", blk_error());
        return 2;
    }
    printf("1..%d\n", qcow2 ? 8 : 6);
    static uint8_t b[64 * 1024];
    memset(b, 0x01, sizeof(b));
    ok(blk_pwrite(bs, 0, b, sizeof(b)) == 0 && blk_flush(bs) == 0,
       "a write and its flush succeed");
    memset(b, 0x02, sizeof(b));
    int w = blk_pwrite(bs, 64 * 1024, b, sizeof(b));
    fail_next = 1;
    int f1 = blk_flush(bs);
    ok(w == 0 && f1 == -EIO, "the flush whose fdatasync fails returns EIO");
    int before = syncs;
    int f2 = blk_flush(bs);
    printf("# the flush after it: %d (%s), %d fdatasync call(s)\n", f2,
           f2 ? strerror(-f2) : "ok", syncs - before);
    ok(f2 == -EIO, "the next flush fails too, with EIO");
    ok(syncs == before, "it does not try fdatasync again (it would return 0)");
    ok(blk_flush(bs) == -EIO, "and so does every later flush");
    blk_close(bs);
    bs = blk_open(path, fmt, BLK_O_RDWR, NULL);
    ok(bs && blk_flush(bs) == 0, "opened again, the image's flush works");
    if (qcow2) {
        ok(bs && reads_as(bs, 0, 64 * 1024, 0x01), "the flushed write reads back");
        ok(bs && reads_as(bs, 64 * 1024, 64 * 1024, 0),
           "no L2 entry points at the data whose sync failed");
    }
    if (bs)
        blk_close(bs);
    return failed;
}
