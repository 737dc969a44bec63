/* calf-img convert: qemu-img convert's options, messages and exit codes.
 *
 * The sources are one concatenated address space, cut into chunks of
 * 2 MiB (a multiple of every cluster size).  -m N worker threads each take
 * the next chunk, ask the source chain what it holds (block status), read
 * only the data ranges, find zero blocks at -S granularity and write the
 * rest.  Zeros stay unallocated in a target that reads as zeros after
 * creation.  Without -W (and without -c) chunks are written in order so
 * that a new qcow2 target is laid out sequentially; reads, decompression
 * and zero detection still run in parallel.  (Writing a raw target from
 * all workers at once gains nothing: buffered writes to one file take
 * the inode lock in turn, and contending for it cost more CPU than it
 * saved.)  With -c every thread compresses its own clusters. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/img/img.h"
#include "block/tool-util.h"

#define CONVERT_CHUNK (2u << 20)
/* -c: compression, not I/O, is the cost; small chunks keep memory low */
#define CONVERT_CHUNK_COMPRESSED (256u << 10)
#define MAX_WORKERS 16

typedef struct Convert {
    int nsrc;
    BlockDriverState **src;
    uint64_t *src_start;       /* offset of each source in the concatenation */
    uint64_t total;            /* bytes to convert */
    BlockDriverState *dst;
    uint64_t dst_cluster;      /* target cluster size (compression unit) */
    uint64_t chunk;            /* bytes per work item */
    uint64_t min_sparse;       /* -S in bytes; 0 writes everything */
    bool compressed;
    bool zero_init;            /* the target reads as zeros where not written */
    bool target_backing;       /* -B: compare against the target's backing */
    bool src_has_backing;
    bool ordered;              /* !-W */
    bool progress;
    bool use_map;              /* read data through blk_map_host (no -c, no -B) */
    bool offload;              /* the target takes mapped data by copy offload */
    bool no_scan;              /* -C: data is copied as it is, zeros and all */

    pthread_mutex_t lock;
    /* In order: the worker waiting to write chunk i sleeps on waiter[i %
     * nworkers] (the chunks in flight are consecutive and one per worker),
     * so that each write wakes only the next writer, not every worker. */
    pthread_cond_t *waiter[MAX_WORKERS];
    int nworkers;
    uint64_t next_chunk, nchunks, written; /* written: chunks done in order */
    int err;                   /* first error, reported by the main thread */
    uint64_t err_chunk;        /* the chunk it came from (UINT64_MAX: none) */
    char errmsg[1024];
    double last_progress;
} Convert;

static void convert_fail(Convert *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The chunk this worker thread is on (UINT64_MAX outside a worker). */
static __thread uint64_t cur_chunk = UINT64_MAX;

static void convert_fail(Convert *c, int err, const char *fmt, ...)
{
    pthread_mutex_lock(&c->lock);
    /* workers fail in any order: the error reported is the one at the
     * lowest offset, as qemu-img's (which meets them in order) */
    if (!c->err || cur_chunk < c->err_chunk) {
        c->err_chunk = cur_chunk;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
        va_end(ap);
        c->err = err ? err : -EIO;
    }
    for (int i = 0; i < c->nworkers; i++)
        if (c->waiter[i])
            pthread_cond_signal(c->waiter[i]);
    pthread_mutex_unlock(&c->lock);
}

/* The source holding byte off of the concatenation. */
static int src_index(const Convert *c, uint64_t off)
{
    int i = c->nsrc - 1;
    while (i > 0 && c->src_start[i] > off)
        i--;
    return i;
}

/* Status of [off, off+len) of the concatenation, for the first *pnum
 * bytes: 1 = data to read, 0 = reads as zeros, 2 = comes from the
 * source's backing file (only asked for with -B).  Data a host file holds
 * as it is sets *file (else NULL) and *host, for blk_map_host. */
static int src_status(Convert *c, uint64_t off, uint64_t len, uint64_t *pnum,
                      BlockDriverState **file, uint64_t *host)
{
    *file = NULL;
    int i = src_index(c, off);
    BlockDriverState *bs = c->src[i];
    uint64_t soff = off - c->src_start[i];
    uint64_t end = i + 1 < c->nsrc ? c->src_start[i + 1] : c->total;
    if (len > end - off)
        len = end - off;
    if (soff >= bs->size) {
        *pnum = len; /* the padding to a whole sector */
        return 0;
    }
    if (len > bs->size - soff)
        len = bs->size - soff;
    int depth = 0;
    BlockDriverState *layer = NULL;
    int st = blk_block_status_above(bs, soff, len, pnum, host, &depth, &layer);
    if (st < 0)
        return st;
    if (blk_status_mappable(st))
        *file = layer;
    if (*pnum == 0 || *pnum > len)
        *pnum = len;
    if (c->target_backing && depth > 0 && c->src_has_backing)
        return 2;
    if (st & BLK_STATUS_ZERO)
        return 0;
    return 1;
}

static int src_read(Convert *c, uint64_t off, uint8_t *buf, uint64_t len)
{
    while (len) {
        int i = src_index(c, off);
        BlockDriverState *bs = c->src[i];
        uint64_t soff = off - c->src_start[i];
        uint64_t end = i + 1 < c->nsrc ? c->src_start[i + 1] : c->total;
        uint64_t n = end - off < len ? end - off : len;
        uint64_t avail = soff < bs->size ? bs->size - soff : 0;
        if (avail > n)
            avail = n;
        int r = avail ? blk_pread(bs, soff, buf, avail) : 0;
        if (r < 0)
            return r;
        memset(buf + avail, 0, n - avail);
        off += n;
        buf += n;
        len -= n;
    }
    return 0;
}

static uint64_t qround_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static bool buf_is_zero(const uint8_t *p, size_t len)
{
    const uint64_t *q = (const uint64_t *)p;
    size_t n = len / 8;
    /* 4 words per step: the loop the compiler turns into vector ORs */
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] | q[i + 7])
            return false;
    for (; i < n; i++)
        if (q[i])
            return false;
    for (size_t j = n * 8; j < len; j++)
        if (p[j])
            return false;
    return true;
}

