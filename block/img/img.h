/* calf-img: one function per subcommand plus the helpers they share. */
#ifndef CALF_IMG_H
#define CALF_IMG_H

#include <stdbool.h>

#include "block/block.h"

/* Every subcommand: argv[0] is the command name, returns the exit code. */
int img_check(int argc, char **argv);
int img_create(int argc, char **argv);
int img_info(int argc, char **argv);
int img_map(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_dd(int argc, char **argv);
int img_convert(int argc, char **argv);
int img_measure(int argc, char **argv);
int img_bench(int argc, char **argv);
int img_snapshot(int argc, char **argv);
int img_resize(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_amend(int argc, char **argv);
int img_bitmap(int argc, char **argv);

/* "NAME: <message>" on stderr, NAME from argv[0] (tool_progname). */
void img_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error about the command line: the message, then the --help hint;
 * exits with status 1 like qemu-img's error_exit(). */
void img_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/* getopt's '?' and ':' results turned into qemu-img's messages. */
void img_bad_option(int c, char **argv);
void img_help(void) __attribute__((noreturn));

/* Opens an image for reading as qemu-img does (shared lock unless
 * force_share); prints "Could not open" and returns NULL on failure. */
BlockDriverState *img_open(const char *filename, const char *fmt, int flags,
                           bool force_share);

/* -o LIST of create, convert and measure, added to o; "Invalid option
 * list" printed and -EINVAL for what qemu-img would not take. */
int img_parse_options(BlockOptions *o, const char *arg);

/* -l snapshot.id=ID,snapshot.name=NAME of convert and measure: parsed
 * into o (error printed, -EINVAL, if a key is not one of those). */
int img_parse_snapshot_opts(const char *arg, BlockOptions *o);
/* bs then reads as the internal snapshot named by arg, or by o when
 * img_parse_snapshot_opts() filled it; frees o, prints the error. */
int img_load_snapshot(BlockDriverState *bs, const char *arg, BlockOptions *o);

/* A long copy that ends in a flush (commit, rebase) calls this after
 * each n bytes it writes to bs (*pending: 0 at the start): every 16 MiB
 * it starts their writeback, so the disk is busy while the copy goes on
 * instead of all of it waiting for the flush. */
static inline void img_wrote(BlockDriverState *bs, uint64_t *pending, uint64_t n)
{
    if ((*pending += n) >= (16u << 20)) {
        blk_start_writeback(bs);
        *pending = 0;
    }
}

/* --object and --image-opts (object.c), the same in every subcommand:
 * add IMG_COMMON_LONG_OPTIONS to the long options and hand both option
 * codes to img_common_option() (-errno after printing the error). */
enum { IMG_OPT_OBJECT = 0x1000, IMG_OPT_IMAGE_OPTS };
#define IMG_COMMON_LONG_OPTIONS                              \
    {"object", required_argument, 0, IMG_OPT_OBJECT},        \
    {"image-opts", no_argument, 0, IMG_OPT_IMAGE_OPTS}
int img_common_option(int c, const char *arg);
/* --object secret,id=ID,data=TEXT|file=PATH[,format=raw|base64] */
int img_object_add(const char *arg);
/* Replaces encrypt.key-secret=ID in o by the secret's text; an unknown
 * ID is -ENOENT with the block layer's error set, for the caller to say
 * in its own words. */
int img_secret_resolve(BlockOptions *o);
/* Replaces the value of key (an id, as amend's encrypt.new-secret) in o
 * by the secret's text. */
int img_secret_resolve_key(BlockOptions *o, const char *key);
void img_objects_free(void);
/* --image-opts was given: img_open() takes its file names as option
 * lists ("driver=qcow2,file.filename=x,encrypt.key-secret=s0"). */
extern bool img_image_opts;
BlockDriverState *img_open_image_opts(const char *arg, int flags);
/* set by calf-io: open errors of --image-opts read as qemu-io's ("can't open: ...") */
extern bool img_opts_io_words;

/* -o help / -o ?: is it asked for, and qemu-img's answer for creating
 * an image of format fmt (filename may be NULL); returns the exit code. */
bool img_has_help_option(const BlockOptions *o);
int img_print_create_help(const char *filename, const char *fmt);

/* --output=human|json; -1 (after printing the error) if neither. */
enum { IMG_OUT_HUMAN, IMG_OUT_JSON };
int img_parse_output(const char *arg);

#endif
