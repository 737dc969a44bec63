/* libFuzzer harness for the qcow2 driver: the input is an image file.
 * It is opened read-only without its backing chain, then (when it names a
 * relative backing file, which resolves into an empty private directory)
 * with the chain; then checked as `calf-img check` does; then read/write
 * with cache=unsafe on the private copy; then checked and repaired.  The
 * read-only opens read what block status calls data (a bounded amount, so
 * iterations stay fast) and walk the block status; the read/write open
 * writes, zeroes and discards a little and takes, applies and deletes an
 * internal snapshot.
 *
 * qcow (v1) inputs go through the qcow driver the same way.  Every open
 * passes the passphrase "fuzz" (encrypted seeds use it), so encrypted
 * inputs are unlocked and decrypted.  An input that starts with the LUKS
 * magic is a bare LUKS header region: parsed, shown, unlocked, and
 * given to amend's key slot code.
 *
 * Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined, and
 * by tests/unit/fuzz-replay.c (gcc, with its own main) for `make test`.
 * Every crash, hang, leak or sanitizer report is a bug in block/. */
#include "block/block.h"
#include "block/luks.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_READ_BUDGET (64u << 20) /* bytes read per open */
#define FUZZ_ZERO_READ   (64u << 10) /* bytes read of a zero/unallocated run */
#define FUZZ_STATUS_CALLS 4096
#define FUZZ_CHUNK       (1u << 20)

static char fuzz_dir[256];
static char fuzz_path[300];
static uint8_t *fuzz_buf;

static void fuzz_cleanup(void)
{
    if (fuzz_path[0])
        unlink(fuzz_path);
    if (fuzz_dir[0])
        rmdir(fuzz_dir);
    free(fuzz_buf);
    fuzz_buf = NULL;
}

static int fuzz_setup(void)
{
    if (fuzz_path[0])
        return 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/calf-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    snprintf(fuzz_path, sizeof(fuzz_path), "%s/img", fuzz_dir);
    fuzz_buf = malloc(FUZZ_CHUNK);
    if (!fuzz_buf)
        abort();
    atexit(fuzz_cleanup);
    return 0;
}

static void fuzz_write_file(const uint8_t *data, size_t size)
{
    int fd = open(fuzz_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("fuzz: open");
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror("fuzz: write");
            abort();
        }
        done += (size_t)w;
    }
    close(fd);
}

/* Reads up to budget bytes of [off, off+len). */
static int fuzz_read(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *budget)
{
    while (len && *budget) {
        size_t n = len < FUZZ_CHUNK ? len : FUZZ_CHUNK;
        if (n > *budget)
            n = *budget;
        if (blk_pread(bs, off, fuzz_buf, n) < 0)
            return -1;
        off += n;
        len -= n;
        *budget -= n;
    }
    return 0;
}

static void fuzz_exercise(BlockDriverState *bs)
{
    uint64_t budget = FUZZ_READ_BUDGET, size = bs->size, off = 0;
    for (int i = 0; i < FUZZ_STATUS_CALLS && off < size && budget; i++) {
        uint64_t pnum = 0, host = 0;
        int depth = 0;
        int st = blk_block_status_above(bs, off, size - off, &pnum, &host, &depth, NULL);
        if (st < 0)
            break;
        if (pnum == 0 || pnum > size - off) {
            fprintf(stderr, "fuzz: block status returned %llu bytes at %llu of %llu\n",
                    (unsigned long long)pnum, (unsigned long long)off,
                    (unsigned long long)size);
            abort();
        }
        uint64_t n = (st & BLK_STATUS_DATA) ? pnum : pnum < FUZZ_ZERO_READ ? pnum : FUZZ_ZERO_READ;
        if (fuzz_read(bs, off, n, &budget) < 0)
            break;
        uint64_t st2pnum;
        blk_block_status(bs, off, pnum, &st2pnum, NULL);
        off += pnum;
    }
    /* unaligned reads at both ends of the image */
    uint64_t small = 16u << 10;
    if (size) {
        uint64_t n = size < 4097 ? size - 1 : 4096;
        if (n)
            blk_pread(bs, 1, fuzz_buf, n);
        uint64_t tail = size < small ? size : small;
        blk_pread(bs, size - tail, fuzz_buf, tail);
    }
}

static void fuzz_write_some(BlockDriverState *bs, const uint8_t *data, size_t size)
{
    uint64_t vs = bs->size;
    if (!vs)
        return;
    memset(fuzz_buf, 0xa5, 8192);
    /* offsets picked from the input, so the fuzzer can steer them */
    uint64_t seed = 0;
    for (size_t i = 0; i < size && i < 4096; i += 97)
        seed = seed * 31 + data[i];
    uint64_t offs[3] = {0, vs / 2, seed % vs};
    for (int i = 0; i < 3; i++) {
        uint64_t o = offs[i] & ~511ULL, n = 3 * 512 + 100;
        if (o >= vs)
            continue;
        if (n > vs - o)
            n = vs - o;
        if (blk_pwrite(bs, o + (i == 2 ? 7 : 0), fuzz_buf, n > 7 ? n - 7 : n) < 0)
            break;
    }
    uint64_t z = (seed >> 8) % vs;
    blk_pwrite_zeroes(bs, z & ~65535ULL,
                      (vs - (z & ~65535ULL)) < 131072 ? vs - (z & ~65535ULL) : 131072, 0);
    blk_discard(bs, 0, vs < 65536 ? vs : 65536);
    blk_flush(bs);
    uint64_t budget = 4u << 20;
    fuzz_read(bs, 0, vs, &budget);
}

