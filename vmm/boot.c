/* Direct Linux boot, in the order the pieces depend on each other. */
#include "vmm/boot.h"

int boot_linux(struct vm *vm, const struct boot_config *cfg)
{
    struct boot_kernel k;
    uint64_t initrd_addr = 0, initrd_size = 0;
    const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
    uint64_t rsdp;
    int ret = boot_load_kernel(vm, cfg->kernel, &k);

    if (ret)
        return ret;
    if (cfg->initrd) {
        ret = boot_load_initrd(vm, cfg->initrd, &k, &initrd_addr,
                               &initrd_size);
        if (ret)
            return ret;
    }
    ret = boot_write_mptable(vm);
    if (!ret)
        ret = boot_write_acpi(vm, &rsdp);
    if (ret)
        return ret;
    /* An ELF with a PVH note boots through it, as with Firecracker and
     * Cloud Hypervisor; everything else through the 64-bit entry. */
    if (k.pvh_entry) {
        uint64_t start_info;

        ret = boot_write_pvh_info(vm, cmdline, initrd_addr, initrd_size,
                                  rsdp, &start_info);
        return ret ? ret : boot_setup_pvh(vm, k.pvh_entry, start_info);
    }
    ret = boot_write_zero_page(vm, &k, cmdline, initrd_addr, initrd_size,
                               rsdp);
    return ret ? ret : boot_setup_longmode(vm, k.entry, BOOT_ZERO_PAGE);
}
