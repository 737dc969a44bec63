/* The PVH boot ABI (Xen's hvm_start_info, as Firecracker, Cloud Hypervisor
 * and QEMU use it for ELF kernels with a XEN_ELFNOTE_PHYS32_ENTRY note):
 * a small struct with the command line, the initrd as module 0 and the
 * memory map, handed over in EBX. */
#include "vmm/boot.h"

#include <errno.h>
#include <string.h>

#define PVH_MAGIC 0x336ec578
#define PVH_INFO  BOOT_ZERO_PAGE  /* the zero page is unused on this path */

struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries, reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

int boot_write_pvh_info(struct vm *vm, const char *cmdline,
                        uint64_t initrd_addr, uint64_t initrd_size,
                        uint64_t rsdp, uint64_t *start_info)
{
    struct boot_mem_region map[BOOT_MAX_REGIONS];
    int n = boot_memory_map(vm, map), ret;
    size_t sz = sizeof(struct hvm_start_info) +
                sizeof(struct hvm_modlist_entry) +
                BOOT_MAX_REGIONS * sizeof(struct hvm_memmap_table_entry);
    uint8_t *base = vm_gpa(vm, PVH_INFO, sz);
    struct hvm_start_info *si = (struct hvm_start_info *)base;
    struct hvm_modlist_entry *mod = (struct hvm_modlist_entry *)(si + 1);
    struct hvm_memmap_table_entry *mm =
        (struct hvm_memmap_table_entry *)(mod + 1);

    if (!base)
        return -ENOMEM;
    ret = boot_write_cmdline(vm, 0, cmdline);
    if (ret)
        return ret;
    memset(base, 0, sz);
    si->magic = PVH_MAGIC;
    si->version = 1;
    si->cmdline_paddr = BOOT_CMDLINE;
    si->rsdp_paddr = rsdp;
    if (initrd_size) {
        si->nr_modules = 1;
        si->modlist_paddr = PVH_INFO + sizeof(*si);
        mod->paddr = initrd_addr;
        mod->size = initrd_size;
    }
    for (int i = 0; i < n; i++)
        mm[i] = (struct hvm_memmap_table_entry){ map[i].addr, map[i].size,
                                                 map[i].type, 0 };
    si->memmap_paddr = PVH_INFO + sizeof(*si) + sizeof(*mod);
    si->memmap_entries = (uint32_t)n;
    *start_info = PVH_INFO;
    return 0;
}
