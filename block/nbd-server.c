/* The NBD server side of one connection (build/calf-nbd serves each
 * client with nbd_serve()).  Everything read from the socket is
 * untrusted: every length is checked against a bound before anything is
 * allocated for it (an option's data NBD_MAX_OPTION, a write's payload
 * NBD_MAX_BLOCK), requests are checked against the export before the
 * block layer sees them, and a client that breaks a MUST of the protocol
 * is disconnected.
 *
 * Threads: the connection's own thread reads requests (and a write's
 * payload) and queues them; `workers` threads run them against the
 * image and send the replies, one at a time under send_lock.  At most
 * NBD_QUEUE_MAX requests wait or run, and NBD_QUEUE_BYTES of writes'
 * payloads and reads' buffers (a read's buffer lives while its reply is
 * sent) or one request of up to NBD_MAX_BLOCK alone, so a request storm
 * costs bounded memory: the reader stops reading until there is room. */
#include "block/block.h"
#include "block/nbd-proto.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define NBD_QUEUE_MAX   16
#define NBD_QUEUE_BYTES (64u * 1024 * 1024)
#define NBD_MAX_OPTIONS 10000  /* options in one handshake */
#define NBD_MAX_EXTENTS 4096   /* descriptors in one block status chunk */
#define NBD_PREF_BLOCK  4096u

#define CTX_ALLOC 1u /* meta context ids */
#define CTX_DEPTH 2u
#define CTX_BITMAP 3u

typedef struct Job {
    NbdRequest req;
    uint8_t *data; /* a write's payload */
    struct Job *next;
} Job;

typedef struct Conn {
    const NbdExport *exp;
    int fd;
    bool verbose;
    int64_t hs_deadline; /* the handshake's end (--handshake-limit), 0: none */
    bool no_zeroes;
    bool structured;
    bool ctx_alloc, ctx_depth, ctx_bitmap;
    uint16_t tflags;
    pthread_mutex_t send_lock;
    pthread_mutex_t lock; /* the queue */
    pthread_cond_t cond;
    Job *head, *tail;
    int pending;           /* queued or running */
    uint64_t pending_bytes;
    bool stop;
    bool dead;             /* a reply could not be sent (atomic: set under
                              send_lock, read under lock) */
} Conn;

static void say(Conn *c, const char *fmt, const char *a)
{
    if (c->verbose) {
        fprintf(stderr, "calf-nbd: ");
        fprintf(stderr, fmt, a);
        fprintf(stderr, "\n");
    }
}

/* ---- handshake ---- */

static int opt_reply(Conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    uint8_t h[20];
    nbd_put64(h, NBD_REP_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, type);
    nbd_put32(h + 16, len);
    int r = nbd_write_until(c->fd, h, sizeof(h), c->hs_deadline);
    if (r == 0 && len)
        r = nbd_write_until(c->fd, data, len, c->hs_deadline);
    return r;
}