typedef struct Worker {
    Convert *c;
    pthread_cond_t turn;     /* signalled when the chunk before ours is written */
    uint8_t *buf, *bbuf;     /* chunk data; the target backing's data (-B) */
    uint8_t *kind;           /* per -S block (or 512 B): 0 zero, 1 data, 2 skip */
    /* The parts of the chunk read through the source's mapping, in order
     * (whole units each); the rest of the chunk is in buf. */
    struct seg { uint64_t rel, len; const uint8_t *p; int src; } *seg;
    int nseg;
    struct iovec *iov;       /* for writing a run that spans parts */
    /* per unit: the buffer has held data there (its pages are resident);
     * such units are read into it again rather than mapped, so that a
     * worker keeps about one chunk resident, not a buffer and a mapping */
    uint8_t *touched;
} Worker;

/* Marks the units of the buffer that [rel, rel+len) of the chunk wrote:
 * those pages are resident from now on. */
static void touch(Worker *w, uint64_t rel, uint64_t len, uint64_t unit)
{
    if (len)
        memset(w->touched + rel / unit, 1, (rel + len - 1) / unit - rel / unit + 1);
}

/* The mapped part that holds chunk offset rel, or -1 (then it is in the
 * buffer) with *next the chunk offset where the next mapped part starts
 * (or UINT64_MAX). */
static int seg_at(const Worker *w, uint64_t rel, uint64_t *next)
{
    *next = UINT64_MAX;
    for (int i = 0; i < w->nseg; i++) {
        if (rel >= w->seg[i].rel && rel < w->seg[i].rel + w->seg[i].len)
            return i;
        if (w->seg[i].rel > rel && w->seg[i].rel < *next)
            *next = w->seg[i].rel;
    }
    return -1;
}

/* Where the bytes of the chunk at chunk offset rel are (a whole unit is
 * in one place). */
static const uint8_t *chunk_ptr(const Worker *w, uint64_t rel)
{
    uint64_t next;
    int k = seg_at(w, rel, &next);
    return k < 0 ? w->buf + rel : w->seg[k].p + (rel - w->seg[k].rel);
}

/* Reads the data [pos, pos+n) of the chunk at off (one source's, which
 * [host, host+n) of layer file's host file holds as it is, if file):
 * whole units come straight from that file's mapping (blk_map_host: no
 * copy through this buffer, and the write copies from the page cache
 * itself); the rest is read into w->buf. */
static int read_data(Worker *w, uint64_t off, uint64_t chunk_end, uint64_t unit,
                     uint64_t pos, uint64_t n, BlockDriverState *file, uint64_t host)
{
    Convert *c = w->c;
    uint64_t start = pos, end = pos + n;
    while (pos < end) {
        uint64_t rel = pos - off, m = end - pos;
        const uint8_t *p = NULL;
        int i = 0;
        if (!file) {
            /* not stored as it is: all through the buffer */
        } else if (rel % unit) {
            if (qround_up(rel, unit) - rel < m)
                m = qround_up(rel, unit) - rel; /* to the next unit */
        } else if (w->touched[rel / unit]) {
            uint64_t u = rel / unit + 1;        /* the run of such units */
            while (u * unit < end - off && w->touched[u])
                u++;
            if (u * unit - rel < m)
                m = u * unit - rel;
        } else {
            i = src_index(c, pos);
            p = blk_map_host(file, host + (pos - start), m, c->no_scan ? BLK_MAP_LAZY : 0);
            if (p && pos + m != chunk_end) {
                uint64_t t = (rel + m) % unit; /* a unit cut short stays in buf */
                if (t == m)
                    p = NULL;
                else
                    m -= t;
            }
        }
        if (p) {
            w->seg[w->nseg++] = (struct seg){ rel, m, p, i };
        } else {
            int r = src_read(c, pos, w->buf + rel, m);
            if (r < 0)
                return r;
            touch(w, rel, m, unit);
        }
        pos += m;
    }
    return 0;
}

