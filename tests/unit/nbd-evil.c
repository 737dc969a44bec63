/* The nbd driver against a hostile server (tests/nbd-evil-server.py
 * listening on SOCKET):
 *
 *   nbd-evil SOCKET killsend   a 64 KiB read in flight while the server
 *       stops taking data; a write from a second thread fails to send.
 *       The read fails, or succeeds with the data the server sent (it
 *       was all sent); once it has returned its buffer is the
 *       caller's again: nothing may write into it afterwards (the
 *       reader thread is held 1 s inside the read's data, which the
 *       server has sent whole).
 *   nbd-evil SOCKET overlap    a read answered by overlapping chunks
 *       whose lengths add up: it must fail, not return bytes of the
 *       buffer the server never wrote.
 *   nbd-evil SOCKET lostflush  a write the server acknowledges before it
 *       hangs up (unflushed): after the reconnection the first flush
 *       fails (the write may be lost), the next one succeeds.
 *   nbd-evil SOCKET gounsup    a server that took structured replies
 *       and then refused GO: the export (NBD_OPT_EXPORT_NAME) keeps
 *       them, and a read returns the server's data.
 *   nbd-evil SOCKET rmw        (SOCKET: a server whose minimum block is
 *       4 KiB) 4 threads write their own 1 KiB quarter of each of the
 *       first 4 blocks, 64 rounds, at once: every quarter must read
 *       back as its thread's last pattern (read-modify-writes of one
 *       block must not undo each other).
 *   nbd-evil SOCKET chaos      4 threads, 100 requests each (64 KiB
 *       reads, 4 KiB writes) while the server hangs up in the middle of
 *       a read again and again: requests fail or succeed, a read that
 *       succeeds holds each block's index, nothing crashes (and under
 *       TSan or ASan, no report).
 *   nbd-evil SOCKET multiconn  (SOCKET: calf-nbd -e 2 over 1 MiB of
 *       zeros) block status at 0 says zero; a second connection writes
 *       there; block status on the first connection then says data.
 *
 * Exit 0 when the checks held; the reason on stderr otherwise. */
#include "block/block.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LEN 65536

/* The reader thread's first receive into a read's buffer (a large one)
 * waits 1 s first, so that a request can fail meanwhile (killsend). */
ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);
static int held;
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
    if (len >= LEN / 2 && !__atomic_exchange_n(&held, 1, __ATOMIC_SEQ_CST))
        usleep(1000000);
    return __real_recv(fd, buf, len, flags);
}

static BlockDriverState *bs;

static int chaos_ok, chaos_bad;

static void *chaos(void *opaque)
{
    unsigned seed = (unsigned)(uintptr_t)opaque;
    uint8_t *b = malloc(LEN);
    for (int i = 0; i < 100; i++) {
        uint64_t blk = rand_r(&seed) % 240;
        if (rand_r(&seed) % 3) {
            memset(b, 0xee, LEN);
            if (blk_pread(bs, blk * 4096, b, LEN) < 0)
                continue;
            __atomic_fetch_add(&chaos_ok, 1, __ATOMIC_SEQ_CST);
            for (int k = 0; k < LEN; k++)
                if (b[k] != (uint8_t)(blk + (uint64_t)k / 4096)) {
                    __atomic_fetch_add(&chaos_bad, 1, __ATOMIC_SEQ_CST);
                    break;
                }
        } else {
            memset(b, 0x77, 4096);
            if (blk_pwrite(bs, blk * 4096, b, 4096) == 0)
                __atomic_fetch_add(&chaos_ok, 1, __ATOMIC_SEQ_CST);
        }
    }
    free(b);
    return NULL;
}

static pthread_barrier_t start;

static void *quarter(void *opaque)
{
    int t = (int)(intptr_t)opaque;
    uint8_t q[1024];
    pthread_barrier_wait(&start);
    for (int round = 0; round < 64; round++) {
        memset(q, 0x10 * (round % 8 + 1) + t, sizeof(q));
        for (int b = 0; b < 4; b++)
            if (blk_pwrite(bs, (uint64_t)b * 4096 + (uint64_t)t * 1024, q, sizeof(q)) < 0) {
                fprintf(stderr, "write: %s\n", blk_error());
                return (void *)1;
            }
    }
    return NULL;
}

