/* The write tracking of a live disk (devices/disk.c: disk_live_mark(),
 * _take_dirty(), _dirty_count()) against a model, on a 64 GiB sparse
 * raw disk in 64 KiB units (1 Mi units: 16 Ki bitmap words, 256 summary
 * words).  Random marks (single units, runs across words and summary
 * words, the last unit), takes from random positions (the next dirty
 * unit at or after it, round again from the start) and counts, each
 * compared with a plain array; then 4 threads mark while one takes, and
 * every unit marked is taken or still dirty once, the count agreeing.
 * TAP. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/disk.h"

#define GRAN (64u << 10)
#define SIZE (64ULL << 30)
#define UNITS (SIZE / GRAN)

static int failed, nt;

static void ok(bool c, const char *what)
{
    printf("%sok %d - %s\n", c ? "" : "not ", ++nt, what);
    failed |= !c;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint8_t *model;

static uint64_t model_next(uint64_t u)
{
    for (uint64_t i = 0; i < UNITS; i++)
        if (model[(u + i) % UNITS])
            return (u + i) % UNITS;
    return UNITS;
}

struct marker {
    struct disk_live *l;
    uint64_t seed;
    uint8_t *mine; /* units this thread marked */
};

static void *mark_thread(void *p)
{
    struct marker *m = p;

    for (int i = 0; i < 20000; i++) {
        uint64_t u = rnd(&m->seed) % UNITS, n = 1 + rnd(&m->seed) % 3;

        if (u + n > UNITS)
            n = UNITS - u;
        disk_live_mark(m->l, u * GRAN + 512, n * GRAN - 512);
        memset(m->mine + u, 1, n);
    }
    return NULL;
}

int main(void)
{
    char path[] = "/tmp/calf-disk-dirty-XXXXXX", spec[64];
    struct disk_opts o;
    struct disk_live *l;
    uint64_t seed = 0x9e3779b97f4a7c15ULL, count = 0;
    bool same = true, cnt_same = true;
    int fd = mkstemp(path);

    if (fd < 0 || ftruncate(fd, (off_t)SIZE) < 0) {
        printf("1..0 # SKIP cannot make a sparse file in /tmp\n");
        return 0;
    }
    close(fd);
    snprintf(spec, sizeof(spec), "%s,format=raw", path);
    if (disk_parse(spec, &o) < 0) {
        printf("Bail out! disk_parse\n");
        return 1;
    }
    o.arg = 0;
    if (!disk_open(&o) || !(l = disk_live_get(0)) ||
        disk_live_track_start(l, GRAN) < 0) {
        printf("Bail out! disk_open\n");
        return 1;
    }
    unlink(path);
    model = calloc(UNITS, 1);
    ok(disk_live_dirty_count(l) == 0, "nothing dirty at the start");
    /* one long range: marked in pieces of 64 Ki units, the lock let go */
    disk_live_mark(l, 3ULL * GRAN + 7, 140000ULL * GRAN);
    for (uint64_t i = 3; i <= 140003; i++)
        model[i] = 1, count++;
    ok(disk_live_dirty_count(l) == count, "a long range: every unit of it");
    for (int round = 0; round < 4000; round++) {
        uint64_t r = rnd(&seed) % 10, u = rnd(&seed) % UNITS, n, pos, got;

        if (r < 4) { /* mark a run: a unit, a few words, a summary word */
            n = r == 0 ? 1 : r == 1 ? 1 + rnd(&seed) % 200
              : r == 2 ? 4096 + rnd(&seed) % 9000 : 1;
            if (r == 3)
                u = UNITS - 1;
            if (u + n > UNITS)
                n = UNITS - u;
            disk_live_mark(l, u * GRAN + 1, n * GRAN - 1);
            for (uint64_t i = u; i < u + n; i++)
                count += !model[i], model[i] = 1;
        } else { /* take from a random place */
            uint64_t want = model_next(u);

            pos = u * GRAN + rnd(&seed) % GRAN;
            got = disk_live_take_dirty(l, &pos) ? pos / GRAN : UNITS;
            same &= got == want && (got == UNITS || pos % GRAN == 0);
            if (want < UNITS)
                model[want] = 0, count--;
        }
        cnt_same &= disk_live_dirty_count(l) == count;
    }
    ok(same, "every take gives the model's next dirty unit, round again");
    ok(cnt_same, "the count is the model's after every step");
    {
        uint64_t pos = 0, n = 0;

        while (disk_live_take_dirty(l, &pos))
            n++, model[pos / GRAN] = 0;
        ok(n == count && model_next(0) == UNITS &&
               disk_live_dirty_count(l) == 0,
           "taking all empties it, each unit once");
    }
    {
        struct marker m[4];
        pthread_t t[4];
        uint8_t *taken = calloc(UNITS, 1);
        uint64_t pos = 0, twice = 0, lost = 0, n = 0;

        for (int i = 0; i < 4; i++) {
            m[i] = (struct marker){ l, seed + (uint64_t)i * 7919,
                                    calloc(UNITS, 1) };
            pthread_create(&t[i], NULL, mark_thread, &m[i]);
        }
        for (int i = 0; i < 200000; i++)
            if (disk_live_take_dirty(l, &pos)) /* again if marked again */
                taken[pos / GRAN] = 1;
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        /* what is left dirty, taken now, never taken before */
        n = disk_live_dirty_count(l);
        while (disk_live_take_dirty(l, &pos)) {
            twice += taken[pos / GRAN] == 2;
            taken[pos / GRAN] = 2;
            n--;
        }
        for (uint64_t u = 0; u < UNITS; u++) {
            bool marked = m[0].mine[u] || m[1].mine[u] || m[2].mine[u] ||
                          m[3].mine[u];

            lost += marked && !taken[u];
            lost += !marked && taken[u];
        }
        ok(!lost, "4 threads marking, one taking: every unit marked taken, "
                  "no other");
        ok(!twice && n == 0, "the count agrees with what was left, each "
                             "left unit taken once");
        for (int i = 0; i < 4; i++)
            free(m[i].mine);
        free(taken);
    }
    disk_live_track_stop(l);
    ok(disk_live_dirty_count(l) == 0, "stopped: nothing counted");
    disk_live_close(l);
    disk_opts_free(&o);
    free(model);
    printf("1..%d\n", nt);
    return failed;
}
