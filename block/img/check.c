/* calf-img check: qemu-img check's options, output and exit codes
 * (0 clean, 1 check failed, 2 corruptions, 3 leaks only, 63 format
 * cannot be checked). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "block/img/img.h"
#include "block/tool-util.h"

static void print_human(const BlockCheckResult *c, bool quiet)
{
    if (quiet)
        return;
    if (!(c->corruptions || c->leaks || c->check_errors)) {
        printf("No errors were found on the image.\n");
    } else {
        if (c->corruptions)
            printf("\n%" PRId64 " errors were found on the image.\nData may be corrupted, or "
                   "further writes to the image may corrupt it.\n", c->corruptions);
        if (c->leaks)
            printf("\n%" PRId64 " leaked clusters were found on the image.\nThis means waste "
                   "of disk space, but no harm to data.\n", c->leaks);
        if (c->check_errors)
            printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                   c->check_errors);
    }
    if (c->total_clusters && c->allocated_clusters)
        printf("%" PRId64 "/%" PRId64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n", c->allocated_clusters, c->total_clusters,
               c->allocated_clusters * 100.0 / c->total_clusters,
               c->fragmented_clusters * 100.0 / c->allocated_clusters,
               c->compressed_clusters * 100.0 / c->allocated_clusters);
    if (c->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", c->image_end_offset);
}

/* QAPI ImageCheck: counters are left out when zero, as qemu-img does. */
static void print_json(const BlockCheckResult *c, const char *filename, const char *fmt)
{
    JsonNode *o = json_new_object();
    json_add(o, "filename", json_str(filename));
    json_add(o, "format", json_str(fmt));
    json_add(o, "check-errors", json_int(c->check_errors));
    const struct {
        const char *key;
        int64_t v;
    } opt[] = {
        {"image-end-offset", (int64_t)c->image_end_offset},
        {"corruptions", c->corruptions},
        {"leaks", c->leaks},
        {"corruptions-fixed", c->corruptions_fixed},
        {"leaks-fixed", c->leaks_fixed},
        {"total-clusters", c->total_clusters},
        {"allocated-clusters", c->allocated_clusters},
        {"fragmented-clusters", c->fragmented_clusters},
        {"compressed-clusters", c->compressed_clusters},
    };
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        if (opt[i].v)
            json_add(o, opt[i].key, json_int(opt[i].v));
    json_print_pretty(stdout, o);
    printf("\n");
    json_free(o);
}

int img_check(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"format", required_argument, 0, 'f'},
        {"repair", required_argument, 0, 'r'},
        {"output", required_argument, 0, 'O'},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *output = NULL;
    bool quiet = false, force_share = false;
    int fix = 0, c;
    /* qemu-img's stdout is fully buffered on a pipe or file: what the
     * checks print on stderr (during the double check too) comes out
     * before the report, and tests that capture both expect that order */
    if (!isatty(STDOUT_FILENO))
        setvbuf(stdout, NULL, _IOFBF, BUFSIZ);
    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", lopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'f': fmt = optarg; break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                fix = BLK_CHECK_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = BLK_CHECK_FIX_LEAKS | BLK_CHECK_FIX_ERRORS;
            else
                img_usage_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s",
                                optarg);
            break;
        case 'O': output = optarg; break;
        case 'T': break; /* cache mode: the checker reads through its own caches */
        case 'q': quiet = true; break;
        case 'U': force_share = true; break;
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
        img_usage_error("Expecting one image file name");
    const char *filename = argv[optind];
    int out = IMG_OUT_HUMAN;
    if (output && (out = img_parse_output(output)) < 0)
        return 1;
    if (fix && force_share) {
        img_error("force-share=on can only be used with read-only images");
        return 1;
    }
    int flags = BLK_O_CHECK | BLK_O_NO_BACKING | (fix ? BLK_O_RDWR : 0);
    BlockDriverState *bs = img_open(filename, fmt, flags, force_share);
    if (!bs)
        return 1;
    BlockCheckResult res;
    int r = blk_check(bs, &res, fix);
    if (r == -ENOTSUP) {
        img_error("This image format does not support checks");
        blk_close(bs);
        return 63;
    }
    if (r == 0 && (res.corruptions_fixed || res.leaks_fixed)) {
        int64_t lf = res.leaks_fixed, cf = res.corruptions_fixed;
        if (out == IMG_OUT_HUMAN && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRId64 " leaked clusters\n    %" PRId64 " corruptions\n\n"
                   "Double checking the fixed image now...\n", lf, cf);
        r = blk_check(bs, &res, 0);
        res.leaks_fixed = lf;
        res.corruptions_fixed = cf;
    }
    int ret;
    if (r < 0) {
        if (res.error_msg)
            img_error("%s", blk_error());
        img_error("Check failed: %s", strerror(-r));
        ret = 1;
    } else {
        if (out == IMG_OUT_JSON)
            print_json(&res, filename, bs->drv->name);
        else
            print_human(&res, quiet);
        if (res.check_errors)
            img_error("Check failed");
        ret = res.check_errors ? 1 : res.corruptions ? 2 : res.leaks ? 3 : 0;
    }
    blk_close(bs);
    return ret;
}
