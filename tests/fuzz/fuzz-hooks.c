/* Hooks and stubs for the device fuzz harnesses (see fuzz-hooks.h).
 *
 * virtio-blk's queue threads sleep in read() on their kick eventfds.  To
 * know when a kick has been served, the hooked read() first waits for
 * the fd to become readable, then consumes it under fz_kick_lock and
 * counts it; the hooked virtq_unlock() (the end of a serving round)
 * marks what was consumed as served.  A kick is then in exactly one of
 * three places: the eventfd counter, "consumed", or "served", and
 * fuzz_virtio_settle() can look at all three at once. */
#include "tests/fuzz/fuzz-hooks.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/virtio.h"
#include "devices/bus.h"

/* ---- port registrations (devices/ide/ide.c) ---- */

#define HOOK_PIO 16

static struct { uint16_t base; void *opaque; } hook_pio[HOOK_PIO];
static unsigned hook_npio;

int fuzz_bus_register_pio(struct bus *bus, uint16_t base, uint16_t len,
                          bus_pio_fn fn, void *opaque);

int fuzz_bus_register_pio(struct bus *bus, uint16_t base, uint16_t len,
                          bus_pio_fn fn, void *opaque)
{
    if (hook_npio < HOOK_PIO)
        hook_pio[hook_npio++] = (__typeof__(hook_pio[0])){ base, opaque };
    return bus_register_pio(bus, base, len, fn, opaque);
}

void *fuzz_pio_opaque(uint16_t base)
{
    for (unsigned i = 0; i < hook_npio; i++)
        if (hook_pio[i].base == base)
            return hook_pio[i].opaque;
    return NULL;
}

/* ---- virtio-blk queue threads ---- */

#define HOOK_VQ (4 * VIRTIO_MAX_QUEUES)

static pthread_mutex_t fz_kick_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hook_vq {
    struct virtio_pci *vp;
    unsigned q;
    int fd;
    unsigned long consumed, served;
} hook_vq[HOOK_VQ];
static unsigned hook_nvq;

int fuzz_virtio_pci_create(struct pci *pci, const struct virtio_pci_config *cfg,
                           const struct virtio_dev_ops *ops, void *opaque,
                           struct virtio_pci **out);
ssize_t fuzz_vblk_read(int fd, void *buf, size_t n);
void fuzz_virtq_unlock(struct virtio_pci *vp, unsigned q);

int fuzz_virtio_pci_create(struct pci *pci, const struct virtio_pci_config *cfg,
                           const struct virtio_dev_ops *ops, void *opaque,
                           struct virtio_pci **out)
{
    int ret = virtio_pci_create(pci, cfg, ops, opaque, out);

    if (ret == 0) {
        pthread_mutex_lock(&fz_kick_lock);
        for (unsigned q = 0; q < cfg->num_queues && hook_nvq < HOOK_VQ; q++)
            hook_vq[hook_nvq++] = (struct hook_vq){ *out, q, virtq_kick_fd(*out, q), 0, 0 };
        pthread_mutex_unlock(&fz_kick_lock);
    }
    return ret;
}

static struct hook_vq *vq_by_fd(int fd)
{
    for (unsigned i = 0; i < hook_nvq; i++)
        if (hook_vq[i].fd == fd)
            return &hook_vq[i];
    return NULL;
}

ssize_t fuzz_vblk_read(int fd, void *buf, size_t n)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    struct hook_vq *v;
    ssize_t r;

    pthread_mutex_lock(&fz_kick_lock);
    v = vq_by_fd(fd);
    pthread_mutex_unlock(&fz_kick_lock);
    if (!v)
        return read(fd, buf, n);
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&fz_kick_lock);
    r = read(fd, buf, n); /* readable, and this thread is its only reader */
    if (r > 0)
        v->consumed++;
    pthread_mutex_unlock(&fz_kick_lock);
    return r;
}

void fuzz_virtq_unlock(struct virtio_pci *vp, unsigned q)
{
    virtq_unlock(vp, q);
    pthread_mutex_lock(&fz_kick_lock);
    for (unsigned i = 0; i < hook_nvq; i++)
        if (hook_vq[i].vp == vp && hook_vq[i].q == q)
            hook_vq[i].served = hook_vq[i].consumed;
    pthread_mutex_unlock(&fz_kick_lock);
}

static bool vq_idle(const struct hook_vq *v)
{
    struct pollfd p = { .fd = v->fd, .events = POLLIN };

    return poll(&p, 1, 0) == 0 && v->served == v->consumed;
}

void fuzz_virtio_settle(void)
{
    struct timespec t0, now;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        bool idle = true;

        pthread_mutex_lock(&fz_kick_lock);
        for (unsigned i = 0; i < hook_nvq && idle; i++)
            idle = vq_idle(&hook_vq[i]);
        pthread_mutex_unlock(&fz_kick_lock);
        if (idle)
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20) {
            fprintf(stderr, "fuzz: a virtio-blk queue thread has not served its kick in 20 s\n");
            abort(); /* a hang: the fuzzer's finding */
        }
        usleep(20);
    }
}

void fuzz_hooks_reset(void)
{
    pthread_mutex_lock(&fz_kick_lock);
    hook_npio = 0;
    hook_nvq = 0;
    pthread_mutex_unlock(&fz_kick_lock);
}
