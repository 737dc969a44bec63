/* The generic block layer: driver lookup and probing, opening backing
 * chains, request bounds checks, chain-wide status and image creation. */
#include "block/block.h"
#include "block/blkdebug.h"
#include "block/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deeper chains than this are refused (and catch loops we cannot see
 * by inode, such as through /proc). */
#define BLK_MAX_CHAIN 256

static const BlockDriver *const drivers[] = {
    &blk_qcow2_driver,
    &blk_qcow_driver,
    &blk_luks_driver,
    &blk_raw_driver,
    &blk_null_driver,
    &blk_quorum_driver,
    &blk_nbd_driver,
};

const BlockDriver *blk_find_driver(const char *name)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        if (!strcmp(drivers[i]->name, name))
            return drivers[i];
    return NULL;
}

static const BlockDriver *probe_driver(int fd)
{
    uint8_t buf[4096];
    int r = blk_file_pread(fd, buf, sizeof(buf), 0);
    if (r < 0)
        return NULL;
    const BlockDriver *best = &blk_raw_driver;
    int best_score = 0;
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        if (!drivers[i]->probe)
            continue;
        int s = drivers[i]->probe(buf, sizeof(buf));
        if (s > best_score) {
            best_score = s;
            best = drivers[i];
        }
    }
    return best;
}

/* "PROTOCOL:rest" (a colon before any slash), as QEMU tells a protocol
 * prefix from a file name. */
static bool has_protocol(const char *name)
{
    return name[strcspn(name, ":/")] == ':';
}

/* The PROTOCOL of a name that has one, when calf has no such protocol
 * ("file:", "json:" and filters' prefixes it has): -EINVAL with QEMU's
 * error set. */
static int check_protocol(const char *name)
{
    size_t n = strcspn(name, ":/");
    if (name[n] != ':' || !strncmp(name, "file:", 5) || !strncmp(name, "null-co:", 8) ||
        blk_is_json_filename(name) || nbd_is_filename(name))
        return 0;
    blk_set_error("Unknown protocol '%.*s'", (int)(n < 64 ? n : 64), name);
    return -EINVAL;
}

char *blk_backing_path(const char *image, const char *backing)
{
    /* a name with a protocol (json:, file:) is relative to nothing */
    if (backing[0] == '/' || !strchr(image, '/') || has_protocol(backing))
        return strdup(backing);
    const char *slash = strrchr(image, '/');
    size_t dirlen = slash - image + 1;
    char *p = malloc(dirlen + strlen(backing) + 1);
    if (!p)
        return NULL;
    memcpy(p, image, dirlen);
    strcpy(p + dirlen, backing);
    return p;
}

/* ---- option trees: what to open, from a file name and options ---- */

static const BlockFilter *filters[8];
static int nfilters;

int blk_register_filter(const BlockFilter *f)
{
    if (nfilters == (int)(sizeof(filters) / sizeof(filters[0])))
        return -ENOSPC;
    filters[nfilters++] = f;
    return 0;
}

const BlockFilter *blk_find_filter(const char *name)
{
    for (int i = 0; i < nfilters; i++)
        if (!strcmp(filters[i]->name, name))
            return filters[i];
    return NULL;
}

/* QEMU's drivers for a host file or device: all of them are calf's host
 * file under a format. */
static bool is_file_protocol(const char *name)
{
    return !strcmp(name, "file") || !strcmp(name, "host_device") || !strcmp(name, "host_cdrom");
}

bool blk_format_name_known(const char *name)
{
    return blk_find_driver(name) || is_file_protocol(name) || blk_find_filter(name);
}

/* The filter whose "NAME:" prefix starts filename, if it takes one. */
static const BlockFilter *prefix_filter(const char *filename)
{
    for (int i = 0; i < nfilters; i++) {
        size_t n = strlen(filters[i]->name);
        if (filters[i]->parse_filename && !strncmp(filename, filters[i]->name, n) &&
            filename[n] == ':')
            return filters[i];
    }
    return NULL;
}

/* What one node of the tree opens. */
typedef struct NodeSpec {
    BlockOptions tree;      /* every option; the pointers below point into it */
    const char *host;       /* the host file; NULL: the driver has none */
    char *display;          /* bs->filename */
    const char *format;     /* NULL: probe */
    const BlockFilter *filter;
    bool filter_top;        /* the filter was named as the top node */
    BlockOptions fopts;     /* the filter's own options ("file." taken off) */
    BlockOptions dopts;     /* the format driver's */
    BlockOptions bopts;     /* the backing file's ("backing." taken off) */
    bool child;             /* the host file is a node ("file.driver=FORMAT") */
    BlockOptions copts;     /* that node's options ("file." taken off) */
    bool no_backing;        /* "backing": null */
    bool read_only;         /* "read-only": on */
    int add_flags;          /* BLK_O_* the options ask for */
} NodeSpec;

static void spec_free(NodeSpec *s)
{
    blkopts_free(&s->tree);
    blkopts_free(&s->fopts);
    blkopts_free(&s->dopts);
    blkopts_free(&s->bopts);
    blkopts_free(&s->copts);
    free(s->display);
}

static bool has_prefix(const char *key, const char *prefix)
{
    return !strncmp(key, prefix, strlen(prefix));
}

/* A host file name as QEMU names it back: "file:" is taken off, and a
 * name that would then read as "PROTOCOL:rest" gets "./" in front. */
static char *plain_name(const char *name)
{
    if (!strncmp(name, "file:", 5))
        name += 5;
    size_t colon = strcspn(name, ":"), slash = strcspn(name, "/");
    bool dotted = name[colon] && colon < slash;
    char *d = malloc(strlen(name) + 3);
    if (d)
        sprintf(d, "%s%s", dotted ? "./" : "", name);
    return d;
}

static int spec_error(const char *fmt, const char *a)
{
    blk_set_error(fmt, a, a);
    return -EINVAL;
}

/* The protocol layer of the node: "file.driver" (a host file, or a
 * registered filter over one) and "file.filename". */
static int spec_file(NodeSpec *s)
{
    BlockOptions *t = &s->tree;
    const char *fdrv = blkopts_get(t, "file.driver");
    const char *child = "file.";
    char cprefix[80], key[96];
    if (fdrv && !is_file_protocol(fdrv) && blk_find_driver(fdrv)) {
        /* a format (or null-co) node as the host file: every file.*
         * option is that node's, opened as a node of its own */
        for (int i = 0; i < t->n; i++) {
            BlockOpt *o = &t->opt[i];
            if (!has_prefix(o->key, "file."))
                continue;
            if (blkopts_set(&s->copts, o->key + 5, o->value ? o->value : "on") < 0)
                return spec_error("out of memory%s", "");
            o->used = true;
        }
        s->child = true;
        return 0;
    }
    if (fdrv && !is_file_protocol(fdrv)) {
        if (!(s->filter = blk_find_filter(fdrv)))
            return spec_error("Unknown driver '%s'", fdrv);
        /* file.CHILD: a node name, which calf has none of; file.CHILD.*: the host file */
        snprintf(key, sizeof(key), "file.%s", s->filter->child);
        const char *ref = blkopts_get(t, key);
        if (ref)
            return spec_error("Cannot find device='%s' nor node-name='%s'", ref);
        snprintf(key, sizeof(key), "file.%s.driver", s->filter->child);
        const char *cdrv = blkopts_get(t, key);
        if (cdrv && !is_file_protocol(cdrv))
            return spec_error("Driver '%s' under a filter is not supported", cdrv);
        snprintf(cprefix, sizeof(cprefix), "file.%s.", s->filter->child);
        child = cprefix;
    }
    size_t cl = strlen(child);
    snprintf(key, sizeof(key), "%sfilename", child);
    s->host = blkopts_get(t, key);
    for (int i = 0; i < t->n; i++) {
        BlockOpt *o = &t->opt[i];
        if (o->used || !has_prefix(o->key, "file."))
            continue;
        if (has_prefix(o->key, child)) {
            const char *k = o->key + cl;
            /* the host file's own options: QEMU's that mean nothing here */
            if (strcmp(k, "node-name") && strcmp(k, "locking") && strcmp(k, "aio"))
                return spec_error("Block protocol 'file' doesn't support the option '%s'", k);
            o->used = true;
        } else if (s->filter && strcmp(o->key, "file.driver")) {
            if (blkopts_set(&s->fopts, o->key + 5, o->value) < 0)
                return spec_error("out of memory%s", "");
            o->used = true;
        }
    }
    return 0;
}

