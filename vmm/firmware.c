/* Firmware boot (SeaBIOS).  The ROM is mapped read-only at the top of the
 * 32-bit space, where the reset vector (0xFFFFFFF0) lands, and its last
 * 128 KiB are copied into guest RAM at 0xE0000-0xFFFFF, where a PC's
 * chipset aliases them at reset: SeaBIOS runs its 16-bit code there and
 * later copies its 32-bit code from the high mapping into that RAM (see
 * devices/i440fx.c for why PAM needs no remapping).  The vCPUs are left
 * in the architectural reset state KVM creates them in; APs wait for the
 * firmware's INIT/SIPI.
 *
 * Everything else the firmware learns through fw_cfg: the e820 map, the
 * CPU count, the boot order, the serial console port (SeaBIOS's sercon
 * puts its screen and the boot loader's int 10h text on COM1 when there
 * is no display), and how long to wait after a failed boot (not at all:
 * the firmware resets: a restart, or the end of the run under
 * --no-reboot). */
#include "vmm/firmware.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/byteorder.h"
#include "devices/devices.h"
#include "vmm/machine.h"

#define ROM_ALIGN     0x10000   /* QEMU's rule too: a ROM is whole 64 KiB */
#define ROM_MIN       0x10000
/* KVM's real-mode TSS and identity-map pages sit just below 256 KiB
 * under 4 GiB (KVM_SET_TSS_ADDR in vm.c): a larger ROM would cover them. */
#define ROM_MAX       0x40000
#define ROM_LOW_ALIAS 0x20000   /* what appears below 1 MiB */
#define KVM_PRIVATE_BASE 0xfffbc000ULL /* identity map + TSS, reserved */
#define E820_RAM      1
#define E820_RESERVED 2
#define SERCON_PORT   0x3f8
#define MAX_BOOT_DEVS 40
#define OFW_PATH_MAX  96
#define VGA_BIOS      "/usr/share/seabios/vgabios-stdvga.bin"

struct boot_dev {
    enum firmware_boot_kind kind;
    int disk_index;
    char path[OFW_PATH_MAX];
};

struct firmware {
    void *rom;
    size_t rom_size;
    int rom_slot;
    FILE *log;
    const char *boot;
    int ndevs;
    struct boot_dev devs[MAX_BOOT_DEVS];
};

/* ---- the ROM ---- */

static int rom_read(const char *path, void **mem, size_t *size)
{
    struct stat st;
    void *buf;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), err;

    if (fd < 0) {
        err = errno;
        vmm_error("firmware '%s': %s%s", path, strerror(err),
                  err == ENOENT && !strcmp(path, FIRMWARE_DEFAULT)
                      ? " (install Debian's seabios package, or give "
                        "--firmware FILE or --kernel FILE)" : "");
        return -err;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        vmm_error("firmware '%s': not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if (st.st_size < ROM_MIN || st.st_size > ROM_MAX ||
        st.st_size % ROM_ALIGN) {
        vmm_error("firmware '%s': size %lld is not a BIOS ROM (a multiple "
                  "of 64 KiB, 64 KiB to 256 KiB)", path,
                  (long long)st.st_size);
        close(fd);
        return -EINVAL;
    }
    buf = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        close(fd);
        return -ENOMEM;
    }
    n = pread(fd, buf, (size_t)st.st_size, 0);
    err = n < 0 ? errno : EIO;
    close(fd);
    if (n != st.st_size) {
        vmm_error("firmware '%s': read: %s", path, strerror(err));
        munmap(buf, (size_t)st.st_size);
        return -err;
    }
    *mem = buf;
    *size = (size_t)st.st_size;
    return 0;
}

/* Read-only where the backend can (guest writes then reach the bus and
 * are dropped, as on a real ROM); writable otherwise, which only matters
 * to a guest that writes its own ROM. */
static int rom_map(struct vm *vm, struct firmware *fw)
{
    uint64_t gpa = 0x100000000ULL - fw->rom_size;
    bool ro = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0;
    int slot = bus_map_ram(vm->bus, gpa, fw->rom_size, fw->rom, ro);

    if (slot < 0) {
        vmm_error("cannot map the firmware at 0x%llx: %s",
                  (unsigned long long)gpa, strerror(-slot));
        return slot;
    }
    fw->rom_slot = slot;
    return 0; /* the low copy: firmware_load(), the boot method */
}

/* The BIOS area is RAM here (see the top), so a reset, where a PC's
 * chipset would show the ROM there again, copies it back: SeaBIOS has
 * written its shadow copy over it. */
int firmware_load(struct vm *vm, const void *cfg)
{
    struct firmware *fw = vm->firmware;
    size_t tail = fw->rom_size < ROM_LOW_ALIAS ? fw->rom_size : ROM_LOW_ALIAS;

    (void)cfg;
    memcpy(vm_gpa(vm, 0x100000 - tail, tail),
           (uint8_t *)fw->rom + fw->rom_size - tail, tail);
    return 0;
}

