/* blkdebug: fault injection compatible with QEMU's (see blkdebug.h). */
#include "block/blkdebug.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const event_names[BLKDBG__MAX] = {
    "l1_update", "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table",
    "l2_load", "l2_update", "l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
    "read_aio", "read_backing_aio", "read_compressed", "write_aio", "write_compressed",
    "vmstate_load", "vmstate_save", "cow_read", "cow_write", "reftable_load", "reftable_grow",
    "reftable_update", "refblock_load", "refblock_update", "refblock_update_part",
    "refblock_alloc", "refblock_alloc_hookup", "refblock_alloc_write",
    "refblock_alloc_write_blocks", "refblock_alloc_write_table", "refblock_alloc_switch_table",
    "cluster_alloc", "cluster_alloc_bytes", "cluster_free", "flush_to_os", "flush_to_disk",
    "pwritev_rmw_head", "pwritev_rmw_after_head", "pwritev_rmw_tail", "pwritev_rmw_after_tail",
    "pwritev", "pwritev_zero", "pwritev_done", "empty_image_prepare", "l1_shrink_write_table",
    "l1_shrink_free_l2_clusters", "cor_write", "cluster_alloc_space", "none",
};

static const char *const iotype_names[BLKDBG_IO__MAX] = {
    "read", "write", "write-zeroes", "discard", "flush", "block-status",
};

#define DEFAULT_IOTYPES                                                                        \
    ((1u << BLKDBG_IO_READ) | (1u << BLKDBG_IO_WRITE) | (1u << BLKDBG_IO_WRITE_ZEROES) |       \
     (1u << BLKDBG_IO_DISCARD) | (1u << BLKDBG_IO_FLUSH))

int blkdebug_event_parse(const char *name)
{
    for (int i = 0; name && i < BLKDBG__MAX; i++)
        if (!strcmp(name, event_names[i]))
            return i;
    return -1;
}

int blkdebug_iotype_parse(const char *name)
{
    for (int i = 0; name && i < BLKDBG_IO__MAX; i++)
        if (!strcmp(name, iotype_names[i]))
            return i;
    return -1;
}

const char *blkdebug_event_name(int event)
{
    return event >= 0 && event < BLKDBG__MAX ? event_names[event] : "?";
}

void blkdebug_rule_init(BlkdebugRule *rule, int action)
{
    memset(rule, 0, sizeof(*rule));
    rule->action = action;
    rule->error = EIO;
    rule->iotype = -1;
    rule->sector = -1;
}

/* All blkdebug state is behind one lock: it is a test tool, and events
 * and checks come from whichever threads do I/O on the image.  It is
 * taken under the image lock and takes nothing itself but stdout's (the
 * breakpoint lines).  A request stopped at a breakpoint waits with it
 * released but keeps the locks its caller holds (qcow2's image lock at
 * write_aio): the image's other requests wait behind it, as they would
 * behind slow I/O. */
static pthread_mutex_t blkdebug_mu = PTHREAD_MUTEX_INITIALIZER;

struct BlkDebug {
    int refs;             /* under blkdebug_mu */
    int fd;               /* the host file it watches; -1 until attached */
    int64_t state;
    /* a write was tried since the last flush that went through: QEMU
     * passes a flush down to blkdebug only then (write_gen/flushed_gen) */
    bool unflushed;
    int n;
    BlkdebugRule *rules;
    bool *alive;          /* false once a once=on rule has fired */
    int *active;          /* indices of the active inject-error rules */
    int nactive;
    struct BlkdebugBreak {
        int event;        /* -1: a stopped request, not a breakpoint */
        char *tag;
        bool resumed;
        struct BlkdebugBreak *next;
    } *breaks;            /* breakpoints and stopped requests */
    pthread_cond_t resumed;
    BlkDebug *next;       /* attached ones, by fd */
    BlkdebugLimits limits; /* set before it is attached, read-only after */
    bool has_limits;
    bool top;             /* named as the top node; read-only once attached */
};

static BlkDebug *attached;
int blkdebug_files;

