/* calf-nbd -L: the exports a server offers, printed as qemu-nbd -L prints
 * them.  The dialogue is QEMU's: the fixed newstyle handshake with
 * structured replies asked for, NBD_OPT_LIST, then NBD_OPT_INFO (with the
 * block sizes asked for) and NBD_OPT_LIST_META_CONTEXT on each export,
 * and NBD_OPT_ABORT; an oldstyle server's one export as it comes.
 *
 * The server's bytes are untrusted (tests/fuzz/fuzz-nbd-list.c): every
 * length is checked before it is read, strings are at most
 * NBD_MAX_STRING, an option's reply at most NBD_MAX_OPTION, the exports
 * and contexts kept are bounded, and every read has a deadline. */
#include "block/nbd-proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBD_OLDSTYLE_MAGIC 0x00420281861253ull
#define LIST_MAX_EXPORTS 4096
#define LIST_MAX_CONTEXTS 256
#define LIST_DEADLINE_MS 30000

typedef struct ListExport {
    char *name, *desc;
    uint64_t size;
    uint16_t flags;
    uint32_t min_block, opt_block, max_block;
    int ncontexts;
    char *contexts[LIST_MAX_CONTEXTS];
} ListExport;

typedef struct Lister {
    int fd;
    int64_t deadline;
    char *err;
    size_t errlen;
} Lister;

