/* ACPI tables for direct kernel boot: RSDP, RSDT/XSDT, FADT with FACS,
 * the DSDT (PCI host bridge, _S5) and the MADT, in the BIOS area above
 * the MP table.  The FADT points at the PIIX4 PM block (devices/acpi-pm.c:
 * PM1 event/control, PM timer, SCI on IRQ 9).  It must not declare
 * hardware-reduced ACPI: Linux then assumes there are no legacy IRQs and
 * a legacy IDE controller cannot get IRQ 14.  SMI_CMD is 0: ACPI mode is
 * always on.  Interrupt routing is identity (ISA IRQ n on I/O APIC pin n,
 * KVM's default); the one override makes the SCI level/active high, the
 * way the in-kernel I/O APIC sees a line. */
#include "devices/devices.h"
#include "vmm/acpi-aml.h"
#include "vmm/boot.h"
#include "vmm/vm.h"

#include <errno.h>
#include <string.h>

#define ACPI_BASE   (BOOT_BIOS + 0x8000)
#define ACPI_SIZE   0x8000
#define APIC_ADDR   0xfee00000
#define IOAPIC_ADDR 0xfec00000
#define FADT_WBINVD     (1u << 0)
#define FADT_PROC_C1    (1u << 2)
#define FADT_SLP_BUTTON (1u << 5)
#define FADT_RTC_S4     (1u << 7)
#define FADT_TMR_VAL_EXT (1u << 8)
#define FADT_PWR_BUTTON (1u << 4)
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
    size_t len = 44 + 8 * (size_t)vm->ncpus + 12 + 10 + 6;
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
    /* SCI: ISA IRQ 9 on GSI 9, active high, level-triggered. */
    p[0] = 2; p[1] = 10; p[2] = 0; p[3] = ACPI_PM_SCI_IRQ;
    memcpy(p + 4, &(uint32_t){ ACPI_PM_SCI_IRQ }, 4);
    memcpy(p + 8, &(uint16_t){ 0x000d }, 2);
    p += 10;
    p[0] = 4; p[1] = 6; p[2] = 0xff; p[5] = 1;    /* NMI on LINT1, all */
    acpi_header(t, "APIC", (uint32_t)len, 4);
    return gpa;
}

static uint64_t acpi_facs(struct acpi_area *a)
{
    uint64_t gpa;
    uint8_t *t;

    a->used = (a->used + 63) & ~63ULL; /* the FACS is 64-byte aligned */
    t = acpi_alloc(a, 64, &gpa);
    memcpy(t, "FACS", 4);
    memcpy(t + 4, &(uint32_t){ 64 }, 4);
    t[32] = 2;                  /* version */
    return gpa;
}

/* A generic address structure for a system I/O register. */
static void acpi_gas_io(uint8_t *g, unsigned bits, uint16_t port)
{
    g[0] = 1;                   /* system I/O */
    g[1] = (uint8_t)bits;
    g[2] = 0;
    g[3] = bits == 32 ? 3 : 2;  /* dword / word access */
    memcpy(g + 4, &(uint64_t){ port }, 8);
}

static uint64_t acpi_fadt(struct acpi_area *a, uint64_t dsdt, uint64_t facs)
{
    const size_t len = 276;
    uint64_t gpa;
    uint8_t *t = acpi_alloc(a, len, &gpa);
    /* PWR_BUTTON clear: the fixed-feature power button of PM1
     * (devices/acpi-pm.c), what QMP's system_powerdown presses */
    uint32_t flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON |
                     FADT_RTC_S4;
    uint32_t dsdt32 = (uint32_t)dsdt, facs32 = (uint32_t)facs;
    uint16_t iapc = IAPC_LEGACY_DEVICES | IAPC_8042;
    uint16_t sci = ACPI_PM_SCI_IRQ;

    memcpy(t + 36, &facs32, 4);
    memcpy(t + 40, &dsdt32, 4);
    memcpy(t + 46, &sci, 2);
    /* SMI_CMD (48) = 0: no mode switch, ACPI is always enabled. */
    memcpy(t + 56, &(uint32_t){ ACPI_PM_BASE }, 4);       /* PM1a_EVT_BLK */
    memcpy(t + 64, &(uint32_t){ ACPI_PM_BASE + 4 }, 4);   /* PM1a_CNT_BLK */
    memcpy(t + 76, &(uint32_t){ ACPI_PM_BASE + 8 }, 4);   /* PM_TMR_BLK */
    t[88] = 4;                  /* PM1_EVT_LEN */
    t[89] = 2;                  /* PM1_CNT_LEN */
    t[91] = 4;                  /* PM_TMR_LEN */
    memcpy(t + 96, &(uint16_t){ 0x0fff }, 2);   /* P_LVL2_LAT: no C2 */
    memcpy(t + 98, &(uint16_t){ 0x0fff }, 2);   /* P_LVL3_LAT: no C3 */
    t[108] = 0x32;              /* CENTURY: CMOS register of the century */
    memcpy(t + 109, &iapc, 2);
    memcpy(t + 112, &flags, 4);
    t[131] = 1;                 /* FADT minor version: 6.1 */
    /* X_FIRMWARE_CTRL (132) stays 0: only one FACS pointer may be set. */
    memcpy(t + 140, &dsdt, 8);  /* X_DSDT */
    acpi_gas_io(t + 148, 32, ACPI_PM_BASE);       /* X_PM1a_EVT_BLK */
    acpi_gas_io(t + 172, 16, ACPI_PM_BASE + 4);   /* X_PM1a_CNT_BLK */
    acpi_gas_io(t + 208, 32, ACPI_PM_BASE + 8);   /* X_PM_TMR_BLK */
    acpi_header(t, "FACP", (uint32_t)len, 6);
    return gpa;
}

/* The DSDT holds the PCI host bridge and the S5 sleep type the PM block
 * powers off on (vmm/acpi-aml.c). */
static void acpi_dsdt(struct vm *vm, struct acpi_area *a, uint64_t *gpa)
{
    static uint8_t aml[4096];
    size_t n = acpi_aml_dsdt(aml, sizeof(aml), vm->pci != NULL,
                             ACPI_PM_S5_TYP);
    uint8_t *t;

    t = acpi_alloc(a, 36 + n, gpa);
    memcpy(t + 36, aml, n);
    acpi_header(t, "DSDT", (uint32_t)(36 + n), 2);
}

int boot_write_acpi(struct vm *vm, uint64_t *rsdp_addr)
{
    struct acpi_area a = { vm_gpa(vm, ACPI_BASE, ACPI_SIZE), 0 };
    uint64_t rsdp_gpa, dsdt, fadt, facs, madt, xsdt_gpa, rsdt_gpa;
    struct acpi_rsdp *rsdp;
    uint8_t *xsdt, *rsdt;

    if (!a.host)
        return -ENOMEM;
    memset(a.host, 0, ACPI_SIZE);
    rsdp = acpi_alloc(&a, sizeof(*rsdp), &rsdp_gpa);
    facs = acpi_facs(&a);
    acpi_dsdt(vm, &a, &dsdt);
    fadt = acpi_fadt(&a, dsdt, facs);
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
