/* QEMU's fw_cfg, the channel through which firmware (SeaBIOS) learns what
 * the VMM built: the memory map, the CPU count, the boot order, extra ROMs.
 * Items are numbered (legacy keys below 0x20, arch-local ones from 0x8000)
 * or named files listed in the directory at key 0x19.
 *
 * Ports: 0x510 selector (16 bit), 0x511 data (byte stream from the
 * selected item), 0x514/0x518 the DMA address (big-endian halves; the
 * write of the low half runs the transfer).  DMA matters here: every port
 * read is a VM exit, and SeaBIOS reads kilobytes through this device. */
#include "devices/byteorder.h"
#include "devices/devices.h"
#include "devices/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FW_CFG_PORT_SEL   0x510
#define FW_CFG_PORT_DATA  0x511
#define FW_CFG_PORT_DMA   0x514 /* 8 bytes: high half, then low half */

#define FW_CFG_SIGNATURE  0x00
#define FW_CFG_ID         0x01
#define FW_CFG_FILE_DIR   0x19
#define FW_CFG_FILE_FIRST 0x20
#define FW_CFG_WRITE_CHANNEL 0x4000
#define FW_CFG_ID_TRADITIONAL 0x01
#define FW_CFG_ID_DMA     0x02

#define DMA_CTL_ERROR  0x01
#define DMA_CTL_READ   0x02
#define DMA_CTL_SKIP   0x04
#define DMA_CTL_SELECT 0x08
#define DMA_CTL_WRITE  0x10

#define FW_CFG_MAX_ITEMS 96
#define FW_CFG_NAME_MAX 56 /* with its NUL, as in the directory entry */
/* Far more than any item the firmware needs (a VGA BIOS is 40 KiB);
 * bounds what a DMA request can make the VMM copy in one exit. */
#define FW_CFG_MAX_ITEM_LEN (16u << 20)
/* The most one DMA request may write into guest memory.  A request runs
 * in the VM exit of the guest's write to the DMA port, under the bus
 * lock, so every other vCPU's port I/O waits behind it: a 4 GiB read
 * (zeros past an item's end) would hold the machine for seconds and
 * touch gigabytes of host memory.  No item is longer than this, so any
 * item still reads whole in one request; a longer one fails with the
 * error bit before any byte moves. */
#define FW_CFG_DMA_MAX FW_CFG_MAX_ITEM_LEN

struct fw_cfg_item {
    uint16_t key;
    char name[FW_CFG_NAME_MAX]; /* "" for numbered items */
    uint8_t *data;
    uint32_t len;
};

struct fw_cfg {
    struct bus *bus;
    uint16_t sel;
    uint32_t off;               /* read position in the selected item */
    uint32_t dma_high;
    unsigned nitems;
    uint16_t next_file_key;
    struct fw_cfg_item items[FW_CFG_MAX_ITEMS];
};

static struct fw_cfg_item *fw_cfg_find(struct fw_cfg *f, uint16_t key)
{
    for (unsigned i = 0; i < f->nitems; i++)
        if (f->items[i].key == key)
            return &f->items[i];
    return NULL;
}

static struct fw_cfg_item *fw_cfg_find_name(struct fw_cfg *f,
                                            const char *name)
{
    for (unsigned i = 0; i < f->nitems; i++)
        if (!strcmp(f->items[i].name, name))
            return &f->items[i];
    return NULL;
}

/* Stores a copy of data under key, replacing what was there. */
static int fw_cfg_set(struct fw_cfg *f, uint16_t key, const char *name,
                      const void *data, uint32_t len)
{
    struct fw_cfg_item *it = fw_cfg_find(f, key);
    uint8_t *copy = malloc(len ? len : 1);

    if (!copy)
        return -ENOMEM;
    if (len)
        memcpy(copy, data, len);
    if (!it) {
        if (f->nitems == FW_CFG_MAX_ITEMS) {
            free(copy);
            return -ENOSPC;
        }
        it = &f->items[f->nitems++];
        it->key = key;
    }
    free(it->data);
    it->data = copy;
    it->len = len;
    snprintf(it->name, sizeof(it->name), "%s", name);
    return 0;
}

/* The directory: be32 count, then per file be32 size, be16 key, be16
 * reserved, name[56]; sorted by key, which is the order of creation. */
