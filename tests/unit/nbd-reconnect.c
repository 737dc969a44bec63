/* Reconnect stress of the nbd driver against a model.
 *
 *   nbd-reconnect [-t threads] [-d seconds] [-s seed] [-o FINAL.raw] IMAGE
 *
 * IMAGE is an nbd image name (json:{"driver":"nbd",...,"reconnect-delay":
 * N}) whose server the caller kills and starts again over and over while
 * the threads (default 6) issue reads, writes and flushes through one
 * blk_open() of it for the given time (default 5 s).  Each thread owns a
 * region of its own, in 4 KiB blocks, and writes whole blocks filled with
 * a tag (thread, sequence number, block), so what a read returns names
 * the write it came from.
 *
 * The model, per block: the tag of the last acknowledged write (0: the
 * zeros it starts with) and the tags of the writes that failed since (a
 * failed write may or may not have reached the server before it died).
 * A read that succeeds must return, in each block, one of those; what it
 * returns is then what the block holds.  Every failed request must fail
 * with -EIO and nothing else.
 *
 * At the end (the threads have stopped; the caller starts the server for
 * good) every block is read again, retrying while it comes up: each must be
 * what the model allows, an acknowledged write's data where no write
 * failed after it; what was read goes to FINAL.raw for qemu-img compare.
 * Prints the counts ("ops N ok N eio N"); exit 0: the model held. */
#include "block/block.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLK 4096u
#define MAXB 8u     /* the longest request: 32 KiB */
#define MAYBE 16u   /* failed writes a block remembers (more: any tag of its thread) */

struct block {
    uint64_t acked;         /* the tag of what the block holds for certain */
    uint64_t maybe[MAYBE];  /* failed writes since: they may have landed */
    unsigned nmaybe;
    bool any;               /* more failed writes than remembered */
};

static BlockDriverState *bs;
static unsigned nthreads = 6, region; /* blocks per thread */
static struct block *model;           /* each thread touches only its own region */
static double seconds = 5;
static unsigned seed;
static uint64_t n_ops, n_ok, n_eio;   /* atomics */
static bool failed;                   /* atomic */

static uint64_t tag_of(unsigned t, uint64_t seq) { return ((uint64_t)(t + 1) << 48) | seq; }

static void fill(uint8_t *p, uint64_t tag, uint64_t blk)
{
    for (unsigned i = 0; i < BLK; i += 16) {
        memcpy(p + i, &tag, 8);
        memcpy(p + i + 8, &blk, 8);
    }
}

/* The tag a block read holds: 0 for zeros, UINT64_MAX if it is no block
 * any write made (torn, or another block's data). */
static uint64_t read_tag(const uint8_t *p, uint64_t blk)
{
    uint64_t tag, b;
    memcpy(&tag, p, 8);
    memcpy(&b, p + 8, 8);
    if (tag == 0 && b == 0) {
        for (unsigned i = 0; i < BLK; i++)
            if (p[i])
                return UINT64_MAX;
        return 0;
    }
    if (b != blk)
        return UINT64_MAX;
    for (unsigned i = 16; i < BLK; i += 16)
        if (memcmp(p + i, p, 16))
            return UINT64_MAX;
    return tag;
}

static void report(const char *what)
{
    fprintf(stderr, "nbd-reconnect: %s\n", what);
    __atomic_store_n(&failed, true, __ATOMIC_RELAXED);
}

/* A read of block blk returned tag: allowed by the model? Then it is the block's. */
static bool check_block(struct block *m, uint64_t tag, unsigned owner, uint64_t blk)
{
    bool ok = tag == m->acked;
    for (unsigned i = 0; !ok && i < m->nmaybe; i++)
        ok = tag == m->maybe[i];
    if (!ok && m->any && tag != UINT64_MAX && tag >> 48 == owner + 1)
        ok = true;
    if (!ok) {
        char msg[200];
        snprintf(msg, sizeof(msg), "block %" PRIu64 ": read tag %#" PRIx64 ", acked %#" PRIx64
                 " (%u failed writes since)", blk, tag, m->acked, m->nmaybe);
        report(msg);
        return false;
    }
    m->acked = tag;
    m->nmaybe = 0;
    m->any = false;
    return true;
}

