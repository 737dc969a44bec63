/* The MP table's PCI interrupt entries: where INTx of a PCI slot goes
 * for a guest that does not read ACPI (Linux with acpi=off). */
#include "guest.h"

#define MP_BUS 1
#define MP_INTSRC 3

static int sum_ok(const uint8_t *p, unsigned len)
{
    uint8_t sum = 0;

    while (len--)
        sum += *p++;
    return sum == 0;
}

/* The configuration table, or 0 (found by its floating pointer in the
 * BIOS area, as cpus.c does). */
static const uint8_t *mpc_find(void)
{
    for (uintptr_t a = 0xf0000; a < 0x100000; a += 16) {
        const uint8_t *p = (const uint8_t *)a, *mpc;

        if (p[0] != '_' || p[1] != 'M' || p[2] != 'P' || p[3] != '_' ||
            !sum_ok(p, 16))
            continue;
        mpc = (const uint8_t *)(uintptr_t)*(const uint32_t *)(p + 4);
        if (mpc && mpc[0] == 'P' && mpc[1] == 'C' && mpc[2] == 'M' &&
            mpc[3] == 'P' && sum_ok(mpc, *(const uint16_t *)(mpc + 4)))
            return mpc;
        return 0;
    }
    return 0;
}

int mp_pci_irq(unsigned slot, unsigned pin)
{
    const uint8_t *mpc = mpc_find(), *p, *end;
    int pci_bus = -1;

    if (!mpc)
        return MP_NO_TABLE;
    end = mpc + *(const uint16_t *)(mpc + 4);
    /* Bus entries come before interrupt entries (MP 1.4, 4.3). */
    for (p = mpc + 44; p < end; p += p[0] == 0 ? 20 : 8) {
        if (p[0] == MP_BUS && p[2] == 'P' && p[3] == 'C' && p[4] == 'I')
            pci_bus = p[1];
        if (p[0] == MP_INTSRC && pci_bus >= 0 && p[1] == 0 &&
            p[4] == pci_bus && p[5] == (slot << 2 | pin))
            return p[7];
    }
    return MP_NO_ENTRY;
}
