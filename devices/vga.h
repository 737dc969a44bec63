/* Standard VGA with the Bochs VBE extensions ("std VGA", PCI 1234:1111):
 * the legacy VGA ports, the DISPI registers at 0x1CE/0x1CF, a 16 MiB
 * linear framebuffer in BAR0 (guest RAM-like: writes do not exit) and
 * QEMU's MMIO register page in BAR2.
 *
 * What is drawn: text modes from guest memory at the window the graphics
 * controller selects (0xB8000 for colour text, plain guest RAM here),
 * chain-4 256-colour modes (mode 13h) from 0xA0000, and every DISPI mode
 * (8/15/16/24/32 bits per pixel) from the framebuffer.  Planar 16-colour
 * modes and the banked DISPI window are not emulated: the legacy window
 * is guest RAM, which a device cannot overlay, so they render black. */
#ifndef CALF_DEVICES_VGA_H
#define CALF_DEVICES_VGA_H

#include <stdint.h>

#include "devices/bus.h"

struct pci;
struct vga;

#define VGA_VRAM_SIZE (16u << 20)
#define VGA_MAX_WIDTH 2560
#define VGA_MAX_HEIGHT 1600

/* The screen as 8-bit RGB triplets, row after row. */
struct vga_image {
    unsigned width, height;
    uint8_t *rgb;            /* width * height * 3 bytes */
};

/* Adds the function to pci at slot and registers the VGA ports on bus. */
int vga_create(struct pci *pci, int slot, struct bus *bus, struct vga **out);
/* Draws the current screen into img, reallocating img->rgb as needed
 * (free() it when done).  Safe from any thread: register state is read
 * under the bus lock, screen memory without it (a frame may tear, as on
 * hardware).  cursor_on: draw the text cursor (blink phase). */
int vga_render(struct vga *v, struct vga_image *img, int cursor_on);

/* 8x16 glyphs in code page 437 order, bit 7 leftmost (vga-font.c). */
extern const uint8_t vga_font_8x16[256][16];

#endif
