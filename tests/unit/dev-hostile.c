/* The CMOS/RTC and fw_cfg models against a hostile guest, without a
 * VM: the devices sit on the real bus (devices/bus.c) behind a fake host
 * whose "guest RAM" is a mapping of 4 GiB + 64 KiB of address space with
 * only its first RAM_RW bytes accessible, so a transfer that writes more
 * than it should dies on the guard instead of eating host memory.
 *
 * RTC: a guest moving its clock far forward (binary year 255, month 255)
 * or far back (month 0 again and again) stays within 1900-01-01 ..
 * 9999-12-31, and every clock register reads two valid digits.
 * fw_cfg: a DMA read is all or nothing within guest RAM, and one request
 * writes at most 16 MiB (a 4 GiB zero fill is refused).
 * TAP output. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devices/bus.h"
#include "devices/byteorder.h"
#include "tests/unit/unit-dev.h"
#include "devices/devices.h"

#define RAM_SIZE ((4ULL << 30) + (64 << 10))
#define RAM_RW   (32ULL << 20)

static uint8_t *ram;

/* As the VMM's: all of [gpa, gpa + len) inside RAM, or NULL. */
static void *fake_guest_ram(void *host, uint64_t gpa, uint64_t len)
{
    (void)host;
    if (gpa + len < gpa || gpa + len > RAM_SIZE)
        return NULL;
    return ram + gpa;
}

static const struct bus_host_ops fake_ops = {
    .set_irq = fake_set_irq,
    .console_write = fake_console,
    .request_stop = fake_stop,
    .guest_ram = fake_guest_ram,
};

static void outb(struct bus *bus, uint16_t port, uint8_t v)
{
    bus_pio(bus, port, &v, 1, true);
}

static uint8_t inb(struct bus *bus, uint16_t port)
{
    uint8_t v;

    bus_pio(bus, port, &v, 1, false);
    return v;
}

/* ---- RTC ---- */

static uint8_t cmos_read(struct bus *bus, uint8_t reg)
{
    outb(bus, 0x70, reg);
    return inb(bus, 0x71);
}

static void cmos_write(struct bus *bus, uint8_t reg, uint8_t v)
{
    outb(bus, 0x70, reg);
    outb(bus, 0x71, v);
}

static int bcd_ok(uint8_t v)
{
    return (v >> 4) < 10 && (v & 15) < 10;
}

static unsigned bcd(uint8_t v)
{
    return (v >> 4) * 10 + (v & 15);
}

/* The date the clock shows in BCD mode, as YYYYMMDD; 0 when a register
 * holds something that is no BCD number or no valid date. */
static unsigned long rtc_date(struct bus *bus)
{
    static const uint8_t regs[] = { 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32 };
    uint8_t v[8];
    unsigned year, month, mday;

    cmos_write(bus, 0x0b, 0x02); /* 24 hours, BCD */
    for (unsigned i = 0; i < 8; i++) {
        v[i] = cmos_read(bus, regs[i]);
        if (!bcd_ok(v[i]))
            return 0;
    }
    year = bcd(v[7]) * 100 + bcd(v[6]);
    month = bcd(v[5]);
    mday = bcd(v[4]);
    if (month < 1 || month > 12 || mday < 1 || mday > 31 || bcd(v[2]) > 23 ||
        bcd(v[1]) > 59 || bcd(v[0]) > 60 || bcd(v[3]) < 1 || bcd(v[3]) > 7)
        return 0;
    return year * 10000UL + month * 100 + mday;
}

