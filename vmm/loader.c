/* Kernel and initrd loading.  Every field that comes from the file is
 * checked against the file size and guest RAM before it is used: a bad
 * kernel gets one message naming the file and the problem. */
#include "vmm/boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/byteorder.h"

#define HDR_SETUP_SECTS   0x1f1
#define HDR_SYSSIZE       0x1f4
#define HDR_BOOT_FLAG     0x1fe
#define HDR_JUMP          0x200
#define HDR_MAGIC         0x202
#define HDR_VERSION       0x206
#define HDR_INITRD_MAX    0x22c
#define HDR_RELOCATABLE   0x234
#define HDR_XLOADFLAGS    0x236
#define HDR_CMDLINE_SIZE  0x238
#define HDR_PREF_ADDRESS  0x258
#define HDR_INIT_SIZE     0x260
#define HDR_END           0x268
#define XLF_KERNEL_64     0x01
#define BOOT_PROTO_MIN    0x020c  /* 2.12: the first with XLF_KERNEL_64 */

static int read_whole_file(const char *path, const char *what, uint8_t **buf,
                           size_t *size)
{
    struct stat st;
    ssize_t n;
    size_t done = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), err;

    if (fd < 0 || fstat(fd, &st) < 0) {
        err = errno;
        vmm_error("cannot open %s '%s': %s", what, path, strerror(err));
        if (fd >= 0)
            close(fd);
        return -err;
    }
    if (!S_ISREG(st.st_mode)) {
        vmm_error("%s '%s' is not a regular file", what, path);
        close(fd);
        return -EINVAL;
    }
    *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!*buf) {
        close(fd);
        return -ENOMEM;
    }
    while (done < (size_t)st.st_size &&
           (n = read(fd, *buf + done, (size_t)st.st_size - done)) > 0)
        done += (size_t)n;
    close(fd);
    *size = done;
    return 0;
}

static int load_check_fits(struct vm *vm, const char *path, uint64_t start,
                           uint64_t len, const char *what)
{
    if (vm_gpa(vm, start, len))
        return 0;
    vmm_error("%s: kernel does not fit in guest RAM: %s needs 0x%llx-0x%llx "
              "(%llu MiB), guest has %llu MiB below 4 GiB", path, what,
              (unsigned long long)start, (unsigned long long)(start + len),
              (unsigned long long)((start + len + (1 << 20) - 1) >> 20),
              (unsigned long long)(vm->low_size >> 20));
    return -EFBIG;
}

