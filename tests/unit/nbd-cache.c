/* The nbd driver's block status against writes on the same connection:
 * calf's NBD server (nbd_serve) runs in this process on a Unix socket
 * over a raw file, the nbd driver opens it, and block status must follow
 * each write, zero write and trim at once (the driver keeps the extents
 * of its last block status reply; a change must drop them).
 *
 *   nbd-cache DIR     (a scratch directory; exit 0 when every check held)
 */
#include "block/block.h"
#include "block/nbd-proto.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static NbdExport exp;
static int lfd;

static void *server(void *opaque)
{
    (void)opaque;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        nbd_serve(&exp, fd, false, NULL);
        close(fd);
    }
}

static int fails;

static void expect(BlockDriverState *bs, uint64_t off, int want, const char *what)
{
    uint64_t pnum, host;
    int st = blk_block_status(bs, off, 1 << 20, &pnum, &host);
    int got = st < 0 ? st : st & (BLK_STATUS_DATA | BLK_STATUS_ZERO);
    printf("%s %s: status %d at %llu, want %d\n", got == want ? "ok" : "FAIL", what, got,
           (unsigned long long)off, want);
    fails += got != want;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: nbd-cache DIR\n");
        return 2;
    }
    char img[4096], sock[4096], uri[8300];
    snprintf(img, sizeof(img), "%s/cache.raw", argv[1]);
    snprintf(sock, sizeof(sock), "%s/cache.sock", argv[1]);
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
    FILE *f = fopen(img, "w");
    if (!f || ftruncate(fileno(f), 8 << 20) < 0)
        return 2;
    fclose(f);
    exp.bs = blk_open(img, "raw", BLK_O_RDWR, NULL);
    if (!exp.bs) {
        fprintf(stderr, "nbd-cache: %s\n", blk_error());
        return 2;
    }
    exp.name = "";
    exp.discard = true;
    exp.workers = 2;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sa.sun_path))
        return 2;
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
        return 2;
    pthread_t th;
    pthread_create(&th, NULL, server, NULL);
    BlockDriverState *bs = blk_open(uri, NULL, BLK_O_RDWR, NULL);
    if (!bs) {
        fprintf(stderr, "nbd-cache: %s\n", blk_error());
        return 2;
    }
    static uint8_t buf[1 << 20];
    memset(buf, 0xab, sizeof(buf));
    expect(bs, 0, BLK_STATUS_ZERO, "a new sparse file reads as zeros");
    expect(bs, 4 << 20, BLK_STATUS_ZERO, "... further on too (from the kept extents)");
    blk_pwrite(bs, 4 << 20, buf, 64 << 10);
    expect(bs, 4 << 20, BLK_STATUS_DATA, "a write turns its range to data at once");
    blk_pwrite(bs, 0, buf, sizeof(buf));
    expect(bs, 512 << 10, BLK_STATUS_DATA, "a second write too");
    blk_discard(bs, 0, 1 << 20);
    expect(bs, 0, BLK_STATUS_ZERO, "a trim (discard=unmap) turns it back to zeros");
    blk_close(bs);
    shutdown(lfd, SHUT_RDWR);
    close(lfd);
    pthread_join(th, NULL);
    blk_close(exp.bs);
    return fails ? 1 : 0;
}
