/* Intel MultiProcessor Specification 1.4 tables in the BIOS area: how a
 * guest without ACPI (and the test guest) learns how many CPUs there are
 * and where the I/O APIC is.  ISA IRQ n goes to I/O APIC pin n, as KVM's
 * default GSI routing has it.  PCI bus 0 gets one entry per slot and pin:
 * INTx of slot s, pin p reaches pin 16 + ((s + p) & 3), level-triggered,
 * as devices/pci.c drives it and the ACPI _PRT says, so a guest booted with
 * acpi=off finds its PCI interrupts too. */
#include "vmm/boot.h"

#include "devices/pci.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#define APIC_DEFAULT_ADDR   0xfee00000
#define IOAPIC_DEFAULT_ADDR 0xfec00000
#define APIC_VERSION   0x14
#define IOAPIC_VERSION 0x11
#define ISA_IRQS 16
#define MP_BUS_PCI 0
#define MP_BUS_ISA 1
/* active high (KVM's I/O APIC has the line high while asserted), level */
#define MP_IRQ_PCI_FLAGS 0x0d

struct mpf_intel {
    char signature[4];
    uint32_t physptr;
    uint8_t length, specification, checksum, feature1;
    uint8_t feature2, feature3, feature4, feature5;
} __attribute__((packed));

struct mpc_table {
    char signature[4];
    uint16_t length;
    uint8_t spec, checksum;
    char oem[8], productid[12];
    uint32_t oemptr;
    uint16_t oemsize, oemcount;
    uint32_t lapic;
    uint16_t extended_length;
    uint8_t extended_checksum, reserved;
} __attribute__((packed));

struct mpc_cpu {
    uint8_t type, apicid, apicver, cpuflag;
    uint32_t cpufeature, featureflag, reserved[2];
} __attribute__((packed));

struct mpc_bus {
    uint8_t type, busid;
    char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
    uint8_t type, apicid, apicver, flags;
    uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
    uint8_t type, irqtype;
    uint16_t irqflag;
    uint8_t srcbus, srcbusirq, dstapic, dstirq;
} __attribute__((packed));

enum { MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC };
enum { MP_IRQ_INT, MP_IRQ_NMI, MP_IRQ_SMI, MP_IRQ_EXTINT };

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;

    while (len--)
        sum += *p++;
    return (uint8_t)-sum;
}

static void cpu_signature(struct vm *vm, uint32_t *sig, uint32_t *features)
{
    *sig = 0x600;
    *features = 0x201; /* FPU, APIC */
    for (uint32_t i = 0; i < vm->cpuid->nent; i++) {
        if (vm->cpuid->entries[i].function == 1) {
            *sig = vm->cpuid->entries[i].eax;
            *features = vm->cpuid->entries[i].edx;
        }
    }
}

static uint8_t *mp_add_intsrc(uint8_t *p, uint8_t type, uint8_t irqtype,
                              uint8_t srcbus, uint8_t srcirq, uint8_t dstapic,
                              uint8_t dstirq)
{
    struct mpc_intsrc e = {
        .type = type, .irqtype = irqtype, .srcbus = srcbus,
        .srcbusirq = srcirq, .dstapic = dstapic, .dstirq = dstirq,
    };

    memcpy(p, &e, sizeof(e));
    return p + sizeof(e);
}

/* PCI source IRQ: slot in bits 2-6, pin (0 = INTA) in bits 0-1. */
static uint8_t *mp_add_pci_intsrc(uint8_t *p, uint8_t ioapic_id)
{
    for (unsigned s = 1; s < PCI_SLOTS; s++) {
        for (unsigned pin = 0; pin < PCI_INTX_LINES; pin++) {
            struct mpc_intsrc e = {
                .type = MP_INTSRC, .irqtype = MP_IRQ_INT,
                .irqflag = MP_IRQ_PCI_FLAGS, .srcbus = MP_BUS_PCI,
                .srcbusirq = (uint8_t)(s << 2 | pin), .dstapic = ioapic_id,
                .dstirq = (uint8_t)(PCI_INTX_GSI_BASE +
                                    (s + pin) % PCI_INTX_LINES),
            };

            memcpy(p, &e, sizeof(e));
            p += sizeof(e);
        }
    }
    return p;
}