/* The options QEMU takes for any node: what they mean for calf. */
static int spec_node_opts(NodeSpec *s)
{
    BlockOptions *t = &s->tree;
    static const struct {
        const char *key;
        int flag;
    } bools[] = {
        {"force-share", BLK_O_SHARE},
        {"cache.direct", BLK_O_NOCACHE},
        {"cache.no-flush", BLK_O_UNSAFE},
        {"auto-read-only", 0}, /* calf asks for write access only where it writes */
    };
    bool on;
    if (blkopts_get_bool(t, "read-only", false, &s->read_only) < 0)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        if (blkopts_get_bool(t, bools[i].key, false, &on) < 0)
            return -EINVAL;
        if (on)
            s->add_flags |= bools[i].flag;
    }
    /* discard and detect-zeroes change how, not what, is written */
    static const char *const values[][5] = {
        {"discard", "ignore", "off", "unmap", "on"},
        {"detect-zeroes", "off", "on", "unmap", NULL},
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        const char *v = blkopts_get(t, values[i][0]);
        size_t k = 1;
        while (v && k < 5 && values[i][k] && strcmp(v, values[i][k]))
            k++;
        if (v && (k == 5 || !values[i][k]))
            return spec_error(i ? "invalid parameter value: %s" : "Invalid discard option%.0s",
                              v);
    }
    blkopts_get(t, "node-name");
    return 0;
}

/* Options that QEMU takes on any node: at a filter on top they stay on
 * the one node calf opens. */
