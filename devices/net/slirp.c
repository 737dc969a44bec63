/* User-mode networking through libslirp (net.h): the same library and
 * defaults as QEMU's "-netdev user".  libslirp is not thread-safe; every
 * call into it, and every callback out of it, happens on the device's
 * I/O thread (creation aside, which precedes the thread).  Its timers
 * are a small list checked after every poll. */
#include "devices/net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libslirp.h>

struct slirp_timer {
    struct slirp_timer *next;
    SlirpTimerCb cb;
    void *cb_opaque;
    int64_t expire_ms;      /* -1: not armed */
};

struct net_user {
    struct net_backend be;
    Slirp *slirp;
    net_receive_fn *rx;
    void *rx_opaque;
    struct slirp_timer *timers;
    unsigned errors;         /* guest errors reported so far */
};

static int64_t clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static ssize_t cb_send(const void *buf, size_t len, void *opaque)
{
    struct net_user *u = opaque;

    u->rx(u->rx_opaque, buf, len);
    return (ssize_t)len;
}

/* A guest that misbehaves must not flood calf's stderr: a few, then
 * silence. */
static void cb_guest_error(const char *msg, void *opaque)
{
    struct net_user *u = opaque;

    if (u->errors++ < 4)
        fprintf(stderr, "calf: --net user: guest error: %s\n", msg);
}

static int64_t cb_clock(void *opaque)
{
    (void)opaque;
    return clock_ns();
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
    struct net_user *u = opaque;
    struct slirp_timer *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->cb = cb;
    t->cb_opaque = cb_opaque;
    t->expire_ms = -1;
    t->next = u->timers;
    u->timers = t;
    return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
    struct net_user *u = opaque;

    for (struct slirp_timer **p = &u->timers; *p; p = &(*p)->next) {
        if (*p == timer) {
            *p = (*p)->next;
            free(timer);
            return;
        }
    }
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    (void)opaque;
    if (timer)
        ((struct slirp_timer *)timer)->expire_ms = expire_ms;
}

static void cb_register_poll_fd(int fd, void *opaque)
{
    (void)fd, (void)opaque;
}

static void cb_notify(void *opaque)
{
    (void)opaque; /* slirp runs on the thread that polls: nothing to wake */
}

static const SlirpCb slirp_cbs = {
    .send_packet = cb_send,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock,
    .timer_new = cb_timer_new,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_register_poll_fd,
    .unregister_poll_fd = cb_register_poll_fd,
    .notify = cb_notify,
};

static int add_poll(int fd, int events, void *opaque)
{
    short ev = 0;

    if (events & SLIRP_POLL_IN)
        ev |= POLLIN;
    if (events & SLIRP_POLL_OUT)
        ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI)
        ev |= POLLPRI;
    return net_pollset_add(opaque, fd, ev);
}

static int get_revents(int idx, void *opaque)
{
    struct net_pollset *ps = opaque;
    short r;
    int ev = 0;

    if (idx < 0 || (unsigned)idx >= ps->n)
        return 0;
    r = ps->fds[idx].revents;
    if (r & POLLIN)
        ev |= SLIRP_POLL_IN;
    if (r & POLLOUT)
        ev |= SLIRP_POLL_OUT;
    if (r & POLLPRI)
        ev |= SLIRP_POLL_PRI;
    if (r & (POLLERR | POLLNVAL))
        ev |= SLIRP_POLL_ERR;
    if (r & POLLHUP)
        ev |= SLIRP_POLL_HUP;
    return ev;
}

static void user_fill(struct net_backend *be, struct net_pollset *ps,
                      int *timeout_ms)
{
    struct net_user *u = (struct net_user *)be;
    uint32_t t = *timeout_ms < 0 ? UINT32_MAX : (uint32_t)*timeout_ms;
    int64_t now = clock_ns() / 1000000;

    slirp_pollfds_fill(u->slirp, &t, add_poll, ps);
    for (struct slirp_timer *tm = u->timers; tm; tm = tm->next) {
        if (tm->expire_ms < 0)
            continue;
        if (tm->expire_ms <= now)
            t = 0;
        else if ((uint64_t)(tm->expire_ms - now) < t)
            t = (uint32_t)(tm->expire_ms - now);
    }
    *timeout_ms = t > INT32_MAX ? -1 : (int)t;
}

