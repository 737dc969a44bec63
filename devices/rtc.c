/* MC146818 CMOS/RTC.  The clock registers read the host's UTC time at the
 * moment of the read; a set-time write is kept as an offset from host
 * time.  The update-in-progress bit never shows, which is what a guest
 * polling it wants to see.  The periodic interrupt (register A's rate,
 * register B's PIE, IRQ 8 until register C is read) runs on a timer
 * thread, started the first time a guest enables it: SeaBIOS's int 15h
 * AH=86h wait counts its ticks.  A guest polling register C without PIE
 * sees the periodic flag once a period has passed since its last read.
 * The other CMOS bytes hold the memory sizes that SeaBIOS and older
 * loaders read. */
#include "devices/devices.h"
#include "devices/vmstate.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMOS_SIZE 128

enum {
    RTC_SEC = 0x00, RTC_MIN = 0x02, RTC_HOUR = 0x04, RTC_WDAY = 0x06,
    RTC_MDAY = 0x07, RTC_MONTH = 0x08, RTC_YEAR = 0x09,
    RTC_REG_A = 0x0a, RTC_REG_B = 0x0b, RTC_REG_C = 0x0c, RTC_REG_D = 0x0d,
    RTC_CENTURY = 0x32,
};

#define REG_B_SQWE   0x08
#define REG_B_UIE    0x10
#define REG_B_AIE    0x20
#define REG_B_PIE    0x40
#define REG_B_24H    0x02
#define REG_B_BINARY 0x04
#define REG_C_PF     0x40
#define REG_C_IRQF   0x80
#define RTC_IRQ      8

/* The dates a guest can set: what the BCD year and the AT's century
 * byte (0x32) can show, 1900-01-01 to 9999-12-31 UTC.  Clamping the
 * guest's time to them keeps gmtime_r() and timegm() in range (a guest
 * that moved the year past 2^31 made gmtime_r() fail and left struct tm
 * uninitialised), every register a two-digit value, and the offset
 * arithmetic far from overflow. */
#define RTC_TIME_MIN (-2208988800LL) /* 1900-01-01 00:00:00 */
#define RTC_TIME_MAX 253402300799LL  /* 9999-12-31 23:59:59 */

struct rtc {
    struct bus *bus;
    uint8_t index;
    uint8_t cmos[CMOS_SIZE];
    time_t offset; /* guest time minus host time, from guest writes;
                      bounded by the RTC_TIME range */
    bool irq_high;
    uint64_t last_c_read_ns;
    /* the periodic timer: period_ns 0 while PIE is off */
    pthread_t thread;
    bool thread_started, stop;
    pthread_mutex_t tlock; /* taken inside the bus lock, never around it */
    pthread_cond_t tcond;
    uint64_t period_ns;
};

static uint64_t rtc_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Register A: divider bits 010 (the 32.768 kHz time base) and a rate of
 * 1..15; rates 1 and 2 give 256 and 128 Hz, as on the real part. */
static uint64_t rtc_period_ns(const struct rtc *rtc)
{
    unsigned a = rtc->cmos[RTC_REG_A], rate = a & 0x0f;

    if (((a >> 4) & 7) != 2 || !rate)
        return 0;
    if (rate < 3)
        rate += 7;
    return (1000000000ULL << (rate - 1)) / 32768;
}

static void rtc_set_irq(struct rtc *rtc, bool high)
{
    if (high != rtc->irq_high) {
        rtc->irq_high = high;
        bus_set_irq(rtc->bus, RTC_IRQ, high);
    }
}

/* Bus lock held: one period has passed. */
static void rtc_tick(struct rtc *rtc)
{
    if (!(rtc->cmos[RTC_REG_B] & REG_B_PIE))
        return;
    rtc->cmos[RTC_REG_C] |= REG_C_PF | REG_C_IRQF;
    rtc_set_irq(rtc, true);
}

