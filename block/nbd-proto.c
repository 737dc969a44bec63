/* NBD wire helpers shared by the server and the client driver. */
#include "block/nbd-proto.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

bool nbd_parse_request(const uint8_t *p, NbdRequest *r)
{
    if (nbd_get32(p) != NBD_REQUEST_MAGIC)
        return false;
    r->flags = nbd_get16(p + 4);
    r->type = nbd_get16(p + 6);
    r->handle = nbd_get64(p + 8);
    r->offset = nbd_get64(p + 16);
    r->length = nbd_get32(p + 24);
    return true;
}

uint32_t nbd_errno_out(int err)
{
    switch (-err) {
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

int nbd_errno_in(uint32_t err)
{
    switch (err) {
    case NBD_EPERM:
        return -EPERM;
    case NBD_EIO:
        return -EIO;
    case NBD_ENOMEM:
        return -ENOMEM;
    case NBD_ENOSPC:
        return -ENOSPC;
    case NBD_EOVERFLOW:
        return -EOVERFLOW;
    case NBD_ENOTSUP:
        return -ENOTSUP;
    case NBD_ESHUTDOWN:
        return -ESHUTDOWN;
    default:
        return -EINVAL;
    }
}

int64_t nbd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int nbd_read_full(int fd, void *buf, size_t len, int64_t deadline_ms)
{
    uint8_t *p = buf;
    while (len) {
        if (deadline_ms) {
            int64_t left = deadline_ms - nbd_now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
            if (r < 0 && errno != EINTR)
                return -errno;
            if (r <= 0)
                continue;
        }
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int nbd_write_full(int fd, const void *buf, size_t len)
{
    return nbd_write_until(fd, buf, len, 0);
}

int nbd_write_until(int fd, const void *buf, size_t len, int64_t deadline_ms)
{
    const uint8_t *p = buf;
    while (len) {
        if (deadline_ms) {
            /* a peer that does not read may not hold us past the deadline */
            int64_t left = deadline_ms - nbd_now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
            if (r < 0 && errno != EINTR)
                return -errno;
            if (r <= 0)
                continue;
        }
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | (deadline_ms ? MSG_DONTWAIT : 0));
        if (n < 0 && (errno == EINTR || (deadline_ms && errno == EAGAIN)))
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int nbd_skip(int fd, uint64_t len, int64_t deadline_ms)
{
    uint8_t buf[4096];
    while (len) {
        size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
        int r = nbd_read_full(fd, buf, n, deadline_ms);
        if (r < 0)
            return r;
        len -= n;
    }
    return 0;
}
