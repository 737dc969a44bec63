/* Bus-master IDE (PIIX3 BAR4: command, status and PRD table pointer per
 * channel, 8 bytes apart).  A DMA command waits until the guest sets the
 * start bit, then the channel's own thread walks the PRD table, checks
 * every entry against guest RAM with pci_dma() and moves the data with
 * the block layer straight into (or out of) guest memory. */
#include "devices/ide/ide-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci.h"

#define BM_CMD_START  0x01
#define BM_CMD_TO_MEM 0x08
#define BM_ST_ACTIVE  0x01
#define BM_ST_ERR     0x02
#define BM_ST_INT     0x04
#define BM_ST_CAPABLE 0x60   /* drive 0/1 DMA capable: firmware sets them */
#define PRD_EOT       0x8000
#define PRD_MAX       8192   /* a table lives in one 64 KiB region */
#define DMA_IOV       256    /* entries per block-layer request */

/* ---- registers ---- */

/* Hands a waiting request to the thread once the guest started DMA. */
static void dma_kick(struct ide_channel *ch)
{
    if (!ch->dma_pending || ch->dma_running || !(ch->bm_cmd & BM_CMD_START))
        return;
    ch->dma_pending = false;
    ch->dma_running = true;
    ch->active = ch->req;
    pthread_cond_broadcast(&ch->cond);
}

static void bm_cmd_write(struct ide_channel *ch, uint8_t v)
{
    uint8_t old = ch->bm_cmd;

    ch->bm_cmd = v & (BM_CMD_START | BM_CMD_TO_MEM);
    if (!(old & BM_CMD_START) && (v & BM_CMD_START)) {
        ch->bm_status |= BM_ST_ACTIVE;
        dma_kick(ch);
    } else if ((old & BM_CMD_START) && !(v & BM_CMD_START) &&
               !ch->dma_running) {
        /* Stopping an engine with nothing in flight; a transfer the
         * thread already runs completes and then clears ACTIVE itself. */
        ch->bm_status &= (uint8_t)~BM_ST_ACTIVE;
    }
}

static uint8_t bm_read(struct ide_channel *ch, unsigned reg)
{
    switch (reg) {
    case 0: return ch->bm_cmd;
    case 2: return ch->bm_status;
    case 4: case 5: case 6: case 7:
        return (uint8_t)(ch->prd_addr >> (8 * (reg - 4)));
    }
    return 0;
}

static void bm_write(struct ide_channel *ch, unsigned reg, uint8_t v)
{
    unsigned shift = 8 * (reg - 4);

    switch (reg) {
    case 0:
        bm_cmd_write(ch, v);
        break;
    case 2:
        /* ERR and INT are write-one-to-clear, the capable bits plain. */
        ch->bm_status = (uint8_t)((ch->bm_status &
                                   (BM_ST_ACTIVE | BM_ST_ERR | BM_ST_INT) &
                                   ~(v & (BM_ST_ERR | BM_ST_INT))) |
                                  (v & BM_ST_CAPABLE));
        break;
    case 4: case 5: case 6: case 7:
        ch->prd_addr = (ch->prd_addr & ~(0xffu << shift)) |
                       (uint32_t)v << shift;
        ch->prd_addr &= ~3u; /* dword aligned */
        break;
    }
}

void ide_bm_rw(struct ide *ide, uint64_t off, uint8_t *data, unsigned size,
               bool is_write)
{
    for (unsigned i = 0; i < size && off + i < 16; i++) {
        struct ide_channel *ch = &ide->ch[(off + i) >> 3];
        unsigned reg = (unsigned)(off + i) & 7;

        pthread_mutex_lock(&ch->lock);
        if (is_write)
            bm_write(ch, reg, data[i]);
        else
            data[i] = bm_read(ch, reg);
        pthread_mutex_unlock(&ch->lock);
    }
}

void ide_dma_submit(struct ide_drive *d, bool to_mem, uint64_t off,
                    uint64_t bytes, bool from_disk)
{
    struct ide_channel *ch = d->ch;

    ch->req = (struct ide_dma_req){ .d = d, .bs = d->bs, .to_mem = to_mem,
                                    .off = off,
                                    .bytes = bytes, .from_disk = from_disk,
                                    .gen = d->dma_gen,
                                    .t0 = disk_acct_now() };
    ch->dma_pending = true;
    d->pio = PIO_NONE;
    d->status = ST_BSY | ST_DRDY;
    dma_kick(ch);
}

