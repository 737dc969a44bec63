/* Standard VGA + Bochs VBE ("std VGA", 1234:1111).  See devices/vga.h for
 * what is drawn.  Register state lives under the bus lock; the renderer
 * copies it under that lock and reads screen memory without it. */
#include "devices/vga.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "devices/pci.h"
#include "devices/vmstate.h"

#define DISPI_INDEX_PORT 0x1ce
#define DISPI_ID           0
#define DISPI_XRES         1
#define DISPI_YRES         2
#define DISPI_BPP          3
#define DISPI_ENABLE       4
#define DISPI_BANK         5
#define DISPI_VIRT_WIDTH   6
#define DISPI_VIRT_HEIGHT  7
#define DISPI_X_OFFSET     8
#define DISPI_Y_OFFSET     9
#define DISPI_VIDEO_MEM_64K 10
#define DISPI_REGS         11

#define DISPI_ID0          0xb0c0
#define DISPI_ID5          0xb0c5
#define DISPI_ENABLED      0x01
#define DISPI_GETCAPS      0x02
#define DISPI_8BIT_DAC     0x20
#define DISPI_LFB_ENABLED  0x40
#define DISPI_NOCLEARMEM   0x80

#define MMIO_VGA_PORTS     0x400 /* BAR2: ports 0x3c0-0x3df */
#define MMIO_DISPI         0x500 /* BAR2: DISPI registers, 16 bits each */

struct vga_regs {
    uint8_t misc;
    uint8_t seq_idx, seq[8];
    uint8_t gr_idx, gr[16];
    uint8_t ac_idx, ac[32];
    bool ac_data_next;          /* attribute flip-flop: next write is data */
    uint8_t crtc_idx, crtc[64];
    uint8_t dac[256][3];
    uint8_t dac_widx, dac_ridx, dac_sub, dac_state, pel_mask;
    uint8_t st1;                /* retrace bits, toggled on each read */
    uint8_t feature, vga_enable;
    uint16_t dispi_idx, dispi[DISPI_REGS];
};

struct vga {
    struct bus *bus;
    struct pci_dev *dev;
    uint8_t *vram;
    int lfb_slot;               /* memory slot of BAR0, or -1 */
    struct vga_regs r;
};

/* The registers as the BIOS leaves them in mode 3 (80x25 colour text),
 * so a guest booted without firmware still has a text screen. */
static const uint8_t mode3_seq[5] = { 0x03, 0x00, 0x03, 0x00, 0x02 };
static const uint8_t mode3_crtc[25] = {
    0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e,
    0x00, 0x00, 0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3,
    0xff,
};
static const uint8_t mode3_gr[9] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff,
};
static const uint8_t mode3_ac[21] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b,
    0x3c, 0x3d, 0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00,
};

static void vga_reset_regs(struct vga_regs *r)
{
    memset(r, 0, sizeof(*r));
    r->misc = 0x67;
    memcpy(r->seq, mode3_seq, sizeof(mode3_seq));
    memcpy(r->crtc, mode3_crtc, sizeof(mode3_crtc));
    memcpy(r->gr, mode3_gr, sizeof(mode3_gr));
    memcpy(r->ac, mode3_ac, sizeof(mode3_ac));
    r->ac_idx = 0x20; /* palette address source: display on */
    r->pel_mask = 0xff;
    r->vga_enable = 1;
    /* The 64 EGA colours (6-bit rgbRGB index: primary bits 2/3 of full
     * intensity, secondary bits 1/3) in the first 64 DAC entries. */
    for (unsigned i = 0; i < 64; i++)
        for (unsigned c = 0; c < 3; c++)
            r->dac[i][c] = (uint8_t)(((i >> (2 - c)) & 1) * 0x2a +
                                     ((i >> (5 - c)) & 1) * 0x15);
    r->dispi[DISPI_ID] = DISPI_ID5;
    r->dispi[DISPI_BPP] = 8;
    r->dispi[DISPI_VIDEO_MEM_64K] = VGA_VRAM_SIZE >> 16;
}

/* ---- legacy VGA ports ---- */

static bool vga_port_decoded(const struct vga_regs *r, uint16_t port)
{
    bool color = r->misc & 1;

    if (port >= 0x3b0 && port < 0x3c0)
        return !color;
    if (port >= 0x3d0 && port < 0x3e0)
        return color;
    return true;
}

