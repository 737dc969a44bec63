/* The nbd driver's races against servers that hang up at chosen moments
 * (tests/nbd-race-server.py listening on SOCKET):
 *
 *   nbd-races SOCKET reconnect   (server mode flap) a read fails with the
 *       connection; the next read connects again to a server that hangs
 *       up right after the handshake, while the thread that started the
 *       new reader is held 200 ms (the reader sees the end first): that
 *       read must fail, not wait forever; the third read connects again
 *       and returns the server's bytes.
 *   nbd-races SOCKET flush2      (server mode flush2) a write W1; two
 *       flushes at once, both sent while W1 was the only write acked;
 *       the main thread writes W2 (again, every 50 ms, until the server
 *       has taken one after both flushes, and acked them); then the
 *       connection ends.  W2 was never flushed: after a read that meets
 *       the end, the next flush must fail, the one after succeed, and a
 *       read return the server's bytes.
 *   nbd-races SOCKET rmw         (server mode mem4k: minimum block
 *       4 KiB) 300 rounds; in each, thread A writes 1 KiB at 0 (a
 *       read-modify-write of block 0) while thread B, at once, writes
 *       all of block 0 with the round's pattern, or zeroes it, or trims
 *       it (rounds take turns).  Whatever the order, bytes 1 KiB..4 KiB
 *       must then hold what B left (the RMW must not write back the
 *       block as it was before B's request).
 *
 * Exit 0 when the checks held; the reason on stderr otherwise. */
#include "block/block.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* pthread_create, wrapped: the creator sleeps after the new thread
 * started, when hold_creator is set (a legal schedule: preempted). */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
static int hold_creator;
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    int r = __real_pthread_create(t, a, fn, arg);
    if (__atomic_load_n(&hold_creator, __ATOMIC_SEQ_CST))
        usleep(200000);
    return r;
}

static BlockDriverState *bs;

/* a read of len bytes at off holds the server's pattern */
static int pattern_ok(const uint8_t *b, uint64_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != (uint8_t)((off + i) % 251))
            return 0;
    return 1;
}

static int flushes_done;

static void *flusher(void *opaque)
{
    (void)opaque;
    int r = blk_flush(bs);
    if (r < 0)
        fprintf(stderr, "a flush the server acked failed: %s\n", blk_error());
    __atomic_fetch_add(&flushes_done, 1, __ATOMIC_SEQ_CST);
    return (void *)(intptr_t)(r < 0);
}

#define RMW_ROUNDS 300
static pthread_barrier_t bar;

static void *rmw_a(void *opaque)
{
    (void)opaque;
    uint8_t w[1024];
    memset(w, 0xa0, sizeof(w));
    for (int r = 0; r < RMW_ROUNDS; r++) {
        pthread_barrier_wait(&bar);
        if (blk_pwrite(bs, 0, w, sizeof(w)) < 0)
            fprintf(stderr, "A's write: %s\n", blk_error());
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar); /* the main thread checks */
    }
    return NULL;
}

/* what B leaves in block 0 in round r: a pattern, or zeros */
static uint8_t rmw_b_byte(int r)
{
    return r % 3 ? 0 : (uint8_t)(0x10 + r % 0x80);
}

