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

/* ct.uart=1: UART register semantics that must hold whether or not the
 * VMM lets KVM buffer THR writes (calf does while THRI is off): every
 * access after a write sees it.  Polled, interrupts stay off. */
static int uart_fail(const char *what)
{
    serial_puts("calf-test: uart: ");
    serial_puts(what);
    serial_puts("\n");
    return 1;
}
#define UART_FAIL(what) (failed += uart_fail(what))

int uart_check(void)
{
    uint8_t mcr = inb(COM1 + 4), lo, hi;
    int failed = 0;

    outb(COM1 + 1, 0);                      /* IER: no interrupts */
    outb(COM1 + 3, 0x83);                   /* DLAB: port 0 is DLL now */
    outb(COM1, 0x34);
    outb(COM1 + 1, 0x12);
    lo = inb(COM1);
    hi = inb(COM1 + 1);
    outb(COM1, 0x01);                       /* 115200 baud again */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);                   /* 8N1, THR at port 0 */
    if (lo != 0x34 || hi != 0x12)
        UART_FAIL("the divisor latch did not read back");
    if ((inb(COM1 + 5) & 0x60) != 0x60)
        UART_FAIL("LSR: THR and transmitter not empty");

    outb(COM1 + 4, mcr | 0x10);             /* loopback */
    outb(COM1, 'Q');
    if (!(inb(COM1 + 5) & LSR_DR) || inb(COM1) != 'Q')
        UART_FAIL("a byte written in loopback is not in RBR at once");
    outb(COM1, 'R');
    outb(COM1, 'S');
    if (inb(COM1) != 'R' || inb(COM1) != 'S' || (inb(COM1 + 5) & LSR_DR))
        UART_FAIL("loopback bytes out of order");
    outb(COM1 + 4, mcr);

    outb(COM1 + 1, 0x02);                   /* IER: THR empty */
    if ((inb(COM1 + 2) & 0x0f) != 0x02)
        UART_FAIL("enabling THRI with THR empty does not raise it");
    if ((inb(COM1 + 2) & 0x0f) != 0x01)
        UART_FAIL("reading IIR does not clear THRI");
    outb(COM1, '.');
    if ((inb(COM1 + 2) & 0x0f) != 0x02)
        UART_FAIL("no THRI once the byte written has left");
    outb(COM1 + 1, 0);
    if ((inb(COM1 + 2) & 0x0f) != 0x01)
        UART_FAIL("THRI still reported with IER clear");
    serial_init();                          /* the '.' above is in its FIFO */
    serial_puts("\ncalf-test: uart checked\n");
    return failed;
}
