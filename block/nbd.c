/* The nbd driver: an image served by an NBD server (calf-nbd, qemu-nbd,
 * nbdkit...), opened by name as QEMU opens it:
 *   nbd://HOST[:PORT]/EXPORT, nbd+tcp://..., nbd+unix:///EXPORT?socket=PATH,
 *   nbd:HOST:PORT[:exportname=EXPORT], nbd:unix:PATH[:exportname=EXPORT]
 * or by options: driver=nbd,server.type=inet|unix,server.host=H,
 * server.port=P,server.path=S,export=E (json: the same tree).  It has no
 * host file (bs->fd is -1): every request goes to the server.
 *
 * Threads: any number of callers at once.  Each takes one of NBD_SLOTS
 * slots (waiting when all are taken), sends its request under send_lock
 * and sleeps on its slot.  One reader thread reads every reply, matches
 * it to its slot by handle (slot index and a generation count) and fills
 * the caller's buffer before waking it.  Whatever the server sends is
 * checked against the request it answers; a reply that does not fit,
 * or a server that goes away, ends the connection: every request
 * waiting fails with -EIO; the next request connects again (reconnect()). */
#include "block/block.h"
#include "block/nbd-proto.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define NBD_SLOTS 16
/* A read's chunks may leave at most this many separate filled ranges
 * at a time (in order, as servers send them, they make one). */
#define NBD_READ_RANGES 64
#define NBD_HANDSHAKE_MS 60000
#define NBD_ZERO_CHUNK (1u << 30) /* longest write-zeroes / trim request */
#define NBD_EXTENTS 64 /* base:allocation extents kept from one reply */

typedef struct NbdExtents {
    int n;
    uint32_t len[NBD_EXTENTS], flags[NBD_EXTENTS];
} NbdExtents;

typedef struct NbdSlot {
    bool busy, done;
    uint32_t gen;
    uint16_t type;
    uint64_t off;
    uint32_t len;
    uint8_t *buf; /* a read's destination */
    uint64_t covered; /* bytes of a read the chunks have filled */
    /* the ranges those chunks filled, relative to off, disjoint (touching
     * ones merged): chunks may come in any order but never overlap */
    uint32_t nranges;
    uint32_t rs[NBD_READ_RANGES], re[NBD_READ_RANGES];
    int err;
    uint64_t flush_covers; /* a flush: acked_seq when it was sent */
    bool got_status; /* block status: the extents of our context */
    NbdExtents ext;
    pthread_cond_t cond;
} NbdSlot;

typedef struct NbdClient {
    int fd;
    char *host, *port, *path, *export;
    uint64_t size;
    uint16_t tflags;
    bool structured;
    bool has_alloc;
    uint32_t alloc_id;
    uint32_t max_block;
    /* the server's minimum block size (1, or a power of two up to
     * 64 KiB): requests are aligned to it, a partial block written by
     * read-modify-write with rmw_lock held exclusive; when it is over 1,
     * every other write, zero write and trim holds rmw_lock shared, so
     * none can land between an RMW's read and its write-back (and be
     * undone by it), while they still run side by side */
    uint32_t min_block;
    pthread_rwlock_t rmw_lock;
    pthread_mutex_t lock; /* slots, dead */
    pthread_mutex_t send_lock;
    pthread_cond_t slot_free;
    NbdSlot slot[NBD_SLOTS];
    int nbusy;
    bool dead;
    /* writes (zero writes, trims) acknowledged, numbered in the order of
     * their acknowledgements (acked_seq: the last one's number); a
     * flush covers those acknowledged before it was sent, and flushed_seq
     * is the highest number a completed flush covered.  A connection
     * that dies with acked_seq past flushed_seq may have lost writes;
     * the next flush says so (lost_writes), once */
    uint64_t acked_seq, flushed_seq;
    bool lost_writes;
    pthread_t reader;
    bool reader_running;
    /* a lost connection is made again by the next request (reconnect()),
     * trying for up to reconnect_ms (QEMU's reconnect-delay) */
    bool rw;
    uint64_t reconnect_ms;
    pthread_mutex_t reconnect_lock;
    /* the extents of the last block status reply, from cache_off on (only
     * its data extents answer from here); every write, zero and trim
     * bumps cache_gen and empties it, before and after, so a reply that
     * may predate one is never kept */
    pthread_mutex_t cache_lock;
    uint64_t cache_gen;
    uint64_t cache_off;
    NbdExtents cache;
} NbdClient;

/* ---- names ---- */

bool nbd_is_filename(const char *name)
{
    return !strncmp(name, "nbd:", 4) || !strncmp(name, "nbd+tcp:", 8) ||
           !strncmp(name, "nbd+unix:", 9);
}

/* %XX decoding of a URI part into a new string. */
static char *uri_decode(const char *s, size_t n)
{
    char *d = malloc(n + 1), *o = d;
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return d;
}

static int set_decoded(BlockOptions *o, const char *key, const char *s, size_t n)
{
    char *v = uri_decode(s, n);
    int r = v ? blkopts_set(o, key, v) : -ENOMEM;
    free(v);
    return r;
}

static int bad_uri(const char *name)
{
    (void)name;
    blk_set_error("%s", "invalid URI");
    return -EINVAL;
}

/* QEMU's legacy form: nbd:HOST:PORT[:exportname=E] / nbd:unix:PATH[:exportname=E] */
static int parse_legacy(const char *name, BlockOptions *o)
{
    const char *p = name + 4;
    const char *ex = strstr(p, ":exportname=");
    size_t n = ex ? (size_t)(ex - p) : strlen(p);
    int r;
    if (!strncmp(p, "unix:", 5)) {
        r = blkopts_set(o, "server.type", "unix");
        if (r == 0)
            r = set_decoded(o, "server.path", p + 5, n - 5);
    } else {
        const char *colon = memchr(p, ':', n);
        r = blkopts_set(o, "server.type", "inet");
        if (r == 0)
            r = set_decoded(o, "server.host", p, colon ? (size_t)(colon - p) : n);
        if (r == 0)
            r = colon ? set_decoded(o, "server.port", colon + 1, n - (colon + 1 - p))
                      : blkopts_set(o, "server.port", "10809");
    }
    if (r == 0 && ex)
        r = blkopts_set(o, "export", ex + strlen(":exportname="));
    return r;
}

