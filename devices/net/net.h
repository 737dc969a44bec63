/* Network backends for calf's network devices, and the --net option.
 *
 * A backend carries Ethernet frames between a device model and the
 * outside: user-mode networking through libslirp (slirp.c, QEMU's
 * "-netdev user" with the same library and defaults) or a host tap
 * interface (tap.c).  It runs entirely on the device's I/O thread: the
 * thread polls the backend's descriptors beside its own (fill, then
 * poll), hands it the guest's frames (send), and the backend hands the
 * guest's device what comes in through the receive callback it was
 * created with, on that same thread.  Nothing here is thread-safe, and
 * nothing needs to be.
 *
 *   --net user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
 *             [,restrict=on|off][,mac=52:54:00:12:34:56][,disable-legacy]
 *   --net tap[,ifname=NAME][,mac=...][,disable-legacy]
 *
 * User mode: network 10.0.2.0/24, host (gateway) 10.0.2.2, DNS 10.0.2.3,
 * DHCP from 10.0.2.15; IPv6 fec0::/64.  restrict=off by default, as
 * QEMU's; restrict=on keeps the guest from reaching anything but the
 * forwarded ports and slirp's own services.  A hostfwd binds 127.0.0.1
 * unless HOSTADDR says otherwise (QEMU: every address; deliberate);
 * GUESTADDR defaults to 10.0.2.15.  The default MAC is
 * 52:54:00:12:34:56 plus the device's index. */
#ifndef CALF_DEVICES_NET_NET_H
#define CALF_DEVICES_NET_NET_H

#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_MAX_FWD 16
/* The largest frame either way (a 64 KiB IP packet and its Ethernet
 * header); the device drops longer ones. */
#define NET_MAX_FRAME (65536 + 14)

struct net_hostfwd {
    bool udp;
    struct in_addr haddr, gaddr;
    uint16_t hport, gport;
};

enum net_kind { NET_USER, NET_TAP };

struct net_opts {
    enum net_kind kind;
    uint8_t mac[6];
    bool restricted;          /* user: restrict=on */
    bool modern;              /* disable-legacy: 1af4:1041 only */
    char ifname[16];          /* tap; empty: the kernel picks tapN */
    unsigned nfwd;
    struct net_hostfwd fwd[NET_MAX_FWD];
};

/* Parses a --net value for the index-th network device; prints what is
 * wrong ("calf: --net: ...") and returns -EINVAL. */
int net_parse(const char *spec, unsigned index, struct net_opts *o);

/* A growing set of pollfds the I/O thread waits on. */
struct net_pollset {
    struct pollfd *fds;
    unsigned n, cap;
};
/* Adds fd; its index, or -1 when memory ran out (then it is not polled). */
int net_pollset_add(struct net_pollset *ps, int fd, short events);

/* What comes in for the guest: one whole frame. */
typedef void net_receive_fn(void *opaque, const uint8_t *frame, size_t len);

struct net_backend;
struct net_backend_ops {
    /* Adds the backend's descriptors to ps and lowers *timeout_ms (-1:
     * none) to its next timer. */
    void (*fill)(struct net_backend *be, struct net_pollset *ps,
                 int *timeout_ms);
    /* After poll() on ps: handles what is ready and what timed out. */
    void (*poll)(struct net_backend *be, struct net_pollset *ps, bool error);
    /* One frame from the guest. */
    void (*send)(struct net_backend *be, const uint8_t *frame, size_t len);
    void (*destroy)(struct net_backend *be);
};
struct net_backend {
    const struct net_backend_ops *ops;
    /* The checksums of the frames it hands the guest were verified (or
     * computed) on the way: slirp builds or checks every packet it
     * delivers; a tap passes on whatever the host sent, unchecked. */
    bool csum_checked;
};

/* Creates the backend o names (called on the thread that creates the
 * device; used only by its I/O thread afterwards).  Prints what went
 * wrong and returns a negative errno. */
int net_backend_create(const struct net_opts *o, net_receive_fn *rx,
                       void *opaque, struct net_backend **out);
int net_user_create(const struct net_opts *o, net_receive_fn *rx,
                    void *opaque, struct net_backend **out);
int net_tap_create(const struct net_opts *o, net_receive_fn *rx,
                   void *opaque, struct net_backend **out);

#endif
