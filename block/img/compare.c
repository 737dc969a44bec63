/* calf-img compare: qemu-img compare's algorithm and exit codes
 * (0 identical, 1 different, 2 open error, 3 status error, 4 read error). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/img/img.h"

#define IO_BUF_SIZE (2 * 1024 * 1024)
/* the bits that make two ranges "the same status" in strict mode */
#define STATUS_MASK (BLK_STATUS_DATA | BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET)

typedef struct CompareState {
    BlockDriverState *bs[2];
    const char *name[2];
    uint8_t *buf[2];
    bool quiet, strict, progress;
    float progress_now, progress_last;
    uint64_t progress_base;
} CompareState;

static void progress_print(CompareState *s, float delta)
{
    if (!s->progress)
        return;
    float cur = s->progress_now + delta;
    if (cur > 100)
        cur = 100;
    s->progress_now = cur;
    /* like qemu-img: print every 2% and at both ends */
    if (cur > s->progress_last + 2.0f || cur < s->progress_last - 2.0f || cur == 0 ||
        cur == 100) {
        s->progress_last = cur;
        printf("    (%3.2f/100%%)\r", cur);
        fflush(stdout);
    }
}

static void chunk_done(CompareState *s, uint64_t chunk)
{
    if (s->progress_base)
        progress_print(s, (float)chunk / s->progress_base * 100);
}

static int status_of(CompareState *s, int i, uint64_t off, uint64_t len, uint64_t *pnum)
{
    int st = blk_block_status_above(s->bs[i], off, len, pnum, NULL, NULL, NULL);
    if (st >= 0 && *pnum == 0)
        st = -EIO; /* no progress: stop instead of looping */
    if (st < 0)
        img_error("Sector allocation test failed for %s", s->name[i]);
    return st;
}

static int read_chunk(CompareState *s, int i, uint64_t off, uint8_t *buf, size_t len)
{
    int r = blk_pread(s->bs[i], off, buf, len);
    if (r < 0) {
        img_error("Error while reading offset %" PRIu64 " of %s: %s", off, s->name[i],
                  strerror(-r));
        return 4;
    }
    return 0;
}

/* 0 if [off, off+len) of image i reads as zeros, 1 (after the message)
 * if not, 4 on a read error. */
static int check_empty(CompareState *s, int i, uint64_t off, size_t len)
{
    if (read_chunk(s, i, off, s->buf[0], len))
        return 4;
    for (size_t k = 0; k < len; k++) {
        if (s->buf[0][k]) {
            if (!s->quiet)
                printf("Content mismatch at offset %" PRIu64 "!\n", off + k);
            return 1;
        }
    }
    return 0;
}

/* Compares sector by sector; reports the first differing sector. */
static int compare_data(CompareState *s, uint64_t off, size_t len)
{
    if (read_chunk(s, 0, off, s->buf[0], len) || read_chunk(s, 1, off, s->buf[1], len))
        return 4;
    for (size_t k = 0; k < len; k += BLK_SECTOR_SIZE) {
        size_t n = len - k < BLK_SECTOR_SIZE ? len - k : BLK_SECTOR_SIZE;
        if (memcmp(s->buf[0] + k, s->buf[1] + k, n)) {
            if (!s->quiet)
                printf("Content mismatch at offset %" PRIu64 "!\n", off + k);
            return 1;
        }
    }
    return 0;
}

static int compare_range(CompareState *s, uint64_t off, uint64_t *chunk)
{
    uint64_t size0 = s->bs[0]->size, size1 = s->bs[1]->size, p0, p1;
    int st0 = status_of(s, 0, off, size0 - off, &p0);
    if (st0 < 0)
        return 3;
    int st1 = status_of(s, 1, off, size1 - off, &p1);
    if (st1 < 0)
        return 3;
    bool alloc0 = st0 & BLK_STATUS_ALLOCATED, alloc1 = st1 & BLK_STATUS_ALLOCATED;
    *chunk = p0 < p1 ? p0 : p1;
    if (s->strict && (st0 & STATUS_MASK) != (st1 & STATUS_MASK)) {
        if (!s->quiet)
            printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
        return 1;
    }
    if ((st0 & BLK_STATUS_ZERO) && (st1 & BLK_STATUS_ZERO))
        return 0;
    if (*chunk > IO_BUF_SIZE)
        *chunk = IO_BUF_SIZE;
    if (alloc0 == alloc1)
        return alloc0 ? compare_data(s, off, *chunk) : 0;
    return check_empty(s, alloc0 ? 0 : 1, off, *chunk);
}