static void vga_crtc_write(struct vga_regs *r, uint8_t v)
{
    unsigned i = r->crtc_idx & 0x3f;

    /* CR11 bit 7 write-protects CR0-CR7, all but CR7's line-compare bit. */
    if ((r->crtc[0x11] & 0x80) && i <= 7) {
        if (i == 7)
            r->crtc[7] = (uint8_t)((r->crtc[7] & ~0x10) | (v & 0x10));
        return;
    }
    r->crtc[i] = v;
}

static void vga_dac_write(struct vga_regs *r, uint8_t v)
{
    bool wide = r->dispi[DISPI_ENABLE] & DISPI_8BIT_DAC;

    r->dac[r->dac_widx][r->dac_sub] = wide ? v : (v & 0x3f);
    if (++r->dac_sub == 3) {
        r->dac_sub = 0;
        r->dac_widx++;
    }
}

static uint8_t vga_dac_read(struct vga_regs *r)
{
    uint8_t v = r->dac[r->dac_ridx][r->dac_sub];

    if (++r->dac_sub == 3) {
        r->dac_sub = 0;
        r->dac_ridx++;
    }
    return v;
}

static void vga_port_write(struct vga_regs *r, uint16_t port, uint8_t v)
{
    if (!vga_port_decoded(r, port))
        return;
    switch (port) {
    case 0x3c0:
        if (r->ac_data_next) {
            if ((r->ac_idx & 0x1f) <= 0x14)
                r->ac[r->ac_idx & 0x1f] = v;
        } else {
            r->ac_idx = v & 0x3f;
        }
        r->ac_data_next = !r->ac_data_next;
        break;
    case 0x3c2: r->misc = v; break;
    case 0x3c3: r->vga_enable = v & 1; break;
    case 0x3c4: r->seq_idx = v & 7; break;
    case 0x3c5: r->seq[r->seq_idx] = v; break;
    case 0x3c6: r->pel_mask = v; break;
    case 0x3c7: r->dac_ridx = v; r->dac_sub = 0; r->dac_state = 3; break;
    case 0x3c8: r->dac_widx = v; r->dac_sub = 0; r->dac_state = 0; break;
    case 0x3c9: vga_dac_write(r, v); break;
    case 0x3ce: r->gr_idx = v & 0xf; break;
    case 0x3cf: r->gr[r->gr_idx] = v; break;
    case 0x3b4: case 0x3d4: r->crtc_idx = v & 0x3f; break;
    case 0x3b5: case 0x3d5: vga_crtc_write(r, v); break;
    case 0x3ba: case 0x3da: r->feature = v; break;
    default: break;
    }
}

static uint8_t vga_port_read(struct vga_regs *r, uint16_t port)
{
    if (!vga_port_decoded(r, port))
        return 0xff;
    switch (port) {
    case 0x3c0: return r->ac_idx;
    case 0x3c1: return r->ac[r->ac_idx & 0x1f];
    case 0x3c2: return 0x10; /* input status 0: switch sense */
    case 0x3c3: return r->vga_enable;
    case 0x3c4: return r->seq_idx;
    case 0x3c5: return r->seq[r->seq_idx];
    case 0x3c6: return r->pel_mask;
    case 0x3c7: return r->dac_state;
    case 0x3c8: return r->dac_widx;
    case 0x3c9: return vga_dac_read(r);
    case 0x3ca: return r->feature;
    case 0x3cc: return r->misc;
    case 0x3ce: return r->gr_idx;
    case 0x3cf: return r->gr[r->gr_idx];
    case 0x3b4: case 0x3d4: return r->crtc_idx;
    case 0x3b5: case 0x3d5: return r->crtc[r->crtc_idx];
    case 0x3ba: case 0x3da:
        /* Input status 1 resets the attribute flip-flop; the retrace
         * bits toggle so that guests waiting for a retrace edge see one. */
        r->ac_data_next = false;
        r->st1 ^= 0x09;
        return r->st1;
    default: return 0xff;
    }
}

/* ---- Bochs VBE (DISPI) ---- */

static unsigned dispi_bytes_pp(unsigned bpp)
{
    switch (bpp) {
    case 8: return 1;
    case 15: case 16: return 2;
    case 24: return 3;
    case 32: return 4;
    default: return 0;
    }
}