static int fail(Lister *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, l->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int rd(Lister *l, void *buf, size_t len)
{
    int r = nbd_read_full(l->fd, buf, len, l->deadline);
    if (r < 0)
        return fail(l, "Failed to read from the server: %s",
                    r == -ECONNRESET ? "Unexpected end-of-file before all data were read"
                                     : strerror(-r));
    return 0;
}

static int send_opt(Lister *l, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[16];
    nbd_put64(h, NBD_OPTS_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, len);
    if (nbd_write_full(l->fd, h, 16) < 0 || (len && nbd_write_full(l->fd, data, len) < 0))
        return fail(l, "Failed to send an option to the server: %s", strerror(errno));
    return 0;
}

/* One option reply to opt: its type in *type and its payload (malloc'd,
 * NUL-terminated, at most NBD_MAX_OPTION) in *data, *len. */
static int reply(Lister *l, uint32_t opt, uint32_t *type, uint8_t **data, uint32_t *len)
{
    uint8_t h[20];
    if (rd(l, h, 20) < 0)
        return -1;
    if (nbd_get64(h) != NBD_REP_MAGIC)
        return fail(l, "Unexpected option reply magic from the server");
    if (nbd_get32(h + 8) != opt)
        return fail(l, "Unexpected option type %" PRIu32 " in the reply, expected %" PRIu32,
                    nbd_get32(h + 8), opt);
    *type = nbd_get32(h + 12);
    *len = nbd_get32(h + 16);
    if (*len > NBD_MAX_OPTION)
        return fail(l, "The server's option reply is too long (%" PRIu32 " bytes)", *len);
    *data = malloc(*len + 1);
    if (!*data)
        return fail(l, "out of memory");
    if (rd(l, *data, *len) < 0) {
        free(*data);
        *data = NULL;
        return -1;
    }
    (*data)[*len] = 0;
    return 0;
}

static char *strndup_bounded(const uint8_t *p, uint32_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static int opt_list(Lister *l, ListExport *ex, int *count)
{
    if (send_opt(l, NBD_OPT_LIST, NULL, 0) < 0)
        return -1;
    for (;;) {
        uint32_t type, len;
        uint8_t *d;
        if (reply(l, NBD_OPT_LIST, &type, &d, &len) < 0)
            return -1;
        if (type == NBD_REP_ACK) {
            free(d);
            return 0;
        }
        if (type != NBD_REP_SERVER) {
            free(d);
            if (type == NBD_REP_ERR_UNSUP)
                return fail(l, "Server does not support export lists");
            if (type & (1u << 31))
                return fail(l, "Server refused the export list (error %#" PRIx32 ")", type);
            return fail(l, "Unexpected reply type %" PRIu32 " to the export list", type);
        }
        uint32_t nl = len >= 4 ? nbd_get32(d) : UINT32_MAX;
        if (nl > len - 4 || nl > NBD_MAX_STRING || len - 4 - nl > NBD_MAX_STRING) {
            free(d);
            return fail(l, "The server's export list entry is malformed");
        }
        if (*count == LIST_MAX_EXPORTS) {
            free(d);
            return fail(l, "The server lists more than %d exports", LIST_MAX_EXPORTS);
        }
        ListExport *e = &ex[(*count)++];
        e->name = strndup_bounded(d + 4, nl);
        e->desc = strndup_bounded(d + 4 + nl, len - 4 - nl);
        free(d);
        if (!e->name || !e->desc)
            return fail(l, "out of memory");
    }
}

/* 1: answered; 0: the server refused (no use asking about the rest) */
static int opt_info(Lister *l, ListExport *e)
{
    size_t nl = strlen(e->name);
    uint8_t *q = malloc(nl + 8);
    if (!q)
        return fail(l, "out of memory");
    nbd_put32(q, (uint32_t)nl);
    memcpy(q + 4, e->name, nl);
    nbd_put16(q + 4 + nl, 1);
    nbd_put16(q + 6 + nl, NBD_INFO_BLOCK_SIZE);
    int r = send_opt(l, NBD_OPT_INFO, q, (uint32_t)nl + 8);
    free(q);
    if (r < 0)
        return -1;
    bool have_export = false;
    for (;;) {
        uint32_t type, len;
        uint8_t *d;
        if (reply(l, NBD_OPT_INFO, &type, &d, &len) < 0)
            return -1;
        if (type == NBD_REP_ACK) {
            free(d);
            if (!have_export)
                return fail(l, "The server's reply to NBD_OPT_INFO lacks the export's size");
            return 1;
        }
        if (type & (1u << 31)) {
            free(d);
            return 0;
        }
        if (type != NBD_REP_INFO || len < 2) {
            free(d);
            return fail(l, "Unexpected reply type %" PRIu32 " to NBD_OPT_INFO", type);
        }
        uint16_t it = nbd_get16(d);
        if (it == NBD_INFO_EXPORT) {
            if (len != 12) {
                free(d);
                return fail(l, "The server's export information is malformed");
            }
            e->size = nbd_get64(d + 2);
            e->flags = nbd_get16(d + 10);
            have_export = true;
        } else if (it == NBD_INFO_BLOCK_SIZE) {
            if (len != 14) {
                free(d);
                return fail(l, "The server's block size information is malformed");
            }
            e->min_block = nbd_get32(d + 2);
            e->opt_block = nbd_get32(d + 6);
            e->max_block = nbd_get32(d + 10);
        }
        free(d);
    }
}

static int meta_query(Lister *l, const char *name, const char *query)
{
    size_t nl = strlen(name), ql = query ? strlen(query) : 0;
    uint8_t *q = malloc(nl + ql + 12);
    if (!q)
        return fail(l, "out of memory");
    nbd_put32(q, (uint32_t)nl);
    memcpy(q + 4, name, nl);
    nbd_put32(q + 4 + nl, query ? 1 : 0);
    size_t n = nl + 8;
    if (query) {
        nbd_put32(q + n, (uint32_t)ql);
        memcpy(q + n + 4, query, ql);
        n += 4 + ql;
    }
    int r = send_opt(l, NBD_OPT_LIST_META_CONTEXT, q, (uint32_t)n);
    free(q);
    return r;
}

static int list_contexts(Lister *l, ListExport *e)
{
    bool seen_any = false, seen_qemu = false;
    if (meta_query(l, e->name, NULL) < 0)
        return -1;
    for (;;) {
        uint32_t type, len;
        uint8_t *d;
        if (reply(l, NBD_OPT_LIST_META_CONTEXT, &type, &d, &len) < 0)
            return -1;
        if (type == NBD_REP_META_CONTEXT) {
            if (len < 4 || len - 4 > NBD_MAX_STRING) {
                free(d);
                return fail(l, "The server's meta context reply is malformed");
            }
            if (e->ncontexts == LIST_MAX_CONTEXTS) {
                free(d);
                return fail(l, "The server lists more than %d meta contexts",
                            LIST_MAX_CONTEXTS);
            }
            char *c = strndup_bounded(d + 4, len - 4);
            free(d);
            if (!c)
                return fail(l, "out of memory");
            e->contexts[e->ncontexts++] = c;
            seen_any = true;
            seen_qemu |= !strncmp(c, "qemu:", 5);
            continue;
        }
        free(d);
        if (type == NBD_REP_ACK && seen_any && !seen_qemu) {
            /* as QEMU: an old server forgot "qemu:" contexts for no query */
            seen_qemu = true;
            if (meta_query(l, e->name, "qemu:") < 0)
                return -1;
            continue;
        }
        if (type == NBD_REP_ACK || (type & (1u << 31)))
            return 0;
        return fail(l, "Unexpected reply type %" PRIu32 " to NBD_OPT_LIST_META_CONTEXT", type);
    }
}

static void print_list(FILE *out, const ListExport *ex, int count)
{
    static const char *const names[] = {
        [1] = "readonly", [2] = "flush", [3] = "fua", [4] = "rotational", [5] = "trim",
        [6] = "zeroes", [7] = "df", [8] = "multi", [9] = "resize", [10] = "cache",
        [11] = "fast-zero",
    };
    fprintf(out, "exports available: %d\n", count);
    for (int i = 0; i < count; i++) {
        const ListExport *e = &ex[i];
        fprintf(out, " export: '%s'\n", e->name);
        if (e->desc && *e->desc)
            fprintf(out, "  description: %s\n", e->desc);
        if (e->flags & NBD_FLAG_HAS_FLAGS) {
            fprintf(out, "  size:  %" PRIu64 "\n", e->size);
            fprintf(out, "  flags: 0x%x (", e->flags);
            for (unsigned b = 0; b < sizeof(names) / sizeof(names[0]); b++)
                if (names[b] && (e->flags & (1u << b)))
                    fprintf(out, " %s", names[b]);
            fprintf(out, " )\n");
        }
        if (e->min_block) {
            fprintf(out, "  min block: %" PRIu32 "\n", e->min_block);
            fprintf(out, "  opt block: %" PRIu32 "\n", e->opt_block);
            fprintf(out, "  max block: %" PRIu32 "\n", e->max_block);
        }
        if (e->ncontexts) {
            fprintf(out, "  available meta contexts: %d\n", e->ncontexts);
            for (int j = 0; j < e->ncontexts; j++)
                fprintf(out, "   %s\n", e->contexts[j]);
        }
    }
}

static int dialogue(Lister *l, ListExport *ex, int *count)
{
    uint8_t h[18];
    if (rd(l, h, 16) < 0)
        return -1;
    if (nbd_get64(h) != NBD_MAGIC)
        return fail(l, "Server is not an NBD server (no NBDMAGIC)");
    if (nbd_get64(h + 8) == NBD_OLDSTYLE_MAGIC) {
        /* the one export: size, flags (32 bits), 124 zeros */
        uint8_t o[12];
        if (rd(l, o, 12) < 0)
            return -1;
        uint32_t fl = nbd_get32(o + 8);
        if (fl >> 16)
            return fail(l, "Unexpected export flags %#" PRIx32, fl);
        ex[0].name = strndup_bounded((const uint8_t *)"", 0);
        ex[0].desc = NULL;
        ex[0].size = nbd_get64(o);
        ex[0].flags = (uint16_t)fl;
        *count = 1;
        return ex[0].name ? 0 : fail(l, "out of memory");
    }
    if (nbd_get64(h + 8) != NBD_OPTS_MAGIC)
        return fail(l, "Unexpected magic from the server");
    if (rd(l, h + 16, 2) < 0)
        return -1;
    uint16_t sflags = nbd_get16(h + 16);
    if (!(sflags & NBD_FLAG_FIXED_NEWSTYLE))
        return fail(l, "Server does not support export lists");
    uint8_t cf[4];
    nbd_put32(cf, NBD_FLAG_C_FIXED_NEWSTYLE |
                      (sflags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
    if (nbd_write_full(l->fd, cf, 4) < 0)
        return fail(l, "Failed to send the client flags: %s", strerror(errno));
    /* structured replies: the meta contexts are listed only with them */
    if (send_opt(l, NBD_OPT_STRUCTURED_REPLY, NULL, 0) < 0)
        return -1;
    uint32_t type, len;
    uint8_t *d;
    if (reply(l, NBD_OPT_STRUCTURED_REPLY, &type, &d, &len) < 0)
        return -1;
    free(d);
    bool structured = type == NBD_REP_ACK;
    if (!structured && !(type & (1u << 31)))
        return fail(l, "Unexpected reply type %" PRIu32 " to NBD_OPT_STRUCTURED_REPLY", type);
    if (opt_list(l, ex, count) < 0)
        return -1;
    for (int i = 0; i < *count; i++) {
        int r = opt_info(l, &ex[i]);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        if (structured && list_contexts(l, &ex[i]) < 0)
            return -1;
    }
    (void)send_opt(l, NBD_OPT_ABORT, NULL, 0); /* a courtesy */
    return 0;
}

int nbd_list_exports(int fd, FILE *out, char *err, size_t errlen)
{
    Lister l = {.fd = fd, .deadline = nbd_now_ms() + LIST_DEADLINE_MS, .err = err,
                .errlen = errlen};
    ListExport *ex = calloc(LIST_MAX_EXPORTS, sizeof(*ex));
    if (!ex) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int count = 0;
    int r = dialogue(&l, ex, &count);
    if (r == 0)
        print_list(out, ex, count);
    for (int i = 0; i < count; i++) {
        free(ex[i].name);
        free(ex[i].desc);
        for (int j = 0; j < ex[i].ncontexts; j++)
            free(ex[i].contexts[j]);
    }
    free(ex);
    return r;
}
