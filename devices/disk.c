/* --disk FILE[,key=value...]: see disk.h. */
#include "devices/disk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int opt_bool(const char *v, bool *out)
{
    if (!v || !strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "1"))
        *out = true;
    else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "0"))
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int opt_index(const char *v, int *out)
{
    char *end;
    long n;

    if (!v || !*v)
        return -EINVAL;
    n = strtol(v, &end, 10);
    if (*end || n < 0 || n > 3)
        return -EINVAL;
    *out = (int)n;
    return 0;
}

static int opt_choice(const char *v, const char *const *names, int n, int *out)
{
    for (int i = 0; v && i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    return -EINVAL;
}

static int opt_one(struct disk_opts *o, const char *key, const char *v)
{
    static const char *const ifs[] = { "virtio", "ide" };
    static const char *const caches[] = { "writeback", "none", "unsafe" };
    static const char *const discards[] = { "ignore", "unmap" };
    static const char *const media[] = { "disk", "cdrom" };
    int i;

    if (!strcmp(key, "format") && v && *v) {
        o->format = v;
        return 0;
    }
    if (!strcmp(key, "readonly"))
        return opt_bool(v, &o->readonly);
    if (!strcmp(key, "snapshot"))
        return opt_bool(v, &o->snapshot);
    if (!strcmp(key, "disable-legacy"))
        return opt_bool(v, &o->modern);
    if (!strcmp(key, "index"))
        return opt_index(v, &o->index);
    if (!strcmp(key, "serial") && v && strlen(v) <= DISK_SERIAL_MAX) {
        strcpy(o->serial, v);
        return 0;
    }
    if (!strcmp(key, "if"))
        return opt_choice(v, ifs, 2, &o->iface);
    if (!strcmp(key, "cache"))
        return opt_choice(v, caches, 3, &o->cache);
    if (!strcmp(key, "discard") && !opt_choice(v, discards, 2, &i)) {
        o->unmap = i;
        return 0;
    }
    if (!strcmp(key, "media") && !opt_choice(v, media, 2, &i)) {
        o->cdrom = i;
        return 0;
    }
    return -EINVAL;
}

/* Splits off FILE (",," unescaped in place); returns the option list. */
static char *split_file(char *s)
{
    char *r = s, *w = s;

    for (; *r && !(r[0] == ',' && r[1] != ','); r++, w++) {
        *w = *r;
        if (r[0] == ',')
            r++;
    }
    if (*r)
        r++;
    *w = 0;
    return r;
}

static int parse_options(struct disk_opts *o, char *r)
{
    while (*r) {
        char *key = r, *end = strchr(r, ','), *eq;

        if (end)
            *end = 0;
        eq = strchr(key, '=');
        if (eq)
            *eq++ = 0;
        if (opt_one(o, key, eq)) {
            fprintf(stderr, "calf: --disk %s: bad option '%s%s%s'\n", o->file,
                    key, eq ? "=" : "", eq ? eq : "");
            return -EINVAL;
        }
        r = end ? end + 1 : key + strlen(key);
    }
    return 0;
}

static int check_combination(const struct disk_opts *o)
{
    if (o->cdrom && o->iface != DISK_IF_IDE) {
        fprintf(stderr, "calf: --disk %s: media=cdrom needs if=ide\n", o->file);
        return -EINVAL;
    }
    if (o->index >= 0 && o->iface != DISK_IF_IDE) {
        fprintf(stderr, "calf: --disk %s: index= is for if=ide\n", o->file);
        return -EINVAL;
    }
    if (o->modern && o->iface == DISK_IF_IDE) {
        fprintf(stderr, "calf: --disk %s: disable-legacy is for if=virtio\n",
                o->file);
        return -EINVAL;
    }
    return 0;
}

int disk_parse(const char *spec, struct disk_opts *o)
{
    int ret;

    *o = (struct disk_opts){ .index = -1, .cache = DISK_CACHE_WRITEBACK,
                             .arg = -1 };
    o->spec = strdup(spec);
    if (!o->spec)
        return -ENOMEM;
    o->file = o->spec;
    ret = parse_options(o, split_file(o->spec));
    if (!ret && !*o->file) {
        fprintf(stderr, "calf: --disk: no file given\n");
        ret = -EINVAL;
    }
    if (!ret)
        ret = check_combination(o);
    if (o->cdrom)
        o->readonly = true; /* a CD is read-only media */
    if (ret)
        disk_opts_free(o);
    return ret;
}

void disk_opts_free(struct disk_opts *o)
{
    free(o->spec);
    o->spec = NULL;
    o->file = NULL;
}

/* calf run takes no passphrase: an encrypted image anywhere in the
 * chain would give the guest nothing but I/O errors.  It is refused
 * before the guest runs, as QEMU refuses a drive without its key. */
static bool chain_encrypted(BlockDriverState *bs, const char *file)
{
    for (BlockDriverState *b = bs; b; b = b->backing) {
        BlockInfo info;
        if (blk_get_info(b, &info) < 0) {
            fprintf(stderr, "calf: --disk %s: %s: %s\n", file, b->filename,
                    blk_error());
            return true;
        }
        char how[16];
        snprintf(how, sizeof(how), "%s",
                 info.encrypt_format ? info.encrypt_format : "aes");
        bool enc = info.encrypted;
        blk_info_free(&info);
        if (!enc)
            continue;
        fprintf(stderr, "calf: --disk %s: %s is encrypted (%s) and calf run "
                "takes no key (Parameter 'encrypt.key-secret' is required "
                "for cipher): make a plain copy first, with calf-img "
                "convert --object secret,id=s0,... --image-opts "
                "driver=%s,file.filename=%s,encrypt.key-secret=s0 "
                "-O %s COPY\n",
                file, b == bs ? "the image" : b->filename, how, b->drv->name,
                b->filename, b->drv->name);
        return true;
    }
    return false;
}

#define DISK_OPENED_MAX 32

/* Locking: l->lock guards bs, inflight, held and the dirty bitmap; a
 * model's request holds none of it while it does I/O.  held is set by
 * the one holder (holders queue on it); enter waits while it is set. */
struct disk_live {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    BlockDriverState *bs;
    BlockDriverState *first;  /* what disk_open() gave the model */
    int arg;
    bool overlay;             /* ,snapshot */
    unsigned inflight;
    bool held;
    bool forgotten;           /* disk_forget(): free for the next open */
    /* Write tracking: a bit per unit of gran bytes (dirty), a bit per
     * word of it that is not zero (sum), and the count of units set
     * (ndirty): marking, taking and counting never walk the whole disk
     * (1 Gi units on a 64 TiB disk). */
    uint64_t *dirty;          /* NULL: not tracking */
    uint64_t *sum;
    uint64_t gran, units, ndirty;
};

static struct disk_live lives[DISK_OPENED_MAX];
static int nopened;
static pthread_mutex_t opened_lock = PTHREAD_MUTEX_INITIALIZER;

static void disk_note_opened(BlockDriverState *bs, const struct disk_opts *o)
{
    struct disk_live *l = NULL;

    pthread_mutex_lock(&opened_lock);
    /* a slot a changed CD's medium left (disk_forget) serves again: no
     * model holds a CD's slot, it only lists the image for snapshots */
    for (int i = 0; i < nopened && !l; i++)
        if (lives[i].forgotten)
            l = &lives[i];
    if (!l && nopened < DISK_OPENED_MAX) {
        l = &lives[nopened++];
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->cond, NULL);
    }
    if (l) {
        pthread_mutex_lock(&l->lock);
        l->bs = l->first = bs;
        l->arg = o->arg;
        l->overlay = o->snapshot;
        l->forgotten = false;
        pthread_mutex_unlock(&l->lock);
    }
    pthread_mutex_unlock(&opened_lock);
}

