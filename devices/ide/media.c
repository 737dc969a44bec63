/* The removable medium of an ATAPI drive, as the monitor changes it
 * (QEMU's eject and blockdev-change-medium): see ide.h.
 *
 * Locking: these run on calf's main thread and take only the channel's
 * lock, which a vCPU takes under the bus lock and the DMA thread alone.
 * The image a DMA request reads is the one it was made with (req.bs):
 * before an image goes, a transfer of the drive that is moving is
 * waited for (the thread needs nothing but the channel's lock to end)
 * and one waiting for the start bit is failed (NOT READY, no medium). */
#include "devices/ide/ide-int.h"
#include "devices/ide/ide.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct ide_drive *cd_drive(struct ide *ide, int slot)
{
    struct ide_drive *d;

    if (!ide || slot < 0 || slot >= IDE_DRIVES)
        return NULL;
    d = &ide->ch[slot / 2].drive[slot % 2];
    return d->present && d->atapi ? d : NULL;
}

int ide_media_get(struct ide *ide, int slot, struct ide_media *m)
{
    struct ide_drive *d = cd_drive(ide, slot);

    if (!d)
        return -ENODEV;
    pthread_mutex_lock(&d->ch->lock);
    m->tray_open = d->ejected;
    m->locked = d->locked;
    m->inserted = d->bs != NULL;
    pthread_mutex_unlock(&d->ch->lock);
    return 0;
}

/* QEMU's change-media callback: the guest is told on its next commands
 * and by a media event.  ch->lock held. */
static void media_changed(struct ide_drive *d)
{
    d->cdrom_changed = 1;
    d->ev_new_media = true;
    d->ev_eject_request = false;
}

int ide_tray_open(struct ide *ide, int slot, bool force)
{
    struct ide_drive *d = cd_drive(ide, slot);
    int ret = 0;

    if (!d)
        return -ENODEV;
    pthread_mutex_lock(&d->ch->lock);
    if (d->ejected) {
        pthread_mutex_unlock(&d->ch->lock);
        return 0;
    }
    if (d->locked) {
        /* the guest is asked (a media event); force takes the lock off */
        d->ev_eject_request = true;
        if (force)
            d->locked = false;
        else
            ret = -EBUSY;
    }
    if (!ret) {
        d->ejected = true;
        media_changed(d);
        disk_tray_moved(d->stats, true);
    }
    pthread_mutex_unlock(&d->ch->lock);
    return ret;
}

int ide_tray_close(struct ide *ide, int slot)
{
    struct ide_drive *d = cd_drive(ide, slot);

    if (!d)
        return -ENODEV;
    pthread_mutex_lock(&d->ch->lock);
    if (d->ejected) {
        d->ejected = false;
        media_changed(d);
        disk_tray_moved(d->stats, false);
    }
    pthread_mutex_unlock(&d->ch->lock);
    return 0;
}

/* Takes bs (NULL: none) in as the medium, ch->lock held and the tray
 * open; n (or NULL) its name.  The lock is dropped while the drive's DMA
 * transfer ends, so the guest may close the tray meanwhile: reopen is
 * set to open it again (QEMU's change is one step), else that is -EBUSY.
 * *old: the medium taken out, for the caller to close unlocked. */
static int swap_locked(struct ide_drive *d, BlockDriverState *bs, char *n,
                       bool reopen, BlockDriverState **old)
{
    struct ide_channel *ch = d->ch;

    /* the drive's transfer on the engine ends with the old image */
    while (ch->dma_running && ch->active.d == d)
        pthread_cond_wait(&ch->cond, &ch->lock);
    if (!d->ejected) {
        if (!reopen)
            return -EBUSY;
        d->ejected = true;
        media_changed(d);
        disk_tray_moved(d->stats, true);
    }
    if (ch->dma_pending && ch->req.d == d) {
        ide_dma_stop(ch, d);
        atapi_dma_done(d, -ENOMEDIUM);
    }
    *old = d->bs;
    d->bs = bs;
    if (d->stats)
        atomic_store(&d->stats->backing_depth, disk_backing_depth(bs));
    d->sectors = bs ? bs->size / CD_BLOCK : 0;
    if (n) {
        free(d->name);
        d->name = n;
    }
    return 0;
}

int ide_medium_set(struct ide *ide, int slot, BlockDriverState *bs,
                   const char *name)
{
    struct ide_drive *d = cd_drive(ide, slot);
    BlockDriverState *old = NULL;
    char *n = NULL;
    int ret;

    if (!d)
        return -ENODEV;
    if (name && !(n = strdup(name)))
        return -ENOMEM;
    pthread_mutex_lock(&d->ch->lock);
    ret = d->ejected ? swap_locked(d, bs, n, false, &old) : -EBUSY;
    pthread_mutex_unlock(&d->ch->lock);
    if (ret)
        free(n);
    if (old) {
        disk_forget(old);
        blk_close(old);
    }
    return ret;
}

int ide_medium_change(struct ide *ide, int slot, bool force,
                      BlockDriverState *bs, const char *name, bool close)
{
    struct ide_drive *d = cd_drive(ide, slot);
    BlockDriverState *old = NULL;
    char *n = NULL;
    int ret = 0;

    if (!d)
        return -ENODEV;
    if (name && !(n = strdup(name)))
        return -ENOMEM;
    pthread_mutex_lock(&d->ch->lock);
    if (!d->ejected && d->locked) {
        /* as ide_tray_open(): the guest is asked, force unlocks */
        d->ev_eject_request = true;
        if (force)
            d->locked = false;
        else
            ret = -EBUSY;
    }
    if (!ret && !d->ejected) {
        d->ejected = true;
        media_changed(d);
        disk_tray_moved(d->stats, true);
    }
    if (!ret)
        ret = swap_locked(d, bs, n, true, &old);
    if (!ret && close) {
        d->ejected = false;
        media_changed(d);
        disk_tray_moved(d->stats, false);
    }
    pthread_mutex_unlock(&d->ch->lock);
    if (ret)
        free(n);
    if (old) {
        disk_forget(old);
        blk_close(old);
    }
    return ret;
}
