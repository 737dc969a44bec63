/* The i440FX host bridge's chipset registers (00:00.0; the bridge itself,
 * its IDs and configuration space belong to devices/pci.c).  SeaBIOS opens
 * the BIOS area for writing through the PAM registers before it copies
 * itself there, and closes it again at the end of POST.  In calf the
 * area 0xC0000-0xFFFFF is plain guest RAM from the start, holding the
 * ROM's last 128 KiB: the registers are kept and read back but remap
 * nothing, which gives the firmware the state it expects after its own
 * writes. */
#include "devices/devices.h"

#include <errno.h>

#include "devices/pci.h"

#define I440FX_PAM0   0x59      /* 0xF0000-0xFFFFF in its high nibble */
#define I440FX_PAM_N  7         /* 0x59..0x5f */
#define I440FX_SMRAM  0x72
#define PAM_BITS      0x33      /* read enable / write enable, per half */
#define SMRAM_DEFAULT 0x02      /* C_BASE_SEG: SMRAM at 0xA0000 */
#define SMRAM_WMASK   0x78      /* D_OPEN, D_CLS, D_LCK, G_SMRAME */

int i440fx_init(struct pci_dev *host_bridge)
{
    if (!host_bridge)
        return -ENODEV;
    pci_cfg_init(host_bridge, I440FX_PAM0, 1, 0, PAM_BITS & 0xf0);
    for (unsigned i = 1; i < I440FX_PAM_N; i++)
        pci_cfg_init(host_bridge, I440FX_PAM0 + i, 1, 0, PAM_BITS);
    pci_cfg_init(host_bridge, I440FX_SMRAM, 1, SMRAM_DEFAULT, SMRAM_WMASK);
    return 0;
}
