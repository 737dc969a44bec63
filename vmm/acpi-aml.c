/* The DSDT's AML: a small encoder for the few objects calf's machine
 * needs, and the two it describes.
 *
 * - \_SB.PCI0, the host bridge.  A guest with ACPI finds PCI roots only
 *   in the DSDT (Linux does not probe bus 0 by itself then): its bus
 *   range, the config ports, the I/O and memory windows, and _PRT (INTx
 *   of slot s, pin p on GSI PCI_INTX_GSI_BASE + ((s + p) & 3), as
 *   devices/pci.c drives it).
 * - \_S5, the sleep type the PM block powers off on. */
#include <string.h>

#include "devices/pci.h"
#include "vmm/acpi-aml.h"


struct aml {
    uint8_t *p;
    size_t len, max;
};

static void aml_bytes(struct aml *a, const void *b, size_t n)
{
    if (a->len + n <= a->max)
        memcpy(a->p + a->len, b, n);
    a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

/* Moves the bytes from start on to make room for the PkgLength that
 * covers them (ACPI 6.4, 20.2.4: the length counts its own bytes). */
static void aml_pkg_close(struct aml *a, size_t start)
{
    size_t body = a->len - start;
    size_t n = body + 1 < 0x40 ? 1 : body + 2 < 0x1000 ? 2 : 3;
    size_t total = body + n;
    uint8_t enc[3];

    if (n == 1) {
        enc[0] = (uint8_t)total;
    } else {
        enc[0] = (uint8_t)((n - 1) << 6 | (total & 0x0f));
        enc[1] = (uint8_t)(total >> 4);
        enc[2] = (uint8_t)(total >> 12);
    }
    if (a->len + n > a->max) {
        a->len += n;
        return;
    }
    memmove(a->p + start + n, a->p + start, body);
    memcpy(a->p + start, enc, n);
    a->len += n;
}

static void aml_int(struct aml *a, uint32_t v)
{
    if (v <= 1) {
        aml_byte(a, (uint8_t)v); /* ZeroOp / OneOp */
    } else if (v <= 0xff) {
        aml_byte(a, 0x0a);
        aml_byte(a, (uint8_t)v);
    } else {
        aml_byte(a, 0x0c);
        for (int i = 0; i < 4; i++)
            aml_byte(a, (uint8_t)(v >> (8 * i)));
    }
}

static void aml_crs(struct aml *a)
{
    static const uint8_t crs[] = {
        /* WordBusNumber 0-0xff */
        0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0x00, 0x00, 0xff, 0x00,
        0, 0, 0x00, 0x01,
        /* IO 0xcf8, 8 ports */
        0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08,
        /* WordIO 0x0000-0x0cf7 and 0x0d00-0xffff */
        0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x00, 0xf7, 0x0c,
        0, 0, 0xf8, 0x0c,
        0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff,
        0, 0, 0x00, 0xf3,
        /* DWordMemory 0xc0000000-0xfebfffff, read-write */
        0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0,
        0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe, 0, 0, 0, 0,
        0x00, 0x00, 0xc0, 0x3e,
        0x79, 0x00, /* end tag */
    };
    size_t start;

    aml_bytes(a, "\x08_CRS\x11", 6); /* Name(_CRS, Buffer */
    start = a->len;
    aml_int(a, sizeof(crs));
    aml_bytes(a, crs, sizeof(crs));
    aml_pkg_close(a, start);
}

static void aml_prt(struct aml *a)
{
    size_t start, entry;

    aml_bytes(a, "\x08_PRT\x12", 6); /* Name(_PRT, Package */
    start = a->len;
    aml_byte(a, (PCI_SLOTS - 1) * 4);
    for (unsigned s = 1; s < PCI_SLOTS; s++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            aml_byte(a, 0x12);
            entry = a->len;
            aml_byte(a, 4);
            aml_int(a, s << 16 | 0xffff);
            aml_int(a, pin);
            aml_int(a, 0); /* no link device: a GSI */
            aml_int(a, PCI_INTX_GSI_BASE + ((s + pin) & (PCI_INTX_LINES - 1)));
            aml_pkg_close(a, entry);
        }
    }
    aml_pkg_close(a, start);
}

static void aml_pci0(struct aml *a)
{
    size_t scope, dev;

    aml_byte(a, 0x10); /* Scope(\_SB) */
    scope = a->len;
    aml_bytes(a, "\\_SB_", 5);
    aml_bytes(a, "\x5b\x82", 2); /* Device(PCI0) */
    dev = a->len;
    aml_bytes(a, "PCI0", 4);
    aml_bytes(a, "\x08_HID\x0c\x41\xd0\x0a\x03", 10); /* EisaId PNP0A03 */
    aml_bytes(a, "\x08_UID\x00", 6);
    aml_bytes(a, "\x08_BBN\x00", 6);
    aml_crs(a);
    aml_prt(a);
    aml_pkg_close(a, dev);
    aml_pkg_close(a, scope);
}

/* Name (_S5, Package () { typ, typ }) */
static void aml_s5(struct aml *a, uint8_t typ)
{
    size_t start;

    aml_bytes(a, "\x08_S5_\x12", 6);
    start = a->len;
    aml_byte(a, 2);
    aml_int(a, typ);
    aml_int(a, typ);
    aml_pkg_close(a, start);
}

size_t acpi_aml_dsdt(uint8_t *buf, size_t max, bool pci, uint8_t s5_typ)
{
    struct aml a = { buf, 0, max };

    if (pci)
        aml_pci0(&a);
    aml_s5(&a, s5_typ);
    return a.len <= max ? a.len : 0;
}