static void dispi_set_virt_height(struct vga_regs *r)
{
    uint32_t pitch = r->dispi[DISPI_VIRT_WIDTH] *
                     dispi_bytes_pp(r->dispi[DISPI_BPP]);
    uint32_t h = pitch ? VGA_VRAM_SIZE / pitch : 0;

    r->dispi[DISPI_VIRT_HEIGHT] = (uint16_t)(h > 0xffff ? 0xffff : h);
}

static void dispi_enable(struct vga *v, uint16_t val)
{
    struct vga_regs *r = &v->r;
    bool was_on = r->dispi[DISPI_ENABLE] & DISPI_ENABLED;

    r->dispi[DISPI_ENABLE] = val;
    if (!(val & DISPI_ENABLED)) {
        r->dispi[DISPI_BANK] = 0;
        return;
    }
    if (was_on)
        return;
    r->dispi[DISPI_VIRT_WIDTH] = r->dispi[DISPI_XRES];
    r->dispi[DISPI_X_OFFSET] = r->dispi[DISPI_Y_OFFSET] = 0;
    dispi_set_virt_height(r);
    if (!(val & DISPI_NOCLEARMEM)) {
        uint64_t n = (uint64_t)r->dispi[DISPI_XRES] * r->dispi[DISPI_YRES] *
                     dispi_bytes_pp(r->dispi[DISPI_BPP]);

        memset(v->vram, 0, n < VGA_VRAM_SIZE ? n : VGA_VRAM_SIZE);
    }
}

static void dispi_write(struct vga *v, unsigned i, uint16_t val)
{
    struct vga_regs *r = &v->r;

    switch (i) {
    case DISPI_ID:
        if (val >= DISPI_ID0 && val <= DISPI_ID5)
            r->dispi[i] = val;
        break;
    case DISPI_XRES: case DISPI_YRES: case DISPI_BANK:
    case DISPI_X_OFFSET: case DISPI_Y_OFFSET:
        r->dispi[i] = val;
        break;
    case DISPI_BPP:
        r->dispi[i] = dispi_bytes_pp(val) ? val : 8;
        break;
    case DISPI_ENABLE:
        dispi_enable(v, val);
        break;
    case DISPI_VIRT_WIDTH:
        r->dispi[i] = val;
        dispi_set_virt_height(r);
        break;
    default:
        break; /* VIRT_HEIGHT and VIDEO_MEMORY_64K are read-only */
    }
}

static uint16_t dispi_read(const struct vga_regs *r, unsigned i)
{
    if (i >= DISPI_REGS)
        return 0;
    if (r->dispi[DISPI_ENABLE] & DISPI_GETCAPS) {
        if (i == DISPI_XRES)
            return VGA_MAX_WIDTH;
        if (i == DISPI_YRES)
            return VGA_MAX_HEIGHT;
        if (i == DISPI_BPP)
            return 32;
    }
    return r->dispi[i];
}

static void vga_pio(void *opaque, uint16_t port, uint8_t *data,
                    unsigned size, bool is_write)
{
    struct vga *v = opaque;

    if (port == DISPI_INDEX_PORT || port == DISPI_INDEX_PORT + 1 ||
        port == DISPI_INDEX_PORT + 2) {
        bool index = port == DISPI_INDEX_PORT;
        uint16_t val = (uint16_t)(data[0] | (size > 1 ? data[1] << 8 : 0));

        if (is_write && index)
            v->r.dispi_idx = val;
        else if (is_write)
            dispi_write(v, v->r.dispi_idx, val);
        else {
            val = index ? v->r.dispi_idx : dispi_read(&v->r, v->r.dispi_idx);
            data[0] = (uint8_t)val;
            if (size > 1)
                data[1] = (uint8_t)(val >> 8);
        }
        return;
    }
    /* A word access is the index/data pair at port and port + 1. */
    for (unsigned i = 0; i < size; i++) {
        if (is_write)
            vga_port_write(&v->r, (uint16_t)(port + i), data[i]);
        else
            data[i] = vga_port_read(&v->r, (uint16_t)(port + i));
    }
}

/* ---- PCI: BAR0 framebuffer, BAR2 register page ---- */