void disk_forget(BlockDriverState *bs)
{
    pthread_mutex_lock(&opened_lock);
    for (int i = 0; i < nopened; i++) {
        struct disk_live *l = &lives[i];

        pthread_mutex_lock(&l->lock);
        if (!l->forgotten && l->bs == bs) {
            l->bs = l->first = NULL;
            l->arg = -1;
            l->forgotten = true;
        }
        pthread_mutex_unlock(&l->lock);
    }
    pthread_mutex_unlock(&opened_lock);
}

int disk_opened_list(struct disk_opened *out, int max)
{
    int n = 0;

    pthread_mutex_lock(&opened_lock);
    for (int i = 0; i < nopened; i++) {
        BlockDriverState *bs = disk_live_bs(&lives[i]);

        if (!bs) /* a CD's medium the monitor took out */
            continue;
        if (n < max)
            out[n] = (struct disk_opened){
                .bs = bs, .file = bs->filename, .overlay = lives[i].overlay,
            };
        n++;
    }
    pthread_mutex_unlock(&opened_lock);
    return n;
}

/* ---- live images ---- */

struct disk_live *disk_live_get(int arg)
{
    struct disk_live *l = NULL;

    pthread_mutex_lock(&opened_lock);
    for (int i = 0; i < nopened && !l && arg >= 0; i++)
        if (lives[i].arg == arg && lives[i].first)
            l = &lives[i];
    pthread_mutex_unlock(&opened_lock);
    return l;
}

