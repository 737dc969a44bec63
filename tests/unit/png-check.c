/* png-check FILE CHECK...: decodes a PNG (8-bit RGB or RGBA, any filter,
 * no interlace; chunk CRCs checked) and tests its pixels.  Checks:
 *   size WxH                   the image is W by H
 *   pixel X,Y RRGGBB           one pixel
 *   rect X,Y,W,H RRGGBB        every pixel of a rectangle
 *   cell COL,ROW CH FG BG      the 8x16 text cell shows glyph CH (hex,
 *                              code page 437) in FG on BG
 *   cursor COL,ROW FROM,TO FG  scan lines FROM..TO of the cell are FG
 * Exit status 0 when every check holds; each failure is printed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "devices/vga.h"

struct image {
    unsigned w, h;
    uint8_t *rgb;
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);

    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undoes the row filters of raw (h rows of 1 + w * bpp bytes) in place. */
static int unfilter(uint8_t *raw, unsigned w, unsigned h, unsigned bpp)
{
    size_t stride = (size_t)w * bpp;

    for (unsigned y = 0; y < h; y++) {
        uint8_t *row = raw + y * (stride + 1) + 1;
        const uint8_t *up = y ? row - (stride + 1) : NULL;
        unsigned type = row[-1];

        for (size_t i = 0; i < stride; i++) {
            int a = i >= bpp ? row[i - bpp] : 0, b = up ? up[i] : 0;
            int c = up && i >= bpp ? up[i - bpp] : 0;

            switch (type) {
            case 0: break;
            case 1: row[i] = (uint8_t)(row[i] + a); break;
            case 2: row[i] = (uint8_t)(row[i] + b); break;
            case 3: row[i] = (uint8_t)(row[i] + (a + b) / 2); break;
            case 4: row[i] = (uint8_t)(row[i] + paeth(a, b, c)); break;
            default: return -1;
            }
        }
    }
    return 0;
}

static int png_read(const char *path, struct image *img)
{
    FILE *f = fopen(path, "rb");
    static uint8_t buf[64 << 20];
    size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0, pos = 8;
    uint8_t *z = malloc(n), *raw;
    size_t zlen = 0;
    unsigned bpp = 0;
    uLongf rawlen;

    if (f)
        fclose(f);
    if (n < 8 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8) || !z)
        return fprintf(stderr, "%s: not a PNG\n", path), -1;
    while (pos + 12 <= n) {
        uint32_t len = be32(buf + pos);
        const uint8_t *type = buf + pos + 4, *data = buf + pos + 8;

        if (len > n - pos - 12 ||
            crc32(0, type, len + 4) != be32(data + len))
            return fprintf(stderr, "%s: bad chunk at %zu\n", path, pos), -1;
        if (!memcmp(type, "IHDR", 4) && len == 13) {
            img->w = be32(data);
            img->h = be32(data + 4);
            bpp = data[9] == 2 ? 3 : data[9] == 6 ? 4 : 0;
            if (data[8] != 8 || !bpp || data[12] || !img->w || !img->h ||
                img->w > 16384 || img->h > 16384)
                return fprintf(stderr, "%s: unsupported IHDR\n", path), -1;
        } else if (!memcmp(type, "IDAT", 4)) {
            memcpy(z + zlen, data, len);
            zlen += len;
        } else if (!memcmp(type, "IEND", 4)) {
            break;
        }
        pos += 12 + len;
    }
    if (!bpp)
        return fprintf(stderr, "%s: no IHDR\n", path), -1;
    rawlen = (uLongf)(img->w * bpp + 1) * img->h;
    raw = malloc(rawlen);
    if (!raw || uncompress(raw, &rawlen, z, zlen) != Z_OK ||
        rawlen != (uLongf)(img->w * bpp + 1) * img->h ||
        unfilter(raw, img->w, img->h, bpp))
        return fprintf(stderr, "%s: bad image data\n", path), -1;
    img->rgb = malloc((size_t)img->w * img->h * 3);
    for (size_t y = 0; y < img->h; y++)
        for (size_t x = 0; x < img->w; x++)
            memcpy(img->rgb + (y * img->w + x) * 3,
                   raw + y * (img->w * bpp + 1) + 1 + x * bpp, 3);
    free(raw);
    free(z);
    return 0;
}

