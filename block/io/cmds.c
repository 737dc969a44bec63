/* calf-io commands: the same syntax and the same output as qemu-io's. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/img/img.h"
#include "block/blkdebug.h"
#include "block/io/io.h"
#include "block/tool-util.h"

/* QEMU's BDRV_REQUEST_MAX_BYTES: the biggest single request */
#define REQUEST_MAX_BYTES ((int64_t)(INT_MAX & ~(BLK_SECTOR_SIZE - 1)))

typedef struct IoCmd {
    const char *name, *altname;
    int (*fn)(BlockDriverState *bs, int argc, char **argv);
    int argmin, argmax; /* argmax -1: no limit */
    bool nofile_ok;
    const char *args, *oneline;
    bool writes; /* needs a writable image (QEMU's BLK_PERM_WRITE) */
} IoCmd;

static const IoCmd *current_cmd;
/* The image of the command being run (open, close and reopen change it). */
static IoImage *current_img;

static int usage(void)
{
    printf("%s %s -- %s\n", current_cmd->name, current_cmd->args ? current_cmd->args : "",
           current_cmd->oneline);
    return -EINVAL;
}

/* qemu-io's cvtnum(): a size with an optional suffix, at most INT64_MAX. */
static int parse_num(const char *arg, int64_t *out)
{
    uint64_t v;
    int r = tool_strtosz(arg, &v);
    if (r == 0 && v > INT64_MAX)
        r = -ERANGE;
    if (r < 0) {
        tool_print_cvtnum_err(r, arg);
        return r;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_pattern(const char *arg)
{
    char *end;
    long p = strtol(arg, &end, 0);
    if (p < 0 || p > UCHAR_MAX || *end) {
        printf("%s is not a valid pattern byte\n", arg);
        return -EINVAL;
    }
    return (int)p;
}

/* Buffers are page aligned so that -n (O_DIRECT) works. */
static void *io_alloc(size_t len, int pattern)
{
    void *p;
    if (posix_memalign(&p, 4096, len ? len : 1))
        return NULL;
    memset(p, pattern, len);
    return p;
}

static void dump_buffer(const uint8_t *buf, int64_t offset, int64_t len)
{
    for (int64_t i = 0; i < len; i += 16) {
        int n = len - i < 16 ? (int)(len - i) : 16;
        printf("%08" PRIx64 ":  ", (uint64_t)(offset + i));
        for (int j = 0; j < n; j++)
            printf("%02x ", buf[i + j]);
        printf(" ");
        for (int j = 0; j < n; j++)
            putchar(isalnum(buf[i + j]) ? buf[i + j] : '.');
        printf("\n");
    }
}

/* qemu-io's timestr(): "00.01 sec", or h:mm:ss.cc from a second on. */
static void timestr(double t, bool fixed, char *buf, size_t len)
{
    unsigned sec = (unsigned)t, cs = (unsigned)((t - sec) * 100);
    if (fixed || sec)
        snprintf(buf, len, "%u:%02u:%02u.%02u", sec / 3600, sec % 3600 / 60, sec % 60, cs);
    else
        snprintf(buf, len, "%05.2f sec", t - sec);
}

static void print_report(const char *op, double t, int64_t offset, int64_t count,
                         int64_t total, int cnt, bool csv)
{
    char s1[64], s2[64], ts[64];
    timestr(t, csv, ts, sizeof(ts));
    if (csv) {
        printf("%" PRId64 ",%d,%s,%.3f,%.3f\n", total, cnt, ts, total / t, cnt / t);
        return;
    }
    tool_cvtstr((double)total, s1, sizeof(s1));
    tool_cvtstr(total / t, s2, sizeof(s2));
    /* both lines together: aio requests may report from their threads */
    flockfile(stdout);
    printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", op, total, count, offset);
    printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", s1, cnt, ts, s2, cnt / t);
    funlockfile(stdout);
}

/* Requests past the end fail with EIO, as in QEMU's block layer. */
static int check_range(BlockDriverState *bs, int64_t off, int64_t len)
{
    if (off < 0 || len < 0 || (uint64_t)off > bs->size || (uint64_t)len > bs->size - off)
        return -EIO;
    return 0;
}

static int parse_off_len(char **argv, int64_t *off, int64_t *len)
{
    if (parse_num(argv[0], off) < 0 || parse_num(argv[1], len) < 0)
        return -EINVAL;
    if (*len > REQUEST_MAX_BYTES) {
        printf("length cannot exceed %" PRId64 ", given %s\n", REQUEST_MAX_BYTES, argv[1]);
        return -EINVAL;
    }
    return 0;
}

typedef struct ReadOpts {
    bool csv, quiet, verbose, vmstate, has_pattern, has_poff, has_plen;
    int pattern;
    int64_t poff, plen;
} ReadOpts;

static int read_options(int argc, char **argv, ReadOpts *o)
{
    int c;
    while ((c = getopt(argc, argv, "bCpqP:s:l:v")) != -1) {
        switch (c) {
        case 'b': o->vmstate = true; break;
        case 'C': o->csv = true; break;
        case 'p': break; /* ignored by qemu-io too */
        case 'q': o->quiet = true; break;
        case 'v': o->verbose = true; break;
        case 'P':
            o->has_pattern = true;
            if ((o->pattern = parse_pattern(optarg)) < 0)
                return -EINVAL;
            break;
        case 's':
            o->has_poff = true;
            if (parse_num(optarg, &o->poff) < 0)
                return -EINVAL;
            break;
        case 'l':
            o->has_plen = true;
            if (parse_num(optarg, &o->plen) < 0)
                return -EINVAL;
            break;
        default:
            return usage();
        }
    }
    if (optind != argc - 2 || (!o->has_pattern && (o->has_poff || o->has_plen)))
        return usage();
    return 0;
}

static int check_aligned(int64_t off, int64_t count);

static int verify_pattern(const uint8_t *buf, int64_t len, int pattern, int64_t report_off)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != pattern) {
            printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                   report_off, len);
            return -EINVAL;
        }
    }
    return 0;
}

