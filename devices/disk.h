/* The --disk option shared by every disk model (virtio-blk, IDE): one
 * parser and one way to open the image, so that format, readonly,
 * snapshot, cache, discard, serial and locking mean the same whatever
 * bus the disk sits on. */
#ifndef CALF_DEVICES_DISK_H
#define CALF_DEVICES_DISK_H

#include <stdbool.h>

#include "block/block.h"

#define DISK_SERIAL_MAX 20 /* virtio-blk GET_ID and ATA IDENTIFY both hold 20 */

enum disk_if { DISK_IF_VIRTIO, DISK_IF_IDE };
enum disk_cache { DISK_CACHE_WRITEBACK, DISK_CACHE_NONE, DISK_CACHE_UNSAFE };

struct disk_opts {
    char *spec;            /* the parsed copy: file points into it */
    const char *file;
    const char *format;    /* NULL: probe */
    int iface;             /* enum disk_if */
    int index;             /* IDE slot 0-3 (index=N), -1: next free */
    bool cdrom;            /* media=cdrom: an ATAPI drive, read-only */
    bool readonly, snapshot, unmap;
    bool modern;           /* disable-legacy: virtio 1af4:1042 only */
    int cache;             /* enum disk_cache */
    char serial[DISK_SERIAL_MAX + 1];
};

/* FILE[,format=F][,if=virtio|ide][,index=N][,media=disk|cdrom][,readonly]
 * [,snapshot][,cache=writeback|none|unsafe][,discard=ignore|unmap]
 * [,serial=S][,disable-legacy[=on|off]] (virtio only); ",," is a comma
 * inside FILE.  Prints "calf: --disk ..." on a bad spec; returns 0 or a
 * negative errno.  disk_opts_free() after. */
int disk_parse(const char *spec, struct disk_opts *o);
void disk_opts_free(struct disk_opts *o);

/* Opens the image as the options say (write-locked unless read-only or a
 * snapshot overlay); prints what went wrong and returns NULL on failure. */
BlockDriverState *disk_open(const struct disk_opts *o);

/* The images disk_open() opened, in opening order (the machine opens
 * them in --disk order): for saving and restoring the VM into them
 * (vmm/snapshot.c).  Valid until the disk models close them
 * (machine_destroy()).  Returns how many; fills at most max. */
struct disk_opened {
    BlockDriverState *bs;
    const char *file;      /* as given to --disk */
    bool overlay;          /* ,snapshot: a throw-away overlay */
};
int disk_opened_list(struct disk_opened *out, int max);

/* The spec of a --cdrom FILE: FILE with its commas doubled, as an IDE
 * cdrom.  malloc'd; NULL on ENOMEM. */
char *disk_cdrom_spec(const char *file);

#endif
