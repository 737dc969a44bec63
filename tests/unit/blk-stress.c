/* Concurrency stress of the block library against a model of a disk.
 *
 *   blk-stress [-t threads] [-n ops] [-s seed] [-f format] [-N] [-k secret]
 *              [-i INITIAL.raw] [-o FINAL.raw] IMAGE
 *
 * Threads (default 4) issue random reads, writes, zero writes, discards
 * and flushes on IMAGE through blk_*, half of them inside a quarter of the
 * disk the thread owns, half anywhere (so they overlap), with offsets and
 * lengths in 512-byte sectors: some 4 KiB-aligned, some not.  -N opens the
 * image with cache=none (O_DIRECT); -k gives an encrypted image's key.
 *
 * The model keeps, per sector, every write that covered it with the
 * logical times it began and ended.  A read may return the data of a write
 * that began before the read ended and was not overwritten for certain
 * before the read began (a later write that began after it ended and
 * ended before the read began); a discard may leave either zeros or what
 * was there, so it never overwrites for certain.  That is what a real
 * disk allows for concurrent requests and nothing more.  Every sector a
 * write fills carries the write's id and the sector number, so a read
 * names the write it saw.  INITIAL.raw is what the disk holds at the start
 * (backing files, compressed or snapshot-shared clusters); zeros without.
 *
 * At the end the image is flushed, closed, reopened and read whole: each
 * sector must be a value the model allows after every request ended, and
 * what was read goes to FINAL.raw, for qemu-img compare to read back
 * another way.  Exit status 0: every read was allowed.  A read that was
 * not is reported with the last requests the model holds for its sector,
 * where the image maps the sector now, and the seed. */
#include "block/block.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEC 512u
#define MAX_SECS 512u  /* the longest request: 256 KiB */

enum { K_DATA, K_ZERO, K_DISCARD };

struct ent {
    uint32_t id;
    uint8_t kind;
    uint64_t start, end; /* end UINT64_MAX while in flight */
};

struct hist {
    struct ent *e;
    uint32_t n, cap;
};

static BlockDriverState *bs;
static uint64_t nsec;
static struct hist *hist;
static uint8_t *init_data; /* nsec * SEC, NULL: zeros */
static pthread_mutex_t model_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t clock_now;
static uint32_t next_id = 2; /* 0 zero, 1 the initial contents */
static int nthreads = 4;
static bool torn_noise; /* encrypted: a torn sector decrypts to noise */
static uint64_t nops = 2000;
static int failed; /* atomic */
static uint64_t counts[5];

static uint64_t tick(void)
{
    return __atomic_add_fetch(&clock_now, 1, __ATOMIC_SEQ_CST);
}

static void gen(uint32_t id, uint64_t s, uint8_t *p)
{
    memcpy(p, &id, 4);
    memcpy(p + 4, &s, 8);
    for (unsigned i = 12; i < SEC; i++)
        p[i] = (uint8_t)(id * 131 + s * 7 + i);
}

static bool is_zero(const uint8_t *p)
{
    for (unsigned i = 0; i < SEC; i++)
        if (p[i])
            return false;
    return true;
}

static bool matches_init(uint64_t s, const uint8_t *p)
{
    return init_data ? !memcmp(p, init_data + s * SEC, SEC) : is_zero(p);
}

/* ---- the model ---- */

static uint32_t model_begin(uint64_t s0, uint64_t n, int kind, uint64_t *start)
{
    pthread_mutex_lock(&model_mu);
    uint32_t id = next_id++;
    *start = tick();
    for (uint64_t s = s0; s < s0 + n; s++) {
        struct hist *h = &hist[s];
        if (h->n == h->cap) {
            h->cap = h->cap ? h->cap * 2 : 8;
            h->e = realloc(h->e, h->cap * sizeof(*h->e));
            if (!h->e)
                abort();
        }
        h->e[h->n++] = (struct ent){id, (uint8_t)kind, *start, UINT64_MAX};
    }
    pthread_mutex_unlock(&model_mu);
    return id;
}

static void model_end(uint32_t id, uint64_t s0, uint64_t n, bool ok)
{
    pthread_mutex_lock(&model_mu);
    uint64_t end = tick();
    for (uint64_t s = s0; s < s0 + n; s++) {
        struct hist *h = &hist[s];
        for (uint32_t i = h->n; i-- > 0;) {
            if (h->e[i].id == id) {
                /* a failed request leaves its range undefined: drop it
                 * would be wrong (it may have written); keep it in flight
                 * for ever so every later read may see it */
                h->e[i].end = ok ? end : UINT64_MAX;
                break;
            }
        }
    }
    pthread_mutex_unlock(&model_mu);
}