BlkDebug *blkdebug_new(const BlkdebugRule *rules, int n)
{
    BlkDebug *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->refs = 1;
    d->fd = -1;
    d->state = 1;
    d->n = n;
    d->rules = malloc((n ? n : 1) * sizeof(*rules));
    d->alive = malloc(n ? n : 1);
    d->active = malloc((n ? n : 1) * sizeof(int));
    if (!d->rules || !d->alive || !d->active) {
        free(d->rules);
        free(d->alive);
        free(d->active);
        free(d);
        return NULL;
    }
    if (n)
        memcpy(d->rules, rules, n * sizeof(*rules));
    memset(d->alive, 1, n ? n : 1);
    pthread_cond_init(&d->resumed, NULL);
    return d;
}

void blkdebug_unref(BlkDebug *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&blkdebug_mu);
    bool last = --d->refs == 0;
    pthread_mutex_unlock(&blkdebug_mu);
    if (!last)
        return;
    /* no request can be stopped: its image holds a reference */
    while (d->breaks) {
        struct BlkdebugBreak *b = d->breaks;
        d->breaks = b->next;
        free(b->tag);
        free(b);
    }
    pthread_cond_destroy(&d->resumed);
    free(d->rules);
    free(d->alive);
    free(d->active);
    free(d);
}

void blkdebug_attach(BlockDriverState *bs, BlkDebug *d)
{
    pthread_mutex_lock(&blkdebug_mu);
    d->refs++;
    d->fd = bs->fd;
    d->next = attached;
    attached = d;
    __atomic_add_fetch(&blkdebug_files, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&blkdebug_mu);
    bs->debug = d;
}

