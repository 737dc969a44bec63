/* PCI configuration space through ports 0xCF8/0xCFC: each access is two
 * port exits, so scans stay short (32 slots, function 0). */
#include "guest.h"
#include "pci.h"

static void pci_select(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (off & 0xfc));
}

uint32_t pci_read32(unsigned slot, unsigned off)
{
    pci_select(slot, off);
    return inl(0xcfc);
}

void pci_write32(unsigned slot, unsigned off, uint32_t v)
{
    pci_select(slot, off);
    outl(0xcfc, v);
}

uint16_t pci_read16(unsigned slot, unsigned off)
{
    pci_select(slot, off);
    return inw((uint16_t)(0xcfc + (off & 2)));
}

uint8_t pci_read8(unsigned slot, unsigned off)
{
    pci_select(slot, off);
    return inb((uint16_t)(0xcfc + (off & 3)));
}

void pci_write16(unsigned slot, unsigned off, uint16_t v)
{
    pci_select(slot, off);
    outw((uint16_t)(0xcfc + (off & 2)), v);
}

int pci_find(uint16_t vendor, uint16_t device, int from)
{
    uint32_t want = vendor | (uint32_t)device << 16;

    for (int slot = from; slot < 32; slot++)
        if (pci_read32((unsigned)slot, 0) == want)
            return slot;
    return -1;
}

uint32_t pci_bar_size(unsigned slot, int bar)
{
    unsigned off = 0x10 + 4 * (unsigned)bar;
    uint32_t old = pci_read32(slot, off), probe;

    pci_write32(slot, off, 0xffffffffu);
    probe = pci_read32(slot, off);
    pci_write32(slot, off, old);
    probe &= ~0xfu;
    return probe ? ~probe + 1 : 0;
}
