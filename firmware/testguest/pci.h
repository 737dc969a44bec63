/* PCI configuration mechanism #1 for the test guest (bus 0 only). */
#ifndef CALF_TESTGUEST_PCI_H
#define CALF_TESTGUEST_PCI_H

#include <stdint.h>

uint32_t pci_read32(unsigned slot, unsigned off);
void pci_write32(unsigned slot, unsigned off, uint32_t v);
uint16_t pci_read16(unsigned slot, unsigned off);
uint8_t pci_read8(unsigned slot, unsigned off);
void pci_write16(unsigned slot, unsigned off, uint16_t v);
/* The first slot >= from with vendor:device, or -1. */
int pci_find(uint16_t vendor, uint16_t device, int from);
/* Size of memory BAR bar by the write-all-ones probe (restores it). */
uint32_t pci_bar_size(unsigned slot, int bar);

#endif