int nbd_parse_filename(const char *name, BlockOptions *o)
{
    int r;
    if (strncmp(name, "nbd://", 6) && strncmp(name, "nbd+tcp://", 10) &&
        strncmp(name, "nbd+unix://", 11)) {
        if (!strncmp(name, "nbd:", 4))
            return parse_legacy(name, o);
        return bad_uri(name);
    }
    bool is_unix = !strncmp(name, "nbd+unix://", 11);
    const char *p = strstr(name, "://") + 3;
    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = slash ? slash : end;
    /* the export: the path without its first slash */
    if (slash && slash + 1 < end && (r = set_decoded(o, "export", slash + 1,
                                                      (size_t)(end - slash - 1))) < 0)
        return r;
    if (is_unix) {
        if (auth_end != p || !q || strncmp(q + 1, "socket=", 7) || strchr(q + 1, '&')) {
            blk_set_error("%s", is_unix && auth_end != p
                                    ? "URI scheme 'nbd+unix' must not contain a host"
                                    : "URI query 'socket=' is required for nbd+unix");
            return -EINVAL;
        }
        if ((r = blkopts_set(o, "server.type", "unix")) < 0 ||
            (r = set_decoded(o, "server.path", q + 8, strlen(q + 8))) < 0)
            return r;
        return 0;
    }
    if (q) {
        blk_set_error("%s", "URI query is not allowed for nbd over TCP");
        return -EINVAL;
    }
    if (auth_end == p)
        return bad_uri(name);
    /* [v6]:port or host:port */
    const char *hs = p, *he, *colon;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(auth_end - p));
        if (!rb)
            return bad_uri(name);
        hs = p + 1;
        he = rb;
        colon = rb + 1 < auth_end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(auth_end - p));
        he = colon ? colon : auth_end;
    }
    if ((r = blkopts_set(o, "server.type", "inet")) < 0 ||
        (r = set_decoded(o, "server.host", hs, (size_t)(he - hs))) < 0)
        return r;
    if (colon && colon + 1 < auth_end)
        r = set_decoded(o, "server.port", colon + 1, (size_t)(auth_end - colon - 1));
    else
        r = blkopts_set(o, "server.port", "10809");
    return r;
}

/* ---- the connection ---- */

/* The reader thread's last act: every waiting request fails.  Only the
 * reader may complete a slot, since only it knows it is done with the
 * slot's buffer (a requester whose send failed marks the connection
 * dead and shuts it down instead). */
static void kill_conn(NbdClient *s)
{
    pthread_mutex_lock(&s->lock);
    s->dead = true;
    if (s->acked_seq != s->flushed_seq)
        s->lost_writes = true;
    s->flushed_seq = s->acked_seq;
    for (int i = 0; i < NBD_SLOTS; i++) {
        NbdSlot *sl = &s->slot[i];
        if (sl->busy && !sl->done) {
            sl->err = -EIO;
            sl->done = true;
            pthread_cond_signal(&sl->cond);
        }
    }
    pthread_cond_broadcast(&s->slot_free);
    pthread_mutex_unlock(&s->lock);
    shutdown(s->fd, SHUT_RDWR);
}

/* The slot a handle names, while its request waits; NULL if none. */
static NbdSlot *find_slot(NbdClient *s, uint64_t handle)
{
    uint32_t i = handle & 0xff;
    if (i >= NBD_SLOTS || handle >> 40)
        return NULL;
    NbdSlot *sl = &s->slot[i];
    pthread_mutex_lock(&s->lock);
    bool ok = sl->busy && !sl->done && sl->gen == (uint32_t)(handle >> 8);
    pthread_mutex_unlock(&s->lock);
    return ok ? sl : NULL;
}

static void complete(NbdClient *s, NbdSlot *sl, int err)
{
    pthread_mutex_lock(&s->lock);
    if (err && !sl->err)
        sl->err = err;
    if (!sl->err && (sl->type == NBD_CMD_WRITE || sl->type == NBD_CMD_WRITE_ZEROES ||
                     sl->type == NBD_CMD_TRIM))
        s->acked_seq++;
    /* flushes may complete in any order: the highest one counts */
    if (!sl->err && sl->type == NBD_CMD_FLUSH && sl->flush_covers > s->flushed_seq)
        s->flushed_seq = sl->flush_covers;
    sl->done = true;
    pthread_cond_signal(&sl->cond);
    pthread_mutex_unlock(&s->lock);
}

/* A read chunk fills [a, a + n) of sl's buffer (a relative to sl->off,
 * within sl->len): -EPROTO when bytes of it were filled already, or the
 * filled ranges are too scattered to follow. */
static int cover(NbdSlot *sl, uint32_t a, uint32_t n)
{
    uint32_t b = a + n;
    int left = -1, right = -1;
    if (!n)
        return 0;
    for (uint32_t i = 0; i < sl->nranges; i++) {
        if (a < sl->re[i] && sl->rs[i] < b)
            return -EPROTO;
        if (sl->re[i] == a)
            left = (int)i;
        if (sl->rs[i] == b)
            right = (int)i;
    }
    if (left >= 0 && right >= 0) {
        sl->re[left] = sl->re[right];
        sl->nranges--;
        sl->rs[right] = sl->rs[sl->nranges];
        sl->re[right] = sl->re[sl->nranges];
    } else if (left >= 0) {
        sl->re[left] = b;
    } else if (right >= 0) {
        sl->rs[right] = a;
    } else {
        if (sl->nranges == NBD_READ_RANGES)
            return -EPROTO;
        sl->rs[sl->nranges] = a;
        sl->re[sl->nranges] = b;
        sl->nranges++;
    }
    sl->covered += n;
    return 0;
}

