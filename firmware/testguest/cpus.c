/* Counting CPUs two ways: the MP table the VMM (or SeaBIOS) wrote, and
 * the APs that actually run when woken with INIT/SIPI; and (ct.topo=1)
 * checking that the CPUID topology every CPU reports agrees with both. */
#include "guest.h"

#define LAPIC_BASE 0xfee00000UL
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT_ALL_BUT_SELF 0x000c4500
#define ICR_SIPI_ALL_BUT_SELF 0x000c4600
#define ICR_BUSY (1u << 12)
#define TRAMP_ADDR 0x70000UL
#define AP_RECORDS 0x1000 /* ap.S */
#define MAX_CPUS 64

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

/* Enabled processors of the MP table, their APIC IDs into ids. */
static int mp_cpus(uint32_t *ids)
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
            if ((p[3] & 1) && ids && n < MAX_CPUS) /* enabled */
                ids[n] = p[1];
            n += p[3] & 1;
            p += 20;
        } else {
            p += 8;
        }
    }
    return n;
}

int mp_count_cpus(void)
{
    return mp_cpus(0);
}

/* What ap.S records, leaf by leaf: EAX, EBX, ECX, EDX. */
enum { R_0, R_1, R_4, R_B0, R_B1, R_1F0, R_1F1, R_X0, R_X8, R_X1E, R_N };
struct cpu_record {
    uint32_t r[16][4];
};

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
    memset((void *)(TRAMP_ADDR + AP_RECORDS), 0,
           MAX_CPUS * sizeof(struct cpu_record));
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

static int madt_count(const uint8_t *madt, uint32_t *ids)
{
    uint32_t len = *(const uint32_t *)(madt + 4);
    const uint8_t *p = madt + 44, *end = madt + len;
    int n = 0;

    while (p + 2 <= end && p[1] >= 2) {
        uint32_t id = 0;
        int on = 0;

        if (p[0] == 0 && (p[4] & 1)) {                     /* local APIC */
            id = p[3];
            on = 1;
        } else if (p[0] == 9 && (*(const uint32_t *)(p + 8) & 1)) { /* x2APIC */
            id = *(const uint32_t *)(p + 4);
            on = 1;
        }
        if (on && ids && n < MAX_CPUS)
            ids[n] = id;
        n += on;
        p += p[1];
    }
    return n;
}

static int madt_cpus(uint64_t rsdp_addr, uint32_t *ids);

int acpi_count_cpus(uint64_t rsdp_addr)
{
    return madt_cpus(rsdp_addr, 0);
}

const uint8_t *acpi_find_table(uint64_t rsdp_addr, const char *sig)
{
    const uint8_t *rsdp, *sdt;
    int xsdt, entries;

    if (!rsdp_addr)
        rsdp_addr = acpi_find_rsdp();
    if (!rsdp_addr)
        return 0;
    rsdp = (const uint8_t *)rsdp_addr;
    xsdt = rsdp[15] >= 2 && *(const uint64_t *)(rsdp + 24);
    sdt = (const uint8_t *)(xsdt ? *(const uint64_t *)(rsdp + 24)
                                 : (uint64_t)*(const uint32_t *)(rsdp + 16));
    entries = (int)((*(const uint32_t *)(sdt + 4) - 36) / (xsdt ? 8 : 4));
    for (int i = 0; i < entries; i++) {
        const uint8_t *t = (const uint8_t *)(xsdt
            ? *(const uint64_t *)(sdt + 36 + 8 * i)
            : (uint64_t)*(const uint32_t *)(sdt + 36 + 4 * i));

        if (sig_is(t, sig, 4))
            return mp_checksum_ok(t, *(const uint32_t *)(t + 4)) ? t : 0;
    }
    return 0;
}

static int madt_cpus(uint64_t rsdp_addr, uint32_t *ids)
{
    const uint8_t *t = acpi_find_table(rsdp_addr, "APIC");

    return t ? madt_count(t, ids) : -1;
}

/* ---- ct.topo=1: CPUID topology on every CPU ---- */

