/* ct.vga=text|lfb|kbd: drives the std VGA and the i8042 the way a driver
 * does; guest-tests/vga*.t check the screen the VMM draws (--screenshot)
 * and what is printed here.
 *   text: characters and attributes at 0xB8000, the cursor through the
 *         CRTC, an attribute-palette entry (behind the 0x3DA flip-flop
 *         reset) and a DAC entry reprogrammed;
 *   lfb:  the PCI function and its BARs, 640x480x32 through the DISPI
 *         ports, a pattern in the BAR0 framebuffer, BAR0 moved (the
 *         pixels must follow it), DISPI read back through BAR2;
 *   kbd:  the controller and keyboard command protocol: self test,
 *         command byte, reset, identify, echo, LEDs, scan code sets with
 *         and without translation, the output buffer and IRQ 1;
 *   keys: prints the scan codes of the first four key events the host
 *         sends (guest-tests/vga-sdl.t types them into the window);
 *   hdispi, htext, hchain4: hostile register values for the renderer. */
#include "guest.h"
#include "pci.h"

static int failures;

static void check(int ok, const char *what)
{
    if (ok)
        return;
    serial_puts("calf-test: vga check failed: ");
    serial_puts(what);
    serial_puts("\n");
    failures++;
}

static int memcmp_(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 1;
    return 0;
}

/* ---- text mode ---- */

static void text_put(unsigned row, unsigned col, const char *s, uint8_t attr)
{
    volatile uint16_t *cell = (volatile uint16_t *)0xb8000 + row * 80 + col;

    while (*s)
        *cell++ = (uint16_t)((uint8_t)*s++ | attr << 8);
}

static void crtc_write(uint8_t idx, uint8_t v)
{
    outb(0x3d4, idx);
    outb(0x3d5, v);
}

static void vga_text(void)
{
    static const char full[] = { (char)0xdb, 0 };
    uint8_t v;

    text_put(0, 0, full, 0x0c);             /* light red block */
    text_put(2, 4, "Hello, VGA", 0x1e);     /* yellow on blue */
    text_put(4, 0, full, 0x07);             /* DAC entry 7, reprogrammed */
    text_put(4, 1, full, 0x02);             /* palette entry 2, remapped */
    text_put(3, 5, " ", 0x0e);              /* the cursor draws in yellow */
    /* Cursor: scan lines 14-15 of the cell at row 3, column 5. */
    crtc_write(0x0a, 14);
    crtc_write(0x0b, 15);
    crtc_write(0x0e, 0);
    crtc_write(0x0f, 3 * 80 + 5);
    outb(0x3d4, 0x0f);
    check(inb(0x3d5) == 3 * 80 + 5, "CRTC cursor location reads back");
    /* Attribute palette entry 2 -> colour 0x3f (white): reading input
     * status 1 puts the flip-flop at "index"; index bit 5 keeps the
     * display on. */
    (void)inb(0x3da);
    outb(0x3c0, 0x22);
    outb(0x3c0, 0x3f);
    outb(0x3c0, 0x22);
    v = inb(0x3c1);
    check(v == 0x3f, "attribute palette entry 2 reads back");
    /* DAC entry 7 (what palette entry 7 points at) -> magenta. */
    outb(0x3c8, 7);
    outb(0x3c9, 0x3f);
    outb(0x3c9, 0x00);
    outb(0x3c9, 0x3f);
    outb(0x3c7, 7);
    v = inb(0x3c9);
    check(v == 0x3f && inb(0x3c9) == 0 && inb(0x3c9) == 0x3f,
          "DAC entry 7 reads back");
    serial_puts("calf-test: vga text written\n");
}

/* ---- Bochs VBE and the framebuffer ---- */

static void dispi_write(uint16_t idx, uint16_t v)
{
    outw(0x1ce, idx);
    outw(0x1cf, v);
}

static uint16_t dispi_read(uint16_t idx)
{
    outw(0x1ce, idx);
    return inw(0x1cf);
}

static void fill(volatile uint32_t *fb, unsigned x0, unsigned y0,
                 unsigned w, unsigned h, uint32_t rgb)
{
    for (unsigned y = y0; y < y0 + h; y++)
        for (unsigned x = x0; x < x0 + w; x++)
            fb[y * 640 + x] = rgb;
}

static int vga_find(uint32_t *bar0, uint32_t *bar2)
{
    int slot = pci_find(0x1234, 0x1111, 0);

    if (slot < 0) {
        check(0, "no PCI function 1234:1111");
        return -1;
    }
    check(pci_read32((unsigned)slot, 0x08) >> 8 == 0x030000,
          "class code is 0x0300 (VGA)");
    check(pci_bar_size((unsigned)slot, 0) == 16u << 20, "BAR0 is 16 MiB");
    pci_write16((unsigned)slot, 0x04, 0x0003); /* I/O and memory decoding */
    *bar0 = pci_read32((unsigned)slot, 0x10) & ~0xfu;
    *bar2 = pci_read32((unsigned)slot, 0x18) & ~0xfu;
    serial_puts("calf-test: vga at slot ");
    serial_put_dec((uint64_t)slot);
    serial_puts(", framebuffer at ");
    serial_put_hex(*bar0);
    serial_puts("\n");
    return slot;
}

