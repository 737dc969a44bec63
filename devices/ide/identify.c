/* IDENTIFY DEVICE data of an ATA disk (ATA/ATAPI-7 table 16): the words
 * SeaBIOS, Linux's libata and DOS-era drivers read. */
#include "devices/ide/ide-int.h"

#include <string.h>

void ide_put_string(uint16_t *w, const char *s, unsigned words)
{
    size_t n = strlen(s);

    for (unsigned i = 0; i < words * 2; i++) {
        uint8_t c = i < n ? (uint8_t)s[i] : ' ';

        if (i & 1)
            w[i / 2] |= c;
        else
            w[i / 2] = (uint16_t)(c << 8);
    }
}

static void identify_put32(uint16_t *w, uint32_t v)
{
    w[0] = (uint16_t)v;
    w[1] = (uint16_t)(v >> 16);
}

static void identify_checksum(uint16_t *w)
{
    uint8_t sum = 0xa5;

    w[255] = 0xa5;
    for (int i = 0; i < 255; i++)
        sum = (uint8_t)(sum + (w[i] & 0xff) + (w[i] >> 8));
    w[255] = (uint16_t)(0xa5 | (uint8_t)-sum << 8);
}

void ata_identify(struct ide_drive *d, uint16_t *w)
{
    uint64_t lba28 = d->sectors > 0x0fffffff ? 0x0fffffff : d->sectors;
    uint32_t cur = (uint32_t)d->cyls * d->lheads * d->lspt;

    memset(w, 0, 512);
    w[0] = 0x0040;                     /* fixed, not removable */
    w[1] = d->cyls;
    w[3] = d->heads;
    w[6] = d->spt;
    ide_put_string(w + 10, d->serial, 10);
    ide_put_string(w + 23, "1.0", 4);
    ide_put_string(w + 27, "CALF HARDDISK", 20);
    w[47] = 0x8000 | IDE_MAX_MULT;
    w[49] = 1 << 11 | 1 << 9 | 1 << 8; /* IORDY, LBA, DMA */
    w[50] = 0x4000;
    w[51] = w[52] = 0x0200;            /* PIO timing mode 2 */
    w[53] = 0x0007;                    /* words 54-58, 64-70, 88 valid */
    w[54] = d->cyls;
    w[55] = d->lheads;
    w[56] = d->lspt;
    identify_put32(w + 57, cur);
    w[59] = d->mult ? (uint16_t)(0x0100 | d->mult) : 0;
    identify_put32(w + 60, (uint32_t)lba28);
    w[63] = 0x0007 |
            ((d->xfer_mode & 0xf8) == 0x20 ? 0x100 << (d->xfer_mode & 7) : 0);
    w[64] = 0x0003;                    /* PIO 3 and 4 */
    w[65] = w[66] = w[67] = w[68] = 120;
    w[80] = 0x00f0;                    /* ATA/ATAPI-4 to -7 */
    w[82] = 1 << 14 | 1 << 5;          /* NOP, write cache */
    w[83] = 1 << 14 | 1 << 13 | 1 << 12 | 1 << 10; /* FLUSH EXT, FLUSH, LBA48 */
    w[84] = 1 << 14;
    w[85] = 1 << 14 | (d->wcache ? 1 << 5 : 0);
    w[86] = 1 << 13 | 1 << 12 | 1 << 10;
    w[87] = 1 << 14;
    w[88] = 0x003f |
            ((d->xfer_mode & 0xf8) == 0x40 ? 0x100 << (d->xfer_mode & 7) : 0);
    w[93] = 1 << 14 | 1 << 13 | 1;     /* reset result, 80-wire cable */
    identify_put32(w + 100, (uint32_t)d->sectors);
    identify_put32(w + 102, (uint32_t)(d->sectors >> 32));
    /* one 512-byte logical sector per physical */
    w[106] = 0x4000;
    identify_checksum(w);
}
