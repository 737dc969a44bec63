/* Scatter/gather requests (what virtio-blk hands the block layer): random
 * iovec lists written with blk_pwritev and read with blk_preadv, checked
 * against plain blk_pread/blk_pwrite of the same bytes.  TAP output.
 *   blk-iov IMAGE */
#include "block/block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    BlockDriverState *bs = blk_open(argv[1], NULL, BLK_O_RDWR, NULL);
    if (!bs) {
        printf("1..0 # skip %s\n", blk_error());
        return 1;
    }
    enum { ROUNDS = 300, MAXSEG = 40, SEGLEN = 9000, GAP = 64 };
    printf("1..2\n");
    uint8_t *data = malloc(MAXSEG * SEGLEN), *back = malloc(MAXSEG * SEGLEN);
    /* the segments themselves: side by side in even rounds (the block
     * layer merges them into one request), GAP bytes apart in odd ones
     * (a vectored or gathered request) */
    uint8_t *seg = malloc(MAXSEG * (SEGLEN + GAP));
    int bad_write = 0, bad_read = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int n = 1 + rnd() % MAXSEG;
        struct iovec iov[MAXSEG];
        size_t total = 0, gap = round % 2 ? GAP : 0;
        for (int i = 0; i < n; i++) {
            size_t len = 1 + rnd() % SEGLEN;
            iov[i].iov_base = seg + total + i * gap;
            iov[i].iov_len = len;
            total += len;
        }
        for (size_t i = 0; i < total; i++)
            data[i] = (uint8_t)rnd();
        for (int i = 0, p = 0; i < n; p += (int)iov[i].iov_len, i++)
            memcpy(iov[i].iov_base, data + p, iov[i].iov_len);
        uint64_t off = rnd() % (bs->size - total);
        if (blk_pwritev(bs, off, iov, n) < 0 || blk_pread(bs, off, back, total) < 0 ||
            memcmp(data, back, total))
            bad_write++;
        /* read scattered into other segment boundaries */
        memset(seg, 0, MAXSEG * (SEGLEN + GAP));
        size_t pos = 0;
        int m = 0;
        while (pos < total && m < MAXSEG - 1) {
            size_t len = 1 + rnd() % SEGLEN;
            if (len > total - pos)
                len = total - pos;
            iov[m].iov_base = seg + pos + m * gap;
            iov[m++].iov_len = len;
            pos += len;
        }
        if (pos < total) {
            iov[m].iov_base = seg + pos + m * gap;
            iov[m].iov_len = total - pos;
            m++;
        }
        int r = blk_preadv(bs, off, iov, m);
        for (int i = 0, p = 0; i < m; p += (int)iov[i].iov_len, i++)
            memcpy(back + p, iov[i].iov_base, iov[i].iov_len);
        if (r < 0 || memcmp(data, back, total))
            bad_read++;
    }
    printf("%s 1 - %d scattered writes read back with plain reads\n", bad_write ? "not ok" : "ok",
           ROUNDS);
    printf("%s 2 - %d scattered reads match\n", bad_read ? "not ok" : "ok", ROUNDS);
    blk_close(bs);
    free(data);
    free(back);
    free(seg);
    return bad_write || bad_read;
}