static int opt_error(Conn *c, uint32_t opt, uint32_t type, const char *msg)
{
    return opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

/* Whole sectors, as qemu-nbd exports them: a tail is not served. */
static uint64_t export_size(Conn *c)
{
    uint64_t size = c->exp->bs->size & ~(uint64_t)(BLK_SECTOR_SIZE - 1);
    return size > c->exp->offset ? size - c->exp->offset : 0;
}

static int send_info_export(Conn *c, uint32_t opt)
{
    uint8_t d[12];
    nbd_put16(d, NBD_INFO_EXPORT);
    nbd_put64(d + 2, export_size(c));
    nbd_put16(d + 10, c->tflags);
    return opt_reply(c, opt, NBD_REP_INFO, d, sizeof(d));
}

static int send_info_string(Conn *c, uint32_t opt, uint16_t type, const char *s)
{
    size_t n = strlen(s);
    uint8_t d[2 + NBD_MAX_STRING];
    if (n > NBD_MAX_STRING)
        n = NBD_MAX_STRING;
    nbd_put16(d, type);
    memcpy(d + 2, s, n);
    return opt_reply(c, opt, NBD_REP_INFO, d, (uint32_t)(2 + n));
}

static int send_info_block_size(Conn *c, uint32_t opt)
{
    uint8_t d[14];
    nbd_put16(d, NBD_INFO_BLOCK_SIZE);
    nbd_put32(d + 2, 1);
    nbd_put32(d + 6, NBD_PREF_BLOCK);
    nbd_put32(d + 10, NBD_MAX_BLOCK);
    return opt_reply(c, opt, NBD_REP_INFO, d, sizeof(d));
}

static void set_tflags(Conn *c)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;
    if (c->exp->read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    if (c->structured)
        f |= NBD_FLAG_SEND_DF;
    if (c->exp->multi_conn)
        f |= NBD_FLAG_CAN_MULTI_CONN;
    c->tflags = f;
}

static bool name_is(const uint8_t *p, uint32_t n, const char *s)
{
    return strlen(s) == n && !memcmp(p, s, n);
}

/* INFO and GO: 1 when the client may go on to transmission (GO
 * accepted), 0 to go on haggling, <0 to hang up. */
static int opt_info(Conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    if (len < 6)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
    uint32_t nlen = nbd_get32(d);
    if (nlen > NBD_MAX_STRING || nlen > len - 6)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "name length is wrong");
    const uint8_t *name = d + 4;
    uint16_t nreq = nbd_get16(d + 4 + nlen);
    if ((uint64_t)nreq * 2 != len - 6 - nlen)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "request count is wrong");
    if (!name_is(name, nlen, c->exp->name)) {
        char msg[NBD_MAX_STRING + 40];
        snprintf(msg, sizeof(msg), "export '%.*s' not present", (int)nlen, (const char *)name);
        return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
    }
    set_tflags(c);
    bool want_name = false, want_desc = false;
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t t = nbd_get16(d + 6 + nlen + 2u * i);
        want_name |= t == NBD_INFO_NAME;
        want_desc |= t == NBD_INFO_DESCRIPTION;
    }
    int r = 0;
    if (want_name)
        r = send_info_string(c, opt, NBD_INFO_NAME, c->exp->name);
    if (r == 0 && want_desc && c->exp->description)
        r = send_info_string(c, opt, NBD_INFO_DESCRIPTION, c->exp->description);
    if (r == 0)
        r = send_info_block_size(c, opt);
    if (r == 0)
        r = send_info_export(c, opt);
    if (r == 0)
        r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
    if (r < 0)
        return r;
    return opt == NBD_OPT_GO ? 1 : 0;
}

static int send_context(Conn *c, uint32_t opt, uint32_t id, const char *name)
{
    uint8_t d[NBD_MAX_STRING + 40];
    size_t n = strnlen(name, sizeof(d) - 4);
    nbd_put32(d, id);
    memcpy(d + 4, name, n);
    return opt_reply(c, opt, NBD_REP_META_CONTEXT, d, (uint32_t)(4 + n));
}