/* The part of the bigger image past the end of the smaller one must read
 * as zeros. */
static int compare_tail(CompareState *s, uint64_t off)
{
    int i = s->bs[0]->size > s->bs[1]->size ? 0 : 1;
    uint64_t end = s->bs[i]->size, chunk;
    if (!s->quiet)
        printf("Warning: Image size mismatch!\n");
    while (off < end) {
        int st = status_of(s, i, off, end - off, &chunk);
        if (st < 0)
            return 3;
        if ((st & BLK_STATUS_ALLOCATED) && !(st & BLK_STATUS_ZERO)) {
            if (chunk > IO_BUF_SIZE)
                chunk = IO_BUF_SIZE;
            int r = check_empty(s, i, off, chunk);
            if (r)
                return r;
        }
        off += chunk;
        chunk_done(s, chunk);
    }
    return 0;
}

static int compare_images(CompareState *s)
{
    uint64_t size0 = s->bs[0]->size, size1 = s->bs[1]->size;
    uint64_t total = size0 < size1 ? size0 : size1, off = 0, chunk;
    s->progress_base = size0 > size1 ? size0 : size1;
    progress_print(s, 0);
    if (s->strict && size0 != size1) {
        if (!s->quiet)
            printf("Strict mode: Image size mismatch!\n");
        return 1;
    }
    while (off < total) {
        int r = compare_range(s, off, &chunk);
        if (r)
            return r;
        off += chunk;
        chunk_done(s, chunk);
    }
    if (size0 != size1) {
        int r = compare_tail(s, off);
        if (r)
            return r;
    }
    if (!s->quiet)
        printf("Images are identical.\n");
    return 0;
}

static int open_both(CompareState *s, const char *fmt[2], bool force_share)
{
    for (int i = 0; i < 2; i++) {
        s->bs[i] = img_open(s->name[i], fmt[i], 0, force_share);
        if (!s->bs[i])
            return 2;
        s->buf[i] = malloc(IO_BUF_SIZE);
        if (!s->buf[i]) {
            img_error("out of memory");
            return 2;
        }
    }
    return 0;
}

int img_compare(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    CompareState s = {0};
    const char *fmt[2] = {NULL, NULL};
    bool force_share = false;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'f': fmt[0] = optarg; break;
        case 'F': fmt[1] = optarg; break;
        case 'T': break; /* source cache mode: calf reads through the page cache */
        case 'p': s.progress = true; break;
        case 'q': s.quiet = true; break;
        case 's': s.strict = true; break;
        case 'U': force_share = true; break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                return 2;
            break;
        default: img_bad_option(c, argv);
        }
    }
    if (s.quiet)
        s.progress = false;
    if (optind != argc - 2)
        img_usage_error("Expecting two image file names");
    s.name[0] = argv[optind];
    s.name[1] = argv[optind + 1];
    /* qemu-img's verdict lines wait in a full stdout buffer when it is a
     * pipe (glibc's default, which calf-img's line buffering overrides),
     * so a read error reported on stderr comes out before a "Warning:
     * Image size mismatch!" printed earlier: scripts see that order. */
    if (!s.progress && !isatty(STDOUT_FILENO))
        setvbuf(stdout, NULL, _IOFBF, BUFSIZ);
    int ret = open_both(&s, fmt, force_share);
    if (ret == 0)
        ret = compare_images(&s);
    if (s.progress)
        printf("\n");
    for (int i = 0; i < 2; i++) {
        free(s.buf[i]);
        blk_close(s.bs[i]);
    }
    return ret;
}