static void rtc_tests(struct bus *bus)
{
    unsigned long d;
    char what[120];

    /* a plain set: 2030-06-15 in BCD */
    cmos_write(bus, 0x0b, 0x02);
    cmos_write(bus, 0x09, 0x30);
    cmos_write(bus, 0x08, 0x06);
    cmos_write(bus, 0x07, 0x15);
    d = rtc_date(bus);
    snprintf(what, sizeof(what), "RTC: the guest sets 2030-06-15 (reads %lu)", d);
    ok(d == 20300615, what);

    /* far forward: binary year 255 adds two centuries a write, month
     * 255 another 21 years */
    cmos_write(bus, 0x0b, 0x06); /* 24 hours, binary */
    for (int i = 0; i < 60; i++)
        cmos_write(bus, 0x09, 0xff);
    for (int i = 0; i < 20; i++)
        cmos_write(bus, 0x08, 0xff);
    cmos_write(bus, 0x0b, 0x06);
    ok(cmos_read(bus, 0x32) <= 99 && cmos_read(bus, 0x09) <= 99,
       "RTC: binary year and century stay two-digit after 12000 years forward");
    d = rtc_date(bus);
    snprintf(what, sizeof(what), "RTC: the clock stops at 9999-12-31 (reads %lu)", d);
    ok(d == 99991231, what);

    /* far back: month 0 is December of the year before, every time */
    for (int i = 0; i < 10; i++)
        cmos_write(bus, 0x09, 0x00); /* back to 9900 */
    cmos_write(bus, 0x0b, 0x02);
    for (int i = 0; i < 8200; i++)
        cmos_write(bus, 0x08, 0x00);
    d = rtc_date(bus);
    snprintf(what, sizeof(what), "RTC: 8200 years back stops at 1900-01-01 (reads %lu)", d);
    ok(d / 100 == 190001 && d % 100 <= 1, what);

    /* and it still moves normally from there */
    cmos_write(bus, 0x32, 0x20); /* the century byte is not the clock's */
    cmos_write(bus, 0x09, 0x45);
    cmos_write(bus, 0x08, 0x03);
    cmos_write(bus, 0x07, 0x09);
    d = rtc_date(bus);
    snprintf(what, sizeof(what), "RTC: set again to 1945-03-09 (reads %lu)", d);
    ok(d == 19450309, what);
}

/* ---- fw_cfg ---- */

#define DMA_REQ   0x1000       /* the request block's guest address */
#define DMA_DATA  0x2000
#define CTL_ERROR  0x01
#define CTL_READ   0x02
#define CTL_SKIP   0x04
#define CTL_SELECT 0x08

/* Runs one DMA request at gpa req; returns the control word written back. */
static uint32_t fw_dma(struct bus *bus, uint64_t req, uint32_t control,
                       uint32_t len, uint64_t addr)
{
    uint8_t *r = ram + req, v[4];

    put_be32(r, control);
    put_be32(r + 4, len);
    put_be32(r + 8, (uint32_t)(addr >> 32));
    put_be32(r + 12, (uint32_t)addr);
    put_be32(v, (uint32_t)(req >> 32));
    bus_pio(bus, 0x514, v, 4, true);
    put_be32(v, (uint32_t)req);
    bus_pio(bus, 0x518, v, 4, true);
    return get_be32(r);
}

/* Runs fn in a child: a device that writes past RAM_RW dies there on
 * the guard (SIGSEGV) instead of taking the test down with it. */