/* Drops drive d's requests (NULL: both drives'): a waiting one now, a
 * running one's completion when the thread sees the drive's generation
 * move.  One generation per drive, not per channel: a DEVICE RESET of
 * one drive must not drop the other drive's transfer, which would then
 * never complete and leave that drive BSY for good.  ACTIVE goes only
 * when nothing of the other drive is left on the engine. */
static void dma_cancel(struct ide_channel *ch, struct ide_drive *d)
{
    for (int u = 0; u < 2; u++)
        if (!d || d == &ch->drive[u])
            __atomic_add_fetch(&ch->drive[u].dma_gen, 1, __ATOMIC_RELEASE);
    if (ch->dma_pending && (!d || ch->req.d == d))
        ch->dma_pending = false;
    if (!ch->dma_pending && !(ch->dma_running && d && ch->active.d != d))
        ch->bm_status &= (uint8_t)~BM_ST_ACTIVE;
}

/* Locking: the caller is a vCPU in a port access (bus lock, then
 * ch->lock) or the machine reset (bus lock, then ch->lock).  Waiting here
 * with the bus lock held cannot deadlock: pthread_cond_wait() releases
 * ch->lock, and the thread needs nothing else to finish - it reaches
 * guest RAM through pci_dma() and the image through the block layer,
 * neither of which takes the bus lock, and a cancelled request ends
 * without its completion (no interrupt, no register change).  The wait
 * is short: the thread checks the generation before every block-layer
 * request, so at most one request of DMA_IOV entries is still moving.
 * Only d's own transfer is waited for: once it ended the thread may
 * start the other drive's waiting one, which this reset leaves alone. */
void ide_dma_stop(struct ide_channel *ch, struct ide_drive *d)
{
    if (d && !(ch->dma_pending && ch->req.d == d) &&
        !(ch->dma_running && ch->active.d == d))
        return; /* the other drive's transfer: not this reset's business */
    dma_cancel(ch, d);
    while (ch->dma_running && (!d || ch->active.d == d))
        pthread_cond_wait(&ch->cond, &ch->lock);
}

void ide_dma_drain(struct ide_channel *ch)
{
    ide_dma_stop(ch, NULL);
    ch->bm_cmd = 0;
    ch->bm_status = 0;
    ch->prd_addr = 0;
}

/* ---- the transfer, on the channel's thread ---- */