static int opt_meta(Conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    if (!c->structured)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "structured replies not negotiated");
    if (len < 8)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
    uint32_t nlen = nbd_get32(d);
    if (nlen > NBD_MAX_STRING || nlen > len - 8)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "name length is wrong");
    const uint8_t *name = d + 4;
    uint32_t nq = nbd_get32(d + 4 + nlen);
    /* every query first: a malformed list selects nothing */
    uint32_t pos = 8 + nlen;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < 4 || nbd_get32(d + pos) > len - pos - 4 ||
            nbd_get32(d + pos) > NBD_MAX_STRING)
            return opt_error(c, opt, NBD_REP_ERR_INVALID, "query length is wrong");
        pos += 4 + nbd_get32(d + pos);
    }
    if (pos != len)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "option length is wrong");
    if (!name_is(name, nlen, c->exp->name)) {
        char msg[NBD_MAX_STRING + 40];
        snprintf(msg, sizeof(msg), "export '%.*s' not present", (int)nlen, (const char *)name);
        return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
    }
    bool set = opt == NBD_OPT_SET_META_CONTEXT;
    bool alloc = false, depth = false, bitmap = false;
    bool depth_ok = c->exp->allocation_depth, bitmap_ok = c->exp->bitmap != NULL;
    char bmctx[NBD_MAX_STRING + 32] = "";
    if (bitmap_ok)
        snprintf(bmctx, sizeof(bmctx), "qemu:dirty-bitmap:%s", c->exp->bitmap);
    if (!nq && !set) {
        alloc = true;
        depth = depth_ok;
        bitmap = bitmap_ok;
    }
    pos = 8 + nlen;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t ql = nbd_get32(d + pos);
        const uint8_t *q = d + pos + 4;
        pos += 4 + ql;
        if (name_is(q, ql, "base:allocation") || (!set && name_is(q, ql, "base:")))
            alloc = true;
        else if (depth_ok &&
                 (name_is(q, ql, "qemu:allocation-depth") || (!set && name_is(q, ql, "qemu:"))))
            depth = true;
        if (bitmap_ok && (name_is(q, ql, bmctx) ||
                          (!set && (name_is(q, ql, "qemu:") ||
                                    name_is(q, ql, "qemu:dirty-bitmap:")))))
            bitmap = true;
    }
    int r = 0;
    if (alloc)
        r = send_context(c, opt, set ? CTX_ALLOC : 0, "base:allocation");
    if (r == 0 && depth)
        r = send_context(c, opt, set ? CTX_DEPTH : 0, "qemu:allocation-depth");
    if (r == 0 && bitmap)
        r = send_context(c, opt, set ? CTX_BITMAP : 0, bmctx);
    if (set) {
        c->ctx_alloc = alloc;
        c->ctx_depth = depth;
        c->ctx_bitmap = bitmap;
    }
    return r < 0 ? r : opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* The option phase: 1 when transmission begins, <=0 when the session
 * ends here (0: the client aborted properly). */
static int handshake(Conn *c)
{
    int64_t deadline = c->exp->handshake_ms ? nbd_now_ms() + c->exp->handshake_ms : 0;
    c->hs_deadline = deadline; /* for the replies too */
    uint8_t h[18];
    nbd_put64(h, NBD_MAGIC);
    nbd_put64(h + 8, NBD_OPTS_MAGIC);
    nbd_put16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    int r = nbd_write_until(c->fd, h, sizeof(h), deadline);
    uint8_t cf[4];
    if (r == 0)
        r = nbd_read_full(c->fd, cf, 4, deadline);
    if (r < 0)
        return r;
    uint32_t cflags = nbd_get32(cf);
    if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        say(c, "unknown client flags%s", "");
        return -EINVAL;
    }
    c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
    uint8_t *data = malloc(NBD_MAX_OPTION);
    if (!data)
        return -ENOMEM;
    for (int n = 0; n < NBD_MAX_OPTIONS; n++) {
        uint8_t oh[16];
        if ((r = nbd_read_full(c->fd, oh, sizeof(oh), deadline)) < 0)
            break;
        if (nbd_get64(oh) != NBD_OPTS_MAGIC) {
            say(c, "bad option magic%s", "");
            r = -EINVAL;
            break;
        }
        uint32_t opt = nbd_get32(oh + 8), len = nbd_get32(oh + 12);
        if (len > NBD_MAX_OPTION) {
            /* no reply for EXPORT_NAME is possible: hang up either way */
            say(c, "option data too long%s", "");
            if (opt != NBD_OPT_EXPORT_NAME)
                opt_error(c, opt, NBD_REP_ERR_TOO_BIG, "option too long");
            r = -EINVAL;
            break;
        }
        if ((r = nbd_read_full(c->fd, data, len, deadline)) < 0)
            break;
        switch (opt) {
        case NBD_OPT_EXPORT_NAME: {
            if (!name_is(data, len, c->exp->name)) {
                say(c, "unknown export requested%s", "");
                r = -ENOENT;
                break;
            }
            set_tflags(c);
            uint8_t e[10 + 124] = {0};
            nbd_put64(e, export_size(c));
            nbd_put16(e + 8, c->tflags);
            r = nbd_write_until(c->fd, e, c->no_zeroes ? 10 : sizeof(e), deadline);
            if (r == 0)
                r = 1;
            break;
        }
        case NBD_OPT_ABORT:
            opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
            r = 0;
            break;
        case NBD_OPT_LIST:
            if (len) {
                r = opt_error(c, opt, NBD_REP_ERR_INVALID, "no data expected");
            } else {
                size_t nl = strlen(c->exp->name);
                const char *desc = c->exp->description ? c->exp->description : "";
                size_t dl = strlen(desc);
                if (nl > NBD_MAX_STRING)
                    nl = NBD_MAX_STRING;
                if (dl > NBD_MAX_STRING)
                    dl = NBD_MAX_STRING;
                uint8_t s[4 + 2 * NBD_MAX_STRING];
                nbd_put32(s, (uint32_t)nl);
                memcpy(s + 4, c->exp->name, nl);
                memcpy(s + 4 + nl, desc, dl);
                r = opt_reply(c, opt, NBD_REP_SERVER, s, (uint32_t)(4 + nl + dl));
                if (r == 0)
                    r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
            }
            if (r == 0)
                r = 2; /* go on */
            break;
        case NBD_OPT_STARTTLS:
            r = opt_error(c, opt, NBD_REP_ERR_POLICY, "TLS not configured");
            r = r < 0 ? r : 2;
            break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
            r = opt_info(c, opt, data, len);
            r = r != 0 ? r : 2;
            break;
        case NBD_OPT_STRUCTURED_REPLY:
            if (len)
                r = opt_error(c, opt, NBD_REP_ERR_INVALID, "no data expected");
            else if (c->structured)
                r = opt_error(c, opt, NBD_REP_ERR_INVALID, "already negotiated");
            else {
                c->structured = true;
                r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
            }
            r = r < 0 ? r : 2;
            break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
            r = opt_meta(c, opt, data, len);
            r = r < 0 ? r : 2;
            break;
        default:
            r = opt_error(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
            r = r < 0 ? r : 2;
            break;
        }
        if (r != 2)
            break;
    }
    free(data);
    if (r == 2) {
        say(c, "too many options%s", "");
        r = -EINVAL;
    }
    return r;
}

