/* calf-img dd: copies (part of) an image into a new image, with
 * qemu-img dd's operands and its size rules. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/img/img.h"
#include "block/tool-util.h"

typedef struct DdArgs {
    const char *in, *out;
    const char *fmt, *out_fmt;
    int64_t bs, count, skip;
    bool has_count, has_skip, force_share;
} DdArgs;

static bool operand_is(const char *arg, size_t len, const char *name)
{
    return len == strlen(name) && !strncmp(arg, name, len);
}

static int dd_operand(DdArgs *a, const char *arg)
{
    const char *eq = strchr(arg, '='), *val = eq ? eq + 1 : NULL;
    size_t len = eq ? (size_t)(eq - arg) : 0;
    if (!eq)
        ;
    else if (operand_is(arg, len, "bs"))
        return tool_cvtnum_full("bs", val, 1, INT_MAX, &a->bs);
    else if (operand_is(arg, len, "count")) {
        a->has_count = true;
        return tool_cvtnum_full("count", val, 0, INT64_MAX, &a->count);
    } else if (operand_is(arg, len, "skip")) {
        a->has_skip = true;
        return tool_cvtnum_full("skip", val, 0, INT64_MAX, &a->skip);
    } else if (operand_is(arg, len, "if")) {
        a->in = val;
        return 0;
    } else if (operand_is(arg, len, "of")) {
        a->out = val;
        return 0;
    }
    img_error("unrecognized operand %.*s", eq ? (int)len : (int)strlen(arg), arg);
    return -EINVAL;
}

static bool skip_too_far(const DdArgs *a, int64_t size)
{
    return a->has_skip && (a->skip > INT64_MAX / a->bs || size < a->skip * a->bs);
}

static int create_output(const DdArgs *a, int64_t size)
{
    if (!blk_find_driver(a->out_fmt)) {
        img_error("Unknown file format");
        return -EINVAL;
    }
    uint64_t out_size = skip_too_far(a, size) ? 0 : (uint64_t)(size - a->skip * a->bs);
    BlockOptions none = {0};
    blk_set_error("%s", strerror(EINVAL));
    if (blk_create(a->out_fmt, a->out, out_size, &none) < 0) {
        img_error("%s: error while creating output image: %s", a->out, blk_error());
        return -EIO;
    }
    return 0;
}

/* Copies bs-sized blocks from the skip offset up to size (qemu-img dd
 * counts "count" from the start of the input, not from the skip). */
static int copy_blocks(const DdArgs *a, BlockDriverState *in, BlockDriverState *out,
                       int64_t size)
{
    int64_t in_pos = a->skip * a->bs, out_pos = 0;
    if (skip_too_far(a, size)) {
        img_error("%s: cannot skip to specified offset", a->in);
        in_pos = size;
    }
    uint8_t *buf = malloc(a->bs);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    while (in_pos < size) {
        size_t n = in_pos + a->bs > size ? (size_t)(size - in_pos) : (size_t)a->bs;
        r = blk_pread(in, in_pos, buf, n);
        if (r < 0) {
            img_error("error while reading from input image file: %s", strerror(-r));
            break;
        }
        r = blk_pwrite(out, out_pos, buf, n);
        if (r < 0) {
            img_error("error while writing to output image file: %s", strerror(-r));
            break;
        }
        in_pos += n;
        out_pos += n;
    }
    free(buf);
    if (r == 0 && (r = blk_flush(out)) < 0)
        img_error("error while writing to output image file: %s", strerror(-r));
    return r;
}

static int do_dd(const DdArgs *a)
{
    BlockDriverState *in = img_open(a->in, a->fmt, 0, a->force_share), *out = NULL;
    if (!in)
        return 1;
    int64_t size = in->size;
    if (a->has_count && a->count <= INT64_MAX / a->bs && a->count * a->bs < size)
        size = a->count * a->bs;
    int r = create_output(a, size);
    if (r == 0) {
        out = blk_open(a->out, a->out_fmt, BLK_O_RDWR, NULL);
        if (!out) {
            img_error("Could not open '%s': %s", a->out, blk_error());
            r = -EIO;
        }
    }
    if (r == 0)
        r = copy_blocks(a, in, out, size);
    blk_close(out);
    blk_close(in);
    return r < 0 ? 1 : 0;
}

int img_dd(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    DdArgs a = {.out_fmt = "raw", .bs = 512};
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:U", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'f': a.fmt = optarg; break;
        case 'O': a.out_fmt = optarg; break;
        case 'U': a.force_share = true; break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                return 1;
            break;
        default: img_bad_option(c, argv);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (dd_operand(&a, argv[i]) < 0)
            return 1;
    }
    if (!a.in || !a.out) {
        img_error("Must specify both input and output files");
        return 1;
    }
    return do_dd(&a);
}