void blkdebug_detach(BlockDriverState *bs)
{
    BlkDebug *d = bs->debug;
    if (!d)
        return;
    pthread_mutex_lock(&blkdebug_mu);
    for (BlkDebug **p = &attached; *p; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            __atomic_sub_fetch(&blkdebug_files, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    pthread_mutex_unlock(&blkdebug_mu);
    bs->debug = NULL;
    blkdebug_unref(d);
}

void blkdebug_event_slow(BlkDebug *d, int event, bool top)
{
    if (d->top != top)
        return;
    pthread_mutex_lock(&blkdebug_mu);
    int64_t new_state = d->state;
    bool injects = false;
    /* QEMU walks the rules of an event newest first, set-state ones
     * before inject-error ones, and pushes each inject-error rule in front
     * of the active list: the active rules end up in config order, and
     * the oldest set-state rule has the last word. */
    for (int i = d->n - 1; i >= 0; i--) {
        const BlkdebugRule *r = &d->rules[i];
        if (!d->alive[i] || r->event != event || r->action != BLKDBG_SET_STATE)
            continue;
        if (r->state && r->state != d->state)
            continue;
        new_state = r->new_state;
    }
    for (int i = 0; i < d->n; i++) {
        const BlkdebugRule *r = &d->rules[i];
        if (!d->alive[i] || r->event != event || r->action != BLKDBG_INJECT_ERROR)
            continue;
        if (r->state && r->state != d->state)
            continue;
        if (!injects) {
            /* an event that injects replaces what was active */
            d->nactive = 0;
            injects = true;
        }
        d->active[d->nactive++] = i;
    }
    d->state = new_state;
    /* A breakpoint stops the first request that reaches it, and goes:
     * the request waits, tagged, until resume names the tag. */
    for (struct BlkdebugBreak **p = &d->breaks; *p;) {
        struct BlkdebugBreak *b = *p;
        if (b->event != event) {
            p = &b->next;
            continue;
        }
        b->event = -1;
        b->resumed = false;
        printf("blkdebug: Suspended request '%s'\n", b->tag);
        fflush(stdout);
        while (!b->resumed)
            pthread_cond_wait(&d->resumed, &blkdebug_mu);
        /* resume unlinked it; the list may have changed: start over */
        free(b->tag);
        free(b);
        p = &d->breaks;
    }
    pthread_mutex_unlock(&blkdebug_mu);
}

int blkdebug_break(BlockDriverState *bs, const char *event, const char *tag)
{
    BlkDebug *d = bs ? bs->debug : NULL;
    if (!d)
        return -ENOTSUP;
    int ev = blkdebug_event_parse(event);
    if (ev < 0)
        return -ENOENT;
    struct BlkdebugBreak *b = calloc(1, sizeof(*b));
    if (!b || !(b->tag = strdup(tag))) {
        free(b);
        return -ENOMEM;
    }
    b->event = ev;
    pthread_mutex_lock(&blkdebug_mu);
    b->next = d->breaks;
    d->breaks = b;
    pthread_mutex_unlock(&blkdebug_mu);
    return 0;
}

/* Lets the stopped requests tagged tag go on (all of them, or the first);
 * blkdebug_mu held.  Returns how many. */
static int resume_locked(BlkDebug *d, const char *tag, bool all)
{
    int n = 0;
    for (struct BlkdebugBreak **p = &d->breaks; *p;) {
        struct BlkdebugBreak *b = *p;
        if (b->event != -1 || strcmp(b->tag, tag)) {
            p = &b->next;
            continue;
        }
        printf("blkdebug: Resuming request '%s'\n", b->tag);
        fflush(stdout);
        *p = b->next; /* the request frees it */
        b->resumed = true;
        n++;
        if (!all)
            break;
    }
    if (n)
        pthread_cond_broadcast(&d->resumed);
    return n;
}

int blkdebug_resume(BlockDriverState *bs, const char *tag)
{
    BlkDebug *d = bs ? bs->debug : NULL;
    if (!d)
        return -ENOTSUP;
    pthread_mutex_lock(&blkdebug_mu);
    int n = resume_locked(d, tag, false);
    pthread_mutex_unlock(&blkdebug_mu);
    return n ? 0 : -ENOENT;
}

int blkdebug_remove_break(BlockDriverState *bs, const char *tag)
{
    BlkDebug *d = bs ? bs->debug : NULL;
    if (!d)
        return -ENOTSUP;
    int n = 0;
    pthread_mutex_lock(&blkdebug_mu);
    for (struct BlkdebugBreak **p = &d->breaks; *p;) {
        struct BlkdebugBreak *b = *p;
        if (b->event == -1 || strcmp(b->tag, tag)) {
            p = &b->next;
            continue;
        }
        *p = b->next;
        free(b->tag);
        free(b);
        n++;
    }
    n += resume_locked(d, tag, true);
    pthread_mutex_unlock(&blkdebug_mu);
    return n ? 0 : -ENOENT;
}

bool blkdebug_is_suspended(BlockDriverState *bs, const char *tag)
{
    BlkDebug *d = bs ? bs->debug : NULL;
    bool found = false;
    if (!d)
        return false;
    pthread_mutex_lock(&blkdebug_mu);
    for (struct BlkdebugBreak *b = d->breaks; b && !found; b = b->next)
        found = b->event == -1 && !strcmp(b->tag, tag);
    pthread_mutex_unlock(&blkdebug_mu);
    return found;
}

void blkdebug_release(BlockDriverState *bs)
{
    BlkDebug *d = bs ? bs->debug : NULL;
    if (!d)
        return;
    pthread_mutex_lock(&blkdebug_mu);
    for (struct BlkdebugBreak **p = &d->breaks; *p;) {
        struct BlkdebugBreak *b = *p;
        *p = b->next;
        if (b->event == -1) {
            b->resumed = true; /* the request frees it */
        } else {
            free(b->tag);
            free(b);
        }
    }
    pthread_cond_broadcast(&d->resumed);
    pthread_mutex_unlock(&blkdebug_mu);
}

bool blkdebug_has_breaks(BlockDriverState *bs)
{
    BlkDebug *d = bs ? bs->debug : NULL;
    if (!d)
        return false;
    pthread_mutex_lock(&blkdebug_mu);
    bool any = d->breaks != NULL;
    pthread_mutex_unlock(&blkdebug_mu);
    return any;
}

/* Whether a request on d's node fails: under blkdebug_mu. */
static int check_locked(BlkDebug *d, int iotype, uint64_t off, uint64_t len)
{
    int err = 0;
    if (d && iotype == BLKDBG_IO_FLUSH && !d->unflushed)
        d = NULL;
    if (d && iotype != BLKDBG_IO_READ && iotype != BLKDBG_IO_BLOCK_STATUS &&
        iotype != BLKDBG_IO_FLUSH)
        d->unflushed = true;
    for (int k = 0; d && k < d->nactive; k++) {
        int i = d->active[k];
        const BlkdebugRule *r = &d->rules[i];
        unsigned mask = r->iotype < 0 ? DEFAULT_IOTYPES : 1u << r->iotype;
        uint64_t at = (uint64_t)r->sector * BLK_SECTOR_SIZE;
        if (!(mask & (1u << iotype)))
            continue;
        if (r->sector >= 0 && !(len && at >= off && at - off < len))
            continue;
        err = r->error;
        /* errno 0 injects nothing, and a once rule stays (as in QEMU) */
        if (r->once && err) {
            d->alive[i] = false;
            memmove(&d->active[k], &d->active[k + 1], (d->nactive - k - 1) * sizeof(int));
            d->nactive--;
        }
        break;
    }
    if (d && iotype == BLKDBG_IO_FLUSH && !err)
        d->unflushed = false;
    return -err;
}

int blkdebug_file_check_slow(int fd, int iotype, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&blkdebug_mu);
    BlkDebug *d = attached;
    while (d && (d->fd != fd || d->top))
        d = d->next;
    int r = check_locked(d, iotype, off, len);
    pthread_mutex_unlock(&blkdebug_mu);
    return r;
}

int blkdebug_top_check_slow(BlkDebug *d, int iotype, uint64_t off, uint64_t len)
{
    if (!d->top)
        return 0;
    pthread_mutex_lock(&blkdebug_mu);
    int r = check_locked(d, iotype, off, len);
    pthread_mutex_unlock(&blkdebug_mu);
    return r;
}

/* ---- the config file (QEMU's -readconfig syntax) ---- */

static int parse_int(const char *key, const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (errno || end == v || *end) {
        blk_set_error("Parameter '%s' expects a number", key);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

static int parse_bool(const char *key, const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "y")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "n")) {
        *out = false;
        return 0;
    }
    blk_set_error("Parameter '%s' expects 'on' or 'off'", key);
    return -EINVAL;
}

