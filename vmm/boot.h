/* Direct kernel boot: loading a bzImage or ELF kernel and an initrd into
 * guest RAM, the zero page with its e820 map, the tables a guest reads to
 * find its CPUs, and the long-mode state the 64-bit entry expects. */
#ifndef CALF_VMM_BOOT_H
#define CALF_VMM_BOOT_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/vm.h"

/* Guest-physical layout of what the VMM writes below 1 MiB. */
#define BOOT_GDT        0x0500
#define BOOT_SETUP_DATA 0x6000   /* setup_data list: the RNG seed */
#define BOOT_ZERO_PAGE  0x7000
#define BOOT_STACK      0x8ff0
#define BOOT_PML4       0x9000
#define BOOT_PDPT       0xa000
#define BOOT_PD         0xb000   /* four pages: 4 GiB in 2 MiB pages */
#define BOOT_CMDLINE    0x20000
#define BOOT_CMDLINE_MAX 0x10000
#define BOOT_EBDA       0x9fc00  /* RAM below 640 KiB ends here */
#define BOOT_BIOS       0xf0000  /* reserved up to 1 MiB: MP table */
#define BOOT_KERNEL     0x100000 /* where a bzImage's 64-bit code goes */

struct boot_config {
    const char *kernel;
    const char *initrd;
    const char *cmdline;
};

/* What the kernel loader found, for the zero page and the entry. */
struct boot_kernel {
    uint64_t entry;          /* guest-physical 64-bit entry point */
    uint64_t end;            /* first byte above what the kernel needs */
    bool bzimage;
    uint8_t setup_header[0x80]; /* bzImage bytes 0x1f1.., as in the file */
    unsigned setup_header_len;
    uint32_t cmdline_max;    /* longest command line the kernel takes */
    uint64_t initrd_max;     /* highest address an initrd byte may use */
    uint32_t pvh_entry;      /* 32-bit PVH entry from the Xen ELF note, or 0 */
};

struct boot_mem_region {
    uint64_t addr, size;
    uint32_t type;           /* 1 RAM, 2 reserved (e820 numbering) */
};
#define BOOT_MAX_REGIONS 8

/* loader.c: reads the files and fills guest RAM.  Errors are printed
 * (naming the file and what is wrong) and returned as -errno. */
int boot_load_kernel(struct vm *vm, const char *path, struct boot_kernel *k);
int boot_load_initrd(struct vm *vm, const char *path,
                     const struct boot_kernel *k, uint64_t *addr,
                     uint64_t *size);

/* bootparams.c; the command line goes to BOOT_CMDLINE, at most max
 * bytes (0: BOOT_CMDLINE_MAX - 1). */
int boot_write_cmdline(struct vm *vm, uint32_t max, const char *cmdline);
int boot_write_zero_page(struct vm *vm, const struct boot_kernel *k,
                         const char *cmdline, uint64_t initrd_addr,
                         uint64_t initrd_size, uint64_t rsdp);

/* The guest's memory map, in e820 terms; returns the entry count. */
int boot_memory_map(struct vm *vm, struct boot_mem_region *map);

/* pvh.c: hvm_start_info for the PVH entry; returns its address. */
int boot_write_pvh_info(struct vm *vm, const char *cmdline,
                        uint64_t initrd_addr, uint64_t initrd_size,
                        uint64_t rsdp, uint64_t *start_info);

/* acpi.c: RSDP, XSDT, FADT, DSDT, MADT; returns the RSDP address. */
int boot_write_acpi(struct vm *vm, uint64_t *rsdp);

/* mptable.c */
int boot_write_mptable(struct vm *vm);

/* longmode.c: page tables, GDT and the BSP's registers. */
int boot_setup_longmode(struct vm *vm, uint64_t entry, uint64_t zero_page);
/* PVH: 32-bit protected mode, paging off, EBX = start_info. */
int boot_setup_pvh(struct vm *vm, uint32_t entry, uint64_t start_info);

/* All of the above, in order. */
int boot_linux(struct vm *vm, const struct boot_config *cfg);

#endif