static uint32_t pixel_at(const struct image *img, unsigned x, unsigned y)
{
    const uint8_t *p;

    if (x >= img->w || y >= img->h)
        return 0xffffffff;
    p = img->rgb + ((size_t)y * img->w + x) * 3;
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static int expect_px(const struct image *img, unsigned x, unsigned y,
                     uint32_t want, const char *what)
{
    uint32_t got = pixel_at(img, x, y);

    if (got == want)
        return 0;
    fprintf(stderr, "%s: pixel %u,%u is %06x, not %06x\n", what, x, y, got, want);
    return 1;
}

static int check_rect(const struct image *img, unsigned x0, unsigned y0,
                      unsigned w, unsigned h, uint32_t rgb, const char *what)
{
    for (unsigned y = y0; y < y0 + h; y++)
        for (unsigned x = x0; x < x0 + w; x++)
            if (expect_px(img, x, y, rgb, what))
                return 1;
    return 0;
}

static int check_cell(const struct image *img, unsigned col, unsigned row,
                      unsigned ch, uint32_t fg, uint32_t bg)
{
    for (unsigned y = 0; y < 16; y++)
        for (unsigned x = 0; x < 8; x++) {
            int on = vga_font_8x16[ch & 0xff][y] & (0x80 >> x);

            if (expect_px(img, col * 8 + x, row * 16 + y, on ? fg : bg, "cell"))
                return 1;
        }
    return 0;
}

static int run_check(const struct image *img, char **argv, int *used)
{
    unsigned a, b, c, d, e;

    if (!strcmp(argv[0], "size") && argv[1] &&
        sscanf(argv[1], "%ux%u", &a, &b) == 2) {
        *used = 2;
        if (img->w == a && img->h == b)
            return 0;
        fprintf(stderr, "size is %ux%u, not %ux%u\n", img->w, img->h, a, b);
        return 1;
    }
    if (!strcmp(argv[0], "pixel") && argv[1] && argv[2] &&
        sscanf(argv[1], "%u,%u", &a, &b) == 2 && sscanf(argv[2], "%x", &c) == 1) {
        *used = 3;
        return expect_px(img, a, b, c, "pixel");
    }
    if (!strcmp(argv[0], "rect") && argv[1] && argv[2] &&
        sscanf(argv[1], "%u,%u,%u,%u", &a, &b, &c, &d) == 4 &&
        sscanf(argv[2], "%x", &e) == 1) {
        *used = 3;
        return check_rect(img, a, b, c, d, e, "rect");
    }
    if (!strcmp(argv[0], "cell") && argv[1] && argv[2] && argv[3] && argv[4] &&
        sscanf(argv[1], "%u,%u", &a, &b) == 2 && sscanf(argv[2], "%x", &c) == 1 &&
        sscanf(argv[3], "%x", &d) == 1 && sscanf(argv[4], "%x", &e) == 1) {
        *used = 5;
        return check_cell(img, a, b, c, d, e);
    }
    if (!strcmp(argv[0], "cursor") && argv[1] && argv[2] && argv[3] &&
        sscanf(argv[1], "%u,%u", &a, &b) == 2 &&
        sscanf(argv[2], "%u,%u", &c, &d) == 2 && sscanf(argv[3], "%x", &e) == 1) {
        *used = 4;
        return check_rect(img, a * 8, b * 16 + c, 8, d - c + 1, e, "cursor");
    }
    fprintf(stderr, "png-check: bad check '%s'\n", argv[0]);
    exit(2);
}

int main(int argc, char **argv)
{
    struct image img = { 0 };
    int bad = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: png-check FILE CHECK...\n");
        return 2;
    }
    if (png_read(argv[1], &img))
        return 1;
    for (int i = 2; i < argc;) {
        int used = 1;

        bad += run_check(&img, argv + i, &used);
        i += used;
    }
    free(img.rgb);
    return bad ? 1 : 0;
}
