/* Request accounting for query-blockstats and BLOCK_IO_ERROR: see
 * devices/disk.h. */
#include "devices/disk.h"

#include <time.h>

void disk_stats_init(struct disk_stats *s)
{
    for (int t = 0; t < DISK_ACCT_TYPES; t++) {
        atomic_init(&s->bytes[t], 0);
        atomic_init(&s->ops[t], 0);
        atomic_init(&s->failed[t], 0);
        atomic_init(&s->invalid[t], 0);
        atomic_init(&s->time_ns[t], 0);
    }
    atomic_init(&s->wr_highest, 0);
    atomic_init(&s->backing_depth, 0);
    atomic_init(&s->last_ns, 0);
    atomic_init(&s->discard_ok, 0);
    atomic_init(&s->discard_failed, 0);
    atomic_init(&s->discard_bytes_ok, 0);
    s->err_lock_init = !pthread_mutex_init(&s->err_lock, NULL);
    s->err_head = s->err_count = 0;
    s->err_dropped = 0;
}

int disk_backing_depth(const BlockDriverState *bs)
{
    int n = 0;

    for (const BlockDriverState *b = bs ? bs->backing : NULL; b;
         b = b->backing)
        n++;
    return n;
}

void disk_stats_fini(struct disk_stats *s)
{
    if (s->err_lock_init)
        pthread_mutex_destroy(&s->err_lock);
    s->err_lock_init = false;
}

int64_t disk_acct_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void disk_acct_done(struct disk_stats *s, enum disk_acct t, uint64_t bytes,
                    int64_t start_ns, bool failed)
{
    int64_t now;

    if (!s)
        return;
    now = disk_acct_now();
    if (failed) {
        atomic_fetch_add_explicit(&s->failed[t], 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&s->bytes[t], bytes, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->ops[t], 1, memory_order_relaxed);
    }
    /* QEMU's account_failed is on for a drive: failed requests are timed
     * and are an access too. */
    atomic_fetch_add_explicit(&s->time_ns[t],
                              (uint64_t)(now > start_ns ? now - start_ns : 0),
                              memory_order_relaxed);
    atomic_store_explicit(&s->last_ns, now, memory_order_relaxed);
}

void disk_acct_invalid(struct disk_stats *s, enum disk_acct t)
{
    if (!s)
        return;
    atomic_fetch_add_explicit(&s->invalid[t], 1, memory_order_relaxed);
    /* account_invalid is on too: an access, not timed */
    atomic_store_explicit(&s->last_ns, disk_acct_now(), memory_order_relaxed);
}

void disk_acct_wr_end(struct disk_stats *s, uint64_t off, uint64_t len)
{
    uint64_t end = off + len, cur;

    if (!s || !len)
        return;
    cur = atomic_load_explicit(&s->wr_highest, memory_order_relaxed);
    while (cur < end &&
           !atomic_compare_exchange_weak_explicit(&s->wr_highest, &cur, end,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

void disk_acct_discard(struct disk_stats *s, uint64_t len, bool ok)
{
    if (!s)
        return;
    if (ok) {
        atomic_fetch_add_explicit(&s->discard_ok, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->discard_bytes_ok, len,
                                  memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&s->discard_failed, 1, memory_order_relaxed);
    }
}

/* Queues e; with the ring full an I/O error makes room, never a tray
 * event while there is an error to drop (a guest flooding errors cannot
 * hide a tray move). */
static void event_push(struct disk_stats *s, const struct disk_event *e)
{
    if (!s || !s->err_lock_init)
        return;
    pthread_mutex_lock(&s->err_lock);
    if (s->err_count == DISK_ERR_RING) {
        /* Full: the oldest I/O error goes (counted), the ones after it
         * move up; tray events stay, unless there is nothing else. */
        unsigned k = 0;

        while (k < s->err_count &&
               s->err[(s->err_head + k) % DISK_ERR_RING].kind !=
                   DISK_EV_IO_ERROR)
            k++;
        if (k == s->err_count)
            k = 0;
        for (; k + 1 < s->err_count; k++)
            s->err[(s->err_head + k) % DISK_ERR_RING] =
                s->err[(s->err_head + k + 1) % DISK_ERR_RING];
        s->err_count--;
        s->err_dropped++;
    }
    s->err[(s->err_head + s->err_count) % DISK_ERR_RING] = *e;
    s->err_count++;
    pthread_mutex_unlock(&s->err_lock);
}

void disk_io_error(struct disk_stats *s, bool write, int err)
{
    struct disk_event e = { .kind = DISK_EV_IO_ERROR, .write = write,
                            .err = err };

    event_push(s, &e);
}

void disk_tray_moved(struct disk_stats *s, bool open)
{
    struct disk_event e = { .kind = DISK_EV_TRAY, .tray_open = open };

    event_push(s, &e);
}

bool disk_event_pop(struct disk_stats *s, struct disk_event *e)
{
    bool got = false;

    if (!s || !s->err_lock_init)
        return false;
    pthread_mutex_lock(&s->err_lock);
    if (s->err_count) {
        *e = s->err[s->err_head];
        s->err_head = (s->err_head + 1) % DISK_ERR_RING;
        s->err_count--;
        got = true;
    }
    pthread_mutex_unlock(&s->err_lock);
    return got;
}