/* One structured chunk for sl: 0, or <0 when the server broke the protocol. */
static int read_chunk(NbdClient *s, NbdSlot *sl, uint16_t type, uint32_t len)
{
    uint8_t b[16];
    int r;
    switch (type) {
    case NBD_REPLY_TYPE_NONE:
        return len ? -EPROTO : 0;
    case NBD_REPLY_TYPE_OFFSET_DATA: {
        if (sl->type != NBD_CMD_READ || len < 8 || len - 8 > sl->len)
            return -EPROTO;
        if ((r = nbd_read_full(s->fd, b, 8, 0)) < 0)
            return r;
        uint64_t off = nbd_get64(b), n = len - 8;
        if (off < sl->off || off - sl->off > sl->len - n ||
            cover(sl, (uint32_t)(off - sl->off), (uint32_t)n) < 0)
            return -EPROTO;
        return nbd_read_full(s->fd, sl->buf + (off - sl->off), n, 0);
    }
    case NBD_REPLY_TYPE_OFFSET_HOLE: {
        if (sl->type != NBD_CMD_READ || len != 12)
            return -EPROTO;
        if ((r = nbd_read_full(s->fd, b, 12, 0)) < 0)
            return r;
        uint64_t off = nbd_get64(b), n = nbd_get32(b + 8);
        if (off < sl->off || n > sl->len || off - sl->off > sl->len - n ||
            cover(sl, (uint32_t)(off - sl->off), (uint32_t)n) < 0)
            return -EPROTO;
        memset(sl->buf + (off - sl->off), 0, n);
        return 0;
    }
    case NBD_REPLY_TYPE_BLOCK_STATUS:
        if (sl->type != NBD_CMD_BLOCK_STATUS || len < 12 || (len - 4) % 8)
            return -EPROTO;
        if ((r = nbd_read_full(s->fd, b, 4, 0)) < 0)
            return r;
        len -= 4;
        if (nbd_get32(b) == s->alloc_id && !sl->got_status) {
            sl->got_status = true;
            sl->ext.n = 0;
            while (len && sl->ext.n < NBD_EXTENTS) {
                if ((r = nbd_read_full(s->fd, b, 8, 0)) < 0)
                    return r;
                len -= 8;
                sl->ext.len[sl->ext.n] = nbd_get32(b);
                sl->ext.flags[sl->ext.n] = nbd_get32(b + 4);
                sl->ext.n++;
            }
        }
        /* descriptors past what is kept */
        return nbd_skip(s->fd, len, 0);
    default:
        if (!NBD_REPLY_TYPE_IS_ERR(type) || len < 6)
            return -EPROTO;
        if ((r = nbd_read_full(s->fd, b, 6, 0)) < 0)
            return r;
        uint32_t e = nbd_get32(b);
        if (!e || nbd_get16(b + 4) > len - 6)
            return -EPROTO;
        if (!sl->err)
            sl->err = nbd_errno_in(e);
        return nbd_skip(s->fd, len - 6, 0);
    }
}

static void *reader_thread(void *opaque)
{
    NbdClient *s = opaque;
    for (;;) {
        uint8_t h[NBD_STRUCTURED_REPLY_SIZE];
        int r = nbd_read_full(s->fd, h, 4, 0);
        if (r < 0)
            break;
        uint32_t magic = nbd_get32(h);
        if (magic == NBD_SIMPLE_REPLY_MAGIC) {
            if (nbd_read_full(s->fd, h + 4, NBD_SIMPLE_REPLY_SIZE - 4, 0) < 0)
                break;
            uint32_t err = nbd_get32(h + 4);
            NbdSlot *sl = find_slot(s, nbd_get64(h + 8));
            if (!sl)
                break;
            if (!err && sl->type == NBD_CMD_READ) {
                /* a read's data follows only a simple reply without error */
                if (s->structured || nbd_read_full(s->fd, sl->buf, sl->len, 0) < 0)
                    break;
            }
            complete(s, sl, err ? nbd_errno_in(err) : 0);
        } else if (magic == NBD_STRUCTURED_REPLY_MAGIC && s->structured) {
            if (nbd_read_full(s->fd, h + 4, NBD_STRUCTURED_REPLY_SIZE - 4, 0) < 0)
                break;
            uint16_t flags = nbd_get16(h + 4), type = nbd_get16(h + 6);
            uint32_t len = nbd_get32(h + 16);
            NbdSlot *sl = find_slot(s, nbd_get64(h + 8));
            if (!sl || read_chunk(s, sl, type, len) < 0)
                break;
            /* a read answered without error covers its whole range: the
             * chunks may not leave bytes of the buffer unwritten */
            if ((flags & NBD_REPLY_FLAG_DONE) && sl->type == NBD_CMD_READ && !sl->err &&
                sl->covered != sl->len)
                break;
            if (flags & NBD_REPLY_FLAG_DONE)
                complete(s, sl, 0);
        } else {
            break;
        }
    }
    kill_conn(s);
    return NULL;
}

static int reconnect(NbdClient *s);

static int conn_dead(const char *what)
{
    blk_set_error("NBD server connection lost (%s)", what);
    return -EIO;
}

/* One request, answered: 0 or -errno.  buf: a write's payload or a read's
 * destination.  sl_out, when given, gets the block status extent. */
