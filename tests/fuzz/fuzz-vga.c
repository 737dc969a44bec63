/* libFuzzer harness: the std VGA (devices/vga.c): its legacy ports, the
 * DISPI registers (ports and BAR2), PCI configuration (BAR moves map and
 * unmap the framebuffer), and rendering whatever the registers say from
 * guest RAM (text, chain-4) or the framebuffer (DISPI modes).  The input
 * is a byte program (tests/fuzz/fuzz-dev.h); the harness's own operations:
 *   9   render (at most RENDERS_MAX an input: a frame can be 12 MiB)
 *   10  DISPI register write: index, value
 *   11  fill a run of the framebuffer: offset, length (16 bits), seed
 *   12  fill the legacy window 0xA0000-0xBFFFF in guest RAM from a seed
 *   13  CRTC register write: index, value (through 0x3d4/0x3d5)
 * The rendered image is read back whole: a renderer that writes outside
 * it, or reads outside guest RAM or video memory, faults. */
#include "tests/fuzz/fuzz-dev.h"

#include "devices/vga.h"
#include "devices/pci.h"

#define RENDERS_MAX 6

static const uint16_t vga_ports[][2] = {
    { 0x3b4, 2 }, { 0x3ba, 1 }, { 0x3c0, 16 }, { 0x3d4, 2 }, { 0x3da, 1 }, { 0x1ce, 3 },
};

static struct vga *fz_vga;
static unsigned renders;
static struct vga_image img;
static volatile unsigned img_sum;

static void fz_settle(struct bus *bus)
{
    (void)bus;
}

static uint64_t bar_addr(struct bus *bus, unsigned bar)
{
    bool io;

    return fz_bar_addr(bus, 0x08, bar, &io);
}

static int fz_harness_op(struct bus *bus, unsigned op, struct fz *f)
{
    switch (op % 16) {
    case 9: {
        int cursor = fz_u8(f) & 1;
        unsigned sum = 0;

        if (renders++ >= RENDERS_MAX)
            break;
        if (vga_render(fz_vga, &img, cursor) == 0) {
            if (!img.width || !img.height || img.width > VGA_MAX_WIDTH ||
                img.height > VGA_MAX_HEIGHT) {
                fprintf(stderr, "fuzz-vga: rendered a %ux%u image\n", img.width, img.height);
                abort();
            }
            for (size_t i = 0; i < (size_t)img.width * img.height * 3; i += 61)
                sum += img.rgb[i];
            img_sum = sum;
        }
        break;
    }
    case 10: {
        uint16_t idx = fz_u16(f);
        uint32_t v = fz_u16(f);

        fz_pio(bus, 0x1ce, 2, &(uint32_t){ idx }, true);
        fz_pio(bus, 0x1cf, 2, &v, true);
        break;
    }
    case 11: {
        uint32_t off = fz_u32(f) % VGA_VRAM_SIZE;
        unsigned len = fz_u16(f);
        uint8_t seed = fz_u8(f);
        uint64_t base = bar_addr(bus, 0);

        for (unsigned i = 0; base && i < len && off + i < VGA_VRAM_SIZE; i++) {
            uint8_t b = (uint8_t)(seed + i * 13);

            fz_mem(bus, base + off + i, &b, 1, true);
        }
        break;
    }
    case 12: {
        uint8_t seed = fz_u8(f);

        for (unsigned i = 0; i < 0x20000; i++)
            fz_ram[0xa0000 + i] = (uint8_t)(seed ^ (i * 7) ^ (i >> 8));
        break;
    }
    case 13: {
        uint32_t idx = fz_u8(f), v = fz_u8(f);

        fz_pio(bus, 0x3d4, 1, &idx, true);
        fz_pio(bus, 0x3d5, 1, &v, true);
        break;
    }
    default:
        break;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = { data, size, 0 };
    struct bus *bus = fz_bus_create(false);
    struct pci *pci = NULL;
    unsigned bdfs[8];
    struct fz_target t = { vga_ports, sizeof(vga_ports) / sizeof(vga_ports[0]), bdfs, 0 };

    if (pci_create(bus, 0xe0000000ULL, &pci) || vga_create(pci, 1, bus, &fz_vga)) {
        fprintf(stderr, "fuzz-vga: cannot create the devices\n");
        abort();
    }
    t.nbdfs = fz_pci_scan(bus, bdfs, 8);
    fz_pci_enable(bus, bdfs, t.nbdfs);
    renders = 0;
    fz_run(bus, &t, &f);
    /* one last frame of whatever state the program left */
    renders = 0;
    fz_harness_op(bus, 9, &(struct fz){ (const uint8_t *)"", 0, 0 });
    bus_shutdown(bus);
    pci_destroy(pci);
    bus_destroy(bus);
    free(img.rgb);
    img = (struct vga_image){ 0 };
    return 0;
}
