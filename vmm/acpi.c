/* ACPI tables: RSDP, RSDT/XSDT, FADT, an empty DSDT and the MADT, in the
 * BIOS area above the MP table.  The FADT declares hardware-reduced ACPI
 * (no PM timer, no SCI, no fixed registers: there are no ACPI ports to
 * back them), so a guest takes CPUs and interrupt controllers from the
 * MADT and nothing else from ACPI.  Interrupt routing is identity (ISA IRQ
 * n on I/O APIC pin n, KVM's default), so no source overrides. */
#include "vmm/boot.h"
#include "vmm/pci.h"
#include "vmm/vm.h"

#include <errno.h>
#include <string.h>

#define ACPI_BASE   (BOOT_BIOS + 0x8000)
#define ACPI_SIZE   0x8000
#define APIC_ADDR   0xfee00000
#define IOAPIC_ADDR 0xfec00000
#define FADT_HW_REDUCED (1u << 20)
#define IAPC_LEGACY_DEVICES 0x1
#define IAPC_8042           0x2

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem_id[6], oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
    char signature[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt;
    uint32_t length;
    uint64_t xsdt;
    uint8_t ext_checksum, reserved[3];
} __attribute__((packed));

static uint8_t acpi_sum(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t sum = 0;

    while (len--)
        sum += *b++;
    return (uint8_t)-sum;
}

/* Bump allocator over the table area; returns the guest address. */
struct acpi_area {
    uint8_t *host;
    uint64_t used;
};

static void *acpi_alloc(struct acpi_area *a, size_t len, uint64_t *gpa)
{
    void *p = a->host + a->used;

    *gpa = ACPI_BASE + a->used;
    a->used += (len + 15) & ~(size_t)15;
    return p;
}

static void acpi_header(void *table, const char *sig, uint32_t len,
                        uint8_t rev)
{
    struct acpi_header *h = table;

    memcpy(h->signature, sig, 4);
    h->length = len;
    h->revision = rev;
    memcpy(h->oem_id, "CALF  ", 6);
    memcpy(h->oem_table_id, "CALFVM  ", 8);
    h->oem_revision = 1;
    memcpy(h->creator_id, "CALF", 4);
    h->creator_revision = 1;
    h->checksum = acpi_sum(table, len);
}

static uint64_t acpi_madt(struct vm *vm, struct acpi_area *a)
{
    size_t len = 44 + 8 * (size_t)vm->ncpus + 12 + 6;
    uint64_t gpa;
    uint8_t *t = acpi_alloc(a, len, &gpa), *p = t + 44;
    uint32_t lapic = APIC_ADDR, ioapic = IOAPIC_ADDR, pcat = 1;

    memcpy(t + 36, &lapic, 4);
    memcpy(t + 40, &pcat, 4); /* PCAT_COMPAT: 8259s present */
    for (int i = 0; i < vm->ncpus; i++, p += 8) {
        p[0] = 0; p[1] = 8; p[2] = (uint8_t)i; p[3] = (uint8_t)i;
        p[4] = 1; /* enabled */
    }
    p[0] = 1; p[1] = 12; p[2] = (uint8_t)vm->ncpus; /* I/O APIC id */
    memcpy(p + 4, &ioapic, 4);                    /* GSI base 0 */
    p += 12;
    p[0] = 4; p[1] = 6; p[2] = 0xff; p[5] = 1;    /* NMI on LINT1, all */
    acpi_header(t, "APIC", (uint32_t)len, 4);
    return gpa;
}

static uint64_t acpi_fadt(struct acpi_area *a, uint64_t dsdt)
{
    const size_t len = 276;
    uint64_t gpa;
    uint8_t *t = acpi_alloc(a, len, &gpa);
    uint32_t flags = FADT_HW_REDUCED, dsdt32 = (uint32_t)dsdt;
    uint16_t iapc = IAPC_LEGACY_DEVICES | IAPC_8042;

    memcpy(t + 40, &dsdt32, 4);
    memcpy(t + 109, &iapc, 2);
    memcpy(t + 112, &flags, 4);
    t[131] = 1;                 /* FADT minor version: 6.1 */
    memcpy(t + 140, &dsdt, 8);  /* X_DSDT */
    acpi_header(t, "FACP", (uint32_t)len, 6);
    return gpa;
}

/* The DSDT holds the PCI host bridge (vmm/pci.c), nothing else. */
static void acpi_dsdt(struct vm *vm, struct acpi_area *a, uint64_t *gpa)
{
    static uint8_t aml[4096];
    size_t n = pci_acpi_aml(vm->pci, aml, sizeof(aml));
    uint8_t *t = acpi_alloc(a, 36 + n, gpa);

    memcpy(t + 36, aml, n);
    acpi_header(t, "DSDT", (uint32_t)(36 + n), 2);
}

int boot_write_acpi(struct vm *vm, uint64_t *rsdp_addr)
{
    struct acpi_area a = { vm_gpa(vm, ACPI_BASE, ACPI_SIZE), 0 };
    uint64_t rsdp_gpa, dsdt, fadt, madt, xsdt_gpa, rsdt_gpa;
    struct acpi_rsdp *rsdp;
    uint8_t *xsdt, *rsdt;

    if (!a.host)
        return -ENOMEM;
    memset(a.host, 0, ACPI_SIZE);
    rsdp = acpi_alloc(&a, sizeof(*rsdp), &rsdp_gpa);
    acpi_dsdt(vm, &a, &dsdt);
    fadt = acpi_fadt(&a, dsdt);
    madt = acpi_madt(vm, &a);
    xsdt = acpi_alloc(&a, 36 + 16, &xsdt_gpa);
    memcpy(xsdt + 36, &fadt, 8);
    memcpy(xsdt + 44, &madt, 8);
    acpi_header(xsdt, "XSDT", 36 + 16, 1);
    rsdt = acpi_alloc(&a, 36 + 8, &rsdt_gpa);
    memcpy(rsdt + 36, &(uint32_t){ (uint32_t)fadt }, 4);
    memcpy(rsdt + 40, &(uint32_t){ (uint32_t)madt }, 4);
    acpi_header(rsdt, "RSDT", 36 + 8, 1);

    memcpy(rsdp->signature, "RSD PTR ", 8);
    memcpy(rsdp->oem_id, "CALF  ", 6);
    rsdp->revision = 2;
    rsdp->rsdt = (uint32_t)rsdt_gpa;
    rsdp->length = sizeof(*rsdp);
    rsdp->xsdt = xsdt_gpa;
    rsdp->checksum = acpi_sum(rsdp, 20);
    rsdp->ext_checksum = acpi_sum(rsdp, sizeof(*rsdp));
    *rsdp_addr = rsdp_gpa;
    return 0;
}
