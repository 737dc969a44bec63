/* Shared by the device fuzz harnesses (tests/fuzz/fuzz-*.c but qcow2):
 * a fake host behind the real bus (devices/bus.c), a fake guest RAM, and a
 * decoder for the fuzz input as a byte program.
 *
 * Guest RAM is FZ_RAM_SIZE bytes with inaccessible guard regions on both
 * sides, so a device that reads or writes past what guest_ram() gave it
 * faults at once (AddressSanitizer does not see into an mmap).
 *
 * The program is a sequence of operations, each an opcode byte and its
 * operands; a short input just ends early (missing bytes read as 0):
 *   0/1  port write/read: range pick, offset, size, value
 *   2/3  BAR write/read: function pick, BAR, offset, size, value; the BAR
 *        is looked up in configuration space as the guest left it, so a
 *        relocated BAR is followed
 *   4    guest RAM write: gpa, length, bytes
 *   5    guest RAM store of 2, 4 or 8 bytes (descriptor fields)
 *   6/7  PCI configuration write/read (mechanism #1 at 0xCF8/0xCFC)
 *   8    machine reset (bus_reset)
 *   9..  the harness's own (fz_harness_op)
 * Operands are little-endian.  Everything the guest could do through the
 * bus, nothing it could not: the harness itself never pokes device state.
 *
 * Include this once, in the harness; it defines static functions. */
#ifndef CALF_TESTS_FUZZ_DEV_H
#define CALF_TESTS_FUZZ_DEV_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "devices/bus.h"

#define FZ_RAM_SIZE  (1u << 20)   /* covers the VGA text window at 0xB8000 */
#define FZ_GUARD     (64u << 10)
#define FZ_MAX_OPS   4096         /* bounds one input's work */

/* ---- the input ---- */

struct fz {
    const uint8_t *p;
    size_t n, pos;
};

static inline uint8_t fz_u8(struct fz *f)
{
    return f->pos < f->n ? f->p[f->pos++] : 0;
}

static inline uint64_t fz_le(struct fz *f, unsigned bytes)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < bytes; i++)
        v |= (uint64_t)fz_u8(f) << (8 * i);
    return v;
}

static inline uint16_t fz_u16(struct fz *f) { return (uint16_t)fz_le(f, 2); }
static inline uint32_t fz_u32(struct fz *f) { return (uint32_t)fz_le(f, 4); }

static inline bool fz_done(const struct fz *f)
{
    return f->pos >= f->n;
}

/* An access size of 1, 2 or 4 bytes (8 with wide, for MMIO). */
static inline unsigned fz_size(struct fz *f, bool wide)
{
    return 1u << (fz_u8(f) % (wide ? 4 : 3));
}

/* ---- guest RAM and the fake host ---- */

static uint8_t *fz_ram;

struct fz_map {
    uint64_t gpa, size;
    uint8_t *mem;
    bool used;
};

struct fz_ioevent {
    bool pio, used;
    uint64_t addr;
    unsigned len;
    uint32_t value;
    int fd;
};

#define FZ_MAPS 8
#define FZ_IOEVENTS 32

struct fz_host {
    struct fz_map map[FZ_MAPS];
    struct fz_ioevent ioev[FZ_IOEVENTS];
    bool take_ioeventfds;         /* as KVM: notify writes never exit */
    unsigned irq_level[32];
    unsigned long msis, stops, console_bytes;
};

static struct fz_host fz_host;

static inline int fz_set_irq(void *host, unsigned irq, int level)
{
    (void)host;
    if (irq < 32)
        fz_host.irq_level[irq] = (unsigned)level;
    return 0;
}

static inline void fz_console(void *host, const uint8_t *buf, size_t len)
{
    (void)host, (void)buf;
    fz_host.console_bytes += len;
}

static inline void fz_stop(void *host, enum bus_stop_reason reason, int status)
{
    (void)host, (void)reason, (void)status;
    fz_host.stops++;
}

/* As the VMM's vm_gpa(): all of [gpa, gpa + len) inside RAM, or NULL. */
static inline void *fz_guest_ram(void *host, uint64_t gpa, uint64_t len)
{
    (void)host;
    if (gpa > FZ_RAM_SIZE || len > FZ_RAM_SIZE - gpa)
        return NULL;
    return fz_ram + gpa;
}

static inline int fz_signal_msi(void *host, uint64_t addr, uint32_t data)
{
    (void)host, (void)addr, (void)data;
    fz_host.msis++;
    return 0;
}

