/* A failing disk under the qcow2 engine: I/O errors injected into the
 * image file's pread/pwrite/pwritev/fdatasync (linked with --wrap; with
 * 64-bit file offsets glibc's headers name them pread64 and so on).
 *
 *   blk-fault SEED IMAGE CLASS N MODE
 *
 * A deterministic workload (writes, zero writes, discards, each flushed;
 * internal snapshots created and deleted; a grow that relocates the L1
 * table) runs on IMAGE.  With CLASS w, the Nth write-side call (pwrite,
 * pwritev or fdatasync) on the image fails with EIO; MODE once fails only
 * that call (the workload goes on, as a guest does after an I/O error),
 * MODE persist fails every later one too (the disk is gone: the workload
 * stops).  The image is then reopened without faults and every operation
 * that reported success must read back; a failed one leaves its range
 * undefined.  With CLASS r, the workload runs cleanly and the Nth pread
 * fails while the image is read back through a two-table L2 cache: every
 * read must then fail or return the right data, never something else
 * (zeros in place of an unreadable L2 table).  N = 0 injects nothing and
 * prints how many calls of the class were made, and with CLASS w which
 * calls each snapshot, snapshot delete and grow made, for the caller's
 * sweep.
 * Whether the image is consistent afterwards is qemu-img check's verdict,
 * taken by tests/qcow2-faults.t. */
#include "block/block.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define SIZE (8u << 20)
#define NOPS 120
#define MAXLEN (96u << 10)

/* ---- the fault switch ---- */
static int fault_fd = -1;
static char fault_class;       /* 'w' or 'r' */
static uint64_t fault_at, calls;
static bool fault_persist, fault_fired;

ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev64(int fd, const struct iovec *iov, int cnt, off_t off);
int __real_fdatasync(int fd);

static bool fail_now(int fd, char class)
{
    if (fd != fault_fd || class != fault_class)
        return false;
    calls++;
    if (fault_at && (calls == fault_at || (fault_persist && calls > fault_at))) {
        fault_fired = true;
        errno = EIO;
        return true;
    }
    return false;
}

ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off)
{
    return fail_now(fd, 'r') ? -1 : __real_pread64(fd, buf, n, off);
}

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return fail_now(fd, 'w') ? -1 : __real_pwrite64(fd, buf, n, off);
}

ssize_t __wrap_pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return fail_now(fd, 'w') ? -1 : __real_pwritev64(fd, iov, cnt, off);
}

int __wrap_fdatasync(int fd)
{
    return fail_now(fd, 'w') ? -1 : __real_fdatasync(fd);
}

/* ---- the workload ---- */
struct op {
    int kind; /* 0 write, 1 zero write, 2 discard, 3 snapshot, 4 delete snapshot, 5 grow */
    uint64_t off, len;
    uint8_t pattern;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static struct op op_of(uint64_t seed, uint64_t i)
{
    uint64_t h = mix(seed * 1000003 + i), h2 = mix(h);
    struct op o = {0};
    if (i % 40 == 20)
        o.kind = 3;
    else if (i % 80 == 79)
        o.kind = 4;
    else if (i == 10)
        o.kind = 5; /* before any snapshot: v2 images cannot grow with one */
    else
        o.kind = h % 10 < 7 ? 0 : h % 10 < 9 ? 1 : 2;
    o.len = 1 + (h2 >> 8) % MAXLEN;
    if (h2 & 1)
        o.len = (o.len + 4095) & ~4095ULL;
    if (o.len > SIZE)
        o.len = SIZE;
    o.off = mix(h2) % (SIZE - o.len + 1);
    o.pattern = (uint8_t)(h >> 40);
    return o;
}

static void fill(const struct op *o, uint8_t *p)
{
    for (uint64_t j = 0; j < o->len; j++)
        p[j] = o->kind ? 0 : (uint8_t)(o->pattern + j * 7 + (j >> 9));
}

static int run_op(BlockDriverState *bs, const struct op *o, uint64_t i, uint8_t *buf)
{
    char name[32];
    switch (o->kind) {
    case 0:
        fill(o, buf);
        return blk_pwrite(bs, o->off, buf, o->len);
    case 1:
        return blk_pwrite_zeroes(bs, o->off, o->len, 0);
    case 2:
        return blk_discard(bs, o->off, o->len);
    case 3:
        snprintf(name, sizeof(name), "s%" PRIu64, i);
        return blk_snapshot_create(bs, name);
    case 4:
        snprintf(name, sizeof(name), "s%" PRIu64, i - 59); /* made 59 ops ago */
        return blk_snapshot_delete(bs, name);
    default:
        return blk_truncate(bs, 8 * (uint64_t)SIZE, BLK_PREALLOC_OFF, false);
    }
}

enum { OP_OK, OP_FAILED, OP_NOT_RUN };

/* Runs the workload; st[i] says how op i went. */
static int workload(uint64_t seed, const char *image, uint8_t *st)
{
    BlockDriverState *bs = blk_open(image, "qcow2", BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "blk-fault: %s\n", blk_error());
        return -1;
    }
    uint8_t *buf = malloc(MAXLEN);
    if (!buf) {
        blk_close(bs);
        return -1;
    }
    fault_fd = bs->fd;
    int nfail = 0;
    for (uint64_t i = 0; i < NOPS; i++) {
        struct op o = op_of(seed, i);
        uint64_t first = calls + 1;
        int r = run_op(bs, &o, i, buf);
        if (r == 0)
            r = blk_flush(bs);
        /* N = 0: where the metadata-heavy ops are, for a targeted sweep */
        if (!fault_at && fault_class == 'w' && o.kind > 2)
            printf("op %" PRIu64 " kind %d calls %" PRIu64 " %" PRIu64 "\n", i, o.kind, first,
                   calls);
        if (r < 0) {
            st[i] = OP_FAILED;
            if (nfail++ == 0)
                printf("op %" PRIu64 " (kind %d) failed: %s; ", i, o.kind, blk_error());
            if (fault_persist) {
                memset(st + i + 1, OP_NOT_RUN, NOPS - i - 1);
                break;
            }
        }
    }
    blk_close(bs); /* its write-back may fail too: that is part of the test */
    fault_fd = -1;
    free(buf);
    return nfail;
}

