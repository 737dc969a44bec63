/* calf-img resize: qemu-img resize's options, checks and messages. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "block/img/img.h"
#include "block/tool-util.h"

enum { OPT_SHRINK = 256, OPT_PREALLOC };

int img_resize(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"shrink", no_argument, 0, OPT_SHRINK},
        {"preallocation", required_argument, 0, OPT_PREALLOC},
        {0, 0, 0, 0},
    };
    /* the size is taken off argv first, so that "-1G" is not an option */
    if (argc < 3)
        img_usage_error("Not enough arguments");
    const char *size_arg = argv[--argc];
    const char *fmt = NULL;
    bool quiet = false, shrink = false;
    int prealloc = BLK_PREALLOC_OFF, c;
    while ((c = getopt_long(argc, argv, ":f:hqU", lopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            break;
        case OPT_SHRINK:
            shrink = true;
            break;
        case OPT_PREALLOC:
            prealloc = blk_prealloc_parse(optarg);
            if (prealloc < 0) {
                img_error("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
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
    if (optind != argc - 1)
        img_usage_error("Expecting image file name and size");
    const char *filename = argv[optind];
    int relative = 0;
    if (size_arg[0] == '+' || size_arg[0] == '-') {
        relative = size_arg[0] == '+' ? 1 : -1;
        size_arg++;
    }
    uint64_t n;
    if (tool_strtosz(size_arg, &n) < 0 || n > INT64_MAX) {
        img_error("Parameter 'size' expects a non-negative number below 2^64\n"
                  "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                  "and exabytes, respectively.");
        return 1;
    }
    BlockDriverState *bs = img_open(filename, fmt, BLK_O_RDWR, false);
    if (!bs)
        return 1;
    int64_t cur = (int64_t)bs->size, total;
    if (relative)
        total = cur + relative * (int64_t)n;
    else
        total = (int64_t)n;
    int ret = 1;
    if (total <= 0) {
        img_error("New image size must be positive");
    } else if (total <= cur && prealloc != BLK_PREALLOC_OFF) {
        img_error("Preallocation can only be used for growing images");
    } else if (total < cur && !shrink) {
        img_error("Use the --shrink option to perform a shrink operation.");
        fprintf(stderr, "%s: warning: Shrinking an image will delete all data beyond the "
                "shrunken image's end. Before performing such an operation, make sure there "
                "is no important data there.\n", tool_progname);
    } else if (blk_truncate(bs, (uint64_t)total, prealloc, shrink) < 0 || blk_flush(bs) < 0) {
        img_error("%s", blk_error());
    } else {
        if (!quiet)
            printf("Image resized.\n");
        ret = 0;
    }
    blk_close(bs);
    return ret;
}