static void *rmw_b(void *opaque)
{
    (void)opaque;
    uint8_t w[4096];
    for (int r = 0; r < RMW_ROUNDS; r++) {
        memset(w, rmw_b_byte(r), sizeof(w));
        pthread_barrier_wait(&bar);
        int e = r % 3 == 0   ? blk_pwrite(bs, 0, w, sizeof(w))
                : r % 3 == 1 ? blk_pwrite_zeroes(bs, 0, 4096, 0)
                             : blk_discard(bs, 0, 4096);
        if (e < 0)
            fprintf(stderr, "B's request: %s\n", blk_error());
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    char uri[4200];
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", argv[1]);
    bs = blk_open(uri, "raw", BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "open: %s\n", blk_error());
        return 1;
    }
    static uint8_t buf[65536];
    int fails = 0;
    if (!strcmp(argv[2], "reconnect")) {
        __atomic_store_n(&hold_creator, 1, __ATOMIC_SEQ_CST);
        if (blk_pread(bs, 0, buf, 4096) >= 0) {
            fprintf(stderr, "a read the server hung up on succeeded\n");
            fails++;
        }
        if (blk_pread(bs, 0, buf, 4096) >= 0) {
            fprintf(stderr, "a read on a connection that ended at once succeeded\n");
            fails++;
        }
        memset(buf, 0xee, 4096);
        if (blk_pread(bs, 8192, buf, 4096) < 0) {
            fprintf(stderr, "the read after the server came back: %s\n", blk_error());
            fails++;
        } else if (!pattern_ok(buf, 8192, 4096)) {
            fprintf(stderr, "the read after the server came back has the wrong bytes\n");
            fails++;
        }
    } else if (!strcmp(argv[2], "flush2")) {
        memset(buf, 0x5a, 4096);
        if (blk_pwrite(bs, 0, buf, 4096) < 0) {
            fprintf(stderr, "W1: %s\n", blk_error());
            fails++;
        }
        pthread_t f[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&f[i], NULL, flusher, NULL);
        while (__atomic_load_n(&flushes_done, __ATOMIC_SEQ_CST) < 2) {
            usleep(50000);
            if (__atomic_load_n(&flushes_done, __ATOMIC_SEQ_CST) < 2 &&
                blk_pwrite(bs, 4096, buf, 4096) < 0) {
                fprintf(stderr, "W2: %s\n", blk_error());
                fails++;
                break;
            }
        }
        for (int i = 0; i < 2; i++) {
            void *ret;
            pthread_join(f[i], &ret);
            fails += ret != NULL;
        }
        /* the server hangs up: a read meets the end (kill_conn has run
         * once it fails) */
        if (blk_pread(bs, 0, buf, 4096) >= 0) {
            fprintf(stderr, "a read the server hung up on succeeded\n");
            fails++;
        }
        if (blk_flush(bs) == 0) {
            fprintf(stderr, "a flush after the connection ended with W2 unflushed "
                            "succeeded (W2 may be lost)\n");
            fails++;
        }
        if (blk_flush(bs) < 0) {
            fprintf(stderr, "the second flush after reconnecting: %s\n", blk_error());
            fails++;
        }
        memset(buf, 0xee, 4096);
        if (blk_pread(bs, 4096, buf, 4096) < 0 || !pattern_ok(buf, 4096, 4096)) {
            fprintf(stderr, "the read after reconnecting failed or has the wrong bytes\n");
            fails++;
        }
    } else if (!strcmp(argv[2], "rmw")) {
        pthread_barrier_init(&bar, NULL, 3);
        pthread_t a, b;
        pthread_create(&a, NULL, rmw_a, NULL);
        pthread_create(&b, NULL, rmw_b, NULL);
        int bad = 0, lost[3] = {0};
        for (int r = 0; r < RMW_ROUNDS; r++) {
            pthread_barrier_wait(&bar);
            pthread_barrier_wait(&bar);
            uint8_t want = rmw_b_byte(r);
            if (blk_pread(bs, 0, buf, 4096) < 0) {
                fprintf(stderr, "read: %s\n", blk_error());
                bad++;
            } else if (buf[0] != 0xa0 && buf[0] != want) {
                fprintf(stderr, "round %d: byte 0 is 0x%02x, neither A's nor B's\n", r, buf[0]);
                bad++;
            } else {
                for (int i = 1024; i < 4096; i++)
                    if (buf[i] != want) {
                        if (!bad)
                            fprintf(stderr, "round %d (B: %s): byte %d is 0x%02x, not B's "
                                            "0x%02x (an older block written back)\n",
                                    r, r % 3 == 0 ? "write" : r % 3 == 1 ? "zero" : "trim",
                                    i, buf[i], want);
                        bad++;
                        lost[r % 3]++;
                        break;
                    }
            }
            pthread_barrier_wait(&bar);
        }
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        printf("%d of %d rounds lost B's bytes (writes %d, zeroes %d, trims %d)\n", bad,
               RMW_ROUNDS, lost[0], lost[1], lost[2]);
        fails += bad;
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[2]);
        fails++;
    }
    blk_close(bs);
    return fails ? 1 : 0;
}