struct disk_live *disk_live_of(BlockDriverState *bs)
{
    struct disk_live *l = NULL;

    pthread_mutex_lock(&opened_lock);
    for (int i = 0; i < nopened && !l && bs; i++)
        if (lives[i].first == bs)
            l = &lives[i];
    pthread_mutex_unlock(&opened_lock);
    return l;
}

BlockDriverState *disk_live_enter(struct disk_live *l)
{
    BlockDriverState *bs;

    pthread_mutex_lock(&l->lock);
    while (l->held)
        pthread_cond_wait(&l->cond, &l->lock);
    l->inflight++;
    bs = l->bs;
    pthread_mutex_unlock(&l->lock);
    return bs;
}

static void mark_locked(struct disk_live *l, uint64_t off, uint64_t len)
{
    if (!l->dirty || !len)
        return;
    for (uint64_t u = off / l->gran; u <= (off + len - 1) / l->gran &&
                                     u < l->units; u++) {
        uint64_t bit = 1ULL << (u % 64);

        if (!(l->dirty[u / 64] & bit)) {
            l->dirty[u / 64] |= bit;
            l->sum[u / 4096] |= 1ULL << (u / 64 % 64);
            l->ndirty++;
        }
    }
}

/* The first dirty unit at or after u, or l->units: within u's word,
 * then through the summary. */
static uint64_t next_dirty(const struct disk_live *l, uint64_t u)
{
    uint64_t w = u / 64, nwords = l->units / 64 + 1, bits, sw;

    if (u >= l->units)
        return l->units;
    bits = l->dirty[w] & (~0ULL << (u % 64));
    if (bits)
        return w * 64 + (uint64_t)__builtin_ctzll(bits);
    if (++w >= nwords)
        return l->units;
    sw = w / 64;
    bits = l->sum[sw] & (~0ULL << (w % 64));
    while (!bits && ++sw < nwords / 64 + 1)
        bits = l->sum[sw];
    if (!bits)
        return l->units;
    w = sw * 64 + (uint64_t)__builtin_ctzll(bits);
    return w * 64 + (uint64_t)__builtin_ctzll(l->dirty[w]);
}

