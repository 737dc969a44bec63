/* calf-img amend: changes format options of an existing image in place
 * (qemu-img amend's options and messages). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/img/img.h"
#include "block/img/progress.h"
#include "block/tool-util.h"

enum { OPT_FORCE = 256 };

static const char amend_help[] =
    "Amend options for 'qcow2':\n"
    "  backing_file=<str>     - File name of a base image\n"
    "  backing_fmt=<str>      - Image format of the base image\n"
    "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
    "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n"
    "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
    "  size=<size>            - Virtual disk size\n";

static void amend_progress(void *opaque, uint64_t done, uint64_t total)
{
    img_progress_set(opaque, (double)done, (double)total);
}

int img_amend(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"force", no_argument, 0, OPT_FORCE},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL;
    char *options = NULL;
    bool quiet = false, progress = false, force = false;
    int c;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", lopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'o': {
            /* several -o accumulate, as in qemu-img */
            size_t ol = options ? strlen(options) : 0;
            char *n = realloc(options, ol + strlen(optarg) + 2);
            if (!n)
                return 1;
            if (ol)
                n[ol++] = ',';
            strcpy(n + ol, optarg);
            options = n;
            break;
        }
        case 'f':
            fmt = optarg;
            break;
        case 't':
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_FORCE:
            force = true;
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
    if (!options)
        img_usage_error("Must specify options (-o)");
    if (quiet)
        progress = false;
    if (!strcmp(options, "help") || !strcmp(options, "?")) {
        printf("%s", amend_help);
        free(options);
        return 0;
    }
    if (optind != argc - 1) {
        img_error("Expecting one image file name"); /* qemu-img: no --help hint here */
        free(options);
        return 1;
    }
    const char *filename = argv[optind];
    BlockOptions opts = {0};
    if (blkopts_parse(&opts, options) < 0) {
        img_error("Invalid options for amend: %s", blk_error());
        free(options);
        return 1;
    }
    free(options);
    int ret = 1;
    BlockDriverState *bs = img_open(filename, fmt, BLK_O_RDWR, false);
    if (!bs) {
        blkopts_free(&opts);
        return 1;
    }
    if (!bs->drv->amend) {
        img_error("Format driver '%s' does not support option amendment", bs->drv->name);
        goto out;
    }
    ImgProgress prog;
    img_progress_init(&prog, progress);
    bs->progress = amend_progress;
    bs->progress_opaque = &prog;
    int r = blk_amend(bs, &opts, force);
    if (r == 0)
        r = blk_flush(bs);
    img_progress_end(&prog);
    if (r < 0) {
        img_error("%s", blk_error());
        goto out;
    }
    ret = 0;
out:
    blkopts_free(&opts);
    blk_close(bs);
    return ret;
}
