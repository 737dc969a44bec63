/* ct.snap=N: the save/restore test (guest-tests/snapshot.t).  The guest
 * fills a 1 MiB buffer with a pattern, prints "calf-test: snap ready!"
 * (the host saves the VM when it sees that), reads fw_cfg's signature
 * byte by byte (a port read the save lands on: it must complete exactly
 * once; with ct.snaprep=1 with one rep insb that crosses a page, two
 * exits), then runs N rounds (each also checks that a slice of RAM the
 * guest never wrote still reads zero):
 * each checks one slice of the buffer against the pattern, stamps the
 * round number into it and prints what it found.  The output is the same
 * on every run, so a run that was saved and restored must print exactly
 * what an uninterrupted one prints: nothing lost or doubled on the
 * serial line, RAM and registers as they were.  Returns the failures. */
#include "guest.h"

#define SNAP_BUF 0x2000000ULL /* 32 MiB: clear of the guest and its data */
#define SNAP_ZERO 0x3000000ULL /* 48 MiB: never written, must read zero */
#define SNAP_WORDS (128 * 1024)
#define SNAP_SLICES 16

static uint64_t pattern(uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ULL + 0x1234567;

    return x ^ (x >> 29);
}

/* rep insb into a buffer that crosses a page: KVM splits it into one
 * exit per page, so completing the first exit makes a second. */
static char rep_buf[8192] __attribute__((aligned(4096)));

int snap_test(unsigned rounds, int rep)
{
    volatile uint64_t *buf = (volatile uint64_t *)SNAP_BUF;
    unsigned per = SNAP_WORDS / SNAP_SLICES;
    int failures = 0;
    char sig[4];

    for (uint64_t i = 0; i < SNAP_WORDS; i++)
        buf[i] = pattern(i);
    /* The host saves at the first exit after the '!': that is the first
     * of these fw_cfg reads, each of which moves the item's offset on.
     * Restored, the guest must see that read's byte, not read again. */
    outw(0x510, 0); /* FW_CFG_SIGNATURE */
    serial_puts("calf-test: snap ready!");
    if (rep) {
        char *p = rep_buf + 4096 - 2;
        unsigned long n = 4;

        __asm__ volatile("rep insb" : "+D"(p), "+c"(n) : "d"(0x511)
                         : "memory");
        for (int i = 0; i < 4; i++)
            sig[i] = rep_buf[4096 - 2 + i];
    } else {
        for (int i = 0; i < 4; i++)
            sig[i] = inb(0x511);
    }
    if (sig[0] != 'Q' || sig[1] != 'E' || sig[2] != 'M' || sig[3] != 'U') {
        serial_puts(" fw_cfg read lost or repeated");
        failures++;
    }
    serial_puts("\n");
    for (unsigned r = 0; r < rounds; r++) {
        unsigned s = r % SNAP_SLICES, bad = 0;
        uint64_t sum = 0;

        for (unsigned k = 0; k < per; k++) {
            uint64_t i = (uint64_t)s * per + k, v = buf[i];

            if (((volatile uint64_t *)SNAP_ZERO)[i])
                bad++;
            /* a stamped word came from an earlier round */
            if (v != pattern(i) && v != (pattern(i) ^ (r - SNAP_SLICES + 1)))
                bad++;
            sum += v;
        }
        buf[(uint64_t)s * per] = pattern((uint64_t)s * per) ^ (r + 1);
        serial_puts("calf-test: snap round ");
        serial_put_dec(r);
        serial_puts(" sum ");
        serial_put_hex(sum);
        serial_puts(bad ? " BAD\n" : " ok\n");
        if (bad)
            failures++;
    }
    serial_puts(failures ? "calf-test: snap: memory changed\n"
                         : "calf-test: snap: memory intact\n");
    return failures;
}