static bool is_node_opt(const char *key)
{
    static const char *const keys[] = {"driver", "node-name", "read-only", "auto-read-only",
                                       "force-share", "discard", "detect-zeroes"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (!strcmp(key, keys[i]))
            return true;
    return has_prefix(key, "cache.");
}

/* n, the tree rebuilt from t (r: how building it went), takes t's
 * place with every option unused again; on a failure n goes. */
static int blkopts_replace(BlockOptions *t, BlockOptions *n, int r)
{
    if (r < 0) {
        blkopts_free(n);
        return spec_error("out of memory%s", "");
    }
    blkopts_free(t);
    *t = *n;
    for (int i = 0; i < t->n; i++)
        t->opt[i].used = false;
    return 0;
}

/* A filter named as the top node ("driver=blkdebug,image.driver=qcow2"):
 * calf's filters sit between a format and its host file, so the tree is
 * turned into that: the child's options become the node's, the filter's
 * own go under "file." with file.driver=NAME, and a plain file name is
 * the child's host file, as QEMU's filter takes it. */
static int spec_top_filter(BlockOptions *t, const BlockFilter *f, const char **plain)
{
    BlockOptions n = {0};
    char ck[80], cf[96], key[512];
    size_t cl = (size_t)snprintf(ck, sizeof(ck), "%s.", f->child);
    snprintf(cf, sizeof(cf), "%sfile", ck);
    int r = blkopts_set(&n, "file.driver", f->name);
    for (int i = 0; r == 0 && i < t->n; i++) {
        const char *k = t->opt[i].key;
        if (!strcmp(k, "driver"))
            continue;
        if (has_prefix(k, cf) && (k[strlen(cf)] == '.' || !k[strlen(cf)]))
            snprintf(key, sizeof(key), "file.%s%s", f->child, k + strlen(cf));
        else if (has_prefix(k, ck))
            snprintf(key, sizeof(key), "%s", k + cl);
        else if (is_node_opt(k) || has_prefix(k, "file."))
            snprintf(key, sizeof(key), "%s", k);
        else
            snprintf(key, sizeof(key), "file.%s", k);
        r = blkopts_set(&n, key, t->opt[i].value ? t->opt[i].value : "on");
    }
    if (r == 0 && *plain) {
        snprintf(key, sizeof(key), "file.%s.filename", f->child);
        if (!blkopts_get(&n, key))
            r = blkopts_set(&n, key, *plain);
        *plain = NULL;
    }
    return blkopts_replace(t, &n, r);
}

/* "driver=raw,file.driver=nbd,file.server.host=..." (or no driver): the
 * nbd driver is the whole node, so its options come up a level. */
static int hoist_nbd(BlockOptions *t)
{
    const char *fd = blkopts_get(t, "file.driver");
    const char *d = blkopts_get(t, "driver");
    if (!fd || strcmp(fd, "nbd"))
        return 0;
    if (d && strcmp(d, "raw") && strcmp(d, "nbd"))
        return 0; /* a format over the export: the nbd node is its host file */
    BlockOptions n = {0};
    int r = blkopts_set(&n, "driver", "nbd");
    for (int i = 0; r == 0 && i < t->n; i++) {
        const char *k = t->opt[i].key;
        if (!strcmp(k, "driver") || !strcmp(k, "file.driver"))
            continue;
        r = blkopts_set(&n, has_prefix(k, "file.") ? k + 5 : k,
                        t->opt[i].value ? t->opt[i].value : "on");
    }
    return blkopts_replace(t, &n, r);
}

/* Fills s from filename (a path, "file:PATH", "json:{...}" or a filter's
 * "NAME:..." prefix) and opts (QEMU's dotted option tree, which wins over
 * what filename says).  format (-f) wins over a "driver" in the tree where
 * format_wins, else only fills in where the tree names none. */
static int spec_parse(NodeSpec *s, const char *filename, const char *format, bool format_wins,
                      BlockOptions *opts)
{
    BlockOptions *t = &s->tree;
    const char *plain = NULL;
    const BlockFilter *pf = NULL;
    if (filename && blk_is_json_filename(filename)) {
        if (blk_json_parse(filename, t) < 0)
            return -EINVAL;
    } else if (filename && (pf = prefix_filter(filename))) {
        /* its options are the file's: "blkdebug:conf:img" under a probed format */
        BlockOptions f = {0};
        int r = pf->parse_filename(filename, &f);
        for (int i = 0; r == 0 && i < f.n; i++) {
            char key[256];
            snprintf(key, sizeof(key), "file.%s", f.opt[i].key);
            r = blkopts_set(t, key, f.opt[i].value ? f.opt[i].value : "on");
        }
        blkopts_free(&f);
        if (r == 0)
            r = blkopts_set(t, "file.driver", pf->name);
        if (r < 0)
            return r;
    } else if (filename && check_protocol(filename) < 0) {
        return -EINVAL;
    } else if (filename && nbd_is_filename(filename)) {
        /* the nbd driver's options: the whole node (raw), or the host
         * file of the format named (-f qcow2 nbd://...) */
        if (nbd_parse_filename(filename, t) < 0)
            return -EINVAL;
        if (format && strcmp(format, "raw") && strcmp(format, "nbd")) {
            BlockOptions f = {0};
            int r = 0;
            for (int i = 0; r == 0 && i < t->n; i++) {
                char key[256];
                snprintf(key, sizeof(key), "file.%s", t->opt[i].key);
                r = blkopts_set(&f, key, t->opt[i].value ? t->opt[i].value : "on");
            }
            if (r == 0)
                r = blkopts_set(&f, "file.driver", "nbd");
            blkopts_free(t);
            *t = f;
            if (r < 0)
                return spec_error("out of memory%s", "");
        } else {
            format = "nbd";
            if (blkopts_set(t, "driver", "nbd") < 0)
                return spec_error("out of memory%s", "");
        }
    } else if (filename && !strncmp(filename, "null-co:", 8)) {
        /* QEMU's "null-co://": the default null-co image */
        if (blkopts_set(t, "driver", "null-co") < 0)
            return spec_error("out of memory%s", "");
    } else {
        plain = filename;
    }
    for (int i = 0; opts && i < opts->n; i++) {
        opts->opt[i].used = true;
        if (blkopts_set(t, opts->opt[i].key, opts->opt[i].value ? opts->opt[i].value : "on") < 0)
            return spec_error("out of memory%s", "");
    }
    if (format && (format_wins || !blkopts_get(t, "driver")) &&
        blkopts_set(t, "driver", format) < 0)
        return spec_error("out of memory%s", "");
    for (int i = 0; i < t->n; i++)
        t->opt[i].used = false;
    if (hoist_nbd(t) < 0)
        return -EINVAL;
    const char *drv = blkopts_get(t, "driver");
    const BlockFilter *top = drv ? blk_find_filter(drv) : NULL;
    if (top) {
        int r = spec_top_filter(t, top, &plain);
        if (r < 0)
            return r;
        s->filter_top = true;
        drv = blkopts_get(t, "driver");
    }
    /* a tree that names the file overrides the name it came with */
    for (int i = 0; plain && i < t->n; i++)
        if (!strcmp(t->opt[i].key, "file") || has_prefix(t->opt[i].key, "file."))
            plain = NULL;
    const BlockDriver *d = drv ? blk_find_driver(drv) : NULL;
    if (drv && is_file_protocol(drv)) {
        if (s->filter_top && top->over_host_file)
            return spec_error(top->over_host_file, drv);
        /* the host file itself: calf reads it as raw */
        s->host = plain ? plain + (strncmp(plain, "file:", 5) ? 0 : 5)
                        : blkopts_get(t, "filename");
        if (!s->host)
            return spec_error("The '%s' block driver requires a file name", drv);
        drv = "raw";
    } else if (d && d->no_file) {
        s->host = NULL;
    } else if (plain) {
        /* the "./" form: the name opened is the name shown */
        if (!(s->display = plain_name(plain)))
            return spec_error("out of memory%s", "");
        s->host = s->display;
    } else {
        const char *ref = blkopts_get(t, "file");
        if (ref)
            return spec_error("Cannot find device='%s' nor node-name='%s'", ref);
        int r = spec_file(s);
        if (r < 0)
            return r;
        if (!s->host && !s->child)
            return spec_error(drv ? "A block device must be specified for \"file\"%s"
                                  : "Must specify either driver or file%s", "");
    }
    if (drv && !d && strcmp(drv, "raw"))
        return spec_error(blk_find_filter(drv) ? "Driver '%s' needs a format over it"
                                               : "Unknown driver '%s'", drv);
    s->format = drv;
    int r = spec_node_opts(s);
    if (r < 0)
        return r;
    const char *b = blkopts_get(t, "backing");
    if (b && !*b)
        s->no_backing = true;
    for (int i = 0; b && *b && i < t->n; i++)
        if (!strcmp(t->opt[i].key, "backing"))
            t->opt[i].used = false; /* a node name: the format refuses it, as QEMU's does */
    for (int i = 0; i < t->n; i++) {
        BlockOpt *o = &t->opt[i];
        if (o->used)
            continue;
        BlockOptions *to = has_prefix(o->key, "backing.") ? &s->bopts : &s->dopts;
        if (blkopts_set(to, o->key + (to == &s->bopts ? 8 : 0), o->value) < 0)
            return spec_error("out of memory%s", "");
        o->used = true;
    }
    if (!s->display && s->host && !s->filter)
        s->display = plain_name(s->host);
    else if (!s->display)
        s->display = strdup(filename ? filename : s->host ? s->host : "");
    return s->display ? 0 : spec_error("out of memory%s", "");
}

struct chain_seen {
    dev_t dev[BLK_MAX_CHAIN];
    ino_t ino[BLK_MAX_CHAIN];
    int n;
};

/* Opens the host file of a node: the fd, or -1 with the error set. */
static int open_host(const char *filename, int flags, int depth, struct chain_seen *seen)
{
    bool rw = flags & BLK_O_RDWR;
    int oflags = (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    if (flags & BLK_O_NOCACHE) {
        oflags |= O_DIRECT;
        blk_file_direct_opened();
    }
    /* Never wait in open() for a FIFO's writer (backing file names come
     * from images, and `info --backing-chain` opens them at depth 0); a
     * backing file must not be a FIFO or a device that never ends. */
    oflags |= O_NONBLOCK;
    int fd = open(filename, oflags);
    if (fd >= BLK_VFD_BASE) {
        /* the numbers of virtual fds (blk_file_is_node): never a file's */
        blk_file_close(fd);
        fd = -1;
        errno = EMFILE;
    }
    if (fd < 0) {
        int e = errno;
        blk_set_error("Could not open '%s': %s", filename, strerror(e));
        return -1;
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) < 0)
        why = strerror(errno);
    else if (S_ISDIR(st.st_mode))
        why = "Is a directory";
    else if (depth > 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        why = "backing file is not a regular file or block device";
    if (why) {
        blk_set_error("Could not open '%s': %s", filename, why);
        blk_file_close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    for (int i = 0; i < seen->n; i++) {
        if (seen->dev[i] == st.st_dev && seen->ino[i] == st.st_ino) {
            blk_set_error("%s: backing chain loops back to an image already in the chain",
                          filename);
            blk_file_close(fd);
            return -1;
        }
    }
    seen->dev[seen->n] = st.st_dev;
    seen->ino[seen->n] = st.st_ino;
    seen->n++;

    if (!(flags & BLK_O_SHARE) && blk_lock(fd, rw, filename) < 0) {
        blk_file_close(fd);
        return -1;
    }
    return fd;
}

/* s as a JSON string */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* The node as a JSON object, as QEMU names a node over a node:
 * {"driver": FMT, "file": CHILD}, and a host file {"driver": "file",
 * "filename": PATH}. */
static void node_json(FILE *f, BlockDriverState *bs)
{
    fprintf(f, "{\"driver\": ");
    json_str(f, bs->drv->name);
    if (bs->file) {
        fprintf(f, ", \"file\": ");
        node_json(f, bs->file);
    } else if (!strncmp(bs->filename, "json:", 5)) {
        /* named by json: already (a filter below): its tree as given */
        fprintf(f, ", \"file\": %s", bs->filename + 5);
    } else if (bs->fd >= 0) {
        fprintf(f, ", \"file\": {\"driver\": \"file\", \"filename\": ");
        json_str(f, bs->filename);
        fputc('}', f);
    }
    fputc('}', f);
}

/* "json:{...}" for a node whose host file is a node; NULL on ENOMEM. */
static char *nested_name(BlockDriverState *bs)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fputs("json:", f);
    node_json(f, bs);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Nodes opened inside the opening of another (a node as host file, a
 * quorum's children) on this thread: bounded, so that a hostile option
 * tree nesting them without end gets an error, not a stack overflow. */
#define BLK_MAX_NEST 32
static __thread int nest_depth;

static bool nest_enter(void)
{
    if (nest_depth >= BLK_MAX_NEST) {
        blk_set_error("nodes nested more than %d deep", BLK_MAX_NEST);
        return false;
    }
    nest_depth++;
    return true;
}

/* Undoes what opened a node's host file: the file, or the node. */
static void close_host(int fd, BlockDriverState *file)
{
    if (file) {
        blk_vfd_release(fd);
        blk_close(file);
    } else {
        blk_file_close(fd);
    }
}

static BlockDriverState *open_chain(const char *filename, const char *format, bool format_wins,
                                    int flags, BlockOptions *opts, int depth,
                                    struct chain_seen *seen)
{
    if (depth >= BLK_MAX_CHAIN) {
        blk_set_error("%s: backing chain is deeper than %d images", filename, BLK_MAX_CHAIN);
        return NULL;
    }
    NodeSpec spec = {0};
    if (spec_parse(&spec, filename, format, format_wins, opts) < 0) {
        spec_free(&spec);
        return NULL;
    }
    flags |= spec.add_flags;
    const char *why = NULL;
    if (spec.read_only && (flags & BLK_O_RDWR))
        why = "Block node is read-only";
    else if ((spec.add_flags & BLK_O_SHARE) && (flags & BLK_O_RDWR))
        why = "force-share=on can only be used with read-only images";
    if (why) {
        blk_set_error("%s", why);
        spec_free(&spec);
        return NULL;
    }
    const BlockDriver *drv = NULL;
    if (spec.format && !(drv = blk_find_driver(spec.format))) {
        blk_set_error("Unknown driver '%s'", spec.format);
        spec_free(&spec);
        return NULL;
    }
    bool rw = flags & BLK_O_RDWR;
    int fd = -1;
    BlockDriverState *file = NULL;
    if (spec.child) {
        /* the host file is a node: opened as the image is, with its own
         * backing chain; its writers are this node's */
        int cflags = flags & (BLK_O_RDWR | BLK_O_SHARE | BLK_O_NOCACHE | BLK_O_UNSAFE |
                              BLK_O_NO_REPAIR);
        if (nest_enter()) {
            file = open_chain(NULL, NULL, false, cflags, &spec.copts, depth, seen);
            nest_depth--;
        }
        if (!file) {
            spec_free(&spec);
            return NULL;
        }
        if ((fd = blk_vfd_new(file)) < 0) {
            blk_close(file);
            spec_free(&spec);
            return NULL;
        }
    } else if (spec.host && (fd = open_host(spec.host, flags, depth, seen)) < 0) {
        spec_free(&spec);
        return NULL;
    }
    if (!drv && !(drv = probe_driver(fd))) {
        blk_set_error("%s: cannot read the file to probe its format",
                      spec.host ? spec.host : file->filename);
        close_host(fd, file);
        spec_free(&spec);
        return NULL;
    }

    BlockDriverState *bs = calloc(1, sizeof(*bs));
    if (!bs) {
        close_host(fd, file);
        spec_free(&spec);
        blk_set_error("out of memory");
        return NULL;
    }
    bs->filename = spec.display;
    spec.display = NULL;
    bs->drv = drv;
    bs->fd = fd;
    bs->file = file;
    if (file) {
        char *n = nested_name(bs);
        if (n) {
            free(bs->filename);
            bs->filename = n;
        }
    }
    bs->flags = flags;
    bs->read_only = !rw;
    bs->depth = depth;
    bs->fill = fd >= 0 && (flags & BLK_O_FILL) && rw && blk_file_fill_pays(fd);
    int r = 0;
    if (spec.filter) {
        blk_set_error("%s: could not open", bs->filename);
        bs->filter_top = spec.filter_top;
        if ((r = spec.filter->open(bs, &spec.fopts)) == 0) {
            bs->filter = spec.filter;
            const char *unused = blkopts_first_unused(&spec.fopts);
            if (unused) {
                blk_set_error("Block driver '%s' does not support the option '%s'",
                              spec.filter->name, unused);
                r = -EINVAL;
            }
        }
    }
    if (r == 0) {
        blk_set_error("%s: could not open", bs->filename);
        r = drv->open(bs, &spec.dopts);
    }
    if (r < 0) {
        /* the driver is not open: only the filter has anything to undo */
        if (bs->filter && bs->filter->close)
            bs->filter->close(bs);
        free(bs->filename);
        free(bs);
        close_host(fd, file);
        spec_free(&spec);
        return NULL;
    }
    const char *nodir = NULL; /* the driver below that has no directory */
    const char *unused = blkopts_first_unused(&spec.dopts);
    if (unused) {
        blk_set_error("Block format '%s' does not support the option '%s'", drv->name, unused);
        goto fail;
    }
    if (bs->filter && bs->filter->opened && bs->filter->opened(bs) < 0)
        goto fail;
    /* kept for opening this layer again (commit writes to a base it
     * opened read-only): its own options, the key among them */
    for (int i = 0; opts && i < opts->n; i++) {
        const char *k = opts->opt[i].key;
        if (strncmp(k, "backing.", 8) && strcmp(k, "driver") && strcmp(k, "file.filename") &&
            strcmp(k, "file.driver"))
            blkopts_set(&bs->options, k, opts->opt[i].value);
    }
    if (bs->backing_file[0]) {
        /* relative to the host file's directory, also under a filter */
        BlockDriverState *bottom = bs;
        while (bottom->file)
            bottom = bottom->file; /* as QEMU: the directory of the file below */
        if (bottom->fd < 0 && bottom != bs && bs->backing_file[0] != '/' &&
            !has_protocol(bs->backing_file)) {
            /* below is a node of several files (quorum): no directory */
            nodir = bottom->drv->name;
        } else {
            bs->full_backing_filename = blk_backing_path(
                spec.filter ? spec.host : bottom->filename, bs->backing_file);
            if (!bs->full_backing_filename) {
                blk_set_error("out of memory");
                goto fail;
            }
        }
    }
    if (nodir && !(flags & BLK_O_NO_BACKING) && !spec.no_backing) {
        blk_set_error("Cannot generate a base directory for %s nodes", nodir);
        goto fail;
    }
    if (bs->backing_file[0] && !(flags & BLK_O_NO_BACKING) && !spec.no_backing) {
        /* A backing file is only ever read: never opened for writing. */
        int bflags = (flags & ~(BLK_O_RDWR | BLK_O_CHECK)) | BLK_O_NO_REPAIR;
        const char *bfmt = bs->backing_format[0] ? bs->backing_format : NULL;
        BlockDriverState *b = open_chain(bs->full_backing_filename, bfmt, false, bflags,
                                         spec.bopts.n ? &spec.bopts : NULL, depth + 1, seen);
        if (!b) {
            char msg[1024];
            snprintf(msg, sizeof(msg), "%s", blk_error());
            blk_set_error("Could not open backing file: %s", msg);
            goto fail;
        }
        bs->backing = b;
    }
    spec_free(&spec);
    return bs;
fail:
    spec_free(&spec);
    blk_close(bs);
    return NULL;
}

BlockDriverState *blk_open(const char *filename, const char *format, int flags,
                           BlockOptions *opts)
{
    struct chain_seen *seen = calloc(1, sizeof(*seen));
    if (!seen) {
        blk_set_error("out of memory");
        return NULL;
    }
    BlockDriverState *bs = NULL;
    if (nest_enter()) {
        bs = open_chain(filename, format, true, flags, opts, 0, seen);
        nest_depth--;
    }
    free(seen);
    return bs;
}

BlockDriverState *blk_open_snapshot(const char *filename, const char *format, int flags)
{
    /* learn the format and size of the base (and that it opens at all) */
    BlockDriverState *base = blk_open(filename, format, flags & ~BLK_O_RDWR, NULL);
    if (!base)
        return NULL;
    char fmt[32];
    snprintf(fmt, sizeof(fmt), "%s", base->drv->name);
    uint64_t size = base->size;
    blk_close(base);
    /* the overlay's backing file name: the absolute path, or a json: or
     * null-co: name as it is (json: paths are the process's, not relative
     * to the overlay) */
    char *abs = !strncmp(filename, "file:", 5) ? realpath(filename + 5, NULL)
                : has_protocol(filename)      ? strdup(filename)
                                              : realpath(filename, NULL);
    const char *dir = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s/calf-snapshot-XXXXXX", dir && *dir ? dir : "/var/tmp");
    int fd = abs ? mkstemp(tmp) : -1;
    if (fd < 0) {
        blk_set_error("%s: cannot create a temporary overlay in %s: %s", filename,
                      dir && *dir ? dir : "/var/tmp", strerror(errno));
        free(abs);
        return NULL;
    }
    close(fd);
    BlockOptions o = {0};
    BlockDriverState *bs = NULL;
    if (blkopts_set(&o, "backing_file", abs) == 0 && blkopts_set(&o, "backing_fmt", fmt) == 0 &&
        blk_create("qcow2", tmp, size, &o) == 0)
        bs = blk_open(tmp, "qcow2", (flags | BLK_O_RDWR) & ~BLK_O_CHECK, NULL);
    unlink(tmp);
    blkopts_free(&o);
    free(abs);
    return bs;
}

void blk_close(BlockDriverState *bs)
{
    while (bs) {
        BlockDriverState *next = bs->backing;
        if (bs->map)
            munmap((void *)bs->map, bs->map_size);
        if (bs->drv->close)
            bs->drv->close(bs);
        if (bs->filter && bs->filter->close)
            bs->filter->close(bs);
        close_host(bs->fd, bs->file);
        free(bs->filename);
        free(bs->full_backing_filename);
        blkopts_free(&bs->options);
        free(bs);
        bs = next;
    }
}

/* Guest data of [off, off+len) is about to change: the bitmaps that
 * record writes are told (BLK_BITMAP_GUEST_WRITE).  Until the format says
 * none does, every write asks; the first one has the format mark them
 * in-use on disk before any data is written.  Concurrent writers are
 * serialized by the driver.  (Reverting to a snapshot is refused where
 * there are bitmaps, as in QEMU.) */
static int before_guest_write(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    if (!bs->drv->bitmap || __atomic_load_n(&bs->bitmaps_marked, __ATOMIC_ACQUIRE))
        return 0;
    BlockBitmapReq req = {.op = BLK_BITMAP_GUEST_WRITE, .name = "", .offset = off,
                          .nbytes = len};
    /* the driver sets bitmaps_marked, under its lock, once none records */
    int r = bs->drv->bitmap(bs, &req);
    return r < 0 ? r : 0;
}

static int check_request(BlockDriverState *bs, uint64_t off, uint64_t len, bool write)
{
    if (write && bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (off > bs->size || len > bs->size - off) {
        blk_set_error("%s: request [%" PRIu64 ", +%" PRIu64 ") is beyond the end of the "
                      "image (%" PRIu64 " bytes)", bs->filename, off, len, bs->size);
        return -EINVAL;
    }
    return write ? before_guest_write(bs, off, len) : 0;
}

int blk_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    int r = check_request(bs, off, len, false);
    if (r < 0 || len == 0 || (r = blkdebug_top_check(bs, BLKDBG_IO_READ, off, len)) < 0)
        return r;
    return bs->drv->pread(bs, off, buf, len);
}

/* A write that succeeded is on disk before it completes under
 * writethrough caching; a failed flush fails the write (QEMU's FUA).  A
 * top blkdebug passes FUA down and sees no flush here. */
static int written(BlockDriverState *bs, int r)
{
    if (r == 0 && (bs->flags & BLK_O_WRITETHROUGH) && !bs->read_only && bs->drv->flush)
        r = bs->drv->flush(bs);
    return r;
}

/* Writes under blkdebug's align, one at a time: a read-modify-write must
 * not lose a write to the same block from another thread (QEMU
 * serialises such requests).  A test tool's cost, nobody else's. */
static pthread_mutex_t align_mu = PTHREAD_MUTEX_INITIALIZER;

/* The request alignment of writes: blkdebug's align or a compress
 * filter's cluster size (powers of two: the larger is a multiple of the
 * smaller); 1 without either. */
static uint64_t write_align(BlockDriverState *bs)
{
    const BlkdebugLimits *l = bs->debug ? blkdebug_limits(bs) : NULL;
    uint64_t a = l && l->align > 1 ? l->align : 1;
    return bs->compress_align > a ? bs->compress_align : a;
}

static bool has_align(BlockDriverState *bs)
{
    return write_align(bs) > 1;
}

/* The write alignment when a write at [off, +len) is not aligned to it;
 * 0 otherwise, and always without one. */
static uint64_t unaligned_by(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    uint64_t a = write_align(bs);
    return a > 1 && ((off | len) & (a - 1)) ? a : 0;
}

/* blkdebug or a compress filter on top: writes take block.c's slow path */
static bool top_filtered(BlockDriverState *bs)
{
    return __builtin_expect(bs->debug != NULL || bs->compress_align != 0, 0);
}

/* Writes [off, +len) (buf, or zeros when NULL) as QEMU's block layer does
 * under a request alignment a: the whole aligned range, its head and
 * tail read first (read-modify-write).  Which clusters a format then
 * allocates follows the aligned range, which is what a user sees. */
/* A write as QEMU's block layer hands it to a top blkdebug: its event,
 * then its rules, then the format. */
static int debug_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, uint64_t len)
{
    blkdebug_top_event(bs, BLKDBG_PWRITEV);
    int r = blkdebug_top_check(bs, BLKDBG_IO_WRITE, off, len);
    if (r < 0)
        return r;
    return bs->compress_align ? blk_compress_pwrite(bs, off, buf, len)
                              : bs->drv->pwrite(bs, off, buf, len);
}

/* The read of a padded write's head or tail block (both when it is one
 * block), with the events a top blkdebug has for it.  QEMU 7.2 goes on
 * with the write when this read fails (its block layer drops the error),
 * so a rule that fails it is used up and the write succeeds; calf still
 * reads the real data rather than write back an unread buffer. */
static int rmw_read(BlockDriverState *bs, uint64_t off, uint8_t *p, uint64_t n, bool head,
                    bool tail)
{
    if (head)
        blkdebug_top_event(bs, BLKDBG_PWRITEV_RMW_HEAD);
    if (tail)
        blkdebug_top_event(bs, BLKDBG_PWRITEV_RMW_TAIL);
    (void)blkdebug_top_check(bs, BLKDBG_IO_READ, off, n);
    int r = bs->drv->pread(bs, off, p, n);
    if (r < 0)
        return r;
    if (head)
        blkdebug_top_event(bs, BLKDBG_PWRITEV_RMW_AFTER_HEAD);
    if (tail)
        blkdebug_top_event(bs, BLKDBG_PWRITEV_RMW_AFTER_TAIL);
    return 0;
}

static int pwrite_padded(BlockDriverState *bs, uint64_t a, uint64_t off, const void *buf,
                         uint64_t len)
{
    uint64_t start = off & ~(a - 1), end = (off + len + a - 1) & ~(a - 1);
    if (end > bs->size)
        end = bs->size;
    uint8_t *p = malloc(end - start);
    if (!p)
        return -ENOMEM;
    uint64_t head_end = start + a < end ? start + a : end;
    /* QEMU reads both ends at once when they are all the padded range is
     * (one block, or two partial ones) */
    bool head = start < off, tail = off + len < end;
    bool one = head_end == end || (head && tail && end - start == 2 * a);
    int r = 0;
    if (one && (head || tail))
        r = rmw_read(bs, start, p, end - start, head, tail);
    else if (head)
        r = rmw_read(bs, start, p, head_end - start, true, false);
    uint64_t tail_start = (end - 1) & ~(a - 1);
    if (r == 0 && tail && !one)
        r = rmw_read(bs, tail_start, p + (tail_start - start), end - tail_start, false, true);
    if (r == 0) {
        if (buf)
            memcpy(p + (off - start), buf, len);
        else
            memset(p + (off - start), 0, len);
        r = debug_pwrite(bs, start, p, end - start);
    }
    free(p);
    return r;
}

int blk_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    int r = check_request(bs, off, len, true);
    if (r < 0 || len == 0)
        return r;
    if (top_filtered(bs)) {
        /* QEMU's block layer events at a top blkdebug, and its rules;
         * a compress filter's alignment */
        uint64_t a = unaligned_by(bs, off, len);
        bool serial = has_align(bs);
        if (serial)
            pthread_mutex_lock(&align_mu);
        r = a ? pwrite_padded(bs, a, off, buf, len) : debug_pwrite(bs, off, buf, len);
        if (serial)
            pthread_mutex_unlock(&align_mu);
        blkdebug_top_event(bs, BLKDBG_PWRITEV_DONE);
        return written(bs, r);
    }
    return written(bs, bs->drv->pwrite(bs, off, buf, len));
}

/* Scattered requests (a guest's page-sized segments) become one driver
 * request through a per-thread buffer: one copy is far cheaper than a
 * syscall and a metadata lookup per segment. */
#define GATHER_MAX (4u << 20)
/* QEMU's largest request (BDRV_REQUEST_MAX_BYTES), for requests that a
 * top filter keeps whole */
#define BLK_FILTER_REQUEST_MAX ((uint64_t)INT32_MAX & ~(uint64_t)511)

struct gather {
    uint8_t *buf;
    size_t cap;
};

static pthread_key_t gather_key;
static pthread_once_t gather_once = PTHREAD_ONCE_INIT;

static void gather_free(void *p)
{
    struct gather *g = p;
    free(g->buf);
    free(g);
}

static void gather_init(void)
{
    pthread_key_create(&gather_key, gather_free);
}

/* The calling thread's buffer, freed when the thread exits. */
static uint8_t *gather_buffer(size_t len)
{
    pthread_once(&gather_once, gather_init);
    struct gather *g = pthread_getspecific(gather_key);
    if (!g) {
        if (!(g = calloc(1, sizeof(*g))))
            return NULL;
        pthread_setspecific(gather_key, g);
    }
    if (len <= g->cap)
        return g->buf;
    free(g->buf);
    g->cap = 0;
    /* aligned for O_DIRECT */
    g->buf = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
    if (g->buf)
        g->cap = len;
    return g->buf;
}

/* Segments that follow each other in host memory (a buffer contiguous in
 * guest RAM, cut at the guest's segment size) as one: the count, or -1
 * past max.  A request that merges into one needs neither a copy nor a
 * vectored driver path. */
static int iov_merge(const struct iovec *iov, int iovcnt, struct iovec *out, int max)
{
    int n = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (n &&
            (uint8_t *)out[n - 1].iov_base + out[n - 1].iov_len == (uint8_t *)iov[i].iov_base) {
            out[n - 1].iov_len += iov[i].iov_len;
            continue;
        }
        if (n == max)
            return -1;
        out[n++] = iov[i];
    }
    return n;
}

size_t blk_iov_total(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* A scattered request without the gather copy: segments contiguous in
 * memory as one plain request, else the driver's vectored path if it has
 * one.  -ENOTSUP: neither applies, gather. */
static int iov_no_copy(BlockDriverState *bs, uint64_t off, const struct iovec *iov,
                       int iovcnt, size_t total, bool write)
{
    struct iovec m[1];
    if (iovcnt < 2)
        return -ENOTSUP;
    if (iov_merge(iov, iovcnt, m, 1) == 1)
        return write ? blk_pwrite(bs, off, m[0].iov_base, m[0].iov_len)
                     : blk_pread(bs, off, m[0].iov_base, m[0].iov_len);
    if (!(write ? bs->drv->pwritev : bs->drv->preadv))
        return -ENOTSUP;
    int r = check_request(bs, off, total, write);
    if (r < 0)
        return r;
    return write ? bs->drv->pwritev(bs, off, iov, iovcnt) : bs->drv->preadv(bs, off, iov, iovcnt);
}

int blk_preadv(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    size_t total = blk_iov_total(iov, iovcnt);
    /* under blkdebug, through blk_pread's checks */
    int d = bs->debug ? -ENOTSUP : iov_no_copy(bs, off, iov, iovcnt, total, false);
    if (d != -ENOTSUP)
        return d;
    uint8_t *g = iovcnt > 1 && total <= GATHER_MAX ? gather_buffer(total) : NULL;
    if (g) {
        int r = blk_pread(bs, off, g, total);
        if (r < 0)
            return r;
        for (int i = 0; i < iovcnt; g += iov[i].iov_len, i++)
            memcpy(iov[i].iov_base, g, iov[i].iov_len);
        return 0;
    }
    for (int i = 0; i < iovcnt; i++) {
        int r = blk_pread(bs, off, iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return r;
        off += iov[i].iov_len;
    }
    return 0;
}

/* Runs shorter than this are written as they are: the allocation would
 * cost about what it saves. */
#define FILL_MIN (64u << 10)

void blk_fill(BlockDriverState *bs, uint64_t off, uint64_t n)
{
    if (n < FILL_MIN || !__atomic_load_n(&bs->fill, __ATOMIC_RELAXED))
        return;
    /* no space is for the write to report; a refusal (an ext3 file
     * without extents) is for good */
    int r = blk_file_fill(bs->fd, off, n);
    if (r == -EOPNOTSUPP || r == -ENOSYS)
        __atomic_store_n(&bs->fill, false, __ATOMIC_RELAXED);
}

int blk_pwritev(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    size_t total = blk_iov_total(iov, iovcnt);
    /* an unaligned request under blkdebug's align is padded whole */
    int d = top_filtered(bs) ? -ENOTSUP : iov_no_copy(bs, off, iov, iovcnt, total, true);
    if (d != -ENOTSUP)
        return written(bs, d);
    uint8_t *g = iovcnt > 1 && total <= GATHER_MAX ? gather_buffer(total) : NULL;
    /* Under a top filter a request stays one (QEMU's): segments written
     * one by one would each be padded to the alignment and compressed
     * alone, a second one into a cluster the first compressed failing. */
    uint8_t *heap = NULL;
    if (!g && iovcnt > 1 && top_filtered(bs)) {
        /* its bounds first (blk_pwrite checks it all): no buffer larger
         * than the image */
        if (off > bs->size || total > bs->size - off)
            return check_request(bs, off, total, true);
        if (total > BLK_FILTER_REQUEST_MAX)
            return -EIO; /* QEMU's limit of one request */
        if (!(g = heap = malloc(total)))
            return -ENOMEM;
    }
    if (g) {
        uint8_t *p = g;
        for (int i = 0; i < iovcnt; p += iov[i].iov_len, i++)
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        int r = blk_pwrite(bs, off, g, total);
        free(heap);
        return r;
    }
    for (int i = 0; i < iovcnt; i++) {
        int r = blk_pwrite(bs, off, iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return r;
        off += iov[i].iov_len;
    }
    return 0;
}

static int write_zero_data(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    static const uint8_t zero[65536];
    if (bs->compress_align) {
        /* compressed, cluster by cluster (aligned: the ends were padded) */
        uint8_t *z = calloc(1, bs->compress_align);
        int r = z ? 0 : -ENOMEM;
        for (uint64_t n; r == 0 && len; off += n, len -= n) {
            n = len < bs->compress_align ? len : bs->compress_align;
            r = blk_compress_pwrite(bs, off, z, n);
        }
        free(z);
        return r;
    }
    while (len) {
        size_t n = len < sizeof(zero) ? len : sizeof(zero);
        int r = bs->drv->pwrite(bs, off, zero, n);
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* QEMU's block layer cuts a write-zeroes request by blkdebug's limits:
 * pieces up to each opt-write-zero boundary, none over max-write-zero;
 * blkdebug refuses a piece smaller than the alignment, which then becomes
 * a write of zeroed data.  What is allocated (map) shows the cut. */
static int zeroes_limited(BlockDriverState *bs, const BlkdebugLimits *l, uint64_t off,
                          uint64_t len, int flags)
{
    uint64_t align = max_u64(max_u64(l->opt_write_zero, l->align), 1);
    uint64_t max = l->max_write_zero ? l->max_write_zero / align * align : UINT64_MAX;
    uint64_t max_transfer = l->max_transfer ? l->max_transfer : 16 << 20;
    uint64_t head = off % align, tail = (off + len) % align;
    while (len) {
        uint64_t n = len;
        if (head) {
            n = len < align - head ? len : align - head;
            n = n < max_transfer ? n : max_transfer;
            head = (head + n) % align;
        } else if (tail && n > align) {
            n -= tail;
        }
        n = n < max ? n : max;
        int r = n >= align && bs->drv->pwrite_zeroes ? bs->drv->pwrite_zeroes(bs, off, n, flags)
                                                     : -ENOTSUP;
        if (r == -ENOTSUP)
            r = write_zero_data(bs, off, n);
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

/* A padded write's end, as QEMU's block layer has it after each one */
static int padded_done(BlockDriverState *bs, int r)
{
    blkdebug_top_event(bs, BLKDBG_PWRITEV_DONE);
    return r;
}

/* write-zeroes under a blkdebug or a compress filter: the partial align
 * blocks at each end
 * written as data, in QEMU's order (head, middle, tail), the rest cut by
 * its limits, if it has any */
static int zeroes_debug(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    int r;
    uint64_t tail_len = 0;
    const BlkdebugLimits *l = blkdebug_limits(bs);
    uint64_t a = write_align(bs);
    if (a > 1) {
        /* partial align blocks at either end are written as data */
        uint64_t head = off & (a - 1), end = off + len;
        uint64_t mid = head ? (off | (a - 1)) + 1 : off, mid_end = end & ~(a - 1);
        tail_len = mid_end < end ? end - mid_end : 0;
        if (mid >= end || mid_end <= mid)
            return padded_done(bs, pwrite_padded(bs, a, off, NULL, len));
        if (head && (r = padded_done(bs, pwrite_padded(bs, a, off, NULL, mid - off))) < 0)
            return r;
        off = mid;
        len = mid_end - mid;
    }
    /* the aligned part: what QEMU passes on as zeroes, with its events */
    blkdebug_top_event(bs, BLKDBG_PWRITEV_ZERO);
    r = blkdebug_top_check(bs, BLKDBG_IO_WRITE_ZEROES, off, len);
    if (r == 0 && l)
        r = zeroes_limited(bs, l, off, len, flags);
    else if (r == 0)
        r = bs->drv->pwrite_zeroes ? bs->drv->pwrite_zeroes(bs, off, len, flags)
                                   : write_zero_data(bs, off, len);
    blkdebug_top_event(bs, BLKDBG_PWRITEV_DONE);
    if (r == 0 && tail_len)
        r = padded_done(bs, pwrite_padded(bs, a, off + len, NULL, tail_len));
    return r;
}

int blk_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    int r = check_request(bs, off, len, true);
    if (r < 0 || len == 0)
        return r;
    if (top_filtered(bs)) {
        bool serial = has_align(bs);
        if (serial)
            pthread_mutex_lock(&align_mu);
        r = zeroes_debug(bs, off, len, flags);
        if (serial)
            pthread_mutex_unlock(&align_mu);
        return written(bs, r);
    }
    if (bs->drv->pwrite_zeroes)
        return written(bs, bs->drv->pwrite_zeroes(bs, off, len, flags));
    return written(bs, write_zero_data(bs, off, len));
}

/* As QEMU cuts a discard by blkdebug's limits: pieces up to each
 * opt-discard boundary, none over max-discard, and blkdebug drops a
 * piece smaller than the alignment (a discard may do nothing). */
static int discard_limited(BlockDriverState *bs, const BlkdebugLimits *l, uint64_t off,
                           uint64_t len)
{
    uint64_t ra = max_u64(l->align, 1);
    uint64_t align = max_u64(l->opt_discard, ra);
    uint64_t max = (l->max_discard ? l->max_discard : UINT64_MAX) / align * align;
    uint64_t head = off % align, tail = (off + len) % align;
    while (len) {
        uint64_t n = len;
        if (head) {
            n = len < align - head ? len : align - head;
            if (n % ra)
                n %= ra;
            head = (head + n) % align;
        } else if (tail) {
            if (n > align) {
                n -= tail;
            } else if (tail % ra && tail > ra) {
                tail %= ra;
                n -= tail;
            }
        }
        n = n < max ? n : max;
        int r = n >= ra ? bs->drv->discard(bs, off, n) : 0;
        if (r < 0 && r != -ENOTSUP)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

int blk_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    int r = check_request(bs, off, len, true);
    if (r < 0 || len == 0 || !bs->drv->discard ||
        (r = blkdebug_top_check(bs, BLKDBG_IO_DISCARD, off, len)) < 0)
        return r;
    const BlkdebugLimits *l = bs->debug ? blkdebug_limits(bs) : NULL;
    return l ? discard_limited(bs, l, off, len) : bs->drv->discard(bs, off, len);
}

int blk_flush(BlockDriverState *bs)
{
    if (bs->read_only || !bs->drv->flush)
        return 0;
    int r = blkdebug_top_check(bs, BLKDBG_IO_FLUSH, 0, 0);
    return r < 0 ? r : bs->drv->flush(bs);
}

void blk_start_writeback(BlockDriverState *bs)
{
    if (bs->read_only)
        return;
    if (bs->drv->start_writeback)
        bs->drv->start_writeback(bs);
    else if (bs->fd >= 0)
        blk_file_start_writeback(bs->fd);
}

int blk_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                     uint64_t *host_offset)
{
    uint64_t dummy;
    if (!host_offset)
        host_offset = &dummy;
    *host_offset = 0;
    if (off >= bs->size) {
        *pnum = 0;
        return 0;
    }
    if (len > bs->size - off)
        len = bs->size - off;
    int e = blkdebug_top_check(bs, BLKDBG_IO_BLOCK_STATUS, off, len);
    if (e < 0)
        return e;
    if (!bs->drv->block_status) {
        *pnum = len;
        return BLK_STATUS_DATA | BLK_STATUS_ALLOCATED;
    }
    return bs->drv->block_status(bs, off, len, pnum, host_offset);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* The whole host file of b, mapped once (its size when first asked).
 * NULL when it cannot be. */
static const uint8_t *map_file(BlockDriverState *b)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    const uint8_t *m = __atomic_load_n(&b->map, __ATOMIC_ACQUIRE);
    if (m || (b->flags & BLK_O_NOCACHE))
        return m;
    pthread_mutex_lock(&lock);
    struct stat st;
    if (!b->map && !blk_file_is_node(b->fd) && !fstat(b->fd, &st) && S_ISREG(st.st_mode) &&
        st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, b->fd, 0);
        if (p != MAP_FAILED) {
            b->map_size = (uint64_t)st.st_size;
            __atomic_store_n(&b->map, (const uint8_t *)p, __ATOMIC_RELEASE);
        }
    }
    m = b->map;
    pthread_mutex_unlock(&lock);
    return m;
}

const uint8_t *blk_map_read(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            int flags)
{
    uint64_t host = 0;
    BlockDriverState *file = NULL;
    int depth;
    int st = blk_block_status_above(bs, off, len, pnum, &host, &depth, &file);
    if (st < 0)
        *pnum = 0;
    return blk_status_mappable(st) && file ? blk_map_host(file, host, *pnum, flags) : NULL;
}

const uint8_t *blk_map_host(BlockDriverState *file, uint64_t host, uint64_t len, int flags)
{
    const uint8_t *m = map_file(file);
    if (!m || host > file->map_size || len > file->map_size - host)
        return NULL;
    if (flags & BLK_MAP_LAZY)
        return m + host;
    /* Fault the pages in now: this fails (instead of a SIGBUS later) where
     * the file has shrunk since.  Kernels before 5.14 lack it (EINVAL). */
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t a = host & ~(uint64_t)(pg - 1);
    if (madvise((void *)(m + a), host + len - a, MADV_POPULATE_READ) < 0 && errno != EINVAL)
        return NULL;
    return m + host;
}

/* The layer of bs's chain whose mapping holds p, or NULL. */
static BlockDriverState *map_owner(BlockDriverState *bs, const uint8_t *p)
{
    for (; bs; bs = bs->backing) {
        if (bs->map && p >= bs->map && p < bs->map + bs->map_size)
            return bs;
        BlockDriverState *d = bs->data_file;
        if (d && d->map && p >= d->map && p < d->map + d->map_size)
            return d;
    }
    return NULL;
}

int blk_map_source(BlockDriverState *bs, const uint8_t *p, uint64_t *host)
{
    BlockDriverState *b = map_owner(bs, p);
    if (!b)
        return -1;
    *host = (uint64_t)(p - b->map);
    return b->fd;
}

int blk_copy_mapped(BlockDriverState *bs, uint64_t off, BlockDriverState *src, const uint8_t *p,
                    uint64_t len)
{
    uint64_t host;
    /* a top compress filter or blkdebug sees each write: no shortcut
     * under it (the caller writes the data the plain way) */
    if (top_filtered(bs))
        return -ENOTSUP;
    int fd = blk_map_source(src, p, &host);
    if (fd < 0 || !bs->drv->copy_from_file || bs->read_only)
        return -ENOTSUP;
    int r = check_request(bs, off, len, true);
    return r < 0 ? r : bs->drv->copy_from_file(bs, off, fd, host, len);
}

void blk_map_done(BlockDriverState *bs, const uint8_t *p, uint64_t len)
{
    /* 64 KiB: the kernel's fault-around window (fault_around_bytes) */
    const uintptr_t win = 64 << 10;
    BlockDriverState *o = map_owner(bs, p);
    if (!o)
        return;
    uintptr_t m = (uintptr_t)o->map, e = m + o->map_size;
    uintptr_t a = (uintptr_t)p & ~(win - 1), b = ((uintptr_t)p + len + win - 1) & ~(win - 1);
    a = a < m ? m : a;
    b = b > e ? e : b;
    /* on a shared file mapping this only drops page table entries */
    madvise((void *)a, b - a, MADV_DONTNEED);
}

int blk_block_status_above(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                           uint64_t *host_offset, int *depth, BlockDriverState **file)
{
    uint64_t want = len, dummy;
    if (!host_offset)
        host_offset = &dummy;
    int d = 0;
    for (BlockDriverState *b = bs; b; b = b->backing, d++) {
        uint64_t n;
        int st = blk_block_status(b, off, want, &n, host_offset);
        if (st < 0)
            return st;
        want = n;
        bool below = b->backing && off < b->backing->size;
        if ((st & BLK_STATUS_ALLOCATED) || !below) {
            /* This layer decides, or nothing below it reaches here:
             * then it reads as zeros, as QEMU's generic layer says. */
            if (!(st & BLK_STATUS_ALLOCATED))
                st = BLK_STATUS_ZERO | (st & BLK_STATUS_OFFSET);
            if (depth)
                *depth = d;
            if (file)
                *file = b->data_file ? b->data_file : b;
            *pnum = want;
            return st;
        }
        if (want > b->backing->size - off)
            want = b->backing->size - off;
    }
    *pnum = want; /* not reached: the last layer has no backing */
    return BLK_STATUS_ZERO;
}

int blk_read_backing(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    BlockDriverState *b = bs->backing;
    size_t avail = 0;
    if (b && off < b->size)
        avail = b->size - off < len ? b->size - off : len;
    if (avail) {
        int r = blk_pread(b, off, buf, avail);
        if (r < 0)
            return r;
    }
    memset((uint8_t *)buf + avail, 0, len - avail);
    return 0;
}

int blk_truncate(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink)
{
    if (bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (!bs->drv->truncate) {
        blk_set_error("%s: the %s format cannot be resized", bs->filename, bs->drv->name);
        return -ENOTSUP;
    }
    if (!bs->drv->truncate_no_sync)
        prealloc &= ~BLK_PREALLOC_NO_SYNC;
    return bs->drv->truncate(bs, size, prealloc, shrink);
}

int blk_get_info(BlockDriverState *bs, BlockInfo *info)
{
    memset(info, 0, sizeof(*info));
    return bs->drv->get_info ? bs->drv->get_info(bs, info) : 0;
}

void blk_info_free(BlockInfo *info)
{
    free(info->snapshots);
    info->snapshots = NULL;
    free(info->bitmaps);
    info->bitmaps = NULL;
}

bool blk_has_bitmaps(BlockDriverState *bs)
{
    BlockBitmapReq req = {.op = BLK_BITMAP_PROBE, .name = ""};
    return bs->drv->bitmap && bs->drv->bitmap(bs, &req) == 0;
}

/* Sets the bits of dst (granularity gd) for every byte that set bits of
 * src (granularity gs) cover, on a disk of size bytes. */
static void bitmap_or(uint8_t *dst, uint32_t gd, const uint8_t *src, uint32_t gs,
                      uint64_t nbytes, uint64_t size)
{
    if (gd == gs) {
        for (uint64_t i = 0; i < nbytes; i++)
            dst[i] |= src[i];
        return;
    }
    for (uint64_t i = 0; i < nbytes; i++) {
        if (!src[i])
            continue;
        for (int b = 0; b < 8; b++) {
            if (!(src[i] & (1u << b)))
                continue;
            uint64_t start = (i * 8 + b) * (uint64_t)gs;
            if (start >= size)
                break;
            uint64_t end = start + gs < size ? start + gs : size;
            for (uint64_t d = start / gd; d <= (end - 1) / gd; d++)
                dst[d / 8] |= (uint8_t)(1u << (d % 8));
        }
    }
}

int blk_bitmap_merge(BlockDriverState *dst, const char *dst_name, BlockDriverState *src,
                     const char *src_name)
{
    BlockBitmapReq d = {.op = BLK_BITMAP_READ, .name = dst_name};
    BlockBitmapReq s = {.op = BLK_BITMAP_READ, .name = src_name};
    int r = blk_bitmap(dst, &d);
    if (r < 0)
        return r;
    if ((r = blk_bitmap(src, &s)) < 0)
        goto out;
    if (src->size != dst->size) {
        blk_set_error("Bitmaps are incompatible and can't be merged");
        r = -EINVAL;
        goto out;
    }
    bitmap_or(d.bits, d.granularity, s.bits, s.granularity, s.nbytes, src->size);
    d.op = BLK_BITMAP_WRITE;
    r = blk_bitmap(dst, &d);
out:
    free(d.bits);
    free(s.bits);
    return r;
}

int blk_bitmap(BlockDriverState *bs, BlockBitmapReq *req)
{
    if (!bs->drv->bitmap) {
        /* qemu-img's words: a format without bitmaps has none to find */
        if (req->op == BLK_BITMAP_ADD)
            blk_set_error("Can't store persistent bitmaps to %s: %s", bs->filename,
                          strerror(ENOTSUP));
        else if (req->op == BLK_BITMAP_PROBE)
            blk_set_error("Format driver '%s' does not support bitmaps", bs->drv->name);
        else
            blk_set_error("Dirty bitmap '%s' not found", req->name);
        return -ENOTSUP;
    }
    if (req->op == BLK_BITMAP_GUEST_WRITE) {
        blk_set_error("%s: not a request for blk_bitmap()", bs->filename);
        return -EINVAL;
    }
    if (req->op != BLK_BITMAP_READ && req->op != BLK_BITMAP_PROBE && bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    return bs->drv->bitmap(bs, req);
}

int64_t blk_allocated_size(BlockDriverState *bs)
{
    if (bs->drv->allocated_size)
        return bs->drv->allocated_size(bs);
    struct stat st;
    int r = blk_file_stat(bs->fd, &st);
    if (r < 0)
        return r;
    return (int64_t)st.st_blocks * 512;
}

int blk_create_name_check(const char *filename)
{
    /* QEMU creates through no protocol calf has but file: (json: neither) */
    size_t n = strcspn(filename, ":/");
    if (filename[n] == ':' && strncmp(filename, "file:", 5)) {
        blk_set_error("Unknown protocol '%.*s'", (int)(n < 64 ? n : 64), filename);
        return -EINVAL;
    }
    return 0;
}

int blk_create(const char *format, const char *filename, uint64_t size, BlockOptions *opts)
{
    const BlockDriver *drv = blk_find_driver(format);
    if (!drv) {
        blk_set_error("Unknown file format '%s'", format);
        return -EINVAL;
    }
    if (!drv->create) {
        blk_set_error("Format driver '%s' does not support image creation", format);
        return -ENOTSUP;
    }
    if (blk_create_name_check(filename) < 0)
        return -EINVAL;
    if (!strncmp(filename, "file:", 5))
        filename += 5;
    return drv->create(filename, size, opts);
}

int blk_check(BlockDriverState *bs, BlockCheckResult *res, int fix)
{
    memset(res, 0, sizeof(*res));
    if (!bs->drv->check) {
        blk_set_error("This image format does not support checks");
        return -ENOTSUP;
    }
    if (fix && bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    return bs->drv->check(bs, res, fix);
}

/* The optional operations: a clear error when the format lacks one. */
#define OPTIONAL_OP(op, what, ...)                                                    \
    do {                                                                             \
        if (bs->read_only) {                                                         \
            blk_set_error("%s: image is opened read-only", bs->filename);             \
            return -EACCES;                                                          \
        }                                                                            \
        if (!bs->drv->op) {                                                          \
            blk_set_error("%s: the %s format does not support %s", bs->filename,      \
                          bs->drv->name, what);                                      \
            return -ENOTSUP;                                                         \
        }                                                                            \
        return bs->drv->op(bs, __VA_ARGS__);                                         \
    } while (0)

int blk_snapshot_create(BlockDriverState *bs, const char *name)
{
    OPTIONAL_OP(snapshot_create, "internal snapshots", name);
}

int blk_snapshot_revert_check(BlockDriverState *bs)
{
    /* QEMU refuses to revert under bitmaps, which it holds for every
     * bitmap of the image, valid or not */
    BlockInfo bi = {0};
    int r = blk_get_info(bs, &bi);
    int n = r < 0 ? 0 : bi.nb_bitmaps;
    blk_info_free(&bi);
    if (n > 0) {
        blk_set_error("Device has active dirty bitmaps");
        return -EBUSY;
    }
    return 0;
}

int blk_snapshot_apply(BlockDriverState *bs, const char *name_or_id)
{
    int r = blk_snapshot_revert_check(bs);
    if (r < 0)
        return r;
    OPTIONAL_OP(snapshot_apply, "internal snapshots", name_or_id);
}

int blk_snapshot_delete(BlockDriverState *bs, const char *name_or_id)
{
    OPTIONAL_OP(snapshot_delete, "internal snapshots", name_or_id);
}

int blk_snapshot_load_tmp(BlockDriverState *bs, const char *id, const char *name)
{
    if (!bs->read_only) {
        blk_set_error("%s: a snapshot can only be loaded read-only", bs->filename);
        return -EINVAL;
    }
    if (!bs->drv->snapshot_load_tmp) {
        blk_set_error("Block format '%s' used by device '' does not support temporarily "
                      "loading internal snapshots", bs->drv->name);
        return -ENOTSUP;
    }
    return bs->drv->snapshot_load_tmp(bs, id, name);
}

int blk_snapshot_load_tmp_by_id_or_name(BlockDriverState *bs, const char *name_or_id)
{
    int r = blk_snapshot_load_tmp(bs, name_or_id, NULL);
    if (r == -ENOENT)
        r = blk_snapshot_load_tmp(bs, NULL, name_or_id);
    return r;
}

int blk_make_empty(BlockDriverState *bs)
{
    if (bs->read_only) {
        blk_set_error("%s: image is opened read-only", bs->filename);
        return -EACCES;
    }
    if (!bs->drv->make_empty) {
        blk_set_error("%s: the %s format cannot be emptied", bs->filename, bs->drv->name);
        return -ENOTSUP;
    }
    int r = before_guest_write(bs, 0, bs->size);
    return r < 0 ? r : bs->drv->make_empty(bs);
}

int blk_change_backing_file(BlockDriverState *bs, const char *file, const char *fmt)
{
    OPTIONAL_OP(change_backing_file, "backing files", file, fmt);
}

int blk_amend(BlockDriverState *bs, BlockOptions *opts, bool force)
{
    OPTIONAL_OP(amend, "amend", opts, force);
}

int blk_pwrite_compressed(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    int r = check_request(bs, off, len, true);
    if (r < 0 || len == 0)
        return r;
    if (!bs->drv->pwrite_compressed) {
        blk_set_error("%s: the %s format does not support compressed writes", bs->filename,
                      bs->drv->name);
        return -ENOTSUP;
    }
    return written(bs, bs->drv->pwrite_compressed(bs, off, buf, len));
}

