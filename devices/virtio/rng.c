/* virtio-rng (virtio 1.2, 5.4): one queue of device-writable buffers
 * that the device fills with bytes from the host's getrandom(), served by
 * its own thread.  A rate limit as QEMU's rng device has (max-bytes per
 * period): once a period's bytes are given out, requests wait in the
 * ring until the next period begins, and a request larger than what is
 * left gets what is left (its used length says how much).  QEMU's
 * defaults: no limit in practice (max-bytes 2^63 - 1, period 65536 ms).
 *
 * The guest only offers buffers: a chain without writable buffers is
 * completed with length 0, device-readable buffers are ignored, and one
 * request gets at most VRNG_REQ_MAX bytes, so the work a guest can ask
 * for between two looks at a reset or calf's exit is bounded. */
#include "devices/virtio/virtio.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_ids.h>

#include "devices/guest-mem.h"

#define VRNG_QUEUE_SIZE 64
#define VRNG_REQ_MAX    (64u << 10)

struct vrng {
    struct virtio_pci *vp;
    pthread_t thread;
    bool started;
    atomic_bool stop;   /* teardown: the thread ends */
    int stop_fd;        /* wakes the thread while it waits for a period */
    uint64_t max_bytes, period_ns;
    /* The queue thread's own: bytes left in this period, and when the
     * period ends (CLOCK_MONOTONIC ns; 0: no period running). */
    uint64_t quota, period_end;
    struct virtq_req req;
};