static int dma_move(const struct ide_dma_req *r, struct iovec *iov, unsigned n,
                    uint64_t off)
{
    if (r->from_disk) {
        /* a disk through its live image; a CD's medium as the request
         * found it (a change of medium waits for or fails the request) */
        BlockDriverState *bs = r->d->live ? ide_disk_enter(r->d) : r->bs;
        uint64_t len = 0;
        int ret = r->to_mem ? blk_preadv(bs, off, iov, (int)n)
                            : blk_pwritev(bs, off, iov, (int)n);

        for (unsigned i = 0; i < n; i++)
            len += iov[i].iov_len;
        ide_disk_leave(r->d, off, len, !r->to_mem);
        return ret;
    }
    for (unsigned i = 0; i < n; i++) {
        memcpy(iov[i].iov_base, r->d->buf + off, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    return 0;
}

/* 0, -EFAULT for a table or buffer outside RAM (or bus mastering off),
 * -ENOSPC for a table shorter than the transfer, -EIO from the image,
 * -ECANCELED once a reset dropped the request. */
static int dma_transfer(struct ide_channel *ch, const struct ide_dma_req *r,
                        uint32_t prd, int *img_err)
{
    struct pci_dev *dev = ch->ide->dev;
    uint64_t done = 0, pending = 0;
    unsigned n = 0;

    for (unsigned i = 0; i < PRD_MAX && done + pending < r->bytes; i++) {
        uint64_t at = (uint64_t)prd + 8 * i, len;
        const uint8_t *e;
        uint32_t cnt;
        void *p;

        if (i && !(at & 0xffff))
            return -ENOSPC; /* ran off its 64 KiB region */
        e = pci_dma(dev, at, 8);
        if (!e)
            return -EFAULT;
        cnt = e[4] | (uint32_t)e[5] << 8;
        len = cnt ? cnt : 65536;
        if (len > r->bytes - done - pending)
            len = r->bytes - done - pending;
        p = pci_dma(dev, get_le32(e) & ~1u, len);
        if (!p)
            return -EFAULT;
        ch->iov[n++] = (struct iovec){ p, len };
        pending += len;
        if (n == DMA_IOV || done + pending == r->bytes) {
            int ret;

            /* A reset of the drive, or calf's exit, waits for this
             * thread: stop at the next request, so either waits for
             * one request of DMA_IOV entries, not a whole transfer
             * (up to 512 MiB). */
            if (__atomic_load_n(&r->d->dma_gen, __ATOMIC_ACQUIRE) != r->gen ||
                __atomic_load_n(&ch->stop, __ATOMIC_ACQUIRE))
                return -ECANCELED;
            ret = dma_move(r, ch->iov, n, r->off + done);

            if (ret < 0) {
                *img_err = -ret;
                return -EIO;
            }
            done += pending;
            pending = 0;
            n = 0;
        }
        if (e[7] & (PRD_EOT >> 8))
            break;
    }
    return done == r->bytes ? 0 : -ENOSPC;
}

static void dma_complete(struct ide_channel *ch, const struct ide_dma_req *r,
                         int err, int img_err)
{
    /* One request per command (QEMU counts the pieces of an ATAPI DMA
     * read apart); a bad PRD table is the guest's, not the image's. */
    if (r->from_disk && (!err || err == -EIO)) {
        enum disk_acct t = r->to_mem ? DISK_ACCT_READ : DISK_ACCT_WRITE;

        disk_acct_done(r->d->stats, t, r->bytes, r->t0, err != 0);
        if (err)
            disk_io_error(r->d->stats, !r->to_mem, img_err);
        else if (!r->to_mem)
            disk_acct_wr_end(r->d->stats, r->off, r->bytes);
    }
    ch->bm_status &= (uint8_t)~BM_ST_ACTIVE;
    if (err == -EFAULT || err == -ENOSPC)
        ch->bm_status |= BM_ST_ERR;
    if (r->d->atapi)
        atapi_dma_done(r->d, err);
    else
        ide_ata_dma_done(r->d, err);
}

static void *dma_thread(void *opaque)
{
    struct ide_channel *ch = opaque;

    pthread_mutex_lock(&ch->lock);
    for (;;) {
        struct ide_dma_req r;
        uint32_t prd;
        int err, img_err = EIO;

        while (!ch->stop && !ch->dma_running)
            pthread_cond_wait(&ch->cond, &ch->lock);
        if (ch->stop)
            break;
        r = ch->active;
        prd = ch->prd_addr;
        pthread_mutex_unlock(&ch->lock);
        err = dma_transfer(ch, &r, prd, &img_err);
        pthread_mutex_lock(&ch->lock);
        ch->dma_running = false;
        /* Else a reset of the drive came in between, or calf is
         * exiting: no completion, no interrupt. */
        if (r.gen == r.d->dma_gen && !ch->stop)
            dma_complete(ch, &r, err, img_err);
        pthread_cond_broadcast(&ch->cond); /* ide_dma_stop() waits */
        dma_kick(ch);
    }
    pthread_mutex_unlock(&ch->lock);
    return NULL;
}

int ide_dma_start_thread(struct ide_channel *ch)
{
    int ret;

    ch->iov = calloc(DMA_IOV, sizeof(*ch->iov));
    if (!ch->iov)
        return -ENOMEM;
    ret = -pthread_create(&ch->thread, NULL, dma_thread, ch);
    ch->thread_started = !ret;
    return ret;
}

void ide_dma_stop_thread(struct ide_channel *ch)
{
    if (!ch->thread_started)
        return;
    pthread_mutex_lock(&ch->lock);
    __atomic_store_n(&ch->stop, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
    pthread_join(ch->thread, NULL);
    ch->thread_started = false;
}