/* ---- transmission ---- */

static int send_iov(Conn *c, struct iovec *iov, int n)
{
    int r = 0;
    pthread_mutex_lock(&c->send_lock);
    while (n > 0 && !__atomic_load_n(&c->dead, __ATOMIC_RELAXED)) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            r = -errno;
            __atomic_store_n(&c->dead, true, __ATOMIC_RELAXED);
            /* wake the reader: nothing more can be answered */
            shutdown(c->fd, SHUT_RDWR);
            break;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    if (__atomic_load_n(&c->dead, __ATOMIC_RELAXED) && !r)
        r = -EPIPE;
    pthread_mutex_unlock(&c->send_lock);
    return r;
}

static int simple_reply(Conn *c, uint64_t handle, uint32_t err, void *data, size_t len)
{
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(h + 4, err);
    nbd_put64(h + 8, handle);
    struct iovec iov[2] = {{h, sizeof(h)}, {data, len}};
    return send_iov(c, iov, len ? 2 : 1);
}

/* One structured chunk: header, a prefix (offset, context id...) and data. */
static int chunk(Conn *c, uint64_t handle, uint16_t flags, uint16_t type, const void *pre,
                 size_t plen, void *data, size_t dlen)
{
    uint8_t h[NBD_STRUCTURED_REPLY_SIZE];
    nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, handle);
    nbd_put32(h + 16, (uint32_t)(plen + dlen));
    struct iovec iov[3] = {{h, sizeof(h)}, {(void *)pre, plen}, {data, dlen}};
    return send_iov(c, iov, dlen ? 3 : plen ? 2 : 1);
}

static int error_reply(Conn *c, const NbdRequest *rq, int err)
{
    uint32_t e = nbd_errno_out(err);
    if (!c->structured)
        return simple_reply(c, rq->handle, e, NULL, 0);
    uint8_t p[6];
    nbd_put32(p, e);
    nbd_put16(p + 4, 0);
    return chunk(c, rq->handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, p, sizeof(p), NULL,
                 0);
}

