/* PCI: one bus (0) behind an i440FX-like host bridge at 00:00.0, reached
 * through configuration mechanism #1 (ports 0xCF8/0xCFC).  Functions
 * register here with their IDs, BAR sizes and MSI-X vector count; this
 * file owns their configuration space (BAR sizing and relocation, the
 * command register, INTx, the MSI-X capability, table and PBA) and hands
 * the rest of their BAR accesses to the function's callback.  Adding a
 * device never touches the bus code: the PCI memory window is one MMIO
 * range on the bus, decoded here against the BARs as the guest set them.
 *
 * Locking: configuration and BAR callbacks run under the bus lock (vCPU
 * threads).  pci_msix_notify(), pci_set_intx() and pci_dma() may be
 * called from any thread (a device's I/O thread); they take the PCI irq
 * lock only.
 */
#ifndef CALF_DEVICES_PCI_H
#define CALF_DEVICES_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"

#define PCI_SLOTS 32
#define PCI_MAX_BARS 6
#define PCI_MAX_MSIX 64
#define PCI_MSIX_NO_VECTOR 0xffff

/* 32-bit memory BARs from the PCI window just below the I/O APIC. */
#define PCI_MMIO_END 0xfec00000ULL
/* I/O BARs are decoded in [PCI_IO_BAR_BASE, 0x10000), where SeaBIOS puts
 * them too; a guest that moves one below it is not decoded. */
#define PCI_IO_BAR_BASE 0xc000

/* Without a router (pci_set_intx_router), INTx pin p of slot s reaches
 * I/O APIC pin PCI_INTX_GSI_BASE + ((s + p) % PCI_INTX_LINES): pins above
 * the ISA range are free of legacy devices, and level-triggered there is
 * native.  The ACPI _PRT and the MP table say the same. */
#define PCI_INTX_GSI_BASE 16
#define PCI_INTX_LINES 4

struct pci;
struct pci_dev;

struct pci_func_ops {
    /* An access inside BAR bar at offset off (never straddles its end;
     * the MSI-X table and PBA are handled by pci.c). */
    void (*bar_rw)(void *opaque, int bar, uint64_t off, uint8_t *data,
                   unsigned size, bool is_write);
    /* The guest-physical address a BAR decodes at changed (0: memory
     * decoding is off or the BAR is unset): devices with ioeventfds move
     * them here.  Called under the bus lock. */
    void (*bar_moved)(void *opaque, int bar, uint64_t addr);
    /* The guest wrote [off, off+size) and some of those bytes are
     * device-specific registers set up writable with pci_cfg_init() (at
     * 0x40 or above); the new values are already in place
     * (pci_cfg_read()).  Called under the bus lock. */
    void (*cfg_written)(void *opaque, unsigned off, unsigned size);
    /* The guest is about to read [off, off+size): a register whose value
     * is computed on access (a data window) can be set now with
     * pci_cfg_write_ro().  Called under the bus lock. */
    void (*cfg_read)(void *opaque, unsigned off, unsigned size);
    /* Machine reset: back to the power-on state, with any work in flight
     * finished (no interrupt may follow).  pci.c then resets the
     * configuration space, BARs (calling bar_moved), INTx and MSI-X.
     * Called under the bus lock with the vCPUs stopped. */
    void (*reset)(void *opaque);
    /* Teardown, first pass (optional): stops the function's threads, so
     * that afterwards it raises no interrupt and touches nothing by
     * itself.  pci_destroy() calls it for every function before it
     * destroys any (see there why). */
    void (*stop)(void *opaque);
    /* Teardown, second pass: frees what the function holds (stopping
     * its threads first if stop did not). */
    void (*destroy)(void *opaque);
    /* Saving and restoring (devices/bus.h, docs/VMSTATE.md): the
     * function's own state beyond configuration space, BARs and MSI-X
     * (which devices/pci-state.c keeps).  Called under the bus lock with
     * the vCPUs stopped; load comes after configuration space and BARs
     * are back (bar_moved called).  A function with ops but no state
     * makes saving refuse; one added without ops has only its
     * configuration space. */
    const struct bus_state_ops *state;
};

struct pci_dev_config {
    uint16_t vendor, device;
    uint16_t subsys_vendor, subsys_id;
    uint8_t class_code, subclass, prog_if, revision;
    uint32_t bar_size[PCI_MAX_BARS]; /* 0: none; else a power of 2 >= 4K,
                                        for I/O BARs 4 to 256 */
    uint8_t bar_io;                  /* bit b set: BAR b is an I/O BAR */
    unsigned msix_vectors;           /* 0: no MSI-X capability */
    int msix_bar;                    /* table at 0, PBA at half the BAR */
    bool intx;                       /* interrupt pin INTA */
    bool multifunction;              /* header type bit 7 from the start */
};