static int request(NbdClient *s, uint16_t type, uint16_t flags, uint64_t off, uint32_t len,
                   void *buf, NbdExtents *ext)
{
    pthread_mutex_lock(&s->lock);
    while (!s->dead && s->nbusy == NBD_SLOTS)
        pthread_cond_wait(&s->slot_free, &s->lock);
    if (s->dead) {
        /* what was in flight has failed; a new request connects again */
        pthread_mutex_unlock(&s->lock);
        if (reconnect(s) < 0)
            return conn_dead("server gone");
        pthread_mutex_lock(&s->lock);
        while (!s->dead && s->nbusy == NBD_SLOTS)
            pthread_cond_wait(&s->slot_free, &s->lock);
        if (s->dead) {
            pthread_mutex_unlock(&s->lock);
            return conn_dead("server gone");
        }
    }
    int i = 0;
    while (s->slot[i].busy)
        i++;
    NbdSlot *sl = &s->slot[i];
    sl->busy = true;
    sl->done = false;
    sl->gen = (sl->gen + 1) & 0xffffffff;
    sl->type = type;
    sl->off = off;
    sl->len = len;
    sl->buf = buf;
    sl->err = 0;
    sl->covered = 0;
    sl->nranges = 0;
    sl->flush_covers = s->acked_seq;
    sl->got_status = false;
    s->nbusy++;
    uint64_t handle = (uint64_t)sl->gen << 8 | (uint64_t)i;
    pthread_mutex_unlock(&s->lock);

    uint8_t h[NBD_REQUEST_SIZE];
    nbd_put32(h, NBD_REQUEST_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, handle);
    nbd_put64(h + 16, off);
    nbd_put32(h + 24, len);
    pthread_mutex_lock(&s->send_lock);
    int r = nbd_write_full(s->fd, h, sizeof(h));
    if (r == 0 && type == NBD_CMD_WRITE)
        r = nbd_write_full(s->fd, buf, len);
    pthread_mutex_unlock(&s->send_lock);
    if (r < 0) {
        /* the connection is dead, but the reader thread may be inside
         * some slot's buffer right now: it alone fails the slots, once
         * the shutdown ends its last receive */
        pthread_mutex_lock(&s->lock);
        s->dead = true;
        pthread_mutex_unlock(&s->lock);
        shutdown(s->fd, SHUT_RDWR);
    }

    pthread_mutex_lock(&s->lock);
    while (!sl->done)
        pthread_cond_wait(&sl->cond, &s->lock);
    r = sl->err;
    if (ext) {
        ext->n = 0;
        if (sl->got_status)
            *ext = sl->ext;
    }
    bool dead = s->dead;
    sl->busy = false;
    s->nbusy--;
    pthread_cond_broadcast(&s->slot_free);
    pthread_mutex_unlock(&s->lock);
    if (r == -EIO && dead)
        return conn_dead("server gone");
    if (r < 0)
        blk_set_error("NBD server returned an error: %s", strerror(-r));
    return r;
}

/* ---- handshake ---- */

static int hs_error(const char *fmt, const char *a)
{
    blk_set_error(fmt, a);
    return -EINVAL;
}

static int send_option(NbdClient *s, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[16];
    nbd_put64(h, NBD_OPTS_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, len);
    int r = nbd_write_full(s->fd, h, sizeof(h));
    if (r == 0 && len)
        r = nbd_write_full(s->fd, data, len);
    return r;
}

/* One option reply: its type, its data in buf (at most NBD_MAX_OPTION). */
static int read_reply(NbdClient *s, uint32_t opt, uint32_t *type, uint8_t *buf, uint32_t *len,
                      int64_t deadline)
{
    uint8_t h[20];
    int r = nbd_read_full(s->fd, h, sizeof(h), deadline);
    if (r < 0)
        return r;
    *type = nbd_get32(h + 12);
    *len = nbd_get32(h + 16);
    if (nbd_get64(h) != NBD_REP_MAGIC || nbd_get32(h + 8) != opt || *len > NBD_MAX_OPTION)
        return -EPROTO;
    return nbd_read_full(s->fd, buf, *len, deadline);
}