static int read_f(BlockDriverState *bs, int argc, char **argv)
{
    ReadOpts o = {0};
    int64_t off, count;
    int r = read_options(argc, argv, &o);
    if (r < 0 || (r = parse_off_len(argv + optind, &off, &count)) < 0)
        return r;
    if (!o.has_plen)
        o.plen = count - o.poff;
    if (o.plen < 0 || o.poff < 0 || o.plen + o.poff > count) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    if (o.vmstate && check_aligned(off, count) < 0)
        return -EINVAL;
    uint8_t *buf = io_alloc(count, 0xab);
    if (!buf)
        return -ENOMEM;
    double t = tool_now();
    if (o.vmstate) {
        r = blk_load_vmstate(bs, buf, off, count);
    } else {
        r = check_range(bs, off, count);
        if (r == 0 && current_img->copy_on_read)
            r = io_copy_on_read(current_img, off, count, buf);
        else if (r == 0)
            r = blk_pread(bs, off, buf, count);
    }
    t = tool_now() - t;
    if (r < 0) {
        printf("read failed: %s\n", strerror(-r));
    } else {
        if (o.has_pattern)
            r = verify_pattern(buf + o.poff, o.plen, o.pattern, off + o.poff);
        if (!o.quiet) {
            if (o.verbose)
                dump_buffer(buf, off, count);
            print_report("read", t, off, count, count, 1, o.csv);
        }
    }
    free(buf);
    return r;
}

typedef struct WriteOpts {
    bool vmstate, compressed, csv, fua, no_fallback, quiet, unmap, zero, has_pattern, source;
    int pattern;
    const char *source_file;
} WriteOpts;

static int write_option(int c, WriteOpts *o)
{
    switch (c) {
    case 'b': o->vmstate = true; break;
    case 'c': o->compressed = true; break;
    case 'C': o->csv = true; break;
    case 'f': o->fua = true; break;
    case 'n': o->no_fallback = true; break;
    case 'p': break;
    case 'q': o->quiet = true; break;
    case 'u': o->unmap = true; break;
    case 'z': o->zero = true; break;
    case 's':
        o->source = true;
        o->source_file = optarg;
        break;
    case 'P':
        o->has_pattern = true;
        if ((o->pattern = parse_pattern(optarg)) < 0)
            return -EINVAL;
        break;
    default:
        return usage();
    }
    return 0;
}

static int write_options(int argc, char **argv, WriteOpts *o)
{
    int c, r;
    while ((c = getopt(argc, argv, "bcCfnpP:quzs:")) != -1)
        if ((r = write_option(c, o)) < 0)
            return r;
    const char *err = NULL;
    if (optind != argc - 2)
        return usage();
    if (o->vmstate && o->zero)
        err = "-b and -z cannot be specified at the same time";
    else if (o->fua && (o->vmstate || o->compressed))
        err = "-f and -b or -c cannot be specified at the same time";
    else if (o->no_fallback && !o->zero)
        err = "-n requires -z to be specified";
    else if (o->unmap && !o->zero)
        err = "-u requires -z to be specified";
    else if (o->zero + o->has_pattern + o->source > 1)
        err = "Only one of -z, -P, and -s can be specified at the same time";
    if (err) {
        printf("%s\n", err);
        return -EINVAL;
    }
    return 0;
}

static int do_write(BlockDriverState *bs, const WriteOpts *o, int64_t off, int64_t count,
                    const uint8_t *buf)
{
    if (o->vmstate)
        return blk_save_vmstate(bs, buf, off, count);
    int r = check_range(bs, off, count);
    if (r < 0)
        return r;
    if (o->zero)
        r = blk_pwrite_zeroes(bs, off, count, o->unmap ? BLK_ZERO_MAY_UNMAP : 0);
    else if (o->compressed)
        r = blk_pwrite_compressed(bs, off, buf, count);
    else
        r = blk_pwrite(bs, off, buf, count);
    if (r == 0 && o->fua)
        r = blk_flush(bs);
    return r;
}

/* Compressed and VM state writes go by whole sectors. */
static int check_aligned(int64_t off, int64_t count)
{
    if (off % BLK_SECTOR_SIZE) {
        printf("%" PRId64 " is not a sector-aligned value for 'offset'\n", off);
        return -EINVAL;
    }
    if (count % BLK_SECTOR_SIZE) {
        printf("%" PRId64 " is not a sector-aligned value for 'count'\n", count);
        return -EINVAL;
    }
    return 0;
}

/* write -s: the file's bytes, repeated to fill len (as qemu-io does). */
static uint8_t *alloc_from_file(size_t len, const char *name)
{
    FILE *f = fopen(name, "r");
    if (!f) {
        perror(name);
        return NULL;
    }
    uint8_t *buf = io_alloc(len, 0);
    size_t got = buf ? fread(buf, 1, len, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || got == 0) {
        if (err)
            perror(name);
        else if (buf)
            fprintf(stderr, "%s: file is empty\n", name);
        free(buf);
        return NULL;
    }
    for (size_t done = got; done < len;) {
        size_t n = len - done < got ? len - done : got;
        memcpy(buf + done, buf, n);
        done += n;
    }
    return buf;
}