static inline int fz_ioevent_set(bool pio, uint64_t addr, unsigned len, uint32_t value,
                          int fd, bool assign)
{
    if (!fz_host.take_ioeventfds)
        return -ENOSYS;
    for (int i = 0; i < FZ_IOEVENTS; i++) {
        struct fz_ioevent *e = &fz_host.ioev[i];

        if (!assign && e->used && e->pio == pio && e->addr == addr && e->fd == fd &&
            (!pio || e->value == value)) {
            e->used = false;
            return 0;
        }
        if (assign && !e->used) {
            *e = (struct fz_ioevent){ pio, true, addr, len, value, fd };
            return 0;
        }
    }
    return assign ? -ENOSPC : -ENOENT;
}

static inline int fz_ioeventfd(void *host, uint64_t addr, unsigned len, int fd, bool assign)
{
    (void)host;
    return fz_ioevent_set(false, addr, len, 0, fd, assign);
}

static inline int fz_ioeventfd_pio(void *host, uint16_t port, unsigned len, uint32_t value,
                            int fd, bool assign)
{
    (void)host;
    return fz_ioevent_set(true, port, len, value, fd, assign);
}

static inline int fz_map_ram(void *host, uint64_t gpa, uint64_t size, void *mem, bool readonly)
{
    (void)host, (void)readonly;
    for (int i = 0; i < FZ_MAPS; i++) {
        if (!fz_host.map[i].used) {
            fz_host.map[i] = (struct fz_map){ gpa, size, mem, true };
            return i;
        }
    }
    return -ENOSPC;
}

static inline void fz_unmap_ram(void *host, int handle)
{
    (void)host;
    if (handle < 0 || handle >= FZ_MAPS || !fz_host.map[handle].used) {
        fprintf(stderr, "fuzz: unmap_ram of handle %d, which is not mapped\n", handle);
        abort(); /* a device bug, not guest input: make the fuzzer see it */
    }
    fz_host.map[handle].used = false;
}

/* Accepted (KVM would have them): MSI-X then goes through irqfds, whose
 * eventfds simply count. */
static inline int fz_msi_routes(void *host, const struct bus_msi_route *routes, unsigned n)
{
    (void)host;
    for (unsigned i = 0; i < n; i++)
        if (routes[i].gsi < BUS_MSI_GSI_BASE) {
            fprintf(stderr, "fuzz: MSI route on irqchip GSI %u\n", routes[i].gsi);
            abort();
        }
    return 0;
}

static inline int fz_irqfd(void *host, int fd, unsigned gsi, bool assign)
{
    (void)host, (void)fd, (void)gsi, (void)assign;
    return 0;
}

static inline int fz_coalesce_pio(void *host, uint16_t port, unsigned len, bool on)
{
    (void)host, (void)port, (void)len, (void)on;
    return -ENOTSUP;
}

static const struct bus_host_ops fz_ops = {
    .set_irq = fz_set_irq,
    .console_write = fz_console,
    .request_stop = fz_stop,
    .guest_ram = fz_guest_ram,
    .signal_msi = fz_signal_msi,
    .ioeventfd = fz_ioeventfd,
    .map_ram = fz_map_ram,
    .unmap_ram = fz_unmap_ram,
    .msi_routes = fz_msi_routes,
    .irqfd = fz_irqfd,
    .ioeventfd_pio = fz_ioeventfd_pio,
    .coalesce_pio = fz_coalesce_pio,
};

/* Maps the RAM once per process; every input starts from zeroed RAM. */
static inline void fz_ram_init(void)
{
    if (!fz_ram) {
        uint8_t *m = mmap(NULL, FZ_RAM_SIZE + 2 * FZ_GUARD, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

        if (m == MAP_FAILED ||
            mprotect(m + FZ_GUARD, FZ_RAM_SIZE, PROT_READ | PROT_WRITE)) {
            perror("fuzz: guest RAM");
            exit(1);
        }
        fz_ram = m + FZ_GUARD;
    }
    memset(fz_ram, 0, FZ_RAM_SIZE);
}

/* A fresh host for a fresh machine. */
static struct bus *fz_bus_create(bool take_ioeventfds)
{
    struct bus *bus;

    fz_ram_init();
    memset(&fz_host, 0, sizeof(fz_host));
    fz_host.take_ioeventfds = take_ioeventfds;
    bus = bus_create(&fz_ops, NULL);
    if (!bus) {
        fprintf(stderr, "fuzz: bus_create failed\n");
        exit(1);
    }
    return bus;
}

/* ---- accesses as a guest makes them ---- */

static inline bool fz_ioevent_hit(bool pio, uint64_t addr, unsigned size, const uint8_t *data)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < size && i < 4; i++)
        v |= (uint32_t)data[i] << (8 * i);
    for (int i = 0; i < FZ_IOEVENTS; i++) {
        const struct fz_ioevent *e = &fz_host.ioev[i];
        uint64_t one = 1;

        if (!e->used || e->pio != pio || e->addr != addr || e->len != size ||
            (pio && e->value != v))
            continue;
        if (write(e->fd, &one, sizeof(one)) < 0) {
            /* saturated: already means "wake up" */
        }
        return true;
    }
    return false;
}