/* What the image must hold; undef marks bytes any value may be in. */
static void model(uint64_t seed, const uint8_t *st, uint8_t *want, uint8_t *undef)
{
    uint8_t *buf = malloc(MAXLEN);
    memset(want, 0, SIZE);
    memset(undef, 0, SIZE);
    for (uint64_t i = 0; i < NOPS; i++) {
        struct op o = op_of(seed, i);
        if (o.kind > 2 || st[i] == OP_NOT_RUN)
            continue;
        if (st[i] == OP_FAILED || o.kind == 2) {
            memset(undef + o.off, 1, o.len);
            continue;
        }
        fill(&o, buf);
        memcpy(want + o.off, buf, o.len);
        memset(undef + o.off, 0, o.len);
    }
    free(buf);
}

/* Reads the image back in 64 KiB pieces through a small L2 cache; a read
 * error is fine (counted), wrong data is not. */
static int verify(const char *image, const uint8_t *want, const uint8_t *undef, int *errors)
{
    BlockOptions o = {0};
    blkopts_set(&o, "l2-cache-size", "1k"); /* the minimum: two tables */
    BlockDriverState *bs = blk_open(image, "qcow2", BLK_O_SHARE, &o);
    blkopts_free(&o);
    if (!bs) {
        printf("cannot reopen the image: %s\n", blk_error());
        return -1;
    }
    fault_fd = bs->fd;
    uint8_t *got = malloc(65536);
    int r = 0;
    *errors = 0;
    for (uint64_t off = 0; off < SIZE && r == 0; off += 65536) {
        if (blk_pread(bs, off, got, 65536) < 0) {
            ++*errors;
            continue;
        }
        for (uint64_t p = 0; p < 65536; p++) {
            if (got[p] != want[off + p] && !undef[off + p]) {
                printf("offset %" PRIu64 " reads 0x%02x, expected 0x%02x\n", off + p, got[p],
                       want[off + p]);
                r = -1;
                break;
            }
        }
    }
    fault_fd = -1;
    blk_close(bs);
    free(got);
    return r;
}

/* One run; the caller owns the two image-sized buffers. */
static int run(uint64_t seed, const char *image, uint64_t n, uint8_t *want, uint8_t *undef)
{
    uint8_t st[NOPS] = {0};
    fault_at = fault_class == 'w' ? n : 0;
    int nfail = workload(seed, image, st);
    if (nfail < 0)
        return 1;
    if (fault_class == 'w' && n && !fault_fired) {
        printf("the workload made fewer than %" PRIu64 " write calls\n", n);
        return 1;
    }
    if (fault_class == 'w' && !n) {
        printf("calls %" PRIu64 "\n", calls);
        return 0;
    }
    model(seed, st, want, undef);
    calls = 0;
    fault_at = fault_class == 'r' ? n : 0;
    int errors;
    if (verify(image, want, undef, &errors) < 0)
        return 1;
    if (fault_class == 'r' && !n)
        printf("calls %" PRIu64 "\n", calls);
    else
        printf("%d failed ops, %d read errors, everything else reads back\n", nfail, errors);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[3], "w") && strcmp(argv[3], "r")) ||
        (strcmp(argv[5], "once") && strcmp(argv[5], "persist"))) {
        fprintf(stderr, "usage: blk-fault SEED IMAGE w|r N once|persist\n");
        return 2;
    }
    fault_class = argv[3][0];
    fault_persist = !strcmp(argv[5], "persist");
    uint8_t *want = malloc(SIZE), *undef = malloc(SIZE);
    int r = want && undef ? run(strtoull(argv[1], NULL, 0), argv[2],
                                strtoull(argv[4], NULL, 0), want, undef) : 1;
    free(want);
    free(undef);
    return r;
}