static int write_f(BlockDriverState *bs, int argc, char **argv)
{
    WriteOpts o = {.pattern = 0xcd};
    int64_t off, count;
    int r = write_options(argc, argv, &o);
    if (r < 0)
        return r;
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &count) < 0)
        return -EINVAL;
    if (count > REQUEST_MAX_BYTES && !o.no_fallback) {
        printf("length cannot exceed %" PRId64 " without -n, given %s\n", REQUEST_MAX_BYTES,
               argv[optind + 1]);
        return -EINVAL;
    }
    if ((o.vmstate || o.compressed) && check_aligned(off, count) < 0)
        return -EINVAL;
    uint8_t *buf = NULL;
    if (o.source && !(buf = alloc_from_file(count, o.source_file)))
        return -EINVAL;
    if (!o.zero && !o.source && !(buf = io_alloc(count, o.pattern)))
        return -ENOMEM;
    double t = tool_now();
    r = do_write(bs, &o, off, count, buf);
    t = tool_now() - t;
    free(buf);
    if (r < 0) {
        printf("write failed: %s\n", strerror(-r));
        return r;
    }
    if (!o.quiet)
        print_report("wrote", t, off, count, count, 1, o.csv);
    return 0;
}

typedef struct VecOpts {
    bool aio, write;    /* which of readv/writev/aio_read/aio_write */
    bool csv, quiet, verbose, fua, zero, unmap, has_pattern;
    int pattern;
} VecOpts;

/* Returns 0, a negative errno, or 1 when "-i" asked for an invalid
 * request: qemu-io only reports that and the command succeeds. */
static int vec_option(int c, VecOpts *o)
{
    switch (c) {
    case 'C': o->csv = true; break;
    case 'q': o->quiet = true; break;
    case 'v': o->verbose = true; break;
    case 'f': o->fua = true; break;
    case 'z': o->zero = true; break;
    case 'u': o->unmap = true; break;
    case 'i':
        printf("injecting invalid %s request\n", o->write ? "write" : "read");
        return 1;
    case 'P':
        if ((o->pattern = parse_pattern(optarg)) < 0)
            return -EINVAL;
        /* qemu-io 7.2's aio_write forgets that -P was given */
        o->has_pattern = !(o->aio && o->write);
        break;
    default:
        return usage();
    }
    return 0;
}

static int vec_options(int argc, char **argv, const char *optstr, VecOpts *o)
{
    int c, r;
    while ((c = getopt(argc, argv, optstr)) != -1)
        if ((r = vec_option(c, o)) != 0)
            return r;
    const char *err = NULL;
    if (optind > argc - 2)
        return usage();
    if (o->zero && optind != argc - 2)
        err = "-z supports only a single length parameter";
    else if (o->unmap && !o->zero)
        err = "-u requires -z to be specified";
    else if (o->zero && o->has_pattern)
        err = "-z and -P cannot be specified at the same time";
    if (err) {
        printf("%s\n", err);
        return -EINVAL;
    }
    return 0;
}

typedef struct IoVec {
    struct iovec *iov;
    int n;
    int64_t size;
    uint8_t *buf;
} IoVec;

/* One buffer cut into the lengths given on the command line. */
static int build_iovec(char **argv, int n, int pattern, IoVec *v)
{
    int64_t len[n > 0 ? n : 1];
    v->size = 0;
    for (int i = 0; i < n; i++) {
        if (parse_num(argv[i], &len[i]) < 0)
            return -EINVAL;
        if (len[i] > REQUEST_MAX_BYTES) {
            printf("Argument '%s' exceeds maximum size %" PRId64 "\n", argv[i],
                   REQUEST_MAX_BYTES);
            return -EINVAL;
        }
        if (v->size > REQUEST_MAX_BYTES - len[i]) {
            printf("The total number of bytes exceed the maximum size %" PRId64 "\n",
                   REQUEST_MAX_BYTES);
            return -EINVAL;
        }
        v->size += len[i];
    }
    v->iov = calloc(n, sizeof(*v->iov));
    v->buf = io_alloc(v->size, pattern);
    if (!v->iov || !v->buf)
        return -ENOMEM;
    uint8_t *p = v->buf;
    for (int i = 0; i < n; i++) {
        v->iov[i] = (struct iovec){.iov_base = p, .iov_len = len[i]};
        p += len[i];
    }
    v->n = n;
    return 0;
}

static void free_iovec(IoVec *v)
{
    free(v->iov);
    free(v->buf);
}

static int vec_read_run(BlockDriverState *bs, const VecOpts *o, IoVec *v, int64_t off);
static int vec_write_run(BlockDriverState *bs, const VecOpts *o, IoVec *v, int64_t off);

/* aio requests complete before we return, so their report comes at once
 * (where qemu-io's land too for a local file), except while blkdebug has
 * breakpoints: then each runs on a thread of its own, so that the
 * commands after it (wait_break, resume) run while it is stopped, and
 * aio_flush waits for it.  The main thread alone touches the list. */
typedef struct AioReq {
    pthread_t thread;
    BlockDriverState *bs;
    VecOpts o;
    IoVec v;
    int64_t off;
    bool done; /* atomic */
    struct AioReq *next;
} AioReq;

static AioReq *aio_reqs;

static void *aio_run(void *opaque)
{
    AioReq *a = opaque;
    if (a->o.write)
        vec_write_run(a->bs, &a->o, &a->v, a->off);
    else
        vec_read_run(a->bs, &a->o, &a->v, a->off);
    __atomic_store_n(&a->done, true, __ATOMIC_RELEASE);
    return NULL;
}

/* Starts the request on its thread, which then owns v; 0 when it runs
 * (a failure of its own is reported by it, as qemu-io's aio ones are). */
static int aio_submit(BlockDriverState *bs, const VecOpts *o, IoVec *v, int64_t off)
{
    AioReq *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    *a = (AioReq){.bs = bs, .o = *o, .v = *v, .off = off, .next = aio_reqs};
    if (pthread_create(&a->thread, NULL, aio_run, a) != 0) {
        free(a);
        return -EAGAIN;
    }
    *v = (IoVec){0};
    aio_reqs = a;
    return 0;
}

