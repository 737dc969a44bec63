/* PNG screenshots: 8-bit RGB, no interlace, every row filter 0, one
 * zlib stream in one IDAT chunk.  Small on purpose; zlib does the work. */
#include "vmm/display.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "devices/byteorder.h"
#include "devices/vga.h"
#include "vmm/vm.h"

static int png_chunk(FILE *f, const char *type, const uint8_t *data,
                     uint32_t len)
{
    uint8_t hdr[8], crc[4];
    uLong c = crc32(0, (const Bytef *)type, 4);

    put_be32(hdr, len);
    memcpy(hdr + 4, type, 4);
    if (len)
        c = crc32(c, data, len);
    put_be32(crc, (uint32_t)c);
    if (fwrite(hdr, 8, 1, f) != 1 || (len && fwrite(data, len, 1, f) != 1) ||
        fwrite(crc, 4, 1, f) != 1)
        return -EIO;
    return 0;
}

/* The rows with their filter-type byte, deflated. */
static int png_deflate(const uint8_t *rgb, unsigned w, unsigned h,
                       uint8_t **out, uLongf *out_len)
{
    size_t row = (size_t)w * 3, raw_len = (row + 1) * h;
    uint8_t *raw = malloc(raw_len);
    uLongf len = compressBound((uLong)raw_len);
    uint8_t *z = malloc(len);
    int ret = -ENOMEM;

    if (raw && z) {
        for (unsigned y = 0; y < h; y++) {
            raw[y * (row + 1)] = 0;
            memcpy(raw + y * (row + 1) + 1, rgb + y * row, row);
        }
        ret = compress2(z, &len, raw, (uLong)raw_len, 6) == Z_OK ? 0 : -EIO;
    }
    free(raw);
    if (ret) {
        free(z);
        return ret;
    }
    *out = z;
    *out_len = len;
    return 0;
}

int png_fwrite(FILE *f, const uint8_t *rgb, unsigned w, unsigned h)
{
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G',
                                    '\r', '\n', 0x1a, '\n' };
    uint8_t ihdr[13] = { 0 };
    uint8_t *z = NULL;
    uLongf zlen = 0;
    int ret;

    if (!w || !h || w > 0x7fffffff / 3)
        return -EINVAL;
    ret = png_deflate(rgb, w, h, &z, &zlen);
    if (ret)
        return ret;
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = 2; /* colour type: RGB */
    ret = fwrite(sig, sizeof(sig), 1, f) == 1 ? 0 : -EIO;
    if (!ret)
        ret = png_chunk(f, "IHDR", ihdr, sizeof(ihdr));
    if (!ret)
        ret = png_chunk(f, "IDAT", z, (uint32_t)zlen);
    if (!ret)
        ret = png_chunk(f, "IEND", NULL, 0);
    if (!ret && fflush(f))
        ret = -errno;
    free(z);
    return ret;
}

int png_write(const char *path, const uint8_t *rgb, unsigned w, unsigned h)
{
    FILE *f = fopen(path, "wb");
    int ret;

    if (!f)
        return -errno;
    ret = png_fwrite(f, rgb, w, h);
    if (fclose(f) && !ret)
        ret = -EIO;
    return ret;
}

int screenshot_write(struct vga *vga, const char *path)
{
    struct vga_image img = { 0 };
    int ret = vga_render(vga, &img, 1);

    if (!ret)
        ret = png_write(path, img.rgb, img.width, img.height);
    free(img.rgb);
    if (ret)
        vmm_error("screenshot %s: %s", path, strerror(-ret));
    return ret;
}
