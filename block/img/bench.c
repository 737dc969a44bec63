/* calf-img bench: qemu-img bench's options and output.  Request 0 goes
 * to offset, request i to (offset + i * step) modulo the image size, as
 * in qemu-img; `depth`
 * requests are in flight at once, one per worker thread (at most 128
 * threads: deeper queues are served by the same threads). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/img/img.h"
#include "block/tool-util.h"

#define BENCH_MAX_THREADS 128

typedef struct Bench {
    BlockDriverState *bs;
    bool write;
    uint64_t bufsize, step, offset, image_size;
    uint64_t count, flush_interval;
    int pattern;
    /* what every worker writes, on a cache line of its own: next request,
     * requests done (for --flush-interval), the first failure */
    _Alignas(64) uint64_t next;
    uint64_t done;
    int err;
} Bench;

/* Where request k goes: the offset given, then (offset + k * step)
 * modulo the image size, which is what qemu-img's running sum gives. */
static uint64_t request_offset(const Bench *b, uint64_t k)
{
    if (k == 0)
        return b->offset;
    if (!b->image_size)
        return 0;
    return (uint64_t)(((unsigned __int128)b->offset + (unsigned __int128)k * b->step) %
                      b->image_size);
}

static void set_err(Bench *b, int r)
{
    int none = 0;
    __atomic_compare_exchange_n(&b->err, &none, r, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* No lock per request: 64 threads on a few cores would queue on it. */
static void *bench_worker(void *arg)
{
    Bench *b = arg;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, b->bufsize ? b->bufsize : 1) != 0) {
        set_err(b, -ENOMEM);
        return NULL;
    }
    memset(buf, b->pattern, b->bufsize);
    while (!__atomic_load_n(&b->err, __ATOMIC_RELAXED)) {
        uint64_t k = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (k >= b->count)
            break;
        uint64_t off = request_offset(b, k);
        int r = b->write ? blk_pwrite(b->bs, off, buf, b->bufsize)
                         : blk_pread(b->bs, off, buf, b->bufsize);
        if (r < 0) {
            set_err(b, r == -EINVAL ? -EIO : r); /* out of range: qemu-img says EIO */
            break;
        }
        if (b->flush_interval &&
            (__atomic_add_fetch(&b->done, 1, __ATOMIC_RELAXED) % b->flush_interval) == 0 &&
            (r = blk_flush(b->bs)) < 0) {
            set_err(b, r);
            break;
        }
    }
    free(buf);
    return NULL;
}

static int parse_num(const char *arg, const char *what, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 0);
    if (errno || end == arg || *end || v < min || v > INT32_MAX) {
        img_error("Invalid %s specified", what);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int img_bench(int argc, char **argv)
{
    enum { OPT_FLUSH_INTERVAL = 256, OPT_NO_DRAIN, OPT_PATTERN };
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"flush-interval", required_argument, 0, OPT_FLUSH_INTERVAL},
        IMG_COMMON_LONG_OPTIONS,
        {"pattern", required_argument, 0, OPT_PATTERN},
        {"no-drain", no_argument, 0, OPT_NO_DRAIN},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *cache = "writeback";
    int64_t count = 75000, depth = 64, flush_interval = 0, pattern = 0, v;
    int64_t bufsize = 4096, step = 0, offset = 0;
    bool write = false, force_share = false, drain = true;
    int flags = 0, c;
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'c':
            if (parse_num(optarg, "request count", 0, &count) < 0)
                return 1;
            break;
        case 'd':
            if (parse_num(optarg, "queue depth", 1, &depth) < 0)
                return 1;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'n':
            flags |= BLK_O_NOCACHE;
            break;
        case 'i':
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
                strcmp(optarg, "io_uring")) {
                img_error("Invalid aio option: %s", optarg);
                return 1;
            }
            break;
        case 'o':
            if (tool_cvtnum_full("offset", optarg, 0, INT64_MAX, &offset) < 0)
                return 1;
            break;
        case 'q':
            /* taken, and like qemu-img's -q it changes nothing here */
            break;
        case 's':
            if (tool_cvtnum_full("buffer size", optarg, 0, INT32_MAX, &bufsize) < 0)
                return 1;
            break;
        case 'S':
            if (tool_cvtnum_full("step size", optarg, 0, INT32_MAX, &step) < 0)
                return 1;
            break;
        case 't':
            cache = optarg;
            break;
        case 'w':
            write = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_FLUSH_INTERVAL:
            if (parse_num(optarg, "flush interval", 0, &flush_interval) < 0)
                return 1;
            break;
        case OPT_NO_DRAIN:
            drain = false;
            break;
        case OPT_PATTERN:
            if (parse_num(optarg, "pattern byte", 0, &v) < 0)
                return 1;
            if (v > 255) {
                img_error("Invalid pattern byte specified");
                return 1;
            }
            pattern = v;
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
    if (optind != argc - 1)
        img_usage_error("Expecting one image file name");
    if (!strcmp(cache, "none") || !strcmp(cache, "directsync"))
        flags |= BLK_O_NOCACHE;
    else if (!strcmp(cache, "unsafe"))
        flags |= BLK_O_UNSAFE;
    else if (strcmp(cache, "writeback") && strcmp(cache, "writethrough")) {
        img_error("Invalid cache mode");
        return 1;
    }
    if (flush_interval && !write) {
        img_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (flush_interval && flush_interval < depth) {
        img_error("Flush interval can't be smaller than depth");
        return 1;
    }
    if (!step)
        step = bufsize;
    if (write)
        flags |= BLK_O_RDWR;
    if (write && force_share) {
        img_error("Could not open '%s': force-share=on can only be used with read-only images",
                  argv[optind]);
        return 1;
    }
    BlockDriverState *bs = img_open(argv[optind], fmt, flags, force_share);
    if (!bs)
        return 1;
    Bench b = {.bs = bs, .write = write, .bufsize = (uint64_t)bufsize, .step = (uint64_t)step,
               .offset = (uint64_t)offset, .image_size = bs->size, .count = (uint64_t)count,
               .flush_interval = (uint64_t)flush_interval, .pattern = (int)pattern};
    printf("Sending %" PRId64 " %s requests, %" PRId64 " bytes each, %" PRId64
           " in parallel (starting at offset %" PRId64 ", step size %" PRId64 ")\n",
           count, write ? "write" : "read", bufsize, depth, offset, step);
    if (flush_interval)
        printf("Sending flush every %" PRId64 " requests\n", flush_interval);
    int nthreads = (int)(depth < count ? depth : count);
    if (nthreads > BENCH_MAX_THREADS)
        nthreads = BENCH_MAX_THREADS;
    pthread_t t[BENCH_MAX_THREADS];
    int started = 0;
    double t1 = tool_now();
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&t[i], NULL, bench_worker, &b) != 0)
            break;
        started++;
    }
    if (started == 0 && nthreads > 0)
        b.err = -EAGAIN;
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    int ret = 0;
    if (b.err) {
        img_error("Failed request: %s", strerror(-b.err));
        ret = 1;
    } else {
        if (write && drain && flush_interval && blk_flush(bs) < 0) {
            img_error("Failed flush request: %s", blk_error());
            ret = 1;
        }
        double t2 = tool_now();
        if (!ret)
            printf("Run completed in %3.3f seconds.\n", t2 - t1);
    }
    blk_close(bs);
    return ret;
}