static bool aio_in_flight(void)
{
    for (AioReq *a = aio_reqs; a; a = a->next)
        if (!__atomic_load_n(&a->done, __ATOMIC_ACQUIRE))
            return true;
    return false;
}

void io_aio_drain(void)
{
    /* a request still stopped at a breakpoint would be waited for in
     * vain (qemu-io hangs there): let them all go on first */
    for (AioReq *a = aio_reqs; a; a = a->next)
        if (!__atomic_load_n(&a->done, __ATOMIC_ACQUIRE))
            blkdebug_release(a->bs);
    while (aio_reqs) {
        AioReq *a = aio_reqs;
        aio_reqs = a->next;
        pthread_join(a->thread, NULL);
        free_iovec(&a->v);
        free(a);
    }
}

/* like qemu-io, a failed aio request does not fail the command */
static int vec_read(BlockDriverState *bs, int argc, char **argv, VecOpts *o,
                    const char *optstr)
{
    IoVec v = {0};
    int64_t off;
    int r = vec_options(argc, argv, optstr, o);
    if (r != 0 || (r = parse_num(argv[optind], &off)) < 0)
        return r < 0 ? r : 0;
    if ((r = build_iovec(argv + optind + 1, argc - optind - 1, 0xab, &v)) < 0) {
        free_iovec(&v);
        return r;
    }
    if (o->aio && blkdebug_has_breaks(bs) && (r = aio_submit(bs, o, &v, off)) == 0)
        return 0;
    r = vec_read_run(bs, o, &v, off);
    free_iovec(&v);
    return o->aio ? 0 : r;
}

static int vec_read_run(BlockDriverState *bs, const VecOpts *o, IoVec *v, int64_t off)
{
    double t = tool_now();
    int r = check_range(bs, off, v->size);
    if (r == 0 && current_img->copy_on_read)
        r = io_copy_on_read(current_img, off, v->size, NULL);
    if (r == 0)
        r = blk_preadv(bs, off, v->iov, v->n);
    t = tool_now() - t;
    if (r < 0) {
        printf("readv failed: %s\n", strerror(-r));
    } else {
        if (o->has_pattern)
            r = verify_pattern(v->buf, v->size, o->pattern, off);
        if (!o->quiet) {
            if (o->verbose)
                dump_buffer(v->buf, off, v->size);
            print_report("read", t, off, v->size, v->size, 1, o->csv);
        }
    }
    return r;
}

static int vec_write(BlockDriverState *bs, int argc, char **argv, VecOpts *o,
                     const char *optstr)
{
    IoVec v = {0};
    int64_t off;
    int r = vec_options(argc, argv, optstr, o);
    if (r != 0 || (r = parse_num(argv[optind], &off)) < 0)
        return r < 0 ? r : 0;
    if ((r = build_iovec(argv + optind + 1, argc - optind - 1, o->pattern, &v)) < 0)
        goto out;
    if (o->aio && blkdebug_has_breaks(bs) && (r = aio_submit(bs, o, &v, off)) == 0)
        return 0;
    r = vec_write_run(bs, o, &v, off);
out:
    free_iovec(&v);
    return r;
}

static int vec_write_run(BlockDriverState *bs, const VecOpts *o, IoVec *v, int64_t off)
{
    double t = tool_now();
    int r = check_range(bs, off, v->size);
    if (r == 0 && o->zero)
        r = blk_pwrite_zeroes(bs, off, v->size, o->unmap ? BLK_ZERO_MAY_UNMAP : 0);
    else if (r == 0)
        r = blk_pwritev(bs, off, v->iov, v->n);
    if (r == 0 && o->fua)
        r = blk_flush(bs);
    t = tool_now() - t;
    if (r < 0) {
        printf("%s failed: %s\n", o->aio ? "aio_write" : "writev", strerror(-r));
        r = o->aio ? 0 : r;
    } else if (!o->quiet) {
        print_report("wrote", t, off, v->size, v->size, 1, o->csv);
    }
    return r;
}

static int readv_f(BlockDriverState *bs, int argc, char **argv)
{
    VecOpts o = {0};
    return vec_read(bs, argc, argv, &o, "CP:qv");
}

static int writev_f(BlockDriverState *bs, int argc, char **argv)
{
    VecOpts o = {.write = true, .pattern = 0xcd};
    return vec_write(bs, argc, argv, &o, "CfqP:");
}

static int aio_read_f(BlockDriverState *bs, int argc, char **argv)
{
    VecOpts o = {.aio = true};
    return vec_read(bs, argc, argv, &o, "CP:qvi");
}

static int aio_write_f(BlockDriverState *bs, int argc, char **argv)
{
    VecOpts o = {.aio = true, .write = true, .pattern = 0xcd};
    return vec_write(bs, argc, argv, &o, "CfiqP:uz");
}

static int discard_f(BlockDriverState *bs, int argc, char **argv)
{
    bool csv = false, quiet = false;
    int c;
    while ((c = getopt(argc, argv, "Cq")) != -1) {
        if (c == 'C')
            csv = true;
        else if (c == 'q')
            quiet = true;
        else
            return usage();
    }
    if (optind != argc - 2)
        return usage();
    int64_t off, len;
    int r = parse_off_len(argv + optind, &off, &len);
    if (r < 0)
        return r;
    double t = tool_now();
    r = check_range(bs, off, len);
    if (r == 0)
        r = blk_discard(bs, off, len);
    t = tool_now() - t;
    if (r < 0) {
        printf("discard failed: %s\n", strerror(-r));
        return r;
    }
    if (!quiet)
        print_report("discard", t, off, len, len, 1, csv);
    return 0;
}