void disk_live_leave(struct disk_live *l, uint64_t off, uint64_t len,
                     bool write)
{
    pthread_mutex_lock(&l->lock);
    if (write)
        mark_locked(l, off, len);
    if (--l->inflight == 0 && l->held)
        pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

BlockDriverState *disk_live_bs(struct disk_live *l)
{
    BlockDriverState *bs;

    pthread_mutex_lock(&l->lock);
    bs = l->bs;
    pthread_mutex_unlock(&l->lock);
    return bs;
}

void disk_live_close(struct disk_live *l)
{
    BlockDriverState *bs;

    pthread_mutex_lock(&l->lock);
    bs = l->bs;
    /* the slot is free for the next open: a later image at the same
     * address must not find it (disk_live_of) */
    l->bs = l->first = NULL;
    l->arg = -1;
    l->forgotten = true;
    free(l->dirty);
    free(l->sum);
    l->dirty = l->sum = NULL;
    l->ndirty = 0;
    pthread_mutex_unlock(&l->lock);
    blk_close(bs);
}

/* A second holder waits for the first to release; then every request
 * that entered before is waited for. */
void disk_live_hold(struct disk_live *l)
{
    pthread_mutex_lock(&l->lock);
    while (l->held)
        pthread_cond_wait(&l->cond, &l->lock);
    l->held = true;
    while (l->inflight)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

void disk_live_release(struct disk_live *l)
{
    pthread_mutex_lock(&l->lock);
    l->held = false;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

void disk_live_set_bs(struct disk_live *l, BlockDriverState *bs)
{
    pthread_mutex_lock(&l->lock);
    l->bs = bs;
    pthread_mutex_unlock(&l->lock);
}

int disk_live_track_start(struct disk_live *l, uint64_t gran)
{
    int ret = 0;

    pthread_mutex_lock(&l->lock);
    if (l->dirty) {
        ret = -EBUSY;
    } else if (!gran || (gran & (gran - 1)) || !l->bs) {
        ret = -EINVAL;
    } else {
        l->gran = gran;
        l->units = (l->first->size + gran - 1) / gran; /* the disk's */
        l->dirty = calloc((size_t)(l->units / 64 + 1), sizeof(uint64_t));
        l->sum = calloc((size_t)((l->units / 64 + 1) / 64 + 1),
                        sizeof(uint64_t));
        l->ndirty = 0;
        ret = l->dirty && l->sum ? 0 : -ENOMEM;
        if (ret) {
            free(l->dirty);
            free(l->sum);
            l->dirty = l->sum = NULL;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return ret;
}

uint64_t disk_live_size(struct disk_live *l)
{
    uint64_t size;

    pthread_mutex_lock(&l->lock);
    size = l->first ? l->first->size : 0;
    pthread_mutex_unlock(&l->lock);
    return size;
}

void disk_live_track_stop(struct disk_live *l)
{
    pthread_mutex_lock(&l->lock);
    free(l->dirty);
    free(l->sum);
    l->dirty = l->sum = NULL;
    l->ndirty = 0;
    pthread_mutex_unlock(&l->lock);
}

/* A long range (a commit marking what lies above its base) in pieces,
 * the lock let go between them: a guest request's leave waits for one
 * piece at most. */
void disk_live_mark(struct disk_live *l, uint64_t off, uint64_t len)
{
    const uint64_t piece = 65536ULL * (64u << 10);

    while (len) {
        uint64_t n = len < piece ? len : piece;

        pthread_mutex_lock(&l->lock);
        mark_locked(l, off, n);
        pthread_mutex_unlock(&l->lock);
        off += n;
        len -= n;
    }
}

bool disk_live_take_dirty(struct disk_live *l, uint64_t *pos)
{
    bool found = false;

    pthread_mutex_lock(&l->lock);
    if (l->dirty && l->ndirty) {
        uint64_t u = next_dirty(l, *pos / l->gran % l->units);

        if (u == l->units) /* round again from the start */
            u = next_dirty(l, 0);
        if (u < l->units) {
            l->dirty[u / 64] &= ~(1ULL << (u % 64));
            if (!l->dirty[u / 64])
                l->sum[u / 4096] &= ~(1ULL << (u / 64 % 64));
            l->ndirty--;
            *pos = u * l->gran;
            found = true;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return found;
}

uint64_t disk_live_dirty_count(struct disk_live *l)
{
    uint64_t n;

    pthread_mutex_lock(&l->lock);
    n = l->dirty ? l->ndirty : 0;
    pthread_mutex_unlock(&l->lock);
    return n;
}

BlockDriverState *disk_open(const struct disk_opts *o)
{
    int flags = o->cache == DISK_CACHE_NONE ? BLK_O_NOCACHE
              : o->cache == DISK_CACHE_UNSAFE ? BLK_O_UNSAFE : 0;
    const char *format = o->format;
    BlockDriverState *bs;
    char probed[32];

    /* First a look that changes nothing (read-only, no locks, no repair,
     * no key): an encrypted chain is refused before a writable open could
     * touch its header.  Its format also serves where the block layer
     * cannot probe one: through O_DIRECT (the probe buffer is unaligned).
     * An NBD export is raw and never encrypted: no look (it would be a
     * connection of its own, which a server without -t ends with). */
    if (!nbd_is_filename(o->file)) {
        bs = blk_open(o->file, format,
                      BLK_O_SHARE | BLK_O_NO_IO | BLK_O_NO_REPAIR, NULL);
        if (!bs)
            goto fail;
        snprintf(probed, sizeof(probed), "%s", bs->drv->name);
        bool refused = chain_encrypted(bs, o->file);
        blk_close(bs);
        if (refused)
            return NULL;
        if (!format)
            format = probed;
    }
    if (o->snapshot)
        bs = blk_open_snapshot(o->file, format, flags);
    else
        bs = blk_open(o->file, format, flags | (o->readonly ? 0 : BLK_O_RDWR),
                      NULL);
    if (bs) {
        disk_note_opened(bs, o);
        return bs;
    }
fail:
    fprintf(stderr, "calf: --disk %s: %s\n", o->file, blk_error());
    return NULL;
}

char *disk_cdrom_spec(const char *file)
{
    static const char tail[] = ",if=ide,media=cdrom";
    size_t n = strlen(file), commas = 0;
    char *s, *w;

    for (size_t i = 0; i < n; i++)
        commas += file[i] == ',';
    s = malloc(n + commas + sizeof(tail));
    if (!s)
        return NULL;
    w = s;
    for (size_t i = 0; i < n; i++) {
        *w++ = file[i];
        if (file[i] == ',')
            *w++ = ',';
    }
    memcpy(w, tail, sizeof(tail));
    return s;
}