static inline void fz_pio(struct bus *bus, uint16_t port, unsigned size, uint32_t *v, bool write)
{
    uint8_t d[4];

    for (unsigned i = 0; i < 4; i++)
        d[i] = (uint8_t)(*v >> (8 * i));
    if (write && fz_ioevent_hit(true, port, size, d))
        return;
    bus_pio(bus, port, d, size, write);
    if (!write)
        *v = d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static inline void fz_outl(struct bus *bus, uint16_t port, uint32_t v)
{
    fz_pio(bus, port, 4, &v, true);
}

static inline uint32_t fz_inl(struct bus *bus, uint16_t port)
{
    uint32_t v = 0;

    fz_pio(bus, port, 4, &v, false);
    return v;
}

/* Guest memory: RAM, a region a device mapped as RAM (no exit), or MMIO. */
static inline void fz_mem(struct bus *bus, uint64_t gpa, uint8_t *data, unsigned size, bool write)
{
    if (gpa < FZ_RAM_SIZE && size <= FZ_RAM_SIZE - gpa) {
        if (write)
            memcpy(fz_ram + gpa, data, size);
        else
            memcpy(data, fz_ram + gpa, size);
        return;
    }
    for (int i = 0; i < FZ_MAPS; i++) {
        const struct fz_map *m = &fz_host.map[i];

        if (m->used && gpa >= m->gpa && gpa - m->gpa + size <= m->size) {
            if (write)
                memcpy(m->mem + (gpa - m->gpa), data, size);
            else
                memcpy(data, m->mem + (gpa - m->gpa), size);
            return;
        }
    }
    if (write && fz_ioevent_hit(false, gpa, size, data))
        return;
    bus_mmio(bus, gpa, data, size, write);
}

static inline uint32_t fz_cfg(struct bus *bus, unsigned bdf, unsigned reg, unsigned size,
                       uint32_t v, bool write)
{
    uint16_t port = (uint16_t)(0xcfc + (reg & 3));

    fz_outl(bus, 0xcf8, 0x80000000u | (bdf & 0xffff) << 8 | (reg & 0xfc));
    fz_pio(bus, port, size, &v, write);
    return v;
}

/* Where BAR bar of bdf decodes now: *io set for an I/O BAR; 0 when unset. */
static inline uint64_t fz_bar_addr(struct bus *bus, unsigned bdf, unsigned bar, bool *io)
{
    uint32_t v = fz_cfg(bus, bdf, 0x10 + 4 * bar, 4, 0, false);

    *io = v & 1;
    return *io ? (v & ~3u) : (v & ~15u);
}

/* Memory and I/O decoding and bus mastering on, as firmware leaves them;
 * the program can turn them off again. */
static inline void fz_pci_enable(struct bus *bus, const unsigned *bdfs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        fz_cfg(bus, bdfs[i], 0x04, 2, 0x0007, true);
}

/* The devfns of bus 0 that answer, as firmware finds them. */
static inline unsigned fz_pci_scan(struct bus *bus, unsigned *bdfs, unsigned max)
{
    unsigned n = 0;

    for (unsigned devfn = 0; devfn < 256 && n < max; devfn++)
        if ((fz_cfg(bus, devfn, 0, 2, 0, false) & 0xffff) != 0xffff)
            bdfs[n++] = devfn;
    return n;
}

/* ---- the program ---- */

struct fz_target {
    const uint16_t (*ports)[2];   /* { base, length } */
    unsigned nports;
    const unsigned *bdfs;         /* PCI functions: bus 0, devfn */
    unsigned nbdfs;
};

static int fz_harness_op(struct bus *bus, unsigned op, struct fz *f);
/* After every operation: waits until the work it started on device
 * threads is done, so that a replay does what the fuzzing run did. */
static void fz_settle(struct bus *bus);

static inline void fz_run(struct bus *bus, const struct fz_target *t, struct fz *f)
{
    for (unsigned n = 0; n < FZ_MAX_OPS && !fz_done(f); n++) {
        unsigned op = fz_u8(f);
        uint8_t buf[256];

        switch (op % 16) {
        case 0: case 1: { /* port access */
            uint8_t pick = fz_u8(f), off = fz_u8(f);
            unsigned size = fz_size(f, false);
            uint32_t v = fz_u32(f);
            uint16_t port;

            if (pick == 0xff || !t->nports)
                port = (uint16_t)(off | fz_u8(f) << 8); /* anywhere */
            else
                port = (uint16_t)(t->ports[pick % t->nports][0] +
                                  off % t->ports[pick % t->nports][1]);
            fz_pio(bus, port, size, &v, op % 16 == 0);
            break;
        }
        case 2: case 3: { /* BAR access */
            unsigned bdf = t->nbdfs ? t->bdfs[fz_u8(f) % t->nbdfs] : 0;
            unsigned bar = fz_u8(f) % 6, size = fz_size(f, true);
            uint32_t off = fz_u32(f);
            uint64_t v = fz_le(f, 8), base;
            bool io;

            base = fz_bar_addr(bus, bdf, bar, &io);
            if (!base)
                break;
            if (io) {
                uint32_t w = (uint32_t)v;
                fz_pio(bus, (uint16_t)(base + (off & 0xff)), size > 4 ? 4 : size, &w,
                       op % 16 == 2);
            } else {
                for (unsigned i = 0; i < 8; i++)
                    buf[i] = (uint8_t)(v >> (8 * i));
                fz_mem(bus, base + (off & 0xffffff), buf, size, op % 16 == 2);
            }
            break;
        }
        case 4: { /* guest RAM bytes */
            uint32_t gpa = fz_u32(f) % FZ_RAM_SIZE;
            unsigned len = fz_u8(f);

            for (unsigned i = 0; i < len && gpa + i < FZ_RAM_SIZE && !fz_done(f); i++)
                fz_ram[gpa + i] = fz_u8(f);
            break;
        }
        case 5: { /* a 2, 4 or 8 byte field */
            uint32_t gpa = fz_u32(f) % FZ_RAM_SIZE;
            unsigned size = 2u << (fz_u8(f) % 3);
            uint64_t v = fz_le(f, 8);

            for (unsigned i = 0; i < size && gpa + i < FZ_RAM_SIZE; i++)
                fz_ram[gpa + i] = (uint8_t)(v >> (8 * i));
            break;
        }
        case 6: case 7: { /* configuration space */
            /* a listed function mostly, now and then any devfn */
            uint8_t pick = fz_u8(f);
            unsigned bdf = t->nbdfs && pick < 0xf0 ? t->bdfs[pick % t->nbdfs] : fz_u8(f);
            unsigned reg = fz_u8(f), size = fz_size(f, false);
            uint32_t v = fz_u32(f);

            fz_cfg(bus, bdf, reg, size, v, op % 16 == 6);
            break;
        }
        case 8:
            bus_reset(bus);
            break;
        default:
            if (fz_harness_op(bus, op, f) < 0)
                return;
            break;
        }
        fz_settle(bus);
    }
}

/* ---- disk images for the storage harnesses ---- */

/* Bytes that differ from sector to sector (salt: which image). */
static inline void fill_pattern(uint8_t *p, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i / 512) * 31 + i + salt);
}