static int flush_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return blk_flush(bs);
}

static int truncate_f(BlockDriverState *bs, int argc, char **argv)
{
    int prealloc = BLK_PREALLOC_OFF, c;
    while ((c = getopt(argc, argv, "m:")) != -1) {
        if (c != 'm')
            return usage();
        if ((prealloc = blk_prealloc_parse(optarg)) < 0) {
            fprintf(stderr, "%s: Invalid preallocation mode '%s'\n", tool_progname, optarg);
            return -EINVAL;
        }
    }
    if (optind != argc - 1)
        return usage();
    int64_t size;
    if (parse_num(argv[optind], &size) < 0)
        return -EINVAL;
    int r = blk_truncate(bs, size, prealloc, true);
    if (r < 0)
        fprintf(stderr, "%s: %s\n", tool_progname, blk_error());
    return r;
}

static int length_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char s[64];
    tool_cvtstr((double)bs->size, s, sizeof(s));
    printf("%s\n", s);
    return 0;
}

/* Where qcow2 keeps VM state: right after the guest range the L1 covers. */
static uint64_t vm_state_offset(const BlockDriverState *bs, const BlockInfo *bi)
{
    if (!bi->is_qcow2 || !bi->cluster_size)
        return 0;
    uint64_t l2_entries = bi->cluster_size / (bi->extended_l2 ? 16 : 8);
    uint64_t span = bi->cluster_size * l2_entries;
    return (bs->size + span - 1) / span * span;
}

static int info_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* a driver without a host file is a protocol driver in QEMU, where
     * it has both a format and a protocol name, each printed, and no
     * driver info (the command fails after the names) */
    if (bs->drv->no_file) {
        printf("format name: %s\nformat name: %s\n", bs->drv->name, bs->drv->name);
        return -ENOTSUP;
    }
    BlockInfo bi;
    int r = blk_get_info(bs, &bi);
    if (r < 0)
        return r;
    char s1[64], s2[64];
    tool_cvtstr((double)bi.cluster_size, s1, sizeof(s1));
    tool_cvtstr((double)vm_state_offset(bs, &bi), s2, sizeof(s2));
    printf("format name: %s\ncluster size: %s\nvm state offset: %s\n", bs->drv->name, s1, s2);
    JsonNode *spec = tool_format_specific(&bi);
    if (spec) {
        printf("Format specific information:\n");
        json_dump_human(stdout, json_get(spec, "data"), 1);
        json_free(spec);
    }
    blk_info_free(&bi);
    return 0;
}

/* Allocation in this layer only (qemu's bdrv_is_allocated). */
static int is_allocated(BlockDriverState *bs, int64_t off, int64_t len, int64_t *pnum)
{
    uint64_t n;
    int st = blk_block_status(bs, off, len, &n, NULL);
    if (st < 0)
        return st;
    *pnum = n;
    return !!(st & BLK_STATUS_ALLOCATED);
}

/* Grows *pnum over following ranges with the same allocation state. */
static int map_is_allocated(BlockDriverState *bs, int64_t off, int64_t len, int64_t *pnum)
{
    int64_t num;
    int first = is_allocated(bs, off, len, &num);
    if (first < 0)
        return first;
    *pnum = num;
    while (len > 0) {
        off += num;
        len -= num;
        int r = is_allocated(bs, off, len, &num);
        if (r != first || !num)
            break;
        *pnum += num;
    }
    return first;
}

static int map_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int64_t off = 0, len = bs->size, num;
    while (len) {
        int r = map_is_allocated(bs, off, len, &num);
        if (r < 0) {
            fprintf(stderr, "%s: Failed to get allocation status: %s\n", tool_progname,
                    strerror(-r));
            return r;
        }
        if (!num) {
            fprintf(stderr, "%s: Unexpected end of image\n", tool_progname);
            return -EIO;
        }
        char s1[64], s2[64];
        tool_cvtstr((double)num, s1, sizeof(s1));
        tool_cvtstr((double)off, s2, sizeof(s2));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", s1, num,
               r ? "    allocated" : "not allocated", s2, off);
        off += num;
        len -= num;
    }
    return 0;
}

static int alloc_f(BlockDriverState *bs, int argc, char **argv)
{
    int64_t start, off, count = BLK_SECTOR_SIZE, num, sum = 0;
    if (parse_num(argv[1], &start) < 0 || (argc == 3 && parse_num(argv[2], &count) < 0))
        return -EINVAL;
    off = start;
    for (int64_t remaining = count; remaining;) {
        int r = is_allocated(bs, off, remaining, &num);
        if (r < 0) {
            printf("is_allocated failed: %s\n", strerror(-r));
            return r;
        }
        off += num;
        remaining -= num;
        if (r)
            sum += num;
        if (!num) {
            count -= remaining; /* stopped at the end of the image */
            remaining = 0;
        }
    }
    char s[64];
    tool_cvtstr((double)start, s, sizeof(s));
    printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n", sum, count, s);
    return 0;
}

static int help_f(BlockDriverState *bs, int argc, char **argv);

static int quit_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    (void)argc;
    (void)argv;
    return 1; /* io_command() turns this into *quit */
}

static int aio_flush_f(BlockDriverState *bs, int argc, char **argv)
{
    io_aio_drain();
    return flush_f(bs, argc, argv);
}

/* "-o a=b -o c=d": one list, "a=b,c=d" (later keys win). */
static int append_opts(char **opts, const char *more)
{
    size_t n = *opts ? strlen(*opts) + 1 : 0;
    char *s = realloc(*opts, n + strlen(more) + 1);
    if (!s)
        return -ENOMEM;
    if (n)
        s[n - 1] = ',';
    strcpy(s + n, more);
    *opts = s;
    return 0;
}