static int handshake(NbdClient *s, bool rw)
{
    int64_t deadline = nbd_now_ms() + NBD_HANDSHAKE_MS;
    uint8_t h[18];
    int r = nbd_read_full(s->fd, h, sizeof(h), deadline);
    if (r < 0 || nbd_get64(h) != NBD_MAGIC)
        return hs_error("%s", "Server is not an NBD server (no NBDMAGIC)");
    if (nbd_get64(h + 8) != NBD_OPTS_MAGIC)
        return hs_error("%s", "Server uses the unsupported oldstyle NBD handshake");
    uint16_t hflags = nbd_get16(h + 16);
    bool fixed = hflags & NBD_FLAG_FIXED_NEWSTYLE;
    bool no_zeroes = hflags & NBD_FLAG_NO_ZEROES;
    uint8_t cf[4];
    nbd_put32(cf, (fixed ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) | (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0));
    if ((r = nbd_write_full(s->fd, cf, 4)) < 0)
        return hs_error("Failed to send the client flags: %s", strerror(-r));
    const char *ex = s->export ? s->export : "";
    size_t el = strlen(ex);
    if (el > NBD_MAX_STRING)
        return hs_error("%s", "export name too long to send");
    uint8_t *buf = malloc(NBD_MAX_OPTION + 64);
    if (!buf)
        return hs_error("%s", "out of memory");
    uint32_t type, len;
    bool go = fixed;
    s->max_block = NBD_MAX_BLOCK;
    s->min_block = 1;
    if (fixed) {
        /* structured replies, then base:allocation, then GO */
        if ((r = send_option(s, NBD_OPT_STRUCTURED_REPLY, NULL, 0)) < 0 ||
            (r = read_reply(s, NBD_OPT_STRUCTURED_REPLY, &type, buf, &len, deadline)) < 0)
            goto proto;
        s->structured = type == NBD_REP_ACK;
        if (s->structured) {
            static const char q[] = "base:allocation";
            size_t n = 0;
            nbd_put32(buf, (uint32_t)el);
            memcpy(buf + 4, ex, el);
            n = 4 + el;
            nbd_put32(buf + n, 1);
            nbd_put32(buf + n + 4, sizeof(q) - 1);
            memcpy(buf + n + 8, q, sizeof(q) - 1);
            n += 8 + sizeof(q) - 1;
            if ((r = send_option(s, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)n)) < 0)
                goto proto;
            for (;;) {
                if ((r = read_reply(s, NBD_OPT_SET_META_CONTEXT, &type, buf, &len, deadline)) <
                    0)
                    goto proto;
                if (type != NBD_REP_META_CONTEXT)
                    break;
                if (len == 4 + sizeof(q) - 1 && !memcmp(buf + 4, q, sizeof(q) - 1)) {
                    s->has_alloc = true;
                    s->alloc_id = nbd_get32(buf);
                }
            }
            if (type != NBD_REP_ACK)
                s->has_alloc = false;
        }
        nbd_put32(buf, (uint32_t)el);
        memcpy(buf + 4, ex, el);
        nbd_put16(buf + 4 + el, 1);
        nbd_put16(buf + 6 + el, NBD_INFO_BLOCK_SIZE);
        if ((r = send_option(s, NBD_OPT_GO, buf, (uint32_t)(8 + el))) < 0)
            goto proto;
        bool got_export = false;
        for (;;) {
            if ((r = read_reply(s, NBD_OPT_GO, &type, buf, &len, deadline)) < 0)
                goto proto;
            if (type == NBD_REP_INFO && len >= 2) {
                uint16_t it = nbd_get16(buf);
                if (it == NBD_INFO_EXPORT && len == 12) {
                    s->size = nbd_get64(buf + 2);
                    s->tflags = nbd_get16(buf + 10);
                    got_export = true;
                } else if (it == NBD_INFO_BLOCK_SIZE && len == 14) {
                    uint32_t min = nbd_get32(buf + 2), max = nbd_get32(buf + 10);
                    if (!min || min > 65536 || (min & (min - 1))) {
                        free(buf);
                        return hs_error("%s", "Server reported an invalid minimum block size");
                    }
                    s->min_block = min;
                    if (max >= 4096 && max < s->max_block)
                        s->max_block = max & ~511u;
                }
                continue;
            }
            break;
        }
        /* whole minimum blocks in every request */
        s->max_block &= ~(s->min_block - 1);
        if (s->max_block < s->min_block)
            s->max_block = s->min_block;
        if (type == NBD_REP_ERR_UNSUP) {
            go = false; /* an older server: EXPORT_NAME below */
        } else if (type != NBD_REP_ACK) {
            char msg[NBD_MAX_STRING + 200];
            const char *what = type == NBD_REP_ERR_UNKNOWN   ? "Requested export not available"
                               : type == NBD_REP_ERR_POLICY  ? "Access to the export was denied"
                               : type == NBD_REP_ERR_TLS_REQD ? "Server requires TLS"
                                                               : "Server refused the export";
            int ml = len > NBD_MAX_STRING ? (int)NBD_MAX_STRING : (int)len;
            if (len)
                snprintf(msg, sizeof(msg), "%s\nserver reported: %.*s", what, ml,
                         (const char *)buf);
            else
                snprintf(msg, sizeof(msg), "%s", what);
            free(buf);
            return hs_error("%s", msg);
        } else if (!got_export) {
            r = -EPROTO;
            goto proto;
        }
    }
    if (!go) {
        /* structured replies and the context, when the server took them
         * before it refused GO, hold for the export EXPORT_NAME opens
         * (as QEMU 7.2's client keeps them) */
        if ((r = send_option(s, NBD_OPT_EXPORT_NAME, ex, (uint32_t)el)) < 0 ||
            (r = nbd_read_full(s->fd, buf, no_zeroes ? 10 : 134, deadline)) < 0) {
            free(buf);
            return hs_error("%s", "Requested export not available");
        }
        s->size = nbd_get64(buf);
        s->tflags = nbd_get16(buf + 8);
    }
    free(buf);
    if (s->size > INT64_MAX)
        return hs_error("%s", "Server reported an export size past 8 EiB");
    if (rw && (s->tflags & NBD_FLAG_READ_ONLY))
        return hs_error("%s", "NBD export is read-only");
    return 0;
proto:
    free(buf);
    return hs_error("Failed to read the NBD handshake: %s",
                    strerror(r == -EPROTO ? EPROTO : -r));
}

static int connect_server(NbdClient *s)
{
    char where[4200];
    int fd = -1, err = 0;
    if (s->path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(where, sizeof(where), "%s", s->path);
        if (strlen(s->path) >= sizeof(sa.sun_path)) {
            blk_set_error("UNIX socket path '%s' is too long", s->path);
            return -EINVAL;
        }
        strcpy(sa.sun_path, s->path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        } else if (fd < 0) {
            err = errno;
        }
    } else {
        snprintf(where, sizeof(where), "%s:%s", s->host, s->port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
        int e = getaddrinfo(s->host, s->port, &hints, &res);
        if (e) {
            blk_set_error("address resolution failed for %s: %s", where, gai_strerror(e));
            return -EINVAL;
        }
        for (a = res; a; a = a->ai_next) {
            fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) {
                err = errno;
                continue;
            }
            if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
                break;
            err = errno;
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        }
    }
    if (fd < 0) {
        blk_set_error("Failed to connect to '%s': %s", where, strerror(err));
        return -err;
    }
    s->fd = fd;
    return 0;
}

/* One new connection to the same export, swapped in for the dead one
 * (whose reader has ended): the export must be what it was. */
static int try_reconnect(NbdClient *s)
{
    NbdClient *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->fd = -1;
    t->host = s->host;
    t->port = s->port;
    t->path = s->path;
    t->export = s->export;
    int r = connect_server(t);
    if (r == 0)
        r = handshake(t, s->rw);
    if (r == 0 && (t->size != s->size || t->tflags != s->tflags ||
                   t->structured != s->structured || t->has_alloc != s->has_alloc ||
                   t->max_block != s->max_block || t->min_block != s->min_block)) {
        blk_set_error("%s", "the NBD export changed while the connection was lost");
        r = -EIO;
    }
    if (r < 0) {
        if (t->fd >= 0)
            close(t->fd);
        free(t);
        return r;
    }
    pthread_mutex_lock(&s->send_lock);
    int old = s->fd;
    s->fd = t->fd;
    pthread_mutex_unlock(&s->send_lock);
    close(old);
    s->alloc_id = t->alloc_id; /* the reader's, and it is not running */
    free(t);
    /* alive before the reader starts: a reader that meets the end of the
     * connection at once says so (dead = true), and nothing after it may
     * say otherwise, or requests would wait on a connection no reader
     * follows */
    pthread_mutex_lock(&s->lock);
    s->dead = false;
    pthread_mutex_unlock(&s->lock);
    if (pthread_create(&s->reader, NULL, reader_thread, s)) {
        blk_set_error("cannot start the NBD reader thread");
        /* no reader: what took a slot meanwhile fails here */
        kill_conn(s);
        return -EAGAIN;
    }
    s->reader_running = true;
    return 0;
}