static void vga_bar_rw(void *opaque, int bar, uint64_t off, uint8_t *data,
                       unsigned size, bool is_write)
{
    struct vga *v = opaque;

    if (bar == 0) {
        /* Only while BAR0 could not be mapped as RAM. */
        if (is_write)
            memcpy(v->vram + off, data, size);
        else
            memcpy(data, v->vram + off, size);
        return;
    }
    if (off >= MMIO_VGA_PORTS && off + size <= MMIO_VGA_PORTS + 0x20) {
        vga_pio(v, (uint16_t)(0x3c0 + off - MMIO_VGA_PORTS), data, size,
                is_write);
    } else if (off >= MMIO_DISPI && off + size <= MMIO_DISPI + 2 * DISPI_REGS &&
               !(off & 1) && size == 2) {
        unsigned i = (unsigned)(off - MMIO_DISPI) / 2;
        uint16_t val;

        if (is_write) {
            dispi_write(v, i, (uint16_t)(data[0] | data[1] << 8));
        } else {
            val = dispi_read(&v->r, i);
            data[0] = (uint8_t)val;
            data[1] = (uint8_t)(val >> 8);
        }
    } else if (!is_write) {
        memset(data, 0, size);
    }
}

static void vga_bar_moved(void *opaque, int bar, uint64_t addr)
{
    struct vga *v = opaque;

    if (bar != 0)
        return;
    if (v->lfb_slot >= 0)
        bus_unmap_ram(v->bus, v->lfb_slot);
    v->lfb_slot = -1;
    if (addr) {
        int slot = bus_map_ram(v->bus, addr, VGA_VRAM_SIZE, v->vram, false);

        /* Failing that, accesses still work, one exit each. */
        v->lfb_slot = slot >= 0 ? slot : -1;
    }
}

/* Machine reset: mode 3 registers again; pci.c unmaps BAR0 (bar_moved)
 * and the framebuffer keeps its bytes, as video memory does. */
static void vga_reset(void *opaque)
{
    struct vga *v = opaque;

    vga_reset_regs(&v->r);
}

static void vga_destroy(void *opaque)
{
    struct vga *v = opaque;

    if (v->lfb_slot >= 0)
        bus_unmap_ram(v->bus, v->lfb_slot);
    munmap(v->vram, VGA_VRAM_SIZE);
    free(v);
}

/* ---- saved state (docs/VMSTATE.md) ----
 *
 * "vga": the registers; "vga vram 0" and "vga vram 1": each half of the
 * framebuffer as a bitmap of its 4 KiB pages that are not all zero, then
 * those pages (a text-mode guest leaves it nearly empty; a full one
 * still fits the section limit).  The legacy window is guest RAM, saved
 * with it.  Saved and loaded under the bus lock, vCPUs stopped: nothing
 * writes the framebuffer then (the display thread only reads it). */

#define VRAM_PAGE 4096u
#define VRAM_HALF (VGA_VRAM_SIZE / 2)
#define VRAM_HALF_PAGES (VRAM_HALF / VRAM_PAGE)

static int vga_state_save(void *opaque, struct vmstate_cursor *w)
{
    const struct vga_regs *r = &((struct vga *)opaque)->r;

    vms_put_u8(w, r->misc);
    vms_put_u8(w, r->seq_idx);
    vms_put(w, r->seq, sizeof(r->seq));
    vms_put_u8(w, r->gr_idx);
    vms_put(w, r->gr, sizeof(r->gr));
    vms_put_u8(w, r->ac_idx);
    vms_put(w, r->ac, sizeof(r->ac));
    vms_put_u8(w, r->ac_data_next);
    vms_put_u8(w, r->crtc_idx);
    vms_put(w, r->crtc, sizeof(r->crtc));
    vms_put(w, r->dac, sizeof(r->dac));
    vms_put_u8(w, r->dac_widx);
    vms_put_u8(w, r->dac_ridx);
    vms_put_u8(w, r->dac_sub);
    vms_put_u8(w, r->dac_state);
    vms_put_u8(w, r->pel_mask);
    vms_put_u8(w, r->st1);
    vms_put_u8(w, r->feature);
    vms_put_u8(w, r->vga_enable);
    vms_put_u16(w, r->dispi_idx);
    for (unsigned i = 0; i < DISPI_REGS; i++)
        vms_put_u16(w, r->dispi[i]);
    return w->err;
}

