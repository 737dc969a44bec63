/* Writes the guest view of an image (through its backing chain) to a raw
 * file, read in chunks of a given size: the reference reader for interop
 * tests.   blk-dump [-c chunk] IMAGE OUT */
#include "block/block.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    uint64_t chunk = 1 << 20;
    int opt;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt != 'c' || blk_parse_size(optarg, &chunk) < 0 || !chunk)
            return 2;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: blk-dump [-c chunk] IMAGE OUT\n");
        return 2;
    }
    BlockDriverState *bs = blk_open(argv[optind], NULL, BLK_O_SHARE, NULL);
    if (!bs) {
        fprintf(stderr, "blk-dump: %s\n", blk_error());
        return 1;
    }
    int out = open(argv[optind + 1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint8_t *buf = malloc(chunk);
    if (out < 0 || !buf || ftruncate(out, bs->size) < 0) {
        perror(argv[optind + 1]);
        return 1;
    }
    for (uint64_t off = 0; off < bs->size; off += chunk) {
        uint64_t n = bs->size - off < chunk ? bs->size - off : chunk;
        if (blk_pread(bs, off, buf, n) < 0) {
            fprintf(stderr, "blk-dump: %s\n", blk_error());
            return 1;
        }
        if (blk_file_pwrite(out, buf, n, off) < 0) {
            perror("write");
            return 1;
        }
    }
    free(buf);
    close(out);
    blk_close(bs);
    return 0;
}