/* A backing file name that stays inside the private directory. */
static bool fuzz_backing_is_local(const char *name)
{
    return name[0] && name[0] != '/' && !strstr(name, "..");
}

/* qcow (v1) images go to the qcow driver where there is one, the rest to
 * qcow2: probing would hand most mutants to raw, which has nothing to find. */
static const char *fuzz_format(const uint8_t *data, size_t size)
{
    if (size >= 8 && !data[4] && !data[5] && !data[6] && data[7] == 1 && blk_find_driver("qcow"))
        return "qcow";
    return "qcow2";
}

/* amend's key slot choices on the parsed header (erase by slot and by
 * password, add to a free slot), and, once unlocked, a new key put over
 * slot 0 of a private copy of the region, which must then parse and open
 * with the new passphrase to the same master key. */
static void fuzz_luks_amend(LuksHeader *h, const uint8_t *data, size_t size)
{
    unsigned slots;
    LuksAmendOpts erase = {.has_keyslot = true, .keyslot = data[size - 1] % 9};
    LuksAmendOpts by_pass = {.old_secret = "fuzz"};
    LuksAmendOpts add = {.activate = true, .new_secret = "fuzz2"};
    LuksAmendOpts over = {.activate = true, .new_secret = "fuzz2", .has_keyslot = true};
    luks_amend_select(h, data, size, &erase, false, &slots);
    luks_amend_select(h, data, size, &by_pass, true, &slots);
    luks_amend_select(h, data, size, &add, false, &slots);
    if (!h->unlocked || luks_amend_select(h, data, size, &over, true, &slots) < 0)
        return;
    uint8_t *copy = malloc(size), entry[48];
    if (!copy)
        return;
    memcpy(copy, data, size);
    if (luks_slot_fill(h, copy, 0, "fuzz2", 1000) == 0) {
        h->slot[0].active = true;
        luks_slot_encode(h, 0, entry);
        memcpy(copy + luks_slot_entry_offset(0), entry, sizeof(entry));
        LuksHeader h2;
        BlkCipher *c = NULL;
        if (luks_parse(copy, size, size, &h2) < 0 ||
            luks_unlock(&h2, copy, size, "fuzz2", &c) < 0 ||
            memcmp(h2.master_key, h->master_key, h->key_bytes))
            abort(); /* a key slot written by amend that does not open */
        blk_cipher_free(c);
    }
    free(copy);
}

/* A LUKS header region on its own (the qcow2 images that hold one are
 * larger than the fuzzer's inputs). */
static void fuzz_luks(const uint8_t *data, size_t size)
{
    LuksHeader h;
    if (luks_parse(data, size, size, &h) < 0)
        return;
    BlockLuksInfo info;
    luks_get_info(&h, &info);
    BlkCipher *c = NULL;
    if (luks_unlock(&h, data, size, "fuzz", &c) == 0) {
        memset(fuzz_buf, 0x5a, 4096);
        blk_cipher_crypt(c, 12345, fuzz_buf, 4096, true);
        blk_cipher_crypt(c, 12345, fuzz_buf, 4096, false);
        blk_cipher_free(c);
    }
    fuzz_luks_amend(&h, data, size);
}

static BlockOptions fuzz_opts;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_setup();
    /* PBKDF2 runs as long as the header says: keep each input fast */
    luks_max_iters = 20000;
    if (size >= 6 && !memcmp(data, "LUKS\xba\xbe", 6)) {
        fuzz_luks(data, size);
        return 0;
    }
    fuzz_write_file(data, size);
    const char *fmt = fuzz_format(data, size);
    blkopts_free(&fuzz_opts);
    blkopts_set(&fuzz_opts, "encrypt.key-secret", "fuzz");
    BlockDriverState *bs = blk_open(fuzz_path, fmt, BLK_O_NO_BACKING | BLK_O_SHARE, &fuzz_opts);
    if (!bs)
        return 0;
    bool local = fuzz_backing_is_local(bs->backing_file);
    fuzz_exercise(bs);
    BlockInfo info;
    if (blk_get_info(bs, &info) == 0)
        blk_info_free(&info);
    blk_close(bs);

    if (local) {
        /* the chain: a missing file, or the image itself (a loop) */
        bs = blk_open(fuzz_path, fmt, BLK_O_SHARE, NULL);
        if (bs) {
            fuzz_exercise(bs);
            blk_close(bs);
        }
    }

    /* what `calf-img check` does: read-only, damage allowed */
    BlockCheckResult res;
    bs = blk_open(fuzz_path, fmt, BLK_O_CHECK | BLK_O_NO_BACKING | BLK_O_SHARE, NULL);
    if (bs) {
        blk_check(bs, &res, 0);
        blk_close(bs);
    }

    bs = blk_open(fuzz_path, fmt, BLK_O_RDWR | BLK_O_NO_BACKING | BLK_O_UNSAFE, &fuzz_opts);
    if (bs) {
        fuzz_write_some(bs, data, size);
        /* internal snapshots: one taken, the first one applied, deleted */
        if (blk_snapshot_create(bs, "fuzz") == 0) {
            blk_snapshot_apply(bs, "1");
            blk_snapshot_delete(bs, "fuzz");
        }
        blk_close(bs);
    }

    /* `calf-img check -r all` on what is left */
    bs = blk_open(fuzz_path, fmt, BLK_O_CHECK | BLK_O_NO_BACKING | BLK_O_RDWR | BLK_O_UNSAFE,
                  NULL);
    if (bs) {
        blk_check(bs, &res, BLK_CHECK_FIX_LEAKS | BLK_CHECK_FIX_ERRORS);
        blk_close(bs);
    }
    return 0;
}