/* Fills w->buf with the chunk and w->kind per unit of `unit` bytes. */
static int load_chunk(Worker *w, uint64_t off, uint64_t len, uint64_t unit)
{
    Convert *c = w->c;
    uint64_t pos = off;
    while (pos < off + len) {
        uint64_t n, host = 0;
        BlockDriverState *file;
        int st = src_status(c, pos, off + len - pos, &n, &file, &host);
        if (st < 0) {
            convert_fail(c, st, "error while reading block status at offset %" PRIu64 ": %s",
                         pos, blk_error());
            return st;
        }
        uint8_t *p = w->buf + (pos - off);
        /* -c -B: a cluster may mix both; the backing's part is read too */
        if (st == 1 || (st == 2 && c->compressed)) {
            int r = c->use_map && st == 1 ? read_data(w, off, off + len, unit, pos, n, file, host)
                                          : src_read(c, pos, p, n);
            if (r < 0) {
                /* EACCES: an encrypted image without its key; say so */
                convert_fail(c, r, "error while reading at byte %" PRIu64 ": %s", pos,
                             r == -EACCES ? blk_error() : strerror(-r));
                return r;
            }
        } else {
            /* Zeros.  A unit wholly inside the range is never written
             * from the buffer (unless -S 0, -c or -B read it), so only the
             * ends that share a unit with data need the bytes. */
            uint64_t a = qround_up(pos - off, unit) + off, b = (pos - off + n) / unit * unit + off;
            if (st == 2) {
                /* -B, the backing's part: its whole units are skipped,
                 * never compared or written, so only the ends that share
                 * a unit with other data need bytes (read below) */
            } else if (!c->min_sparse || c->compressed || c->target_backing || a >= b) {
                memset(p, 0, n);
                touch(w, pos - off, n, unit);
            } else {
                memset(p, 0, a - pos);
                memset(w->buf + (b - off), 0, pos + n - b);
                touch(w, pos - off, a - pos, unit);
                touch(w, b - off, pos + n - b, unit);
            }
            /* a unit that mixes backing and other data is written whole:
             * its backing part must hold the real bytes */
            int r = 0;
            if (st == 2 && a > pos)
                r = src_read(c, pos, p, (a < pos + n ? a : pos + n) - pos);
            if (st == 2 && r == 0 && b < pos + n && b >= a)
                r = src_read(c, b, w->buf + (b - off), pos + n - b);
            if (r < 0) {
                convert_fail(c, r, "error while reading at byte %" PRIu64 ": %s", pos,
                             strerror(-r));
                return r;
            }
        }
        /* units touched: data wins over zero, a mix of skip and others is data */
        for (uint64_t u = (pos - off) / unit; u <= (pos - off + n - 1) / unit; u++) {
            uint8_t k = st == 1 ? 1 : st == 2 ? 2 : 0;
            uint64_t us = off + u * unit, ue = us + unit;
            bool partial = us < pos || ue > pos + n;
            if (!partial || w->kind[u] == 0xff)
                w->kind[u] = k;
            else if (w->kind[u] != k)
                w->kind[u] = 1;
        }
        pos += n;
    }
    return 0;
}

static int write_data(Convert *c, uint64_t off, const uint8_t *p, uint64_t n)
{
    int r = blk_pwrite(c->dst, off, p, n);
    if (r < 0)
        convert_fail(c, r, "error while writing at byte %" PRIu64 ": %s", off, strerror(-r));
    return r;
}

/* Writes the data [s, e) of the chunk at off, wherever it is: a mapped
 * part by copy offload where the target takes it (a raw file, or new
 * whole clusters of a plain qcow2, on a filesystem that shares blocks: a
 * reflink, nothing copied), the rest gathered into one vectored write. */
static int write_units(Worker *w, uint64_t off, uint64_t s, uint64_t e)
{
    Convert *c = w->c;
    if (!w->nseg)
        return write_data(c, s, w->buf + (s - off), e - s);
    int n = 0, r = 0;
    uint64_t vs = s;                       /* where the gathered vector starts */
    for (uint64_t pos = s; pos < e && r == 0;) {
        uint64_t rel = pos - off, next;
        int k = seg_at(w, rel, &next);
        const uint8_t *p = k < 0 ? w->buf + rel : w->seg[k].p + (rel - w->seg[k].rel);
        /* to the end of this mapped part, or of the buffer's part */
        uint64_t pe = k < 0 ? next : w->seg[k].rel + w->seg[k].len;
        pe = pe < e - off ? off + pe : e;
        if (k >= 0 && __atomic_load_n(&c->offload, __ATOMIC_RELAXED)) {
            if (n && (r = blk_pwritev(c->dst, vs, w->iov, n)) < 0)
                break;
            n = 0;
            vs = pos;
            r = blk_copy_mapped(c->dst, pos, c->src[w->seg[k].src], p, pe - pos);
            if (r >= 0) {
                if (r == 1) /* copied, not shared: writing is cheaper */
                    __atomic_store_n(&c->offload, false, __ATOMIC_RELAXED);
                r = 0;
                pos = vs = pe;
                continue;
            }
            if (r != -ENOTSUP && r != -EINVAL)
                break;
            if (r == -ENOTSUP)
                __atomic_store_n(&c->offload, false, __ATOMIC_RELAXED);
            r = 0;
        }
        /* (blk_pwritev joins parts that follow each other in memory) */
        w->iov[n++] = (struct iovec){ (uint8_t *)p, pe - pos };
        pos = pe;
    }
    if (r == 0 && n)
        r = blk_pwritev(c->dst, vs, w->iov, n);
    if (r < 0)
        convert_fail(c, r, "error while writing at byte %" PRIu64 ": %s", s, strerror(-r));
    return r;
}

