/* The PC: the one place that creates devices and decides where they sit.
 *
 * Device models (devices/) know their own registers; the ports and IRQs
 * a PC fixes by convention and the PCI slots are chosen here, from the
 * table below, and handed to them.  Adding a device is one create call
 * in machine_create() and, when it takes a port, an IRQ or a fixed PCI
 * slot, one line in the table (docs/ARCHITECTURE.md has the checklist).
 *
 * PCI bus 0 looks like QEMU's i440FX machine, which is what SeaBIOS and
 * guests expect: the host bridge at 00:00.0, the PIIX3 at 00:01.0 with
 * IDE at 01.1 and PIIX4 power management at 01.3, then one virtio-blk
 * function per virtio --disk from slot 2 up, in --disk order, then the
 * VGA, then one virtio-net function per --net, then virtio-rng. */
#include "vmm/machine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/devices.h"
#include "devices/disk.h"
#include "devices/ide/ide.h"
#include "devices/net/net.h"
#include "devices/pci.h"
#include "devices/vga.h"
#include "devices/virtio/virtio.h"
#include "vmm/firmware.h"

/* Where each device sits: I/O ports, ISA IRQ, PCI slot and function.
 * Devices marked "own" decode their architectural ports themselves (the
 * RTC at 0x70, the i8042 at 0x60/0x64, ...); the entry says where they
 * are so that the whole map is in one place. */
enum pc_place {
    PC_FW_CFG, PC_PORT92, PC_DEBUGCON, PC_COM1, PC_RTC, PC_I8042,
    PC_DEBUG_EXIT, PC_PORT80, PC_PCI_CFG, PC_PIIX3, PC_IDE, PC_ACPI_PM,
    PC_PLACES
};

static const struct pc_slot {
    const char *what;
    uint16_t port;            /* first I/O port, 0: none */
    int irq;                  /* ISA IRQ, -1: none */
    int slot, fn;             /* PCI, slot -1: not PCI */
} pc_map[PC_PLACES] = {
    [PC_FW_CFG]     = { "fw_cfg (own: 0x510, 0x514 DMA)", 0x510, -1, -1, 0 },
    [PC_PORT92]     = { "port 92 (own): A20, fast reset", 0x92, -1, -1, 0 },
    [PC_DEBUGCON]   = { "firmware debug console", 0x402, -1, -1, 0 },
    [PC_COM1]       = { "serial COM1", 0x3f8, 4, -1, 0 },
    [PC_RTC]        = { "RTC/CMOS (own)", 0x70, 8, -1, 0 },
    [PC_I8042]      = { "i8042 (own: 0x60, 0x64)", 0x60, 1, -1, 0 },
    [PC_DEBUG_EXIT] = { "isa-debug-exit", 0x501, -1, -1, 0 },
    [PC_PORT80]     = { "POST ports (own: 0x80, 0xed)", 0x80, -1, -1, 0 },
    [PC_PCI_CFG]    = { "PCI config 0xcf8/0xcfc, reset 0xcf9", 0xcf8, -1,
                        0, 0 },
    [PC_PIIX3]      = { "PIIX3 ISA bridge", 0, -1, 1, 0 },
    [PC_IDE]        = { "PIIX3 IDE (own: 0x1f0/0x3f6 IRQ 14, 0x170/0x376 "
                        "IRQ 15)", 0x1f0, 14, 1, 1 },
    [PC_ACPI_PM]    = { "PIIX4 power management (own: 0x600, SCI IRQ 9)",
                        0x600, 9, 1, 3 },
};

/* PCI slots handed out in creation order: virtio disks, then the VGA,
 * then virtio-net, then virtio-rng. */
#define PC_FIRST_FREE_SLOT 2

/* BARs go from 3 GiB up, where firmware would put them, even when RAM
 * ends lower (the guest may still move them anywhere in the window). */
#define PC_BAR_ALLOC_BASE 0xc0000000ULL

struct machine_build {
    struct vm *vm;
    const struct machine_config *mc;
    int next_slot;
    struct ide_config ide;
    int ide_arg[IDE_DRIVES];  /* which --disk each IDE slot came from */
};

static int next_pci_slot(struct machine_build *b)
{
    return b->next_slot < PCI_SLOTS ? b->next_slot++ : -ENOSPC;
}

/* ---- ISA ---- */