static int open_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    int flags = 0, c, r = 0;
    bool readonly = false, snapshot = false, cor = false, share = false, wt = true;
    char *opts = NULL;
    while (r == 0 && (c = getopt(argc, argv, "snCro:ki:t:d:U")) != -1) {
        switch (c) {
        case 's': snapshot = true; break;
        case 'n':
            flags |= BLK_O_NOCACHE;
            wt = false;
            break;
        case 'C': cor = true; break;
        case 'r': readonly = true; break;
        case 'k': flags |= IO_O_NATIVE_AIO; break;
        case 'U': share = true; break;
        case 't':
            if (io_parse_cache(optarg, &flags, &wt) < 0) {
                fprintf(stderr, "%s: Invalid cache option: %s\n", tool_progname, optarg);
                r = -EINVAL;
            }
            break;
        case 'd':
        case 'i':
            r = io_check_tuning(c, optarg, &flags);
            break;
        case 'o':
            if (img_image_opts) {
                printf("--image-opts and 'open -o' are mutually exclusive\n");
                r = -EINVAL;
            } else {
                r = append_opts(&opts, optarg);
            }
            break;
        default:
            r = usage();
        }
    }
    if (r == 0 && optind < argc - 1)
        r = usage();
    if (r == 0) {
        const char *file = optind == argc - 1 ? argv[optind] : NULL;
        r = io_open(current_img, file, NULL, opts, flags | (readonly ? 0 : BLK_O_RDWR),
                    snapshot, cor, share, wt);
        r = r < 0 ? -EINVAL : 0;
    }
    free(opts);
    return r;
}

static int close_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    (void)argc;
    (void)argv;
    io_close(current_img);
    return 0;
}

static int reopen_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    int flags = current_img->flags, c, r = 0;
    bool rw_given = false, cache_given = false, wt = current_img->writethrough;
    char *opts = NULL;
    flags = (flags & ~BLK_O_RDWR) | (current_img->bs->read_only ? 0 : BLK_O_RDWR);
    while (r == 0 && (c = getopt(argc, argv, "c:o:rw")) != -1) {
        switch (c) {
        case 'c':
            if (io_parse_cache(optarg, &flags, &wt) < 0) {
                fprintf(stderr, "%s: Invalid cache option: %s\n", tool_progname, optarg);
                r = -EINVAL;
            }
            cache_given = true;
            break;
        case 'o':
            r = append_opts(&opts, optarg);
            break;
        case 'r':
        case 'w':
            if (rw_given) {
                fprintf(stderr, "%s: Only one -r/-w option may be given\n", tool_progname);
                r = -EINVAL;
            }
            flags = c == 'r' ? flags & ~BLK_O_RDWR : flags | BLK_O_RDWR;
            rw_given = true;
            break;
        default:
            r = usage();
        }
    }
    if (r == 0 && optind != argc)
        r = usage();
    if (r == 0)
        r = io_reopen(current_img, flags, wt, opts, rw_given, cache_given);
    free(opts);
    return r;
}

static int sigraise_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    (void)argc;
    int64_t sig;
    if (parse_num(argv[1], &sig) < 0)
        return -EINVAL;
    if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n", argv[1]);
        return -EINVAL;
    }
    /* a fatal signal ends us without flushing stdio: what was printed
     * so far must come out first */
    fflush(stdout);
    fflush(stderr);
    raise((int)sig);
    return 0;
}

static int sleep_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    (void)argc;
    char *end;
    long ms = strtol(argv[1], &end, 0);
    if (ms < 0 || *end) {
        printf("%s is not a valid number\n", argv[1]);
        return -EINVAL;
    }
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 0;
}

static int abort_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    (void)argc;
    (void)argv;
    abort();
}

/* qemu-io's extended help texts, word for word (scripts compare them). */
static const char aio_read_help[] =
    "\n"
    " asynchronously reads a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
    "\n"
    " Reads a segment of the currently open file, optionally dumping it to the\n"
    " standard output stream (with -v option) for subsequent inspection.\n"
    " The read is performed asynchronously and the aio_flush command must be\n"
    " used to ensure all outstanding aio requests have been completed.\n"
    " Note that due to its asynchronous nature, this command will be\n"
    " considered successful once the request is submitted, independently\n"
    " of potential I/O errors or pattern mismatches.\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -P, -- use a pattern to verify read data\n"
    " -i, -- treat request as invalid, for exercising stats\n"
    " -v, -- dump buffer to standard output\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";

static const char aio_write_help[] =
    "\n"
    " asynchronously writes a range of bytes from the given offset source\n"
    " from multiple buffers\n"
    "\n"
    " Example:\n"
    " 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
    "\n"
    " Writes into a segment of the currently open file, using a buffer\n"
    " filled with a set pattern (0xcdcdcdcd).\n"
    " The write is performed asynchronously and the aio_flush command must be\n"
    " used to ensure all outstanding aio requests have been completed.\n"
    " Note that due to its asynchronous nature, this command will be\n"
    " considered successful once the request is submitted, independently\n"
    " of potential I/O errors or pattern mismatches.\n"
    " -P, -- use different pattern to fill file\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -f, -- use Force Unit Access semantics\n"
    " -i, -- treat request as invalid, for exercising stats\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    " -u, -- with -z, allow unmapping\n"
    " -z, -- write zeroes using blk_aio_pwrite_zeroes\n"
    "\n";

static const char discard_help[] =
    "\n"
    " discards a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file\n"
    "\n"
    " Discards a segment of the currently open file.\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";