/* key = "value" of the section a rule is being built from */
static int rule_set(BlkdebugRule *r, const char *key, const char *v)
{
    int64_t x;
    int e;
    if (!strcmp(key, "event")) {
        if ((r->event = blkdebug_event_parse(v)) < 0) {
            blk_set_error("invalid parameter value: %s", v);
            return -EINVAL;
        }
        return 0;
    }
    if (!strcmp(key, "state"))
        return parse_int(key, v, &r->state);
    if (r->action == BLKDBG_SET_STATE && !strcmp(key, "new_state"))
        return parse_int(key, v, &r->new_state);
    if (r->action == BLKDBG_INJECT_ERROR) {
        if (!strcmp(key, "errno")) {
            if ((e = parse_int(key, v, &x)) < 0)
                return e;
            if (x < 0 || x > 4095) {
                blk_set_error("errno %s is out of range", v);
                return -EINVAL;
            }
            r->error = (int)x;
            return 0;
        }
        if (!strcmp(key, "sector")) {
            if ((e = parse_int(key, v, &x)) < 0)
                return e;
            if (x < -1 || x > (int64_t)(INT64_MAX / BLK_SECTOR_SIZE)) {
                blk_set_error("sector %s is out of range", v);
                return -EINVAL;
            }
            r->sector = x;
            return 0;
        }
        if (!strcmp(key, "once"))
            return parse_bool(key, v, &r->once);
        if (!strcmp(key, "immediately"))
            return parse_bool(key, v, &r->immediately);
        if (!strcmp(key, "iotype")) {
            if ((r->iotype = blkdebug_iotype_parse(v)) < 0) {
                blk_set_error("invalid parameter value: %s", v);
                return -EINVAL;
            }
            return 0;
        }
    }
    blk_set_error("Invalid parameter '%s'", key);
    return -EINVAL;
}

static int rule_push(BlkdebugRule **rules, int *n, const BlkdebugRule *r, bool has_event)
{
    if (!has_event) {
        blk_set_error("Missing event name for rule");
        return -EINVAL;
    }
    if (*n >= 65536) {
        blk_set_error("too many blkdebug rules");
        return -EINVAL;
    }
    BlkdebugRule *nr = realloc(*rules, (*n + 1) * sizeof(*nr));
    if (!nr)
        return -ENOMEM;
    nr[*n] = *r;
    *rules = nr;
    (*n)++;
    return 0;
}

