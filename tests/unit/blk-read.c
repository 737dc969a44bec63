/* blk-read: opens an image through the block layer and reads all of it
 * (the hostile-image tests' reader).
 *
 *   blk-read [-f FMT] [-n] [-m MAX] FILE        read [0, min(size, MAX)) in
 *                                               1 MiB chunks, then walk the
 *                                               block status of the chain
 *   blk-read [-f FMT] [-n] -w OFF:LEN FILE      open read/write, write a
 *                                               pattern there, flush, close
 * -n: do not open the backing chain.  MAX defaults to 256 MiB.
 * Exit 0 on success; on failure one line "blk-read: MESSAGE" on stderr
 * and exit 1. */
#include "block/block.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "blk-read: %s%s\n", what, blk_error());
    return 1;
}

static int read_all(BlockDriverState *bs, uint64_t max)
{
    size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return -1;
    uint64_t end = bs->size < max ? bs->size : max;
    for (uint64_t off = 0; off < end; off += chunk) {
        size_t n = end - off < chunk ? end - off : chunk;
        if (blk_pread(bs, off, buf, n) < 0) {
            free(buf);
            return -1;
        }
    }
    free(buf);
    /* status walk: bounded in calls so a huge sparse image stays fast */
    uint64_t off = 0;
    for (int calls = 0; off < end && calls < 1000000; calls++) {
        uint64_t pnum = 0, host;
        int depth;
        int st = blk_block_status_above(bs, off, end - off, &pnum, &host, &depth, NULL);
        if (st < 0)
            return -1;
        if (pnum == 0 || pnum > end - off) {
            blk_set_error("%s: block status returned %" PRIu64 " bytes at %" PRIu64,
                          bs->filename, pnum, off);
            return -1;
        }
        off += pnum;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *fmt = NULL, *wspec = NULL;
    int flags = 0;
    uint64_t max = 256u << 20;
    int c;
    while ((c = getopt(argc, argv, "f:nm:w:")) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'n': flags |= BLK_O_NO_BACKING; break;
        case 'm': max = strtoull(optarg, NULL, 0); break;
        case 'w': wspec = optarg; break;
        default:
            fprintf(stderr, "usage: blk-read [-f FMT] [-n] [-m MAX] [-w OFF:LEN] FILE\n");
            return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: blk-read [-f FMT] [-n] [-m MAX] [-w OFF:LEN] FILE\n");
        return 2;
    }
    const char *file = argv[optind];
    if (wspec)
        flags |= BLK_O_RDWR;
    BlockDriverState *bs = blk_open(file, fmt, flags, NULL);
    if (!bs) {
        /* open errors are QEMU's words, without the file: name it, as the
         * tools do with "Could not open 'FILE': " */
        fprintf(stderr, "blk-read: %s: %s\n", file, blk_error());
        return 1;
    }
    int ret = 0;
    if (!wspec) {
        if (read_all(bs, max) < 0)
            ret = fail("read failed: ");
    } else {
        char *colon;
        uint64_t off = strtoull(wspec, &colon, 0);
        uint64_t len = *colon == ':' ? strtoull(colon + 1, NULL, 0) : 512;
        if (off > bs->size)
            off = bs->size;
        if (len > bs->size - off)
            len = bs->size - off;
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
            return 1;
        memset(buf, 0xcd, len);
        if (blk_pwrite(bs, off, buf, len) < 0)
            ret = fail("write failed: ");
        else if (blk_flush(bs) < 0)
            ret = fail("flush failed: ");
        free(buf);
    }
    blk_close(bs);
    return ret;
}
