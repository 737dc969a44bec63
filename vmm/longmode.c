/* The machine state the 64-bit boot protocol promises at startup_64:
 * long mode with paging on and an identity map covering the kernel, the
 * zero page and the command line (here all of the low 4 GiB, in 2 MiB
 * pages), a flat GDT with __BOOT_CS = 0x10 and __BOOT_DS = 0x18,
 * interrupts off, RSI pointing at the zero page. */
#include "vmm/boot.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#define PTE_P   0x001
#define PTE_RW  0x002
#define PTE_PS  0x080

#define CR0_PE 0x00000001
#define CR0_MP 0x00000002
#define CR0_ET 0x00000010
#define CR0_NE 0x00000020
#define CR0_PG 0x80000000
#define CR4_PAE 0x00000020
#define EFER_LME 0x100
#define EFER_LMA 0x400

#define SEL_CODE 0x10
#define SEL_DATA 0x18
#define SEL_TSS  0x20

static void write_page_tables(struct vm *vm)
{
    uint64_t *pml4 = vm_gpa(vm, BOOT_PML4, 4096);
    uint64_t *pdpt = vm_gpa(vm, BOOT_PDPT, 4096);
    uint64_t *pd = vm_gpa(vm, BOOT_PD, 4 * 4096);

    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = BOOT_PDPT | PTE_P | PTE_RW;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (BOOT_PD + i * 4096) | PTE_P | PTE_RW;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;
}

static uint64_t gdt_entry(uint32_t flags, uint32_t base, uint32_t limit)
{
    return ((uint64_t)(base & 0xff000000) << 32) |
           ((uint64_t)(flags & 0xf0ff) << 40) |
           ((uint64_t)(limit & 0x000f0000) << 32) |
           ((uint64_t)(base & 0x00ffffff) << 16) | (limit & 0xffff);
}

static struct kvm_segment segment_from(uint64_t desc, uint16_t sel)
{
    struct kvm_segment s = {
        .base = (desc >> 16 & 0xffffff) | (desc >> 32 & 0xff000000),
        .limit = (uint32_t)((desc & 0xffff) | (desc >> 32 & 0xf0000)),
        .selector = sel,
        .type = desc >> 40 & 0xf,
        .present = desc >> 47 & 1,
        .dpl = desc >> 45 & 3,
        .db = desc >> 54 & 1,
        .s = desc >> 44 & 1,
        .l = desc >> 53 & 1,
        .g = desc >> 55 & 1,
    };

    if (s.g)
        s.limit = (s.limit << 12) | 0xfff;
    return s;
}

static int setup_sregs(struct vcpu *v, const uint64_t *gdt)
{
    struct kvm_sregs sregs;
    struct kvm_segment data = segment_from(gdt[SEL_DATA / 8], SEL_DATA);

    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = 6 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0; /* any early fault is a triple fault we report */
    sregs.cs = segment_from(gdt[SEL_CODE / 8], SEL_CODE);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = segment_from(gdt[SEL_TSS / 8], SEL_TSS);
    memset(&sregs.ldt, 0, sizeof(sregs.ldt));
    sregs.ldt.type = 2;
    sregs.ldt.present = 1;
    sregs.ldt.unusable = 1;
    sregs.cr3 = BOOT_PML4;
    sregs.cr4 = CR4_PAE;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;
    return 0;
}

/* PVH: flat 32-bit protected mode, no paging, EBX = start_info. */
int boot_setup_pvh(struct vm *vm, uint32_t entry, uint64_t start_info)
{
    uint64_t *gdt = vm_gpa(vm, BOOT_GDT, 6 * 8);
    struct vcpu *bsp = &vm->vcpus[0];
    struct kvm_sregs sregs;
    struct kvm_regs regs;

    memset(gdt, 0, 6 * 8);
    gdt[SEL_CODE / 8] = gdt_entry(0xc09b, 0, 0xfffff); /* 32-bit code */
    gdt[SEL_DATA / 8] = gdt_entry(0xc093, 0, 0xfffff); /* flat data */
    gdt[SEL_TSS / 8] = gdt_entry(0x008b, 0, 0x67);     /* busy TSS */
    if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = 6 * 8 - 1;
    sregs.cs = segment_from(gdt[SEL_CODE / 8], SEL_CODE);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss =
        segment_from(gdt[SEL_DATA / 8], SEL_DATA);
    sregs.tr = segment_from(gdt[SEL_TSS / 8], SEL_TSS);
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr4 = 0;
    sregs.efer = 0;
    if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) < 0) {
        vmm_error("KVM_SET_SREGS: %s", strerror(errno));
        return -errno;
    }
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = entry;
    regs.rbx = start_info;
    if (ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0) {
        vmm_error("KVM_SET_REGS: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

int boot_setup_longmode(struct vm *vm, uint64_t entry, uint64_t zero_page)
{
    uint64_t *gdt = vm_gpa(vm, BOOT_GDT, 6 * 8);
    struct vcpu *bsp = &vm->vcpus[0];
    struct kvm_regs regs;
    int ret;

    write_page_tables(vm);
    memset(gdt, 0, 6 * 8);
    gdt[SEL_CODE / 8] = gdt_entry(0xa09b, 0, 0xfffff); /* 64-bit code */
    gdt[SEL_DATA / 8] = gdt_entry(0xc093, 0, 0xfffff); /* flat data */
    gdt[SEL_TSS / 8] = gdt_entry(0x008b, 0, 0x67);     /* busy TSS */
    ret = setup_sregs(bsp, gdt);
    if (ret) {
        vmm_error("KVM_SET_SREGS: %s", strerror(-ret));
        return ret;
    }
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = entry;
    regs.rsi = zero_page;
    regs.rsp = BOOT_STACK;
    if (ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0) {
        vmm_error("KVM_SET_REGS: %s", strerror(errno));
        return -errno;
    }
    return 0;
}