static int reconnect(NbdClient *s)
{
    int64_t deadline = nbd_now_ms() + (int64_t)s->reconnect_ms;
    int r;
    pthread_mutex_lock(&s->reconnect_lock);
    for (;;) {
        /* every request of the old connection has let go of its slot */
        pthread_mutex_lock(&s->lock);
        bool dead = s->dead;
        while (dead && s->nbusy)
            pthread_cond_wait(&s->slot_free, &s->lock);
        pthread_mutex_unlock(&s->lock);
        if (!dead) {
            r = 0; /* another caller made it again */
            break;
        }
        if (s->reader_running) {
            pthread_join(s->reader, NULL);
            s->reader_running = false;
        }
        r = try_reconnect(s);
        if (r == 0 || nbd_now_ms() >= deadline)
            break;
        usleep(100000);
    }
    pthread_mutex_unlock(&s->reconnect_lock);
    return r;
}

/* ---- the driver ---- */

static void free_client(NbdClient *s)
{
    for (int i = 0; i < NBD_SLOTS; i++)
        pthread_cond_destroy(&s->slot[i].cond);
    pthread_cond_destroy(&s->slot_free);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->send_lock);
    pthread_mutex_destroy(&s->cache_lock);
    pthread_mutex_destroy(&s->reconnect_lock);
    pthread_rwlock_destroy(&s->rmw_lock);
    free(s->host);
    free(s->port);
    free(s->path);
    free(s->export);
    free(s);
}

static char *dup_opt(BlockOptions *o, const char *k1, const char *k2)
{
    const char *v = blkopts_get(o, k1);
    const char *w = k2 ? blkopts_get(o, k2) : NULL;
    return v ? strdup(v) : w ? strdup(w) : NULL;
}

static int nbd_open(BlockDriverState *bs, BlockOptions *opts)
{
    NbdClient *s = calloc(1, sizeof(*s));
    if (!s) {
        blk_set_error("out of memory");
        return -ENOMEM;
    }
    s->fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->send_lock, NULL);
    pthread_mutex_init(&s->cache_lock, NULL);
    pthread_mutex_init(&s->reconnect_lock, NULL);
    /* an RMW waiting is not starved by a stream of whole-block writes
     * (no thread takes rmw_lock twice) */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->rmw_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_cond_init(&s->slot_free, NULL);
    for (int i = 0; i < NBD_SLOTS; i++)
        pthread_cond_init(&s->slot[i].cond, NULL);
    const char *type = blkopts_get(opts, "server.type");
    s->host = dup_opt(opts, "server.host", "host");
    s->port = dup_opt(opts, "server.port", "port");
    s->path = dup_opt(opts, "server.path", "path");
    s->export = dup_opt(opts, "export", NULL);
    /* QEMU's knobs that change nothing here */
    uint64_t delay = 0;
    blkopts_get(opts, "open-timeout");
    blkopts_get(opts, "server.ipv4");
    blkopts_get(opts, "server.ipv6");
    int r = -EINVAL;
    if (blkopts_get_uint(opts, "reconnect-delay", 0, &delay) < 0 || delay > 3600) {
        blk_set_error("Parameter 'reconnect-delay' expects a number of seconds up to 3600");
    } else if (blkopts_get(opts, "tls-creds")) {
        blk_set_error("TLS is not supported by calf's nbd driver");
    } else if (blkopts_get(opts, "x-dirty-bitmap")) {
        blk_set_error("x-dirty-bitmap is not supported by calf's nbd driver");
    } else if (type && strcmp(type, "inet") && strcmp(type, "unix")) {
        blk_set_error("Invalid parameter '%s'", type);
    } else if (type ? !strcmp(type, "unix") && !s->path : !s->path && !s->host) {
        blk_set_error(type ? "Parameter 'server.path' is missing"
                           : "Parameter 'server.type' is missing");
    } else if (type ? !strcmp(type, "inet") && !s->host : s->path && s->host) {
        blk_set_error(type ? "Parameter 'server.host' is missing"
                           : "Both 'path' and 'host' were given");
    } else {
        if (type && !strcmp(type, "inet")) {
            free(s->path);
            s->path = NULL;
        } else if (s->path) {
            free(s->host);
            s->host = NULL;
        }
        if (s->host && !s->port)
            s->port = strdup("10809");
        r = 0;
    }
    if (r == 0 && (s->host ? !s->port : !s->path)) {
        blk_set_error("out of memory");
        r = -ENOMEM;
    }
    s->rw = !bs->read_only;
    s->reconnect_ms = delay * 1000;
    if (r == 0)
        r = connect_server(s);
    if (r == 0 && (r = handshake(s, s->rw)) == 0) {
        if (pthread_create(&s->reader, NULL, reader_thread, s)) {
            blk_set_error("cannot start the NBD reader thread");
            r = -EAGAIN;
        } else {
            s->reader_running = true;
        }
    }
    if (r < 0) {
        if (s->fd >= 0)
            close(s->fd);
        free_client(s);
        return r;
    }
    /* the name QEMU gives the node when it was opened by options, or as a
     * backing file (a name typed for the top image stays as typed) */
    if (bs->depth > 0 || (bs->flags & BLK_O_AS_BACKING) || !strncmp(bs->filename, "json:", 5) ||
        !nbd_is_filename(bs->filename)) {
        char *name = NULL;
        int n = s->path ? (s->export ? asprintf(&name, "nbd+unix:///%s?socket=%s", s->export,
                                                s->path)
                                     : asprintf(&name, "nbd+unix://?socket=%s", s->path))
                : s->export ? asprintf(&name, "nbd://%s:%s/%s", s->host, s->port, s->export)
                            : asprintf(&name, "nbd://%s:%s", s->host, s->port);
        if (n >= 0) {
            free(bs->filename);
            bs->filename = name;
        }
    }
    bs->opaque = s;
    bs->size = s->size;
    return 0;
}

