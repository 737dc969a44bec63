/* calf's test guest: reports over COM1 what the VMM handed it (boot path,
 * command line, e820 map, initrd, CPUs), checks it against expectations
 * given on the command line, and exits through the debug-exit port:
 * 0 (VMM status 1) on PASS, 1 (status 3) on FAIL.  Everything here runs
 * in ring 0, where the emulating KVM backend manages ~2 M instructions/s:
 * keep loops short.
 *
 * Command line keys:
 *   ct.mem=MIB      total e820 RAM must be within 2 MiB below MIB
 *   ct.cpus=N       MP table and started CPUs must both be N
 *   ct.topo=1       CPUID topology leaves on every CPU agree with the
 *                   CPU count and the tables' APIC IDs (cpus.c)
 *   ct.initrd=HEX   CRC-32 the initrd must have
 *   ct.exit=V       write V to the debug-exit port instead of the verdict
 *   ct.hang=1       spin forever after the checks (timeout tests)
 *   ct.tick=1       after the checks, print "calf-test: tick N" each time
 *                   the TSC has advanced 2^28 cycles since the last one
 *                   (a counter a paused VM must not advance: QMP tests)
 *   ct.halt=1       cli; hlt after the checks
 *   ct.reset=1      reset after the checks (i8042 pulse; ct.reset=triple:
 *                   a triple fault), and on the boot after it check that
 *                   the VMM reloaded everything, then exit (reset.c);
 *                   ct.reset=loop: reset after every boot
 *   ct.poweroff=1   power off through the FADT's PM1a control (S5)
 *                   after the checks (acpi-pm.c)
 *   ct.pwrbtn=1     before that, wait for a press of the ACPI power
 *                   button (QMP system_powerdown; acpi-pm.c)
 *   ct.echo=1       echo COM1 input back until a line "end" (echo.c)
 *   ct.uart=1       check UART register semantics (echo.c)
 *   ct.cpuid=1      print CPUID leaves 1 and 7 (feature hiding tests)
 *   ct.int3=1 ct.fwait=1 ct.cx16=1   run int3 (with a #BP handler), fwait,
 *                   lock cmpxchg16b: the instructions kvm_pvm cannot emulate
 *   ct.virtio=N     drive the N virtio-blk disks (virtio-blk.c);
 *   ct.vhostile=1   with broken requests first; ct.vmsix=1: and MSI-X;
 *   ct.vbench=1     time virtio-blk requests instead (bench/virtio-blk)
 *   ct.vlegacy=1    drive them through the legacy virtio interface
 *   ct.vflood=1     and leave a ring full of large reads (virtio-blk.c)
 *   ct.vpat=SECTORS a pattern over the first virtio-blk disk, pass after
 *                   pass, for ever (virtio-blk.c: live snapshot tests)
 *   ct.vrng=LEN     read LEN random bytes twice from virtio-rng
 *                   (virtio-rng.c)
 *   ct.vnet=PORT    ARP, then UDP to the gateway's PORT and back from
 *                   it through virtio-net (virtio-net.c; ct.vnetip=,
 *                   ct.vnetgw= for other addresses than slirp's)
 *   ct.ide=1, ct.idecd=N, ct.idero=1, ... drive the IDE controller
 *                   (ide.c lists the keys)
 *   ct.dstress=1    several virtio-blk queues and IDE DMA at once over
 *                   backed qcow2 images (dstress.c lists the keys)
 *   ct.vga=WHAT     drive the std VGA (text, lfb) or the i8042 (kbd, keys,
 *                   keys26): vga.c
 *   ct.snap=N       a buffer, "snap ready", then N rounds that check
 *                   it (snap.c: the host saves and restores the VM)
 *   ct.snaprep=1    with ct.snap: the port read the save lands on is a
 *                   rep insb that crosses a page (two exits)
 *   ct.hostile=1    garbage to fw_cfg, PCI configuration space, the UART,
 *                   the i8042 and the RTC, first of all (hostile.c)
 */
#include "guest.h"

#define BOOT_LINUX64 0
#define BOOT_LINUX32 1
#define BOOT_PVH     2
#define PVH_MAGIC 0x336ec578u
#define MAX_E820 64

struct mem_region {
    uint64_t addr, size;
    uint32_t type;
};

struct boot_info {
    const char *cmdline;
    uint64_t initrd, initrd_size;
    struct mem_region map[MAX_E820];
    unsigned nmap;
    uint64_t rsdp; /* from PVH, else found by scanning */
    uint8_t *e820_count; /* in the zero page, Linux boot only */
};

