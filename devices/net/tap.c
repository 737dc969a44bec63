/* A host tap interface as a network backend (net.h): frames are read
 * from and written to /dev/net/tun, one per read or write, no virtio
 * header (IFF_NO_PI).  ifname= names an existing tap, or one made for
 * the run (gone when calf exits); without it the kernel picks a name
 * (tapN), which calf prints.  Creating a tap needs CAP_NET_ADMIN;
 * attaching to a persistent one made for the user does not.  Without
 * the privilege it fails with one message that says so. */
#include "devices/net/net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/if.h>
#include <linux/if_tun.h>

struct net_tap {
    struct net_backend be;
    int fd, idx;
    bool dead;               /* POLLERR/POLLHUP/POLLNVAL: no longer polled */
    net_receive_fn *rx;
    void *rx_opaque;
    uint8_t buf[NET_MAX_FRAME + 1]; /* one more: a longer frame shows */
};

static void tap_fill(struct net_backend *be, struct net_pollset *ps,
                     int *timeout_ms)
{
    struct net_tap *t = (struct net_tap *)be;

    (void)timeout_ms;
    t->idx = t->dead ? -1 : net_pollset_add(ps, t->fd, POLLIN);
}

/* At most a bounded batch per round, so the guest's queues get their
 * turn even when the host floods the tap. */
static void tap_poll(struct net_backend *be, struct net_pollset *ps,
                     bool error)
{
    struct net_tap *t = (struct net_tap *)be;

    (void)error;
    if (t->idx < 0)
        return;
    /* the interface went away (deleted) or the fd broke: poll() would
     * say so at once forever; stop listening, say it once */
    if (ps->fds[t->idx].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        t->dead = true;
        fprintf(stderr, "calf: --net tap: the tap stopped working (%s); "
                "nothing more is received from it\n",
                ps->fds[t->idx].revents & POLLNVAL ? "invalid descriptor"
                : ps->fds[t->idx].revents & POLLHUP ? "hang-up" : "error");
        return;
    }
    if (!(ps->fds[t->idx].revents & POLLIN))
        return;
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(t->fd, t->buf, sizeof(t->buf));

        if (n <= 0)
            break;
        /* read() cuts a longer frame to the buffer: not a frame to pass
         * on (the device counts it dropped) */
        if (n > NET_MAX_FRAME)
            n = NET_MAX_FRAME + 1;
        t->rx(t->rx_opaque, t->buf, (size_t)n);
    }
}

static void tap_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    struct net_tap *t = (struct net_tap *)be;

    /* a full tap drops the frame, as a wire would */
    if (write(t->fd, frame, len) < 0) {
    }
}

static void tap_destroy(struct net_backend *be)
{
    struct net_tap *t = (struct net_tap *)be;

    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

static const struct net_backend_ops tap_ops = {
    .fill = tap_fill, .poll = tap_poll, .send = tap_send,
    .destroy = tap_destroy,
};

int net_tap_create(const struct net_opts *o, net_receive_fn *rx,
                   void *opaque, struct net_backend **out)
{
    struct net_tap *t = calloc(1, sizeof(*t));
    struct ifreq ifr;
    int err;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    t->be.ops = &tap_ops;
    t->be.csum_checked = false; /* the host's frames, unchecked */
    t->rx = rx;
    t->rx_opaque = opaque;
    t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (t->fd < 0) {
        err = errno;
        fprintf(stderr, "calf: --net tap%s%s: cannot open /dev/net/tun: "
                "%s\n", o->ifname[0] ? ",ifname=" : "", o->ifname,
                strerror(err));
        tap_destroy(&t->be);
        return -err;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, o->ifname, strlen(o->ifname));
    if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {

        err = errno;
        fprintf(stderr, "calf: --net tap%s%s: cannot attach to a tap: "
                "%s%s\n", o->ifname[0] ? ",ifname=" : "", o->ifname,
                strerror(err),
                err == EPERM ? " (creating a tap needs CAP_NET_ADMIN; or "
                               "make one for this user beforehand: ip tuntap "
                               "add NAME mode tap user USER)" : "");
        tap_destroy(&t->be);
        return -err;
    }
    if (!o->ifname[0])
        fprintf(stderr, "calf: --net tap: attached to %.*s\n",
                (int)sizeof(ifr.ifr_name), ifr.ifr_name);
    *out = &t->be;
    return 0;
}
