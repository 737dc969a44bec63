/* calf-io: exercises an image from the command line, like qemu-io:
 *   calf-io [-f fmt] [-r] [-s] [-C] [-U] [-n] [-t cache] -c CMD [-c CMD ...] FILE */
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
           "  -s, --snapshot       use snapshot file\n"
           "  -C, --copy-on-read   enable copy-on-read\n"
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

typedef struct IoArgs {
    const char *fmt;
    char **cmds;
    int ncmds;
    int flags;
    bool readonly, force_share, snapshot, copy_on_read, writeback;
} IoArgs;

/* Without -c, commands come from standard input, one per line, after a
 * prompt (qemu-io prompts even when stdin is not a terminal). */
static int run_stdin(IoImage *img)
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
        int r = io_command(img, line, &quit);
        if (r < 0)
            last_error = r;
    }
    return last_error;
}

static int run_commands(IoImage *img, const IoArgs *a)
{
    if (!a->ncmds)
        return run_stdin(img);
    int last_error = 0;
    bool quit = false;
    for (int i = 0; i < a->ncmds && !quit; i++) {
        int r = io_command(img, a->cmds[i], &quit);
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
        {"snapshot", no_argument, 0, 's'},
        {"copy-on-read", no_argument, 0, 'C'},
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
    while ((c = getopt_long(argc, argv, "c:d:f:hi:kmnrst:T:UVC", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->cmds[a->ncmds++] = optarg;
            break;
        case 'f': a->fmt = optarg; break;
        case 'r': a->readonly = true; break;
        case 's': a->snapshot = true; break;
        case 'C': a->copy_on_read = true; break;
        case 'n':
            a->flags |= BLK_O_NOCACHE;
            a->writeback = true;
            break;
        case 't': {
            bool wt;
            if (io_parse_cache(optarg, &a->flags, &wt) < 0) {
                fprintf(stderr, "%s: Invalid cache option: %s\n", tool_progname, optarg);
                exit(1);
            }
            a->writeback = !wt;
            break;
        }
        case 'U': a->force_share = true; break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                exit(1);
            break;
        case 'd':
        case 'i':
            if (io_check_tuning(c, optarg, &a->flags) < 0)
                exit(1);
            break;
        case 'k':
            a->flags |= IO_O_NATIVE_AIO;
            break;
        case 'm': case 'T':
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
    IoArgs a = {.cmds = calloc(argc + 1, sizeof(char *))};
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
    if (a.fmt && img_image_opts) {
        /* the options name the driver */
        fprintf(stderr, "%s: --image-opts and -f are mutually exclusive\n", tool_progname);
        free(a.cmds);
        return 1;
    }
    IoImage img = {0};
    if (optind == argc - 1 &&
        io_open(&img, argv[optind], a.fmt, NULL, a.flags | (a.readonly ? 0 : BLK_O_RDWR),
                a.snapshot, a.copy_on_read, a.force_share, !a.writeback) < 0) {
        free(a.cmds);
        return 1;
    }
    int ret = run_commands(&img, &a);
    int r = io_close(&img);
    if (r < 0)
        ret = r;
    free(a.cmds);
    img_objects_free();
    return ret < 0 ? 1 : 0;
}