static int failures;

static void fail(const char *what)
{
    serial_puts("calf-test: check failed: ");
    serial_puts(what);
    serial_puts("\n");
    failures++;
}

static uint64_t rd64(uint64_t a) { return *(const uint64_t *)a; }
static uint32_t rd32(uint64_t a) { return *(const uint32_t *)a; }

static void info_from_linux(uint64_t bp, struct boot_info *bi)
{
    unsigned n = *(const uint8_t *)(bp + 0x1e8);

    bi->cmdline = (const char *)(rd32(bp + 0x228) | (uint64_t)rd32(bp + 0x0c8) << 32);
    bi->initrd = rd32(bp + 0x218) | (uint64_t)rd32(bp + 0x0c0) << 32;
    bi->initrd_size = rd32(bp + 0x21c) | (uint64_t)rd32(bp + 0x0c4) << 32;
    for (unsigned i = 0; i < n && i < MAX_E820; i++) {
        uint64_t e = bp + 0x2d0 + 20 * i;

        bi->map[i] = (struct mem_region){ rd64(e), rd64(e + 8), rd32(e + 16) };
    }
    bi->nmap = n < MAX_E820 ? n : MAX_E820;
    bi->e820_count = (uint8_t *)(bp + 0x1e8);
}

static void info_from_pvh(uint64_t si, struct boot_info *bi)
{
    uint32_t nmods = rd32(si + 12), n;
    uint64_t mods = rd64(si + 16), map;

    if (rd32(si) != PVH_MAGIC) {
        fail("hvm_start_info magic");
        return;
    }
    bi->cmdline = (const char *)rd64(si + 24);
    bi->rsdp = rd64(si + 32);
    if (nmods) {
        bi->initrd = rd64(mods);
        bi->initrd_size = rd64(mods + 8);
    }
    if (rd32(si + 4) < 1)
        return; /* version 0 has no memory map */
    map = rd64(si + 40);
    n = rd32(si + 48);
    for (unsigned i = 0; i < n && i < MAX_E820; i++)
        bi->map[i] = (struct mem_region){ rd64(map + 24 * i),
                                          rd64(map + 24 * i + 8),
                                          rd32(map + 24 * i + 16) };
    bi->nmap = n < MAX_E820 ? n : MAX_E820;
}

static uint64_t key_num(const char *cmdline, const char *key, int base,
                        int *present)
{
    size_t len;
    const char *v = cmdline_get(cmdline, key, &len);

    *present = v != 0;
    return v ? parse_num(v, len, base) : 0;
}

/* The e820 map need not be sorted (QEMU's is not); it must not overlap. */
static int overlaps(const struct boot_info *bi, unsigned i)
{
    const struct mem_region *a = &bi->map[i];

    for (unsigned j = 0; j < i; j++) {
        const struct mem_region *b = &bi->map[j];

        if (b->size && a->addr < b->addr + b->size && b->addr < a->addr + a->size)
            return 1;
    }
    return 0;
}

static void check_memory(const struct boot_info *bi)
{
    uint64_t total = 0, want;
    int has_1m = 0, present;

    serial_puts("calf-test: e820:\n");
    for (unsigned i = 0; i < bi->nmap; i++) {
        const struct mem_region *r = &bi->map[i];

        if (!r->size)
            continue;
        serial_puts("  ");
        serial_put_hex(r->addr);
        serial_puts(" +");
        serial_put_hex(r->size);
        serial_puts(r->type == 1 ? " ram\n" : " reserved\n");
        if (overlaps(bi, i))
            fail("e820 entries overlap");
        if (r->type == 1) {
            total += r->size;
            if (r->addr <= 0x100000 && r->addr + r->size > 0x100000)
                has_1m = 1;
        }
    }
    serial_puts("calf-test: memory: ");
    serial_put_dec(total >> 10);
    serial_puts(" KiB\n");
    if (!has_1m)
        fail("e820 has no RAM at 1 MiB");
    want = key_num(bi->cmdline, "ct.mem=", 10, &present) << 20;
    if (present && (total > want || total + (2 << 20) < want))
        fail("e820 RAM total is not ct.mem");
}

#include "crc32-tables.h"

/* CRC-32 (zlib's) by slicing-by-8 over tables made at build time: eight
 * bytes per step, each step a few instructions, because every guest
 * instruction counts on the emulating backend. */