static uint8_t *mp_add_cpus(struct vm *vm, uint8_t *p)
{
    uint32_t sig, features;

    cpu_signature(vm, &sig, &features);
    for (int i = 0; i < vm->ncpus; i++) {
        struct mpc_cpu c = {
            .type = MP_PROCESSOR, .apicid = (uint8_t)i,
            .apicver = APIC_VERSION,
            .cpuflag = 1 | (i == 0 ? 2 : 0), /* enabled, BSP */
            .cpufeature = sig, .featureflag = features,
        };
        memcpy(p, &c, sizeof(c));
        p += sizeof(c);
    }
    return p;
}

int boot_write_mptable(struct vm *vm)
{
    uint8_t *base = vm_gpa(vm, BOOT_BIOS, 0x10000), *p;
    struct mpf_intel *mpf = (struct mpf_intel *)base;
    struct mpc_table *mpc = (struct mpc_table *)(base + sizeof(*mpf));
    struct mpc_bus pci = { .type = MP_BUS, .busid = MP_BUS_PCI,
                           .bustype = "PCI   " };
    struct mpc_bus isa = { .type = MP_BUS, .busid = MP_BUS_ISA,
                           .bustype = "ISA   " };
    uint8_t ioapic_id = (uint8_t)vm->ncpus;
    struct mpc_ioapic io = {
        .type = MP_IOAPIC, .apicid = ioapic_id, .apicver = IOAPIC_VERSION,
        .flags = 1, .apicaddr = IOAPIC_DEFAULT_ADDR,
    };

    if (!base)
        return -ENOMEM;
    memset(base, 0, 0x8000); /* ACPI tables take the upper half */
    p = mp_add_cpus(vm, (uint8_t *)(mpc + 1));
    memcpy(p, &pci, sizeof(pci));
    p += sizeof(pci);
    memcpy(p, &isa, sizeof(isa));
    p += sizeof(isa);
    memcpy(p, &io, sizeof(io));
    p += sizeof(io);
    for (uint8_t irq = 0; irq < ISA_IRQS; irq++)
        p = mp_add_intsrc(p, MP_INTSRC, MP_IRQ_INT, MP_BUS_ISA, irq,
                          ioapic_id, irq);
    p = mp_add_pci_intsrc(p, ioapic_id);
    p = mp_add_intsrc(p, MP_LINTSRC, MP_IRQ_EXTINT, MP_BUS_ISA, 0, 0xff, 0);
    p = mp_add_intsrc(p, MP_LINTSRC, MP_IRQ_NMI, MP_BUS_ISA, 0, 0xff, 1);

    memcpy(mpc->signature, "PCMP", 4);
    mpc->length = (uint16_t)(p - (uint8_t *)mpc);
    mpc->spec = 4;
    memcpy(mpc->oem, "CALF    ", 8);
    memcpy(mpc->productid, "CALF VM     ", 12);
    mpc->oemcount = (uint16_t)(vm->ncpus + 2 + 1 + ISA_IRQS +
                               (PCI_SLOTS - 1) * PCI_INTX_LINES + 2);
    mpc->lapic = APIC_DEFAULT_ADDR;
    mpc->checksum = mp_checksum((uint8_t *)mpc, mpc->length);

    memcpy(mpf->signature, "_MP_", 4);
    mpf->physptr = BOOT_BIOS + sizeof(*mpf);
    mpf->length = 1;
    mpf->specification = 4;
    mpf->checksum = mp_checksum((uint8_t *)mpf, sizeof(*mpf));
    return 0;
}
