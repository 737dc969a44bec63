/* Counting CPUs two ways: the MP table the VMM (or SeaBIOS) wrote, and
 * the APs that actually run when woken with INIT/SIPI. */
#include "guest.h"

#define LAPIC_BASE 0xfee00000UL
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT_ALL_BUT_SELF 0x000c4500
#define ICR_SIPI_ALL_BUT_SELF 0x000c4600
#define ICR_BUSY (1u << 12)
#define TRAMP_ADDR 0x70000UL

extern const uint8_t ap_tramp[], ap_tramp_end[], ap_tramp_flags[];

static int mp_checksum_ok(const uint8_t *p, unsigned len)
{
    uint8_t sum = 0;

    while (len--)
        sum += *p++;
    return sum == 0;
}

static const uint8_t *mp_find(void)
{
    for (uintptr_t a = 0xf0000; a < 0x100000; a += 16) {
        const uint8_t *p = (const uint8_t *)a;

        if (p[0] == '_' && p[1] == 'M' && p[2] == 'P' && p[3] == '_' &&
            mp_checksum_ok(p, 16))
            return p;
    }
    return 0;
}

int mp_count_cpus(void)
{
    const uint8_t *mpf = mp_find(), *mpc, *p, *end;
    int n = 0;

    if (!mpf)
        return -1;
    mpc = (const uint8_t *)(uintptr_t)*(const uint32_t *)(mpf + 4);
    if (!mpc || mpc[0] != 'P' || mpc[1] != 'C' || mpc[2] != 'M' ||
        mpc[3] != 'P' || !mp_checksum_ok(mpc, *(const uint16_t *)(mpc + 4)))
        return -1;
    p = mpc + 44;
    end = mpc + *(const uint16_t *)(mpc + 4);
    while (p < end) {
        if (p[0] == 0) {
            n += p[3] & 1; /* enabled */
            p += 20;
        } else {
            p += 8;
        }
    }
    return n;
}

static void lapic_write(unsigned reg, uint32_t v)
{
    *(volatile uint32_t *)(LAPIC_BASE + reg) = v;
}

static uint32_t lapic_read(unsigned reg)
{
    return *(volatile uint32_t *)(LAPIC_BASE + reg);
}

static void icr_send(uint32_t v)
{
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, v);
    for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_BUSY); i++)
        __asm__ volatile("pause");
}

/* Returns the CPUs that answered, the BSP included. */
int start_aps(int expected)
{
    volatile uint8_t *flags;
    int seen = 0;

    memcpy((void *)TRAMP_ADDR, ap_tramp, (size_t)(ap_tramp_end - ap_tramp));
    flags = (volatile uint8_t *)(TRAMP_ADDR + (uintptr_t)(ap_tramp_flags - ap_tramp));
    lapic_write(LAPIC_SVR, 0x1ff);
    icr_send(ICR_INIT_ALL_BUT_SELF);
    icr_send(ICR_SIPI_ALL_BUT_SELF | (TRAMP_ADDR >> 12));
    for (long spin = 0; spin < 10000; spin++) {
        seen = 0;
        for (int i = 0; i < 64; i++)
            seen += flags[i];
        if (seen >= expected - 1)
            break;
        __asm__ volatile("pause");
    }
    return seen + 1;
}

static int sig_is(const uint8_t *p, const char *sig, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (p[i] != (uint8_t)sig[i])
            return 0;
    return 1;
}

static uint64_t acpi_find_rsdp(void)
{
    for (uintptr_t a = 0xe0000; a < 0x100000; a += 16)
        if (sig_is((const uint8_t *)a, "RSD PTR ", 8) &&
            mp_checksum_ok((const uint8_t *)a, 20))
            return a;
    return 0;
}

static int madt_count(const uint8_t *madt)
{
    uint32_t len = *(const uint32_t *)(madt + 4);
    const uint8_t *p = madt + 44, *end = madt + len;
    int n = 0;

    while (p + 2 <= end && p[1] >= 2) {
        if (p[0] == 0 && (p[4] & 1))                     /* local APIC */
            n++;
        else if (p[0] == 9 && (*(const uint32_t *)(p + 8) & 1)) /* x2APIC */
            n++;
        p += p[1];
    }
    return n;
}

int acpi_count_cpus(uint64_t rsdp_addr)
{
    const uint8_t *rsdp, *sdt;
    int xsdt, entries;

    if (!rsdp_addr)
        rsdp_addr = acpi_find_rsdp();
    if (!rsdp_addr)
        return -1;
    rsdp = (const uint8_t *)rsdp_addr;
    xsdt = rsdp[15] >= 2 && *(const uint64_t *)(rsdp + 24);
    sdt = (const uint8_t *)(xsdt ? *(const uint64_t *)(rsdp + 24)
                                 : (uint64_t)*(const uint32_t *)(rsdp + 16));
    entries = (int)((*(const uint32_t *)(sdt + 4) - 36) / (xsdt ? 8 : 4));
    for (int i = 0; i < entries; i++) {
        const uint8_t *t = (const uint8_t *)(xsdt
            ? *(const uint64_t *)(sdt + 36 + 8 * i)
            : (uint64_t)*(const uint32_t *)(sdt + 36 + 4 * i));

        if (sig_is(t, "APIC", 4))
            return mp_checksum_ok(t, *(const uint32_t *)(t + 4)) ? madt_count(t)
                                                                : -1;
    }
    return -1;
}
