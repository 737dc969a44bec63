/* LUKS key slot changes on a failing disk: EIO injected into the Nth
 * write-side call (pwrite, pwritev, fdatasync) on the image while amend
 * adds a key or erases a slot (linked with --wrap, as blk-fault).
 *
 *   luks-fault IMAGE OLD add NEW N
 *   luks-fault IMAGE OLD erase SLOT N
 *
 * OLD opens the image for the amend.  N = 0 injects nothing.  Prints
 * "amend ok" or "amend failed", the number of write-side calls made, then
 * which of OLD and NEW (add) open the image once it is reopened without
 * faults: "OLD opens" / "OLD refused".  tests/crypto-amend.t judges: OLD
 * must always open, and a key added or erased must be in or out exactly
 * as the amend reported (a failed add may leave it either way only if
 * the new key really works). */
#include "block/block.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int fault_fd = -1;
static unsigned long fault_at, calls;

ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev64(int fd, const struct iovec *iov, int cnt, off_t off);
int __real_fdatasync(int fd);

/* every call from the Nth on fails: the disk is gone */
static bool fail_now(int fd)
{
    if (fd != fault_fd)
        return false;
    calls++;
    if (fault_at && calls >= fault_at) {
        errno = EIO;
        return true;
    }
    return false;
}

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return fail_now(fd) ? -1 : __real_pwrite64(fd, buf, n, off);
}

ssize_t __wrap_pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return fail_now(fd) ? -1 : __real_pwritev64(fd, iov, cnt, off);
}

int __wrap_fdatasync(int fd)
{
    return fail_now(fd) ? -1 : __real_fdatasync(fd);
}

static BlockDriverState *open_with(const char *image, const char *pass, int flags)
{
    BlockOptions o = {0};
    blkopts_set(&o, "encrypt.key-secret", pass);
    BlockDriverState *bs = blk_open(image, "qcow2", flags, &o);
    blkopts_free(&o);
    return bs;
}

static void report_key(const char *image, const char *name, const char *pass)
{
    BlockDriverState *bs = open_with(image, pass, 0);
    printf("%s %s\n", name, bs ? "opens" : "refused");
    if (bs)
        blk_close(bs);
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[3], "add") && strcmp(argv[3], "erase"))) {
        fprintf(stderr, "usage: luks-fault IMAGE OLD add NEW N | IMAGE OLD erase SLOT N\n");
        return 2;
    }
    const char *image = argv[1], *old = argv[2], *arg = argv[4];
    bool add = !strcmp(argv[3], "add");
    BlockDriverState *bs = open_with(image, old, BLK_O_RDWR);
    if (!bs) {
        fprintf(stderr, "luks-fault: %s\n", blk_error());
        return 2;
    }
    BlockOptions o = {0};
    blkopts_set(&o, "encrypt.state", add ? "active" : "inactive");
    blkopts_set(&o, add ? "encrypt.new-secret" : "encrypt.keyslot", arg);
    if (add)
        blkopts_set(&o, "encrypt.iter-time", "10");
    fault_at = strtoul(argv[5], NULL, 0);
    fault_fd = bs->fd;
    int r = blk_amend(bs, &o, false);
    if (r == 0)
        r = blk_flush(bs);
    printf("amend %s\n", r == 0 ? "ok" : "failed");
    blk_close(bs); /* its write-back may fail too */
    printf("calls %lu\n", calls);
    fault_fd = -1;
    blkopts_free(&o);
    report_key(image, "OLD", old);
    if (add)
        report_key(image, "NEW", arg);
    return 0;
}
