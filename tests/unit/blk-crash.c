/* Crash consistency of flushed data.
 *
 *   blk-crash write  SEED IMAGE PROGRESS           (runs until killed)
 *   blk-crash verify SEED IMAGE INITIAL.raw PROGRESS
 *
 * "write" applies an endless, deterministic sequence of writes, zero
 * writes and discards, flushes after each one and then records in PROGRESS
 * how many are done.  After a kill -9 at any moment, "verify" replays the
 * first PROGRESS operations over INITIAL (what the image held before) and
 * checks that the image holds exactly that, except inside the one
 * operation that may have been in flight, where each byte may be old or
 * new, and in discarded ranges not written since (their content is the
 * format's business). */
#include "block/block.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct op {
    int kind; /* 0 write, 1 zero write, 2 zero write that may unmap, 3 discard */
    uint64_t off, len;
    uint8_t pattern;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static struct op op_of(uint64_t seed, uint64_t i, uint64_t size)
{
    uint64_t h = mix(seed * 1000003 + i), h2 = mix(h);
    struct op o;
    o.kind = h % 10 < 6 ? 0 : h % 10 < 7 ? 1 : h % 10 < 8 ? 2 : 3;
    o.len = 1 + (h2 >> 8) % (256 * 1024);
    if (h2 & 1)
        o.len = (o.len + 4095) & ~4095ULL;
    if (o.len > size)
        o.len = size;
    o.off = mix(h2) % (size - o.len + 1);
    if (h & 0x100)
        o.off &= ~4095ULL;
    o.pattern = (uint8_t)(h >> 40);
    return o;
}

static void fill(const struct op *o, uint8_t *p)
{
    for (uint64_t j = 0; j < o->len; j++)
        p[j] = o->kind ? 0 : (uint8_t)(o->pattern + j * 7 + (j >> 9));
}

static int do_write(uint64_t seed, const char *image, const char *progress)
{
    BlockDriverState *bs = blk_open(image, NULL, BLK_O_RDWR, NULL);
    int pf = open(progress, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint8_t *buf = malloc(256 * 1024 + 4096);
    if (!bs || pf < 0 || !buf) {
        fprintf(stderr, "blk-crash: %s\n", bs ? "cannot open the progress file" : blk_error());
        return 1;
    }
    for (uint64_t i = 0;; i++) {
        struct op o = op_of(seed, i, bs->size);
        int r;
        if (o.kind == 0) {
            fill(&o, buf);
            r = blk_pwrite(bs, o.off, buf, o.len);
        } else if (o.kind == 3) {
            r = blk_discard(bs, o.off, o.len);
        } else {
            r = blk_pwrite_zeroes(bs, o.off, o.len, o.kind == 2 ? BLK_ZERO_MAY_UNMAP : 0);
        }
        if (r < 0 || blk_flush(bs) < 0) {
            fprintf(stderr, "blk-crash: op %" PRIu64 ": %s\n", i, blk_error());
            return 1;
        }
        uint64_t done = i + 1;
        if (pwrite(pf, &done, sizeof(done), 0) != sizeof(done))
            return 1;
    }
}

static int do_verify(uint64_t seed, const char *image, const char *initial, const char *progress)
{
    uint64_t done = 0;
    int pf = open(progress, O_RDONLY);
    if (pf >= 0 && pread(pf, &done, sizeof(done), 0) != sizeof(done))
        done = 0;
    BlockDriverState *bs = blk_open(image, NULL, BLK_O_SHARE, NULL);
    int in = open(initial, O_RDONLY);
    if (!bs || in < 0) {
        fprintf(stderr, "blk-crash: %s\n", bs ? "cannot open the initial contents" : blk_error());
        return 1;
    }
    uint64_t size = bs->size;
    uint8_t *want = malloc(size), *got = malloc(size), *buf = malloc(256 * 1024 + 4096);
    if (!want || !got || !buf || blk_file_pread(in, want, size, 0) < 0 ||
        blk_pread(bs, 0, got, size) < 0) {
        fprintf(stderr, "blk-crash: cannot read: %s\n", blk_error());
        return 1;
    }
    /* undefined: discarded and not written since */
    uint8_t *undef = calloc(size, 1);
    if (!undef)
        return 1;
    for (uint64_t i = 0; i < done; i++) {
        struct op o = op_of(seed, i, size);
        if (o.kind == 3) {
            memset(undef + o.off, 1, o.len);
            continue;
        }
        fill(&o, want + o.off);
        memset(undef + o.off, 0, o.len);
    }
    struct op torn = op_of(seed, done, size);
    fill(&torn, buf);
    for (uint64_t p = 0; p < size; p++) {
        if (got[p] == want[p] || undef[p])
            continue;
        if (p >= torn.off && p < torn.off + torn.len &&
            (torn.kind == 3 || got[p] == buf[p - torn.off]))
            continue;
        fprintf(stderr, "blk-crash: after %" PRIu64 " flushed operations, offset %" PRIu64
                " reads 0x%02x, expected 0x%02x\n", done, p, got[p], want[p]);
        return 1;
    }
    printf("blk-crash: %" PRIu64 " flushed operations all read back\n", done);
    blk_close(bs);
    free(undef);
    free(want);
    free(got);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "write"))
        return do_write(strtoull(argv[2], NULL, 0), argv[3], argv[4]);
    if (argc == 6 && !strcmp(argv[1], "verify"))
        return do_verify(strtoull(argv[2], NULL, 0), argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: blk-crash write SEED IMAGE PROGRESS\n"
                    "       blk-crash verify SEED IMAGE INITIAL.raw PROGRESS\n");
    return 2;
}