/* ---- fw_cfg contents ---- */

static void e820_put(uint8_t *e, uint64_t addr, uint64_t len, uint32_t type)
{
    put_le64(e, addr);
    put_le64(e + 8, len);
    put_le32(e + 16, type);
}

/* QEMU's etc/e820 entries: le64 address, le64 length, le32 type.  The
 * firmware adds its own reserved areas (EBDA, BIOS) on top. */
static int fw_cfg_add_e820(struct vm *vm)
{
    uint8_t map[3 * 20];
    unsigned n = 0;

    e820_put(map + 20 * n++, 0, vm->low_size, E820_RAM);
    if (vm->ram_size > vm->low_size)
        e820_put(map + 20 * n++, VM_HIGH_RAM_BASE,
                 vm->ram_size - vm->low_size, E820_RAM);
    e820_put(map + 20 * n++, KVM_PRIVATE_BASE, 0x4000, E820_RESERVED);
    return fw_cfg_add_file(vm->fw_cfg, "etc/e820", map, 20 * n);
}

static bool boot_menu_on(const char *spec)
{
    return !spec || !strstr(spec, "menu=off");
}

static int fw_cfg_fill(struct vm *vm)
{
    struct fw_cfg *f = vm->fw_cfg;
    bool menu = boot_menu_on(vm->firmware->boot);
    int ret = fw_cfg_add_u64(f, FW_CFG_RAM_SIZE, vm->ram_size);

    if (!ret)
        ret = fw_cfg_add_u16(f, FW_CFG_NB_CPUS, (uint16_t)vm->ncpus);
    if (!ret)
        ret = fw_cfg_add_u16(f, FW_CFG_MAX_CPUS, (uint16_t)vm->ncpus);
    if (!ret)
        ret = fw_cfg_add_u16(f, FW_CFG_BOOT_MENU, menu);
    if (!ret)
        ret = fw_cfg_add_u32(f, FW_CFG_IRQ0_OVERRIDE, 1);
    if (!ret)
        ret = fw_cfg_add_e820(vm);
    if (!ret)
        ret = fw_cfg_add_file_int(f, "etc/sercon-port", SERCON_PORT, 2);
    if (!ret)
        ret = fw_cfg_add_file_int(f, "etc/show-boot-menu", menu, 2);
    /* SeaBIOS waits this many ms for a key after a failed boot; 0 makes
     * it reset at once (which --no-reboot turns into the end of the run). */
    if (!ret)
        ret = fw_cfg_add_file_int(f, "etc/boot-fail-wait", 0, 4);
    return ret;
}

/* ---- the boot order ---- */

int firmware_add_boot_device(struct vm *vm, enum firmware_boot_kind kind,
                             int disk_index, const char *ofw_path)
{
    struct firmware *fw = vm->firmware;
    struct boot_dev *d;

    if (!fw)
        return 0; /* direct kernel boot: no firmware to tell */
    if (fw->ndevs == MAX_BOOT_DEVS || strlen(ofw_path) >= OFW_PATH_MAX)
        return -ENOSPC;
    /* Kept in --disk order whoever adds them when (IDE drives come in
     * before the virtio disks are found): "c" boots the first --disk. */
    d = &fw->devs[fw->ndevs];
    while (d > fw->devs && d[-1].disk_index > disk_index) {
        d[0] = d[-1];
        d--;
    }
    fw->ndevs++;
    d->kind = kind;
    d->disk_index = disk_index;
    snprintf(d->path, sizeof(d->path), "%s", ofw_path);
    return 0;
}

/* One --boot item: the devices it names, in order, each once. */
static size_t boot_item_paths(struct firmware *fw, const char *item,
                              bool *used, char *out, size_t room)
{
    size_t len = 0;
    int disk = -1;

    if (!strncmp(item, "disk", 4))
        disk = atoi(item + 4);
    for (const char *c = item; *c; c++) {
        for (int i = 0; i < fw->ndevs; i++) {
            const struct boot_dev *d = &fw->devs[i];
            bool want = disk >= 0 ? d->disk_index == disk
                      : (*c == 'c' && d->kind == FIRMWARE_BOOT_DISK) ||
                        (*c == 'd' && d->kind == FIRMWARE_BOOT_CDROM);
            int n;

            if (!want || used[i])
                continue;
            n = snprintf(out + len, room - len, "%s\n", d->path);
            if (n < 0 || (size_t)n >= room - len)
                return len;
            used[i] = true;
            len += (size_t)n;
        }
        if (disk >= 0)
            break;
    }
    return len;
}

/* "bootorder": one OpenFirmware path per line, first boots first.
 * Devices the spec does not name still boot after those it does. */