int blkdebug_read_config(const char *path, BlkdebugRule **rules, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        blk_set_error("Could not read blkdebug config file: %s", strerror(e));
        return -e;
    }
    /* QEMU adds every inject-error rule before every set-state rule */
    BlkdebugRule *sets = NULL;
    int nsets = 0;
    char line[1024], group[64], key[64], value[1024];
    BlkdebugRule cur;
    bool in_rule = false, has_event = false;
    int r = 0;
    while (r == 0 && fgets(line, sizeof(line), f)) {
        if (line[0] == '\n' || line[0] == '#')
            continue;
        if (line[0] == '[' && sscanf(line, "[%63[^]]]", group) == 1) {
            if (in_rule &&
                (r = rule_push(cur.action == BLKDBG_SET_STATE ? &sets : rules,
                               cur.action == BLKDBG_SET_STATE ? &nsets : n, &cur, has_event)) < 0)
                break;
            /* [group "id"]: the id names the section, nothing more */
            char *sp = strchr(group, ' ');
            if (sp)
                *sp = 0;
            if (strcmp(group, "inject-error") && strcmp(group, "set-state")) {
                blk_set_error("There is no option group '%s'", group);
                r = -EINVAL;
                break;
            }
            in_rule = true;
            blkdebug_rule_init(&cur, !strcmp(group, "set-state") ? BLKDBG_SET_STATE
                                                                  : BLKDBG_INJECT_ERROR);
            has_event = false;
            continue;
        }
        value[0] = 0;
        if (sscanf(line, " %63s = \"%1023[^\"]\"", key, value) == 2 ||
            sscanf(line, " %63s = \"\"", key) == 1) {
            if (!in_rule) {
                blk_set_error("no group defined");
                r = -EINVAL;
            } else {
                r = rule_set(&cur, key, value);
                has_event |= !strcmp(key, "event");
            }
            continue;
        }
        blk_set_error("parse error");
        r = -EINVAL;
    }
    if (r == 0 && ferror(f)) {
        blk_set_error("Cannot read config file %s", path);
        r = -EIO;
    }
    if (r == 0 && in_rule)
        r = rule_push(cur.action == BLKDBG_SET_STATE ? &sets : rules,
                      cur.action == BLKDBG_SET_STATE ? &nsets : n, &cur, has_event);
    for (int i = 0; r == 0 && i < nsets; i++)
        r = rule_push(rules, n, &sets[i], true);
    free(sets);
    fclose(f);
    return r;
}

/* ---- blkdebug as a filter of the open path (block.c's option trees) ---- */

/* "blkdebug:CONFIG:IMAGE" ("blkdebug::IMAGE": no config) as options */
static int filter_parse_filename(const char *filename, BlockOptions *opts)
{
    const char *p = filename + strlen("blkdebug:");
    const char *c = strchr(p, ':');
    if (strncmp(filename, "blkdebug:", 9) || !c) {
        blk_set_error("blkdebug requires both config file and image path");
        return -EINVAL;
    }
    int r = 0;
    if (c != p) {
        char *config = strndup(p, c - p);
        r = config ? blkopts_set(opts, "config", config) : -ENOMEM;
        free(config);
    }
    if (r == 0)
        r = blkopts_set(opts, "image.filename", c + 1);
    return r;
}

/* The rules of a list option ("inject-error.0.event=..."): each index's
 * keys make one rule of action, appended to *rules in index order. */
static int list_rules(BlockOptions *o, const char *list, int action, BlkdebugRule **rules,
                      int *n)
{
    size_t ll = strlen(list);
    for (long idx = 0;; idx++) {
        char pre[64];
        int pl = snprintf(pre, sizeof(pre), "%s.%ld.", list, idx);
        BlkdebugRule rule;
        blkdebug_rule_init(&rule, action);
        bool any = false, has_event = false;
        for (int i = 0; i < o->n; i++) {
            BlockOpt *op = &o->opt[i];
            if (strncmp(op->key, pre, pl))
                continue;
            any = op->used = true;
            has_event |= !strcmp(op->key + pl, "event");
            int r = rule_set(&rule, op->key + pl, op->value ? op->value : "");
            if (r < 0)
                return r;
        }
        if (!any)
            break;
        int r = rule_push(rules, n, &rule, has_event);
        if (r < 0)
            return r;
    }
    /* an index out of order or a key outside the list's entries */
    for (int i = 0; i < o->n; i++)
        if (!o->opt[i].used && !strncmp(o->opt[i].key, list, ll) &&
            (o->opt[i].key[ll] == '.' || !o->opt[i].key[ll])) {
            blk_set_error("Invalid parameter '%s'", o->opt[i].key);
            return -EINVAL;
        }
    return 0;
}

const BlkdebugLimits *blkdebug_limits(const BlockDriverState *bs)
{
    return bs && bs->debug && bs->debug->has_limits ? &bs->debug->limits : NULL;
}