static int ok_reply(Conn *c, const NbdRequest *rq)
{
    if (!c->structured)
        return simple_reply(c, rq->handle, 0, NULL, 0);
    return chunk(c, rq->handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* The dirty bitmap's run from image offset off: 1 (dirty) or 0 and in
 * *pnum its length within len. */
static int bitmap_status(const NbdExport *x, uint64_t off, uint64_t len, uint64_t *pnum)
{
    uint64_t g = x->bitmap_gran, i = off / g, nbits = x->bitmap_nbytes * 8;
#define BIT(k) ((k) < nbits && (x->bitmap_bits[(k) / 8] >> ((k) % 8) & 1))
    int v = BIT(i);
    uint64_t j = i + 1, end = off + len;
    while (j * g < end && BIT(j) == v)
        j++;
#undef BIT
    *pnum = (j * g < end ? j * g : end) - off;
    return v ? NBD_STATE_DIRTY : 0;
}

/* One status context over [off, off+len): a chunk of extents (length,
 * flags), without DONE.  1 when an error reply ended the request instead. */
static int block_status(Conn *c, const NbdRequest *rq, uint32_t id)
{
    BlockDriverState *bs = c->exp->bs;
    uint32_t max = rq->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_MAX_EXTENTS;
    uint8_t *d = malloc(4 + 8 * (size_t)max);
    if (!d)
        return error_reply(c, rq, -ENOMEM);
    nbd_put32(d, id);
    uint32_t n = 0;
    uint64_t base = c->exp->offset;
    uint64_t off = rq->offset, end = rq->offset + rq->length;
    while (off < end) {
        uint64_t pnum = 0, host;
        int depth = 0;
        int st = id == CTX_BITMAP
                     ? bitmap_status(c->exp, base + off, end - off, &pnum)
                     : blk_block_status_above(bs, base + off, end - off, &pnum, &host, &depth,
                                              NULL);
        if (st < 0) {
            if (n)
                break; /* what is known so far */
            free(d);
            int e = error_reply(c, rq, st);
            return e < 0 ? e : 1; /* the request is answered */
        }
        if (pnum == 0 || pnum > end - off)
            pnum = end - off;
        uint32_t f;
        if (id == CTX_BITMAP)
            f = (uint32_t)st; /* NBD_STATE_DIRTY or 0 */
        else if (id == CTX_ALLOC)
            f = (st & BLK_STATUS_DATA ? 0 : NBD_STATE_HOLE) |
                (st & BLK_STATUS_ZERO ? NBD_STATE_ZERO : 0);
        else
            f = st & BLK_STATUS_ALLOCATED ? (uint32_t)depth + 1 : 0;
        /* an extent's length is 32 bits: long runs take several */
        uint64_t left = pnum;
        while (left) {
            uint32_t piece = left > 0x80000000u ? 0x80000000u : (uint32_t)left;
            uint8_t *last = n ? d + 4 + 8 * (size_t)(n - 1) : NULL;
            if (last && nbd_get32(last + 4) == f &&
                (uint64_t)nbd_get32(last) + piece <= 0xfffff000u)
                nbd_put32(last, nbd_get32(last) + piece);
            else if (n < max) {
                nbd_put32(d + 4 + 8 * (size_t)n, piece);
                nbd_put32(d + 8 + 8 * (size_t)n, f);
                n++;
            } else
                goto full;
            left -= piece;
        }
        off += pnum;
    }
full:;
    int r = chunk(c, rq->handle, 0, NBD_REPLY_TYPE_BLOCK_STATUS, d, 4 + 8u * n, NULL, 0);
    free(d);
    return r;
}

/* Runs one request and sends its reply; <0 only when the reply could
 * not be sent. */
static int run_request(Conn *c, NbdRequest *rq, uint8_t *data)
{
    const NbdExport *x = c->exp;
    BlockDriverState *bs = x->bs;
    uint64_t size = export_size(c);
    static const uint16_t allowed[] = {
        [NBD_CMD_READ] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
        [NBD_CMD_WRITE] = NBD_CMD_FLAG_FUA,
        [NBD_CMD_FLUSH] = 0,
        [NBD_CMD_TRIM] = NBD_CMD_FLAG_FUA,
        [NBD_CMD_CACHE] = 0,
        [NBD_CMD_WRITE_ZEROES] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
                                 NBD_CMD_FLAG_FAST_ZERO,
        [NBD_CMD_BLOCK_STATUS] = NBD_CMD_FLAG_REQ_ONE,
    };
    int t = rq->type;
    if (t >= (int)(sizeof(allowed) / sizeof(allowed[0])) || t == NBD_CMD_DISC)
        return error_reply(c, rq, -EINVAL);
    if (rq->flags & ~allowed[t])
        return error_reply(c, rq, -EINVAL);
    if ((rq->flags & NBD_CMD_FLAG_DF) && !c->structured)
        return error_reply(c, rq, -EINVAL);
    bool writes = t == NBD_CMD_WRITE || t == NBD_CMD_TRIM || t == NBD_CMD_WRITE_ZEROES;
    if (writes && x->read_only)
        return error_reply(c, rq, -EPERM);
    if (t != NBD_CMD_FLUSH && (rq->offset > size || rq->length > size - rq->offset))
        return error_reply(c, rq, -EINVAL); /* qemu-nbd's answer, writes too */
    uint64_t at = x->offset + rq->offset; /* in the image */
    int r = 0;
    switch (t) {
    case NBD_CMD_READ: {
        if (rq->length > NBD_MAX_BLOCK)
            return error_reply(c, rq, c->structured ? -EOVERFLOW : -EINVAL);
        if (!rq->length)
            return ok_reply(c, rq);
        uint8_t *buf = malloc(rq->length);
        if (!buf)
            return error_reply(c, rq, -ENOMEM);
        r = blk_pread(bs, at, buf, rq->length);
        if (r < 0) {
            free(buf);
            return error_reply(c, rq, r);
        }
        if (c->structured) {
            uint8_t off[8];
            nbd_put64(off, rq->offset);
            r = chunk(c, rq->handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, off, 8,
                      buf, rq->length);
        } else {
            r = simple_reply(c, rq->handle, 0, buf, rq->length);
        }
        free(buf);
        return r;
    }
    case NBD_CMD_WRITE:
        if (x->detect_zeroes && all_zero(data, rq->length))
            r = blk_pwrite_zeroes(bs, at, rq->length,
                                  x->detect_zeroes == 2 && x->discard ? BLK_ZERO_MAY_UNMAP : 0);
        else
            r = blk_pwrite(bs, at, data, rq->length);
        break;
    case NBD_CMD_TRIM:
        if (x->discard && rq->length)
            r = blk_discard(bs, at, rq->length);
        break;
    case NBD_CMD_WRITE_ZEROES:
        /* as qemu-nbd, fast zeroes are offered; calf's block layer cannot
         * promise one never falls back to writing, so each is refused at
         * once with ENOTSUP (the spec's answer: the client zeroes its way) */
        if (rq->flags & NBD_CMD_FLAG_FAST_ZERO)
            return error_reply(c, rq, -ENOTSUP);
        if (rq->length)
            r = blk_pwrite_zeroes(bs, at, rq->length,
                                  !(rq->flags & NBD_CMD_FLAG_NO_HOLE) && x->discard
                                      ? BLK_ZERO_MAY_UNMAP
                                      : 0);
        break;
    case NBD_CMD_FLUSH:
        r = blk_flush(bs);
        break;
    case NBD_CMD_CACHE:
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!c->structured || (!c->ctx_alloc && !c->ctx_depth && !c->ctx_bitmap) ||
            !rq->length)
            return error_reply(c, rq, -EINVAL);
        /* a chunk per context, without DONE; then an empty DONE */
        if (c->ctx_alloc)
            r = block_status(c, rq, CTX_ALLOC);
        if (r == 0 && c->ctx_depth)
            r = block_status(c, rq, CTX_DEPTH);
        if (r == 0 && c->ctx_bitmap)
            r = block_status(c, rq, CTX_BITMAP);
        return r != 0 ? (r < 0 ? r : 0) : ok_reply(c, rq);
    }
    if (r == 0 && writes && (rq->flags & NBD_CMD_FLAG_FUA))
        r = blk_flush(bs);
    return r < 0 ? error_reply(c, rq, r) : ok_reply(c, rq);
}

static void finish(Conn *c, Job *j)
{
    pthread_mutex_lock(&c->lock);
    c->pending--;
    if (j->req.type == NBD_CMD_WRITE || j->req.type == NBD_CMD_READ)
        c->pending_bytes -= j->req.length;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    free(j->data);
    free(j);
}

static void *worker(void *opaque)
{
    Conn *c = opaque;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->head && !c->stop)
            pthread_cond_wait(&c->cond, &c->lock);
        Job *j = c->head;
        if (j) {
            c->head = j->next;
            if (!c->head)
                c->tail = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (!j)
            return NULL;
        run_request(c, &j->req, j->data);
        finish(c, j);
    }
}

