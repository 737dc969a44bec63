/* calf-img map: the allocation map of an image and its backing chain,
 * merged into ranges exactly as qemu-img map does. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "block/img/img.h"
#include "block/tool-util.h"

typedef struct MapEntry {
    int64_t start, length;
    int64_t offset;
    int depth;
    bool data, zero, present, has_offset;
    const char *filename; /* set only with has_offset */
} MapEntry;

/* qemu-img's get_block_status(): QEMU stops at the first layer that says
 * data or zero; a range nobody allocates reads as zeros "at" the lowest
 * layer it reached, which is one above where our chain walk ended. */
static int map_status(BlockDriverState *bs, int64_t off, int64_t len, MapEntry *e)
{
    uint64_t pnum, host = 0;
    int depth = 0;
    BlockDriverState *file = NULL;
    int st = blk_block_status_above(bs, off, len, &pnum, &host, &depth, &file);
    if (st < 0)
        return st;
    if (pnum == 0)
        return -EIO; /* a driver that makes no progress would loop forever */
    *e = (MapEntry){
        .start = off,
        .length = pnum,
        .offset = host,
        .depth = depth,
        .data = st & BLK_STATUS_DATA,
        .zero = st & BLK_STATUS_ZERO,
        .present = st & BLK_STATUS_ALLOCATED,
        .has_offset = st & BLK_STATUS_OFFSET,
    };
    /* the offset is in the layer's file: over a node, the node's name
     * (a raw layer over a node answered with the node's offsets) */
    if (file && e->has_offset)
        e->filename = file->file ? file->file->filename : file->filename;
    return 0;
}

static bool entry_mergeable(const MapEntry *curr, const MapEntry *next)
{
    if (curr->length == 0)
        return false;
    if (curr->zero != next->zero || curr->data != next->data ||
        curr->depth != next->depth || curr->present != next->present ||
        !curr->filename != !next->filename || curr->has_offset != next->has_offset)
        return false;
    if (curr->filename && strcmp(curr->filename, next->filename))
        return false;
    if (curr->has_offset && curr->offset + curr->length != next->offset)
        return false;
    return true;
}

static int dump_human(const MapEntry *e, MapEntry *next)
{
    if (e->data && !e->has_offset) {
        img_error("File contains external, encrypted or compressed clusters.");
        return -1;
    }
    if (e->data && !e->zero)
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
               e->has_offset ? e->offset : 0, e->filename ? e->filename : "");
    /* Human output does not tell zero from unallocated: make the next
     * entry look alike so that more of them merge (as qemu-img does). */
    if (next && (!next->data || next->zero)) {
        next->data = false;
        next->zero = true;
    }
    return 0;
}

static void dump_json(const MapEntry *e, const MapEntry *next)
{
    printf("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", \"depth\": %d, "
           "\"present\": %s, \"zero\": %s, \"data\": %s", e->start, e->length, e->depth,
           e->present ? "true" : "false", e->zero ? "true" : "false",
           e->data ? "true" : "false");
    if (e->has_offset)
        printf(", \"offset\": %" PRId64, e->offset);
    putchar('}');
    if (next)
        puts(",");
}

static int dump_entry(int output, const MapEntry *e, MapEntry *next)
{
    if (output == IMG_OUT_HUMAN)
        return dump_human(e, next);
    dump_json(e, next);
    return 0;
}

static int map_image(BlockDriverState *bs, int output, int64_t start, int64_t max_length)
{
    int64_t length = bs->size;
    if (max_length != -1 && start + max_length < length)
        length = start + max_length;
    if (output == IMG_OUT_HUMAN)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    else
        putchar('[');
    MapEntry curr = {.start = start}, next;
    while (curr.start + curr.length < length) {
        int64_t off = curr.start + curr.length;
        int r = map_status(bs, off, length - off, &next);
        if (r < 0) {
            img_error("Could not read file metadata: %s", strerror(-r));
            return 1;
        }
        if (entry_mergeable(&curr, &next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length > 0 && dump_entry(output, &curr, &next) < 0)
            return 1;
        curr = next;
    }
    if (dump_entry(output, &curr, NULL) < 0)
        return 1;
    if (output == IMG_OUT_JSON)
        puts("]");
    return 0;
}

int img_map(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_START, OPT_MAXLEN };
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, OPT_OUTPUT},
        IMG_COMMON_LONG_OPTIONS,
        {"force-share", no_argument, 0, 'U'},
        {"start-offset", required_argument, 0, OPT_START},
        {"max-length", required_argument, 0, OPT_MAXLEN},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *output = NULL;
    bool force_share = false;
    int64_t start = 0, max_length = -1;
    int c, out = IMG_OUT_HUMAN;
    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 'U': force_share = true; break;
        case OPT_OUTPUT: output = optarg; break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                return 1;
            break;
        case OPT_START:
            if (tool_cvtnum_full("start offset", optarg, 0, INT64_MAX, &start) < 0)
                return 1;
            break;
        case OPT_MAXLEN:
            if (tool_cvtnum_full("max length", optarg, 0, INT64_MAX, &max_length) < 0)
                return 1;
            break;
        default: img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1)
        img_usage_error("Expecting one image file name");
    if (output && (out = img_parse_output(output)) < 0)
        return 1;
    BlockDriverState *bs = img_open(argv[optind], fmt, 0, force_share);
    if (!bs)
        return 1;
    int ret = map_image(bs, out, start, max_length);
    blk_close(bs);
    return ret;
}
