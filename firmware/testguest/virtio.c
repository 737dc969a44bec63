/* The test guest's modern virtio-pci core (virtio.h). */
#include "virtio.h"

#include "guest.h"
#include "pci.h"

#define COMMON_DFSELECT 0x00
#define COMMON_DF       0x04
#define COMMON_GFSELECT 0x08
#define COMMON_GF       0x0c
#define COMMON_STATUS   0x14
#define COMMON_Q_SELECT 0x16
#define COMMON_Q_SIZE   0x18
#define COMMON_Q_ENABLE 0x1c
#define COMMON_Q_NOFF   0x1e
#define COMMON_Q_DESC   0x20
#define COMMON_Q_AVAIL  0x28
#define COMMON_Q_USED   0x30
#define F_VERSION_1     32

static void w8(volatile uint8_t *p, unsigned o, uint8_t v) { p[o] = v; }
static void w16(volatile uint8_t *p, unsigned o, uint16_t v)
{
    *(volatile uint16_t *)(p + o) = v;
}
static void w32(volatile uint8_t *p, unsigned o, uint32_t v)
{
    *(volatile uint32_t *)(p + o) = v;
}
static void w64(volatile uint8_t *p, unsigned o, uint64_t v)
{
    w32(p, o, (uint32_t)v);
    w32(p, o + 4, (uint32_t)(v >> 32));
}
static uint16_t r16(volatile uint8_t *p, unsigned o)
{
    return *(volatile uint16_t *)(p + o);
}
static uint32_t r32(volatile uint8_t *p, unsigned o)
{
    return *(volatile uint32_t *)(p + o);
}

int vmod_open(struct vmod *d, unsigned slot, uint64_t base)
{
    unsigned cap = pci_read8(slot, 0x34), bar = 6, found = 0;

    d->slot = slot;
    for (int n = 0; cap && n < 16; n++, cap = pci_read8(slot, cap + 1)) {
        uint32_t w0 = pci_read32(slot, cap);

        if ((w0 & 0xff) == 0x09 && (w0 >> 24) == 1)
            bar = pci_read32(slot, cap + 4) & 0xff;
    }
    if (bar > 5)
        return -1;
    pci_write32(slot, 0x10 + 4 * bar, (uint32_t)base);
    if ((pci_read32(slot, 0x10 + 4 * bar) & 6) == 4)
        pci_write32(slot, 0x14 + 4 * bar, (uint32_t)(base >> 32));
    pci_write16(slot, 0x04, 0x0006); /* memory, bus master */
    cap = pci_read8(slot, 0x34);
    for (int n = 0; cap && n < 16; n++, cap = pci_read8(slot, cap + 1)) {
        uint32_t w0 = pci_read32(slot, cap);
        uint8_t type = (uint8_t)(w0 >> 24);
        volatile uint8_t *at;

        if ((w0 & 0xff) != 0x09 || (pci_read32(slot, cap + 4) & 0xff) != bar)
            continue;
        at = (volatile uint8_t *)(base + pci_read32(slot, cap + 8));
        if (type == 1) d->common = at;
        else if (type == 2) d->notify = at;
        else if (type == 3) d->isr = at;
        else if (type == 4) d->devcfg = at;
        else continue;
        if (type == 2)
            d->notify_mult = pci_read32(slot, cap + 16);
        found |= 1u << type;
    }
    return (found & 0x0e) == 0x0e ? 0 : -1;
}

uint8_t vmod_status(struct vmod *d)
{
    return d->common[COMMON_STATUS];
}

void vmod_reset(struct vmod *d)
{
    w8(d->common, COMMON_STATUS, 0);
}

int vmod_negotiate(struct vmod *d, uint64_t want)
{
    uint64_t f;

    vmod_reset(d);
    if (vmod_status(d) != 0)
        return -1;
    w8(d->common, COMMON_STATUS, 1 | 2);
    w32(d->common, COMMON_DFSELECT, 0);
    f = r32(d->common, COMMON_DF);
    w32(d->common, COMMON_DFSELECT, 1);
    f |= (uint64_t)r32(d->common, COMMON_DF) << 32;
    if (!(f >> F_VERSION_1 & 1))
        return -1;
    d->features = f & (want | 1ULL << F_VERSION_1);
    w32(d->common, COMMON_GFSELECT, 0);
    w32(d->common, COMMON_GF, (uint32_t)d->features);
    w32(d->common, COMMON_GFSELECT, 1);
    w32(d->common, COMMON_GF, (uint32_t)(d->features >> 32));
    w8(d->common, COMMON_STATUS, 1 | 2 | 8);
    return vmod_status(d) & 8 ? 0 : -1;
}

int vmod_queue(struct vmod *d, struct vqueue *vq, uint16_t q, uint16_t n,
               void *mem)
{
    uint8_t *m = mem;

    memset(m, 0, 3 * 4096);
    vq->desc = (struct vdesc *)m;
    vq->avail = (volatile uint16_t *)(m + 4096);
    vq->used = (volatile uint16_t *)(m + 8192);
    vq->n = n;
    vq->q = q;
    vq->next_avail = vq->last_used = 0;
    w16(d->common, COMMON_Q_SELECT, q);
    if (r16(d->common, COMMON_Q_SIZE) < n)
        return -1;
    w16(d->common, COMMON_Q_SIZE, n);
    w64(d->common, COMMON_Q_DESC, (uint64_t)vq->desc);
    w64(d->common, COMMON_Q_AVAIL, (uint64_t)vq->avail);
    w64(d->common, COMMON_Q_USED, (uint64_t)vq->used);
    vq->notify = d->notify + r16(d->common, COMMON_Q_NOFF) * d->notify_mult;
    w16(d->common, COMMON_Q_ENABLE, 1);
    return 0;
}

int vmod_driver_ok(struct vmod *d)
{
    w8(d->common, COMMON_STATUS, 1 | 2 | 4 | 8);
    return vmod_status(d) & 0x40 ? -1 : 0;
}

void vq_offer(struct vqueue *vq, uint16_t head)
{
    vq->avail[2 + vq->next_avail % vq->n] = head;
    __asm__ volatile("mfence" ::: "memory");
    vq->next_avail++;
    vq->avail[1] = vq->next_avail;
    __asm__ volatile("mfence" ::: "memory");
    *(volatile uint16_t *)vq->notify = vq->q;
}

int vq_wait(struct vqueue *vq, uint32_t spins, uint32_t *len)
{
    for (uint32_t i = 0; vq->used[1] == vq->last_used; i++)
        if (i >= spins)
            return 0;
    __asm__ volatile("mfence" ::: "memory");
    *len = *(volatile uint32_t *)(vq->used + 2 + 4 * (vq->last_used % vq->n) + 2);
    vq->last_used++;
    return 1;
}
