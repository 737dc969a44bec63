/* The interface between the VMM and its device models.
 *
 * A device registers the I/O port ranges it decodes and gets its callback
 * called on the vCPU thread that made the access, with the bus lock held
 * (so a device needs no lock of its own for state touched only there).
 * Through the same bus a device can drive an interrupt line, send bytes to
 * the console, or ask the machine to stop.  Devices never see the VM, the
 * vCPUs or each other.
 */
#ifndef CALF_DEVICES_BUS_H
#define CALF_DEVICES_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus;

/* An access of size 1, 2 or 4 bytes; data is little-endian.  On a read
 * the callback fills data (it arrives preset to all ones, the value of an
 * undriven ISA bus). */
typedef void (*bus_pio_fn)(void *opaque, uint16_t port, uint8_t *data,
                           unsigned size, bool is_write);

/* The same for memory-mapped I/O at guest-physical addr (size 1 to 8). */
typedef void (*bus_mmio_fn)(void *opaque, uint64_t addr, uint8_t *data,
                            unsigned size, bool is_write);

/* Why a machine stops; also the "exit_reason" strings of --report. */
enum bus_stop_reason {
    BUS_STOP_NONE = 0,
    BUS_STOP_DEBUG_EXIT,   /* the guest wrote the debug-exit port */
    BUS_STOP_EXPECT,       /* --expect text seen on the console */
    BUS_STOP_TIMEOUT,      /* --timeout elapsed */
    BUS_STOP_RESET,        /* guest asked for a reset (i8042) */
    BUS_STOP_TRIPLE_FAULT, /* KVM_EXIT_SHUTDOWN: a PC resets on it */
    BUS_STOP_HALT,         /* every vCPU halted with interrupts off */
    BUS_STOP_ERROR,        /* internal error or unexpected exit */
    BUS_STOP_SIGNAL,       /* SIGTERM/SIGINT/SIGHUP */
    BUS_STOP_QUIT,         /* Ctrl-A x on the console */
    BUS_STOP_POWEROFF,     /* ACPI S5 (the guest powered off) */
};

/* What the VMM provides behind the bus; devices reach it only through the
 * bus_* calls below. */
/* An MSI route: a guest write of data at addr, raised by signalling the
 * irqfd of gsi (GSIs from BUS_MSI_GSI_BASE up; below are the irqchips'). */
struct bus_msi_route {
    unsigned gsi;
    uint64_t addr;
    uint32_t data;
};
#define BUS_MSI_GSI_BASE 24

struct bus_host_ops {
    int (*set_irq)(void *host, unsigned irq, int level);
    void (*console_write)(void *host, const uint8_t *buf, size_t len);
    void (*request_stop)(void *host, enum bus_stop_reason reason, int status);
    /* For DMA-capable devices (PCI/virtio); may be called from any thread.
     * guest_ram: host pointer to len bytes of guest RAM at gpa, or NULL.
     * signal_msi: deliver one MSI (KVM_SIGNAL_MSI).
     * ioeventfd: (de)assign an eventfd KVM signals on a guest write of len
     * bytes at MMIO address addr, without an exit to user space. */
    void *(*guest_ram)(void *host, uint64_t gpa, uint64_t len);
    int (*signal_msi)(void *host, uint64_t addr, uint32_t data);
    int (*ioeventfd)(void *host, uint64_t addr, unsigned len, int fd,
                     bool assign);
    /* Maps size bytes of host memory mem (page aligned) at guest-physical
     * gpa as RAM (readonly: guest writes become MMIO exits to the bus):
     * returns a handle >= 0 for unmap_ram, or a negative errno. */
    int (*map_ram)(void *host, uint64_t gpa, uint64_t size, void *mem,
                   bool readonly);
    void (*unmap_ram)(void *host, int handle);
    /* irqfds for MSI: msi_routes replaces the machine's MSI routes with
     * these n (the irqchip pins keep their routes); irqfd (de)assigns
     * eventfd fd to gsi (KVM_IRQFD). */
    int (*msi_routes)(void *host, const struct bus_msi_route *routes,
                      unsigned n);
    int (*irqfd)(void *host, int fd, unsigned gsi, bool assign);
    /* An ioeventfd on a guest write of value of len bytes to I/O port
     * port (one notify port shared by several queues). */
    int (*ioeventfd_pio)(void *host, uint16_t port, unsigned len,
                         uint32_t value, int fd, bool assign);
    /* Guest writes to ports [port, port+len) are buffered by KVM instead
     * of exiting (on), and reach the device later, in order, before any
     * other access is handled; for write-only side effects (a UART's
     * THR while no THR interrupt is wanted). */
    int (*coalesce_pio)(void *host, uint16_t port, unsigned len, bool on);
};

struct bus *bus_create(const struct bus_host_ops *ops, void *host);
void bus_destroy(struct bus *bus);

/* Hands a device's malloc'ed state to the bus, freed by bus_destroy(). */
int bus_own(struct bus *bus, void *mem);

int bus_register_pio(struct bus *bus, uint16_t base, uint16_t len,
                     bus_pio_fn fn, void *opaque);