static void *rtc_thread(void *arg)
{
    struct rtc *rtc = arg;
    uint64_t next = 0, cur = 0;

    pthread_mutex_lock(&rtc->tlock);
    while (!rtc->stop) {
        uint64_t period = rtc->period_ns, now = rtc_now_ns();
        struct timespec ts;

        if (!period) {
            cur = 0;
            pthread_cond_wait(&rtc->tcond, &rtc->tlock);
            continue;
        }
        if (period != cur) { /* started, or a new rate: count from now */
            cur = period;
            next = now + period;
        }
        if (now < next) {
            ts.tv_sec = (time_t)(next / 1000000000ULL);
            ts.tv_nsec = (long)(next % 1000000000ULL);
            pthread_cond_timedwait(&rtc->tcond, &rtc->tlock, &ts);
            continue;
        }
        pthread_mutex_unlock(&rtc->tlock);
        bus_lock(rtc->bus);
        rtc_tick(rtc);
        bus_unlock(rtc->bus);
        pthread_mutex_lock(&rtc->tlock);
        /* a late thread does not make up for lost ticks: the flag and
         * the line were set once, as a real RTC would have left them */
        next = now - next >= period ? now + period : next + period;
    }
    pthread_mutex_unlock(&rtc->tlock);
    return NULL;
}

/* Bus lock held: after a write to register A or B, or a reset. */
static void rtc_update_timer(struct rtc *rtc)
{
    uint64_t period =
        (rtc->cmos[RTC_REG_B] & REG_B_PIE) ? rtc_period_ns(rtc) : 0;

    if (!(rtc->cmos[RTC_REG_B] & REG_B_PIE)) {
        rtc->cmos[RTC_REG_C] &= (uint8_t)~REG_C_IRQF;
        rtc_set_irq(rtc, false);
    }
    if (period && !rtc->thread_started)
        rtc->thread_started =
            !pthread_create(&rtc->thread, NULL, rtc_thread, rtc);
    pthread_mutex_lock(&rtc->tlock);
    if (period != rtc->period_ns) {
        rtc->period_ns = period;
        pthread_cond_signal(&rtc->tcond);
    }
    pthread_mutex_unlock(&rtc->tlock);
}

static void rtc_shutdown(void *opaque)
{
    struct rtc *rtc = opaque;

    if (!rtc->thread_started)
        return;
    pthread_mutex_lock(&rtc->tlock);
    rtc->stop = true;
    pthread_cond_signal(&rtc->tcond);
    pthread_mutex_unlock(&rtc->tlock);
    pthread_join(rtc->thread, NULL);
    rtc->thread_started = false;
}

/* Register C: the flags, cleared by the read, which also releases IRQ 8. */
static uint8_t rtc_read_c(struct rtc *rtc)
{
    uint64_t now = rtc_now_ns(), period = rtc_period_ns(rtc);
    uint8_t c = rtc->cmos[RTC_REG_C];

    if (period && now - rtc->last_c_read_ns >= period)
        c |= REG_C_PF;
    rtc->last_c_read_ns = now;
    rtc->cmos[RTC_REG_C] = 0;
    rtc_set_irq(rtc, false);
    return c;
}