/* Registers 0xCF8/0xCFC and the MMIO window [mmio_base, PCI_MMIO_END)
 * on bus and creates the host bridge. */
int pci_create(struct bus *bus, uint64_t mmio_base, struct pci **out);
/* Stops every function (their stop op), then destroys them (their
 * destroy op) and the PCI state: call once the vCPUs are stopped, before
 * guest RAM goes away. */
void pci_destroy(struct pci *pci);

/* BARs of functions added from now on get addresses from addr up
 * (the machine keeps them clear of RAM it may add later). */
void pci_bar_alloc_from(struct pci *pci, uint64_t addr);

/* Adds a function at slot and function fn of bus 0 and gives its BARs
 * addresses in the window.  Function 0 of the slot must exist first (it is
 * then marked multi-function). -EBUSY when taken. */
int pci_add_fn(struct pci *pci, int slot, int fn,
               const struct pci_dev_config *cfg,
               const struct pci_func_ops *ops, void *opaque,
               struct pci_dev **out);

/* Device-specific configuration registers (offset >= 0x40, also fields
 * of a capability the function added itself): initial value and which
 * bits the guest may write; writes are reported through ops->cfg_written.
 * Before the guest runs. */
void pci_cfg_init(struct pci_dev *d, unsigned off, unsigned size,
                  uint32_t value, uint32_t wmask);
/* Reads the function's configuration space as the guest sees it. */
uint32_t pci_cfg_read(struct pci_dev *d, unsigned off, unsigned size);
/* Sets device-specific bytes (offset >= 0x40) the guest sees, whatever
 * their write mask: status bits a device updates itself. */
void pci_cfg_write_ro(struct pci_dev *d, unsigned off, unsigned size,
                      uint32_t value);
/* The host bridge at 00:00.0, for its chipset registers (PAM, SMRAM). */
struct pci_dev *pci_host_bridge(struct pci *pci);

/* Where INTx goes.  By default INTA of slot s reaches GSI 16 + (s & 3),
 * as the VMM's own ACPI _PRT and MP table say.  Under firmware the PIIX3
 * PIRQ registers decide: route returns the ISA IRQ/GSI (0..23) for pin
 * (0 = INTA) of slot, or -1 when the guest disabled that route.  It runs
 * under the PCI irq lock and must not call back into pci_*. */
typedef int (*pci_intx_route_fn)(void *opaque, int slot, int pin);
void pci_set_intx_router(struct pci *pci, pci_intx_route_fn route,
                         void *opaque);

/* Appends a capability (cap[0] = ID, cap[1] is filled with the link)
 * to the function's configuration space; returns its offset or -ENOSPC.
 * Only before the guest runs; capability bytes are read-only. */
int pci_add_cap(struct pci_dev *d, const uint8_t *cap, unsigned len);

/* MSI-X enabled by the guest (then interrupts go through vectors). */
bool pci_msix_enabled(struct pci_dev *d);
/* Sends MSI-X vector (pending while masked); PCI_MSIX_NO_VECTOR or a
 * vector past the table is dropped.  Returns 0 or a negative errno.
 * An unmasked vector goes out through an irqfd (an eventfd write, no
 * ioctl): each (function, vector) gets its own GSI with an MSI route that
 * follows the guest's table entry.  Where KVM has no irqfd, or with
 * CALF_NO_IRQFD set in the environment (to compare), KVM_SIGNAL_MSI. */
int pci_msix_notify(struct pci_dev *d, unsigned vector);
/* The guest set the bus-master bit: the function may do DMA (and
 * pci_dma() answers). */
bool pci_bus_master(struct pci_dev *d);
/* Drives the function's INTx line (level-triggered, shared lines are
 * ORed); ignored while the command register disables INTx. */
void pci_set_intx(struct pci_dev *d, int level);
/* Another level-triggered source on ISA IRQ irq (the ACPI SCI) that
 * PIRQ routes may share with INTx: counted with them, so the line is
 * the OR of all.  The caller raises and lowers only on its own changes
 * (each raise matched by one lower). */
void pci_share_isa_irq(struct pci *pci, unsigned irq, int level);

/* Host pointer for a DMA of len bytes at guest-physical gpa, or NULL
 * when any byte of it is not guest RAM or the guest has not set the
 * function's bus-master bit. */
void *pci_dma(struct pci_dev *d, uint64_t gpa, uint64_t len);

/* The bus a function sits on: for its bus_ioeventfd(). */
struct bus *pci_dev_bus(struct pci_dev *d);
/* "00:03.0" style name for messages. */
const char *pci_dev_name(struct pci_dev *d);

#endif