static inline void write_file(const char *path, const uint8_t *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        perror(path);
        exit(1);
    }
    close(fd);
}

/* A scratch directory under $TMPDIR (default /tmp) for a harness's
 * images, removed at exit by the harness. */
static inline void fz_scratch_dir(char *dir, size_t n, const char *name)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, n, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
}

/* Makes a qcow2 image of size bytes at path with 64 KiB of pattern salt
 * at off (so some clusters are allocated) and returns the file's bytes
 * in *img (malloc'd), *len: what every input starts from. */
static inline void fz_pristine_qcow2(const char *path, uint64_t size, uint64_t off,
                                     unsigned salt, uint8_t **img, size_t *len)
{
    static uint8_t buf[65536];
    BlockDriverState *bs;
    struct stat st;
    int fd;

    if (blk_create("qcow2", path, size, NULL) < 0 ||
        !(bs = blk_open(path, "qcow2", BLK_O_RDWR, NULL))) {
        fprintf(stderr, "cannot make %s: %s\n", path, blk_error());
        exit(1);
    }
    fill_pattern(buf, sizeof(buf), salt);
    blk_pwrite(bs, off, buf, sizeof(buf));
    blk_close(bs);
    fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) < 0 || !(*img = malloc((size_t)st.st_size)) ||
        read(fd, *img, (size_t)st.st_size) != st.st_size) {
        perror(path);
        exit(1);
    }
    *len = (size_t)st.st_size;
    close(fd);
}

#endif
