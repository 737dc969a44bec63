/* Random I/O through the block layer, checked against a shadow raw file.
 *
 *   blk-random [-s seed] [-n ops] [-m maxlen] [-r reopen_every] [-S] [-k key] IMAGE SHADOW
 *
 * -S writes to a throw-away overlay (blk_open_snapshot) instead; -N opens
 * the image with O_DIRECT (cache=none); -k gives the passphrase of an
 * encrypted image.
 *
 * SHADOW is a raw file holding what IMAGE must read as (the caller makes it
 * from the backing chain, or zeros).  Every write, zero write and discard
 * goes to both; reads compare.  A discard may leave old data, zeros or the
 * backing file's data: the test accepts each byte that is one of them and
 * takes what the image returns as the new truth.  Exits 0 when every read
 * matched, 1 with a message otherwise. */
#include "block/block.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fail(const char *what, uint64_t off, uint64_t len)
{
    fprintf(stderr, "blk-random: %s at offset %" PRIu64 " len %" PRIu64 ": %s\n", what, off,
            len, blk_error());
    exit(1);
}

static int snapshot_mode, open_flags;
static const char *key;

static BlockDriverState *open_image(const char *path)
{
    BlockOptions opts = {0};
    if (key)
        blkopts_set(&opts, "encrypt.key-secret", key);
    BlockDriverState *bs = snapshot_mode ? blk_open_snapshot(path, NULL, 0)
                                         : blk_open(path, NULL, BLK_O_RDWR | open_flags,
                                                    key ? &opts : NULL);
    blkopts_free(&opts);
    if (!bs) {
        fprintf(stderr, "blk-random: %s\n", blk_error());
        exit(1);
    }
    return bs;
}

static void compare(BlockDriverState *bs, int shadow, uint64_t off, uint64_t len, uint8_t *a,
                    uint8_t *b)
{
    if (blk_pread(bs, off, a, len) < 0)
        fail("read failed", off, len);
    if (blk_file_pread(shadow, b, len, off) < 0)
        fail("shadow read failed", off, len);
    if (memcmp(a, b, len)) {
        uint64_t i = 0;
        while (a[i] == b[i])
            i++;
        fprintf(stderr, "blk-random: mismatch at offset %" PRIu64 " (read 0x%02x, expected "
                "0x%02x)\n", off + i, a[i], b[i]);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, nops = 2000, maxlen = 256 * 1024, reopen = 500;
    int opt;
    while ((opt = getopt(argc, argv, "s:n:m:r:SNk:")) != -1) {
        switch (opt) {
        case 'k': key = optarg; break;
        case 'N': open_flags |= BLK_O_NOCACHE; break; /* O_DIRECT, cache=none */
        case 'S': snapshot_mode = 1; break; /* throw-away overlay; implies -r 0 */
        case 's': seed = strtoull(optarg, NULL, 0); break;
        case 'n': nops = strtoull(optarg, NULL, 0); break;
        case 'm': maxlen = strtoull(optarg, NULL, 0); break;
        case 'r': reopen = strtoull(optarg, NULL, 0); break;
        default: return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr,
                "usage: blk-random [-s seed] [-n ops] [-m maxlen] [-r reopen] IMAGE SHADOW\n");
        return 2;
    }
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    if (snapshot_mode)
        reopen = 0; /* a reopen would start a fresh overlay */
    const char *path = argv[optind];
    int shadow = open(argv[optind + 1], O_RDWR);
    if (shadow < 0) {
        perror(argv[optind + 1]);
        return 1;
    }
    BlockDriverState *bs = open_image(path);
    uint64_t size = bs->size;
    if (maxlen > size)
        maxlen = size;
    /* room for lengths rounded up to 4 KiB */
    uint8_t *a = malloc(maxlen + 4096), *b = malloc(maxlen + 4096), *c = malloc(maxlen + 4096);
    if (!a || !b || !c)
        return 1;
    uint64_t counts[6] = {0};
    for (uint64_t op = 0; op < nops; op++) {
        /* lengths: often small and unaligned, sometimes whole clusters */
        uint64_t len = 1 + rnd() % maxlen;
        if (rnd() % 3 == 0)
            len = (len + 4095) & ~4095ULL;
        if (len > size)
            len = size;
        uint64_t off = rnd() % (size - len + 1);
        if (rnd() % 3 == 0)
            off &= ~4095ULL;
        if (off + len > size)
            len = size - off;
        int kind = rnd() % 10;
        if (kind < 4) { /* write */
            uint8_t pat = (uint8_t)rnd();
            for (uint64_t i = 0; i < len; i++)
                a[i] = (uint8_t)(pat + i * 7 + (i >> 9));
            if (blk_pwrite(bs, off, a, len) < 0)
                fail("write failed", off, len);
            if (blk_file_pwrite(shadow, a, len, off) < 0)
                fail("shadow write failed", off, len);
            counts[0]++;
        } else if (kind < 5) { /* zero write */
            if (blk_pwrite_zeroes(bs, off, len, rnd() % 2 ? BLK_ZERO_MAY_UNMAP : 0) < 0)
                fail("zero write failed", off, len);
            memset(a, 0, len);
            if (blk_file_pwrite(shadow, a, len, off) < 0)
                fail("shadow write failed", off, len);
            counts[1]++;
        } else if (kind < 6) { /* discard */
            if (blk_file_pread(shadow, b, len, off) < 0)
                fail("shadow read failed", off, len);
            if (blk_discard(bs, off, len) < 0)
                fail("discard failed", off, len);
            if (blk_pread(bs, off, a, len) < 0)
                fail("read failed", off, len);
            memset(c, 0, len);
            if (bs->backing && off < bs->backing->size) {
                uint64_t n = bs->backing->size - off < len ? bs->backing->size - off : len;
                if (blk_pread(bs->backing, off, c, n) < 0)
                    fail("backing read failed", off, n);
            }
            for (uint64_t i = 0; i < len; i++) {
                if (a[i] != b[i] && a[i] != 0 && a[i] != c[i]) {
                    fprintf(stderr, "blk-random: discard left garbage at %" PRIu64 "\n", off + i);
                    return 1;
                }
            }
            if (blk_file_pwrite(shadow, a, len, off) < 0)
                fail("shadow write failed", off, len);
            counts[2]++;
        } else if (kind < 9) {
            compare(bs, shadow, off, len, a, b);
            counts[3]++;
        } else {
            if (blk_flush(bs) < 0)
                fail("flush failed", 0, 0);
            counts[4]++;
        }
        if (reopen && op % reopen == reopen - 1) {
            blk_close(bs);
            bs = open_image(path);
            counts[5]++;
        }
    }
    for (uint64_t off = 0; off < size; off += maxlen) {
        uint64_t n = size - off < maxlen ? size - off : maxlen;
        compare(bs, shadow, off, n, a, b);
    }
    blk_close(bs);
    printf("blk-random: %" PRIu64 " writes, %" PRIu64 " zero writes, %" PRIu64 " discards, %"
           PRIu64 " reads, %" PRIu64 " flushes, %" PRIu64 " reopens: all reads matched\n",
           counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
    free(a);
    free(b);
    free(c);
    close(shadow);
    return 0;
}