int virtio_rng_parse(const char *spec, struct rng_opts *o)
{
    char *copy = strdup(spec), *save = NULL, *tok;
    int ret = 0;

    *o = (struct rng_opts){ .on = true, .max_bytes = VIRTIO_RNG_MAX_BYTES,
                            .period_ms = VIRTIO_RNG_PERIOD_MS };
    if (!copy)
        return -ENOMEM;
    for (tok = strtok_r(copy, ",", &save); tok && !ret;
         tok = strtok_r(NULL, ",", &save)) {
        char *end;

        if (!strcmp(tok, "on")) {
            o->on = true;
        } else if (!strcmp(tok, "off")) {
            o->on = false;
        } else if (!strcmp(tok, "disable-legacy")) {
            o->modern = true;
        } else if (!strncmp(tok, "max-bytes=", 10)) {
            errno = 0;
            o->max_bytes = strtoull(tok + 10, &end, 10);
            if (errno || end == tok + 10 || *end || !o->max_bytes ||
                o->max_bytes > VIRTIO_RNG_MAX_BYTES || tok[10] == '-') {
                fprintf(stderr, "calf: --rng: bad max-bytes '%s' (1 to %llu)\n",
                        tok + 10, (unsigned long long)VIRTIO_RNG_MAX_BYTES);
                ret = -EINVAL;
            }
        } else if (!strncmp(tok, "period=", 7)) {
            errno = 0;
            o->period_ms = strtoull(tok + 7, &end, 10);
            if (errno || end == tok + 7 || *end || !o->period_ms ||
                o->period_ms > UINT32_MAX || tok[7] == '-') {
                fprintf(stderr, "calf: --rng: bad period '%s' "
                        "(milliseconds, 1 to %u)\n", tok + 7, UINT32_MAX);
                ret = -EINVAL;
            }
        } else {
            fprintf(stderr, "calf: --rng: unknown option '%s' (on, off, "
                    "max-bytes=N, period=MS, disable-legacy)\n", tok);
            ret = -EINVAL;
        }
    }
    free(copy);
    return ret;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A new period begins at the first request after the last one ended. */
static void vrng_refill(struct vrng *r)
{
    uint64_t t = now_ns();

    if (r->period_end && t < r->period_end)
        return;
    r->quota = r->max_bytes;
    r->period_end = t + r->period_ns;
}

/* Random bytes into the request's writable buffers, at most max;
 * returns how many went in. */
static uint32_t vrng_fill(struct virtq_req *req, uint64_t max)
{
    struct iovec *in = req->iov + req->n_out;
    uint64_t done = 0;

    /* The guest's memory: see devices/guest-mem.h. */
    guest_mem_acquire(in, req->n_in);
    for (unsigned i = 0; i < req->n_in && done < max; i++) {
        uint8_t *p = in[i].iov_base;
        size_t want = in[i].iov_len < max - done ? in[i].iov_len
                                                 : (size_t)(max - done);
        size_t got = 0;

        while (got < want) {
            ssize_t n = getrandom(p + got, want - got, 0);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        done += got;
        if (got < want)
            break;
    }
    guest_mem_release(in, req->n_in);
    return (uint32_t)done;
}

/* Serves the ring until it is empty or the period's bytes are spent;
 * returns true in the second case (requests may be waiting). */
static bool vrng_serve(struct vrng *r)
{
    bool starved = false;

    virtq_lock(r->vp, 0);
    while (!atomic_load(&r->stop)) {
        uint64_t max;
        uint32_t len;

        vrng_refill(r);
        if (!r->quota) {
            starved = true;
            break;
        }
        if (virtq_pop(r->vp, 0, &r->req) <= 0)
            break;
        max = r->quota < VRNG_REQ_MAX ? r->quota : VRNG_REQ_MAX;
        len = vrng_fill(&r->req, max);
        r->quota -= len;
        virtq_push(r->vp, 0, &r->req, len);
    }
    virtq_notify(r->vp, 0);
    virtq_unlock(r->vp, 0);
    return starved;
}

/* Locking: as virtio-blk's queue threads (blk.c), the thread holds the
 * queue's lock only while it serves the ring, which is bounded (a ring of
 * requests of at most VRNG_REQ_MAX bytes each).  Waiting for the next
 * period it holds nothing, so a reset or calf's exit never waits for it. */
static void *vrng_thread(void *opaque)
{
    struct vrng *r = opaque;
    int fd = virtq_kick_fd(r->vp, 0);
    bool starved = false;

    for (;;) {
        uint64_t n;

        if (starved) {
            uint64_t t = now_ns(), wait_ms = 0;
            struct pollfd p = { .fd = r->stop_fd, .events = POLLIN };

            if (r->period_end > t)
                wait_ms = (r->period_end - t + 999999) / 1000000;
            if (wait_ms > INT32_MAX)
                wait_ms = INT32_MAX;
            if (poll(&p, 1, (int)wait_ms) < 0 && errno != EINTR)
                break;
        } else if (read(fd, &n, sizeof(n)) < 0 && errno != EINTR) {
            break;
        }
        if (atomic_load(&r->stop))
            break;
        starved = vrng_serve(r);
    }
    return NULL;
}

static void vrng_config_rw(void *opaque, uint64_t off, uint8_t *data,
                           unsigned size, bool is_write)
{
    (void)opaque, (void)off;
    if (!is_write)
        memset(data, 0, size); /* virtio-rng has no configuration */
}

static void vrng_stop(void *opaque)
{
    struct vrng *r = opaque;
    uint64_t one = 1;

    atomic_store(&r->stop, true);
    if (!r->started)
        return;
    if (write(r->stop_fd, &one, sizeof(one)) < 0) {
        /* a saturated counter already wakes it */
    }
    virtq_kick(r->vp, 0);
    pthread_join(r->thread, NULL);
    r->started = false;
}

static void vrng_destroy(void *opaque)
{
    struct vrng *r = opaque;

    vrng_stop(r);
    if (r->stop_fd >= 0)
        close(r->stop_fd);
    free(r);
}

static const struct virtio_dev_ops vrng_ops = {
    .config_rw = vrng_config_rw,
    .stop = vrng_stop,
    .destroy = vrng_destroy,
    .saveable = true,
};

int virtio_rng_add(struct pci *pci, int slot, const struct rng_opts *o)
{
    struct virtio_pci_config vc = {
        .slot = slot, .device_type = VIRTIO_ID_RNG,
        .class_code = 0xff, .subclass = 0x00, /* as QEMU: "other" */
        .features = 0, .num_queues = 1, .queue_max = VRNG_QUEUE_SIZE,
        .transitional = !o->modern, .config_size = 0,
    };
    struct vrng *r = calloc(1, sizeof(*r));
    int ret;

    if (!r)
        return -ENOMEM;
    r->max_bytes = o->max_bytes;
    r->period_ns = o->period_ms * 1000000u;
    r->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (r->stop_fd < 0) {
        ret = -errno;
        free(r);
        return ret;
    }
    ret = virtio_pci_create(pci, &vc, &vrng_ops, r, &r->vp);
    if (ret) {
        if (!r->vp) /* else the PCI function owns r */
            vrng_destroy(r);
    } else {
        ret = -pthread_create(&r->thread, NULL, vrng_thread, r);
        r->started = !ret;
    }
    if (ret)
        fprintf(stderr, "calf: --rng: cannot attach virtio-rng: %s\n",
                strerror(-ret));
    return ret;
}
