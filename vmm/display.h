/* What the user sees of the guest's screen: an SDL2 window
 * (display-sdl.c, when the build found SDL2) and PNG screenshots
 * (png.c), both drawn by vga_render(). */
#ifndef CALF_VMM_DISPLAY_H
#define CALF_VMM_DISPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bus;
struct vga;
struct i8042;
struct display;

/* Opens the window; key presses go to kbd.  -ENOTSUP when this build has
 * no SDL2, another negative errno (message printed) when no window can
 * be opened. */
int display_sdl_open(struct vga *vga, struct i8042 *kbd,
                     struct display **out);
/* Called by the main loop every few milliseconds on the thread that
 * opened the window: handles its events and redraws at about 30 Hz.
 * Returns false once the user closed the window. */
bool display_tick(struct display *d);
void display_close(struct display *d);

/* Writes rgb (w * h RGB triplets) as a PNG file; 0 or -errno. */
int png_write(const char *path, const uint8_t *rgb, unsigned w, unsigned h);
/* The same to an open stream (flushed, not closed) */
int png_fwrite(FILE *f, const uint8_t *rgb, unsigned w, unsigned h);
/* The current screen of vga as a PNG; prints what went wrong. */
int screenshot_write(struct vga *vga, const char *path);

/* USB HID usage (= SDL scancode) to PC scan code set 2: the make code
 * bytes into out (at most 8), returns their count, 0 for keys without
 * one.  release: the break code instead (F0 before the last byte). */
size_t keymap_hid_to_set2(unsigned hid, bool release, uint8_t *out);

#endif