/* The request limits, checked as QEMU checks them: each one a multiple
 * of the alignment it is used with, and below INT_MAX. */
static int parse_limits(BlockOptions *o, BlkdebugLimits *l)
{
    static const struct {
        const char *key;
        size_t at;     /* the field */
        size_t unit;   /* the larger of align and this field is its unit; == at: align */
    } keys[] = {
        {"align", offsetof(BlkdebugLimits, align), offsetof(BlkdebugLimits, align)},
        {"max-transfer", offsetof(BlkdebugLimits, max_transfer),
         offsetof(BlkdebugLimits, max_transfer)},
        {"opt-write-zero", offsetof(BlkdebugLimits, opt_write_zero),
         offsetof(BlkdebugLimits, opt_write_zero)},
        {"max-write-zero", offsetof(BlkdebugLimits, max_write_zero),
         offsetof(BlkdebugLimits, opt_write_zero)},
        {"opt-discard", offsetof(BlkdebugLimits, opt_discard),
         offsetof(BlkdebugLimits, opt_discard)},
        {"max-discard", offsetof(BlkdebugLimits, max_discard),
         offsetof(BlkdebugLimits, opt_discard)},
    };
    memset(l, 0, sizeof(*l));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        uint64_t *v = (uint64_t *)((char *)l + keys[i].at);
        const char *s = blkopts_get(o, keys[i].key);
        *v = 0;
        if (s && blk_parse_size(s, v) < 0) {
            blk_set_error("Parameter '%s' expects a non-negative number below 2^64\n"
                          "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                          "tera-, peta-\nand exabytes, respectively.", keys[i].key);
            return -EINVAL;
        }
        uint64_t unit = l->align ? l->align : 1;
        if (keys[i].unit != keys[i].at) {
            uint64_t u = *(uint64_t *)((char *)l + keys[i].unit);
            unit = u > unit ? u : unit;
        }
        bool bad = *v >= INT_MAX || (i == 0 ? (*v & (*v - 1)) != 0 : *v % unit != 0);
        if (*v && bad) {
            blk_set_error("Cannot meet constraints with %s %" PRIu64, keys[i].key, *v);
            return -EINVAL;
        }
    }
    return 0;
}

static int filter_open(BlockDriverState *bs, BlockOptions *o)
{
    BlkdebugRule *rules = NULL;
    int n = 0, r = 0;
    const char *config = blkopts_get(o, "config");
    if (config && *config)
        r = blkdebug_read_config(config, &rules, &n);
    /* QEMU adds every inject-error rule before every set-state rule */
    if (r == 0)
        r = list_rules(o, "inject-error", BLKDBG_INJECT_ERROR, &rules, &n);
    if (r == 0)
        r = list_rules(o, "set-state", BLKDBG_SET_STATE, &rules, &n);
    BlkdebugLimits limits;
    if (r == 0)
        r = parse_limits(o, &limits);
    BlkDebug *d = r == 0 ? blkdebug_new(rules, n) : NULL;
    free(rules);
    if (d) {
        d->top = bs->filter_top;
        d->limits = limits;
        d->has_limits = limits.align > 1 || limits.max_transfer || limits.opt_write_zero ||
                        limits.max_write_zero || limits.opt_discard || limits.max_discard;
    }
    if (r == 0 && !d) {
        blk_set_error("out of memory");
        r = -ENOMEM;
    }
    if (d) {
        blkdebug_attach(bs, d); /* bs holds its own reference */
        blkdebug_unref(d);
        /* QEMU's blkdebug raises "none" once opened: its rules are
         * active from the start.  Under the format, calf's host reads are
         * not QEMU's (its header read is larger): not there yet. */
        if (d->top)
            blkdebug_event_slow(d, BLKDBG_NONE, true);
    }
    return r;
}

static void filter_close(BlockDriverState *bs)
{
    blkdebug_detach(bs);
}

static const BlockFilter blkdebug_filter = {
    .name = "blkdebug",
    .child = "image",
    .open = filter_open,
    .close = filter_close,
    .parse_filename = filter_parse_filename,
};

/* Registered before main() runs, as block.c asks of filters: qcow2's
 * event points pull this file into every program that opens images. */
__attribute__((constructor)) static void blkdebug_register(void)
{
    blk_register_filter(&blkdebug_filter);
}
