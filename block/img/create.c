/* calf-img create: the option handling and the "Formatting ..." line of
 * qemu-img's bdrv_img_create(); the image itself comes from blk_create(). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/img/img.h"
#include "block/tool-util.h"

enum opt_type { OPT_STR, OPT_BOOL, OPT_NUM, OPT_SIZE };

typedef struct CreateOpt {
    const char *name;
    enum opt_type type;
    const char *def;   /* printed when the user gives no value */
    const char *help;
    bool protocol;     /* from the host-file layer, not the format */
} CreateOpt;

/* Listed in the order qemu-img prints them on the "Formatting" line
 * (the order of QEMU's merged create option lists). */
static const CreateOpt raw_opts[] = {
    {"size", OPT_SIZE, NULL, "Virtual disk size", false},
    {"nocow", OPT_BOOL, NULL, "Turn off copy-on-write (valid only on btrfs)", true},
    {"preallocation", OPT_STR, NULL,
     "Preallocation mode (allowed values: off, falloc, full)", true},
    {"extent_size_hint", OPT_SIZE, NULL,
     "Extent size hint for the image file, 0 to disable", true},
    {NULL, 0, NULL, NULL, false},
};

static const CreateOpt qcow2_opts[] = {
    {"encryption", OPT_BOOL, NULL,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", false},
    {"encrypt.format", OPT_STR, NULL, "Encrypt the image, format choices: 'aes', 'luks'", false},
    {"encrypt.key-secret", OPT_STR, NULL,
     "ID of secret providing qcow AES key or LUKS passphrase", false},
    {"encrypt.cipher-alg", OPT_STR, NULL, "Name of encryption cipher algorithm", false},
    {"encrypt.cipher-mode", OPT_STR, NULL, "Name of encryption cipher mode", false},
    {"encrypt.ivgen-alg", OPT_STR, NULL, "Name of IV generator algorithm", false},
    {"encrypt.ivgen-hash-alg", OPT_STR, NULL, "Name of IV generator hash algorithm", false},
    {"encrypt.hash-alg", OPT_STR, NULL, "Name of encryption hash algorithm", false},
    {"encrypt.iter-time", OPT_NUM, NULL, "Time to spend in PBKDF in milliseconds", false},
    {"cluster_size", OPT_SIZE, "65536", "qcow2 cluster size", false},
    {"extended_l2", OPT_BOOL, "off", "Extended L2 tables", false},
    {"preallocation", OPT_STR, NULL,
     "Preallocation mode (allowed values: off, metadata, falloc, full)", false},
    {"compression_type", OPT_STR, "zlib",
     "Compression method used for image cluster compression", false},
    {"size", OPT_SIZE, NULL, "Virtual disk size", false},
    {"compat", OPT_STR, NULL, "Compatibility level (v2 [0.10] or v3 [1.1])", false},
    {"backing_file", OPT_STR, NULL, "File name of a base image", false},
    {"backing_fmt", OPT_STR, NULL, "Image format of the base image", false},
    {"data_file", OPT_STR, NULL, "File name of an external data file", false},
    {"data_file_raw", OPT_BOOL, NULL,
     "The external data file must stay valid as a raw image", false},
    {"lazy_refcounts", OPT_BOOL, "off", "Postpone refcount updates", false},
    {"refcount_bits", OPT_NUM, "16", "Width of a reference count entry in bits", false},
    {"nocow", OPT_BOOL, NULL, "Turn off copy-on-write (valid only on btrfs)", true},
    {"extent_size_hint", OPT_SIZE, NULL,
     "Extent size hint for the image file, 0 to disable", true},
    {NULL, 0, NULL, NULL, false},
};

static const CreateOpt qcow_opts[] = {
    {"size", OPT_SIZE, NULL, "Virtual disk size", false},
    {"backing_file", OPT_STR, NULL, "File name of a base image", false},
    {"backing_fmt", OPT_STR, NULL, "Format of the backing image", false},
    {"encryption", OPT_BOOL, NULL,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", false},
    {"encrypt.format", OPT_STR, NULL, "Encrypt the image, format choices: 'aes'", false},
    {"encrypt.key-secret", OPT_STR, NULL,
     "ID of the secret that provides the AES encryption key", false},
    {"nocow", OPT_BOOL, NULL, "Turn off copy-on-write (valid only on btrfs)", true},
    {"preallocation", OPT_STR, NULL,
     "Preallocation mode (allowed values: off, falloc, full)", true},
    {"extent_size_hint", OPT_SIZE, NULL,
     "Extent size hint for the image file, 0 to disable", true},
    {NULL, 0, NULL, NULL, false},
};

static const CreateOpt luks_opts[] = {
    {"size", OPT_SIZE, NULL, "Virtual disk size", false},
    {"key-secret", OPT_STR, NULL, "ID of the secret that provides the keyslot passphrase",
     false},
    {"cipher-alg", OPT_STR, NULL, "Name of encryption cipher algorithm", false},
    {"cipher-mode", OPT_STR, NULL, "Name of encryption cipher mode", false},
    {"ivgen-alg", OPT_STR, NULL, "Name of IV generator algorithm", false},
    {"ivgen-hash-alg", OPT_STR, NULL, "Name of IV generator hash algorithm", false},
    {"hash-alg", OPT_STR, NULL, "Name of encryption hash algorithm", false},
    {"iter-time", OPT_NUM, NULL, "Time to spend in PBKDF in milliseconds", false},
    {"nocow", OPT_BOOL, NULL, "Turn off copy-on-write (valid only on btrfs)", true},
    {"preallocation", OPT_STR, NULL,
     "Preallocation mode (allowed values: off, falloc, full)", true},
    {"extent_size_hint", OPT_SIZE, NULL,
     "Extent size hint for the image file, 0 to disable", true},
    {NULL, 0, NULL, NULL, false},
};

static const CreateOpt *format_opts(const char *fmt)
{
    if (!strcmp(fmt, "raw"))
        return raw_opts;
    if (!strcmp(fmt, "qcow2"))
        return qcow2_opts;
    if (!strcmp(fmt, "qcow"))
        return qcow_opts;
    if (!strcmp(fmt, "luks"))
        return luks_opts;
    return NULL;
}

static const CreateOpt *find_opt(const CreateOpt *list, const char *name)
{
    for (; list->name; list++)
        if (!strcmp(list->name, name))
            return list;
    return NULL;
}

static const char *type_name(enum opt_type t)
{
    switch (t) {
    case OPT_BOOL: return "bool (on/off)";
    case OPT_NUM: return "num";
    case OPT_SIZE: return "size";
    default: return "str";
    }
}

static int cmp_opt_name(const void *a, const void *b)
{
    return strcmp((*(const CreateOpt *const *)a)->name, (*(const CreateOpt *const *)b)->name);
}

/* qemu-img's print_block_option_help(): with a file name the host-file
 * options are merged in, sorted by name. */
int img_print_create_help(const char *filename, const char *fmt)
{
    const CreateOpt *list = format_opts(fmt);
    if (!list) {
        img_error("Unknown file format '%s'", fmt);
        return 1;
    }
    const CreateOpt *sorted[64];
    int n = 0;
    for (const CreateOpt *o = list; o->name; o++)
        if (filename || !o->protocol)
            sorted[n++] = o;
    qsort(sorted, n, sizeof(sorted[0]), cmp_opt_name);
    if (filename)
        printf("Supported options:\n");
    else
        printf("Supported %s options:\n", fmt);
    for (int i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof(name), "%s=<%s>", sorted[i]->name, type_name(sorted[i]->type));
        printf("  %-22s - %s\n", name, sorted[i]->help);
    }
    if (!filename)
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
    return 0;
}

bool img_has_help_option(const BlockOptions *o)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->opt[i].key, "help") || !strcmp(o->opt[i].key, "?"))
            return true;
    return false;
}

