/* Firmware boot: without --kernel, the vCPUs start at the reset vector of
 * a BIOS ROM (SeaBIOS) mapped below 4 GiB, and the firmware learns about
 * the machine through fw_cfg, the CMOS and the chipset registers. */
#ifndef CALF_VMM_FIRMWARE_H
#define CALF_VMM_FIRMWARE_H

#include <stdbool.h>
#include <stdio.h>

#include "vmm/vm.h"

#define FIRMWARE_DEFAULT "/usr/share/seabios/bios-256k.bin"

struct firmware_config {
    const char *rom;       /* NULL: FIRMWARE_DEFAULT */
    const char *boot;      /* --boot spec, NULL: disks, then CD-ROMs */
    const char *bios_log;  /* --bios-log: the firmware's debugcon output */
};

/* Checks a --boot spec ("c", "d", "order=cd", "disk1", "menu=off",
 * comma-separated); prints what is wrong. */
int firmware_check_boot_spec(const char *spec);

/* Before the devices: loads and maps the ROM and opens the --bios-log
 * file.  Prints what went wrong. */
int firmware_setup(struct vm *vm, const struct firmware_config *cfg);
/* The --bios-log file (for the debug console device), or NULL. */
FILE *firmware_log(struct vm *vm);

/* Boot devices, for the firmware's "bootorder" file.  disk_index is the
 * position of the --disk option (from 0), ofw_path the OpenFirmware path
 * SeaBIOS matches, e.g. "/pci@i0cf8/ide@1,1/drive@0/disk@0" for the IDE
 * primary master, "/pci@i0cf8/scsi@3/disk@0,0" for virtio-blk at slot 3.
 * The machine calls it as it creates each disk (vmm/machine.c), between
 * firmware_setup() and firmware_finish(). */
enum firmware_boot_kind { FIRMWARE_BOOT_DISK, FIRMWARE_BOOT_CDROM };
int firmware_add_boot_device(struct vm *vm, enum firmware_boot_kind kind,
                             int disk_index, const char *ofw_path);

/* After every device exists: fills vm->fw_cfg (RAM size and map, CPUs,
 * the VGA BIOS when there is a VGA, the "bootorder" file from the --boot
 * spec).  Prints what went wrong. */
int firmware_finish(struct vm *vm);

/* The boot method (vm->load, cfg unused), run after firmware_finish()
 * and after every reset: puts the ROM's last 128 KiB below 1 MiB; the
 * vCPUs then start in their reset state. */
int firmware_load(struct vm *vm, const void *cfg);

/* Once the vCPUs are stopped: the ROM and the log file. */
void firmware_destroy(struct vm *vm);

#endif