/* May sector s read as p for a read that began at rs and ended at re? */
static bool allowed(uint64_t s, const uint8_t *p, uint64_t rs, uint64_t re, char *why, size_t wl)
{
    struct hist *h = &hist[s];
    uint64_t m = 0; /* start of the last write certainly done before rs */
    for (uint32_t i = 0; i < h->n; i++) {
        const struct ent *e = &h->e[i];
        if (e->kind != K_DISCARD && e->end < rs && e->start > m)
            m = e->start;
    }
    if (m == 0 && matches_init(s, p))
        return true;
    bool zero = is_zero(p), overlapped = false;
    uint32_t id;
    memcpy(&id, p, 4);
    for (uint32_t i = 0; i < h->n; i++) {
        const struct ent *e = &h->e[i];
        if (e->start >= re || e->end < m)
            continue;
        if (e->end > rs)
            overlapped = true;
        if (e->kind == K_DATA && e->id == id) {
            uint8_t want[SEC];
            gen(id, s, want);
            if (!memcmp(want, p, SEC))
                return true;
        }
        if (e->kind != K_DATA && zero)
            return true;
    }
    /* A read that overlapped a write of the sector may see part of each:
     * the host's page cache copies concurrent reads and writes of a page
     * with no lock between them (QEMU's guests get the same).  Each byte
     * must still come from a write the read may see.  Encrypted sectors
     * torn that way decrypt to noise: nothing can be said of them. */
    if (overlapped && torn_noise)
        return true;
    if (overlapped) {
        /* every candidate: a read held up while the other threads write
         * the sector again and again may have many */
        uint32_t cap = h->n + 1, nc = 0;
        uint8_t *cand = malloc((size_t)cap * SEC);
        if (!cand)
            abort();
        if (m == 0) {
            if (init_data)
                memcpy(cand, init_data + s * SEC, SEC);
            else
                memset(cand, 0, SEC);
            nc++;
        }
        for (uint32_t i = 0; i < h->n; i++) {
            const struct ent *e = &h->e[i];
            if (e->start >= re || e->end < m)
                continue;
            if (e->kind == K_DATA)
                gen(e->id, s, cand + (size_t)nc++ * SEC);
            else
                memset(cand + (size_t)nc++ * SEC, 0, SEC);
        }
        unsigned b = 0;
        for (; b < SEC; b++) {
            uint32_t c = 0;
            while (c < nc && cand[(size_t)c * SEC + b] != p[b])
                c++;
            if (c == nc)
                break;
        }
        free(cand);
        if (b == SEC)
            return true;
    }
    uint64_t of;
    memcpy(&of, p + 4, 8);
    snprintf(why, wl, "sector %" PRIu64 " (byte 0x%" PRIx64 ") reads %s%s (id %u, for sector %"
             PRIu64 ") during [%" PRIu64 ", %" PRIu64 "], %u writes on it, last certain at %"
             PRIu64, s, s * SEC, zero ? "zeros" : "data", matches_init(s, p) ? " = initial" : "",
             id, of, rs, re, h->n, m);
    return false;
}

/* After a sector read wrong (why): what the model holds for it, and where
 * the image has it now, for the report (the model's lock held). */
static void explain(uint64_t s, const char *why)
{
    static const char *const kinds[] = {"write", "zero write", "discard"};
    const struct hist *h = &hist[s];
    fprintf(stderr, "blk-stress: %s\n", why);
    uint32_t from = h->n > 16 ? h->n - 16 : 0;
    if (from)
        fprintf(stderr, "blk-stress:   (%u earlier requests on it)\n", from);
    for (uint32_t i = from; i < h->n; i++) {
        const struct ent *e = &h->e[i];
        if (e->end == UINT64_MAX)
            fprintf(stderr, "blk-stress:   %s id %u [%" PRIu64 ", in flight]\n", kinds[e->kind],
                    e->id, e->start);
        else
            fprintf(stderr, "blk-stress:   %s id %u [%" PRIu64 ", %" PRIu64 "]\n", kinds[e->kind],
                    e->id, e->start, e->end);
    }
    uint64_t pnum = 0, host = 0;
    int st = blk_block_status(bs, s * SEC, SEC, &pnum, &host);
    if (st < 0)
        fprintf(stderr, "blk-stress:   block status now: error %d\n", st);
    else
        fprintf(stderr, "blk-stress:   block status now: %#x, host offset 0x%" PRIx64 "\n", st,
                (st & BLK_STATUS_OFFSET) ? host : 0);
}