static int vga_state_load(void *opaque, struct vmstate_cursor *c)
{
    struct vga *v = opaque;
    struct vga_regs r;

    memset(&r, 0, sizeof(r));
    r.misc = vms_get_u8(c);
    r.seq_idx = vms_get_u8(c);
    vms_get(c, r.seq, sizeof(r.seq));
    r.gr_idx = vms_get_u8(c);
    vms_get(c, r.gr, sizeof(r.gr));
    r.ac_idx = vms_get_u8(c);
    vms_get(c, r.ac, sizeof(r.ac));
    r.ac_data_next = vms_get_bool(c);
    r.crtc_idx = vms_get_u8(c);
    vms_get(c, r.crtc, sizeof(r.crtc));
    vms_get(c, r.dac, sizeof(r.dac));
    r.dac_widx = vms_get_u8(c);
    r.dac_ridx = vms_get_u8(c);
    r.dac_sub = vms_get_u8(c);
    r.dac_state = vms_get_u8(c);
    r.pel_mask = vms_get_u8(c);
    r.st1 = vms_get_u8(c);
    r.feature = vms_get_u8(c);
    r.vga_enable = vms_get_u8(c);
    r.dispi_idx = vms_get_u16(c);
    for (unsigned i = 0; i < DISPI_REGS; i++)
        r.dispi[i] = vms_get_u16(c);
    if (vms_finish(c))
        return c->err;
    /* what the registers' own writes could never leave */
    if (r.seq_idx > 7 || r.gr_idx > 15 || r.ac_idx > 0x3f ||
        r.crtc_idx > 0x3f || r.dac_sub > 2 || r.vga_enable > 1 ||
        !dispi_bytes_pp(r.dispi[DISPI_BPP]) ||
        r.dispi[DISPI_ID] < DISPI_ID0 || r.dispi[DISPI_ID] > DISPI_ID5 ||
        r.dispi[DISPI_VIDEO_MEM_64K] != VGA_VRAM_SIZE >> 16)
        return vms_fail(c, -EINVAL, "VGA registers out of range (index "
                        "%u/%u/%u/%u, DAC step %u, %u bpp, VBE id 0x%04x)",
                        r.seq_idx, r.gr_idx, r.ac_idx, r.crtc_idx, r.dac_sub,
                        r.dispi[DISPI_BPP], r.dispi[DISPI_ID]);
    dispi_set_virt_height(&r);
    v->r = r;
    return 0;
}

static bool page_zero(const uint8_t *p)
{
    for (unsigned i = 0; i < VRAM_PAGE; i++)
        if (p[i])
            return false;
    return true;
}

static int vram_save(struct vga *v, unsigned half, struct vmstate_cursor *w)
{
    const uint8_t *base = v->vram + (size_t)half * VRAM_HALF;
    uint8_t map[VRAM_HALF_PAGES / 8];

    memset(map, 0, sizeof(map));
    for (unsigned p = 0; p < VRAM_HALF_PAGES; p++)
        if (!page_zero(base + (size_t)p * VRAM_PAGE))
            map[p / 8] |= (uint8_t)(1u << (p % 8));
    vms_put(w, map, sizeof(map));
    for (unsigned p = 0; p < VRAM_HALF_PAGES; p++)
        if (map[p / 8] >> (p % 8) & 1)
            vms_put(w, base + (size_t)p * VRAM_PAGE, VRAM_PAGE);
    return w->err;
}

static int vram_load(struct vga *v, unsigned half, struct vmstate_cursor *c)
{
    uint8_t *base = v->vram + (size_t)half * VRAM_HALF;
    uint8_t map[VRAM_HALF_PAGES / 8];
    size_t pages = 0;

    vms_get(c, map, sizeof(map));
    if (c->err)
        return c->err;
    for (unsigned p = 0; p < VRAM_HALF_PAGES; p++)
        pages += map[p / 8] >> (p % 8) & 1;
    if (c->len - c->pos != pages * VRAM_PAGE)
        return vms_fail(c, -EINVAL, "VGA memory: %zu pages marked, %zu "
                        "bytes follow", pages, c->len - c->pos);
    for (unsigned p = 0; p < VRAM_HALF_PAGES; p++) {
        uint8_t *dst = base + (size_t)p * VRAM_PAGE;

        if (map[p / 8] >> (p % 8) & 1)
            vms_get(c, dst, VRAM_PAGE);
        else if (!page_zero(dst))
            memset(dst, 0, VRAM_PAGE);
    }
    return vms_finish(c);
}