static int fw_cfg_update_dir(struct fw_cfg *f)
{
    uint8_t buf[4 + FW_CFG_MAX_ITEMS * 64];
    uint32_t n = 0;

    memset(buf, 0, sizeof(buf));
    for (uint16_t key = FW_CFG_FILE_FIRST; key < f->next_file_key; key++) {
        struct fw_cfg_item *it = fw_cfg_find(f, key);
        uint8_t *e = buf + 4 + 64 * n;

        if (!it)
            continue;
        put_be32(e, it->len);
        e[4] = (uint8_t)(key >> 8);
        e[5] = (uint8_t)key;
        memcpy(e + 8, it->name, strlen(it->name));
        n++;
    }
    put_be32(buf, n);
    return fw_cfg_set(f, FW_CFG_FILE_DIR, "", buf, 4 + 64 * n);
}

int fw_cfg_add_bytes(struct fw_cfg *f, uint16_t key, const void *data,
                     uint32_t len)
{
    if (key >= FW_CFG_FILE_FIRST && key < 0x8000)
        return -EINVAL; /* file keys are handed out by fw_cfg_add_file */
    if (key == FW_CFG_FILE_DIR || len > FW_CFG_MAX_ITEM_LEN)
        return -EINVAL;
    return fw_cfg_set(f, key, "", data, len);
}

int fw_cfg_add_u16(struct fw_cfg *f, uint16_t key, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    return fw_cfg_add_bytes(f, key, b, sizeof(b));
}

int fw_cfg_add_u32(struct fw_cfg *f, uint16_t key, uint32_t v)
{
    uint8_t b[4];

    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return fw_cfg_add_bytes(f, key, b, sizeof(b));
}

int fw_cfg_add_u64(struct fw_cfg *f, uint16_t key, uint64_t v)
{
    uint8_t b[8];

    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return fw_cfg_add_bytes(f, key, b, sizeof(b));
}

int fw_cfg_add_file(struct fw_cfg *f, const char *name, const void *data,
                    uint32_t len)
{
    struct fw_cfg_item *it = fw_cfg_find_name(f, name);
    uint16_t key;
    int ret;

    if (!*name || strlen(name) >= FW_CFG_NAME_MAX || len > FW_CFG_MAX_ITEM_LEN)
        return -EINVAL;
    if (it) {
        key = it->key;
    } else {
        if (f->next_file_key >= 0x4000)
            return -ENOSPC;
        key = f->next_file_key;
    }
    ret = fw_cfg_set(f, key, name, data, len);
    if (ret)
        return ret;
    if (!it)
        f->next_file_key++;
    return fw_cfg_update_dir(f);
}

