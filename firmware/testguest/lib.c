#include "guest.h"

#define COM1 0x3f8
#define LSR_THRE 0x20

void *memset(void *d, int c, size_t n)
{
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *ret = d;

    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return ret;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n])
        n++;
    return n;
}

void iobss_zero(void)
{
    extern uint64_t __iobss_start[], __iobss_end[];
    static int done;                        /* per boot: .bss is zeroed at each */
    uint64_t *d = __iobss_start, n = (uint64_t)(__iobss_end - __iobss_start);

    if (done)
        return;
    done = 1;
    __asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(0ULL) : "memory");
}

static unsigned tx_burst = 1, tx_room;

/* Turns the 16550A's FIFOs on.  With them on, THRE means the transmit
 * FIFO is empty, so up to 16 bytes may follow each THRE, as Linux's 8250
 * driver writes them: one LSR read (one VM exit) per 16 bytes instead of
 * one per byte.  A UART without FIFOs (IIR bits 7:6 clear) gets a byte
 * per THRE. */
void serial_init(void)
{
    outb(COM1 + 2, 0x01);                   /* FCR: FIFOs on */
    tx_burst = (inb(COM1 + 2) & 0xc0) == 0xc0 ? 16 : 1;
    tx_room = 0;
}

static void serial_putc(char c)
{
    /* Polls THRE like a real driver, so the VMM's LSR is exercised. */
    if (!tx_room) {
        while (!(inb(COM1 + 5) & LSR_THRE))
            ;
        tx_room = tx_burst;
    }
    tx_room--;
    outb(COM1, (uint8_t)c);
}

void serial_puts(const char *s)
{
    while (*s) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s++);
    }
}

void serial_put_hex(uint64_t v)
{
    char buf[19];
    int i = 18;

    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    serial_puts(buf + i);
}

void serial_put_dec(uint64_t v)
{
    char buf[21];
    int i = 20;

    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    serial_puts(buf + i);
}

const char *cmdline_get(const char *cmdline, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    const char *p = cmdline;

    while (p && *p) {
        while (*p == ' ')
            p++;
        const char *tok = p;
        while (*p && *p != ' ')
            p++;
        if ((size_t)(p - tok) >= klen) {
            size_t i = 0;

            while (i < klen && tok[i] == key[i])
                i++;
            if (i == klen) {
                *len = (size_t)(p - tok) - klen;
                return tok + klen;
            }
        }
    }
    return NULL;
}

uint64_t parse_num(const char *s, size_t len, int base)
{
    uint64_t v = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;

        if (d >= base)
            break;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    return v;
}
