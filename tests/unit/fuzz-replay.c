/* fuzz-replay: runs the libFuzzer harness tests/fuzz/fuzz-qcow2-open.c
 * without libFuzzer (built with the normal compiler for `make test`).
 *
 *   fuzz-replay [-H] [-m MUTATIONS] [-s SEED] [-t SECONDS] [-v] FILE|DIR...
 *
 * Feeds every file (directories: every file in them), then with -H every
 * header field of it set to each of a list of edge values in turn, then
 * MUTATIONS deterministic random mutants of it (header fields set to edge
 * values, random bytes, truncation).  A crash or a sanitizer report is
 * the failure; the exit status is 0 otherwise.  -v names each input on
 * stderr first.  -t stops starting new runs after SECONDS (slow machines). */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* tests/fuzz/fuzz-qcow2-open.c, linked in (tests/fuzz.mk) */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng;
static bool verbose, sweep;
static double budget_s; /* -t: start no new run after this many seconds */
static struct timespec t0;
static long nskipped;

static bool out_of_time(void)
{
    if (budget_s <= 0)
        return false;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9 > budget_s;
}

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void put_be(uint8_t *p, int width, uint64_t v)
{
    for (int i = width - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Header fields of qcow2 (offset, width): where damage matters most. */
static const uint8_t hdr_fields[][2] = {
    {4, 4}, {8, 8}, {16, 4}, {20, 4}, {24, 8}, {32, 4}, {36, 4}, {40, 8}, {48, 8},
    {56, 4}, {60, 4}, {64, 8}, {72, 8}, {80, 8}, {88, 8}, {96, 4}, {100, 4}, {104, 1},
};

static const uint64_t edge_values[] = {
    0, 1, 2, 3, 7, 8, 9, 16, 21, 22, 63, 64, 104, 112, 511, 512, 513, 4096, 65535, 65536,
    0x10000000, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ULL,
    0x00fffffffffffe00ULL, 0x7fffffffffffffffULL, 0x8000000000000000ULL,
    0xffffffffffffffffULL, 0xfffffffffffffe00ULL,
};
#define N_EDGE (sizeof(edge_values) / sizeof(edge_values[0]))

static uint64_t edge_value(size_t size)
{
    switch (rnd() % 4) {
    case 0:
        return rnd();
    case 1:
        return (uint64_t)size + (rnd() % 3) * 512 - 512;
    default:
        return edge_values[rnd() % N_EDGE];
    }
}

static size_t mutate(uint8_t *buf, size_t size, size_t cap)
{
    int edits = 1 + (int)(rnd() % 4);
    for (int e = 0; e < edits; e++) {
        switch (rnd() % 8) {
        case 0: case 1: case 2: { /* a header field */
            const uint8_t *f = hdr_fields[rnd() % (sizeof(hdr_fields) / sizeof(hdr_fields[0]))];
            if (f[0] + f[1] <= size)
                put_be(buf + f[0], f[1], edge_value(size));
            break;
        }
        case 3: case 4: { /* a 64-bit table entry somewhere */
            if (size >= 8) {
                size_t at = (rnd() % (size / 8)) * 8;
                uint64_t v = rnd() % 2 ? edge_value(size) : rnd();
                put_be(buf + at, 8, v);
            }
            break;
        }
        case 5: { /* bit flips */
            for (int i = 0; i < 8 && size; i++)
                buf[rnd() % size] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        }
        case 6: { /* random bytes */
            if (size) {
                size_t at = rnd() % size, n = 1 + rnd() % 64;
                for (size_t i = 0; i < n && at + i < size; i++)
                    buf[at + i] = (uint8_t)rnd();
            }
            break;
        }
        default: /* truncate or extend */
            if (rnd() % 2 && size) {
                size = rnd() % size;
            } else {
                size_t n = size + rnd() % 4096;
                if (n > cap)
                    n = cap;
                memset(buf + size, 0, n - size);
                size = n;
            }
            break;
        }
    }
    return size;
}

static long nruns;

static void run_one(const char *name, const uint8_t *data, size_t size)
{
    if (out_of_time()) {
        nskipped++;
        return;
    }
    if (verbose)
        fprintf(stderr, "fuzz-replay: %s (%zu bytes)\n", name, size);
    LLVMFuzzerTestOneInput(data, size);
    nruns++;
}

static int replay_file(const char *path, long mutations)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz-replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || st.st_size > (64 << 20)) {
        fprintf(stderr, "fuzz-replay: %s: not a plain file or too large\n", path);
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size, cap = size + 4096;
    uint8_t *orig = malloc(size + 1), *buf = malloc(cap);
    if (!orig || !buf || fread(orig, 1, size, f) != size) {
        fprintf(stderr, "fuzz-replay: %s: cannot read it\n", path);
        fclose(f);
        free(orig);
        free(buf);
        return -1;
    }
    fclose(f);
    run_one(path, orig, size);
    for (size_t f = 0; sweep && f < sizeof(hdr_fields) / sizeof(hdr_fields[0]); f++) {
        if (hdr_fields[f][0] + hdr_fields[f][1] > size)
            continue;
        for (size_t v = 0; v < N_EDGE; v++) {
            memcpy(buf, orig, size);
            put_be(buf + hdr_fields[f][0], hdr_fields[f][1], edge_values[v]);
            char name[512];
            snprintf(name, sizeof(name), "%s with the field at %u = %#llx", path,
                     hdr_fields[f][0], (unsigned long long)edge_values[v]);
            run_one(name, buf, size);
        }
    }
    for (long i = 0; i < mutations; i++) {
        memcpy(buf, orig, size);
        size_t n = mutate(buf, size, cap);
        char name[512];
        snprintf(name, sizeof(name), "%s mutant %ld (rng state %#llx)", path, i,
                 (unsigned long long)rng);
        run_one(name, buf, n);
    }
    free(orig);
    free(buf);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_path(const char *path, long mutations)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "fuzz-replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path, mutations);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char **nn = realloc(names, (n + 1) * sizeof(*nn));
        if (!nn)
            break;
        names = nn;
        size_t len = strlen(path) + strlen(de->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n])
            break;
        snprintf(names[n], len, "%s/%s", path, de->d_name);
        n++;
    }
    closedir(d);
    /* sorted, so a seed always gives the same runs */
    qsort(names, n, sizeof(*names), name_cmp);
    int ret = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat fst;
        if (stat(names[i], &fst) == 0 && S_ISREG(fst.st_mode) &&
            replay_file(names[i], mutations) < 0)
            ret = -1;
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    long mutations = 0;
    rng = 0x2545f4914f6cdd1dULL;
    int c;
    while ((c = getopt(argc, argv, "Hm:s:t:v")) != -1) {
        switch (c) {
        case 'm': mutations = strtol(optarg, NULL, 0); break;
        case 's': rng = strtoull(optarg, NULL, 0) * 0x9e3779b97f4a7c15ULL | 1; break;
        case 'v': verbose = true; break;
        case 'H': sweep = true; break;
        case 't': budget_s = strtod(optarg, NULL); break;
        default:
            fprintf(stderr, "usage: fuzz-replay [-H] [-m MUTATIONS] [-s SEED] [-t SECONDS] [-v] "
                    "FILE|DIR...\n");
            return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret = 0;
    for (int i = optind; i < argc; i++)
        if (replay_path(argv[i], mutations) < 0)
            ret = 1;
    if (nskipped)
        printf("fuzz-replay: %ld runs (%ld left out: the -t %g s budget ran out)\n", nruns,
               nskipped, budget_s);
    else
        printf("fuzz-replay: %ld runs\n", nruns);
    return ret;
}
