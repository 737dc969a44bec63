/* Port I/O dispatch: a small sorted table of ranges, searched by bisection.
 * One mutex serialises all port devices: port I/O is rare and slow next to
 * guest RAM, and a single lock keeps every device model lock-free. */
#include "devices/bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUS_MAX_RANGES 64
#define BUS_MAX_OWNED 32
#define BUS_MAX_MMIO 8
#define BUS_MAX_RESETS 32
#define BUS_MAX_STATES 96
#define BUS_STATE_NAME 64

struct pio_range {
    uint16_t base;
    uint16_t len;
    bus_pio_fn fn;
    void *opaque;
};

struct mmio_range {
    uint64_t base, len;
    bus_mmio_fn fn;
    void *opaque;
};

/* Functions run on a reset, or once at shutdown, in registration order. */
struct hooks {
    unsigned n;
    struct { void (*fn)(void *opaque); void *opaque; } hook[BUS_MAX_RESETS];
};

struct bus {
    pthread_mutex_t lock;
    const struct bus_host_ops *ops;
    void *host;
    unsigned nr;
    struct pio_range ranges[BUS_MAX_RANGES];
    unsigned nr_owned;
    void *owned[BUS_MAX_OWNED];
    unsigned nr_mmio;
    struct mmio_range mmio[BUS_MAX_MMIO];
    struct hooks resets, shutdowns;
    unsigned nr_states;
    struct {
        char name[BUS_STATE_NAME + 1];
        const struct bus_state_ops *ops;
        void *opaque;
    } states[BUS_MAX_STATES];
};

static int hooks_add(struct hooks *h, void (*fn)(void *), void *opaque)
{
    if (!fn)
        return -EINVAL;
    if (h->n == BUS_MAX_RESETS)
        return -ENOSPC;
    h->hook[h->n].fn = fn;
    h->hook[h->n].opaque = opaque;
    h->n++;
    return 0;
}

static void hooks_run(const struct hooks *h)
{
    for (unsigned i = 0; i < h->n; i++)
        h->hook[i].fn(h->hook[i].opaque);
}

struct bus *bus_create(const struct bus_host_ops *ops, void *host)
{
    struct bus *bus = calloc(1, sizeof(*bus));

    if (!bus)
        return NULL;
    pthread_mutex_init(&bus->lock, NULL);
    bus->ops = ops;
    bus->host = host;
    return bus;
}

void bus_destroy(struct bus *bus)
{
    if (!bus)
        return;
    for (unsigned i = 0; i < bus->nr_owned; i++)
        free(bus->owned[i]);
    pthread_mutex_destroy(&bus->lock);
    free(bus);
}

int bus_own(struct bus *bus, void *mem)
{
    if (bus->nr_owned == BUS_MAX_OWNED)
        return -ENOSPC;
    bus->owned[bus->nr_owned++] = mem;
    return 0;
}

int bus_register_pio(struct bus *bus, uint16_t base, uint16_t len,
                     bus_pio_fn fn, void *opaque)
{
    unsigned i;
    uint32_t end = (uint32_t)base + len;

    if (!len || end > 0x10000 || !fn)
        return -EINVAL;
    if (bus->nr == BUS_MAX_RANGES)
        return -ENOSPC;
    for (i = 0; i < bus->nr; i++) {
        struct pio_range *r = &bus->ranges[i];

        if (base < r->base + r->len && r->base < end)
            return -EBUSY;
        if (r->base > base)
            break;
    }
    memmove(&bus->ranges[i + 1], &bus->ranges[i],
            (bus->nr - i) * sizeof(bus->ranges[0]));
    bus->ranges[i] = (struct pio_range){ base, len, fn, opaque };
    bus->nr++;
    return 0;
}

static struct pio_range *bus_find(struct bus *bus, uint16_t port)
{
    unsigned lo = 0, hi = bus->nr;

    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        struct pio_range *r = &bus->ranges[mid];

