/* The NBD protocol as calf speaks it (the NetworkBlockDevice project's
 * doc/proto.md): the fixed newstyle handshake, simple and structured
 * replies, meta contexts.  Shared by the server (block/nbd-server.c,
 * build/calf-nbd) and the client driver (block/nbd.c).  Everything on the
 * wire is big-endian. */
#ifndef CALF_NBD_PROTO_H
#define CALF_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBD_DEFAULT_PORT 10809

#define NBD_MAGIC        0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC   0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC    0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* options */
#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10

/* option replies */
#define NBD_REP_ACK          1u
#define NBD_REP_SERVER       2u
#define NBD_REP_INFO         3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_ERR(n)       ((1u << 31) | (n))
#define NBD_REP_ERR_UNSUP    NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY   NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID  NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN  NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN NBD_REP_ERR(7)
#define NBD_REP_ERR_TOO_BIG  NBD_REP_ERR(9)

/* NBD_INFO_* of NBD_OPT_INFO / NBD_OPT_GO */
#define NBD_INFO_EXPORT      0
#define NBD_INFO_NAME        1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE  3

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* commands and their flags */
#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* structured reply chunks */
#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0
#define NBD_REPLY_TYPE_OFFSET_DATA   1
#define NBD_REPLY_TYPE_OFFSET_HOLE   2
#define NBD_REPLY_TYPE_BLOCK_STATUS  5
#define NBD_REPLY_TYPE_ERROR         ((1u << 15) + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET  ((1u << 15) + 2)
#define NBD_REPLY_TYPE_IS_ERR(t)     (((t) >> 15) & 1)

/* base:allocation flags */
#define NBD_STATE_HOLE 1u
#define NBD_STATE_ZERO 2u
#define NBD_STATE_DIRTY 1u /* qemu:dirty-bitmap: */

/* errors on the wire */
#define NBD_EPERM     1
#define NBD_EIO       5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

/* Sizes: a string (export name, description, context name) is at most
 * 4096 bytes (the spec's MUST); an option's data at most NBD_MAX_OPTION
 * (enough for a name and many queries); a request's payload, and a read,
 * at most NBD_MAX_BLOCK (what qemu-nbd advertises too). */
#define NBD_MAX_STRING 4096u
#define NBD_MAX_OPTION (64u * 1024)
#define NBD_MAX_BLOCK  (32u * 1024 * 1024)
#define NBD_REQUEST_SIZE 28
#define NBD_SIMPLE_REPLY_SIZE 16
#define NBD_STRUCTURED_REPLY_SIZE 20

static inline void nbd_put16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v;
}
static inline void nbd_put32(uint8_t *p, uint32_t v)
{
    nbd_put16(p, v >> 16);
    nbd_put16(p + 2, v);
}
static inline void nbd_put64(uint8_t *p, uint64_t v)
{
    nbd_put32(p, v >> 32);
    nbd_put32(p + 4, v);
}
static inline uint16_t nbd_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t nbd_get32(const uint8_t *p)
{
    return (uint32_t)nbd_get16(p) << 16 | nbd_get16(p + 2);
}
static inline uint64_t nbd_get64(const uint8_t *p)
{
    return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}

/* A request header as it came off the wire. */
typedef struct NbdRequest {
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint64_t offset;
    uint32_t length;
} NbdRequest;

/* Decodes the 28 bytes of a request; false when the magic is wrong. */
bool nbd_parse_request(const uint8_t *p, NbdRequest *r);
/* The wire errno for a negative errno of the block layer. */
uint32_t nbd_errno_out(int err);
/* The negative errno for a wire error (unknown ones are -EINVAL). */
int nbd_errno_in(uint32_t err);

/* Full reads and writes on a socket (EINTR handled, MSG_NOSIGNAL): 0, or
 * -errno (-ECONNRESET for EOF).  deadline_ms, when not 0, is a
 * CLOCK_MONOTONIC time in milliseconds past which a read gives -ETIMEDOUT. */
int nbd_read_full(int fd, void *buf, size_t len, int64_t deadline_ms);
int nbd_write_full(int fd, const void *buf, size_t len);
/* nbd_write_full, failing with -ETIMEDOUT at deadline_ms (nbd_now_ms()'s
 * clock; 0: none) */
int nbd_write_until(int fd, const void *buf, size_t len, int64_t deadline_ms);
/* Reads and drops len bytes, in small pieces (bounded memory). */
int nbd_skip(int fd, uint64_t len, int64_t deadline_ms);
int64_t nbd_now_ms(void);

/* ---- the server (block/nbd-server.c) ---- */

struct BlockDriverState;

typedef struct NbdExport {
    struct BlockDriverState *bs;
    const char *name;        /* "" by default, as qemu-nbd's */
    const char *description; /* NULL: none */
    bool read_only;
    bool allocation_depth;   /* -A: qemu:allocation-depth offered */
    bool discard;            /* --discard=unmap: trim deallocates */
    int detect_zeroes;       /* 0 off, 1 on, 2 unmap */
    int workers;             /* threads per connection (0: on its own thread) */
    int handshake_ms;        /* a client gets this long to finish the handshake (0: forever) */
    bool multi_conn;         /* NBD_FLAG_CAN_MULTI_CONN */
    uint64_t offset;         /* -o: the export starts this far into the image */
    /* -B: a persistent dirty bitmap as qemu:dirty-bitmap:NAME, its bits
     * read once at the start (the export cannot change them: it is
     * read-only or the bitmap disabled); bit i: [i, i+1) * granularity */
    const char *bitmap;      /* NULL: none */
    const uint8_t *bitmap_bits;
    uint64_t bitmap_nbytes;
    uint32_t bitmap_gran;
} NbdExport;

/* Serves one client on fd (left open for the caller to close): the
 * handshake, then requests until the client disconnects or breaks the
 * protocol.  0 when the client ended the session properly, -errno
 * otherwise; a line saying why goes to stderr when verbose.  *negotiated
 * (if not NULL): whether the handshake got as far as transmission.  The
 * export is its image's whole sectors from offset on.  Never touches the image beyond
 * what requests ask, never writes a read-only export. */
int nbd_serve(const NbdExport *exp, int fd, bool verbose, bool *negotiated);

/* ---- listing a server's exports (block/nbd-list.c, calf-nbd -L) ---- */

/* On fd, a connection to a server: asks for its exports as qemu-nbd -L
 * does and prints them to out in qemu-nbd's format.  0, or -1 with a
 * one-line message in err (nothing printed). */
#include <stdio.h>
int nbd_list_exports(int fd, FILE *out, char *err, size_t errlen);

#endif