static uint32_t crc32(const uint8_t *p, uint64_t n)
{
    const uint32_t (*t)[256] = crc32_tables;
    uint32_t crc = 0xffffffff;

    for (; n && ((uintptr_t)p & 7); n--)
        crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t q = *(const uint64_t *)p ^ crc;

        crc = t[7][q & 0xff] ^ t[6][(q >> 8) & 0xff] ^ t[5][(q >> 16) & 0xff] ^
              t[4][(q >> 24) & 0xff] ^ t[3][(q >> 32) & 0xff] ^ t[2][(q >> 40) & 0xff] ^
              t[1][(q >> 48) & 0xff] ^ t[0][q >> 56];
    }
    while (n--)
        crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void check_initrd(const struct boot_info *bi)
{
    int present;
    uint64_t want = key_num(bi->cmdline, "ct.initrd=", 16, &present);
    uint32_t crc;

    if (!bi->initrd_size) {
        serial_puts("calf-test: initrd: none\n");
        if (present)
            fail("ct.initrd given but no initrd");
        return;
    }
    crc = crc32((const uint8_t *)bi->initrd, bi->initrd_size);
    serial_puts("calf-test: initrd: ");
    serial_put_dec(bi->initrd_size);
    serial_puts(" bytes at ");
    serial_put_hex(bi->initrd);
    serial_puts(" crc32 ");
    serial_put_hex(crc);
    serial_puts("\n");
    if (present && crc != want)
        fail("initrd CRC-32 is not ct.initrd");
}

static void put_count(const char *what, int n)
{
    serial_puts(what);
    if (n < 0)
        serial_puts("none");
    else
        serial_put_dec((uint64_t)n);
}

static int has_key(const char *cmdline, const char *key)
{
    size_t len;

    return cmdline_get(cmdline, key, &len) != 0;
}

/* The MP table and the ACPI MADT must agree where both exist, and every
 * CPU they list must answer INIT/SIPI. */
static void check_cpus(const struct boot_info *bi)
{
    int present, mp = mp_count_cpus(), madt = acpi_count_cpus(bi->rsdp);
    int listed = mp >= 0 ? mp : madt, started = 1;
    uint64_t want = key_num(bi->cmdline, "ct.cpus=", 10, &present);

    if (listed > 1)
        started = start_aps(listed);
    put_count("calf-test: cpus: MP table ", mp);
    put_count(", ACPI MADT ", madt);
    put_count(", running ", started);
    serial_puts("\n");
    if (listed < 0)
        fail("neither an MP table nor an ACPI MADT");
    if (mp >= 0 && madt >= 0 && mp != madt)
        fail("MP table and MADT disagree");
    if (listed >= 0 && started != listed)
        fail("not every listed CPU started");
    if (present && ((uint64_t)listed != want || (uint64_t)started != want))
        fail("CPU count is not ct.cpus");
    if (has_key(bi->cmdline, "ct.topo=") && listed > 0)
        failures += check_topology(bi->rsdp, listed);
}

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

static void report_cpuid(void)
{
    uint32_t r[4];

    cpuid(1, 0, r);
    serial_puts("calf-test: cpuid 1: ecx=");
    serial_put_hex(r[2]);
    serial_puts(" edx=");
    serial_put_hex(r[3]);
    cpuid(7, 0, r);
    serial_puts(" 7.0: ebx=");
    serial_put_hex(r[1]);
    serial_puts(" ecx=");
    serial_put_hex(r[2]);
    serial_puts("\n");
}

static void check_insns(const char *cmdline)
{
    if (has_key(cmdline, "ct.cpuid="))
        report_cpuid();
    if (has_key(cmdline, "ct.echo="))
        echo_run();
    if (has_key(cmdline, "ct.uart="))
        failures += uart_check();
    if (has_key(cmdline, "ct.int3=")) {
        if (try_int3())
            serial_puts("calf-test: int3 trapped\n");
        else
            fail("int3 did not reach its handler once");
    }
    if (has_key(cmdline, "ct.fwait=") && try_fwait())
        serial_puts("calf-test: fwait ran\n");
    if (has_key(cmdline, "ct.cx16=")) {
        if (try_cmpxchg16b())
            serial_puts("calf-test: cmpxchg16b ran\n");
        else
            fail("cmpxchg16b");
    }
}

static inline uint64_t rdtsc_now(void)
{
    uint32_t lo, hi;

    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return lo | (uint64_t)hi << 32;
}

/* One line per 2^28 TSC cycles (a tenth of a second or so); the next
 * tick counts from the line before, so a VM that was stopped resumes
 * with one tick, not a burst. */