static int write_zero(Convert *c, uint64_t off, uint64_t n)
{
    if (c->zero_init)
        return 0;
    int r = blk_pwrite_zeroes(c->dst, off, n, BLK_ZERO_MAY_UNMAP);
    if (r < 0)
        convert_fail(c, r, "error while writing at byte %" PRIu64 ": %s", off, strerror(-r));
    return r;
}

/* -c: each target cluster is skipped when zero, else written compressed. */
static int store_compressed(Worker *w, uint64_t off, uint64_t len)
{
    Convert *c = w->c;
    uint64_t cs = c->dst_cluster;
    for (uint64_t pos = off; pos < off + len; pos += cs) {
        uint64_t n = off + len - pos < cs ? off + len - pos : cs;
        const uint8_t *p = w->buf + (pos - off);
        uint64_t unit = c->min_sparse ? c->min_sparse : BLK_SECTOR_SIZE;
        bool from_backing = true;
        for (uint64_t u = (pos - off) / unit; u <= (pos - off + n - 1) / unit; u++)
            if (w->kind[u] != 2)
                from_backing = false;
        if (from_backing)
            continue;
        /* -S 0 keeps the target fully allocated: zeros go in compressed too */
        if (c->min_sparse && buf_is_zero(p, n)) {
            if (write_zero(c, pos, n) < 0)
                return -1;
            continue;
        }
        uint64_t wn = n;
        if (n < cs && pos + n < c->dst->size) {
            /* the source ends inside the target's last cluster: pad */
            wn = c->dst->size - pos < cs ? c->dst->size - pos : cs;
            memset(w->buf + (pos - off) + n, 0, wn - n);
        }
        int r = blk_pwrite_compressed(c->dst, pos, p, wn);
        if (r < 0) {
            convert_fail(c, r, "error while writing at byte %" PRIu64 ": %s", pos, strerror(-r));
            return r;
        }
    }
    return 0;
}

/* -B: the target's backing supplies what we skip, so only units that
 * differ from it are written. */
static void diff_backing(Worker *w, uint64_t off, uint64_t len, uint64_t unit, int nunits)
{
    Convert *c = w->c;
    BlockDriverState *b = c->dst->backing;
    uint64_t bsize = b ? b->size : 0;
    for (int u = 0; u < nunits; u++) {
        if (w->kind[u] == 2)
            continue;
        uint64_t us = off + (uint64_t)u * unit, n = off + len - us < unit ? off + len - us : unit;
        const uint8_t *p = w->buf + (us - off);
        if (us >= bsize) {
            if (w->kind[u] == 0 || buf_is_zero(p, n))
                w->kind[u] = 2;
            continue;
        }
        uint64_t bn = bsize - us < n ? bsize - us : n;
        if (blk_pread(b, us, w->bbuf, bn) < 0) {
            w->kind[u] = 1; /* cannot tell: write it */
            continue;
        }
        if (!memcmp(p, w->bbuf, bn) && (bn == n || buf_is_zero(p + bn, n - bn)))
            w->kind[u] = 2;
    }
}

/* Writes the chunk: runs of data units, zero units and skipped units. */
static int store_chunk(Worker *w, uint64_t off, uint64_t len, uint64_t unit, int nunits)
{
    Convert *c = w->c;
    for (int u = 0; u < nunits;) {
        uint8_t k = w->kind[u];
        int v = u + 1;
        while (v < nunits && w->kind[v] == k)
            v++;
        uint64_t s = off + (uint64_t)u * unit;
        uint64_t e = off + (uint64_t)v * unit;
        if (e > off + len)
            e = off + len;
        int r = 0;
        if (k == 1)
            r = write_units(w, off, s, e);
        else if (k == 0)
            r = write_zero(c, s, e - s);
        if (r < 0)
            return r;
        u = v;
    }
    return 0;
}

static int process_chunk(Worker *w, uint64_t idx)
{
    Convert *c = w->c;
    uint64_t off = idx * c->chunk;
    uint64_t len = c->total - off < c->chunk ? c->total - off : c->chunk;
    uint64_t unit = c->min_sparse ? c->min_sparse : BLK_SECTOR_SIZE;
    int nunits = (int)((len + unit - 1) / unit);
    memset(w->kind, 0xff, nunits);
    w->nseg = 0;
    if (load_chunk(w, off, len, unit) < 0)
        return -1;
    if (!c->compressed) {
        for (int u = 0; u < nunits; u++) {
            uint64_t us = (uint64_t)u * unit;
            uint64_t n = len - us < unit ? len - us : unit;
            if (!c->min_sparse)
                w->kind[u] = w->kind[u] == 2 ? 2 : 1; /* -S 0: write everything */
            else if (w->kind[u] == 1 && !c->no_scan && buf_is_zero(chunk_ptr(w, us), n))
                w->kind[u] = 0;
        }
        if (c->target_backing)
            diff_backing(w, off, len, unit, nunits);
    }
    if (c->ordered && !c->compressed) {
        pthread_mutex_lock(&c->lock);
        c->waiter[idx % c->nworkers] = &w->turn;
        while (c->written != idx && !c->err)
            pthread_cond_wait(&w->turn, &c->lock);
        c->waiter[idx % c->nworkers] = NULL;
        pthread_mutex_unlock(&c->lock);
        if (c->err)
            return -1;
    }
    int r = c->compressed ? store_compressed(w, off, len) : store_chunk(w, off, len, unit, nunits);
    /* the mapped source pages leave the resident set with the chunk */
    for (int i = 0; i < w->nseg; i++)
        blk_map_done(c->src[w->seg[i].src], w->seg[i].p, w->seg[i].len);
    return r;
}

