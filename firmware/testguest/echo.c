/* ct.echo=1: sends back every byte COM1 receives, untouched, until a line
 * that is just "end"; then reports the count and exits.  The host pipes
 * text into calf run and compares what comes back (guest-tests/console.t).
 * Polled, not interrupt-driven: LSR data-ready, then RBR. */
#include "guest.h"

#define COM1 0x3f8
#define LSR_DR   0x01
#define LSR_THRE 0x20

static void echo_putc(uint8_t c)
{
    while (!(inb(COM1 + 5) & LSR_THRE))
        ;
    outb(COM1, c);
}

static uint8_t echo_getc(void)
{
    while (!(inb(COM1 + 5) & LSR_DR))
        __asm__ volatile("pause");
    return inb(COM1);
}

void echo_run(void)
{
    uint64_t count = 0;
    unsigned col = 0;   /* bytes of the current line so far */
    int is_end = 1;     /* ... and they are a prefix of "end" */

    serial_puts("calf-test: echo: ready\n");
    for (;;) {
        uint8_t c = echo_getc();

        echo_putc(c);
        count++;
        if (c == '\n') {
            if (is_end && col == 3)
                break;
            col = 0;
            is_end = 1;
            continue;
        }
        is_end &= col < 3 && c == (uint8_t)"end"[col];
        col++;
    }
    serial_puts("calf-test: echo: ");
    serial_put_dec(count);
    serial_puts(" bytes\n");
}