static int vram0_save(void *o, struct vmstate_cursor *w)
{
    return vram_save(o, 0, w);
}

static int vram1_save(void *o, struct vmstate_cursor *w)
{
    return vram_save(o, 1, w);
}

static int vram0_load(void *o, struct vmstate_cursor *c)
{
    return vram_load(o, 0, c);
}

static int vram1_load(void *o, struct vmstate_cursor *c)
{
    return vram_load(o, 1, c);
}

static const struct bus_state_ops vga_state = {
    .save = vga_state_save, .load = vga_state_load,
};
static const struct bus_state_ops vram_state[2] = {
    { .save = vram0_save, .load = vram0_load },
    { .save = vram1_save, .load = vram1_load },
};

static const struct pci_func_ops vga_pci_ops = {
    .bar_rw = vga_bar_rw,
    .bar_moved = vga_bar_moved,
    .reset = vga_reset,
    .destroy = vga_destroy,
    /* configuration space and BARs only: the rest is in "vga" */
    .state = &bus_state_none,
};

static int vga_register_ports(struct vga *v)
{
    static const uint16_t ranges[][2] = {
        { 0x3b4, 2 }, { 0x3ba, 1 }, { 0x3c0, 16 }, { 0x3d4, 2 }, { 0x3da, 1 },
        { DISPI_INDEX_PORT, 3 },
    };
    int ret = 0;

    for (size_t i = 0; !ret && i < sizeof(ranges) / sizeof(ranges[0]); i++)
        ret = bus_register_pio(v->bus, ranges[i][0], ranges[i][1], vga_pio, v);
    return ret;
}

int vga_create(struct pci *pci, int slot, struct bus *bus, struct vga **out)
{
    struct pci_dev_config cfg = {
        .vendor = 0x1234, .device = 0x1111,
        .subsys_vendor = 0x1af4, .subsys_id = 0x1100,
        .class_code = 0x03, .subclass = 0x00, .revision = 2,
        .bar_size = { [0] = VGA_VRAM_SIZE, [2] = 4096 },
    };
    struct vga *v = calloc(1, sizeof(*v));
    int ret;

    if (!v)
        return -ENOMEM;
    v->bus = bus;
    v->lfb_slot = -1;
    vga_reset_regs(&v->r);
    v->vram = mmap(NULL, VGA_VRAM_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v->vram == MAP_FAILED) {
        free(v);
        return -ENOMEM;
    }
    ret = pci_add_fn(pci, slot, 0, &cfg, &vga_pci_ops, v, &v->dev);
    if (ret) {
        vga_destroy(v);
        return ret;
    }
    /* From here pci_destroy() frees v. */
    ret = vga_register_ports(v);
    if (!ret)
        ret = bus_register_state(bus, "vga", &vga_state, v);
    if (!ret)
        ret = bus_register_state(bus, "vga vram 0", &vram_state[0], v);
    if (!ret)
        ret = bus_register_state(bus, "vga vram 1", &vram_state[1], v);
    if (!ret && out)
        *out = v;
    return ret;
}

/* ---- rendering ---- */

static void dac_rgb(const struct vga_regs *r, uint8_t idx, uint8_t *px)
{
    bool wide = r->dispi[DISPI_ENABLE] & DISPI_8BIT_DAC;

    idx &= r->pel_mask;
    for (int c = 0; c < 3; c++) {
        uint8_t x = r->dac[idx][c];

        px[c] = wide ? x : (uint8_t)(x << 2 | x >> 4);
    }
}

/* A 4-bit text colour through the attribute palette to a DAC entry. */
static uint8_t ac_to_dac(const struct vga_regs *r, unsigned colour)
{
    uint8_t p = r->ac[colour & 0xf];

    if (r->ac[0x10] & 0x80)
        return (uint8_t)((r->ac[0x14] & 0x0f) << 4 | (p & 0x0f));
    return (uint8_t)((r->ac[0x14] & 0x0c) << 4 | (p & 0x3f));
}