static void vga_lfb(void)
{
    uint32_t bar0, bar2;
    volatile uint32_t *fb;
    volatile uint16_t *mmio;
    int slot = vga_find(&bar0, &bar2);

    if (slot < 0)
        return;
    check(dispi_read(0) >= 0xb0c0 && dispi_read(0) <= 0xb0c5, "DISPI ID");
    check(dispi_read(10) == 256, "DISPI video memory is 256 x 64 KiB");
    dispi_write(4, 0);
    dispi_write(1, 640);
    dispi_write(2, 480);
    dispi_write(3, 32);
    dispi_write(4, 0x41);                   /* enabled, LFB */
    check(dispi_read(6) == 640, "virtual width follows XRES on enable");
    check(dispi_read(7) == (16u << 20) / (640 * 4), "virtual height");
    fb = (volatile uint32_t *)(uint64_t)bar0;
    fill(fb, 0, 0, 64, 64, 0xff0000);
    fill(fb, 64, 0, 64, 64, 0x00ff00);
    fill(fb, 128, 0, 64, 64, 0x0000ff);
    for (unsigned i = 0; i < 200; i++)
        fb[(100 + i) * 640 + 200 + i] = 0xffffff;
    fb[479 * 640 + 639] = 0x123456;
    check(fb[479 * 640 + 639] == 0x123456, "framebuffer reads back");
    /* Move BAR0: the same memory must show up at the new address. */
    pci_write32((unsigned)slot, 0x10, 0xe0000000u);
    fb = (volatile uint32_t *)0xe0000000ull;
    check(fb[479 * 640 + 639] == 0x123456, "framebuffer follows BAR0");
    fb[240 * 640 + 320] = 0xabcdef;
    mmio = (volatile uint16_t *)(uint64_t)(bar2 + 0x500);
    check(mmio[0] >= 0xb0c0 && mmio[1] == 640 && mmio[3] == 32,
          "DISPI registers through BAR2");
    serial_puts("calf-test: vga framebuffer drawn\n");
}

/* ---- i8042 ---- */

static int kbd_read(void)
{
    for (int i = 0; i < 200; i++)
        if (inb(0x64) & 0x01)
            return inb(0x60);
    return -1;
}

static void kbd_drain(void)
{
    while (inb(0x64) & 0x01)
        (void)inb(0x60);
}

/* Sends cmd (to the controller when ctl, else the keyboard) and expects
 * n bytes back. */
static void kbd_expect(int ctl, uint8_t cmd, const uint8_t *want, int n,
                       const char *what)
{
    int ok = 1;

    outb(ctl ? 0x64 : 0x60, cmd);
    for (int i = 0; i < n; i++) {
        int v = kbd_read();

        if (v != want[i]) {
            serial_puts("calf-test: i8042 ");
            serial_puts(what);
            serial_puts(": byte ");
            serial_put_hex(v < 0 ? 0xffff : (uint64_t)v);
            serial_puts("\n");
            ok = 0;
        }
    }
    check(ok && kbd_read() < 0, what);
}

static void ctr_write(uint8_t v)
{
    outb(0x64, 0x60);
    check(inb(0x64) & 0x08, "status bit 3 after a command");
    outb(0x60, v);
    check(!(inb(0x64) & 0x08), "status bit 3 clear after data");
}

static int irq1_pending(void)
{
    outb(0x20, 0x0a); /* OCW3: read IRR */
    return inb(0x20) & 0x02;
}