/* Returns false when no device decodes the port (the access is then
 * ignored, a read returning all ones). */
bool bus_pio(struct bus *bus, uint16_t port, uint8_t *data, unsigned size,
             bool is_write);

/* MMIO ranges: few and large (the PCI window), so a short list. */
int bus_register_mmio(struct bus *bus, uint64_t base, uint64_t len,
                      bus_mmio_fn fn, void *opaque);
/* Returns false when nothing decodes addr (reads are all ones). */
bool bus_mmio(struct bus *bus, uint64_t addr, uint8_t *data, unsigned size,
              bool is_write);

/* Machine reset (a guest reboot that restarts the VM): fn runs with the
 * bus lock held, on the main thread, while every vCPU is stopped; it puts
 * the device back in its power-on state (what survives a PC reset, such
 * as the RTC's clock and CMOS bytes, survives here too).  Hooks run in
 * registration order. */
typedef void (*bus_reset_fn)(void *opaque);
int bus_register_reset(struct bus *bus, bus_reset_fn fn, void *opaque);
void bus_reset(struct bus *bus);

/* Devices with threads of their own (timers) stop them in a shutdown hook:
 * bus_shutdown runs the hooks on the main thread, bus lock not held,
 * before the VM's memory and file descriptors go. */
typedef void (*bus_shutdown_fn)(void *opaque);
int bus_register_shutdown(struct bus *bus, bus_shutdown_fn fn, void *opaque);
void bus_shutdown(struct bus *bus);

/* For code that enters a device from outside a port access (console input
 * on the main thread): takes the same lock the port callbacks run under. */
void bus_lock(struct bus *bus);
void bus_unlock(struct bus *bus);

/* Saving and restoring the machine (docs/VMSTATE.md).  Every device
 * registers its state under a name unique on the bus ("serial 0x3f8"),
 * with the same opaque it gave bus_register_pio/mmio: a port or MMIO
 * range whose opaque has no state registered makes saving refuse, naming
 * those ports.  save appends the device's state to w; load reads it back
 * from r (untrusted bytes: check every value) and leaves the device as it
 * was saved.  Both run on the main thread with the bus lock held and the
 * vCPUs stopped; load runs before the guest ever ran on this machine.
 * Return 0, or a negative errno with vms_fail()'s message on the cursor
 * (save may refuse: a device busy in a way it cannot record). */
struct vmstate_cursor;
struct bus_state_ops {
    int (*save)(void *opaque, struct vmstate_cursor *w);
    int (*load)(void *opaque, struct vmstate_cursor *r);
    /* Optional.  A device with threads of its own keeps them from
     * touching guest RAM or raising interrupts from its save (or load)
     * on, so that what it saved still holds when RAM is written (and a
     * restored device does no I/O before the disks are reverted);
     * resume lets them go on: after a save, whether it worked or not
     * (the machine may run on), and after a whole load worked, before
     * the vCPUs run.  Bus lock held, vCPUs stopped. */
    void (*resume)(void *opaque);
};
/* For devices without state (or whose state the machine rebuilds). */
extern const struct bus_state_ops bus_state_none;
int bus_register_state(struct bus *bus, const char *name,
                       const struct bus_state_ops *ops, void *opaque);
unsigned bus_state_count(struct bus *bus);
const char *bus_state_name(struct bus *bus, unsigned i);
/* Bus lock taken inside. */
int bus_state_save(struct bus *bus, unsigned i, struct vmstate_cursor *w);
int bus_state_load(struct bus *bus, unsigned i, struct vmstate_cursor *r);
/* Every device's resume hook, in registration order. */
void bus_state_resume(struct bus *bus);
/* NULL when every port and MMIO range has state hooks; else buf, naming
 * the first range that has none. */
const char *bus_state_missing(struct bus *bus, char *buf, size_t len);

int bus_set_irq(struct bus *bus, unsigned irq, int level);
void bus_console_write(struct bus *bus, const uint8_t *buf, size_t len);
void bus_request_stop(struct bus *bus, enum bus_stop_reason reason,
                      int status);
void *bus_guest_ram(struct bus *bus, uint64_t gpa, uint64_t len);
int bus_signal_msi(struct bus *bus, uint64_t addr, uint32_t data);
int bus_ioeventfd(struct bus *bus, uint64_t addr, unsigned len, int fd,
                  bool assign);
int bus_msi_routes(struct bus *bus, const struct bus_msi_route *routes,
                   unsigned n);
int bus_irqfd(struct bus *bus, int fd, unsigned gsi, bool assign);
int bus_ioeventfd_pio(struct bus *bus, uint16_t port, unsigned len,
                      uint32_t value, int fd, bool assign);
/* -ENOTSUP where the host cannot buffer writes (they then exit as usual). */
int bus_coalesce_pio(struct bus *bus, uint16_t port, unsigned len, bool on);
/* RAM-backed regions: framebuffers, ROMs.  Not inside guest RAM. */
int bus_map_ram(struct bus *bus, uint64_t gpa, uint64_t size, void *mem,
                bool readonly);
void bus_unmap_ram(struct bus *bus, int handle);

#endif