static int in_child(int (*fn)(struct bus *), struct bus *bus, const char *what)
{
    pid_t pid = fork();
    int st;

    if (pid == 0) {
        alarm(20);
        _exit(fn(bus));
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    if (WIFSIGNALED(st))
        printf("# %s: the child died of signal %d\n", what, WTERMSIG(st));
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Item 0 is the 4-byte signature: 4 GiB - 1 bytes asked, all zeros but
 * 4.  Exit status 0: refused with the error bit and nothing written. */
static int fw_huge_read(struct bus *bus)
{
    uint32_t c;

    memset(ram + DMA_DATA, 0x55, 4096);
    c = fw_dma(bus, DMA_REQ, CTL_SELECT | CTL_READ, 0xffffffffu, DMA_DATA);
    return c == CTL_ERROR && ram[DMA_DATA] == 0x55 && ram[DMA_DATA + 4095] == 0x55 ? 0 : 1;
}

static int fw_over_cap(struct bus *bus)
{
    uint32_t c;

    memset(ram + DMA_DATA, 0x55, 4096);
    c = fw_dma(bus, DMA_REQ, CTL_SELECT | CTL_READ, (16u << 20) + 1, DMA_DATA);
    return c == CTL_ERROR && ram[DMA_DATA] == 0x55 ? 0 : 1;
}

/* A machine reset puts fw_cfg back in its power-on state: the signature
 * item selected at offset 0, and the DMA address's high half 0 (a guest
 * that writes only the low half after a reboot must reach its RAM). */
static void fw_cfg_reset_test(struct bus *bus)
{
    uint8_t sig[4], v[4], *r = ram + DMA_REQ;

    bus_pio(bus, 0x510, (uint8_t[2]){ 0x01, 0 }, 2, true); /* the ID item, one byte in */
    inb(bus, 0x511);
    put_be32(v, 0x7f);      /* a high half no RAM has */
    bus_pio(bus, 0x514, v, 4, true);
    bus_reset(bus);
    for (int i = 0; i < 4; i++)
        sig[i] = inb(bus, 0x511);
    ok(!memcmp(sig, "QEMU", 4), "fw_cfg reset: the signature item is selected, from offset 0");
    memset(ram + DMA_DATA, 0xaa, 8);
    put_be32(r, CTL_SELECT | CTL_READ);
    put_be32(r + 4, 4);
    put_be32(r + 8, 0);
    put_be32(r + 12, DMA_DATA);
    put_be32(v, DMA_REQ);
    bus_pio(bus, 0x518, v, 4, true); /* the low half only */
    ok(get_be32(r) == 0 && !memcmp(ram + DMA_DATA, "QEMU", 4),
       "fw_cfg reset: the DMA address's high half is 0 again");
}

static void fw_cfg_tests(struct bus *bus)
{
    uint32_t c;
    uint8_t v;

    memset(ram + DMA_DATA, 0xaa, 64);
    c = fw_dma(bus, DMA_REQ, CTL_SELECT | CTL_READ, 16, DMA_DATA);
    ok(c == 0 && !memcmp(ram + DMA_DATA, "QEMU", 4) && ram[DMA_DATA + 4] == 0 &&
       ram[DMA_DATA + 15] == 0 && ram[DMA_DATA + 16] == 0xaa,
       "fw_cfg DMA: the signature, zeros past its end, nothing more");
    ok(in_child(fw_huge_read, bus, "4 GiB read") == 0,
       "fw_cfg DMA: a 4 GiB read is refused with the error bit, nothing written");
    ok(in_child(fw_over_cap, bus, "16 MiB + 1 read") == 0,
       "fw_cfg DMA: 16 MiB + 1 byte is refused too");
    memset(ram + DMA_DATA, 0xaa, (16 << 20) + 64);
    c = fw_dma(bus, DMA_REQ, CTL_SELECT | CTL_READ, 16u << 20, DMA_DATA);
    ok(c == 0 && ram[DMA_DATA + 3] == 'U' && ram[DMA_DATA + 4] == 0 &&
       ram[DMA_DATA + (16 << 20) - 1] == 0 && ram[DMA_DATA + (16 << 20)] == 0xaa,
       "fw_cfg DMA: a 16 MiB read works (the item, then zeros)");
    memset(ram + DMA_DATA, 0xaa, 64);
    c = fw_dma(bus, DMA_REQ, CTL_SELECT | CTL_READ, 64, RAM_SIZE - 32);
    ok(c == CTL_ERROR, "fw_cfg DMA: a buffer running off the end of RAM is refused");
    c = fw_dma(bus, DMA_REQ, CTL_SELECT | CTL_READ, 0x200, 0xffffffffffffff00ULL);
    ok(c == CTL_ERROR, "fw_cfg DMA: a buffer wrapping around 2^64 is refused");
    /* a request block outside RAM has nowhere to report: nothing happens */
    v = 0;
    bus_pio(bus, 0x514, (uint8_t[4]){ 0, 0, 0, 0x7f }, 4, true);
    bus_pio(bus, 0x518, (uint8_t[4]){ 0xff, 0xff, 0xff, 0xf8 }, 4, true);
    ok(1, "fw_cfg DMA: a request block outside RAM is ignored");
    c = fw_dma(bus, DMA_REQ, CTL_SELECT | CTL_SKIP, 0xffffffffu, 0);
    bus_pio(bus, 0x511, &v, 1, false);
    ok(c == 0 && v == 0, "fw_cfg DMA: a 4 GiB skip moves to the item's end (no memory touched)");
    fw_cfg_reset_test(bus);
}

int main(void)
{
    struct bus *bus;
    struct fw_cfg *fw = NULL;

    ram = mmap(NULL, RAM_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED || mprotect(ram, RAM_RW, PROT_READ | PROT_WRITE)) {
        printf("1..0 # SKIP cannot map 4 GiB of address space: %s\n", strerror(errno));
        return 0;
    }
    bus = bus_create(&fake_ops, NULL);
    if (!bus || rtc_create(bus, 256 << 20, 0) || fw_cfg_create(bus, &fw)) {
        printf("not ok 1 - devices created\n1..1\n");
        return 1;
    }
    rtc_tests(bus);
    fw_cfg_tests(bus);
    bus_shutdown(bus);
    fw_cfg_destroy(fw);
    bus_destroy(bus);
    munmap(ram, RAM_SIZE);
    printf("1..%d\n", t_num);
    return t_fail != 0;
}