static void show_progress(Convert *c, bool force)
{
    double pct = c->nchunks ? 100.0 * (double)c->written / (double)c->nchunks : 100.0;
    if (!force && pct - c->last_progress < 1.0)
        return;
    c->last_progress = pct;
    printf("    (%3.2f/100%%)\r", pct);
    fflush(stdout);
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    Convert *c = w->c;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        if (c->err || c->next_chunk >= c->nchunks) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        uint64_t idx = c->next_chunk++;
        pthread_mutex_unlock(&c->lock);
        cur_chunk = idx;
        if (process_chunk(w, idx) < 0)
            break;
        pthread_mutex_lock(&c->lock);
        if (c->ordered && !c->compressed) {
            c->written = idx + 1;
            pthread_cond_t *next = c->waiter[(idx + 1) % c->nworkers];
            if (next)
                pthread_cond_signal(next);
        } else {
            c->written++;
        }
        if (c->progress)
            show_progress(c, false);
        pthread_mutex_unlock(&c->lock);
    }
    return NULL;
}

static int run_workers(Convert *c, int nworkers)
{
    Worker w[MAX_WORKERS];
    pthread_t t[MAX_WORKERS];
    uint64_t unit = c->min_sparse ? c->min_sparse : BLK_SECTOR_SIZE;
    size_t nunits = c->chunk / unit + 2;
    int started = 0;
    c->nchunks = (c->total + c->chunk - 1) / c->chunk;
    if ((uint64_t)nworkers > c->nchunks)
        nworkers = c->nchunks ? (int)c->nchunks : 1;
    c->nworkers = nworkers;
    for (int i = 0; i < nworkers; i++) {
        w[i].c = c;
        pthread_cond_init(&w[i].turn, NULL);
        w[i].kind = malloc(nunits);
        w[i].seg = malloc(nunits * sizeof(*w[i].seg));
        w[i].touched = calloc(nunits, 1);
        w[i].iov = malloc(nunits * sizeof(*w[i].iov));
        w[i].bbuf = c->target_backing ? malloc(unit) : NULL;
        /* room for padding a short last cluster under -c */
        if (posix_memalign((void **)&w[i].buf, 4096, c->chunk + c->dst_cluster) != 0)
            w[i].buf = NULL;
        if (!w[i].kind || !w[i].seg || !w[i].iov || !w[i].touched || !w[i].buf ||
            (c->target_backing && !w[i].bbuf)) {
            convert_fail(c, -ENOMEM, "out of memory");
            nworkers = i + 1;
            break;
        }
    }
    if (!c->err) {
        for (int i = 0; i < nworkers; i++) {
            if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0) {
                convert_fail(c, -EAGAIN, "cannot start a worker thread");
                break;
            }
            started++;
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < nworkers; i++) {
        pthread_cond_destroy(&w[i].turn);
        free(w[i].kind);
        free(w[i].seg);
        free(w[i].touched);
        free(w[i].iov);
        free(w[i].bbuf);
        free(w[i].buf);
    }
    return c->err;
}

/* One write(), so that two workers faulting at once cannot interleave
 * their messages (memcpy, strlen and write are async-signal-safe). */
static void on_sigbus(int sig)
{
    static const char msg[] = ": convert: a source image shrank while it was being read\n";
    char line[256];
    size_t n = strlen(tool_progname);
    (void)sig;
    if (n > sizeof(line) - sizeof(msg))
        n = sizeof(line) - sizeof(msg);
    memcpy(line, tool_progname, n);
    memcpy(line + n, msg, sizeof(msg) - 1);
    if (write(STDERR_FILENO, line, n + sizeof(msg) - 1) < 0) {
        /* nothing more to say */
    }
    _exit(1);
}

static int parse_cache(const char *mode, int *flags)
{
    if (!strcmp(mode, "unsafe"))
        *flags |= BLK_O_UNSAFE;
    else if (strcmp(mode, "none") && strcmp(mode, "writeback") && strcmp(mode, "directsync") &&
             strcmp(mode, "writethrough"))
        return -EINVAL;
    return 0;
}

/* qemu-img opens an encrypted target only with its key: refused at the
 * open, not at the first write. */
static int check_target_key(BlockDriverState *dst, const char *out, bool tgt_image_opts,
                            BlockOptions *dst_opts)
{
    /* luks takes its key as key-secret (and cannot open without it) */
    bool have_key = blkopts_get(dst_opts, "encrypt.key-secret") || blkopts_get(dst_opts,
                                                                             "key-secret");
    if (tgt_image_opts) {
        BlockOptions t = {0};
        have_key = blkopts_parse(&t, out) == 0 &&
                   (blkopts_get(&t, "encrypt.key-secret") || blkopts_get(&t, "key-secret"));
        blkopts_free(&t);
    }
    BlockInfo bi;
    bool encrypted = blk_get_info(dst, &bi) == 0 && bi.encrypted;
    blk_info_free(&bi);
    if (!encrypted || have_key)
        return 0;
    img_error("Could not open '%s': Parameter 'encrypt.key-secret' is required for cipher", out);
    return -EACCES;
}

