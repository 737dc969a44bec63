/* AML for the DSDT (vmm/acpi-aml.c). */
#ifndef CALF_VMM_ACPI_AML_H
#define CALF_VMM_ACPI_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The DSDT body into buf: \_SB.PCI0 when pci (the host bridge, its
 * windows and INTx routing), then \_S5 with sleep type s5_typ.  Returns
 * its length, 0 when buf is too small. */
size_t acpi_aml_dsdt(uint8_t *buf, size_t max, bool pci, uint8_t s5_typ);

#endif
