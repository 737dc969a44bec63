/* ct.reset: a guest reboot seen from inside.  The first boot marks an
 * NVRAM byte of the CMOS (battery-backed on a PC, so a reset keeps it;
 * RAM would not be a fair witness: firmware may clear it, and a VMM
 * that never reloaded anything would leave a RAM marker in place just
 * the same), spoils what the VMM has to load again (the kernel image's
 * data, the command line, the e820 count in the zero page, the initrd)
 * and resets the machine.  The second boot finds the mark, clears it and
 * runs the usual checks, which only pass if everything was reloaded. */
#include "guest.h"

#define CMOS_INDEX 0x70
#define CMOS_DATA  0x71
#define CMOS_MARK_REG 0x7e  /* unused by the RTC, BIOSes and calf */
#define CMOS_MARK 0xa5

/* In .data: comes from the kernel image, so only a reload restores it. */
static volatile uint32_t image_pristine = 0xca1fb007;
static int second_boot;

static uint8_t cmos_read(uint8_t reg)
{
    outb(CMOS_INDEX, reg);
    return inb(CMOS_DATA);
}

static void cmos_write(uint8_t reg, uint8_t v)
{
    outb(CMOS_INDEX, reg);
    outb(CMOS_DATA, v);
}

int reset_note_boot(void)
{
    second_boot = cmos_read(CMOS_MARK_REG) == CMOS_MARK;
    return second_boot;
}

int reset_check(void)
{
    int failures = 0;

    serial_puts("calf-test: reset: second boot\n");
    cmos_write(CMOS_MARK_REG, 0);
    if (image_pristine != 0xca1fb007) {
        serial_puts("calf-test: check failed: kernel image not reloaded\n");
        failures++;
    }
    return failures;
}

void reset_now(int triple, char *cmdline, uint8_t *initrd,
               uint64_t initrd_size, uint8_t *e820_count)
{
    if (!cmdline) { /* ct.reset=loop: every boot resets, unmarked */
        serial_puts("calf-test: reset: again\n");
        outb(0x64, 0xfe);
    }
    serial_puts(triple ? "calf-test: reset: first boot, triple fault\n"
                       : "calf-test: reset: first boot, i8042 reset\n");
    cmos_write(CMOS_MARK_REG, CMOS_MARK);
    image_pristine = 0;
    if (cmdline)
        memset(cmdline, 'X', strlen(cmdline));
    if (initrd)
        memset(initrd, 0, initrd_size < 4096 ? initrd_size : 4096);
    if (e820_count)
        *e820_count = 0;
    if (triple) {
        /* No IDT at all: the #UD cannot be delivered, nor the #DF. */
        static const struct { uint16_t limit; uint64_t base; }
            __attribute__((packed)) none = { 0, 0 };

        __asm__ volatile("lidt %0; ud2" : : "m"(none));
    }
    outb(0x64, 0xfe);
    for (;;)
        __asm__ volatile("pause");
}