static void vga_kbd(void)
{
    static const uint8_t ok55[] = { 0x55 }, ack[] = { 0xfa };
    static const uint8_t bat[] = { 0xfa, 0xaa }, echo[] = { 0xee };
    static const uint8_t id_x[] = { 0xfa, 0xab, 0x41 }, id[] = { 0xfa, 0xab, 0x83 };
    static const uint8_t set2_x[] = { 0xfa, 0x41 }, set2[] = { 0xfa, 0x02 };
    static const uint8_t set1[] = { 0xfa, 0x01 };
    int ctr;

    kbd_drain();
    kbd_expect(1, 0xaa, ok55, 1, "controller self test");
    outb(0x64, 0x20);
    ctr = kbd_read();
    check(ctr >= 0 && (ctr & 0x40), "command byte has translation on");
    ctr_write(0x45);                        /* IRQ 1, translate */
    kbd_expect(0, 0xff, bat, 2, "keyboard reset: ACK, BAT passed");
    kbd_expect(0, 0xf2, id_x, 3, "identify, translated: AB 41");
    kbd_expect(0, 0xee, echo, 1, "echo");
    kbd_expect(0, 0xed, ack, 1, "set LEDs");
    kbd_expect(0, 0x07, ack, 1, "LED bits");
    kbd_expect(0, 0xf0, ack, 1, "scan code set command");
    kbd_expect(0, 0x00, set2_x, 2, "scan code set 2, translated: 41");
    ctr_write(0x05);                        /* translation off */
    kbd_expect(0, 0xf2, id, 3, "identify: AB 83");
    kbd_expect(0, 0xf0, ack, 1, "scan code set command");
    kbd_expect(0, 0x00, set2, 2, "scan code set 2");
    kbd_expect(0, 0xf0, ack, 1, "scan code set command");
    kbd_expect(0, 0x01, ack, 1, "select set 1");
    kbd_expect(0, 0xf0, ack, 1, "scan code set command");
    kbd_expect(0, 0x00, set1, 2, "scan code set 1");
    /* D2 puts a byte in the output buffer as if the keyboard sent it;
     * with the IRQ bit on it raises IRQ 1. */
    outb(0x64, 0xd2);
    outb(0x60, 0x1c);
    check(irq1_pending(), "IRQ 1 with a byte in the output buffer");
    check(kbd_read() == 0x1c, "D2 byte in the output buffer");
    ctr_write(0x45);
    serial_puts("calf-test: i8042 protocol done\n");
}

/* Hostile register values: calf must draw something bounded (or
 * nothing) and never read past its memory.  Each leaves one state for
 * the screenshot at exit. */
static void vga_hostile_dispi(void)
{
    dispi_write(4, 0);
    dispi_write(1, 2560);
    dispi_write(2, 1600);
    dispi_write(3, 32);
    dispi_write(4, 0xc1);                   /* 16.4 MB: more than there is */
    dispi_write(6, 1);                      /* narrower than XRES */
    dispi_write(8, 0xffff);
    dispi_write(9, 0xffff);
    dispi_write(3, 7);                      /* no such depth */
    dispi_write(0xffff, 0x1234);
    (void)dispi_read(0xffff);
    serial_puts("calf-test: hostile DISPI values written\n");
}

static void vga_hostile_crtc(int chain4)
{
    crtc_write(0x11, 0x00);                 /* unlock CR0-7 */
    for (uint8_t i = 0; i < 0x19; i++)
        crtc_write(i, 0xff);
    crtc_write(0x09, chain4 ? 0x00 : 0x80); /* 1-line cells, or doubled */
    if (chain4) {
        outb(0x3c4, 4);
        outb(0x3c5, 0x08);
        outb(0x3ce, 5);
        outb(0x3cf, 0x40);
        outb(0x3ce, 6);
        outb(0x3cf, 0x01);
    } else {
        outb(0x3ce, 6);
        outb(0x3cf, 0x00);                  /* text at 0xA0000, 128K */
    }
    outb(0x3c6, 0x00);                      /* PEL mask */
    for (int i = 0; i < 1000; i++)
        outb(0x3c9, (uint8_t)i);            /* DAC index wraps */
    serial_puts("calf-test: hostile CRTC values written\n");
}

static int word_is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && !memcmp_(s, word, len);
}

/* Host keys through --display sdl or QMP send-key: prints the first
 * count bytes the keyboard sends (set 1, translated by the controller);
 * ct.vga=keys reads 4, ct.vga=keys26 26. */
static void vga_keys(int count)
{
    static const char hex[] = "0123456789abcdef";
    char line[] = "calf-test: key xx\n";

    ctr_write(0x45);
    kbd_drain();
    serial_puts("calf-test: keyboard ready\n");
    for (int n = 0; n < count;) {
        int v;

        if (!(inb(0x64) & 0x01))
            continue;
        v = inb(0x60);
        line[15] = hex[v >> 4];
        line[16] = hex[v & 15];
        serial_puts(line);
        n++;
    }
}

int vga_test(const char *what, size_t len)
{
    if (word_is(what, len, "text"))
        vga_text();
    else if (word_is(what, len, "lfb"))
        vga_lfb();
    else if (word_is(what, len, "kbd"))
        vga_kbd();
    else if (word_is(what, len, "keys"))
        vga_keys(4);
    else if (word_is(what, len, "keys26"))
        vga_keys(26);
    else if (word_is(what, len, "hdispi"))
        vga_hostile_dispi();
    else if (word_is(what, len, "htext"))
        vga_hostile_crtc(0);
    else if (word_is(what, len, "hchain4"))
        vga_hostile_crtc(1);
    else
        check(0, "ct.vga= is text, lfb, kbd, keys, hdispi, htext or hchain4");
    return failures;
}