static void nbd_close(BlockDriverState *bs)
{
    NbdClient *s = bs->opaque;
    if (!s)
        return;
    uint8_t h[NBD_REQUEST_SIZE] = {0};
    nbd_put32(h, NBD_REQUEST_MAGIC);
    nbd_put16(h + 6, NBD_CMD_DISC);
    pthread_mutex_lock(&s->send_lock);
    nbd_write_full(s->fd, h, sizeof(h));
    pthread_mutex_unlock(&s->send_lock);
    shutdown(s->fd, SHUT_RDWR);
    if (s->reader_running)
        pthread_join(s->reader, NULL);
    close(s->fd);
    free_client(s);
}

/* The extent cache is stale: data is about to change, or has. */
static void cache_drop(NbdClient *s)
{
    pthread_mutex_lock(&s->cache_lock);
    s->cache_gen++;
    s->cache.n = 0;
    pthread_mutex_unlock(&s->cache_lock);
}

static int read_range(NbdClient *s, uint64_t off, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        uint32_t n = len > s->max_block ? s->max_block : (uint32_t)len;
        int r = request(s, NBD_CMD_READ, 0, off, n, p, NULL);
        if (r < 0)
            return r;
        off += n;
        p += n;
        len -= n;
    }
    return 0;
}

static int write_range(NbdClient *s, uint64_t off, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    int r = 0;
    while (len && r == 0) {
        uint32_t n = len > s->max_block ? s->max_block : (uint32_t)len;
        r = request(s, NBD_CMD_WRITE, 0, off, n, (void *)p, NULL);
        off += n;
        p += n;
        len -= n;
    }
    return r;
}

/* Writes, zero writes and trims of whole blocks hold rmw_lock shared
 * while they run, when there are read-modify-writes to wait for. */
static void whole_begin(NbdClient *s)
{
    if (s->min_block > 1)
        pthread_rwlock_rdlock(&s->rmw_lock);
}

static void whole_end(NbdClient *s)
{
    if (s->min_block > 1)
        pthread_rwlock_unlock(&s->rmw_lock);
}

/* Reads and writes in the server's minimum block size: whole blocks go
 * as they are; a partial one at either end is read whole, and a write
 * patches it and writes it back, holding rmw_lock exclusive (no other
 * write into the same block may land between the read and the write-back,
 * or the write-back would undo its bytes). */
static int aligned_rw(NbdClient *s, uint64_t off, uint8_t *rp, const uint8_t *wp, size_t len)
{
    uint32_t m = s->min_block;
    uint8_t *t = NULL;
    int r = 0;
    while (len && r == 0) {
        uint64_t bo = off & ~(uint64_t)(m - 1);
        size_t n;
        if (off != bo || len < m) {
            n = m - (size_t)(off - bo) < len ? m - (size_t)(off - bo) : len;
            if (!t && !(t = malloc(m)))
                return -ENOMEM;
            if (wp)
                pthread_rwlock_wrlock(&s->rmw_lock);
            r = read_range(s, bo, t, m);
            if (r == 0 && wp) {
                memcpy(t + (off - bo), wp, n);
                r = write_range(s, bo, t, m);
            } else if (r == 0) {
                memcpy(rp, t + (off - bo), n);
            }
            if (wp)
                pthread_rwlock_unlock(&s->rmw_lock);
        } else if (wp) {
            n = len & ~(size_t)(m - 1);
            whole_begin(s);
            r = write_range(s, off, wp, n);
            whole_end(s);
        } else {
            n = len & ~(size_t)(m - 1);
            r = read_range(s, off, rp, n);
        }
        off += n;
        len -= n;
        if (rp)
            rp += n;
        if (wp)
            wp += n;
    }
    free(t);
    return r;
}

static bool unaligned(NbdClient *s, uint64_t off, uint64_t len)
{
    return s->min_block > 1 && ((off | len) & (s->min_block - 1));
}

static int nbd_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    NbdClient *s = bs->opaque;
    if (unaligned(s, off, len))
        return aligned_rw(s, off, buf, NULL, len);
    return read_range(s, off, buf, len);
}

static int nbd_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    NbdClient *s = bs->opaque;
    cache_drop(s);
    int r;
    if (unaligned(s, off, len)) {
        r = aligned_rw(s, off, NULL, buf, len);
    } else {
        whole_begin(s);
        r = write_range(s, off, buf, len);
        whole_end(s);
    }
    cache_drop(s);
    return r;
}

static int nbd_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    NbdClient *s = bs->opaque;
    if (!(s->tflags & NBD_FLAG_SEND_WRITE_ZEROES)) {
        /* the server cannot: write the zeros */
        size_t cn = len < (1u << 20) ? (size_t)len : (1u << 20);
        uint8_t *z = calloc(1, cn ? cn : 1);
        if (!z)
            return -ENOMEM;
        int r = 0;
        while (len && r == 0) {
            size_t n = len < cn ? (size_t)len : cn;
            r = nbd_pwrite(bs, off, z, n);
            off += n;
            len -= n;
        }
        free(z);
        return r;
    }
    if (unaligned(s, off, len)) {
        /* the partial blocks at the ends as written zeros */
        uint32_t m = s->min_block;
        uint64_t head = (m - (off & (m - 1))) & (m - 1);
        if (head > len)
            head = len;
        uint64_t tail = (len - head) & (m - 1);
        uint8_t *z = calloc(1, m);
        if (!z)
            return -ENOMEM;
        int r = head ? nbd_pwrite(bs, off, z, head) : 0;
        if (r == 0 && tail)
            r = nbd_pwrite(bs, off + len - tail, z, tail);
        free(z);
        if (r < 0 || len - head - tail == 0)
            return r;
        off += head;
        len -= head + tail;
    }
    uint16_t f = flags & BLK_ZERO_MAY_UNMAP ? 0 : NBD_CMD_FLAG_NO_HOLE;
    int r = 0;
    cache_drop(s);
    whole_begin(s);
    while (len && r == 0) {
        uint32_t n = len > NBD_ZERO_CHUNK ? NBD_ZERO_CHUNK : (uint32_t)len;
        r = request(s, NBD_CMD_WRITE_ZEROES, f, off, n, NULL, NULL);
        off += n;
        len -= n;
    }
    whole_end(s);
    cache_drop(s);
    return r;
}