/* ---- workers ---- */

struct worker {
    int id;
    uint64_t rng;
    uint8_t *buf;
};

static uint64_t rnd(struct worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

/* A random range: half inside the thread's quarter, half anywhere;
 * 4 KiB-aligned half of the time. */
static void pick(struct worker *w, uint64_t max_secs, uint64_t *s0, uint64_t *n)
{
    uint64_t lo = 0, span = nsec;
    if (rnd(w) & 1) {
        span = nsec / nthreads;
        lo = span * (uint64_t)w->id;
    }
    *n = 1 + rnd(w) % max_secs;
    if (*n > span)
        *n = span;
    *s0 = lo + rnd(w) % (span - *n + 1);
    if (rnd(w) & 1) {
        *s0 &= ~7ull;
        *n = (*n + 7) & ~7ull;
        if (*s0 + *n > lo + span)
            *n = lo + span - *s0;
    }
}

static void report(const char *what, int r)
{
    fprintf(stderr, "blk-stress: %s failed: %s (%s)\n", what, strerror(-r), blk_error());
    __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    char why[256];
    for (uint64_t op = 0; op < nops && !__atomic_load_n(&failed, __ATOMIC_RELAXED); op++) {
        uint64_t s0, n, start;
        int kind = (int)(rnd(w) % 20);
        int r;
        if (kind < 7) { /* read */
            pick(w, MAX_SECS, &s0, &n);
            uint64_t rs = tick();
            r = blk_pread(bs, s0 * SEC, w->buf, n * SEC);
            uint64_t re = tick();
            if (r < 0) {
                report("read", r);
                break;
            }
            pthread_mutex_lock(&model_mu);
            for (uint64_t i = 0; i < n; i++) {
                if (!allowed(s0 + i, w->buf + i * SEC, rs, re, why, sizeof(why))) {
                    fprintf(stderr, "blk-stress: thread %d read of sectors %" PRIu64 "+%" PRIu64
                            " went wrong:\n", w->id, s0, n);
                    explain(s0 + i, why);
                    __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
                    break;
                }
            }
            pthread_mutex_unlock(&model_mu);
            __atomic_add_fetch(&counts[0], 1, __ATOMIC_RELAXED);
        } else if (kind < 14) { /* write */
            pick(w, MAX_SECS, &s0, &n);
            uint32_t id = model_begin(s0, n, K_DATA, &start);
            for (uint64_t i = 0; i < n; i++)
                gen(id, s0 + i, w->buf + i * SEC);
            r = blk_pwrite(bs, s0 * SEC, w->buf, n * SEC);
            model_end(id, s0, n, r == 0);
            if (r < 0)
                report("write", r);
            __atomic_add_fetch(&counts[1], 1, __ATOMIC_RELAXED);
        } else if (kind < 16) { /* zero write */
            pick(w, MAX_SECS, &s0, &n);
            uint32_t id = model_begin(s0, n, K_ZERO, &start);
            r = blk_pwrite_zeroes(bs, s0 * SEC, n * SEC, rnd(w) & 1 ? BLK_ZERO_MAY_UNMAP : 0);
            model_end(id, s0, n, r == 0);
            if (r < 0)
                report("zero write", r);
            __atomic_add_fetch(&counts[2], 1, __ATOMIC_RELAXED);
        } else if (kind < 19) { /* discard, often of whole 64 KiB clusters */
            pick(w, MAX_SECS, &s0, &n);
            if (rnd(w) & 1) {
                s0 &= ~127ull;
                n = 128 * (1 + rnd(w) % 2);
                if (s0 + n > nsec)
                    n = nsec - s0;
            }
            uint32_t id = model_begin(s0, n, K_DISCARD, &start);
            r = blk_discard(bs, s0 * SEC, n * SEC);
            model_end(id, s0, n, true);
            if (r < 0 && r != -ENOTSUP)
                report("discard", r);
            __atomic_add_fetch(&counts[3], 1, __ATOMIC_RELAXED);
        } else {
            if ((r = blk_flush(bs)) < 0)
                report("flush", r);
            __atomic_add_fetch(&counts[4], 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

/* -F FMT: the image's host file is a node of format FMT over path
 * (driver=FORMAT,file.driver=FMT,file.file.filename=PATH) */
static const char *file_fmt;

static BlockDriverState *open_image(const char *path, const char *fmt, int flags,
                                    const char *secret)
{
    BlockOptions o = {0};
    if (secret)
        blkopts_set(&o, "encrypt.key-secret", secret);
    if (file_fmt) {
        blkopts_set(&o, "file.driver", file_fmt);
        blkopts_set(&o, "file.file.filename", path);
    }
    BlockDriverState *b = blk_open(file_fmt ? NULL : path, fmt, flags, o.n ? &o : NULL);
    blkopts_free(&o);
    if (!b)
        fprintf(stderr, "blk-stress: %s\n", blk_error());
    return b;
}

int main(int argc, char **argv)
{
    const char *fmt = NULL, *init = NULL, *out = NULL, *secret = NULL;
    uint64_t seed = 1;
    int flags = BLK_O_RDWR, opt;
    while ((opt = getopt(argc, argv, "t:n:s:f:F:Nk:i:o:")) != -1) {
        switch (opt) {
        case 't': nthreads = atoi(optarg); break;
        case 'n': nops = strtoull(optarg, NULL, 0); break;
        case 's': seed = strtoull(optarg, NULL, 0); break;
        case 'f': fmt = optarg; break;
        case 'F': file_fmt = optarg; break;
        case 'N': flags |= BLK_O_NOCACHE; break;
        case 'k': secret = optarg; torn_noise = true; break;
        case 'i': init = optarg; break;
        case 'o': out = optarg; break;
        default: return 2;
        }
    }
    if (argc - optind != 1 || nthreads < 1 || nthreads > 64)
        return 2;
    const char *path = argv[optind];
    if (!(bs = open_image(path, fmt, flags, secret)))
        return 1;
    nsec = bs->size / SEC;
    if (nsec < (uint64_t)nthreads * 16) {
        fprintf(stderr, "blk-stress: the image is too small\n");
        return 2;
    }
    hist = calloc(nsec, sizeof(*hist));
    if (init) {
        int fd = open(init, O_RDONLY);
        init_data = calloc(nsec, SEC);
        if (fd < 0 || !init_data || blk_file_pread(fd, init_data, nsec * SEC, 0) < 0) {
            perror(init);
            return 1;
        }
        close(fd);
    }
    pthread_t th[64];
    struct worker w[64];
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.id = i,
                               .rng = (seed * 0x9e3779b97f4a7c15ULL) ^ (i + 1) * 0x1234567ULL,
                               .buf = malloc(MAX_SECS * SEC)};
        for (int k = 0; k < 8; k++)
            rnd(&w[i]);
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    int r = blk_flush(bs);
    if (r < 0)
        report("final flush", r);
    blk_close(bs);
    if (failed) {
        fprintf(stderr, "blk-stress: failed: seed %" PRIu64 ", %d threads, %" PRIu64
                " requests each\n", seed, nthreads, nops);
        return 1;
    }
    /* what every request left, read from a fresh open */
    if (!(bs = open_image(path, fmt, flags & ~BLK_O_RDWR, secret)))
        return 1;
    uint8_t *all = malloc(nsec * SEC);
    char why[256];
    if (!all || (r = blk_pread(bs, 0, all, nsec * SEC)) < 0) {
        report("final read", r);
        return 1;
    }
    uint64_t t = tick(), bad = 0;
    for (uint64_t s = 0; s < nsec; s++) {
        if (!allowed(s, all + s * SEC, t, t, why, sizeof(why))) {
            if (bad++ < 3) {
                fprintf(stderr, "blk-stress: after reopen:\n");
                explain(s, why);
            }
        }
    }
    if (bad) {
        fprintf(stderr, "blk-stress: %" PRIu64 " sectors wrong after reopen (seed %" PRIu64
                ", %d threads, %" PRIu64 " requests each)\n", bad, seed, nthreads, nops);
        return 1;
    }
    if (out) {
        int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY, 0644);
        if (fd < 0 || blk_file_pwrite(fd, all, nsec * SEC, 0) < 0) {
            perror(out);
            return 1;
        }
        close(fd);
    }
    blk_close(bs);
    free(all);
    for (uint64_t i = 0; i < nsec; i++)
        free(hist[i].e);
    free(hist);
    free(init_data);
    for (int i = 0; i < nthreads; i++)
        free(w[i].buf);
    printf("blk-stress: %d threads: %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64
           " zero writes, %" PRIu64 " discards, %" PRIu64 " flushes; every read allowed\n",
           nthreads, counts[0], counts[1], counts[2], counts[3], counts[4]);
    return 0;
}
