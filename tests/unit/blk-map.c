/* blk_map_read: every range it maps must hold what blk_pread reads there,
 * and once the image file has been cut short under the mapping, the
 * ranges past the cut must come back unmapped (no SIGBUS) while the rest
 * still read right.  TAP output.
 *   blk-map IMAGE */
#include "block/block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Walks the whole image; returns the bytes mapped, or -1 on a mismatch
 * (or with cut > 0, a mapped range past the first cut bytes of the file). */
static int64_t walk(BlockDriverState *bs, const char *what, uint64_t cut, uint64_t *unmapped)
{
    static uint8_t buf[1 << 20];
    int64_t mapped = 0;
    *unmapped = 0;
    for (uint64_t off = 0; off < bs->size;) {
        uint64_t want = bs->size - off < sizeof(buf) ? bs->size - off : sizeof(buf), n = 0;
        const uint8_t *p = blk_map_read(bs, off, want, &n, 0);
        if (!p && n == 0 && cut) {
            /* the cut took metadata too: this and the rest are unreadable */
            *unmapped += bs->size - off;
            break;
        }
        if (n == 0 || n > want) {
            printf("# %s: no length at %llu\n", what, (unsigned long long)off);
            return -1;
        }
        if (p) {
            if (cut && (uint64_t)(p + n - bs->map) > cut && bs->map) {
                /* bs->map is the top layer's: raw and qcow2 map their own file */
                printf("# %s: [%llu, +%llu) mapped past the cut\n", what,
                       (unsigned long long)off, (unsigned long long)n);
                return -1;
            }
            if (blk_pread(bs, off, buf, n) < 0 || memcmp(p, buf, n)) {
                printf("# %s: [%llu, +%llu) differs from blk_pread\n", what,
                       (unsigned long long)off, (unsigned long long)n);
                return -1;
            }
            blk_map_done(bs, p, n);
            mapped += (int64_t)n;
        } else {
            *unmapped += n;
        }
        off += n;
    }
    return mapped;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    BlockDriverState *bs = blk_open(argv[1], NULL, 0, NULL);
    if (!bs) {
        printf("1..0 # skip %s\n", blk_error());
        return 1;
    }
    printf("1..2\n");
    uint64_t un;
    int64_t m = walk(bs, "whole", 0, &un);
    printf("%s 1 - mapped ranges read as blk_pread (%lld bytes mapped, %llu not)\n",
           m < 0 ? "not ok" : "ok", (long long)m, (unsigned long long)un);
    struct stat st;
    uint64_t cut = 0;
    if (!stat(argv[1], &st))
        cut = (uint64_t)st.st_size / 2 & ~(uint64_t)4095;
    if (truncate(argv[1], (off_t)cut) < 0) {
        printf("not ok 2 - cannot cut %s\n", argv[1]);
        return 1;
    }
    m = walk(bs, "cut", cut ? cut : 1, &un);
    printf("%s 2 - after the file is cut to %llu bytes: nothing past it mapped, no SIGBUS "
           "(%lld bytes mapped, %llu not)\n", m < 0 ? "not ok" : "ok",
           (unsigned long long)cut, (long long)m, (unsigned long long)un);
    blk_close(bs);
    return 0;
}