static void cpuid_into(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

/* The BSP's own record, the same leaves ap.S reads. */
static void record_self(struct cpu_record *c)
{
    static const uint32_t leaves[R_N][2] = {
        { 0, 0 }, { 1, 0 }, { 4, 0 }, { 0xb, 0 }, { 0xb, 1 }, { 0x1f, 0 },
        { 0x1f, 1 }, { 0x80000000, 0 }, { 0x80000008, 0 }, { 0x8000001e, 0 },
    };

    for (int i = 0; i < R_N; i++)
        cpuid_into(leaves[i][0], leaves[i][1], c->r[i]);
}

static int topo_fail(uint32_t apic, const char *what)
{
    serial_puts("calf-test: check failed: cpu ");
    serial_put_dec(apic);
    serial_puts(": ");
    serial_puts(what);
    serial_puts("\n");
    return 1;
}

static int is_amd(const struct cpu_record *c)
{
    return c->r[R_0][1] == 0x68747541 || c->r[R_0][1] == 0x6f677948;
}

/* Leaf 0xB or 0x1F as two records (SMT level, core level): one thread
 * per core, n cores, every x2APIC ID inside one package. */
static int check_x2apic_levels(const uint32_t *smt, const uint32_t *core,
                               uint32_t apic, int n, const char *leaf)
{
    unsigned shift = core[0] & 0x1f;
    int f = 0;

    if (((smt[2] >> 8) & 0xff) != 1 || (smt[1] & 0xffff) != 1)
        f += topo_fail(apic, leaf);
    if (((core[2] >> 8) & 0xff) != 2 || (core[1] & 0xffff) != (uint32_t)n)
        f += topo_fail(apic, leaf);
    if (smt[3] != apic || core[3] != apic || (apic >> shift) != 0 ||
        (1u << shift) < (uint32_t)n)
        f += topo_fail(apic, leaf);
    return f;
}

static int check_record(const struct cpu_record *c, int n)
{
    uint32_t apic = c->r[R_1][1] >> 24, max = c->r[R_0][0],
             xmax = c->r[R_X0][0];
    int f = 0;

    serial_puts("calf-test: cpu ");
    serial_put_dec(apic);
    serial_puts(": leaf1 count ");
    serial_put_dec((c->r[R_1][1] >> 16) & 0xff);
    if (n > 1 && (!(c->r[R_1][3] & (1u << 28)) ||
                  ((c->r[R_1][1] >> 16) & 0xff) != (uint32_t)n))
        f += topo_fail(apic, "leaf 1 EBX logical count / HTT");
    if (!is_amd(c) && max >= 4 && (c->r[R_4][0] & 0x1f)) {
        serial_puts(", leaf4 cores ");
        serial_put_dec((c->r[R_4][0] >> 26) + 1);
        if ((c->r[R_4][0] >> 26) + 1 != (uint32_t)n)
            f += topo_fail(apic, "leaf 4 EAX cores per package");
    }
    if (max >= 0xb && c->r[R_B0][1]) {
        serial_puts(", leaf 0xb cores ");
        serial_put_dec(c->r[R_B1][1] & 0xffff);
        f += check_x2apic_levels(c->r[R_B0], c->r[R_B1], apic, n, "leaf 0xb");
    }
    if (max >= 0x1f && c->r[R_1F0][1])
        f += check_x2apic_levels(c->r[R_1F0], c->r[R_1F1], apic, n,
                                 "leaf 0x1f");
    if (is_amd(c) && xmax >= 0x80000008) {
        uint32_t ecx = c->r[R_X8][2], size = (ecx >> 12) & 0xf;

        serial_puts(", 0x80000008 cores ");
        serial_put_dec((ecx & 0xff) + 1);
        if ((ecx & 0xff) + 1 != (uint32_t)n || (size && (1u << size) < (uint32_t)n))
            f += topo_fail(apic, "leaf 0x80000008 ECX core count");
    }
    if (is_amd(c) && xmax >= 0x8000001e && c->r[R_X1E][0] != apic)
        f += topo_fail(apic, "leaf 0x8000001e extended APIC ID");
    serial_puts("\n");
    if (f)
        for (int i = 0; i < R_N; i++) {
            serial_puts("  ");
            for (int k = 0; k < 4; k++) {
                serial_put_hex(c->r[i][k]);
                serial_puts(" ");
            }
            serial_puts("\n");
        }
    return f;
}

static int id_listed(const uint32_t *ids, int n, uint32_t id)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

/* After start_aps(): every CPU's record, and its APIC ID in both tables. */
int check_topology(uint64_t rsdp, int n)
{
    static uint32_t mp_ids[MAX_CPUS], madt_ids[MAX_CPUS];
    volatile uint8_t *flags = (volatile uint8_t *)(TRAMP_ADDR +
        (uintptr_t)(ap_tramp_flags - ap_tramp));
    struct cpu_record *recs = (struct cpu_record *)(TRAMP_ADDR + AP_RECORDS);
    struct cpu_record self;
    int nmp = mp_cpus(mp_ids), nmadt = madt_cpus(rsdp, madt_ids), seen = 0;
    int f = 0;

    record_self(&self);
    for (int id = 0; id < MAX_CPUS; id++) {
        const struct cpu_record *c = id == (int)(self.r[R_1][1] >> 24)
                                         ? &self : &recs[id];

        if (c != &self && (n < 2 || !flags[id]))
            continue;
        seen++;
        f += check_record(c, n);
        if ((c->r[R_1][1] >> 24) != (uint32_t)id)
            f += topo_fail((uint32_t)id, "APIC ID differs from its slot");
        if (nmp >= 0 && !id_listed(mp_ids, nmp, (uint32_t)id))
            f += topo_fail((uint32_t)id, "APIC ID not in the MP table");
        if (nmadt >= 0 && !id_listed(madt_ids, nmadt, (uint32_t)id))
            f += topo_fail((uint32_t)id, "APIC ID not in the MADT");
    }
    if (seen != n)
        f += topo_fail(0, "not every CPU recorded its CPUID leaves");
    return f;
}
