/* calf-img bitmap: adds, removes, clears, enables, disables and merges
 * persistent dirty bitmaps, with qemu-img's options and messages.  The
 * actions run in the order given, each one complete before the next. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "block/img/img.h"
#include "block/tool-util.h"

enum {
    OPT_ADD = 0x2000,
    OPT_REMOVE,
    OPT_CLEAR,
    OPT_ENABLE,
    OPT_DISABLE,
    OPT_MERGE,
};

typedef struct Action {
    int op;              /* OPT_* */
    const char *src;     /* --merge SOURCE */
} Action;

static const char *op_name(int op)
{
    switch (op) {
    case OPT_ADD:
        return "add";
    case OPT_REMOVE:
        return "remove";
    case OPT_CLEAR:
        return "clear";
    case OPT_ENABLE:
        return "enable";
    case OPT_DISABLE:
        return "disable";
    default:
        return "merge";
    }
}

/* granularity: 0 for the default, else as given (-1: not representable) */
static int run(BlockDriverState *bs, BlockDriverState *src, const Action *a, const char *name,
               int64_t granularity)
{
    BlockBitmapReq req = {.name = name, .enabled = true};
    switch (a->op) {
    case OPT_ADD:
        if (granularity && (granularity < 512 || (granularity & (granularity - 1)))) {
            blk_set_error("Granularity must be power of 2 and at least 512");
            return -EINVAL;
        }
        req.op = BLK_BITMAP_ADD;
        req.granularity = (uint32_t)granularity;
        break;
    case OPT_REMOVE:
        req.op = BLK_BITMAP_REMOVE;
        break;
    case OPT_CLEAR:
        req.op = BLK_BITMAP_CLEAR;
        break;
    case OPT_ENABLE:
        req.op = BLK_BITMAP_ENABLE;
        break;
    case OPT_DISABLE:
        req.op = BLK_BITMAP_DISABLE;
        break;
    default:
        return blk_bitmap_merge(bs, name, src, a->src);
    }
    return blk_bitmap(bs, &req);
}

int img_bitmap(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"add", no_argument, 0, OPT_ADD},
        {"remove", no_argument, 0, OPT_REMOVE},
        {"clear", no_argument, 0, OPT_CLEAR},
        {"enable", no_argument, 0, OPT_ENABLE},
        {"disable", no_argument, 0, OPT_DISABLE},
        {"merge", required_argument, 0, OPT_MERGE},
        {"granularity", required_argument, 0, 'g'},
        {"source-file", required_argument, 0, 'b'},
        {"source-format", required_argument, 0, 'F'},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *src_fmt = NULL, *src_file = NULL;
    int64_t granularity = 0;
    bool add = false, merge = false;
    Action *acts = calloc(argc, sizeof(*acts));
    int nacts = 0, c, ret = 1;
    if (!acts)
        return 1;
    while ((c = getopt_long(argc, argv, ":b:f:F:g:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'b':
            src_file = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            src_fmt = optarg;
            break;
        case 'g':
            /* QEMU keeps the granularity in 32 bits: larger values wrap
             * and are refused below as not a power of two */
            if (tool_cvtnum_full("granularity", optarg, 0, INT64_MAX, &granularity) < 0)
                goto out;
            granularity = (uint32_t)granularity;
            if (!granularity)
                granularity = -1;
            break;
        case OPT_ADD:
        case OPT_REMOVE:
        case OPT_CLEAR:
        case OPT_ENABLE:
        case OPT_DISABLE:
        case OPT_MERGE:
            acts[nacts].op = c;
            acts[nacts++].src = c == OPT_MERGE ? optarg : NULL;
            add |= c == OPT_ADD;
            merge |= c == OPT_MERGE;
            break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                goto out;
            break;
        default:
            img_bad_option(c, argv);
        }
    }
    if (!nacts) {
        img_error("Need at least one of --add, --remove, --clear, --enable, --disable, or "
                  "--merge");
        goto out;
    }
    if (granularity && !add) {
        img_error("granularity only supported with --add");
        goto out;
    }
    if (src_fmt && !src_file) {
        img_error("-F only supported with -b");
        goto out;
    }
    if (src_file && !merge) {
        img_error("Merge bitmap source file only supported with --merge");
        goto out;
    }
    if (optind != argc - 2) {
        img_error("Expecting filename and bitmap name");
        goto out;
    }
    const char *filename = argv[optind], *name = argv[optind + 1];
    /* the bitmaps live in this image: no backing chain needed */
    BlockDriverState *bs = img_open(filename, fmt, BLK_O_RDWR | BLK_O_NO_BACKING |
                                    BLK_O_BITMAPS, false);
    if (!bs)
        goto out;
    BlockDriverState *src = bs;
    if (src_file && !(src = img_open(src_file, src_fmt, BLK_O_NO_BACKING, false))) {
        blk_close(bs);
        goto out;
    }
    ret = 0;
    for (int i = 0; i < nacts && !ret; i++) {
        if (run(bs, src, &acts[i], name, granularity) < 0) {
            img_error("Operation %s on bitmap %s failed: %s", op_name(acts[i].op), name,
                      blk_error());
            ret = 1;
        }
    }
    if (src != bs)
        blk_close(src);
    if (blk_flush(bs) < 0 && !ret) {
        img_error("%s", blk_error());
        ret = 1;
    }
    blk_close(bs);
out:
    free(acts);
    return ret;
}