static int isa_devices(struct machine_build *b)
{
    struct vm *vm = b->vm;
    const struct pc_slot *p = pc_map;
    int ret = fw_cfg_create(vm->bus, &vm->fw_cfg);

    /* Chipset ports only the firmware needs: fast A20/reset, and the
     * firmware's debug log. */
    if (!ret && b->mc->firmware)
        ret = piix3_port92_create(vm->bus);
    if (!ret && b->mc->firmware)
        ret = debugcon_create(vm->bus, p[PC_DEBUGCON].port, b->mc->bios_log);
    if (!ret)
        ret = serial_create(vm->bus, p[PC_COM1].port,
                            (unsigned)p[PC_COM1].irq, &vm->serial);
    if (!ret)
        ret = rtc_create(vm->bus, vm->low_size, vm->ram_size - vm->low_size);
    if (!ret)
        ret = i8042_create(vm->bus, &vm->kbd);
    if (!ret)
        ret = debug_exit_create(vm->bus, p[PC_DEBUG_EXIT].port);
    if (!ret)
        ret = port80_create(vm->bus);
    if (ret)
        vmm_error("device setup: %s", strerror(-ret));
    return ret;
}

/* ---- disks ---- */

/* Tells the firmware where each IDE drive sits, as the OpenFirmware
 * path SeaBIOS matches against "bootorder": channel, then unit. */
static int ide_boot_devices(struct machine_build *b)
{
    int ret = 0;

    for (int s = 0; s < IDE_DRIVES && !ret; s++) {
        char path[64];

        if (!b->ide.used[s])
            continue;
        snprintf(path, sizeof(path), "/pci@i0cf8/ide@%x,%x/drive@%d/disk@%d",
                 pc_map[PC_IDE].slot, pc_map[PC_IDE].fn, s / 2, s % 2);
        ret = firmware_add_boot_device(b->vm, b->ide.drive[s].cdrom
                                                  ? FIRMWARE_BOOT_CDROM
                                                  : FIRMWARE_BOOT_DISK,
                                       b->ide_arg[s], path);
    }
    return ret;
}

/* A virtio-blk function for --disk number index, at the next free slot;
 * its firmware boot path is that slot's. */
static int virtio_disk_add(struct machine_build *b, int index,
                           const struct disk_opts *o)
{
    int slot = next_pci_slot(b);
    char path[64];
    int ret;

    if (slot < 0)
        return slot;
    ret = virtio_blk_add(b->vm->pci, slot, o, (unsigned)b->vm->ncpus);
    if (ret)
        return ret;
    snprintf(path, sizeof(path), "/pci@i0cf8/scsi@%x/disk@0,0", slot);
    return firmware_add_boot_device(b->vm, FIRMWARE_BOOT_DISK, index, path);
}

/* What the monitor shows of a --disk (vm->disks), named as QEMU names
 * its drives: virtioN in virtio order, ideB-hdU / ideB-cdU by slot. */
static int disk_record(struct machine_build *b, const struct disk_opts *o)
{
    struct vm_disk *d = &b->vm->disks[b->vm->ndisks];
    int nvirtio = 0;

    for (int i = 0; i < b->vm->ndisks; i++)
        nvirtio += !strncmp(b->vm->disks[i].name, "virtio", 6);
    d->file = strdup(o->file);
    d->format = o->format ? strdup(o->format) : NULL;
    if (!d->file || (o->format && !d->format)) {
        free(d->file);
        free(d->format);
        return -ENOMEM;
    }
    d->cdrom = o->cdrom;
    d->readonly = o->readonly || o->cdrom;
    d->snapshot = o->snapshot;
    d->cache = o->cache;
    disk_stats_init(&d->stats);
    snprintf(d->name, sizeof(d->name), "virtio%d", nvirtio);
    b->vm->ndisks++;
    return 0;
}

/* Each --disk: virtio-blk functions at once, IDE drives into b->ide, for
 * one controller made afterwards. */
static int disks_add(struct machine_build *b)
{
    int ret = 0;

    for (int i = 0; i < b->mc->ndisks && !ret; i++) {
        struct disk_opts o;

        ret = disk_parse(b->mc->disks[i], &o);
        if (ret)
            break;
        o.arg = i; /* vm->disks[i]: the monitor finds its live image so */
        if (disk_record(b, &o)) {
            disk_opts_free(&o);
            ret = -ENOMEM;
            break;
        }
        o.stats = &b->vm->disks[b->vm->ndisks - 1].stats;
        if (o.iface == DISK_IF_IDE) {
            struct vm_disk *d = &b->vm->disks[b->vm->ndisks - 1];

            ret = ide_config_add(&b->ide, &o);
            if (ret >= 0) {
                b->ide_arg[ret] = i;
                snprintf(d->name, sizeof(d->name), "ide%d-%s%d", ret / 2,
                         d->cdrom ? "cd" : "hd", ret % 2);
            }
            ret = ret < 0 ? ret : 0;
            continue;
        }
        ret = virtio_disk_add(b, i, &o);
        disk_opts_free(&o);
    }
    /* The IDE function only when a drive needs it: an empty controller
     * costs a guest's driver probe time (slow where ring 0 is emulated). */
    if (!ret && ide_config_any(&b->ide))
        ret = ide_create(b->vm->pci, pc_map[PC_IDE].slot, pc_map[PC_IDE].fn,
                         b->vm->bus, &b->ide, &b->vm->ide);
    if (!ret)
        ret = ide_boot_devices(b);
    return ret;
}

