/* calf-img info: what qemu-img info prints, human or JSON.  Like qemu-img
 * each image is opened without its backing file; --backing-chain walks
 * the chain by name, so a missing backing file only matters there. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/img/img.h"
#include "block/tool-util.h"

static JsonNode *snapshot_list(const BlockInfo *bi)
{
    JsonNode *list = json_new_array();
    for (int i = 0; i < bi->nb_snapshots; i++) {
        const BlockSnapshotInfo *sn = &bi->snapshots[i];
        JsonNode *o = json_new_object();
        json_add(o, "id", json_str(sn->id));
        json_add(o, "name", json_str(sn->name));
        json_add(o, "vm-state-size", json_int(sn->vm_state_size));
        json_add(o, "date-sec", json_int(sn->date_sec));
        json_add(o, "date-nsec", json_int(sn->date_nsec));
        json_add(o, "vm-clock-sec", json_int(sn->vm_clock_nsec / 1000000000));
        json_add(o, "vm-clock-nsec", json_int(sn->vm_clock_nsec % 1000000000));
        if (sn->icount != UINT64_MAX)
            json_add(o, "icount", json_int(sn->icount));
        json_add(list, NULL, o);
    }
    return list;
}

/* QAPI ImageInfo, members added in QAPI order (the printer reorders). */
static JsonNode *image_info(BlockDriverState *bs, const BlockInfo *bi)
{
    JsonNode *o = json_new_object();
    json_add(o, "filename", json_str(bs->filename));
    json_add(o, "format", json_str(blk_format_shown(bs)));
    if (!bs->drv->shown_as) /* a protocol (nbd) has no info to tell it */
        json_add(o, "dirty-flag", json_bool(bi->dirty));
    int64_t actual = blk_allocated_size(bs);
    if (actual >= 0)
        json_add(o, "actual-size", json_int(actual));
    json_add(o, "virtual-size", json_int(bs->size));
    if (bi->cluster_size)
        json_add(o, "cluster-size", json_int(bi->cluster_size));
    if (bi->encrypted)
        json_add(o, "encrypted", json_bool(true));
    if (bs->backing_file[0]) {
        json_add(o, "backing-filename", json_str(bs->backing_file));
        if (bs->full_backing_filename)
            json_add(o, "full-backing-filename", json_str(bs->full_backing_filename));
        if (bs->backing_format[0])
            json_add(o, "backing-filename-format", json_str(bs->backing_format));
    }
    if (bi->nb_snapshots > 0)
        json_add(o, "snapshots", snapshot_list(bi));
    JsonNode *spec = tool_format_specific(bi);
    if (spec)
        json_add(o, "format-specific", spec);
    return o;
}

static void print_snapshot_row(FILE *out, const BlockSnapshotInfo *sn)
{
    char date[64], clock[64], icount[32] = "", size[64];
    time_t t = sn->date_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t secs = sn->vm_clock_nsec / 1000000000;
    snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((sn->vm_clock_nsec / 1000000) % 1000));
    if (sn->icount != UINT64_MAX)
        snprintf(icount, sizeof(icount), "%" PRId64, (int64_t)sn->icount);
    blk_size_to_str(sn->vm_state_size, size, sizeof(size));
    fprintf(out, "%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name, size, date, clock, icount);
}

static void print_human(FILE *out, BlockDriverState *bs, const BlockInfo *bi,
                        const JsonNode *info)
{
    char vsize[64], dsize[64];
    int64_t actual = blk_allocated_size(bs);
    blk_size_to_str(bs->size, vsize, sizeof(vsize));
    if (actual >= 0)
        blk_size_to_str(actual, dsize, sizeof(dsize));
    else
        snprintf(dsize, sizeof(dsize), "unavailable");
    fprintf(out, "image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n"
           "disk size: %s\n", bs->filename, blk_format_shown(bs), vsize, bs->size, dsize);
    if (bi->encrypted)
        fprintf(out, "encrypted: yes\n");
    if (bi->cluster_size)
        fprintf(out, "cluster_size: %" PRIu64 "\n", bi->cluster_size);
    if (bi->dirty)
        fprintf(out, "cleanly shut down: no\n");
    if (bs->backing_file[0]) {
        fprintf(out, "backing file: %s", bs->backing_file);
        if (!bs->full_backing_filename)
            fprintf(out, " (cannot determine actual path)");
        else if (strcmp(bs->backing_file, bs->full_backing_filename))
            fprintf(out, " (actual path: %s)", bs->full_backing_filename);
        fprintf(out, "\n");
        if (bs->backing_format[0])
            fprintf(out, "backing file format: %s\n", bs->backing_format);
    }
    if (bi->nb_snapshots > 0) {
        fprintf(out, "Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
               "VM CLOCK", "ICOUNT");
        for (int i = 0; i < bi->nb_snapshots; i++)
            print_snapshot_row(out, &bi->snapshots[i]);
    }
    const JsonNode *spec = json_get(info, "format-specific");
    if (spec) {
        fprintf(out, "Format specific information:\n");
        json_dump_human(out, json_get(spec, "data"), 1);
    }
}

