/* calf-img: the image tool, command-line compatible with qemu-img. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/img/img.h"
#include "block/tool-util.h"

#define CALF_VERSION "0.1"

void img_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void img_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    /* qemu-img names itself here whatever argv[0] says */
    fprintf(stderr, "\nTry '%s --help' for more information\n", blk_img_tool);
    exit(1);
}

void img_bad_option(int c, char **argv)
{
    if (c == ':')
        img_usage_error("missing argument for option '%s'", argv[optind - 1]);
    img_usage_error("unrecognized option '%s'", argv[optind - 1]);
}

int img_parse_output(const char *arg)
{
    if (!strcmp(arg, "human"))
        return IMG_OUT_HUMAN;
    if (!strcmp(arg, "json"))
        return IMG_OUT_JSON;
    img_error("--output must be used with human or json as argument.");
    return -1;
}

int img_parse_options(BlockOptions *o, const char *arg)
{
    /* qemu-img refuses an empty list, a leading comma and an odd run of
     * trailing commas (a dangling separator) before it parses anything */
    size_t len = strlen(arg), i = len;
    while (i > 0 && arg[i - 1] == ',')
        i--;
    if (!arg[0] || arg[0] == ',' || (len - i) % 2 || blkopts_parse(o, arg) < 0) {
        img_error("Invalid option list: %s", arg);
        return -EINVAL;
    }
    return 0;
}

/* -l snapshot.id=ID,snapshot.name=NAME: the keys qemu-img knows. */
int img_parse_snapshot_opts(const char *arg, BlockOptions *o)
{
    if (blkopts_parse(o, arg) == 0) {
        blkopts_get(o, "snapshot.id");
        blkopts_get(o, "snapshot.name");
        const char *bad = blkopts_first_unused(o);
        if (!bad)
            return 0;
        img_error("Invalid parameter '%s'", bad);
    }
    img_error("Failed in parsing snapshot param '%s'", arg);
    blkopts_free(o);
    return -EINVAL;
}

/* The source then reads as the internal snapshot; its size stays the
 * active image's, as in qemu-img. */
int img_load_snapshot(BlockDriverState *bs, const char *arg, BlockOptions *o)
{
    int r;
    if (o->n)
        r = blk_snapshot_load_tmp(bs, blkopts_get(o, "snapshot.id"),
                                  blkopts_get(o, "snapshot.name"));
    else
        r = blk_snapshot_load_tmp_by_id_or_name(bs, arg);
    blkopts_free(o);
    if (r < 0)
        img_error("Failed to load snapshot: %s", blk_error());
    return r;
}

BlockDriverState *img_open(const char *filename, const char *fmt, int flags,
                           bool force_share)
{
    if (force_share)
        flags |= BLK_O_SHARE;
    if (img_image_opts)
        return img_open_image_opts(filename, flags);
    BlockDriverState *bs = blk_open(filename, fmt, flags, NULL);
    if (!bs)
        img_error("Could not open '%s': %s", filename, blk_error());
    return bs;
}

/* after "usage: qemu-img [standard options] command [command options]" */
static const char help_text[] =
    "calf disk image utility (qemu-img compatible)\n"
    "\n"
    "    '-h', '--help'       display this help and exit\n"
    "    '-V', '--version'    output version information and exit\n"
    "\n"
    "Command syntax:\n"
    "  amend [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename\n"
    "  bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] "
    "[--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
    "[-t cache] [-w] [-U] filename\n"
    "  bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
    "[-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] "
    "[--image-opts | -f fmt] filename bitmap\n"
    "  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename\n"
    "  commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename\n"
    "  compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2\n"
    "  convert [--target-is-zero] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] "
    "[-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] "
    "[-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] "
    "[--salvage] filename [filename2 [...]] output_filename\n"
    "  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] "
    "filename [size]\n"
    "  dd [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] "
    "if=input of=output\n"
    "  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename\n"
    "  map [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename\n"
    "  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] "
    "[-l snapshot_param] filename]\n"
    "  snapshot [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename\n"
    "  rebase [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file "
    "[-F backing_fmt] filename\n"
    "  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size\n"
    "\n"
    "Command parameters:\n"
    "  'filename' is a disk image filename\n"
    "  'fmt' is the disk image format (raw, qcow2, qcow)\n"
    "  'size' is the disk image size in bytes. Optional suffixes\n"
    "    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),\n"
    "    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P) are\n"
    "    supported. 'b' is ignored.\n"
    "  'output_filename' is the destination disk image filename\n"
    "  'output_fmt' is the destination format\n"
    "  'options' is a comma separated list of format specific options in a\n"
    "    name=value format. Use -o help for an overview of the options supported by\n"
    "    the used format\n"
    "  '-q' use Quiet mode - do not print any output (except errors)\n"
    "  '-U' (--force-share) opens images without taking the lock\n"
    "\n"
    "Supported formats: raw qcow2 qcow\n";

void img_help(void)
{
    /* fixed names in qemu-img's help, as in its version line */
    printf("%s version " CALF_VERSION "\n"
           "usage: %s [standard options] command [command options]\n%s",
           blk_img_tool, blk_img_tool, help_text);
    exit(0);
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"amend", img_amend},
    {"bench", img_bench},
    {"bitmap", img_bitmap},
    {"check", img_check},
    {"commit", img_commit},
    {"compare", img_compare},
    {"convert", img_convert},
    {"create", img_create},
    {"dd", img_dd},
    {"info", img_info},
    {"map", img_map},
    {"measure", img_measure},
    {"rebase", img_rebase},
    {"resize", img_resize},
    {"snapshot", img_snapshot},
};

static int run_command(int argc, char **argv)
{
    const char *cmd = argv[0];
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (!strcmp(cmd, commands[i].name)) {
            optind = 0; /* glibc: restart option scanning from argv[1] */
            int r = commands[i].fn(argc, argv);
            img_objects_free();
            return r;
        }
    }
    img_usage_error("Command not found: %s", cmd);
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    int c;
    /* stdout may be a pipe: keep our lines and stderr's in order */
    setvbuf(stdout, NULL, _IOLBF, 0);
    tool_set_progname(argv[0]);
    while ((c = getopt_long(argc, argv, "+:hVT:", long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'V':
            printf("%s version " CALF_VERSION "\n", blk_img_tool);
            return 0;
        case 'T':
            break; /* tracing: accepted and ignored */
        default:
            img_bad_option(c, argv);
        }
    }
    if (optind >= argc)
        img_usage_error("Not enough arguments");
    return run_command(argc - optind, argv + optind);
}
