/* The virtual fds of block/proto.c on the node of an image (argv[1], a
 * qcow2 image of at least 1 MiB, opened read-write): an fd kept past its
 * release reaches no node, also once the slot names another; a vector
 * write of no bytes past the end leaves the size; an end near 2^64 is
 * refused (-EFBIG), not wrapped; blk_file_grow_to never shrinks. */
#include "block/block.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>

static int n_test, failed;

static void ok(int cond, const char *what)
{
    printf("%sok %d - %s\n", cond ? "" : "not ", ++n_test, what);
    failed |= !cond;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: blk-vfd IMAGE\n");
        return 2;
    }
    BlockDriverState *a = blk_open(argv[1], NULL, BLK_O_RDWR, NULL);
    BlockDriverState *b = blk_open(argv[1], NULL, BLK_O_RDWR | BLK_O_SHARE, NULL);
    if (!a || !b) {
        fprintf(stderr, "blk-vfd: %s\n", blk_error());
        return 2;
    }
    printf("1..9\n");
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
    blk_close(b);
    blk_close(a);
    return failed;
}
