/* ct.poweroff=1: the FADT must describe real fixed hardware (not
 * hardware-reduced), with a FACS, a PM timer that counts, and a PM1
 * control register through which S5 powers the machine off — the way an
 * OS shuts down.  Only failures come back. */
#include "guest.h"

#define FADT_HW_REDUCED (1u << 20)
#define SLP_EN          0x2000

static int bad(const char *why)
{
    serial_puts("calf-test: poweroff: ");
    serial_puts(why);
    serial_puts("\n");
    return 1;
}

/* ct.pwrbtn=1: enables the fixed power button's event (the FADT must
 * not set PWR_BUTTON) and waits for it (QMP system_powerdown), then
 * clears it; the S5 of ct.poweroff follows. */
#define FADT_PWR_BUTTON (1u << 4)
#define PM1_PWRBTN      0x0100

int acpi_wait_power_button(uint64_t rsdp)
{
    const uint8_t *fadt = acpi_find_table(rsdp, "FACP");
    uint16_t evt;

    if (!fadt)
        return bad("no FADT");
    if (*(const uint32_t *)(fadt + 112) & FADT_PWR_BUTTON)
        return bad("the FADT has no fixed power button");
    evt = (uint16_t)*(const uint32_t *)(fadt + 56); /* PM1a_EVT_BLK */
    if (!evt || fadt[88] != 4)
        return bad("no PM1a event block");
    outw(evt, PM1_PWRBTN);            /* a stale press goes */
    outw((uint16_t)(evt + 2), PM1_PWRBTN);
    serial_puts("calf-test: waiting for the power button\n");
    while (!(inw(evt) & PM1_PWRBTN))
        __asm__ volatile("pause");
    serial_puts("calf-test: power button pressed\n");
    outw(evt, PM1_PWRBTN);
    if (inw(evt) & PM1_PWRBTN)
        return bad("PWRBTN_STS does not clear");
    return 0;
}

int acpi_poweroff(uint64_t rsdp)
{
    const uint8_t *fadt = acpi_find_table(rsdp, "FACP");
    const uint8_t *facs;
    uint32_t pm1_cnt, pm_tmr, t0, t1 = 0;

    if (!fadt)
        return bad("no FADT");
    if (*(const uint32_t *)(fadt + 112) & FADT_HW_REDUCED)
        return bad("FADT is hardware-reduced");
    facs = (const uint8_t *)(uintptr_t)*(const uint32_t *)(fadt + 36);
    if (!facs || facs[0] != 'F' || facs[1] != 'A' || facs[2] != 'C' ||
        facs[3] != 'S' || ((uintptr_t)facs & 63))
        return bad("no 64-byte aligned FACS");
    pm1_cnt = *(const uint32_t *)(fadt + 64);
    pm_tmr = *(const uint32_t *)(fadt + 76);
    if (!pm1_cnt || !pm_tmr || fadt[89] != 2 || fadt[91] != 4)
        return bad("no PM1a control or PM timer block");
    t0 = inl((uint16_t)pm_tmr) & 0xffffff;
    for (int i = 0; i < 1000 && t1 == 0; i++)
        if ((inl((uint16_t)pm_tmr) & 0xffffff) != t0)
            t1 = 1;
    if (!t1)
        return bad("the PM timer does not count");
    if (!(inl((uint16_t)pm1_cnt) & 1))
        return bad("SCI_EN is clear (not in ACPI mode)");
    serial_puts("calf-test: poweroff via S5\n");
    outw((uint16_t)pm1_cnt, SLP_EN); /* SLP_TYP 0: the DSDT's _S5 */
    return bad("still running after S5");
}
