/* The PIIX3 IDE function (8086:7010) at 00:01.1: two legacy channels
 * (0x1F0/0x3F6 on ISA IRQ 14, 0x170/0x376 on IRQ 15), master and slave
 * on each, ATA disks and ATAPI CD-ROMs, bus-master DMA through BAR4. */
#ifndef CALF_DEVICES_IDE_H
#define CALF_DEVICES_IDE_H

#include <stdbool.h>

#include "devices/disk.h"

/* primary master, primary slave, secondary master, slave */
#define IDE_DRIVES 4

struct pci;
struct bus;
struct ide;

/* The drives the command line asked for, by slot. */
struct ide_config {
    struct disk_opts drive[IDE_DRIVES];
    bool used[IDE_DRIVES];
};

/* Takes over o (an if=ide --disk): its index=N slot, else a CD-ROM goes
 * to the secondary master first (as on QEMU) and a disk to the first
 * free slot.  Returns the slot (channel * 2 + unit); prints why and
 * returns -ENOSPC/-EBUSY when it cannot. */
int ide_config_add(struct ide_config *c, struct disk_opts *o);
bool ide_config_any(const struct ide_config *c);
void ide_config_free(struct ide_config *c);

/* Opens the drives' images and adds the function at slot.fn (00:01.1 on
 * a PC, where the PIIX3 ISA bridge is function 0).  Messages go to stderr.
 * *out (if out): the controller, owned by the PCI bus. */
int ide_create(struct pci *pci, int slot, int fn, struct bus *bus,
               const struct ide_config *c, struct ide **out);

/* ---- The removable medium of the ATAPI drive in slot (0-3), for the
 * monitor (QEMU's eject, blockdev-change-medium and query-block).  They
 * take the channel's lock; not on a vCPU.  -ENODEV: no CD there. */
struct ide_media {
    bool tray_open, locked, inserted;
};
int ide_media_get(struct ide *ide, int slot, struct ide_media *m);
/* Opens the tray, as QEMU's do_open_tray(): a tray the guest locked
 * only gets an eject request (a media event) and -EBUSY, unless force,
 * which unlocks it first.  0 when open (or already). */
int ide_tray_open(struct ide *ide, int slot, bool force);
int ide_tray_close(struct ide *ide, int slot);
/* With the tray open: bs (NULL: none) becomes the medium, the drive owns
 * it; the old one is closed.  name: the image, for messages.  -EBUSY
 * when the tray is closed. */
int ide_medium_set(struct ide *ide, int slot, BlockDriverState *bs,
                   const char *name);
/* The tray opened (as ide_tray_open(), -EBUSY when locked and not
 * force), bs (NULL: none) put in as ide_medium_set(), and the tray
 * closed if close: one step under the channel's lock, so the guest
 * cannot close the tray in between (QMP eject, blockdev-change-medium;
 * QEMU's are one step under its big lock).  On an error nothing of bs
 * is taken. */
int ide_medium_change(struct ide *ide, int slot, bool force,
                      BlockDriverState *bs, const char *name, bool close);

#endif
