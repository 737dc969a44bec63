/* The request accounting of devices/disk-stats.c (query-blockstats,
 * BLOCK_IO_ERROR) under the load it sees in calf: several I/O threads
 * count at once while the monitor reads, and errors go through the
 * ring while the monitor drains it.  Checked against a model: every
 * thread does a known mix, the totals must be exact; the reader sees no
 * counter go backwards and no ops without their bytes at the end; the
 * highest write end is the maximum of all; every error pushed is popped
 * or counted as dropped, in order per thread.  TAP. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/disk.h"

#define THREADS 6
#define ROUNDS 20000
#define ERRORS 3000

static struct disk_stats st;
static atomic_bool done;
static int t_fail, t_n;

static void ok(int cond, const char *what)
{
    t_n++;
    if (!cond)
        t_fail++;
    printf("%sok %d - %s\n", cond ? "" : "not ", t_n, what);
}

/* Thread k: per round a read of (k+1)*512 bytes, a write of 4096 ending
 * at (k * ROUNDS + r + 1) * 4096, every 3rd round a flush, every 5th an
 * invalid read, every 7th a failed write. */
static void *io_thread(void *arg)
{
    int k = (int)(intptr_t)arg;

    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = disk_acct_now();
        uint64_t end = ((uint64_t)k * ROUNDS + (uint64_t)r + 1) * 4096;

        disk_acct_done(&st, DISK_ACCT_READ, (uint64_t)(k + 1) * 512, t0, false);
        disk_acct_done(&st, DISK_ACCT_WRITE, 4096, t0, false);
        disk_acct_wr_end(&st, end - 4096, 4096);
        if (r % 3 == 0)
            disk_acct_done(&st, DISK_ACCT_FLUSH, 0, t0, false);
        if (r % 5 == 0)
            disk_acct_invalid(&st, DISK_ACCT_READ);
        if (r % 7 == 0)
            disk_acct_done(&st, DISK_ACCT_WRITE, 0, t0, true);
    }
    return NULL;
}

/* The monitor: reads while they count; nothing may go backwards. */
static void *reader(void *arg)
{
    uint64_t last[4] = { 0 }, *bad = arg;

    while (!atomic_load(&done)) {
        uint64_t now[4] = {
            atomic_load(&st.ops[DISK_ACCT_READ]),
            atomic_load(&st.bytes[DISK_ACCT_WRITE]),
            atomic_load(&st.wr_highest),
            atomic_load(&st.invalid[DISK_ACCT_READ]),
        };

        for (int i = 0; i < 4; i++) {
            if (now[i] < last[i])
                (*bad)++;
            last[i] = now[i];
        }
    }
    return NULL;
}

/* Errors: thread k pushes ERRORS errors numbered k * ERRORS + i. */
static void *err_thread(void *arg)
{
    int k = (int)(intptr_t)arg;

    for (int i = 0; i < ERRORS; i++)
        disk_io_error(&st, i & 1, k * ERRORS + i + 1);
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS], rd;
    uint64_t backwards = 0, rd_bytes = 0, flush = 0, inv = 0, failed = 0;
    int last_seen[THREADS], popped = 0, order_bad = 0;
    struct disk_event e;

    disk_stats_init(&st);
    pthread_create(&rd, NULL, reader, &backwards);
    for (int k = 0; k < THREADS; k++)
        pthread_create(&t[k], NULL, io_thread, (void *)(intptr_t)k);
    for (int k = 0; k < THREADS; k++)
        pthread_join(t[k], NULL);
    atomic_store(&done, true);
    pthread_join(rd, NULL);
    for (int k = 0; k < THREADS; k++)
        rd_bytes += (uint64_t)ROUNDS * (uint64_t)(k + 1) * 512;
    for (int r = 0; r < ROUNDS; r++) {
        flush += r % 3 == 0;
        inv += r % 5 == 0;
        failed += r % 7 == 0;
    }
    printf("1..11\n");
    ok(st.ops[DISK_ACCT_READ] == (uint64_t)THREADS * ROUNDS &&
       st.bytes[DISK_ACCT_READ] == rd_bytes, "reads: every op and byte counted");
    ok(st.ops[DISK_ACCT_WRITE] == (uint64_t)THREADS * ROUNDS &&
       st.bytes[DISK_ACCT_WRITE] == (uint64_t)THREADS * ROUNDS * 4096,
       "writes: every op and byte counted");
    ok(st.ops[DISK_ACCT_FLUSH] == THREADS * flush, "flushes counted");
    ok(st.invalid[DISK_ACCT_READ] == THREADS * inv &&
       st.failed[DISK_ACCT_WRITE] == THREADS * failed &&
       st.failed[DISK_ACCT_READ] == 0, "invalid and failed apart from the rest");
    ok(st.wr_highest == (uint64_t)THREADS * ROUNDS * 4096,
       "the highest write end is the maximum over all threads");
    ok(backwards == 0 && st.last_ns > 0 && st.time_ns[DISK_ACCT_WRITE] > 0,
       "a concurrent reader never saw a counter go backwards");

    /* the error ring: producers and the monitor at once */
    atomic_store(&done, false);
    for (int k = 0; k < THREADS; k++) {
        last_seen[k] = 0;
        pthread_create(&t[k], NULL, err_thread, (void *)(intptr_t)k);
    }
    for (int joined = 0; joined < THREADS;) {
        while (disk_event_pop(&st, &e)) {
            int k = (e.err - 1) / ERRORS, i = (e.err - 1) % ERRORS;

            if (k < 0 || k >= THREADS || i < last_seen[k] ||
                e.write != (i & 1) || e.kind != DISK_EV_IO_ERROR)
                order_bad++;
            else
                last_seen[k] = i + 1;
            popped++;
        }
        pthread_join(t[joined++], NULL);
    }
    while (disk_event_pop(&st, &e))
        popped++;
    ok(popped > 0 && (uint64_t)popped + st.err_dropped == (uint64_t)THREADS * ERRORS,
       "every error popped or counted as dropped");
    ok(order_bad == 0, "each thread's errors come out in order, intact");
    ok(!disk_event_pop(&st, &e) && st.err_count == 0, "the ring ends empty");

    /* a flood of I/O errors never pushes a tray event out: 2 tray
     * events among 3 ring-fulls of errors, all kept, in order */
    {
        uint64_t dropped = st.err_dropped;
        int trays = 0, errs = 0, first = 0, tray_order_bad = 0;

        for (int i = 0; i < 3 * DISK_ERR_RING; i++) {
            if (i == 5 || i == 40)
                disk_tray_moved(&st, i == 5);
            disk_io_error(&st, false, i + 1);
        }
        while (disk_event_pop(&st, &e)) {
            if (e.kind == DISK_EV_TRAY) {
                tray_order_bad += e.tray_open != (trays == 0);
                trays++;
            } else if (!errs++) {
                first = e.err;
            }
        }
        printf("# %d tray, %d errors kept (the first %d), %llu dropped\n",
               trays, errs, first,
               (unsigned long long)(st.err_dropped - dropped));
        ok(trays == 2 && !tray_order_bad,
           "tray events survive an I/O error flood, in order");
        ok(errs == DISK_ERR_RING - 2 && first == 3 * DISK_ERR_RING - errs + 1 &&
               st.err_dropped - dropped == 3 * DISK_ERR_RING - (uint64_t)errs,
           "the newest errors kept, the rest counted dropped");
    }
    disk_stats_fini(&st);
    return t_fail ? 1 : 0;
}