static void __attribute__((noreturn)) tick_forever(void)
{
    uint64_t n = 0, next = rdtsc_now() + (1ull << 28);

    for (;;) {
        uint64_t now = rdtsc_now();

        if ((int64_t)(now - next) < 0) {
            __asm__ volatile("pause");
            continue;
        }
        serial_puts("calf-test: tick ");
        serial_put_dec(++n);
        serial_puts("\n");
        next = rdtsc_now() + (1ull << 28);
    }
}

static void finish(const struct boot_info *bi, int after_reset)
{
    const char *cmdline = bi->cmdline;
    int present;
    uint64_t v;
    size_t len;
    const char *how = cmdline_get(cmdline, "ct.reset=", &len);

    if (how && after_reset)
        failures += reset_check();

    if (has_key(cmdline, "ct.pwrbtn=") && !failures)
        failures += acpi_wait_power_button(bi->rsdp);
    if (has_key(cmdline, "ct.poweroff=") && !failures)
        failures += acpi_poweroff(bi->rsdp);
    serial_puts(failures ? "calf-test: FAIL\n" : "calf-test: PASS\n");
    if (has_key(cmdline, "ct.tick="))
        tick_forever();
    if (has_key(cmdline, "ct.hang="))
        for (;;)
            __asm__ volatile("pause");
    if (has_key(cmdline, "ct.halt="))
        for (;;)
            __asm__ volatile("cli; hlt");
    if (how && len == 4 && how[0] == 'l')
        reset_now(0, 0, 0, 0, 0);
    if (how && !after_reset)
        reset_now(len == 6 && how[0] == 't', (char *)cmdline,
                  (uint8_t *)bi->initrd, bi->initrd_size, bi->e820_count);
    v = key_num(cmdline, "ct.exit=", 10, &present);
    outl(0x501, present ? (uint32_t)v : (failures ? 1 : 0));
}

void guest_main(uint32_t mode, uint64_t info);

void guest_main(uint32_t mode, uint64_t info)
{
    static const char *const paths[] = { "linux64", "linux32", "pvh" };
    static struct boot_info bi;
    int after_reset = reset_note_boot();

    serial_init();
    serial_puts("\ncalf-test: booted via ");
    serial_puts(mode < 3 ? paths[mode] : "?");
    serial_puts("\n");
    if (mode == BOOT_PVH)
        info_from_pvh(info, &bi);
    else
        info_from_linux(info, &bi);
    if (!bi.cmdline)
        bi.cmdline = "";
    serial_puts("calf-test: cmdline: ");
    serial_puts(bi.cmdline);
    serial_puts("\n");
    check_memory(&bi);
    check_initrd(&bi);
    check_cpus(&bi);
    check_insns(bi.cmdline);
    if (has_key(bi.cmdline, "ct.hostile="))
        failures += hostile_test();
    {
        int present;
        uint64_t n = key_num(bi.cmdline, "ct.vpat=", 10, &present);

        if (present)
            failures += virtio_blk_pattern(n);
        n = key_num(bi.cmdline, "ct.virtio=", 10, &present);
        if (present)
            failures += virtio_blk_test((unsigned)n,
                (has_key(bi.cmdline, "ct.vhostile=") ? VBLK_TEST_HOSTILE : 0) |
                (has_key(bi.cmdline, "ct.vmsix=") ? VBLK_TEST_MSIX : 0) |
                (has_key(bi.cmdline, "ct.vbench=") ? VBLK_TEST_BENCH : 0) |
                (has_key(bi.cmdline, "ct.vlegacy=") ? VBLK_TEST_LEGACY : 0) |
                (has_key(bi.cmdline, "ct.vflood=") ? VBLK_TEST_FLOOD : 0));
    }
    {
        int present;
        uint64_t n = key_num(bi.cmdline, "ct.vrng=", 10, &present);

        if (present)
            failures += virtio_rng_test(n);
        n = key_num(bi.cmdline, "ct.vnet=", 10, &present);
        if (present)
            failures += virtio_net_test(bi.cmdline, n);
        n = key_num(bi.cmdline, "ct.snap=", 10, &present);
        if (present)
            failures += snap_test((unsigned)n,
                                  key_num(bi.cmdline, "ct.snaprep=", 10,
                                          &present) == 1);
    }
    if (has_key(bi.cmdline, "ct.ide"))
        failures += ide_test(bi.cmdline);
    if (has_key(bi.cmdline, "ct.dstress="))
        failures += dstress_test(bi.cmdline);
    {
        size_t len;
        const char *v = cmdline_get(bi.cmdline, "ct.vga=", &len);

        if (v)
            failures += vga_test(v, len);
    }
    finish(&bi, after_reset);
}
