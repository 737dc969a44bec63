/* Device models against a hostile guest, without a VM: the devices sit
 * on the real bus (vmm/bus.c) behind a fake host.
 *
 * RTC: a guest moving its clock far forward (binary year 255, month 255)
 * or far back (month 0 again and again) stays within 1900-01-01 ..
 * 9999-12-31, and every clock register reads two valid digits.
 * TAP output. */
#include <stdio.h>

#include "vmm/bus.h"
#include "devices/devices.h"

static int t_num, t_fail;

static void ok(int cond, const char *what)
{
    t_num++;
    if (!cond)
        t_fail++;
    printf("%sok %d - %s\n", cond ? "" : "not ", t_num, what);
    fflush(stdout);
}

/* ---- the fake host ---- */

static int fake_set_irq(void *host, unsigned irq, int level)
{
    (void)host, (void)irq, (void)level;
    return 0;
}

static void fake_console(void *host, const uint8_t *buf, size_t len)
{
    (void)host, (void)buf, (void)len;
}

static void fake_stop(void *host, enum bus_stop_reason reason, int status)
{
    (void)host, (void)reason, (void)status;
}

static const struct bus_host_ops fake_ops = {
    .set_irq = fake_set_irq,
    .console_write = fake_console,
    .request_stop = fake_stop,
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

int main(void)
{
    struct bus *bus = bus_create(&fake_ops, NULL);

    if (!bus || rtc_create(bus, 256 << 20, 0)) {
        printf("not ok 1 - devices created\n1..1\n");
        return 1;
    }
    rtc_tests(bus);
    bus_shutdown(bus);
    bus_destroy(bus);
    printf("1..%d\n", t_num);
    return t_fail != 0;
}
