/* Two races a cold review found in the block layer, each as a program
 * that fails (exit 1) when it sees the race:
 *
 *   blk-torn crypt IMAGE FORMAT N   one thread rewrites bytes [0,16) of
 *       an encrypted image (a read-modify-write of sector 0) while the
 *       main thread reads bytes [256,512) N times: they must always read
 *       what was written there first.  A read that met the sector half
 *       rewritten decrypted it to noise.
 *   blk-torn bitmap IMAGE N         one thread writes offset 0 of a qcow2
 *       image with a bitmap b0 while the main thread disables, clears and
 *       enables b0, writes 4 MiB in, and reads b0 back, N times: that
 *       write must be recorded.  A writer that raced the enable could
 *       leave the block layer believing no bitmap records writes.
 *
 * Encrypted images open with the key "calf" (key-secret /
 * encrypt.key-secret). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"

static BlockDriverState *bs;
static int stop;

static void *crypt_writer(void *arg)
{
    (void)arg;
    uint8_t b[16];
    for (unsigned i = 0; !__atomic_load_n(&stop, __ATOMIC_RELAXED); i++) {
        memset(b, (int)(i & 0xff), sizeof(b));
        if (blk_pwrite(bs, 0, b, sizeof(b)) < 0)
            fprintf(stderr, "blk-torn: write: %s\n", blk_error());
    }
    return NULL;
}

static int crypt_race(long n)
{
    uint8_t pat[512], r[256];
    memset(pat, 0x77, sizeof(pat));
    if (blk_pwrite(bs, 0, pat, sizeof(pat)) < 0) {
        fprintf(stderr, "blk-torn: %s\n", blk_error());
        return 2;
    }
    pthread_t t;
    pthread_create(&t, NULL, crypt_writer, NULL);
    long bad = 0;
    for (long i = 0; i < n; i++) {
        if (blk_pread(bs, 256, r, sizeof(r)) < 0 || memcmp(r, pat, sizeof(r))) {
            if (!bad)
                fprintf(stderr, "blk-torn: read %ld: bytes [256,512) are not what was "
                        "written there\n", i);
            bad++;
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    printf("%ld of %ld reads wrong\n", bad, n);
    return bad != 0;
}

static void *bitmap_writer(void *arg)
{
    (void)arg;
    uint8_t b[512];
    memset(b, 1, sizeof(b));
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        if (blk_pwrite(bs, 0, b, sizeof(b)) < 0)
            fprintf(stderr, "blk-torn: write: %s\n", blk_error());
    return NULL;
}

static void bitmap_op(int op)
{
    BlockBitmapReq r = {.op = op, .name = "b0"};
    if (blk_bitmap(bs, &r) < 0) {
        fprintf(stderr, "blk-torn: bitmap op %d: %s\n", op, blk_error());
        exit(2);
    }
}

static int bitmap_race(long n)
{
    pthread_t t;
    pthread_create(&t, NULL, bitmap_writer, NULL);
    uint8_t m[512];
    memset(m, 2, sizeof(m));
    long missed = 0;
    for (long i = 0; i < n; i++) {
        bitmap_op(BLK_BITMAP_DISABLE);
        bitmap_op(BLK_BITMAP_CLEAR);
        bitmap_op(BLK_BITMAP_ENABLE);
        if (blk_pwrite(bs, 4 << 20, m, sizeof(m)) < 0) {
            fprintf(stderr, "blk-torn: %s\n", blk_error());
            exit(2);
        }
        BlockBitmapReq r = {.op = BLK_BITMAP_READ, .name = "b0"};
        if (blk_bitmap(bs, &r) < 0) {
            fprintf(stderr, "blk-torn: read b0: %s\n", blk_error());
            exit(2);
        }
        /* anything past the first bit (offset 0, the other thread's) */
        int any = r.bits[0] & ~1;
        for (uint64_t k = 1; k < r.nbytes; k++)
            any |= r.bits[k];
        free(r.bits);
        if (!any && missed++ == 0)
            fprintf(stderr, "blk-torn: round %ld: the write after the enable is not recorded\n",
                    i);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    printf("%ld of %ld writes not recorded\n", missed, n);
    return missed != 0;
}

int main(int argc, char **argv)
{
    bool crypt = argc == 5 && !strcmp(argv[1], "crypt");
    if (!crypt && !(argc == 4 && !strcmp(argv[1], "bitmap"))) {
        fprintf(stderr, "usage: blk-torn crypt IMAGE FORMAT N | blk-torn bitmap IMAGE N\n");
        return 2;
    }
    BlockOptions o = {0};
    if (crypt)
        blkopts_set(&o, strcmp(argv[3], "qcow2") ? "key-secret" : "encrypt.key-secret", "calf");
    bs = blk_open(argv[2], crypt ? argv[3] : "qcow2", BLK_O_RDWR, o.n ? &o : NULL);
    blkopts_free(&o);
    if (!bs) {
        fprintf(stderr, "blk-torn: %s\n", blk_error());
        return 2;
    }
    long n = atol(argv[argc - 1]);
    int r = crypt ? crypt_race(n) : bitmap_race(n);
    blk_close(bs);
    return r;
}