static int image_size(struct vga_image *img, unsigned w, unsigned h)
{
    if (!w || !h || w > VGA_MAX_WIDTH || h > VGA_MAX_HEIGHT) {
        w = 640; /* nothing sensible programmed: a black 640x480 */
        h = 480;
    }
    if (img->width != w || img->height != h || !img->rgb) {
        uint8_t *p = realloc(img->rgb, (size_t)w * h * 3);

        if (!p)
            return -ENOMEM;
        img->rgb = p;
        img->width = w;
        img->height = h;
    }
    memset(img->rgb, 0, (size_t)w * h * 3);
    return 0;
}

struct text_geom {
    unsigned cols, rows, cell_h;
    uint64_t base, win;     /* guest-physical window */
    unsigned start, pitch;  /* bytes into the window */
};

static unsigned crtc_lines(const struct vga_regs *r)
{
    return (r->crtc[0x12] | (r->crtc[7] & 0x02) << 7 |
            (r->crtc[7] & 0x40) << 3) + 1u;
}

static void text_geometry(const struct vga_regs *r, struct text_geom *g)
{
    static const uint32_t bases[4] = { 0xa0000, 0xa0000, 0xb0000, 0xb8000 };
    static const uint32_t wins[4] = { 0x20000, 0x10000, 0x8000, 0x8000 };
    unsigned map = r->gr[6] >> 2 & 3, lines = crtc_lines(r);

    g->cell_h = (r->crtc[9] & 0x1f) + 1u;
    if (r->crtc[9] & 0x80)
        lines /= 2;
    g->cols = r->crtc[1] + 1u;
    g->rows = lines / g->cell_h;
    g->base = bases[map];
    g->win = wins[map];
    g->start = (unsigned)(r->crtc[0xc] << 8 | r->crtc[0xd]) * 2;
    g->pitch = r->crtc[0x13] ? r->crtc[0x13] * 4u : g->cols * 2;
}

static void draw_cell(struct vga_image *img, unsigned x0, unsigned y0,
                      unsigned cell_h, uint8_t ch, const uint8_t *fg,
                      const uint8_t *bg, int cur_from, int cur_to)
{
    for (unsigned y = 0; y < cell_h; y++) {
        uint8_t bits = vga_font_8x16[ch][y * 16 / cell_h];
        uint8_t *p = img->rgb + ((size_t)(y0 + y) * img->width + x0) * 3;

        if ((int)y >= cur_from && (int)y <= cur_to)
            bits = 0xff;
        for (unsigned x = 0; x < 8; x++, p += 3)
            memcpy(p, bits & (0x80 >> x) ? fg : bg, 3);
    }
}

static int render_text(struct vga *v, const struct vga_regs *r,
                       struct vga_image *img, int cursor_on)
{
    struct text_geom g;
    const uint8_t *mem;
    unsigned cursor;
    int ret;

    text_geometry(r, &g);
    if (g.cols * 8 > VGA_MAX_WIDTH || g.rows * g.cell_h > VGA_MAX_HEIGHT ||
        !g.rows)
        return image_size(img, 0, 0);
    ret = image_size(img, g.cols * 8, g.rows * g.cell_h);
    mem = bus_guest_ram(v->bus, g.base, g.win);
    if (ret || !mem)
        return ret;
    cursor = (unsigned)(r->crtc[0xe] << 8 | r->crtc[0xf]) * 2;
    for (unsigned row = 0; row < g.rows; row++) {
        for (unsigned col = 0; col < g.cols; col++) {
            unsigned off = g.start + row * g.pitch + col * 2;
            uint8_t ch = mem[off % g.win], attr = mem[(off + 1) % g.win];
            uint8_t fg[3], bg[3];
            unsigned bgc = r->ac[0x10] & 0x08 ? (attr >> 4 & 7) : attr >> 4;
            int from = INT32_MAX, to = -1;

            dac_rgb(r, ac_to_dac(r, attr & 0xf), fg);
            dac_rgb(r, ac_to_dac(r, bgc), bg);
            if (cursor_on && off == cursor && !(r->crtc[0xa] & 0x20)) {
                from = r->crtc[0xa] & 0x1f;
                to = r->crtc[0xb] & 0x1f;
            }
            draw_cell(img, col * 8, row * g.cell_h, g.cell_h, ch, fg, bg,
                      from, to);
        }
    }
    return 0;
}

