/* libFuzzer harness for the nbd driver (block/nbd.c), the client side:
 * the input is everything a server sends, from its first byte (the
 * greeting, the option replies, then the replies to requests), cut into
 * segments: a 16-bit big-endian length, then that many bytes.  A thread
 * plays the server on a Unix socket in $TMPDIR: it sends segment 0 at
 * once and segment k once the client has sent its k-th whole message
 * (client flags, an option with its data, a request with its payload),
 * so that a reply never comes before its request, as from a real server;
 * at the end of the input it closes.  The harness opens
 * nbd+unix:///?socket=... read-write and makes a read, a block status, a
 * write, a write of zeros, a trim and a flush (16 KiB each), then closes.  Every
 * request may fail; none may crash, hang or read past its buffer.
 *
 * The first requests' handles are known (slot 0, generations 1, 2, ...:
 * 0x100, 0x200, ...), so the seeds (tests/fuzz/make-nbd-seeds.py)
 * answer them properly.  FUZZ_NBD_VERBOSE=1 prints what each request
 * returned.  Built like fuzz-nbd.c: make
 * fuzz-nbd-client; $(BUILD)/tests/fuzz-nbd-client replays for make test. */
#include "block/block.h"
#include "block/nbd-proto.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char sock_path[300];

static void fuzz_cleanup(void)
{
    if (sock_path[0])
        unlink(sock_path);
}

/* A listening socket for one connection: the server thread closes it
 * once it has its client, so that the driver's attempts to connect again
 * (after the input ran out) are refused at once instead of waiting. */
static int fuzz_listen(void)
{
    if (!sock_path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(sock_path, sizeof(sock_path), "%s/calf-fuzz-nbdc-%d",
                 tmp && *tmp ? tmp : "/tmp", (int)getpid());
        atexit(fuzz_cleanup);
    }
    unlink(sock_path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof(sa.sun_path))
        abort();
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
        perror("fuzz-nbd-client: socket");
        abort();
    }
    return fd;
}

typedef struct Server {
    const uint8_t *data;
    size_t size;
    int lfd, fd;
} Server;

static void *drain(void *opaque)
{
    Server *sv = opaque;
    char buf[65536];
    while (recv(sv->fd, buf, sizeof(buf), 0) > 0) {
    }
    return NULL;
}

/* The next segment of the input: 0 when there is none left. */
static int next_segment(Server *sv, const uint8_t **p, size_t *n)
{
    if (sv->size < 2)
        return 0;
    size_t len = (size_t)sv->data[0] << 8 | sv->data[1];
    if (len > sv->size - 2)
        len = sv->size - 2;
    *p = sv->data + 2;
    *n = len;
    sv->data += 2 + len;
    sv->size -= 2 + len;
    return 1;
}

/* Reads one whole message of the client: 0, or -1 at its end.  A client
 * that sends nothing for 30 ms waits for the server (the input promised
 * it more than it sent): the exchange ends there, as with a server that
 * hangs up. */
static int client_message(int fd, bool first)
{
    uint8_t h[NBD_REQUEST_SIZE];
    int64_t dl = nbd_now_ms() + 30;
    if (first)
        return nbd_read_full(fd, h, 4, dl) < 0 ? -1 : 0;
    if (nbd_read_full(fd, h, 8, dl) < 0)
        return -1;
    uint64_t skip = 0;
    if (nbd_get64(h) == NBD_OPTS_MAGIC) {
        if (nbd_read_full(fd, h + 8, 8, dl) < 0)
            return -1;
        skip = nbd_get32(h + 12);
    } else if (nbd_get32(h) == NBD_REQUEST_MAGIC) {
        if (nbd_read_full(fd, h + 8, NBD_REQUEST_SIZE - 8, dl) < 0)
            return -1;
        if (nbd_get16(h + 6) == NBD_CMD_WRITE)
            skip = nbd_get32(h + 24);
    }
    return nbd_skip(fd, skip, dl) < 0 ? -1 : 0;
}

static void *serve(void *opaque)
{
    Server *sv = opaque;
    sv->fd = accept4(sv->lfd, NULL, NULL, SOCK_CLOEXEC);
    close(sv->lfd);
    if (sv->fd < 0)
        return NULL;
    const uint8_t *p;
    size_t n;
    for (int k = 0; next_segment(sv, &p, &n); k++) {
        /* segment k answers the client's k-th message; the 1st is its flags */
        if (k > 0 && client_message(sv->fd, k == 1) < 0)
            break;
        if (nbd_write_full(sv->fd, p, n) < 0)
            break;
    }
    /* all said: the client sees the end of the stream */
    shutdown(sv->fd, SHUT_WR);
    pthread_t td;
    if (pthread_create(&td, NULL, drain, sv))
        abort();
    pthread_join(td, NULL);
    close(sv->fd);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Server sv = {.data = data, .size = size, .lfd = fuzz_listen(), .fd = -1};
    pthread_t ts;
    if (pthread_create(&ts, NULL, serve, &sv))
        abort();
    char uri[400];
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock_path);
    BlockDriverState *bs = blk_open(uri, NULL, BLK_O_RDWR, NULL);
    if (bs) {
        static uint8_t buf[16384];
        uint64_t pnum, host;
        size_t n = bs->size < sizeof(buf) ? (size_t)bs->size : sizeof(buf);
        int r[6] = {0};
        r[0] = blk_pread(bs, 0, buf, n);
        if (bs->size)
            r[1] = blk_block_status(bs, 0, bs->size, &pnum, &host);
        if (r[1] < 0 && getenv("FUZZ_NBD_VERBOSE"))
            fprintf(stderr, "status: %s\n", blk_error());
        r[2] = blk_pwrite(bs, 0, buf, n);
        r[3] = blk_pwrite_zeroes(bs, 0, n, 0);
        r[4] = blk_discard(bs, 0, n);
        r[5] = blk_flush(bs);
        if (getenv("FUZZ_NBD_VERBOSE"))
            fprintf(stderr, "size %llu: read %d, status %d, write %d, zeroes %d, trim %d, "
                    "flush %d\n", (unsigned long long)bs->size, r[0], r[1], r[2], r[3], r[4],
                    r[5]);
        blk_close(bs);
    } else if (getenv("FUZZ_NBD_VERBOSE")) {
        fprintf(stderr, "open: %s\n", blk_error());
    }
    /* (blk_open always connected: the server thread has its client) */
    pthread_join(ts, NULL);
    return 0;
}
