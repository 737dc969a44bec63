/* Several threads write and read one image at once, the way the VMM's I/O
 * threads will.  Thread t owns the 4 KiB blocks b with b % T == t, so all
 * threads keep hitting the same clusters (and allocating them at the same
 * time) while their data never overlaps.  Each thread checks its own reads
 * as it goes; at the end the whole image is checked against what each
 * thread last wrote (or the backing data where it wrote nothing).
 *   blk-threads [-t threads] [-n ops] [-m MODEL.raw] IMAGE REFERENCE.raw
 * -m: also write that expected content to MODEL.raw, for qemu-img compare. */
#include "block/block.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLK 4096

static BlockDriverState *bs;
static uint8_t *expect; /* whole image, what it must read as */
static int nthreads = 4;
static uint64_t nops = 3000;
static uint64_t nblocks;
static volatile int failed;

struct worker {
    int id;
    uint64_t rng;
};

static uint64_t rnd(struct worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    uint8_t buf[BLK * 4];
    uint64_t mine = (nblocks - w->id + nthreads - 1) / nthreads;
    for (uint64_t op = 0; op < nops && !failed; op++) {
        uint64_t b = (rnd(w) % mine) * nthreads + w->id;
        uint8_t *exp = expect + b * BLK;
        switch (rnd(w) % 4) {
        case 0:
        case 1:
            memset(buf, (int)(rnd(w) | 1), BLK);
            buf[0] = (uint8_t)w->id;
            if (blk_pwrite(bs, b * BLK, buf, BLK) < 0) {
                fprintf(stderr, "write failed: %s\n", blk_error());
                failed = 1;
            }
            memcpy(exp, buf, BLK);
            break;
        case 2:
            if (blk_pwrite_zeroes(bs, b * BLK, BLK, 0) < 0) {
                fprintf(stderr, "zero write failed: %s\n", blk_error());
                failed = 1;
            }
            memset(exp, 0, BLK);
            break;
        default:
            if (blk_pread(bs, b * BLK, buf, BLK) < 0 || memcmp(buf, exp, BLK)) {
                fprintf(stderr, "thread %d: block %" PRIu64 " reads wrong\n", w->id, b);
                failed = 1;
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int opt;
    const char *model = NULL;
    while ((opt = getopt(argc, argv, "t:n:m:")) != -1) {
        if (opt == 't')
            nthreads = atoi(optarg);
        else if (opt == 'n')
            nops = strtoull(optarg, NULL, 0);
        else if (opt == 'm')
            model = optarg;
        else
            return 2;
    }
    if (argc - optind != 2 || nthreads < 1 || nthreads > 64)
        return 2;
    bs = blk_open(argv[optind], NULL, BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "blk-threads: %s\n", blk_error());
        return 1;
    }
    nblocks = bs->size / BLK;
    expect = malloc(bs->size);
    int ref = open(argv[optind + 1], O_RDONLY);
    if (!expect || ref < 0 || blk_file_pread(ref, expect, bs->size, 0) < 0) {
        perror(argv[optind + 1]);
        return 1;
    }
    pthread_t th[64];
    struct worker w[64];
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.id = i, .rng = 0x1234567ULL * (i + 1)};
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    if (failed)
        return 1;
    if (model) {
        int fd = open(model, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || blk_file_pwrite(fd, expect, bs->size, 0) < 0 || close(fd) < 0) {
            perror(model);
            return 1;
        }
    }
    if (blk_flush(bs) < 0)
        return 1;
    uint8_t *all = malloc(bs->size);
    if (!all || blk_pread(bs, 0, all, bs->size) < 0 || memcmp(all, expect, bs->size)) {
        fprintf(stderr, "blk-threads: final contents differ\n");
        free(all);
        return 1;
    }
    blk_close(bs);
    free(all);
    free(expect);
    close(ref);
    printf("blk-threads: %d threads x %" PRIu64 " ops: all reads matched\n", nthreads, nops);
    return 0;
}