static void user_poll(struct net_backend *be, struct net_pollset *ps,
                      bool error)
{
    struct net_user *u = (struct net_user *)be;
    int64_t now;
    bool fired;

    slirp_pollfds_poll(u->slirp, error, get_revents, ps);
    /* A callback may re-arm or free timers: start over after each. */
    do {
        fired = false;
        now = clock_ns() / 1000000;
        for (struct slirp_timer *tm = u->timers; tm; tm = tm->next) {
            if (tm->expire_ms >= 0 && tm->expire_ms <= now) {
                tm->expire_ms = -1;
                tm->cb(tm->cb_opaque);
                fired = true;
                break;
            }
        }
    } while (fired);
}

static void user_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    struct net_user *u = (struct net_user *)be;

    slirp_input(u->slirp, frame, (int)len);
}

static void user_destroy(struct net_backend *be)
{
    struct net_user *u = (struct net_user *)be;

    if (u->slirp)
        slirp_cleanup(u->slirp);
    while (u->timers) {
        struct slirp_timer *t = u->timers;

        u->timers = t->next;
        free(t);
    }
    free(u);
}

static const struct net_backend_ops user_ops = {
    .fill = user_fill, .poll = user_poll, .send = user_send,
    .destroy = user_destroy,
};

int net_user_create(const struct net_opts *o, net_receive_fn *rx,
                    void *opaque, struct net_backend **out)
{
    struct net_user *u = calloc(1, sizeof(*u));
    SlirpConfig cfg = {
        .version = 1,
        .restricted = o->restricted,
        .in_enabled = true,
        .in6_enabled = true,
        .vprefix_len = 64,
    };

    *out = NULL;
    if (!u)
        return -ENOMEM;
    u->be.ops = &user_ops;
    u->be.csum_checked = true; /* slirp checks what it forwards */
    u->rx = rx;
    u->rx_opaque = opaque;
    inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
    inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
    inet_pton(AF_INET, "10.0.2.2", &cfg.vhost);
    inet_pton(AF_INET, "10.0.2.15", &cfg.vdhcp_start);
    inet_pton(AF_INET, "10.0.2.3", &cfg.vnameserver);
    inet_pton(AF_INET6, "fec0::", &cfg.vprefix_addr6);
    inet_pton(AF_INET6, "fec0::2", &cfg.vhost6);
    inet_pton(AF_INET6, "fec0::3", &cfg.vnameserver6);
    u->slirp = slirp_new(&cfg, &slirp_cbs, u);
    if (!u->slirp) {
        fprintf(stderr, "calf: --net user: libslirp could not start\n");
        user_destroy(&u->be);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < o->nfwd; i++) {
        const struct net_hostfwd *f = &o->fwd[i];
        char h[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];

        errno = 0; /* what the listening socket's calls leave, if any */
        if (slirp_add_hostfwd(u->slirp, f->udp, f->haddr, f->hport,
                              f->gaddr, f->gport) < 0) {
            int err = errno ? errno : EADDRINUSE;

            inet_ntop(AF_INET, &f->haddr, h, sizeof(h));
            inet_ntop(AF_INET, &f->gaddr, g, sizeof(g));
            fprintf(stderr, "calf: --net user: could not set up host "
                    "forwarding rule '%s:%s:%u-%s:%u': %s\n",
                    f->udp ? "udp" : "tcp", h, f->hport, g, f->gport,
                    strerror(err));
            user_destroy(&u->be);
            return -err;
        }
    }
    *out = &u->be;
    return 0;
}