typedef struct CreateArgs {
    const char *fmt;
    const char *filename;
    const char *base_filename;  /* -b */
    const char *base_fmt;       /* -F */
    BlockOptions opts;          /* every -o */
    uint64_t size;              /* BLK_SIZE_UNSET if not given */
    bool quiet;
    bool no_backing_open;       /* -u */
} CreateArgs;

/* Errors of the creation step name the new file first, as qemu-img does. */
static void create_error(const CreateArgs *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void create_error(const CreateArgs *a, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: %s: ", tool_progname, a->filename);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static bool valid_bool(const char *v)
{
    static const char *const ok[] = {"on", "off", "yes", "no", "true", "false"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(v, ok[i]))
            return true;
    return false;
}

static int check_opt_value(const CreateArgs *a, const CreateOpt *o, const char *v)
{
    uint64_t x;
    char *end;
    switch (o->type) {
    case OPT_SIZE:
        if (tool_strtosz(v, &x) < 0) {
            create_error(a, "Parameter '%s' expects a non-negative number below 2^64\n"
                         "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                         "tera-, peta-\nand exabytes, respectively.", o->name);
            return -EINVAL;
        }
        break;
    case OPT_NUM:
        /* as QemuOpts reads numbers: "-1" wraps to 2^64 - 1 */
        errno = 0;
        x = strtoull(v, &end, 0);
        if (end == v || *end || errno) {
            create_error(a, "Parameter '%s' expects a number", o->name);
            return -EINVAL;
        }
        break;
    case OPT_BOOL:
        if (!valid_bool(v)) {
            create_error(a, "Parameter '%s' expects 'on' or 'off'", o->name);
            return -EINVAL;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Every -o key must be known to the format (or to the host file). */
static int check_options(CreateArgs *a, const CreateOpt *list)
{
    for (int i = 0; i < a->opts.n; i++) {
        const CreateOpt *o = find_opt(list, a->opts.opt[i].key);
        if (!o) {
            create_error(a, "Invalid parameter '%s'", a->opts.opt[i].key);
            return -EINVAL;
        }
        if (check_opt_value(a, o, a->opts.opt[i].value) < 0)
            return -EINVAL;
    }
    return 0;
}

static void print_formatting(const CreateArgs *a, const CreateOpt *list)
{
    printf("Formatting '%s', fmt=%s", a->filename, a->fmt);
    for (const CreateOpt *o = list; o->name; o++) {
        const char *v = NULL;
        for (int i = 0; i < a->opts.n; i++)
            if (!strcmp(a->opts.opt[i].key, o->name))
                v = a->opts.opt[i].value;
        if (!strcmp(o->name, "size")) {
            printf(" size=%" PRIu64, a->size);
            continue;
        }
        if (!v)
            v = o->def;
        if (!v)
            continue;
        uint64_t x;
        if (o->type == OPT_SIZE && tool_strtosz(v, &x) == 0)
            printf(" %s=%" PRIu64, o->name, x);
        else if (o->type == OPT_NUM)
            printf(" %s=%" PRId64, o->name, (int64_t)strtoull(v, NULL, 0)); /* as QEMU */
        else {
            /* as an option list reads it back: a comma doubled */
            printf(" %s=", o->name);
            for (const char *c = v; *c; c++)
                fputs(*c == ',' ? ",," : (char[]){*c, 0}, stdout);
        }
    }
    printf("\n");
    fflush(stdout);
}

/* Opens the backing file like qemu-img: to check it and to take its
 * size when none was given. */
static int probe_backing(CreateArgs *a, const char *backing, const char *bfmt)
{
    char *full = blk_backing_path(a->filename, backing);
    if (!full)
        return -ENOMEM;
    BlockDriverState *bs = blk_open(full, bfmt, BLK_O_SHARE, NULL);
    free(full);
    if (!bs) {
        create_error(a, "%s\nCould not open backing image.", blk_error());
        return -EINVAL;
    }
    if (!bfmt) {
        /* qemu-img ends this hint without a newline; so do we */
        fprintf(stderr, "%s: %s: Backing file specified without backing format\n"
                "Detected format of %s.", tool_progname, a->filename, bs->drv->name);
        blk_close(bs);
        return -EINVAL;
    }
    if (a->size == BLK_SIZE_UNSET)
        a->size = bs->size;
    blk_close(bs);
    return 0;
}

/* Merges -o size, -b and -F into the option list the way
 * bdrv_img_create() does, with its errors. */
static int merge_args(CreateArgs *a)
{
    const char *s = blkopts_get(&a->opts, "size");
    if (s) {
        if (a->size != BLK_SIZE_UNSET) {
            create_error(a, "The image size must be specified only once");
            return -EINVAL;
        }
        tool_strtosz(s, &a->size); /* checked by check_options() */
    }
    bool has_backing = !!find_opt(format_opts(a->fmt), "backing_file");
    if (a->base_filename) {
        if (!has_backing) {
            create_error(a, "Backing file not supported for file format '%s'", a->fmt);
            return -EINVAL;
        }
        blkopts_set(&a->opts, "backing_file", a->base_filename);
    }
    if (a->base_fmt) {
        if (!has_backing) {
            create_error(a, "Backing file format not supported for file format '%s'", a->fmt);
            return -EINVAL;
        }
        blkopts_set(&a->opts, "backing_fmt", a->base_fmt);
    }
    return 0;
}

static int check_backing(CreateArgs *a)
{
    const char *backing = blkopts_get(&a->opts, "backing_file");
    const char *bfmt = blkopts_get(&a->opts, "backing_fmt");
    if (!backing)
        return 0;
    if (!strcmp(backing, a->filename)) {
        create_error(a, "Error: Trying to create an image with the same filename as "
                     "the backing file");
        return -EINVAL;
    }
    if (!backing[0]) {
        create_error(a, "Expected backing file name, got empty string");
        return -EINVAL;
    }
    if (!a->no_backing_open)
        return probe_backing(a, backing, bfmt);
    if (!bfmt) {
        create_error(a, "Backing file specified without backing format");
        return -EINVAL;
    }
    return 0;
}

/* The driver gets the -o options without "size" (passed on its own) and
 * without the host-file hints nocow and extent_size_hint, which only
 * matter on some file systems and which QEMU also ignores elsewhere. */
static int make_image(CreateArgs *a)
{
    BlockOptions dopts = {0};
    int r = 0;
    for (int i = 0; i < a->opts.n && r == 0; i++)
        if (strcmp(a->opts.opt[i].key, "size") && strcmp(a->opts.opt[i].key, "nocow") &&
            strcmp(a->opts.opt[i].key, "extent_size_hint"))
            r = blkopts_set(&dopts, a->opts.opt[i].key, a->opts.opt[i].value);
    if (r == 0 && (r = img_secret_resolve(&dopts)) < 0) {
        create_error(a, "%s", blk_error());
        /* qemu-img's qcow2 and luks drivers look the secret up once they
         * have made the file, and remove it when that fails */
        if (!strcmp(a->fmt, "qcow2") || !strcmp(a->fmt, "luks"))
            unlink(a->filename);
        blkopts_free(&dopts);
        return r;
    }
    if (r == 0) {
        blk_set_error("%s", strerror(EINVAL));
        r = blk_create(a->fmt, a->filename, a->size, &dopts);
    }
    if (r < 0)
        create_error(a, "%s", blk_error());
    blkopts_free(&dopts);
    return r;
}

static int do_create(CreateArgs *a)
{
    const BlockDriver *drv = blk_find_driver(a->fmt);
    const CreateOpt *list = format_opts(a->fmt);
    if (!drv || !list) {
        create_error(a, "Unknown file format '%s'", a->fmt);
        return 1;
    }
    if (blk_create_name_check(a->filename) < 0) {
        create_error(a, "%s", blk_error());
        return 1;
    }
    if (check_options(a, list) < 0 || merge_args(a) < 0 || check_backing(a) < 0)
        return 1;
    if (a->size == BLK_SIZE_UNSET) {
        create_error(a, "Image creation needs a size parameter");
        return 1;
    }
    if (!drv->create) {
        create_error(a, "Format driver '%s' does not support image creation", a->fmt);
        return 1;
    }
    if (!a->quiet)
        print_formatting(a, list);
    if (blkopts_get(&a->opts, "backing_fmt") && !blkopts_get(&a->opts, "backing_file")) {
        create_error(a, "Backing format cannot be used without backing file");
        return 1;
    }
    return make_image(a) < 0 ? 1 : 0;
}

static int parse_size_arg(CreateArgs *a, const char *arg)
{
    int64_t v;
    if (tool_cvtnum_full("image size", arg, 0, INT64_MAX, &v) < 0)
        return -EINVAL;
    a->size = v;
    return 0;
}

int img_create(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, IMG_OPT_OBJECT},
        {0, 0, 0, 0},
    };
    CreateArgs a = {.fmt = "raw", .size = BLK_SIZE_UNSET};
    int c, ret = 1;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'F': a.base_fmt = optarg; break;
        case 'b': a.base_filename = optarg; break;
        case 'f': a.fmt = optarg; break;
        case 'q': a.quiet = true; break;
        case 'u': a.no_backing_open = true; break;
        case IMG_OPT_OBJECT:
            if (img_object_add(optarg) < 0)
                goto out;
            break;
        case 'o':
            if (img_parse_options(&a.opts, optarg) < 0)
                goto out;
            break;
        default: img_bad_option(c, argv);
        }
    }
    const char *filename = optind < argc ? argv[optind] : NULL;
    if (img_has_help_option(&a.opts)) {
        ret = img_print_create_help(filename, a.fmt);
        goto out;
    }
    if (!filename)
        img_usage_error("Expecting image file name");
    a.filename = argv[optind++];
    if (optind < argc && parse_size_arg(&a, argv[optind++]) < 0)
        goto out;
    if (optind != argc)
        img_usage_error("Unexpected argument: %s", argv[optind]);
    ret = do_create(&a);
out:
    blkopts_free(&a.opts);
    return ret;
}
