/* libFuzzer harness for the NBD server (block/nbd-server.c): the input
 * is everything a client sends, from its first byte (client flags,
 * options, requests, write payloads).  nbd_serve() runs it against a
 * 1 MiB raw image in $TMPDIR over a socket pair, with the requests run on
 * the connection's own thread (workers 0: deterministic) and
 * qemu:allocation-depth offered, so every option and command path is
 * reachable.  A thread feeds the input and closes its side for writing;
 * another reads and drops whatever the server answers.
 *
 * Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined
 * ($(BUILD)/fuzz/fuzz-nbd) and, with tests/fuzz/replay-main.c, by `make
 * test` ($(BUILD)/tests/fuzz-nbd FILE|DIR..., tests/fuzz-nbd.t replays
 * tests/fuzz/corpus-nbd).  Seeds: tests/fuzz/make-nbd-seeds.py. */
#include "block/block.h"
#include "block/nbd-proto.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static BlockDriverState *fuzz_bs;
static char fuzz_path[300];

static void fuzz_cleanup(void)
{
    blk_close(fuzz_bs);
    if (fuzz_path[0])
        unlink(fuzz_path);
}

static void fuzz_setup(void)
{
    if (fuzz_bs)
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_path, sizeof(fuzz_path), "%s/calf-fuzz-nbd-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(fuzz_path);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
        perror("fuzz-nbd: image");
        abort();
    }
    close(fd);
    fuzz_bs = blk_open(fuzz_path, "raw", BLK_O_RDWR | BLK_O_UNSAFE, NULL);
    if (!fuzz_bs) {
        fprintf(stderr, "fuzz-nbd: %s\n", blk_error());
        abort();
    }
    atexit(fuzz_cleanup);
}

typedef struct Feed {
    int fd;
    const uint8_t *data;
    size_t size;
} Feed;

static void *feed(void *opaque)
{
    Feed *f = opaque;
    /* the server may hang up first: a failed write is fine */
    nbd_write_full(f->fd, f->data, f->size);
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void *drain(void *opaque)
{
    Feed *f = opaque;
    char buf[65536];
    while (recv(f->fd, buf, sizeof(buf), 0) > 0) {
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_setup();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    NbdExport exp = {
        .bs = fuzz_bs,
        .name = "x",
        .description = "fuzz",
        .allocation_depth = true,
        .discard = true,
        .detect_zeroes = size & 1 ? 2 : 0,
        .workers = 0,
    };
    Feed f = {.fd = sv[1], .data = data, .size = size};
    pthread_t tf, td;
    if (pthread_create(&tf, NULL, feed, &f) || pthread_create(&td, NULL, drain, &f))
        abort();
    nbd_serve(&exp, sv[0], false, NULL);
    /* the server is done: its end closes, so the feeder and the drain end */
    close(sv[0]);
    pthread_join(tf, NULL);
    pthread_join(td, NULL);
    close(sv[1]);
    return 0;
}
