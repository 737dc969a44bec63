/* The zero page (struct boot_params) of the Linux boot protocol: the
 * kernel's own setup header when it came with one, and what the loader
 * fills in: command line, initrd, and the e820 memory map. */
#include "vmm/boot.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define E820_RAM      1
#define E820_RESERVED 2
#define LOADER_TYPE_UNDEFINED 0xff

static int region_add(struct boot_mem_region *map, int n, uint64_t addr,
                      uint64_t size, uint32_t type)
{
    map[n] = (struct boot_mem_region){ addr, size, type };
    return n + 1;
}

/* RAM below the EBDA, the BIOS area reserved (it holds the MP table),
 * RAM from 1 MiB, and RAM above 4 GiB when there is more than fits below
 * the PCI hole. */
int boot_memory_map(struct vm *vm, struct boot_mem_region *map)
{
    int n = 0;

    n = region_add(map, n, 0, BOOT_EBDA, E820_RAM);
    n = region_add(map, n, BOOT_EBDA, 0xa0000 - BOOT_EBDA, E820_RESERVED);
    n = region_add(map, n, BOOT_BIOS, 0x100000 - BOOT_BIOS, E820_RESERVED);
    n = region_add(map, n, 0x100000, vm->low_size - 0x100000, E820_RAM);
    if (vm->ram_size > vm->low_size)
        n = region_add(map, n, VM_HIGH_RAM_BASE, vm->ram_size - vm->low_size,
                       E820_RAM);
    return n;
}

static void e820_build(struct vm *vm, struct boot_params *bp)
{
    struct boot_mem_region map[BOOT_MAX_REGIONS];
    int n = boot_memory_map(vm, map);

    for (int i = 0; i < n; i++) {
        bp->e820_table[i].addr = map[i].addr;
        bp->e820_table[i].size = map[i].size;
        bp->e820_table[i].type = map[i].type;
    }
    bp->e820_entries = (uint8_t)n;
}

int boot_write_cmdline(struct vm *vm, uint32_t max, const char *cmdline)
{
    size_t len = strlen(cmdline);

    if (max == 0 || max >= BOOT_CMDLINE_MAX)
        max = BOOT_CMDLINE_MAX - 1;
    if (len > max) {
        vmm_error("kernel command line is %zu bytes, the kernel takes at "
                  "most %u", len, max);
        return -E2BIG;
    }
    memcpy(vm_gpa(vm, BOOT_CMDLINE, len + 1), cmdline, len + 1);
    return 0;
}

/* A seed for the guest's RNG (SETUP_RNG_SEED, protocol 2.09+): without
 * it and without RDRAND a kernel gathers jitter entropy, which costs tens
 * of seconds on an emulating backend. */
static void write_rng_seed(struct vm *vm, struct boot_params *bp)
{
    struct setup_data *sd = vm_gpa(vm, BOOT_SETUP_DATA, sizeof(*sd) + 32);

    if (bp->hdr.version < 0x0209)
        return;
    memset(sd, 0, sizeof(*sd));
    sd->type = SETUP_RNG_SEED;
    sd->len = 32;
    if (getrandom(sd->data, 32, 0) != 32)
        return; /* no seed beats a predictable one */
    bp->hdr.setup_data = BOOT_SETUP_DATA;
}

int boot_write_zero_page(struct vm *vm, const struct boot_kernel *k,
                         const char *cmdline, uint64_t initrd_addr,
                         uint64_t initrd_size, uint64_t rsdp)
{
    struct boot_params *bp = vm_gpa(vm, BOOT_ZERO_PAGE, sizeof(*bp));
    int ret;

    memset(bp, 0, sizeof(*bp));
    if (k->bzimage) {
        memcpy(&bp->hdr, k->setup_header, k->setup_header_len);
    } else {
        /* An ELF kernel has no header: make the fields Linux reads. */
        bp->hdr.boot_flag = 0xaa55;
        bp->hdr.header = 0x53726448; /* "HdrS" */
        bp->hdr.version = 0x020c;
        bp->hdr.kernel_alignment = 0x1000000;
        bp->hdr.cmdline_size = k->cmdline_max;
    }
    bp->hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    bp->hdr.loadflags |= LOADED_HIGH;
    ret = boot_write_cmdline(vm, k->cmdline_max, cmdline);
    if (ret)
        return ret;
    bp->hdr.cmd_line_ptr = BOOT_CMDLINE;
    bp->hdr.ramdisk_image = (uint32_t)initrd_addr;
    bp->hdr.ramdisk_size = (uint32_t)initrd_size;
    bp->ext_ramdisk_image = (uint32_t)(initrd_addr >> 32);
    bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
    bp->acpi_rsdp_addr = rsdp;
    write_rng_seed(vm, bp);
    e820_build(vm, bp);
    return 0;
}