/* Mode 13h and friends: chain-4 packs the pixels linearly at 0xA0000. */
static int render_chain4(struct vga *v, const struct vga_regs *r,
                         struct vga_image *img)
{
    unsigned w = (r->crtc[1] + 1u) * 4, h = crtc_lines(r);
    unsigned pitch = r->crtc[0x13] * 8u;
    unsigned start = (unsigned)(r->crtc[0xc] << 8 | r->crtc[0xd]) * 4;
    const uint8_t *mem;
    int ret;

    h /= (r->crtc[9] & 0x1f) + 1u;
    if (r->crtc[9] & 0x80)
        h /= 2;
    ret = image_size(img, w, h);
    mem = bus_guest_ram(v->bus, 0xa0000, 0x10000);
    if (ret || !mem || img->width != w || img->height != h)
        return ret;
    for (unsigned y = 0; y < h; y++)
        for (unsigned x = 0; x < w; x++)
            dac_rgb(r, mem[(start + y * pitch + x) & 0xffff],
                    img->rgb + ((size_t)y * w + x) * 3);
    return 0;
}

static void lfb_pixel(const struct vga_regs *r, const uint8_t *s,
                      unsigned bpp, uint8_t *px)
{
    uint16_t w;

    switch (bpp) {
    case 8: dac_rgb(r, s[0], px); break;
    case 15:
        w = (uint16_t)(s[0] | s[1] << 8);
        px[0] = (uint8_t)((w >> 10 & 0x1f) * 255 / 31);
        px[1] = (uint8_t)((w >> 5 & 0x1f) * 255 / 31);
        px[2] = (uint8_t)((w & 0x1f) * 255 / 31);
        break;
    case 16:
        w = (uint16_t)(s[0] | s[1] << 8);
        px[0] = (uint8_t)((w >> 11) * 255 / 31);
        px[1] = (uint8_t)((w >> 5 & 0x3f) * 255 / 63);
        px[2] = (uint8_t)((w & 0x1f) * 255 / 31);
        break;
    default: /* 24 and 32: blue, green, red in memory order */
        px[0] = s[2];
        px[1] = s[1];
        px[2] = s[0];
        break;
    }
}

static int render_dispi(struct vga *v, const struct vga_regs *r,
                        struct vga_image *img)
{
    unsigned w = r->dispi[DISPI_XRES], h = r->dispi[DISPI_YRES];
    unsigned bpp = r->dispi[DISPI_BPP], bytes = dispi_bytes_pp(bpp);
    uint64_t pitch = (uint64_t)r->dispi[DISPI_VIRT_WIDTH] * bytes;
    uint64_t first = r->dispi[DISPI_Y_OFFSET] * pitch +
                     (uint64_t)r->dispi[DISPI_X_OFFSET] * bytes;
    int ret = image_size(img, w, h);

    /* Whatever the guest programmed, never read past the framebuffer. */
    if (ret || img->width != w || img->height != h || !bytes ||
        pitch < (uint64_t)w * bytes ||
        first + (h - 1) * pitch + (uint64_t)w * bytes > VGA_VRAM_SIZE)
        return ret;
    for (unsigned y = 0; y < h; y++) {
        const uint8_t *s = v->vram + first + y * pitch;
        uint8_t *d = img->rgb + (size_t)y * w * 3;

        for (unsigned x = 0; x < w; x++, s += bytes, d += 3)
            lfb_pixel(r, s, bpp, d);
    }
    return 0;
}

int vga_render(struct vga *v, struct vga_image *img, int cursor_on)
{
    struct vga_regs copy, *r = &copy;
    int ret;

    bus_lock(v->bus);
    copy = v->r;
    bus_unlock(v->bus);
    if (r->dispi[DISPI_ENABLE] & DISPI_ENABLED)
        ret = render_dispi(v, r, img);
    else if ((r->seq[1] & 0x20) || !(r->ac_idx & 0x20))
        ret = image_size(img, 0, 0) ? -ENOMEM : 0; /* screen off */
    else if (!(r->gr[6] & 1))
        ret = render_text(v, r, img, cursor_on);
    else if ((r->seq[4] & 0x08) && (r->gr[5] & 0x40))
        ret = render_chain4(v, r, img);
    else
        ret = image_size(img, (r->crtc[1] + 1u) * 8, crtc_lines(r));
    return ret;
}