typedef struct InfoArgs {
    const char *fmt;
    int output;
    bool chain;
    bool force_share;
} InfoArgs;

/* One image of the chain: returns its info and, through *next and
 * *next_fmt, the backing file to look at next (malloc'd, NULL at the end).
 * Human text goes to out: nothing is printed before the whole chain
 * could be opened, as with qemu-img. */
static JsonNode *collect_one(FILE *out, const char *filename, const char *fmt,
                             const InfoArgs *a, bool backing, char **next, char **next_fmt)
{
    BlockDriverState *bs = img_open(filename, fmt,
                                    BLK_O_NO_BACKING | BLK_O_NO_IO |
                                        (backing ? BLK_O_AS_BACKING : 0),
                                    a->force_share);
    if (!bs)
        return NULL;
    BlockInfo bi;
    if (blk_get_info(bs, &bi) < 0)
        memset(&bi, 0, sizeof(bi)); /* qemu-img then leaves the fields out */
    JsonNode *info = image_info(bs, &bi);
    if (a->output == IMG_OUT_HUMAN)
        print_human(out, bs, &bi, info);
    *next = NULL;
    *next_fmt = NULL;
    if (bs->backing_file[0] && bs->full_backing_filename) {
        *next = strdup(bs->full_backing_filename);
        if (bs->backing_format[0])
            *next_fmt = strdup(bs->backing_format);
    }
    blk_info_free(&bi);
    blk_close(bs);
    return info;
}

#define MAX_CHAIN 256

static int collect_chain(FILE *out, const char *filename, const InfoArgs *a, JsonNode *list)
{
    char *names[MAX_CHAIN];
    int n = 0, ret = 0;
    char *name = strdup(filename), *fmt = a->fmt ? strdup(a->fmt) : NULL;
    while (name) {
        for (int i = 0; i < n; i++) {
            if (!strcmp(names[i], name)) {
                img_error("Backing file '%s' creates an infinite loop.", name);
                ret = 1;
                goto out;
            }
        }
        if (n == MAX_CHAIN) {
            img_error("Backing chain of '%s' is too long", filename);
            ret = 1;
            goto out;
        }
        if (n > 0 && a->output == IMG_OUT_HUMAN)
            fprintf(out, "\n");
        char *next = NULL, *next_fmt = NULL;
        /* --image-opts is for the image named: its backing files are file names */
        bool image_opts = img_image_opts;
        img_image_opts = image_opts && n == 0;
        JsonNode *info = collect_one(out, name, fmt, a, n > 0, &next, &next_fmt);
        img_image_opts = image_opts;
        names[n++] = name;
        free(fmt);
        name = NULL;
        fmt = NULL;
        if (!info) {
            free(next);
            free(next_fmt);
            ret = 1;
            goto out;
        }
        json_add(list, NULL, info);
        if (a->chain) {
            name = next;
            fmt = next_fmt;
        } else {
            free(next);
            free(next_fmt);
        }
    }
out:
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(name);
    free(fmt);
    return ret;
}

/* Prints nothing unless the whole chain could be read, like qemu-img. */
static int show_info(const char *filename, const InfoArgs *a)
{
    JsonNode *list = json_new_array();
    char *human = NULL;
    size_t human_len = 0;
    FILE *out = open_memstream(&human, &human_len);
    if (!out) {
        img_error("out of memory");
        json_free(list);
        return 1;
    }
    int ret = collect_chain(out, filename, a, list);
    fclose(out);
    if (ret == 0)
        fwrite(human, 1, human_len, stdout);
    free(human);
    if (ret == 0 && a->output == IMG_OUT_JSON) {
        json_print_pretty(stdout, a->chain ? list : json_get_child(list, 0));
        printf("\n");
    }
    json_free(list);
    return ret;
}

int img_info(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, 'o'},
        {"backing-chain", no_argument, 0, 'c'},
        IMG_COMMON_LONG_OPTIONS,
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    InfoArgs a = {.output = IMG_OUT_HUMAN};
    const char *output = NULL;
    int c;
    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'f': a.fmt = optarg; break;
        case 'o': output = optarg; break;
        case 'c': a.chain = true; break;
        case 'U': a.force_share = true; break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                return 1;
            break;
        default: img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1)
        img_usage_error("Expecting one image file name");
    if (output && (a.output = img_parse_output(output)) < 0)
        return 1;
    return show_info(argv[optind], &a);
}