int fw_cfg_add_file_int(struct fw_cfg *f, const char *name, uint64_t v,
                        unsigned size)
{
    uint8_t b[8];

    if (size < 1 || size > 8)
        return -EINVAL;
    for (unsigned i = 0; i < size; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return fw_cfg_add_file(f, name, b, size);
}

static void fw_cfg_select(struct fw_cfg *f, uint16_t sel)
{
    f->sel = sel;
    f->off = 0;
}

/* What the selected item holds at the read position, 0 past its end. */
static uint8_t fw_cfg_next_byte(struct fw_cfg *f)
{
    struct fw_cfg_item *it = fw_cfg_find(f, f->sel & ~FW_CFG_WRITE_CHANNEL);

    if (!it || f->off >= it->len)
        return 0;
    return it->data[f->off++];
}

/* One DMA request; returns the control word to write back (0: done). */
static uint32_t fw_cfg_dma_run(struct fw_cfg *f, uint32_t control,
                               uint32_t len, uint64_t addr)
{
    struct fw_cfg_item *it;
    uint32_t avail, n;
    uint8_t *dst;

    if (control & DMA_CTL_SELECT)
        fw_cfg_select(f, (uint16_t)(control >> 16));
    if (control & DMA_CTL_WRITE)
        return DMA_CTL_ERROR; /* no item is writable */
    if (!(control & (DMA_CTL_READ | DMA_CTL_SKIP)))
        return 0;
    /* A skip writes nothing: any length is O(1) work. */
    if ((control & DMA_CTL_READ) && len > FW_CFG_DMA_MAX)
        return DMA_CTL_ERROR;
    it = fw_cfg_find(f, f->sel & ~FW_CFG_WRITE_CHANNEL);
    avail = it && f->off < it->len ? it->len - f->off : 0;
    n = len < avail ? len : avail;
    if (control & DMA_CTL_READ) {
        /* All of [addr, addr + len) in guest RAM, or nothing moves. */
        dst = len ? bus_guest_ram(f->bus, addr, len) : NULL;
        if (len && !dst)
            return DMA_CTL_ERROR;
        if (n)
            memcpy(dst, it->data + f->off, n);
        if (len > n)
            memset(dst + n, 0, len - n); /* past the end reads zeros */
    }
    f->off += n;
    return 0;
}

/* The request block: be32 control, be32 length, be64 address. */
static void fw_cfg_dma(struct fw_cfg *f, uint64_t gpa)
{
    uint8_t *req = bus_guest_ram(f->bus, gpa, 16);
    uint64_t addr;
    uint32_t control, len;

    if (!req)
        return; /* nowhere to report an error to */
    control = get_be32(req);
    len = get_be32(req + 4);
    addr = (uint64_t)get_be32(req + 8) << 32 | get_be32(req + 12);
    put_be32(req, fw_cfg_dma_run(f, control, len, addr));
}

static void fw_cfg_dma_pio(struct fw_cfg *f, uint16_t port, uint8_t *data,
                           unsigned size, bool is_write)
{
    static const char sig[8] = "QEMU CFG";
    unsigned off = port - FW_CFG_PORT_DMA;

    if (!is_write) {
        for (unsigned i = 0; i < size && off + i < 8; i++)
            data[i] = (uint8_t)sig[off + i];
        return;
    }
    if (size != 4)
        return;
    if (off == 0) {
        f->dma_high = get_be32(data);
    } else if (off == 4) {
        fw_cfg_dma(f, (uint64_t)f->dma_high << 32 | get_be32(data));
        f->dma_high = 0;
    }
}

static void fw_cfg_pio(void *opaque, uint16_t port, uint8_t *data,
                       unsigned size, bool is_write)
{
    struct fw_cfg *f = opaque;

    if (port >= FW_CFG_PORT_DMA) {
        fw_cfg_dma_pio(f, port, data, size, is_write);
    } else if (port == FW_CFG_PORT_SEL) {
        if (is_write && size >= 2)
            fw_cfg_select(f, (uint16_t)(data[0] | data[1] << 8));
        else if (!is_write)
            memset(data, 0, size);
    } else if (port == FW_CFG_PORT_DATA && !is_write) {
        /* Wider reads take consecutive bytes, as QEMU's do. */
        for (unsigned i = 0; i < size; i++)
            data[i] = fw_cfg_next_byte(f);
    }
}

/* Machine reset (a bus reset hook): back to the power-on state, the
 * signature selected at offset 0 and no DMA address half written.  The
 * items stay: they describe the machine, which a reset does not change. */
static void fw_cfg_reset(void *opaque)
{
    struct fw_cfg *f = opaque;

    fw_cfg_select(f, FW_CFG_SIGNATURE);
    f->dma_high = 0;
}

/* Saved state (devices/vmstate.h): the selected item and the read
 * position; the items themselves describe the machine, which a restore
 * builds again from the same options. */
static int fw_cfg_save(void *opaque, struct vmstate_cursor *w)
{
    struct fw_cfg *f = opaque;

    vms_put_u16(w, f->sel);
    vms_put_u32(w, f->off);
    vms_put_u32(w, f->dma_high);
    return w->err;
}

static int fw_cfg_load(void *opaque, struct vmstate_cursor *r)
{
    struct fw_cfg *f = opaque;
    uint16_t sel = vms_get_u16(r);
    uint32_t off = vms_get_u32(r), high = vms_get_u32(r);

    if (vms_finish(r))
        return r->err;
    fw_cfg_select(f, sel);
    f->off = off; /* reads past an item's end give zeros */
    f->dma_high = high;
    return 0;
}

static const struct bus_state_ops fw_cfg_state = {
    .save = fw_cfg_save, .load = fw_cfg_load,
};

int fw_cfg_create(struct bus *bus, struct fw_cfg **out)
{
    struct fw_cfg *f = calloc(1, sizeof(*f));
    int ret;

    if (!f)
        return -ENOMEM;
    f->bus = bus;
    f->next_file_key = FW_CFG_FILE_FIRST;
    ret = fw_cfg_add_bytes(f, FW_CFG_SIGNATURE, "QEMU", 4);
    if (!ret)
        ret = fw_cfg_add_u32(f, FW_CFG_ID,
                             FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
    if (!ret)
        ret = fw_cfg_update_dir(f);
    if (!ret)
        ret = bus_register_pio(bus, FW_CFG_PORT_SEL, 2, fw_cfg_pio, f);
    if (!ret)
        ret = bus_register_pio(bus, FW_CFG_PORT_DMA, 8, fw_cfg_pio, f);
    if (!ret)
        ret = bus_register_reset(bus, fw_cfg_reset, f);
    if (!ret)
        ret = bus_register_state(bus, "fw_cfg", &fw_cfg_state, f);
    if (ret) {
        fw_cfg_destroy(f);
        return ret;
    }
    *out = f;
    return 0;
}

void fw_cfg_destroy(struct fw_cfg *f)
{
    if (!f)
        return;
    for (unsigned i = 0; i < f->nitems; i++)
        free(f->items[i].data);
    free(f);
}