static int bootorder_write(struct vm *vm)
{
    struct firmware *fw = vm->firmware;
    char buf[MAX_BOOT_DEVS * (OFW_PATH_MAX + 1) + 1] = "";
    bool used[MAX_BOOT_DEVS] = { false };
    char spec[256], *save = NULL;
    size_t len = 0;

    snprintf(spec, sizeof(spec), "%s", fw->boot ? fw->boot : "c,d");
    for (char *it = strtok_r(spec, ",", &save); it;
         it = strtok_r(NULL, ",", &save)) {
        if (!strncmp(it, "order=", 6))
            it += 6;
        else if (!strncmp(it, "menu=", 5))
            continue;
        len += boot_item_paths(fw, it, used, buf + len, sizeof(buf) - len);
    }
    /* Lines are separators, as in QEMU's file: no newline after the
     * last one (SeaBIOS would read an empty entry). */
    if (len)
        buf[--len] = '\0';
    return fw_cfg_add_file(vm->fw_cfg, "bootorder", buf, (uint32_t)len);
}

int firmware_check_boot_spec(const char *spec)
{
    char copy[256], *save = NULL;

    if (strlen(spec) >= sizeof(copy))
        goto bad;
    snprintf(copy, sizeof(copy), "%s", spec);
    for (char *it = strtok_r(copy, ",", &save); it;
         it = strtok_r(NULL, ",", &save)) {
        char *end;

        if (!strcmp(it, "menu=on") || !strcmp(it, "menu=off"))
            continue;
        if (!strncmp(it, "disk", 4) && it[4]) {
            long n = strtol(it + 4, &end, 10);

            if (*end || n < 0 || n >= MACHINE_MAX_DISKS)
                goto bad;
            continue;
        }
        if (!strncmp(it, "order=", 6))
            it += 6;
        if (!*it || it[strspn(it, "cdn")])
            goto bad;
    }
    return 0;
bad:
    vmm_error("bad --boot '%s' (c: disks, d: CD-ROMs, n: none, order=cd, "
              "diskN: the N-th --disk from 0, menu=on|off; comma-separated)",
              spec);
    return -EINVAL;
}

/* ---- setup ---- */

int firmware_setup(struct vm *vm, const struct firmware_config *cfg)
{
    struct firmware *fw = calloc(1, sizeof(*fw));
    const char *path = cfg->rom ? cfg->rom : FIRMWARE_DEFAULT;
    int ret;

    if (!fw)
        return -ENOMEM;
    vm->firmware = fw;
    fw->rom_slot = -1;
    fw->boot = cfg->boot;
    if (cfg->boot && (ret = firmware_check_boot_spec(cfg->boot)))
        return ret;
    if (cfg->bios_log && !(fw->log = fopen(cfg->bios_log, "w"))) {
        ret = -errno;
        vmm_error("--bios-log '%s': %s", cfg->bios_log, strerror(-ret));
        return ret;
    }
    if (fw->log)
        setvbuf(fw->log, NULL, _IOLBF, 0); /* whole lines, even if calf dies */
    ret = rom_read(path, &fw->rom, &fw->rom_size);
    if (!ret)
        ret = rom_map(vm, fw);
    return ret;
}

FILE *firmware_log(struct vm *vm)
{
    return vm->firmware ? vm->firmware->log : NULL;
}

/* The VGA BIOS.  SeaBIOS runs a fw_cfg file named "pciVVVV,DDDD.rom" as
 * the option ROM of that PCI function and hands it the function's
 * address, which vgabios-stdvga needs to find its framebuffer BAR
 * ("vgaroms/" files run without one). */
static int add_vga_bios(struct vm *vm)
{
    static uint8_t rom[256 << 10];
    FILE *f = fopen(VGA_BIOS, "rb");
    size_t n = f ? fread(rom, 1, sizeof(rom), f) : 0;
    int ret;

    if (f)
        fclose(f);
    if (!n) {
        vmm_error("cannot read the VGA BIOS %s (Debian package seabios)",
                  VGA_BIOS);
        return -ENOENT;
    }
    ret = fw_cfg_add_file(vm->fw_cfg, "pci1234,1111.rom", rom, (uint32_t)n);
    if (ret)
        vmm_error("VGA BIOS: %s", strerror(-ret));
    return ret;
}

int firmware_finish(struct vm *vm)
{
    int ret = fw_cfg_fill(vm);

    if (!ret && vm->vga && (ret = add_vga_bios(vm)))
        return ret;
    if (!ret)
        ret = bootorder_write(vm);
    if (ret)
        vmm_error("firmware setup: %s", strerror(-ret));
    return ret;
}

void firmware_destroy(struct vm *vm)
{
    struct firmware *fw = vm->firmware;

    if (!fw)
        return;
    if (fw->rom_slot >= 0 && vm->bus)
        bus_unmap_ram(vm->bus, fw->rom_slot);
    if (fw->rom)
        munmap(fw->rom, fw->rom_size);
    if (fw->log)
        fclose(fw->log);
    free(fw);
    vm->firmware = NULL;
}
