/* --display sdl: a window with the guest's screen, redrawn ~30 times a
 * second from the main loop (the vCPUs never wait for it), scaled to the
 * window with the aspect ratio kept; key presses go to the i8042. */
#include "vmm/display.h"

#include <errno.h>

#ifndef CALF_HAVE_SDL2

int display_sdl_open(struct vga *vga, struct i8042 *kbd, struct display **out)
{
    (void)vga;
    (void)kbd;
    *out = NULL;
    return -ENOTSUP;
}

bool display_tick(struct display *d)
{
    (void)d;
    return false;
}

void display_close(struct display *d)
{
    (void)d;
}

#else

#include <stdlib.h>
#include <SDL.h>

#include "devices/devices.h"
#include "devices/vga.h"
#include "vmm/vm.h"

#define FRAME_MS 33
#define CURSOR_BLINK_MS 267 /* 16 frames of a 60 Hz VGA */

struct display {
    struct vga *vga;
    struct i8042 *kbd;
    SDL_Window *win;
    SDL_Renderer *ren;
    SDL_Texture *tex;
    unsigned tex_w, tex_h;
    struct vga_image img;
    uint32_t last_frame;
};

int display_sdl_open(struct vga *vga, struct i8042 *kbd, struct display **out)
{
    struct display *d = calloc(1, sizeof(*d));

    *out = NULL;
    if (!d)
        return -ENOMEM;
    d->vga = vga;
    d->kbd = kbd;
    /* SIGINT/SIGTERM stay calf's: they end the run with their status. */
    SDL_SetHint(SDL_HINT_NO_SIGNAL_HANDLERS, "1");
    if (SDL_Init(SDL_INIT_VIDEO)) {
        vmm_error("--display sdl: %s", SDL_GetError());
        free(d);
        return -ENODEV;
    }
    d->win = SDL_CreateWindow("calf", SDL_WINDOWPOS_UNDEFINED,
                              SDL_WINDOWPOS_UNDEFINED, 640, 400,
                              SDL_WINDOW_RESIZABLE);
    if (d->win)
        d->ren = SDL_CreateRenderer(d->win, -1, 0);
    if (!d->ren) {
        vmm_error("--display sdl: %s", SDL_GetError());
        display_close(d);
        return -ENODEV;
    }
    *out = d;
    return 0;
}

static void display_key(struct display *d, const SDL_KeyboardEvent *e)
{
    uint8_t seq[8];
    size_t n = keymap_hid_to_set2(e->keysym.scancode, e->type == SDL_KEYUP,
                                  seq);

    if (n && d->kbd)
        i8042_key_event(d->kbd, seq, n);
}

/* A new guest mode: a texture of its size, and the window follows. */
static int display_resize(struct display *d, unsigned w, unsigned h)
{
    if (d->tex)
        SDL_DestroyTexture(d->tex);
    d->tex = SDL_CreateTexture(d->ren, SDL_PIXELFORMAT_RGB24,
                               SDL_TEXTUREACCESS_STREAMING, (int)w, (int)h);
    if (!d->tex)
        return -ENOMEM;
    d->tex_w = w;
    d->tex_h = h;
    SDL_RenderSetLogicalSize(d->ren, (int)w, (int)h);
    SDL_SetWindowSize(d->win, (int)w, (int)h);
    return 0;
}

static void display_draw(struct display *d)
{
    int cursor = (SDL_GetTicks() / CURSOR_BLINK_MS) % 2 == 0;

    if (vga_render(d->vga, &d->img, cursor))
        return;
    if ((d->img.width != d->tex_w || d->img.height != d->tex_h) &&
        display_resize(d, d->img.width, d->img.height))
        return;
    SDL_UpdateTexture(d->tex, NULL, d->img.rgb, (int)d->img.width * 3);
    SDL_SetRenderDrawColor(d->ren, 0, 0, 0, 255);
    SDL_RenderClear(d->ren);
    SDL_RenderCopy(d->ren, d->tex, NULL, NULL);
    SDL_RenderPresent(d->ren);
}

bool display_tick(struct display *d)
{
    SDL_Event e;
    uint32_t now;

    while (SDL_PollEvent(&e)) {
        if (e.type == SDL_QUIT)
            return false;
        if (e.type == SDL_KEYDOWN || e.type == SDL_KEYUP)
            display_key(d, &e.key);
    }
    now = SDL_GetTicks();
    if (now - d->last_frame >= FRAME_MS) {
        d->last_frame = now;
        display_draw(d);
    }
    return true;
}

void display_close(struct display *d)
{
    if (!d)
        return;
    if (d->tex)
        SDL_DestroyTexture(d->tex);
    if (d->ren)
        SDL_DestroyRenderer(d->ren);
    if (d->win)
        SDL_DestroyWindow(d->win);
    SDL_Quit();
    free(d->img.rgb);
    free(d);
}

#endif
