/* Shared by the C unit tests of a virtio PCI device on the real bus
 * without a VM (virtio-net.c, virtio-rng.c): guest RAM a plain buffer
 * `ram` of RAM_SIZE bytes, the device in slot SLOT, its modern register
 * block in memory BAR 0, reached as a driver reaches it.
 *
 * The includer defines RAM_SIZE and `struct dev` (with at least
 * `struct bus *bus`, `struct pci *pci` and `uint64_t bar`) first, and
 * allocates `ram`. */
#ifndef CALF_TESTS_UNIT_VIRTIO_H
#define CALF_TESTS_UNIT_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/virtio_pci.h>

#include "devices/bus.h"
#include "devices/pci.h"
#include "tests/unit/unit-dev.h"

#ifndef RAM_SIZE
#error "define RAM_SIZE before including unit-virtio.h"
#endif

#define SLOT 3
#define DEVFN (SLOT << 3)

static uint8_t *ram;

/* The zeroed, page-aligned guest RAM the tests' rings live in: false
 * when it cannot be had. */
static inline bool unit_ram_alloc(void)
{
    ram = aligned_alloc(4096, RAM_SIZE);
    if (ram)
        memset(ram, 0, RAM_SIZE);
    return ram != NULL;
}

/* As the VMM's: all of [gpa, gpa + len) inside RAM, or NULL. */
static inline void *fake_guest_ram(void *host, uint64_t gpa, uint64_t len)
{
    (void)host;
    if (gpa > RAM_SIZE || len > RAM_SIZE - gpa)
        return NULL;
    return ram + gpa;
}

static const struct bus_host_ops fake_ops = {
    .set_irq = fake_set_irq,
    .console_write = fake_console,
    .request_stop = fake_stop,
    .guest_ram = fake_guest_ram,
};

/* Configuration space of the device through mechanism #1. */
static inline uint32_t cfg_rw(struct bus *bus, unsigned reg, unsigned size,
                              uint32_t v, bool write)
{
    uint32_t addr = 0x80000000u | DEVFN << 8 | (reg & 0xfc);
    uint8_t d[4];

    bus_pio(bus, 0xcf8, (uint8_t *)&addr, 4, true);
    memcpy(d, &v, 4);
    bus_pio(bus, (uint16_t)(0xcfc + (reg & 3)), d, size, write);
    memcpy(&v, d, 4);
    return v;
}

/* BAR 0 at 0xe1000000 (d->bar), memory decoding and bus mastering on. */
static inline void map_bar0(struct dev *d)
{
    cfg_rw(d->bus, 0x10, 4, 0xe1000000u, true);
    d->bar = cfg_rw(d->bus, 0x10, 4, 0, false) & ~0xfu;
    cfg_rw(d->bus, 0x04, 2, 0x0006, true); /* memory, bus master */
}

/* A write and a read of the register block in BAR 0. */
static inline void mw(struct dev *d, unsigned off, unsigned size, uint64_t v)
{
    uint8_t b[8];

    memcpy(b, &v, 8);
    bus_mmio(d->bus, d->bar + off, b, size, true);
}

static inline uint64_t mr(struct dev *d, unsigned off, unsigned size)
{
    uint8_t b[8] = { 0 };
    uint64_t v;

    bus_mmio(d->bus, d->bar + off, b, size, false);
    memcpy(&v, b, 8);
    return v;
}

static inline uint8_t status(struct dev *d)
{
    return (uint8_t)mr(d, VIRTIO_PCI_COMMON_STATUS, 1);
}

static inline void dev_destroy(struct dev *d)
{
    bus_shutdown(d->bus);
    pci_destroy(d->pci);
    bus_destroy(d->bus);
}

static inline uint64_t ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