static int nbd_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    NbdClient *s = bs->opaque;
    if (!(s->tflags & NBD_FLAG_SEND_TRIM))
        return 0;
    if (s->min_block > 1) {
        /* a trim is advice: only the whole blocks inside the range */
        uint64_t m = s->min_block, a = (off + m - 1) & ~(m - 1), e = (off + len) & ~(m - 1);
        if (e <= a)
            return 0;
        off = a;
        len = e - a;
    }
    int r = 0;
    cache_drop(s);
    whole_begin(s);
    while (len && r == 0) {
        uint32_t n = len > NBD_ZERO_CHUNK ? NBD_ZERO_CHUNK : (uint32_t)len;
        r = request(s, NBD_CMD_TRIM, 0, off, n, NULL, NULL);
        off += n;
        len -= n;
    }
    whole_end(s);
    cache_drop(s);
    return r;
}

static int nbd_flush(BlockDriverState *bs)
{
    NbdClient *s = bs->opaque;
    if (bs->flags & BLK_O_UNSAFE)
        return 0;
    /* writes acknowledged on a connection that died before a flush
     * covered them may never reach the disk: this flush fails */
    pthread_mutex_lock(&s->lock);
    bool lost = s->lost_writes;
    s->lost_writes = false;
    pthread_mutex_unlock(&s->lock);
    int r = 0;
    if (s->tflags & NBD_FLAG_SEND_FLUSH)
        r = request(s, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL);
    if (r == 0 && lost) {
        blk_set_error("%s", "NBD server connection lost with unflushed writes");
        r = -EIO;
    }
    return r;
}

static int ext_status(uint32_t flags)
{
    return (flags & NBD_STATE_ZERO ? BLK_STATUS_ZERO : BLK_STATUS_DATA) | BLK_STATUS_ALLOCATED |
           BLK_STATUS_OFFSET;
}


/* base:allocation as the block layer says it: a hole with zeros reads as
 * zeros, anything else as data; the export is the whole of this layer,
 * at the same offsets (as qemu-img map shows an NBD image). */
static int nbd_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *host_offset)
{
    NbdClient *s = bs->opaque;
    *host_offset = off;
    if (!s->has_alloc) {
        *pnum = len;
        return BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET;
    }
    /* from the extents of the last reply, when they cover off with data:
     * another client (multi-conn, calf-nbd -e) may write where this one
     * was told zeros, which this connection cannot see; "data" for what
     * another client has trimmed since is still a safe answer */
    pthread_mutex_lock(&s->cache_lock);
    uint64_t gen = s->cache_gen, e = s->cache_off;
    for (int i = 0; i < s->cache.n; i++) {
        uint64_t next = e + s->cache.len[i];
        if (off >= e && off < next) {
            uint32_t f = s->cache.flags[i];
            if (f & (NBD_STATE_HOLE | NBD_STATE_ZERO))
                break;
            pthread_mutex_unlock(&s->cache_lock);
            *pnum = next - off < len ? next - off : len;
            return ext_status(f);
        }
        e = next;
    }
    pthread_mutex_unlock(&s->cache_lock);
    /* asked from the start of off's minimum block, for whole blocks */
    uint64_t m = s->min_block, qoff = off & ~(m - 1), qlen = len + (off - qoff);
    if (qlen > 0x80000000u)
        qlen = 0x80000000u;
    qlen = (qlen + m - 1) & ~(m - 1);
    if (qlen > s->size - qoff)
        qlen = s->size - qoff;
    NbdExtents ext;
    int r = request(s, NBD_CMD_BLOCK_STATUS, 0, qoff, (uint32_t)qlen, NULL, &ext);
    if (r < 0)
        return r;
    e = qoff;
    for (int i = 0; i < ext.n; i++) {
        uint64_t next = e + ext.len[i];
        if (off >= e && off < next) {
            pthread_mutex_lock(&s->cache_lock);
            if (s->cache_gen == gen) {
                s->cache = ext;
                s->cache_off = qoff;
            }
            pthread_mutex_unlock(&s->cache_lock);
            *pnum = next - off < len ? next - off : len;
            return ext_status(ext.flags[i]);
        }
        e = next;
    }
    blk_set_error("NBD server sent no block status for offset %llu", (unsigned long long)off);
    return -EIO;
}

static int64_t nbd_allocated_size(BlockDriverState *bs)
{
    (void)bs;
    return -ENOTSUP; /* "disk size: unavailable" */
}

/* An export has the size the server gives it, as with QEMU's driver: a
 * resize to any other size fails ("Cannot resize", ENOTSUP), and a format
 * above whose host file must grow (a qcow2 allocating at its end: the
 * protocol layer's grow, which passes BLK_PREALLOC_NO_SYNC) gets the
 * EINVAL that QEMU's write past the export's end gets. */
static int nbd_truncate(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink)
{
    (void)shrink;
    if (size == bs->size)
        return 0;
    if (size > bs->size && (prealloc & BLK_PREALLOC_NO_SYNC)) {
        blk_set_error("Cannot grow NBD nodes");
        return -EINVAL;
    }
    blk_set_error("Cannot resize NBD nodes");
    return -ENOTSUP;
}

static int nbd_get_info(BlockDriverState *bs, BlockInfo *info)
{
    (void)bs;
    (void)info;
    return 0;
}

const BlockDriver blk_nbd_driver = {
    .name = "nbd",
    .shown_as = "raw",
    .no_file = true,
    .open = nbd_open,
    .close = nbd_close,
    .pread = nbd_pread,
    .pwrite = nbd_pwrite,
    .pwrite_zeroes = nbd_pwrite_zeroes,
    .discard = nbd_discard,
    .flush = nbd_flush,
    .block_status = nbd_block_status,
    .allocated_size = nbd_allocated_size,
    .truncate = nbd_truncate,
    .truncate_no_sync = true,
    .get_info = nbd_get_info,
};