/* ---- PCI ---- */

/* Each --net: a virtio-net function at the next free slot, after the
 * disks and the VGA. */
static int nets_add(struct machine_build *b)
{
    int ret = 0;

    for (int i = 0; i < b->mc->nnets && !ret; i++) {
        struct net_opts o;
        int slot;

        ret = net_parse(b->mc->nets[i], (unsigned)i, &o);
        if (ret)
            break;
        slot = next_pci_slot(b);
        ret = slot < 0 ? slot : virtio_net_add(b->vm->pci, slot, &o);
    }
    return ret;
}

/* virtio-rng after everything else, so that it moves no other slot: by
 * default with a kernel boot (a Linux guest then need not wait for
 * entropy), not under firmware. */
static int rng_add(struct machine_build *b)
{
    struct rng_opts o = { .on = !b->mc->firmware,
                          .max_bytes = VIRTIO_RNG_MAX_BYTES,
                          .period_ms = VIRTIO_RNG_PERIOD_MS };
    int slot, ret = b->mc->rng ? virtio_rng_parse(b->mc->rng, &o) : 0;

    if (ret || !o.on)
        return ret;
    slot = next_pci_slot(b);
    return slot < 0 ? slot : virtio_rng_add(b->vm->pci, slot, &o);
}

static int pci_devices(struct machine_build *b)
{
    struct vm *vm = b->vm;
    int ret = pci_create(vm->bus, vm->low_size, &vm->pci);

    if (ret) {
        vmm_error("PCI setup: %s", strerror(-ret));
        return ret;
    }
    pci_bar_alloc_from(vm->pci, PC_BAR_ALLOC_BASE);
    ret = piix3_create(vm->pci, pc_map[PC_PIIX3].slot, vm->bus, &vm->piix3);
    if (!ret)
        ret = acpi_pm_create(vm->pci, pc_map[PC_ACPI_PM].slot,
                             pc_map[PC_ACPI_PM].fn, vm->bus, b->mc->firmware,
                             &vm->acpi_pm);
    if (!ret)
        ret = disks_add(b);
    if (ret)
        return ret;
    if (b->mc->vga) {
        int slot = next_pci_slot(b);

        ret = slot < 0 ? slot : vga_create(vm->pci, slot, vm->bus, &vm->vga);
        if (ret) {
            vmm_error("VGA setup: %s", strerror(-ret));
            return ret;
        }
    }
    ret = nets_add(b);
    if (!ret)
        ret = rng_add(b);
    if (ret || !b->mc->firmware)
        return ret;
    /* Under firmware the chipset is the firmware's to program: the
     * i440FX's PAM and SMRAM registers, and the PIIX3 PIRQ routes, which
     * SeaBIOS sets and tells the guest about (through its tables and the
     * Interrupt Line registers); INTx follows them from then on. */
    ret = i440fx_init(pci_host_bridge(vm->pci));
    if (ret) {
        vmm_error("chipset setup: %s", strerror(-ret));
        return ret;
    }
    pci_set_intx_router(vm->pci, piix3_route_intx, vm->piix3);
    return 0;
}

int machine_create(struct vm *vm, const struct machine_config *mc)
{
    struct machine_build b = {
        .vm = vm, .mc = mc, .next_slot = PC_FIRST_FREE_SLOT,
    };
    int ret;

    if (mc->ndisks > MACHINE_MAX_DISKS)
        return -E2BIG;
    ret = isa_devices(&b);
    if (!ret)
        ret = pci_devices(&b);
    ide_config_free(&b.ide);
    return ret;
}

void machine_destroy(struct vm *vm)
{
    pci_destroy(vm->pci);
    vm->pci = NULL;
    vm->ide = NULL;
    fw_cfg_destroy(vm->fw_cfg);
    vm->fw_cfg = NULL;
    for (int i = 0; i < vm->ndisks; i++) {
        free(vm->disks[i].file);
        free(vm->disks[i].format);
        disk_stats_fini(&vm->disks[i].stats);
    }
    vm->ndisks = 0;
}