static const char read_help[] =
    "\n"
    " reads a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file\n"
    "\n"
    " Reads a segment of the currently open file, optionally dumping it to the\n"
    " standard output stream (with -v option) for subsequent inspection.\n"
    " -b, -- read from the VM state rather than the virtual disk\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -l, -- length for pattern verification (only with -P)\n"
    " -p, -- ignored for backwards compatibility\n"
    " -P, -- use a pattern to verify read data\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    " -s, -- start offset for pattern verification (only with -P)\n"
    " -v, -- dump buffer to standard output\n"
    "\n";

static const char readv_help[] =
    "\n"
    " reads a range of bytes from the given offset into multiple buffers\n"
    "\n"
    " Example:\n"
    " 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
    "\n"
    " Reads a segment of the currently open file, optionally dumping it to the\n"
    " standard output stream (with -v option) for subsequent inspection.\n"
    " Uses multiple iovec buffers if more than one byte range is specified.\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -P, -- use a pattern to verify read data\n"
    " -v, -- dump buffer to standard output\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";

static const char write_help[] =
    "\n"
    " writes a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file\n"
    "\n"
    " Writes into a segment of the currently open file, using a buffer\n"
    " filled with a set pattern (0xcdcdcdcd).\n"
    " -b, -- write to the VM state rather than the virtual disk\n"
    " -c, -- write compressed data with blk_write_compressed\n"
    " -f, -- use Force Unit Access semantics\n"
    " -n, -- with -z, don't allow slow fallback\n"
    " -p, -- ignored for backwards compatibility\n"
    " -P, -- use different pattern to fill file\n"
    " -s, -- use a pattern file to fill the write buffer\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    " -u, -- with -z, allow unmapping\n"
    " -z, -- write zeroes using blk_co_pwrite_zeroes\n"
    "\n";

static const char writev_help[] =
    "\n"
    " writes a range of bytes from the given offset source from multiple buffers\n"
    "\n"
    " Example:\n"
    " 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
    "\n"
    " Writes into a segment of the currently open file, using a buffer\n"
    " filled with a set pattern (0xcdcdcdcd).\n"
    " -P, -- use different pattern to fill file\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -f, -- use Force Unit Access semantics\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";
static const char open_help[] =
    "\n"
    " opens a new file in the requested mode\n"
    "\n"
    " Example:\n"
    " 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached\n"
    "\n"
    " Opens a file for subsequent use by all of the other qemu-io commands.\n"
    " -r, -- open file read-only\n"
    " -s, -- use snapshot file\n"
    " -C, -- use copy-on-read\n"
    " -n, -- disable host cache, short for -t none\n"
    " -U, -- force shared permissions\n"
    " -k, -- use kernel AIO implementation (Linux only, prefer use of -i)\n"
    " -i, -- use AIO mode (threads, native or io_uring)\n"
    " -t, -- use the given cache mode for the image\n"
    " -d, -- use the given discard mode for the image\n"
    " -o, -- options to be given to the block driver\n";

static const char reopen_help[] =
    "\n"
    " Changes the open options of an already opened image\n"
    "\n"
    " Example:\n"
    " 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image\n"
    "\n"
    " -r, -- Reopen the image read-only\n"
    " -w, -- Reopen the image read-write\n"
    " -c, -- Change the cache mode to the given value\n"
    " -o, -- Changes block driver options (cf. 'open' command)\n"
    "\n";

static const char sigraise_help[] =
    "\n"
    " raises the given signal\n"
    "\n"
    " Example:\n"
    " 'sigraise 15' - raises SIGTERM\n"
    "\n"
    " Invokes raise(signal), where \"signal\" is the mandatory integer argument\n"
    " given to sigraise.\n"
    "\n";

/* What "help NAME" adds after the command's line. */
static const struct {
    const char *name, *text;
} help_texts[] = {
    {"aio_read", aio_read_help},
    {"aio_write", aio_write_help},
    {"discard", discard_help},
    {"open", open_help},
    {"read", read_help},
    {"readv", readv_help},
    {"reopen", reopen_help},
    {"sigraise", sigraise_help},
    {"write", write_help},
    {"writev", writev_help},
};

/* ---- blkdebug breakpoints (qemu-io's words) ---- */

static int break_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    int r = blkdebug_break(bs, argv[1], argv[2]);
    if (r < 0)
        printf("Could not set breakpoint: %s\n", strerror(-r));
    return r;
}

static int remove_break_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    int r = blkdebug_remove_break(bs, argv[1]);
    if (r < 0)
        printf("Could not remove breakpoint %s: %s\n", argv[1], strerror(-r));
    return r;
}

static int resume_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    int r = blkdebug_resume(bs, argv[1]);
    if (r < 0)
        printf("Could not resume request: %s\n", strerror(-r));
    return r;
}

/* qemu-io waits for ever when no request is on its way to the
 * breakpoint; here the wait ends with an error once none is in flight. */
