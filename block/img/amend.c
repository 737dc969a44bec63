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

/* qemu-img 7.2's lists for qcow2 and luks, the formats calf amends;
 * options calf cannot change (data_file) get a clear error from the
 * driver. */
static const char qcow2_amend_help[] =
    "  backing_file=<str>     - File name of a base image\n"
    "  backing_fmt=<str>      - Image format of the base image\n"
    "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
    "  data_file=<str>        - File name of an external data file\n"
    "  data_file_raw=<bool (on/off)> - The external data file must stay valid as a raw image\n"
    "  encrypt.iter-time=<num> - Time to spend in PBKDF in milliseconds\n"
    "  encrypt.keyslot=<num>  - Select a single keyslot to modify explicitly\n"
    "  encrypt.new-secret=<str> - New secret to set in the matching keyslots. "
    "Empty string to erase\n"
    "  encrypt.old-secret=<str> - Select all keyslots that match this password\n"
    "  encrypt.state=<str>    - Select new state of affected keyslots (active/inactive)\n"
    "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n"
    "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
    "  size=<size>            - Virtual disk size\n";

static const char luks_amend_help[] =
    "  iter-time=<num>        - Time to spend in PBKDF in milliseconds\n"
    "  keyslot=<num>          - Select a single keyslot to modify explicitly\n"
    "  new-secret=<str>       - New secret to set in the matching keyslots. "
    "Empty string to erase\n"
    "  old-secret=<str>       - Select all keyslots that match this password\n"
    "  state=<str>            - Select new state of affected keyslots (active/inactive)\n";

/* qemu-img's print_amend_option_help() */
static int print_amend_help(const char *fmt)
{
    const BlockDriver *drv = blk_find_driver(fmt);
    if (!drv) {
        img_error("Unknown file format '%s'", fmt);
        return 1;
    }
    if (!drv->amend) {
        img_error("Format driver '%s' does not support option amendment", fmt);
        return 1;
    }
    printf("Amend options for '%s':\n%s", fmt,
           strcmp(fmt, "luks") ? qcow2_amend_help : luks_amend_help);
    return 0;
}

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
    BlockOptions opts = {0};
    if (blkopts_parse(&opts, options) < 0) {
        img_error("Invalid options for amend: %s", blk_error());
        free(options);
        return 1;
    }
    free(options);
    int ret = 1;
    bool help = img_has_help_option(&opts);
    if (fmt && help) {
        ret = print_amend_help(fmt);
        blkopts_free(&opts);
        return ret;
    }
    if (optind != argc - 1) {
        img_error("Expecting one image file name"); /* qemu-img: no --help hint here */
        blkopts_free(&opts);
        return 1;
    }
    const char *filename = argv[optind];
    /* help for the format the image turns out to have: no write lock */
    BlockDriverState *bs = img_open(filename, fmt, help ? 0 : BLK_O_RDWR, false);
    if (!bs) {
        blkopts_free(&opts);
        return 1;
    }
    if (help) {
        ret = print_amend_help(bs->drv->name);
        goto out;
    }
    if (!bs->drv->amend) {
        img_error("Format driver '%s' does not support option amendment", bs->drv->name);
        goto out;
    }
    /* LUKS key slot changes name their passphrases by secret id */
    const char *prefix = strcmp(bs->drv->name, "luks") ? "encrypt." : "";
    char new_key[32], old_key[32];
    snprintf(new_key, sizeof(new_key), "%snew-secret", prefix);
    snprintf(old_key, sizeof(old_key), "%sold-secret", prefix);
    if (img_secret_resolve_key(&opts, new_key) < 0 || img_secret_resolve_key(&opts, old_key) < 0)
        goto out;
    ImgProgress prog;
    img_progress_init(&prog, progress);
    bs->progress = amend_progress;
    bs->progress_opaque = &prog;
    int r = blk_amend(bs, &opts, force);
    if (r == 0)
        r = blk_flush(bs);
    img_progress_end(&prog);
    if (r == -ENOKEY) {
        /* qemu-img's open asks for the key before amend sees the options */
        img_error("Could not open '%s': %s", filename, blk_error());
        goto out;
    }
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