static int load_bzimage_check(const char *path, const uint8_t *f, size_t size,
                              size_t *setup_size)
{
    uint16_t version = get_le16(f + HDR_VERSION);
    uint64_t need;

    if (version < BOOT_PROTO_MIN) {
        vmm_error("%s: boot protocol %u.%02u is too old (need 2.12 or later "
                  "for the 64-bit entry)", path, version >> 8, version & 0xff);
        return -ENOEXEC;
    }
    if (!(get_le16(f + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
        vmm_error("%s: bzImage has no 64-bit entry point (XLF_KERNEL_64 "
                  "not set)", path);
        return -ENOEXEC;
    }
    *setup_size = ((f[HDR_SETUP_SECTS] ? f[HDR_SETUP_SECTS] : 4) + 1) * 512u;
    need = *setup_size + (uint64_t)get_le32(f + HDR_SYSSIZE) * 16;
    if (size < need || size <= *setup_size) {
        vmm_error("%s: truncated bzImage: header says %llu bytes, file has "
                  "%zu", path, (unsigned long long)need, size);
        return -ENOEXEC;
    }
    return 0;
}

static int load_bzimage(struct vm *vm, const char *path, const uint8_t *f,
                        size_t size, struct boot_kernel *k)
{
    size_t setup_size, hdr_len;
    uint64_t run_at, init_size;
    int ret = load_bzimage_check(path, f, size, &setup_size);

    if (ret)
        return ret;
    /* The decompressor runs at max(load address, pref_address) and needs
     * init_size bytes from there. */
    run_at = get_le64(f + HDR_PREF_ADDRESS);
    if (run_at < BOOT_KERNEL)
        run_at = BOOT_KERNEL;
    init_size = get_le32(f + HDR_INIT_SIZE);
    if (init_size < size - setup_size)
        init_size = size - setup_size;
    ret = load_check_fits(vm, path, BOOT_KERNEL, size - setup_size, "image");
    if (!ret)
        ret = load_check_fits(vm, path, run_at, init_size, "decompression");
    if (ret)
        return ret;
    memcpy(vm_gpa(vm, BOOT_KERNEL, size - setup_size), f + setup_size,
           size - setup_size);
    k->bzimage = true;
    k->entry = BOOT_KERNEL + 0x200; /* startup_64 */
    k->end = run_at + init_size;
    if (k->end < BOOT_KERNEL + (size - setup_size))
        k->end = BOOT_KERNEL + (size - setup_size);
    hdr_len = (size_t)HDR_JUMP + 2 + f[HDR_JUMP + 1] - HDR_SETUP_SECTS;
    if (hdr_len > sizeof(k->setup_header))
        hdr_len = sizeof(k->setup_header);
    memcpy(k->setup_header, f + HDR_SETUP_SECTS, hdr_len);
    k->setup_header_len = (unsigned)hdr_len;
    k->cmdline_max = get_le32(f + HDR_CMDLINE_SIZE);
    k->initrd_max = get_le32(f + HDR_INITRD_MAX);
    return 0;
}

static int load_elf_segment(struct vm *vm, const char *path, const uint8_t *f,
                            size_t size, const Elf64_Phdr *ph)
{
    uint8_t *dst;

    if (ph->p_filesz > ph->p_memsz || ph->p_offset > size ||
        ph->p_filesz > size - ph->p_offset) {
        vmm_error("%s: truncated ELF: segment at file offset 0x%llx needs "
                  "0x%llx bytes, file has %zu", path,
                  (unsigned long long)ph->p_offset,
                  (unsigned long long)ph->p_filesz, size);
        return -ENOEXEC;
    }
    if (load_check_fits(vm, path, ph->p_paddr, ph->p_memsz, "a segment"))
        return -EFBIG;
    dst = vm_gpa(vm, ph->p_paddr, ph->p_memsz);
    memcpy(dst, f + ph->p_offset, ph->p_filesz);
    memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
    return 0;
}

/* vmlinux's e_entry is already physical (ENTRY(phys_startup_64)); an ELF
 * whose entry is virtual gets it translated through its segment. */
static uint64_t elf_entry_phys(const Elf64_Ehdr *eh, const Elf64_Phdr *ph)
{
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && eh->e_entry >= ph[i].p_vaddr &&
            eh->e_entry - ph[i].p_vaddr < ph[i].p_memsz)
            return eh->e_entry - ph[i].p_vaddr + ph[i].p_paddr;
    return eh->e_entry;
}

/* XEN_ELFNOTE_PHYS32_ENTRY in a PT_NOTE segment: the PVH entry. */
static uint32_t elf_pvh_entry(const uint8_t *f, size_t size,
                              const Elf64_Ehdr *eh, const Elf64_Phdr *ph)
{
    for (int i = 0; i < eh->e_phnum; i++) {
        uint64_t off = ph[i].p_offset, end = off + ph[i].p_filesz;

        if (ph[i].p_type != PT_NOTE || end > size || end < off)
            continue;
        while (off + 12 <= end) {
            uint32_t namesz = get_le32(f + off), descsz = get_le32(f + off + 4);
            uint32_t type = get_le32(f + off + 8);
            uint64_t name = off + 12;
            uint64_t desc = name + ((namesz + 3ULL) & ~3ULL);

            if (desc + descsz > end)
                break;
            if (type == 18 && namesz == 4 && !memcmp(f + name, "Xen", 4) &&
                descsz >= 4)
                return get_le32(f + desc);
            off = desc + ((descsz + 3ULL) & ~3ULL);
        }
    }
    return 0;
}

static int load_elf(struct vm *vm, const char *path, const uint8_t *f,
                    size_t size, struct boot_kernel *k)
{
    Elf64_Ehdr eh;
    const Elf64_Phdr *ph;
    int loaded = 0, ret;

    if (size < sizeof(eh))
        goto truncated;
    memcpy(&eh, f, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 ||
        eh.e_type != ET_EXEC || eh.e_phentsize != sizeof(Elf64_Phdr)) {
        vmm_error("%s: ELF file is not an x86-64 executable kernel", path);
        return -ENOEXEC;
    }
    if (eh.e_phoff > size ||
        (uint64_t)eh.e_phnum * sizeof(*ph) > size - eh.e_phoff)
        goto truncated;
    if (eh.e_phoff % 8) {
        vmm_error("%s: misaligned ELF program headers", path);
        return -ENOEXEC;
    }
    ph = (const Elf64_Phdr *)(f + eh.e_phoff);
    for (int i = 0; i < eh.e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || !ph[i].p_memsz)
            continue;
        ret = load_elf_segment(vm, path, f, size, &ph[i]);
        if (ret)
            return ret;
        if (ph[i].p_paddr + ph[i].p_memsz > k->end)
            k->end = ph[i].p_paddr + ph[i].p_memsz;
        loaded++;
    }
    if (!loaded) {
        vmm_error("%s: ELF kernel has no loadable segment", path);
        return -ENOEXEC;
    }
    k->entry = elf_entry_phys(&eh, ph);
    k->pvh_entry = elf_pvh_entry(f, size, &eh, ph);
    k->cmdline_max = BOOT_CMDLINE_MAX - 1;
    k->initrd_max = 0x7fffffff;
    return 0;
truncated:
    vmm_error("%s: truncated ELF file (%zu bytes)", path, size);
    return -ENOEXEC;
}