static void count(int r)
{
    __atomic_fetch_add(&n_ops, 1, __ATOMIC_RELAXED);
    if (r == 0) {
        __atomic_fetch_add(&n_ok, 1, __ATOMIC_RELAXED);
    } else if (r == -EIO) {
        __atomic_fetch_add(&n_eio, 1, __ATOMIC_RELAXED);
    } else {
        char msg[200];
        snprintf(msg, sizeof(msg), "a request failed with %d (%s), not -EIO: %s", r,
                 strerror(-r), blk_error());
        report(msg);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg, rs = seed * 7919u + t;
    uint8_t *buf = malloc(MAXB * BLK);
    uint64_t seq = 0, first = (uint64_t)t * region;
    double end = now() + seconds;
    while (now() < end && !__atomic_load_n(&failed, __ATOMIC_RELAXED)) {
        unsigned nb = 1 + rand_r(&rs) % MAXB, b = rand_r(&rs) % region;
        if (b + nb > region)
            nb = region - b;
        uint64_t blk = first + b;
        int op = rand_r(&rs) % 10, r;
        if (op < 5) {
            uint64_t tag = tag_of(t, ++seq);
            for (unsigned i = 0; i < nb; i++)
                fill(buf + i * BLK, tag, blk + i);
            r = blk_pwrite(bs, blk * BLK, buf, nb * BLK);
            for (unsigned i = 0; i < nb; i++) {
                struct block *m = &model[blk + i];
                if (r == 0) {
                    m->acked = tag;
                    m->nmaybe = 0;
                    m->any = false;
                } else if (m->nmaybe < MAYBE) {
                    m->maybe[m->nmaybe++] = tag;
                } else {
                    m->any = true;
                }
            }
        } else if (op < 9) {
            r = blk_pread(bs, blk * BLK, buf, nb * BLK);
            for (unsigned i = 0; r == 0 && i < nb; i++)
                if (!check_block(&model[blk + i], read_tag(buf + i * BLK, blk + i), t, blk + i))
                    break;
        } else {
            r = blk_flush(bs);
        }
        count(r);
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    int c;
    seed = (unsigned)time(NULL);
    while ((c = getopt(argc, argv, "t:d:s:o:")) != -1) {
        switch (c) {
        case 't': nthreads = (unsigned)atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 's': seed = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'o': out = optarg; break;
        default:
            fprintf(stderr, "usage: nbd-reconnect [-t N] [-d S] [-s SEED] [-o OUT] IMAGE\n");
            return 2;
        }
    }
    if (optind != argc - 1 || nthreads < 1 || nthreads > 64)
        return 2;
    printf("seed %u\n", seed);
    bs = blk_open(argv[optind], NULL, BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "nbd-reconnect: %s\n", blk_error());
        return 1;
    }
    uint64_t nblocks = bs->size / BLK;
    region = (unsigned)(nblocks / nthreads);
    if (region < MAXB) {
        fprintf(stderr, "nbd-reconnect: the image is too small\n");
        return 1;
    }
    model = calloc(nblocks, sizeof(*model));
    pthread_t th[64];
    for (unsigned t = 0; t < nthreads; t++)
        pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)t);
    for (unsigned t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    printf("ops %" PRIu64 " ok %" PRIu64 " eio %" PRIu64 "\n", n_ops, n_ok, n_eio);
    fflush(stdout);

    /* the server is up for good: every block, as the model allows */
    FILE *f = out ? fopen(out, "wb") : NULL;
    uint8_t *buf = malloc(BLK);
    unsigned nmaybe_left = 0;
    for (uint64_t blk = 0; blk < (uint64_t)region * nthreads; blk++) {
        int r, tries = 0;
        while ((r = blk_pread(bs, blk * BLK, buf, BLK)) == -EIO && ++tries < 50)
            usleep(100000);
        if (r < 0) {
            fprintf(stderr, "nbd-reconnect: final read of block %" PRIu64 ": %s\n", blk,
                    blk_error());
            return 1;
        }
        struct block *m = &model[blk];
        nmaybe_left += m->nmaybe > 0 || m->any;
        check_block(m, read_tag(buf, blk), (unsigned)(blk / region), blk);
        if (f)
            fwrite(buf, 1, BLK, f);
    }
    if (f) {
        /* the tail no thread owns: as it is */
        for (uint64_t off = (uint64_t)region * nthreads * BLK; off < bs->size; off += BLK) {
            size_t n = bs->size - off < BLK ? bs->size - off : BLK;
            if (blk_pread(bs, off, buf, n) < 0)
                return 1;
            fwrite(buf, 1, n, f);
        }
        fclose(f);
    }
    printf("blocks with failed writes at the end %u\n", nmaybe_left);
    free(buf);
    free(model);
    blk_close(bs);
    return __atomic_load_n(&failed, __ATOMIC_RELAXED) ? 1 : 0;
}
