/* calf-img rebase: safe mode copies into FILE every sector that reads
 * differently through the old and the new backing file (where FILE does
 * not decide the content itself), then rewrites the link; -u rewrites
 * the link only; -b "" detaches.  Messages as qemu-img's. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/img/img.h"
#include "block/img/progress.h"
#include "block/tool-util.h"

#define REBASE_CHUNK (1u << 20)

/* The new backing file's content, zeros past its end (or everywhere). */
static int read_new(BlockDriverState *nb, uint64_t off, uint8_t *buf, uint64_t len)
{
    uint64_t avail = 0;
    if (nb && off < nb->size)
        avail = nb->size - off < len ? nb->size - off : len;
    if (avail) {
        int r = blk_pread(nb, off, buf, avail);
        if (r < 0)
            return r;
    }
    memset(buf + avail, 0, len - avail);
    return 0;
}

/* Bytes from off (at most len) that read as zeros through both the old
 * and the new backing chain, from their status alone (0: not known to):
 * nothing there can differ, and nothing needs reading. */
static uint64_t zero_in_both(BlockDriverState *old, BlockDriverState *nb, uint64_t off,
                             uint64_t len)
{
    uint64_t n = len, m;
    if (old && off < old->size) {
        int st = blk_block_status_above(old, off, len, &n, NULL, NULL, NULL);
        if (st < 0 || !(st & BLK_STATUS_ZERO) || !n)
            return 0;
    }
    if (nb && off < nb->size) {
        int st = blk_block_status_above(nb, off, n, &m, NULL, NULL, NULL);
        if (st < 0 || !(st & BLK_STATUS_ZERO) || !m)
            return 0;
        n = m < n ? m : n;
    }
    return n;
}

static int copy_differences(BlockDriverState *bs, BlockDriverState *nb, ImgProgress *prog)
{
    uint8_t *a = malloc(REBASE_CHUNK), *b = malloc(REBASE_CHUNK);
    int r = (a && b) ? 0 : -ENOMEM;
    uint64_t size = bs->size, unkicked = 0;
    for (uint64_t off = 0; off < size && r == 0;) {
        uint64_t len = size - off < REBASE_CHUNK ? size - off : REBASE_CHUNK, pnum, host;
        int st = blk_block_status(bs, off, len, &pnum, &host);
        if (st < 0) {
            r = st;
            break;
        }
        /* past the end of the old backing file (or with none) FILE read
         * zeros: qemu-img writes zeros there, not data */
        uint64_t old_size = bs->backing ? bs->backing->size : 0;
        bool old_zero = off >= old_size;
        if (!old_zero && pnum > old_size - off)
            pnum = old_size - off;
        uint64_t zeros = st & BLK_STATUS_ALLOCATED ? 0 : zero_in_both(bs->backing, nb, off, pnum);
        if (zeros) {
            pnum = zeros; /* the same zeros through both */
        } else if (!(st & BLK_STATUS_ALLOCATED)) {
            if ((r = blk_read_backing(bs, off, a, pnum)) < 0 ||
                (r = read_new(nb, off, b, pnum)) < 0)
                break;
            /* write the old content of each run of differing sectors */
            for (uint64_t i = 0; i < pnum && r == 0;) {
                uint64_t n = pnum - i < BLK_SECTOR_SIZE ? pnum - i : BLK_SECTOR_SIZE;
                bool differ = memcmp(a + i, b + i, n) != 0;
                uint64_t j = i + n;
                while (j < pnum) {
                    uint64_t m = pnum - j < BLK_SECTOR_SIZE ? pnum - j : BLK_SECTOR_SIZE;
                    if ((memcmp(a + j, b + j, m) != 0) != differ)
                        break;
                    j += m;
                }
                if (differ)
                    r = old_zero ? blk_pwrite_zeroes(bs, off + i, j - i, 0)
                                 : blk_pwrite(bs, off + i, a + i, j - i);
                if (differ)
                    img_wrote(bs, &unkicked, j - i);
                i = j;
            }
        }
        off += pnum;
        img_progress_set(prog, (double)off, (double)size);
    }
    free(a);
    free(b);
    return r;
}

int img_rebase(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *out_base = NULL, *out_fmt = NULL;
    bool quiet = false, progress = false, unsafe = false, force_share = false;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qUc", lopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            out_fmt = optarg;
            break;
        case 'b':
            out_base = optarg;
            break;
        case 'u':
            unsafe = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            force_share = true;
            break;
        case 't':
        case 'T':
        case 'c':
            break; /* cache modes; compression of copied data: accepted */
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                return 1;
            break;
        default:
            img_bad_option(c, argv);
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 1)
        img_usage_error("Expecting one image file name");
    if (!out_base)
        img_usage_error("Must specify backing file (-b) or use unsafe mode (-u)");
    const char *filename = argv[optind];
    if (out_fmt && !blk_format_name_known(out_fmt)) {
        img_error("Invalid format name: '%s'", out_fmt);
        return 1;
    }
    if (out_base[0] && !out_fmt) {
        img_error("Could not change the backing file to '%s': backing format must be "
                  "specified", out_base);
        return 1;
    }
    if (force_share) {
        img_error("Could not open '%s': force-share=on can only be used with read-only "
                  "images", filename);
        return 1;
    }
    BlockDriverState *bs = img_open(filename, fmt, BLK_O_RDWR | (unsafe ? BLK_O_NO_BACKING : 0),
                                    false);
    if (!bs)
        return 1;
    int ret = 1, r = 0;
    BlockDriverState *nb = NULL;
    ImgProgress prog;
    img_progress_init(&prog, progress);
    if (!unsafe) {
        if (out_base[0]) {
            char *path = blk_backing_path(filename, out_base);
            nb = path ? blk_open(path, out_fmt, 0, NULL) : NULL;
            if (!nb) {
                img_error("Could not open new backing file '%s': %s", path ? path : out_base,
                          blk_error());
                free(path);
                goto out;
            }
            free(path);
        }
        if ((r = copy_differences(bs, nb, &prog)) < 0 || (r = blk_flush(bs)) < 0) {
            img_error("Error while writing to COW image: %s", blk_error());
            goto out;
        }
    }
    /* the copied data is on disk before the link changes */
    if ((r = blk_change_backing_file(bs, out_base, out_base[0] ? out_fmt : "")) < 0) {
        img_error("Could not change the backing file to '%s': %s", out_base, blk_error());
        goto out;
    }
    img_progress_end(&prog);
    ret = 0;
out:
    if (nb)
        blk_close(nb);
    blk_close(bs);
    return ret;
}
