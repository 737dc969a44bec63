/* --display sdl: a window with the guest's screen, redrawn ~30 times a
 * second from the main loop (the vCPUs never wait for it), scaled to the
 * window with the aspect ratio kept; key presses go to the i8042.
 * libSDL2 is opened with dlopen when a window is asked for: linked in,
 * it and its ~40 libraries (X11, PulseAudio, codecs) cost every run
 * about 3 MiB of RSS and milliseconds of start-up. */
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

#include <dlfcn.h>
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

#define SDL_FUNCS(X) \
    X(SDL_CreateRenderer) \
    X(SDL_CreateTexture) \
    X(SDL_CreateWindow) \
    X(SDL_DestroyRenderer) \
    X(SDL_DestroyTexture) \
    X(SDL_DestroyWindow) \
    X(SDL_GetError) \
    X(SDL_GetTicks) \
    X(SDL_Init) \
    X(SDL_PollEvent) \
    X(SDL_Quit) \
    X(SDL_RenderClear) \
    X(SDL_RenderCopy) \
    X(SDL_RenderPresent) \
    X(SDL_RenderSetLogicalSize) \
    X(SDL_SetHint) \
    X(SDL_SetRenderDrawColor) \
    X(SDL_SetWindowSize) \
    X(SDL_UpdateTexture)

#define SDL_PTR(name) static __typeof__(&name) p_##name;
SDL_FUNCS(SDL_PTR)
#undef SDL_PTR
/* Calls go through the pointers dlsym filled in. */
#define S(name) p_##name

static int display_sdl_load(void)
{
    static void *lib;

    if (lib)
        return 0;
    lib = dlopen("libSDL2-2.0.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        vmm_error("--display sdl: cannot load SDL2 (Debian: libsdl2-2.0-0): %s",
                  dlerror());
        return -ENOENT;
    }
#define SDL_LOAD(name)                                                  \
    if (!(p_##name = (__typeof__(&name))dlsym(lib, #name))) {           \
        vmm_error("--display sdl: SDL2 has no %s", #name);              \
        dlclose(lib);                                                   \
        lib = NULL;                                                     \
        return -ENOENT;                                                 \
    }
    SDL_FUNCS(SDL_LOAD)
#undef SDL_LOAD
    return 0;
}

int display_sdl_open(struct vga *vga, struct i8042 *kbd, struct display **out)
{
    struct display *d = calloc(1, sizeof(*d));

    *out = NULL;
    if (!d)
        return -ENOMEM;
    if (display_sdl_load()) {
        free(d);
        return -ENOENT;
    }
    d->vga = vga;
    d->kbd = kbd;
    /* SIGINT/SIGTERM stay calf's: they end the run with their status. */
    S(SDL_SetHint)(SDL_HINT_NO_SIGNAL_HANDLERS, "1");
    if (S(SDL_Init)(SDL_INIT_VIDEO)) {
        vmm_error("--display sdl: %s", S(SDL_GetError)());
        free(d);
        return -ENODEV;
    }
    d->win = S(SDL_CreateWindow)("calf", SDL_WINDOWPOS_UNDEFINED,
                              SDL_WINDOWPOS_UNDEFINED, 640, 400,
                              SDL_WINDOW_RESIZABLE);
    if (d->win)
        d->ren = S(SDL_CreateRenderer)(d->win, -1, 0);
    if (!d->ren) {
        vmm_error("--display sdl: %s", S(SDL_GetError)());
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
        S(SDL_DestroyTexture)(d->tex);
    d->tex = S(SDL_CreateTexture)(d->ren, SDL_PIXELFORMAT_RGB24,
                               SDL_TEXTUREACCESS_STREAMING, (int)w, (int)h);
    if (!d->tex)
        return -ENOMEM;
    d->tex_w = w;
    d->tex_h = h;
    S(SDL_RenderSetLogicalSize)(d->ren, (int)w, (int)h);
    S(SDL_SetWindowSize)(d->win, (int)w, (int)h);
    return 0;
}

static void display_draw(struct display *d)
{
    int cursor = (S(SDL_GetTicks)() / CURSOR_BLINK_MS) % 2 == 0;

    if (vga_render(d->vga, &d->img, cursor))
        return;
    if ((d->img.width != d->tex_w || d->img.height != d->tex_h) &&
        display_resize(d, d->img.width, d->img.height))
        return;
    S(SDL_UpdateTexture)(d->tex, NULL, d->img.rgb, (int)d->img.width * 3);
    S(SDL_SetRenderDrawColor)(d->ren, 0, 0, 0, 255);
    S(SDL_RenderClear)(d->ren);
    S(SDL_RenderCopy)(d->ren, d->tex, NULL, NULL);
    S(SDL_RenderPresent)(d->ren);
}

bool display_tick(struct display *d)
{
    SDL_Event e;
    uint32_t now;

    while (S(SDL_PollEvent)(&e)) {
        if (e.type == SDL_QUIT)
            return false;
        if (e.type == SDL_KEYDOWN || e.type == SDL_KEYUP)
            display_key(d, &e.key);
    }
    now = S(SDL_GetTicks)();
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
        S(SDL_DestroyTexture)(d->tex);
    if (d->ren)
        S(SDL_DestroyRenderer)(d->ren);
    if (d->win)
        S(SDL_DestroyWindow)(d->win);
    S(SDL_Quit)();
    free(d->img.rgb);
    free(d);
}

#endif