        if (port < r->base)
            hi = mid;
        else if (port >= r->base + r->len)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

bool bus_pio(struct bus *bus, uint16_t port, uint8_t *data, unsigned size,
             bool is_write)
{
    struct pio_range *r;

    if (!is_write)
        memset(data, 0xff, size);
    pthread_mutex_lock(&bus->lock);
    r = bus_find(bus, port);
    if (r)
        r->fn(r->opaque, port, data, size, is_write);
    pthread_mutex_unlock(&bus->lock);
    return r != NULL;
}

int bus_register_mmio(struct bus *bus, uint64_t base, uint64_t len,
                      bus_mmio_fn fn, void *opaque)
{
    if (!len || base + len < base || !fn)
        return -EINVAL;
    if (bus->nr_mmio == BUS_MAX_MMIO)
        return -ENOSPC;
    for (unsigned i = 0; i < bus->nr_mmio; i++)
        if (base < bus->mmio[i].base + bus->mmio[i].len &&
            bus->mmio[i].base < base + len)
            return -EBUSY;
    bus->mmio[bus->nr_mmio++] = (struct mmio_range){ base, len, fn, opaque };
    return 0;
}

bool bus_mmio(struct bus *bus, uint64_t addr, uint8_t *data, unsigned size,
              bool is_write)
{
    struct mmio_range *r = NULL;

    if (!is_write)
        memset(data, 0xff, size);
    pthread_mutex_lock(&bus->lock);
    for (unsigned i = 0; i < bus->nr_mmio; i++)
        if (addr - bus->mmio[i].base < bus->mmio[i].len)
            r = &bus->mmio[i];
    if (r)
        r->fn(r->opaque, addr, data, size, is_write);
    pthread_mutex_unlock(&bus->lock);
    return r != NULL;
}

int bus_register_shutdown(struct bus *bus, bus_shutdown_fn fn, void *opaque)
{
    return hooks_add(&bus->shutdowns, fn, opaque);
}

void bus_shutdown(struct bus *bus)
{
    if (!bus)
        return;
    hooks_run(&bus->shutdowns);
    bus->shutdowns.n = 0;
}

int bus_register_reset(struct bus *bus, bus_reset_fn fn, void *opaque)
{
    return hooks_add(&bus->resets, fn, opaque);
}

void bus_reset(struct bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    hooks_run(&bus->resets);
    pthread_mutex_unlock(&bus->lock);
}

void bus_lock(struct bus *bus)
{
    pthread_mutex_lock(&bus->lock);
}

void bus_unlock(struct bus *bus)
{
    pthread_mutex_unlock(&bus->lock);
}

int bus_set_irq(struct bus *bus, unsigned irq, int level)
{
    return bus->ops->set_irq(bus->host, irq, level);
}

void bus_console_write(struct bus *bus, const uint8_t *buf, size_t len)
{
    bus->ops->console_write(bus->host, buf, len);
}

void bus_request_stop(struct bus *bus, enum bus_stop_reason reason,
                      int status)
{
    bus->ops->request_stop(bus->host, reason, status);
}

void *bus_guest_ram(struct bus *bus, uint64_t gpa, uint64_t len)
{
    return bus->ops->guest_ram ? bus->ops->guest_ram(bus->host, gpa, len)
                               : NULL;
}

int bus_signal_msi(struct bus *bus, uint64_t addr, uint32_t data)
{
    return bus->ops->signal_msi ? bus->ops->signal_msi(bus->host, addr, data)
                                : -ENOSYS;
}

int bus_ioeventfd(struct bus *bus, uint64_t addr, unsigned len, int fd,
                  bool assign)
{
    return bus->ops->ioeventfd
        ? bus->ops->ioeventfd(bus->host, addr, len, fd, assign) : -ENOSYS;
}

int bus_msi_routes(struct bus *bus, const struct bus_msi_route *routes,
                   unsigned n)
{
    return bus->ops->msi_routes
        ? bus->ops->msi_routes(bus->host, routes, n) : -ENOSYS;
}

int bus_irqfd(struct bus *bus, int fd, unsigned gsi, bool assign)
{
    return bus->ops->irqfd ? bus->ops->irqfd(bus->host, fd, gsi, assign)
                           : -ENOSYS;
}

int bus_ioeventfd_pio(struct bus *bus, uint16_t port, unsigned len,
                      uint32_t value, int fd, bool assign)
{
    return bus->ops->ioeventfd_pio
        ? bus->ops->ioeventfd_pio(bus->host, port, len, value, fd, assign)
        : -ENOSYS;
}

int bus_coalesce_pio(struct bus *bus, uint16_t port, unsigned len, bool on)
{
    return bus->ops->coalesce_pio
        ? bus->ops->coalesce_pio(bus->host, port, len, on) : -ENOTSUP;
}

int bus_map_ram(struct bus *bus, uint64_t gpa, uint64_t size, void *mem,
                bool readonly)
{
    return bus->ops->map_ram
        ? bus->ops->map_ram(bus->host, gpa, size, mem, readonly) : -ENOSYS;
}

void bus_unmap_ram(struct bus *bus, int handle)
{
    if (bus->ops->unmap_ram && handle >= 0)
        bus->ops->unmap_ram(bus->host, handle);
}

/* ---- saved state ---- */

static int state_none_save(void *opaque, struct vmstate_cursor *w)
{
    (void)opaque, (void)w;
    return 0;
}

static int state_none_load(void *opaque, struct vmstate_cursor *r)
{
    (void)opaque, (void)r;
    return 0;
}

const struct bus_state_ops bus_state_none = {
    .save = state_none_save, .load = state_none_load,
};

int bus_register_state(struct bus *bus, const char *name,
                       const struct bus_state_ops *ops, void *opaque)
{
    if (!ops || !ops->save || !ops->load || strlen(name) > BUS_STATE_NAME)
        return -EINVAL;
    if (bus->nr_states == BUS_MAX_STATES)
        return -ENOSPC;
    for (unsigned i = 0; i < bus->nr_states; i++)
        if (!strcmp(bus->states[i].name, name))
            return -EEXIST;
    snprintf(bus->states[bus->nr_states].name, BUS_STATE_NAME + 1, "%s",
             name);
    bus->states[bus->nr_states].ops = ops;
    bus->states[bus->nr_states].opaque = opaque;
    bus->nr_states++;
    return 0;
}

unsigned bus_state_count(struct bus *bus)
{
    return bus->nr_states;
}

const char *bus_state_name(struct bus *bus, unsigned i)
{
    return i < bus->nr_states ? bus->states[i].name : NULL;
}

int bus_state_save(struct bus *bus, unsigned i, struct vmstate_cursor *w)
{
    int r;

    if (i >= bus->nr_states)
        return -EINVAL;
    pthread_mutex_lock(&bus->lock);
    r = bus->states[i].ops->save(bus->states[i].opaque, w);
    pthread_mutex_unlock(&bus->lock);
    return r;
}

int bus_state_load(struct bus *bus, unsigned i, struct vmstate_cursor *r)
{
    int ret;

    if (i >= bus->nr_states)
        return -EINVAL;
    pthread_mutex_lock(&bus->lock);
    ret = bus->states[i].ops->load(bus->states[i].opaque, r);
    pthread_mutex_unlock(&bus->lock);
    return ret;
}

void bus_state_resume(struct bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    for (unsigned i = 0; i < bus->nr_states; i++)
        if (bus->states[i].ops->resume)
            bus->states[i].ops->resume(bus->states[i].opaque);
    pthread_mutex_unlock(&bus->lock);
}

static bool has_state(const struct bus *bus, const void *opaque)
{
    for (unsigned i = 0; i < bus->nr_states; i++)
        if (bus->states[i].opaque == opaque)
            return true;
    return false;
}

const char *bus_state_missing(struct bus *bus, char *buf, size_t len)
{
    for (unsigned i = 0; i < bus->nr; i++)
        if (!has_state(bus, bus->ranges[i].opaque)) {
            snprintf(buf, len, "the device at I/O ports 0x%x-0x%x",
                     bus->ranges[i].base,
                     bus->ranges[i].base + bus->ranges[i].len - 1);
            return buf;
        }
    for (unsigned i = 0; i < bus->nr_mmio; i++)
        if (!has_state(bus, bus->mmio[i].opaque)) {
            snprintf(buf, len, "the device at MMIO 0x%llx-0x%llx",
                     (unsigned long long)bus->mmio[i].base,
                     (unsigned long long)(bus->mmio[i].base +
                                          bus->mmio[i].len - 1));
            return buf;
        }
    return NULL;
}