static uint8_t rtc_encode(struct rtc *rtc, unsigned v)
{
    if (rtc->cmos[RTC_REG_B] & REG_B_BINARY)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static int rtc_decode(struct rtc *rtc, uint8_t v)
{
    if (rtc->cmos[RTC_REG_B] & REG_B_BINARY)
        return v;
    return (v >> 4) * 10 + (v & 0x0f);
}

static uint8_t rtc_hour(struct rtc *rtc, unsigned hour)
{
    unsigned h12;

    if (rtc->cmos[RTC_REG_B] & REG_B_24H)
        return rtc_encode(rtc, hour);
    h12 = hour % 12 ? hour % 12 : 12;
    return rtc_encode(rtc, h12) | (hour >= 12 ? 0x80 : 0);
}

static bool rtc_clock_reg(unsigned reg, struct tm *tm, int **field)
{
    switch (reg) {
    case RTC_SEC: *field = &tm->tm_sec; return true;
    case RTC_MIN: *field = &tm->tm_min; return true;
    case RTC_HOUR: *field = &tm->tm_hour; return true;
    case RTC_WDAY: *field = &tm->tm_wday; return true;
    case RTC_MDAY: *field = &tm->tm_mday; return true;
    case RTC_MONTH: *field = &tm->tm_mon; return true;
    case RTC_YEAR: *field = &tm->tm_year; return true;
    default: return false;
    }
}

static time_t rtc_clamp(long long t)
{
    return (time_t)(t < RTC_TIME_MIN ? RTC_TIME_MIN
                    : t > RTC_TIME_MAX ? RTC_TIME_MAX : t);
}

/* The guest's date now; *host gets the host time it is based on.  The
 * offset is bounded, so the sum cannot overflow; the clamp covers the
 * host clock running on past a limit the guest set.  Returns 0, or
 * -EOVERFLOW where gmtime_r() fails (it cannot in range: belt and
 * braces, so that *tm is never read uninitialised). */
static int rtc_guest_tm(struct rtc *rtc, time_t *host, struct tm *tm)
{
    time_t t;

    *host = time(NULL);
    t = rtc_clamp((long long)*host + rtc->offset);
    return gmtime_r(&t, tm) ? 0 : -EOVERFLOW;
}

static uint8_t rtc_read_clock(struct rtc *rtc, unsigned reg)
{
    struct tm tm;
    time_t host;
    unsigned year;

    if (rtc_guest_tm(rtc, &host, &tm) < 0)
        return 0;
    year = (unsigned)(tm.tm_year + 1900); /* 1900..9999 by the clamp */
    switch (reg) {
    case RTC_SEC: return rtc_encode(rtc, (unsigned)tm.tm_sec);
    case RTC_MIN: return rtc_encode(rtc, (unsigned)tm.tm_min);
    case RTC_HOUR: return rtc_hour(rtc, (unsigned)tm.tm_hour);
    case RTC_WDAY: return rtc_encode(rtc, (unsigned)tm.tm_wday + 1);
    case RTC_MDAY: return rtc_encode(rtc, (unsigned)tm.tm_mday);
    case RTC_MONTH: return rtc_encode(rtc, (unsigned)tm.tm_mon + 1);
    case RTC_YEAR: return rtc_encode(rtc, year % 100);
    default: return rtc_encode(rtc, year / 100);
    }
}

/* A guest setting the clock moves its own view of time only, and only
 * within the RTC_TIME range: a register value past what the field holds
 * (month 0xff) carries into the next field, as timegm() normalises, and
 * the result is clamped. */
static void rtc_write_clock(struct rtc *rtc, unsigned reg, uint8_t v)
{
    time_t host, then;
    struct tm tm;
    int *field, val;

    if (rtc_guest_tm(rtc, &host, &tm) < 0 || !rtc_clock_reg(reg, &tm, &field))
        return;
    val = rtc_decode(rtc, reg == RTC_HOUR ? (v & 0x7f) : v);
    if (reg == RTC_HOUR && !(rtc->cmos[RTC_REG_B] & REG_B_24H))
        val = (val % 12) + ((v & 0x80) ? 12 : 0);
    if (reg == RTC_MONTH)
        val -= 1;
    if (reg == RTC_YEAR)
        val += tm.tm_year - tm.tm_year % 100;
    if (reg == RTC_WDAY)
        return; /* derived from the date */
    *field = val;
    /* Every field is within a few hundred of a date in range: timegm()
     * cannot overflow, and -1 is a valid time (1969-12-31 23:59:59). */
    then = timegm(&tm);
    rtc->offset = rtc_clamp(then) - host;
}

static bool rtc_is_clock(unsigned reg)
{
    return reg == RTC_SEC || reg == RTC_MIN || reg == RTC_HOUR ||
           (reg >= RTC_WDAY && reg <= RTC_YEAR) || reg == RTC_CENTURY;
}

static void rtc_pio(void *opaque, uint16_t port, uint8_t *data,
                    unsigned size, bool is_write)
{
    struct rtc *rtc = opaque;
    unsigned reg = rtc->index;

    (void)size;
    if (port == 0x70) {
        if (is_write)
            rtc->index = data[0] & 0x7f; /* bit 7 is the NMI mask */
        else
            data[0] = rtc->index;
        return;
    }
    if (!is_write) {
        if (rtc_is_clock(reg))
            data[0] = rtc_read_clock(rtc, reg);
        else if (reg == RTC_REG_C)
            data[0] = rtc_read_c(rtc);
        else
            data[0] = rtc->cmos[reg];
        return;
    }
    if (rtc_is_clock(reg) && reg != RTC_CENTURY)
        rtc_write_clock(rtc, reg, data[0]);
    else if (reg == RTC_REG_A)
        rtc->cmos[reg] = data[0] & 0x7f; /* UIP is read-only */
    else if (reg != RTC_REG_C && reg != RTC_REG_D)
        rtc->cmos[reg] = data[0];
    if (reg == RTC_REG_A || reg == RTC_REG_B)
        rtc_update_timer(rtc);
}

static void rtc_set_memory(struct rtc *rtc, uint64_t low, uint64_t high)
{
    uint64_t ext_kb = low > (1 << 20) ? (low - (1 << 20)) >> 10 : 0;
    uint64_t above16 = low > (16 << 20) ? (low - (16 << 20)) >> 16 : 0;
    uint64_t above4g = high >> 16;

    if (ext_kb > 0xffff)
        ext_kb = 0xffff;
    if (above16 > 0xffff)
        above16 = 0xffff;
    rtc->cmos[0x15] = 640 & 0xff;   /* base memory in KiB */
    rtc->cmos[0x16] = 640 >> 8;
    rtc->cmos[0x17] = rtc->cmos[0x30] = ext_kb & 0xff;
    rtc->cmos[0x18] = rtc->cmos[0x31] = ext_kb >> 8;
    rtc->cmos[0x34] = above16 & 0xff;
    rtc->cmos[0x35] = above16 >> 8;
    rtc->cmos[0x5b] = above4g & 0xff;
    rtc->cmos[0x5c] = (above4g >> 8) & 0xff;
    rtc->cmos[0x5d] = (above4g >> 16) & 0xff;
}

/* The RTC is battery-backed: a machine reset keeps its clock (and the
 * guest's offset to it) and the CMOS bytes; the chip's RESET pin only
 * clears the interrupt enables and flags (MC146818 datasheet). */
static void rtc_reset(void *opaque)
{
    struct rtc *rtc = opaque;

    rtc->cmos[RTC_REG_B] &= (uint8_t)~(REG_B_PIE | REG_B_AIE | REG_B_UIE |
                                       REG_B_SQWE);
    rtc->cmos[RTC_REG_C] = 0;
    rtc_update_timer(rtc);
}

/* Saved state (devices/vmstate.h): the index, every CMOS byte and the
 * guest's offset from host time; the periodic timer follows register B. */
static int rtc_save(void *opaque, struct vmstate_cursor *w)
{
    struct rtc *rtc = opaque;

    vms_put_u8(w, rtc->index);
    vms_put(w, rtc->cmos, CMOS_SIZE);
    vms_put_u64(w, (uint64_t)(int64_t)rtc->offset);
    vms_put_u8(w, rtc->irq_high);
    return w->err;
}

static int rtc_load(void *opaque, struct vmstate_cursor *r)
{
    struct rtc *rtc = opaque;
    uint8_t index = vms_get_u8(r), cmos[CMOS_SIZE];
    int64_t offset;
    bool irq;

    vms_get(r, cmos, CMOS_SIZE);
    offset = (int64_t)vms_get_u64(r);
    irq = vms_get_bool(r);
    if (vms_finish(r))
        return r->err;
    if (offset < RTC_TIME_MIN - RTC_TIME_MAX ||
        offset > RTC_TIME_MAX - RTC_TIME_MIN)
        return vms_fail(r, -EINVAL, "clock offset %lld is out of range",
                        (long long)offset);
    rtc->index = index & 0x7f;
    memcpy(rtc->cmos, cmos, CMOS_SIZE);
    rtc->offset = (time_t)offset;
    rtc->irq_high = !irq;
    rtc_set_irq(rtc, irq);
    rtc_update_timer(rtc);
    return 0;
}

static const struct bus_state_ops rtc_state = {
    .save = rtc_save, .load = rtc_load,
};

int rtc_create(struct bus *bus, uint64_t low_ram, uint64_t high_ram)
{
    struct rtc *rtc = calloc(1, sizeof(*rtc));
    int ret;

    if (!rtc)
        return -ENOMEM;
    rtc->bus = bus;
    pthread_mutex_init(&rtc->tlock, NULL);
    {
        pthread_condattr_t attr;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&rtc->tcond, &attr);
        pthread_condattr_destroy(&attr);
    }
    rtc->cmos[RTC_REG_A] = 0x26; /* 32.768 kHz base, 1024 Hz rate */
    rtc->cmos[RTC_REG_B] = REG_B_24H;
    rtc->cmos[RTC_REG_D] = 0x80; /* battery good */
    rtc_set_memory(rtc, low_ram, high_ram);
    ret = bus_own(bus, rtc);
    if (ret) {
        free(rtc);
        return ret;
    }
    ret = bus_register_reset(bus, rtc_reset, rtc);
    if (!ret)
        ret = bus_register_shutdown(bus, rtc_shutdown, rtc);
    if (!ret)
        ret = bus_register_state(bus, "rtc", &rtc_state, rtc);
    return ret ? ret : bus_register_pio(bus, 0x70, 2, rtc_pio, rtc);
}