static int transmission(Conn *c)
{
    int nw = c->exp->workers;
    pthread_t th[16];
    if (nw > 16)
        nw = 16;
    int started = 0;
    for (; started < nw; started++)
        if (pthread_create(&th[started], NULL, worker, c))
            break;
    int r = 0;
    for (;;) {
        uint8_t h[NBD_REQUEST_SIZE];
        NbdRequest rq;
        if ((r = nbd_read_full(c->fd, h, sizeof(h), 0)) < 0) {
            say(c, "client went away%s", "");
            break;
        }
        if (!nbd_parse_request(h, &rq)) {
            say(c, "bad request magic%s", "");
            r = -EINVAL;
            break;
        }
        if (rq.type == NBD_CMD_DISC) {
            r = 0;
            break;
        }
        uint8_t *data = NULL;
        if (rq.type == NBD_CMD_WRITE) {
            if (rq.length > NBD_MAX_BLOCK) {
                /* its payload cannot be skipped in good time: hang up */
                say(c, "write too large%s", "");
                r = -EINVAL;
                break;
            }
            if (!(data = malloc(rq.length ? rq.length : 1))) {
                r = -ENOMEM;
                break;
            }
            if ((r = nbd_read_full(c->fd, data, rq.length, 0)) < 0) {
                say(c, "client went away in a write%s", "");
                free(data);
                break;
            }
        }
        Job *j = calloc(1, sizeof(*j));
        if (!j) {
            free(data);
            r = -ENOMEM;
            break;
        }
        j->req = rq;
        j->data = data;
        /* a write's payload, or the buffer a read will fill */
        uint32_t bytes = rq.type == NBD_CMD_WRITE || rq.type == NBD_CMD_READ ? rq.length : 0;
        pthread_mutex_lock(&c->lock);
        while (started && !__atomic_load_n(&c->dead, __ATOMIC_RELAXED) &&
               (c->pending >= NBD_QUEUE_MAX ||
                (c->pending && c->pending_bytes + bytes > NBD_QUEUE_BYTES)))
            pthread_cond_wait(&c->cond, &c->lock);
        c->pending++;
        c->pending_bytes += bytes;
        if (started) {
            if (c->tail)
                c->tail->next = j;
            else
                c->head = j;
            c->tail = j;
            pthread_cond_signal(&c->cond);
        }
        bool dead = __atomic_load_n(&c->dead, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&c->lock);
        if (!started) {
            run_request(c, &j->req, j->data);
            finish(c, j);
        }
        if (dead) {
            r = -EPIPE;
            break;
        }
    }
    /* what was read is still answered (a DISC waits for it), then the end */
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return r;
}

int nbd_serve(const NbdExport *exp, int fd, bool verbose, bool *negotiated)
{
    Conn c = {.exp = exp, .fd = fd, .verbose = verbose};
    pthread_mutex_init(&c.send_lock, NULL);
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    int r = handshake(&c);
    if (negotiated)
        *negotiated = r == 1;
    if (r == 1)
        r = transmission(&c);
    if (r == 0 || r == 1)
        r = 0;
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
    pthread_mutex_destroy(&c.send_lock);
    return r;
}
