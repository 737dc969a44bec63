/* calf-img commit: copies what FILE (and the layers down to the base)
 * hold into the base image, grows a smaller base, then empties FILE
 * unless -d or -b was given.  Messages and output as qemu-img's. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/img/img.h"
#include "block/img/progress.h"
#include "block/tool-util.h"

#define COMMIT_CHUNK (1u << 20)

static bool same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    if (!realpath(a, ra) || !realpath(b, rb))
        return !strcmp(a, b);
    return !strcmp(ra, rb);
}

/* name made relative to what cur's backing file name is relative to: the directory that the
 * resolved backing name puts in front of the stored one (the image file's, also where cur is
 * opened through a filter such as blkdebug), else cur's own. */
static char *relative_to_backing(const BlockDriverState *cur, const char *name)
{
    const char *full = cur->full_backing_filename, *stored = cur->backing_file;
    size_t fl = full ? strlen(full) : 0, sl = strlen(stored), n = strcspn(name, ":/");
    bool plain = name[0] != '/' && name[n] != ':'; /* not absolute, no protocol */
    if (!plain || !sl || stored[0] == '/' || fl < sl || strcmp(full + fl - sl, stored))
        return blk_backing_path(cur->filename, name);
    char *p = malloc(fl - sl + strlen(name) + 1);
    if (p) {
        memcpy(p, full, fl - sl);
        strcpy(p + fl - sl, name);
    }
    return p;
}

/* Finds -b's image in top's chain as qemu-img does: a relative name is relative to each overlay
 * in turn (as the backing file name that overlay stores), not to the working directory. */
static BlockDriverState *find_base(BlockDriverState *top, const char *base_name)
{
    for (BlockDriverState *cur = top; cur->backing; cur = cur->backing) {
        char *want = relative_to_backing(cur, base_name);
        bool found = want && same_file(want, cur->backing->filename);
        free(want);
        if (found)
            return cur->backing;
    }
    return NULL;
}

/* Zeros [off, off+len) of base as QEMU's commit job does: the whole
 * clusters of base may be deallocated (they read as zeros then), the
 * parts of clusters get zeros written as data. */
static int zero_base(BlockDriverState *base, uint64_t cluster, const uint8_t *zeros,
                     uint64_t off, uint64_t len)
{
    uint64_t a = (off + cluster - 1) / cluster * cluster, b = (off + len) / cluster * cluster;
    if (off + len == base->size)
        b = off + len;
    if (a >= b)
        return blk_pwrite(base, off, zeros, len);
    int r = 0;
    if (a > off)
        r = blk_pwrite(base, off, zeros, a - off);
    if (r == 0)
        r = blk_pwrite_zeroes(base, a, b - a, BLK_ZERO_MAY_UNMAP);
    if (r == 0 && off + len > b)
        r = blk_pwrite(base, b, zeros, off + len - b);
    return r;
}

/* Copies every range allocated above depth base_depth of top into base. */
static int copy_to_base(BlockDriverState *top, int base_depth, BlockDriverState *base,
                        ImgProgress *prog)
{
    uint8_t *buf = malloc(COMMIT_CHUNK), *zeros = calloc(1, COMMIT_CHUNK);
    if (!buf || !zeros) {
        free(buf);
        free(zeros);
        return -ENOMEM;
    }
    BlockInfo bi;
    uint64_t cluster = blk_get_info(base, &bi) == 0 && bi.cluster_size ? bi.cluster_size
                                                                       : BLK_SECTOR_SIZE;
    blk_info_free(&bi);
    int r = 0;
    uint64_t size = top->size, unkicked = 0;
    for (uint64_t off = 0; off < size && r == 0;) {
        uint64_t len = size - off < COMMIT_CHUNK ? size - off : COMMIT_CHUNK, pnum, host;
        int depth;
        int st = blk_block_status_above(top, off, len, &pnum, &host, &depth, NULL);
        if (st < 0) {
            r = st;
            break;
        }
        if (depth < base_depth && (st & BLK_STATUS_ALLOCATED)) {
            if ((st & BLK_STATUS_ZERO) && !(st & BLK_STATUS_DATA))
                r = zero_base(base, cluster, zeros, off, pnum);
            else if ((r = blk_pread(top, off, buf, pnum)) == 0)
                r = blk_pwrite(base, off, buf, pnum);
            img_wrote(base, &unkicked, pnum);
        }
        off += pnum;
        img_progress_set(prog, (double)off, (double)size);
    }
    free(buf);
    free(zeros);
    return r;
}

int img_commit(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *base_name = NULL;
    bool quiet = false, progress = false, drop = false;
    int c;
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", lopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 't':
        case 'r':
            break; /* cache mode, rate limit: accepted */
        case 'b':
            base_name = optarg;
            drop = true; /* the layers in between would change under their overlays */
            break;
        case 'd':
            drop = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
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
    const char *filename = argv[optind];
    /* The chain is only read above the base, and the base is opened for
     * writing on its own: no locks through the chain, FILE's taken here. */
    BlockDriverState *top = img_open(filename, fmt, BLK_O_RDWR | BLK_O_SHARE, false);
    if (!top)
        return 1;
    int ret = 1;
    BlockDriverState *base_ro = NULL, *base = NULL;
    if (blk_lock(top->fd, true, filename) < 0) {
        img_error("Could not open '%s': %s", filename, blk_error());
        goto out;
    }
    if (!top->backing) {
        img_error("Image does not have a backing file");
        goto out;
    }
    int base_depth = 1;
    base_ro = top->backing;
    if (base_name) {
        base_ro = find_base(top, base_name);
        if (!base_ro) {
            img_error("Did not find '%s' in the backing chain of '%s'", base_name, filename);
            goto out;
        }
        base_depth = base_ro->depth;
    }
    /* with the options (the key) the chain gave it */
    BlockOptions bo = {0};
    for (int i = 0; i < base_ro->options.n; i++)
        blkopts_set(&bo, base_ro->options.opt[i].key, base_ro->options.opt[i].value);
    base = blk_open(base_ro->filename, base_ro->drv->name, BLK_O_RDWR, bo.n ? &bo : NULL);
    blkopts_free(&bo);
    if (!base) {
        img_error("Could not open '%s': %s", base_ro->filename, blk_error());
        goto out;
    }
    ImgProgress prog;
    img_progress_init(&prog, progress);
    int r = 0;
    if (base->size < top->size)
        r = blk_truncate(base, top->size, BLK_PREALLOC_OFF, false);
    if (r < 0) {
        img_error("%s", blk_error());
        goto out;
    }
    r = copy_to_base(top, base_depth, base, &prog);
    if (r == 0)
        r = blk_flush(base);
    if (r < 0) {
        /* QEMU's words for a failed commit job: the errno only */
        img_error("Block job failed: %s", strerror(-r));
        goto out;
    }
    if (!drop && (r = blk_make_empty(top)) == 0)
        r = blk_flush(top);
    img_progress_end(&prog);
    if (r < 0) {
        img_error("Failed to empty %s: %s", top->filename, strerror(-r));
        goto out;
    }
    if (!quiet)
        printf("Image committed.\n");
    ret = 0;
out:
    if (base)
        blk_close(base);
    blk_close(top);
    return ret;
}
