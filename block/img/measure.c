/* calf-img measure: the size a new image needs, with QEMU's arithmetic
 * (block/qcow2.c qcow2_measure() and qcow2_calc_prealloc_size(),
 * qcow2-refcount.c qcow2_refcount_metadata_size(), block/raw-format.c
 * raw_measure()) so that the numbers match qemu-img's exactly. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/img/img.h"
#include "block/luks.h"
#include "block/tool-util.h"

#define QCOW_MAX_L1_SIZE (32u << 20)

typedef struct MeasureInfo {
    uint64_t required, fully_allocated, bitmaps;
    bool has_bitmaps;
} MeasureInfo;

static uint64_t div_round_up(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

static uint64_t round_up(uint64_t a, uint64_t b)
{
    return div_round_up(a, b) * b;
}

/* The fixed point where the refcount blocks and table count themselves. */
static uint64_t refcount_metadata_size(uint64_t clusters, uint64_t cs, int refcount_order)
{
    uint64_t per_table_cluster = cs / 8;
    uint64_t per_block = cs * 8 / (1u << refcount_order);
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = div_round_up(clusters + table + blocks, per_block);
        table = div_round_up(blocks, per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

static uint64_t calc_prealloc_size(uint64_t total, uint64_t cs, int refcount_order, bool extl2)
{
    uint64_t aligned = round_up(total, cs), meta = cs;
    uint64_t l2e = extl2 ? 16 : 8;
    uint64_t nl2e = round_up(aligned / cs, cs / l2e);
    meta += nl2e * l2e;
    uint64_t nl1e = round_up(nl2e * l2e / cs, cs / 8);
    meta += nl1e * 8;
    meta += refcount_metadata_size((meta + aligned) / cs, cs, refcount_order);
    return meta + aligned;
}

static const char *const qcow2_create_opts[] = {
    "size", "compat", "backing_file", "backing_fmt", "encryption", "encrypt.format",
    "encrypt.key-secret", "encrypt.cipher-alg", "encrypt.cipher-mode", "encrypt.ivgen-alg",
    "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.iter-time", "cluster_size",
    "extended_l2", "preallocation", "lazy_refcounts", "refcount_bits", "compression_type",
    "data_file", "data_file_raw", "nocow", "extent_size_hint", NULL,
};
static const char *const raw_create_opts[] = {
    "size", "nocow", "preallocation", "extent_size_hint", NULL,
};

static const char *const luks_create_opts[] = {
    "size", "key-secret", "cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg", "hash-alg",
    "iter-time", "nocow", "preallocation", "extent_size_hint", NULL,
};

static bool known_opt(const char *const *list, const char *key)
{
    for (; *list; list++)
        if (!strcmp(*list, key))
            return true;
    return false;
}

/* encrypt.format=luks: the LUKS header region, in whole clusters */
static int luks_measure(BlockOptions *o, uint64_t cs, uint64_t *bytes)
{
    const char *fmt = blkopts_get(o, "encrypt.format");
    *bytes = 0;
    if (!fmt || strcmp(fmt, "luks"))
        return 0;
    if (!blkopts_get(o, "encrypt.key-secret")) {
        img_error("Parameter 'encrypt.key-secret' is required for cipher");
        return -EINVAL;
    }
    LuksCreateOpts l = {
        .cipher_alg = blkopts_get(o, "encrypt.cipher-alg"),
        .cipher_mode = blkopts_get(o, "encrypt.cipher-mode"),
        .ivgen_alg = blkopts_get(o, "encrypt.ivgen-alg"),
        .ivgen_hash_alg = blkopts_get(o, "encrypt.ivgen-hash-alg"),
        .hash_alg = blkopts_get(o, "encrypt.hash-alg"),
    };
    int64_t n = luks_region_size(&l);
    if (n < 0) {
        img_error("%s", blk_error());
        return -EINVAL;
    }
    *bytes = round_up((uint64_t)n, cs);
    return 0;
}

/* What copying in's bitmaps takes in clusters of cs bytes, each bitmap
 * counted as if every bit were set: data, table and directory entry
 * (QEMU's qcow2_get_persistent_dirty_bitmap_size()). */
static int bitmaps_size(BlockDriverState *in, uint64_t cs, uint64_t *out)
{
    BlockInfo info = {0};
    int r = blk_get_info(in, &info);
    if (r < 0) {
        img_error("%s", blk_error());
        return r;
    }
    uint64_t total = 0, dir = 0;
    for (int i = 0; i < info.nb_bitmaps; i++) {
        uint64_t bytes = blk_bitmap_bytes(in->size, info.bitmaps[i].granularity);
        uint64_t clusters = (bytes + cs - 1) / cs;
        total += clusters * cs + round_up(clusters * 8, cs);
        dir += (24 + strlen(info.bitmaps[i].name) + 7) / 8 * 8;
    }
    *out = total + round_up(dir, cs);
    blk_info_free(&info);
    return 0;
}

/* -O luks: the header region and the data, allocated or not (every
 * sector of the payload is stored encrypted) */
static int luks_format_measure(BlockOptions *o, uint64_t size, BlockDriverState *in,
                               MeasureInfo *mi)
{
    if (!blkopts_get(o, "key-secret")) {
        img_error("Parameter 'key-secret' is required for cipher");
        return -EINVAL;
    }
    if (img_secret_resolve(o) < 0) {
        img_error("%s", blk_error());
        return -EINVAL;
    }
    LuksCreateOpts l = {
        .cipher_alg = blkopts_get(o, "cipher-alg"),
        .cipher_mode = blkopts_get(o, "cipher-mode"),
        .ivgen_alg = blkopts_get(o, "ivgen-alg"),
        .ivgen_hash_alg = blkopts_get(o, "ivgen-hash-alg"),
        .hash_alg = blkopts_get(o, "hash-alg"),
    };
    int64_t n = luks_region_size(&l);
    if (n < 0) {
        img_error("%s", blk_error());
        return -EINVAL;
    }
    mi->required = mi->fully_allocated = (uint64_t)n + (in ? in->size : size);
    return 0;
}

static int qcow2_measure(BlockOptions *o, uint64_t size, BlockDriverState *in, MeasureInfo *mi)
{
    uint64_t cs, rb;
    bool extl2 = false;
    if (blkopts_get_bool(o, "extended_l2", false, &extl2) < 0) {
        img_error("Parameter 'extended_l2' expects 'on' or 'off'");
        return -EINVAL;
    }
    if (blkopts_get_size(o, "cluster_size", 65536, &cs) < 0 || cs < 512 ||
        cs > (2u << 20) || (cs & (cs - 1))) {
        img_error("Cluster size must be a power of two between 512 and 2048k");
        return -EINVAL;
    }
    if (extl2 && cs < 16384) {
        img_error("Extended L2 entries are only supported with cluster sizes of at least "
                  "16384 bytes");
        return -EINVAL;
    }
    const char *compat = blkopts_get(o, "compat");
    int version = 3;
    if (compat && (!strcmp(compat, "0.10") || !strcmp(compat, "v2")))
        version = 2;
    else if (compat && strcmp(compat, "1.1") && strcmp(compat, "v3")) {
        img_error("Invalid compatibility level: '%s'", compat);
        return -EINVAL;
    }
    if (blkopts_get_uint(o, "refcount_bits", 16, &rb) < 0 || rb == 0 || rb > 64 ||
        (rb & (rb - 1))) {
        img_error("Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    if (version < 3 && rb != 16) {
        img_error("Different refcount widths than 16 bits require compatibility level 1.1 "
                  "or above (use compat=1.1 or greater)");
        return -EINVAL;
    }
    const char *pa = blkopts_get(o, "preallocation");
    int prealloc = pa ? blk_prealloc_parse(pa) : BLK_PREALLOC_OFF;
    if (prealloc < 0) {
        img_error("invalid parameter value: %s", pa);
        return -EINVAL;
    }
    bool has_backing = blkopts_get(o, "backing_file") != NULL;
    uint64_t vsize = round_up(size, cs);
    uint64_t l2_tables = div_round_up(vsize / cs, cs / (extl2 ? 16 : 8));
    if (l2_tables * 8 > QCOW_MAX_L1_SIZE) {
        img_error("The image size is too large (try using a larger cluster size)");
        return -EFBIG;
    }
    uint64_t required = 0;
    if (in) {
        uint64_t ssize = in->size;
        vsize = round_up(ssize, cs);
        if (has_backing) {
            required = vsize;
        } else {
            uint64_t pnum;
            for (uint64_t off = 0; off < ssize; off += pnum) {
                int st = blk_block_status_above(in, off, ssize - off, &pnum, NULL, NULL, NULL);
                if (st < 0) {
                    img_error("Unable to get block status: %s", blk_error());
                    return st;
                }
                if (pnum == 0)
                    pnum = ssize - off;
                if (st & BLK_STATUS_ZERO)
                    continue;
                if ((st & (BLK_STATUS_DATA | BLK_STATUS_ALLOCATED)) ==
                    (BLK_STATUS_DATA | BLK_STATUS_ALLOCATED)) {
                    pnum = round_up(off + pnum, cs) - off;
                    required += off % cs + pnum;
                }
            }
        }
    }
    if (prealloc == BLK_PREALLOC_FULL || prealloc == BLK_PREALLOC_FALLOC)
        required = vsize;
    uint64_t luks;
    int r = luks_measure(o, cs, &luks);
    if (r < 0)
        return r;
    mi->fully_allocated = calc_prealloc_size(vsize, cs, __builtin_ctzll(rb), extl2) + luks;
    mi->required = mi->fully_allocated - vsize + required;
    mi->has_bitmaps = version >= 3 && in && blk_has_bitmaps(in);
    mi->bitmaps = 0;
    if (mi->has_bitmaps)
        return bitmaps_size(in, cs, &mi->bitmaps);
    return 0;
}

static void print_info(const MeasureInfo *mi, int output)
{
    if (output == IMG_OUT_HUMAN) {
        printf("required size: %" PRIu64 "\n", mi->required);
        printf("fully allocated size: %" PRIu64 "\n", mi->fully_allocated);
        if (mi->has_bitmaps)
            printf("bitmaps size: %" PRIu64 "\n", mi->bitmaps);
        return;
    }
    JsonNode *o = json_new_object();
    json_add(o, "required", json_int((int64_t)mi->required));
    json_add(o, "fully-allocated", json_int((int64_t)mi->fully_allocated));
    if (mi->has_bitmaps)
        json_add(o, "bitmaps", json_int((int64_t)mi->bitmaps));
    json_print_pretty(stdout, o);
    printf("\n");
    json_free(o);
}

int img_measure(int argc, char **argv)
{
    enum { OPT_SIZE = 256, OPT_OUTPUT };
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"output", required_argument, 0, OPT_OUTPUT},
        {"size", required_argument, 0, OPT_SIZE},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *out_fmt = "raw", *snap = NULL;
    BlockOptions opts = {0}, snap_opts = {0};
    bool force_share = false, image_opts = false, have_size = false;
    int64_t size = 0;
    int output = IMG_OUT_HUMAN, c, ret = 1;
    BlockDriverState *in = NULL;
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'o':
            if (img_parse_options(&opts, optarg) < 0)
                goto out;
            break;
        case 'l':
            /* snapshot.id=/snapshot.name= are checked as soon as given, and
             * the last such -l wins over any plain name, as in qemu-img */
            snap = optarg;
            if (!strncmp(snap, "snapshot.", 9)) {
                blkopts_free(&snap_opts);
                if (img_parse_snapshot_opts(snap, &snap_opts) < 0)
                    goto out;
            }
            break;
        case 'U':
            force_share = true;
            break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                goto out;
            image_opts = img_image_opts;
            break;
        case OPT_OUTPUT:
            if ((output = img_parse_output(optarg)) < 0)
                goto out;
            break;
        case OPT_SIZE:
            if (tool_cvtnum_full("image size", optarg, 0, INT64_MAX, &size) < 0)
                goto out;
            have_size = true;
            break;
        default:
            img_bad_option(c, argv);
        }
    }
    if (argc - optind > 1) {
        img_error("At most one filename argument is allowed.");
        goto out;
    }
    const char *filename = optind < argc ? argv[optind] : NULL;
    /* qemu-img's order: what needs a file name, then --size against it */
    if (!filename && (image_opts || fmt || snap)) {
        img_error("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (filename && have_size) {
        img_error("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!filename && !have_size) {
        img_error("Either --size N or one filename must be specified.");
        goto out;
    }
    if (filename) {
        if (!(in = img_open(filename, fmt, 0, force_share)))
            goto out;
        if (snap && img_load_snapshot(in, snap, &snap_opts) < 0)
            goto out;
    }
    if (!blk_find_driver(out_fmt)) {
        img_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    const char *const *known = !strcmp(out_fmt, "qcow2") ? qcow2_create_opts
                             : !strcmp(out_fmt, "raw") ? raw_create_opts
                             : !strcmp(out_fmt, "luks") ? luks_create_opts : NULL;
    if (!known) {
        img_error("Block driver '%s' does not support size measurement", out_fmt);
        goto out;
    }
    for (int i = 0; i < opts.n; i++) {
        if (!known_opt(known, opts.opt[i].key)) {
            img_error("Invalid parameter '%s'", opts.opt[i].key);
            img_error("Invalid options for file format '%s'", out_fmt);
            goto out;
        }
    }
    uint64_t vsize = (uint64_t)size;
    if (!have_size && blkopts_get(&opts, "size") &&
        blkopts_get_size(&opts, "size", 0, &vsize) < 0) {
        img_error("Parameter 'size' expects a size");
        goto out;
    }
    MeasureInfo mi = {0};
    if (!strcmp(out_fmt, "qcow2")) {
        if (qcow2_measure(&opts, vsize, in, &mi) < 0)
            goto out;
    } else if (!strcmp(out_fmt, "luks")) {
        if (luks_format_measure(&opts, vsize, in, &mi) < 0)
            goto out;
    } else {
        mi.required = in ? in->size : (vsize + BLK_SECTOR_SIZE - 1) / BLK_SECTOR_SIZE *
                                          BLK_SECTOR_SIZE;
        mi.fully_allocated = mi.required;
    }
    print_info(&mi, output);
    ret = 0;
out:
    if (in)
        blk_close(in);
    blkopts_free(&opts);
    blkopts_free(&snap_opts);
    return ret;
}
