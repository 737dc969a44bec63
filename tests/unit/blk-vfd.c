/* The virtual fds of block/proto.c on the node of an image (argv[1], a
 * qcow2 image of at least 1 MiB, opened read-write): an fd kept past its
 * release reaches no node, also once the slot names another; a vector
 * write of no bytes past the end leaves the size; an end near 2^64 is
 * refused (-EFBIG), not wrapped; blk_file_grow_to never shrinks.
 *
 * And a stale fd in a race (argv[2], another qcow2 image whose first
 * sector is 0xbb): a thread writing through fd X is held (linked with
 * --wrap=pthread_rwlock_rdlock, tests/fault.mk) after its first look at
 * the slot and before the slot's lock; X is released and its slot given
 * to argv[2]'s node; the held write must then fail with EBADF, not land
 * in argv[2]. */
#include "block/block.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

static int n_test, failed;

static void ok(int cond, const char *what)
{
    printf("%sok %d - %s\n", cond ? "" : "not ", ++n_test, what);
    failed |= !cond;
}

/* ---- a thread held before its first rdlock ---- */

int __real_pthread_rwlock_rdlock(pthread_rwlock_t *l);

static pthread_mutex_t hmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hcond = PTHREAD_COND_INITIALIZER;
static __thread bool held_thread;
static int hstate; /* 0 armed, 1 held, 2 released */

int __wrap_pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    if (held_thread) {
        pthread_mutex_lock(&hmu);
        if (hstate == 0) {
            hstate = 1;
            pthread_cond_broadcast(&hcond);
            while (hstate == 1)
                pthread_cond_wait(&hcond, &hmu);
        }
        pthread_mutex_unlock(&hmu);
    }
    return __real_pthread_rwlock_rdlock(l);
}

static int stale_fd, stale_ret;

static void *stale_writer(void *arg)
{
    (void)arg;
    held_thread = true;
    uint8_t b[512];
    memset(b, 0x11, sizeof(b));
    stale_ret = blk_file_pwrite(stale_fd, b, sizeof(b), 0);
    return NULL;
}

static void stale_race(BlockDriverState *a, BlockDriverState *c)
{
    stale_fd = blk_vfd_new(a);
    pthread_t t;
    pthread_create(&t, NULL, stale_writer, NULL);
    pthread_mutex_lock(&hmu);
    while (hstate != 1)
        pthread_cond_wait(&hcond, &hmu);
    pthread_mutex_unlock(&hmu);
    blk_vfd_release(stale_fd);  /* the writer has looked at the slot */
    int fc = blk_vfd_new(c);    /* the same slot, the next generation */
    pthread_mutex_lock(&hmu);
    hstate = 2;
    pthread_cond_broadcast(&hcond);
    pthread_mutex_unlock(&hmu);
    pthread_join(t, NULL);
    uint8_t got[512];
    int r = blk_pread(c, 0, got, sizeof(got));
    ok(stale_ret == -EBADF, "a write through an fd released while it waits: -EBADF");
    ok(fc >= 0 && r == 0 && got[0] == 0xbb && got[511] == 0xbb,
       "it does not land in the node the slot names next");
    blk_vfd_release(fc);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: blk-vfd IMAGE OTHER-IMAGE\n");
        return 2;
    }
    BlockDriverState *a = blk_open(argv[1], NULL, BLK_O_RDWR, NULL);
    BlockDriverState *b = blk_open(argv[1], NULL, BLK_O_RDWR | BLK_O_SHARE, NULL);
    BlockDriverState *c = blk_open(argv[2], NULL, BLK_O_RDWR, NULL);
    if (!a || !b || !c) {
        fprintf(stderr, "blk-vfd: %s\n", blk_error());
        return 2;
    }
    printf("1..11\n");
    int fa = blk_vfd_new(a);
    uint8_t buf[512];
    ok(fa >= 0 && blk_file_pread(fa, buf, sizeof(buf), 0) == 0, "a node's fd reads");
    blk_vfd_release(fa);
    int fb = blk_vfd_new(b); /* the slot fa had */
    ok(fb >= 0 && fb != fa, "a slot given again has another fd number");
    ok(blk_vfd_node(fa) == NULL, "the released fd names no node");
    ok(blk_file_pread(fa, buf, sizeof(buf), 0) == -EBADF, "the released fd reads -EBADF");

    int64_t size = blk_file_size(fb);
    struct iovec iov = {buf, 0};
    int r = blk_file_pwritev(fb, &iov, 1, (uint64_t)size + (1 << 20));
    ok(r == 0 && blk_file_size(fb) == size,
       "a vector write of no bytes past the end grows nothing");

    ok(blk_file_truncate(fb, UINT64_MAX - 10) == -EFBIG && blk_file_size(fb) == size,
       "a truncate to within a sector of 2^64: -EFBIG, the size as it was");
    ok(blk_file_extend(fb, UINT64_MAX - 100, 512) == -EFBIG && blk_file_size(fb) == size,
       "an extend whose end wraps past 2^64: -EFBIG");
    ok(blk_file_pwrite(fb, buf, 512, UINT64_MAX - 100) == -EFBIG,
       "a write whose end wraps: -EFBIG");
    ok(blk_file_grow_to(fb, (uint64_t)size - 512) == 0 && blk_file_size(fb) == size &&
           blk_file_grow_to(fb, (uint64_t)size + 4096) == 0 && blk_file_size(fb) == size + 4096,
       "grow_to a smaller size leaves the size, to a larger one grows");
    blk_vfd_release(fb);
    stale_race(a, c);
    blk_close(c);
    blk_close(b);
    blk_close(a);
    return failed;
}
