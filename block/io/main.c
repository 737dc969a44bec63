/* calf-io: exercises an image from the command line, like qemu-io:
 *   calf-io [-f fmt] [-r] [-U] [-n] [-t cache] -c CMD [-c CMD ...] FILE */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/img/img.h"
#include "block/io/io.h"
#include "block/tool-util.h"

#define CALF_VERSION "0.1"

static void usage(void)
{
    printf("Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
           "calf disk exerciser (qemu-io compatible)\n"
           "\n"
           "  -c, --cmd STRING     execute command with its arguments\n"
           "                       from the given string\n"
           "  -f, --format FMT     specifies the block driver to use\n"
           "  -r, --read-only      export read-only\n"
           "  -n, --nocache        disable host cache, short for -t none\n"
           "  -t, --cache=MODE     use the given cache mode for the image\n"
           "  -U, --force-share    force shared permissions\n"
           "  --object secret,id=ID,data=TEXT|file=PATH  define a secret (passphrase)\n"
           "  --image-opts         the file is an option list: driver=qcow2,\n"
           "                       file.filename=F,encrypt.key-secret=ID\n"
           "  -h, --help           display this help and exit\n"
           "  -V, --version        output version information and exit\n"
           "\n"
           "See '%s -c help' for information on available commands.\n",
           tool_progname, tool_progname);
}

/* QEMU's cache modes, as far as calf's open flags can express them. */
static int parse_cache(const char *mode, int *flags)
{
    *flags &= ~(BLK_O_NOCACHE | BLK_O_UNSAFE | BLK_O_WRITETHROUGH);
    if (!strcmp(mode, "none") || !strcmp(mode, "off"))
        *flags |= BLK_O_NOCACHE;
    else if (!strcmp(mode, "directsync"))
        *flags |= BLK_O_NOCACHE | BLK_O_WRITETHROUGH;
    else if (!strcmp(mode, "unsafe"))
        *flags |= BLK_O_UNSAFE;
    else if (!strcmp(mode, "writethrough"))
        *flags |= BLK_O_WRITETHROUGH;
    else if (strcmp(mode, "writeback"))
        return -EINVAL;
    return 0;
}

typedef struct IoArgs {
    const char *fmt;
    char **cmds;
    int ncmds;
    int flags;
    bool readonly, force_share;
} IoArgs;

static BlockDriverState *open_image(const char *filename, const IoArgs *a)
{
    if (a->force_share && !a->readonly) {
        fprintf(stderr, "%s: can't open device %s: force-share=on can only be used "
                "with read-only images\n", tool_progname, filename);
        return NULL;
    }
    int flags = a->flags | (a->readonly ? 0 : BLK_O_RDWR) | (a->force_share ? BLK_O_SHARE : 0);
    if (img_image_opts)
        return img_open_image_opts(filename, flags);
    BlockDriverState *bs = blk_open(filename, a->fmt, flags, NULL);
    if (!bs) {
        fprintf(stderr, "%s: can't open device %s: %s\n", tool_progname, filename, blk_error());
        return NULL;
    }
    /* as qemu-io: an encrypted image needs its key (--image-opts) */
    BlockInfo info = {0};
    bool encrypted = blk_get_info(bs, &info) == 0 && info.encrypted;
    blk_info_free(&info);
    if (encrypted) {
        fprintf(stderr, "%s: can't open device %s: Parameter 'encrypt.key-secret' is "
                "required for cipher\n", tool_progname, filename);
        blk_close(bs);
        return NULL;
    }
    if (!a->fmt && !a->readonly && !strcmp(bs->drv->name, "raw"))
        fprintf(stderr, "WARNING: Image format was not specified for '%s' and probing "
                "guessed raw.\n         Automatically detecting the format is dangerous "
                "for raw images, write operations on block 0 will be restricted.\n"
                "         Specify the 'raw' format explicitly to remove the "
                "restrictions.\n", filename);
    return bs;
}

/* Without -c, commands come from standard input, one per line, after a
 * prompt (qemu-io prompts even when stdin is not a terminal). */
static int run_stdin(BlockDriverState *bs)
{
    char line[4096];
    int last_error = 0;
    bool quit = false;
    while (!quit) {
        printf("%s> ", tool_progname);
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
            break;
        line[strcspn(line, "\n")] = 0;
        int r = io_command(bs, line, &quit);
        if (r < 0)
            last_error = r;
    }
    return last_error;
}

static int run_commands(BlockDriverState *bs, const IoArgs *a)
{
    if (!a->ncmds)
        return run_stdin(bs);
    int last_error = 0;
    bool quit = false;
    for (int i = 0; i < a->ncmds && !quit; i++) {
        int r = io_command(bs, a->cmds[i], &quit);
        if (r < 0)
            last_error = r;
    }
    return last_error;
}

static void parse_args(int argc, char **argv, IoArgs *a)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {"cmd", required_argument, 0, 'c'},
        {"format", required_argument, 0, 'f'},
        {"read-only", no_argument, 0, 'r'},
        {"nocache", no_argument, 0, 'n'},
        {"cache", required_argument, 0, 't'},
        {"force-share", no_argument, 0, 'U'},
        {"misalign", no_argument, 0, 'm'},
        {"native-aio", no_argument, 0, 'k'},
        {"aio", required_argument, 0, 'i'},
        {"discard", required_argument, 0, 'd'},
        IMG_COMMON_LONG_OPTIONS,
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:d:f:hi:kmnrt:T:UV", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->cmds[a->ncmds++] = optarg;
            break;
        case 'f': a->fmt = optarg; break;
        case 'r': a->readonly = true; break;
        case 'n': a->flags = (a->flags | BLK_O_NOCACHE) & ~BLK_O_WRITETHROUGH; break;
        case 't':
            if (parse_cache(optarg, &a->flags) < 0) {
                fprintf(stderr, "%s: Invalid cache option: %s\n", tool_progname, optarg);
                exit(1);
            }
            break;
        case 'U': a->force_share = true; break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                exit(1);
            break;
        case 'd': case 'i': case 'k': case 'm': case 'T':
            break; /* accepted for compatibility; nothing to tune */
        case 'V':
            printf("%s version " CALF_VERSION "\n", tool_progname);
            exit(0);
        case 'h':
            usage();
            exit(0);
        default:
            usage();
            exit(1);
        }
    }
}

int main(int argc, char **argv)
{
    IoArgs a = {.cmds = calloc(argc + 1, sizeof(char *)), .flags = BLK_O_WRITETHROUGH};
    if (!a.cmds)
        return 1;
    /* keep stdout and stderr lines in order when both go to one pipe */
    setvbuf(stdout, NULL, _IOLBF, 0);
    tool_set_progname(argv[0]);
    img_opts_io_words = true;
    parse_args(argc, argv, &a);
    if (optind < argc - 1) {
        fprintf(stderr, "%s: extra arguments after the image name\n", tool_progname);
        usage();
        free(a.cmds);
        return 1;
    }
    BlockDriverState *bs = NULL;
    if (optind == argc - 1 && !(bs = open_image(argv[optind], &a))) {
        free(a.cmds);
        return 1;
    }
    int ret = run_commands(bs, &a);
    io_aio_drain();
    if (bs) {
        /* As QEMU closes an image: a flush whose failure goes unsaid (the
         * driver's close reports what it could not write back), so the
         * exit status is the commands' alone, as qemu-io's is. */
        blk_flush(bs);
        blk_close(bs);
    }
    free(a.cmds);
    img_objects_free();
    return ret < 0 ? 1 : 0;
}