static int wait_break_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)argc;
    while (!blkdebug_is_suspended(bs, argv[1])) {
        if (!aio_in_flight()) {
            printf("Could not wait for breakpoint %s: no request in flight\n", argv[1]);
            return -ENOENT;
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return 0;
}

/* Sorted by name, like qemu-io's table; args NULL prints no argument field. */
static const IoCmd commands[] = {
    {"abort", NULL, abort_f, 0, 0, true, NULL, "simulate a program crash using abort(3)", false},
    {"aio_flush", NULL, aio_flush_f, 0, 0, false, NULL,
     "completes all outstanding aio requests", false},
    {"aio_read", NULL, aio_read_f, 2, -1, false, "[-Ciqv] [-P pattern] off len [len..]",
     "asynchronously reads a number of bytes", false},
    {"aio_write", NULL, aio_write_f, 2, -1, false, "[-Cfiquz] [-P pattern] off len [len..]",
     "asynchronously writes a number of bytes", true},
    {"alloc", NULL, alloc_f, 1, 2, false, "offset [count]",
     "checks if offset is allocated in the file", false},
    {"close", "c", close_f, 0, 0, false, NULL, "close the current open file", false},
    {"break", NULL, break_f, 2, 2, false, "event tag",
     "sets a breakpoint on event and tags the stopped request as tag", false},
    {"discard", "d", discard_f, 2, -1, false, "[-Cq] off len",
     "discards a number of bytes at a specified offset", true},
    {"flush", "f", flush_f, 0, 0, false, NULL, "flush all in-core file state to disk", false},
    {"help", "?", help_f, 0, 1, true, "[command]", "help for one or all commands", false},
    {"info", "i", info_f, 0, 0, false, NULL, "prints information about the current file", false},
    {"length", "l", length_f, 0, 0, false, NULL, "gets the length of the current file", false},
    {"map", NULL, map_f, 0, 0, false, "", "prints the allocated areas of a file", false},
    {"open", "o", open_f, 1, -1, true,
     "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]", "open the file specified by path",
     false},
    {"quit", "q", quit_f, 0, 0, true, NULL, "exit the program", false},
    {"read", "r", read_f, 2, -1, false, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
     "reads a number of bytes at a specified offset", false},
    {"readv", NULL, readv_f, 2, -1, false, "[-Cqv] [-P pattern] off len [len..]",
     "reads a number of bytes at a specified offset", false},
    {"reopen", NULL, reopen_f, 0, -1, false, "[(-r|-w)] [-c cache] [-o options]",
     "reopens an image with new options", false},
    {"sigraise", NULL, sigraise_f, 1, 1, true, "signal", "raises a signal", false},
    {"sleep", NULL, sleep_f, 1, 1, true, NULL, "waits for the given value in milliseconds",
     false},
    {"remove_break", NULL, remove_break_f, 1, 1, false, "tag", "remove a breakpoint by tag",
     false},
    {"resume", NULL, resume_f, 1, 1, false, "tag", "resumes the request tagged as tag", false},
    {"truncate", "t", truncate_f, 1, 3, false, "[-m prealloc_mode] off",
     "truncates the current file at the given offset", true},
    {"wait_break", NULL, wait_break_f, 1, 1, false, "tag",
     "waits for the suspension of a request", false},
    {"write", "w", write_f, 2, -1, false,
     "[-bcCfnquz] [-P pattern | -s source_file] off len",
     "writes a number of bytes at a specified offset", true},
    {"writev", NULL, writev_f, 2, -1, false, "[-Cfq] [-P pattern] off len [len..]",
     "writes a number of bytes at a specified offset", true},
};
#define NCOMMANDS (int)(sizeof(commands) / sizeof(commands[0]))

static const IoCmd *find_command(const char *name)
{
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name) ||
            (commands[i].altname && !strcmp(commands[i].altname, name)))
            return &commands[i];
    return NULL;
}

static void help_oneline(const IoCmd *ct)
{
    printf("%s ", ct->name);
    if (ct->args)
        printf("%s ", ct->args);
    printf("-- %s\n", ct->oneline);
}

static int help_f(BlockDriverState *bs, int argc, char **argv)
{
    (void)bs;
    if (argc == 1) {
        for (int i = 0; i < NCOMMANDS; i++)
            help_oneline(&commands[i]);
        printf("\nUse 'help commandname' for extended help.\n");
        return 0;
    }
    const IoCmd *ct = find_command(argv[1]);
    if (!ct) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    help_oneline(ct);
    for (size_t i = 0; i < sizeof(help_texts) / sizeof(help_texts[0]); i++)
        if (!strcmp(help_texts[i].name, ct->name))
            fputs(help_texts[i].text, stdout);
    return 0;
}

static int check_argc(const IoCmd *ct, int argc, const char *cmd)
{
    int n = argc - 1;
    if (n >= ct->argmin && (ct->argmax == -1 || n <= ct->argmax))
        return 0;
    if (ct->argmax == -1)
        fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n", n,
                cmd, ct->argmin);
    else if (ct->argmin == ct->argmax)
        fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n", n, cmd,
                ct->argmin);
    else
        fprintf(stderr, "bad argument count %d to %s, expected between %d and %d arguments\n",
                n, cmd, ct->argmin, ct->argmax);
    return -EINVAL;
}

/* Splits at spaces, as qemu-io does (no quoting). */
static int split_line(char *line, char **argv, int max)
{
    int n = 0;
    for (char *tok = strtok(line, " "); tok && n < max; tok = strtok(NULL, " "))
        argv[n++] = tok;
    argv[n] = NULL;
    return n;
}

int io_command(IoImage *img, const char *line, bool *quit)
{
    BlockDriverState *bs = img->bs;
    char *copy = strdup(line);
    char *argv[256];
    if (!copy)
        return -ENOMEM;
    int argc = split_line(copy, argv, 255), r = 0;
    const IoCmd *ct = argc ? find_command(argv[0]) : NULL;
    if (!argc) {
        r = 0;
    } else if (!ct) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        r = -EINVAL;
    } else if (!bs && !ct->nofile_ok) {
        fprintf(stderr, "no file open, try 'help open'\n");
        r = -EINVAL;
    } else if ((r = check_argc(ct, argc, argv[0])) < 0) {
        ;
    } else if (ct->writes && bs->read_only) {
        fprintf(stderr, "%s: Block node is read-only\n", tool_progname);
        r = -EPERM;
    } else {
        current_cmd = ct;
        current_img = img;
        optind = 0; /* glibc: a fresh getopt scan for every command */
        r = ct->fn(bs, argc, argv);
        if (r > 0) {
            *quit = true;
            r = 0;
        }
    }
    fflush(stdout);
    free(copy);
    return r;
}
