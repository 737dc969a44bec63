/* Runs a libFuzzer harness without libFuzzer: LLVMFuzzerTestOneInput on
 * every file named (a directory: every file in it, sorted), so `make
 * test` can replay committed corpora with the ordinary compiler.
 *
 *   fuzz-<name> [-v] FILE|DIR...
 *
 * A crash, a sanitizer report or an abort() in the harness is the
 * failure.  Memory is checked too: an input that leaves the process
 * with more than REPLAY_RSS_MAX_MB (default 1024) of peak resident
 * memory fails, as libFuzzer's -rss_limit_mb would.  Exit status 0
 * when every input ran. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool verbose;
static long runs, rss_max_kb;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf;
    struct rusage ru;

    if (!f || fstat(fileno(f), &st) < 0 || st.st_size > (16 << 20)) {
        fprintf(stderr, "replay: %s: %s\n", path, f ? "too large" : strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        fprintf(stderr, "replay: %s: cannot read it\n", path);
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    if (verbose)
        fprintf(stderr, "replay: %s (%lld bytes)\n", path, (long long)st.st_size);
    LLVMFuzzerTestOneInput(buf, (size_t)st.st_size);
    free(buf);
    runs++;
    if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > rss_max_kb) {
        fprintf(stderr, "replay: %s: peak RSS %ld MiB, over the %ld MiB limit\n", path,
                ru.ru_maxrss >> 10, rss_max_kb >> 10);
        return -2;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    int ret = 0;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d))) {
        char **nn;

        if (de->d_name[0] == '.')
            continue;
        nn = realloc(names, (n + 1) * sizeof(*nn));
        if (!nn)
            break;
        names = nn;
        if (asprintf(&names[n], "%s/%s", path, de->d_name) < 0)
            break;
        n++;
    }
    closedir(d);
    /* sorted: the same order, and so the same runs, every time */
    qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        if (ret != -2 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            int r = run_file(names[i]);

            if (r < 0)
                ret = r;
        }
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    const char *lim = getenv("REPLAY_RSS_MAX_MB");
    int ret = 0, i = 1;

    rss_max_kb = (lim ? atol(lim) : 1024) << 10;
    if (i < argc && !strcmp(argv[i], "-v")) {
        verbose = true;
        i++;
    }
    if (i == argc) {
        fprintf(stderr, "usage: %s [-v] FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (; i < argc && ret != -2; i++)
        if (run_path(argv[i]) < 0)
            ret = -1;
    printf("replay: %ld inputs\n", runs);
    return ret ? 1 : 0;
}