static void convert_usage(void)
{
    img_usage_error("Expecting one image file name");
}

/* --bitmaps: whether the source's bitmaps can be copied (qemu-img's
 * convert_check_bitmaps()). */
static int check_bitmaps(BlockDriverState **src, int nsrc, bool skip_broken)
{
    if (nsrc > 1) {
        img_error("Copying bitmaps only possible with single source");
        return -1;
    }
    if (!blk_has_bitmaps(src[0])) {
        img_error("Source lacks bitmap support");
        return -1;
    }
    BlockInfo bi = {0};
    int r = blk_get_info(src[0], &bi);
    /* QEMU visits the bitmaps last first */
    for (int i = bi.nb_bitmaps - 1; r == 0 && i >= 0; i--) {
        if (!skip_broken && bi.bitmaps[i].in_use) {
            img_error("Cannot copy inconsistent bitmap '%s'", bi.bitmaps[i].name);
            fprintf(stderr, "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to "
                    "delete it\n");
            r = -1;
        }
    }
    blk_info_free(&bi);
    return r < 0 ? -1 : 0;
}

/* Each bitmap of src (but the broken ones) made in dst with the same
 * name, granularity, state and bits (qemu-img's convert_copy_bitmaps()). */
static int copy_bitmaps(BlockDriverState *src, BlockDriverState *dst, bool skip_broken)
{
    BlockInfo bi = {0};
    if (blk_get_info(src, &bi) < 0) {
        img_error("%s", blk_error());
        return -1;
    }
    int r = 0;
    /* last first, as QEMU visits them (the target still lists them in the
     * source's order: new bitmaps go before those made since open) */
    for (int i = bi.nb_bitmaps - 1; r == 0 && i >= 0; i--) {
        const BlockBitmapInfo *b = &bi.bitmaps[i];
        if (b->in_use) {
            /* only with skip_broken: check_bitmaps() refused them otherwise */
            if (skip_broken)
                img_error("warning: Skipping inconsistent bitmap '%s'", b->name);
            continue;
        }
        BlockBitmapReq add = {.op = BLK_BITMAP_ADD, .name = b->name,
                              .granularity = b->granularity, .enabled = b->enabled};
        if ((r = blk_bitmap(dst, &add)) < 0) {
            img_error("Failed to create bitmap %s: %s", b->name, blk_error());
            break;
        }
        if ((r = blk_bitmap_merge(dst, b->name, src, b->name)) < 0) {
            img_error("Failed to populate bitmap %s: %s", b->name, blk_error());
            BlockBitmapReq rm = {.op = BLK_BITMAP_REMOVE, .name = b->name};
            blk_bitmap(dst, &rm);
        }
    }
    blk_info_free(&bi);
    return r < 0 ? -1 : 0;
}