int boot_load_kernel(struct vm *vm, const char *path, struct boot_kernel *k)
{
    uint8_t *f;
    size_t size;
    int ret = read_whole_file(path, "kernel", &f, &size);

    if (ret)
        return ret;
    memset(k, 0, sizeof(*k));
    if (size >= SELFMAG && !memcmp(f, ELFMAG, SELFMAG)) {
        ret = load_elf(vm, path, f, size, k);
    } else if (size >= HDR_END && get_le16(f + HDR_BOOT_FLAG) == 0xaa55 &&
               !memcmp(f + HDR_MAGIC, "HdrS", 4)) {
        ret = load_bzimage(vm, path, f, size, k);
    } else if (size >= HDR_MAGIC + 4 && get_le16(f + HDR_BOOT_FLAG) == 0xaa55 &&
               !memcmp(f + HDR_MAGIC, "HdrS", 4)) {
        vmm_error("%s: truncated bzImage: %zu bytes, shorter than its setup "
                  "header", path, size);
        ret = -ENOEXEC;
    } else {
        vmm_error("%s: not a kernel (neither a bzImage with a Linux boot "
                  "header nor an ELF executable)", path);
        ret = -ENOEXEC;
    }
    free(f);
    return ret;
}

/* The initrd goes as high as the kernel allows, like every boot loader
 * does, so it stays clear of the kernel's decompression and early use. */
int boot_load_initrd(struct vm *vm, const char *path,
                     const struct boot_kernel *k, uint64_t *addr,
                     uint64_t *size)
{
    uint8_t *f;
    size_t len;
    uint64_t top = vm->low_size, at;
    int ret = read_whole_file(path, "initrd", &f, &len);

    if (ret)
        return ret;
    if (k->initrd_max && top > k->initrd_max + 1)
        top = k->initrd_max + 1;
    at = (top - len) & ~0xfffULL;
    if (len > top || at < k->end) {
        vmm_error("%s: initrd (%zu bytes) does not fit in guest RAM "
                  "(%llu MiB) above the kernel (which ends at 0x%llx)", path,
                  len, (unsigned long long)(vm->ram_size >> 20),
                  (unsigned long long)k->end);
        free(f);
        return -EFBIG;
    }
    memcpy(vm_gpa(vm, at, len), f, len);
    free(f);
    *addr = at;
    *size = len;
    return 0;
}