static void *writer(void *opaque)
{
    (void)opaque;
    static uint8_t w[4096];
    usleep(300000);
    memset(w, 0x77, sizeof(w));
    blk_pwrite(bs, 0, w, sizeof(w));
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    char uri[4200];
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", argv[1]);
    bs = blk_open(uri, NULL, BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "open: %s\n", blk_error());
        return 1;
    }
    uint8_t *buf = malloc(LEN), *copy = malloc(LEN);
    memset(buf, 0xee, LEN);
    int fails = 0;
    if (!strcmp(argv[2], "killsend")) {
        pthread_t t;
        pthread_create(&t, NULL, writer, NULL);
        int r = blk_pread(bs, 0, buf, LEN);
        memcpy(copy, buf, LEN);
        for (int i = 0; r >= 0 && i < LEN; i++)
            if (buf[i] != 0x11) {
                fprintf(stderr, "the read succeeded without the server's data\n");
                fails++;
                break;
            }
        pthread_join(t, NULL);
        sleep(2); /* the server has sent the rest and hung up */
        if (memcmp(copy, buf, LEN)) {
            fprintf(stderr, "the read's buffer was written after the read returned\n");
            fails++;
        }
    } else if (!strcmp(argv[2], "overlap")) {
        int r = blk_pread(bs, 0, buf, LEN);
        if (r >= 0) {
            fprintf(stderr, "a read with overlapping chunks succeeded\n");
            fails++;
        }
        if (r >= 0 && memchr(buf, 0xee, LEN)) {
            fprintf(stderr, "and returned bytes the server never sent\n");
            fails++;
        }
    } else if (!strcmp(argv[2], "gounsup")) {
        if (blk_pread(bs, 0, buf, LEN) < 0) {
            fprintf(stderr, "read: %s\n", blk_error());
            fails++;
        } else {
            for (int i = 0; i < LEN; i++)
                if (buf[i] != 0x11) {
                    fprintf(stderr, "the read did not return the server's data\n");
                    fails++;
                    break;
                }
        }
    } else if (!strcmp(argv[2], "rmw")) {
        pthread_t t[4];
        pthread_barrier_init(&start, NULL, 4);
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, quarter, (void *)(intptr_t)i);
        for (int i = 0; i < 4; i++) {
            void *ret;
            pthread_join(t[i], &ret);
            fails += ret != NULL;
        }
        uint8_t *all = malloc(4 * 4096);
        if (blk_pread(bs, 0, all, 4 * 4096) < 0) {
            fprintf(stderr, "read: %s\n", blk_error());
            fails++;
        }
        for (int i = 0; i < 4 * 4096; i++)
            if (all[i] != 0x80 + (i % 4096) / 1024) {
                fprintf(stderr, "byte %d reads 0x%02x, not its thread's last 0x%02x\n", i,
                        all[i], 0x80 + (i % 4096) / 1024);
                fails++;
                break;
            }
        free(all);
    } else if (!strcmp(argv[2], "chaos")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, chaos, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        printf("chaos: %d requests worked, %d reads wrong\n", chaos_ok, chaos_bad);
        if (chaos_bad || chaos_ok < 20) {
            fprintf(stderr, "%d requests worked, %d reads returned wrong bytes\n", chaos_ok,
                    chaos_bad);
            fails++;
        }
    } else if (!strcmp(argv[2], "multiconn")) {
        BlockDriverState *other = blk_open(uri, NULL, BLK_O_RDWR, NULL);
        uint64_t pnum, host;
        int st = blk_block_status(bs, 0, 1 << 20, &pnum, &host);
        if (st < 0 || !(st & BLK_STATUS_ZERO)) {
            fprintf(stderr, "block status at 0 before the write: %d, not zero\n", st);
            fails++;
        }
        memset(buf, 0x66, LEN);
        if (!other || blk_pwrite(other, 0, buf, LEN) < 0) {
            fprintf(stderr, "the second connection's write: %s\n", blk_error());
            fails++;
        }
        st = blk_block_status(bs, 0, 1 << 20, &pnum, &host);
        if (st < 0 || (st & BLK_STATUS_ZERO)) {
            fprintf(stderr, "block status after another connection wrote: %d, zero\n", st);
            fails++;
        }
        if (other)
            blk_close(other);
    } else if (!strcmp(argv[2], "lostflush")) {
        memset(buf, 0x55, 4096);
        if (blk_pwrite(bs, 0, buf, 4096) < 0) {
            fprintf(stderr, "write: %s\n", blk_error());
            fails++;
        }
        usleep(500000); /* the server has hung up */
        if (blk_flush(bs) == 0) {
            fprintf(stderr, "a flush after losing an unflushed write succeeded\n");
            fails++;
        }
        if (blk_flush(bs) < 0) {
            fprintf(stderr, "the second flush failed too: %s\n", blk_error());
            fails++;
        }
    } else {
        return 2;
    }
    blk_close(bs);
    free(buf);
    free(copy);
    return fails ? 1 : 0;
}