int img_convert(int argc, char **argv)
{
    enum { OPT_TARGET_IS_ZERO = 256, OPT_OBJECT, OPT_SALVAGE, OPT_IMAGE_OPTS,
           OPT_TARGET_IMAGE_OPTS, OPT_BITMAPS, OPT_SKIP_BROKEN };
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPT_OBJECT},
        {"image-opts", no_argument, 0, OPT_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {"target-image-opts", no_argument, 0, OPT_TARGET_IMAGE_OPTS},
        {"salvage", no_argument, 0, OPT_SALVAGE},
        {"target-is-zero", no_argument, 0, OPT_TARGET_IS_ZERO},
        {"bitmaps", no_argument, 0, OPT_BITMAPS},
        {"skip-broken-bitmaps", no_argument, 0, OPT_SKIP_BROKEN},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *out_fmt = NULL, *base = NULL, *base_fmt = NULL, *snap = NULL;
    const char *cache = "unsafe";
    BlockOptions opts = {0}, dst_opts = {0}, snap_opts = {0};
    bool compress = false, progress = false, skip_create = false, ooo = false;
    bool copy_range = false, sparse_given = false, salvage = false;
    bool bitmaps = false, skip_broken = false;
    bool force_share = false, target_is_zero = false, quiet = false, image_opts = false;
    bool tgt_image_opts = false, have_options = false;
    int64_t sparse = 8 * BLK_SECTOR_SIZE, nworkers = 8;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'B':
            base = optarg;
            break;
        case 'F':
            base_fmt = optarg;
            break;
        case 'C':
            copy_range = true;
            break;
        case 'c':
            compress = true;
            break;
        case 'o':
            have_options = true;
            if (img_parse_options(&opts, optarg) < 0) {
                blkopts_free(&opts);
                return 1;
            }
            break;
        case 'l':
            snap = optarg;
            break;
        case 'S': {
            uint64_t v;
            if (tool_strtosz(optarg, &v) < 0 || v % BLK_SECTOR_SIZE || v > (16u << 20)) {
                img_error("Invalid buffer size for sparse output specified. Valid sizes are "
                          "multiples of 512 up to 16777216. Select 0 to disable sparse "
                          "detection (fully allocates output).");
                blkopts_free(&opts);
                return 1;
            }
            sparse = (int64_t)v;
            sparse_given = true;
            break;
        }
        case 'p':
            progress = true;
            break;
        case 't':
            cache = optarg;
            break;
        case 'T':
            break; /* source cache mode: reads go through the page cache */
        case 'q':
            quiet = true;
            break;
        case 'n':
            skip_create = true;
            break;
        case 'm': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end || v < 1 || v > MAX_WORKERS) {
                img_error("Invalid number of coroutines. Allowed number of coroutines is "
                          "between 1 and %d", MAX_WORKERS);
                blkopts_free(&opts);
                return 1;
            }
            nworkers = v;
            break;
        }
        case 'W':
            ooo = true;
            break;
        case 'U':
            force_share = true;
            break;
        case 'r':
            break; /* rate limit: accepted, not applied */
        case OPT_TARGET_IS_ZERO:
            target_is_zero = true;
            break;
        case OPT_OBJECT:
            if (img_object_add(optarg) < 0) {
                blkopts_free(&opts);
                return 1;
            }
            break;
        case OPT_SALVAGE:
            salvage = true;
            break;
        case OPT_BITMAPS:
            bitmaps = true;
            break;
        case OPT_SKIP_BROKEN:
            skip_broken = true;
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPT_TARGET_IMAGE_OPTS:
            tgt_image_opts = true;
            break;
        default:
            img_bad_option(c, argv);
        }
    }
    if (quiet)
        progress = false;
    int ret = 1;
    Convert cv = {.min_sparse = (uint64_t)sparse, .compressed = compress, .ordered = !ooo,
                  .progress = progress, .no_scan = copy_range};
    pthread_mutex_init(&cv.lock, NULL);
    int nsrc = argc - optind - 1;
    /* qemu-img's order of these refusals */
    const char *refusal = NULL;
    if (skip_broken && !bitmaps)
        refusal = "Use of --skip-broken-bitmaps requires --bitmaps";
    else if (compress && copy_range)
        refusal = "Cannot enable copy offloading when -c is used";
    else if (sparse_given && copy_range)
        refusal = "Cannot enable copy offloading when -S is used";
    else if (copy_range && salvage)
        refusal = "Cannot use copy offloading in salvaging mode";
    else if (tgt_image_opts && !skip_create)
        refusal = "--target-image-opts requires use of -n flag";
    else if (skip_create && have_options)
        refusal = "-o has no effect when skipping image creation";
    else if (target_is_zero && !skip_create)
        refusal = "--target-is-zero requires use of -n flag";
    if (refusal) {
        img_error("%s", refusal);
        goto out;
    }
    if (img_has_help_option(&opts)) {
        ret = img_print_create_help(nsrc >= 1 ? argv[argc - 1] : NULL, out_fmt ? out_fmt : "raw");
        goto out;
    }
    if (nsrc < 1) {
        blkopts_free(&opts);
        if (argc - optind < 1)
            convert_usage();
        img_error("Must specify image file name");
        return 1;
    }
    const char *out = argv[argc - 1];
    if (!out_fmt && !tgt_image_opts)
        out_fmt = "raw";
    if (snap && !strncmp(snap, "snapshot.", 9) && img_parse_snapshot_opts(snap, &snap_opts) < 0)
        goto out;
    int dst_flags = BLK_O_RDWR | BLK_O_FILL;
    if (parse_cache(cache, &dst_flags) < 0) {
        img_error("Invalid cache option: %s", cache);
        goto out;
    }
    if (tgt_image_opts && out_fmt) {
        img_error("--image-opts and --format are mutually exclusive");
        goto out;
    }
    /* --target-image-opts: the option string names the driver */
    const BlockDriver *odrv = out_fmt ? blk_find_driver(out_fmt) : NULL;
    if (out_fmt && !odrv) {
        img_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    const char *bo = blkopts_get(&opts, "backing_file");
    if (base && bo) {
        img_error("Parameter 'backing_file' specified more than once");
        goto out;
    }
    if (bo)
        base = bo;
    const char *bfo = blkopts_get(&opts, "backing_fmt");
    if (!base_fmt)
        base_fmt = bfo;
    if (base && odrv && !odrv->change_backing_file && strcmp(out_fmt, "qcow")) {
        img_error("Backing file not supported for file format '%s'", out_fmt);
        goto out;
    }
    if (compress && odrv && !odrv->pwrite_compressed) {
        img_error("Compression not supported for this file format");
        goto out;
    }
    bool legacy_enc = false;
    blkopts_get_bool(&opts, "encryption", false, &legacy_enc); /* create checks the value */
    if (compress && !skip_create && (blkopts_get(&opts, "encrypt.format") || legacy_enc)) {
        img_error("Compression and encryption not supported at the same time");
        goto out;
    }

    cv.nsrc = nsrc;
    cv.src = calloc(nsrc, sizeof(*cv.src));
    cv.src_start = calloc(nsrc, sizeof(*cv.src_start));
    if (!cv.src || !cv.src_start)
        goto out;
    for (int i = 0; i < nsrc; i++) {
        cv.src[i] = image_opts ? img_open_image_opts(argv[optind + i],
                                                     force_share ? BLK_O_SHARE : 0)
                               : img_open(argv[optind + i], fmt, 0, force_share);
        if (!cv.src[i])
            goto out;
        cv.src_start[i] = cv.total;
        /* whole sectors, as qemu-img concatenates them */
        cv.total += (cv.src[i]->size + BLK_SECTOR_SIZE - 1) & ~(uint64_t)(BLK_SECTOR_SIZE - 1);
        if (cv.src[i]->backing)
            cv.src_has_backing = true;
    }

    if (snap && nsrc > 1) {
        img_error("No support for concatenating multiple snapshot");
        goto out;
    }
    if (bitmaps && check_bitmaps(cv.src, nsrc, skip_broken) < 0)
        goto out;
    if (snap && img_load_snapshot(cv.src[0], snap, &snap_opts) < 0)
        goto out;
    /* after the sources are open, as in qemu-img */
    if (nsrc > 1 && base) {
        img_error("Having a backing file for the target makes no sense when concatenating "
                  "multiple input images");
        goto out;
    }
    if (base && !skip_create && !base_fmt) {
        img_error("Use of backing file requires explicit backing format");
        goto out;
    }
    if (img_secret_resolve(&opts) < 0) {
        img_error("%s: error while converting %s: %s", out, out_fmt, blk_error());
        goto out;
    }
    const char *key = blkopts_get(&opts, "encrypt.key-secret");
    if (key)
        blkopts_set(&dst_opts, "encrypt.key-secret", key);
    if ((key = blkopts_get(&opts, "key-secret"))) /* -O luks */
        blkopts_set(&dst_opts, "key-secret", key);
    if (!skip_create) {
        if (base) {
            blkopts_set(&opts, "backing_file", base);
            blkopts_set(&opts, "backing_fmt", base_fmt);
        }
        int r = blk_create(out_fmt, out, cv.total, &opts);
        if (r < 0) {
            if (!strncmp(blk_error(), "Invalid parameter", 17) ||
                blk_create_name_check(out) < 0)
                img_error("%s", blk_error());
            else
                img_error("%s: error while converting %s: %s", out, out_fmt, blk_error());
            goto out;
        }
    }
    if (tgt_image_opts) {
        if (!(cv.dst = img_open_image_opts(out, dst_flags)))
            goto out;
    } else if (!(cv.dst = blk_open(out, out_fmt, dst_flags, dst_opts.n ? &dst_opts : NULL))) {
        img_error("Could not open '%s': %s", out, blk_error());
        goto out;
    }
    if (check_target_key(cv.dst, out, tgt_image_opts, &dst_opts) < 0)
        goto out;
    if (bitmaps && !blk_has_bitmaps(cv.dst)) {
        img_error("Format driver '%s' does not support bitmaps", cv.dst->drv->name);
        goto out;
    }
    if (compress && !cv.dst->drv->pwrite_compressed) {
        img_error("Compression not supported for this file format");
        goto out;
    }
    if (skip_create && cv.dst->size < cv.total) {
        img_error("output file is smaller than input file");
        goto out;
    }
    cv.target_backing = base != NULL && cv.dst->backing != NULL;
    cv.zero_init = (!skip_create || target_is_zero) && !cv.dst->backing;
    BlockInfo bi;
    cv.dst_cluster = BLK_SECTOR_SIZE;
    int gi = blk_get_info(cv.dst, &bi);
    if (gi == 0 && bi.cluster_size)
        cv.dst_cluster = bi.cluster_size;
    /* QEMU's has_zero_init: a new luks image, or an encrypted one whose
     * clusters were preallocated, reads as the decryption of the zeros
     * on disk, noise: the zeros are written like any data */
    const char *pa = blkopts_get(&opts, "preallocation");
    if (!skip_create && (cv.dst->drv->no_zero_init ||
                         (gi == 0 && bi.encrypted && pa && strcmp(pa, "off"))))
        cv.zero_init = false;
    blk_info_free(&bi);
    cv.chunk = CONVERT_CHUNK;
    if (compress)
        cv.chunk = cv.dst_cluster > CONVERT_CHUNK_COMPRESSED ? cv.dst_cluster
                                                              : CONVERT_CHUNK_COMPRESSED;
    if (compress && cv.chunk % cv.dst_cluster) {
        img_error("Compression not supported for this cluster size");
        goto out;
    }
    cv.nchunks = (cv.total + cv.chunk - 1) / cv.chunk;
    /* -c and -B look at every byte in the buffer; otherwise data comes
     * from the sources' mappings, and a source truncated meanwhile
     * (SIGBUS) ends the run with one message */
    cv.use_map = !compress && !cv.target_backing;
    cv.offload = cv.use_map; /* until the target says it cannot */
    if (cv.use_map)
        signal(SIGBUS, on_sigbus);
    if (progress)
        show_progress(&cv, true);
    if (run_workers(&cv, (int)nworkers) < 0) {
        img_error("%s", cv.errmsg);
        goto out;
    }
    if (bitmaps && copy_bitmaps(cv.src[0], cv.dst, skip_broken) < 0)
        goto out;
    int r = blk_flush(cv.dst);
    if (r < 0) {
        img_error("error while flushing '%s': %s", out, blk_error());
        goto out;
    }
    if (progress) {
        cv.written = cv.nchunks;
        show_progress(&cv, true);
        printf("\n");
    }
    ret = 0;
out:
    if (cv.dst)
        blk_close(cv.dst);
    for (int i = 0; cv.src && i < nsrc; i++)
        if (cv.src[i])
            blk_close(cv.src[i]);
    free(cv.src);
    free(cv.src_start);
    blkopts_free(&opts);
    blkopts_free(&dst_opts);
    blkopts_free(&snap_opts);
    pthread_mutex_destroy(&cv.lock);
    return ret;
}
