/* libFuzzer harness for calf-nbd -L's client (block/nbd-list.c): the
 * input is everything a server sends, from its greeting on; a thread
 * sends it whole on one end of a socket pair and closes its sending
 * side, another reads (and drops) what the lister sends, and
 * nbd_list_exports() runs on the other end, printing to /dev/null.  It
 * may fail; it may not crash, hang or read past a buffer.  Seeds:
 * tests/fuzz/corpus-nbd-list (tests/fuzz/make-nbd-list-seeds.py).
 * Built like fuzz-nbd.c: make fuzz-nbd-list; $(BUILD)/tests/fuzz-nbd-list
 * replays for make test (tests/fuzz-nbd.t). */
#include "block/nbd-proto.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    const uint8_t *data;
    size_t size;
} Peer;

static void *sender(void *opaque)
{
    Peer *p = opaque;
    size_t off = 0;
    while (off < p->size) {
        ssize_t n = send(p->fd, p->data + off, p->size - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    shutdown(p->fd, SHUT_WR);
    return NULL;
}

static void *drainer(void *opaque)
{
    Peer *p = opaque;
    char buf[4096];
    while (read(p->fd, buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w")))
        abort();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    Peer p = {.fd = sv[1], .data = data, .size = size};
    pthread_t ts, td;
    if (pthread_create(&ts, NULL, sender, &p) || pthread_create(&td, NULL, drainer, &p))
        abort();
    char err[512];
    (void)nbd_list_exports(sv[0], devnull, err, sizeof(err));
    close(sv[0]); /* the drainer sees EOF; the sender's writes fail */
    pthread_join(ts, NULL);
    pthread_join(td, NULL);
    close(sv[1]);
    return 0;
}
