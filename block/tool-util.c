/* Helpers shared by calf-img and calf-io; see tool-util.h. */
#include "block/tool-util.h"
#include "block/block.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- numbers ---- */

static int64_t suffix_mul(char c)
{
    switch (toupper((unsigned char)c)) {
    case 'B': return 1;
    case 'K': return 1LL << 10;
    case 'M': return 1LL << 20;
    case 'G': return 1LL << 30;
    case 'T': return 1LL << 40;
    case 'P': return 1LL << 50;
    case 'E': return 1LL << 60;
    }
    return -1;
}

const char *tool_progname = "calf";

void tool_set_progname(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    tool_progname = slash ? slash + 1 : argv0 && *argv0 ? argv0 : tool_progname;
    blk_img_tool = strncmp(tool_progname, "qemu", 4) ? "calf-img" : "qemu-img";
}

/* Hex input ("0x10") takes no fraction; a suffix still works in QEMU 7.2
 * but is deprecated, with a warning. */
static int strtosz_hex(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    if (errno == ERANGE)
        return -ERANGE;
    int64_t mul = 1;
    if (*end) {
        mul = suffix_mul(*end);
        if (mul < 0 || end[1] || *end == 'b' || *end == 'B')
            return -EINVAL;
        fprintf(stderr, "%s: warning: Using a multiplier suffix on hex numbers is "
                "deprecated: %s\n", tool_progname, s);
    }
    if (v > UINT64_MAX / (uint64_t)mul)
        return -ERANGE;
    *out = v * mul;
    return 0;
}

int tool_strtosz(const char *s, uint64_t *out)
{
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        return -EINVAL; /* QEMU refuses signs and empty strings */
    char *end;
    errno = 0;
    unsigned long long val = strtoull(p, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (val == 0 && (*end == 'x' || *end == 'X'))
        return strtosz_hex(p, out);
    double frac = 0;
    if (*end == '.') {
        /* "1.k" is fine (no digits after the dot); an exponent is not */
        char *fend;
        frac = strtod(end, &fend);
        if (fend == end)
            fend = end + 1;
        if (memchr(end, 'e', fend - end) || memchr(end, 'E', fend - end))
            return -EINVAL;
        end = fend;
    }
    int64_t mul = 1;
    if (*end) {
        mul = suffix_mul(*end);
        if (mul < 0 || end[1])
            return -EINVAL;
    }
    if (mul == 1 && frac != 0)
        return -EINVAL; /* a fraction needs a unit bigger than a byte */
    if (val > UINT64_MAX / (uint64_t)mul)
        return -ERANGE;
    double fbytes = frac * (double)mul;
    uint64_t res = val * (uint64_t)mul;
    if (fbytes >= (double)(UINT64_MAX - res))
        return -ERANGE;
    *out = res + (uint64_t)fbytes;
    return 0;
}

int tool_cvtnum_full(const char *name, const char *s, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *prog = tool_progname;
    uint64_t v;
    int r = tool_strtosz(s, &v);
    if (r == -EINVAL) {
        fprintf(stderr, "%s: Invalid %s specified. You may use k, M, G, T, P or E "
                "suffixes for\n", prog, name);
        fprintf(stderr, "%s: kilobytes, megabytes, gigabytes, terabytes, petabytes "
                "and exabytes.\n", prog);
        return r;
    }
    if (r < 0 || v > (uint64_t)max || (int64_t)v < min) {
        fprintf(stderr, "%s: Invalid %s specified. Must be between %" PRId64
                " and %" PRId64 ".\n", prog, name, min, max);
        return -ERANGE;
    }
    *out = (int64_t)v;
    return 0;
}

void tool_cvtstr(double value, char *buf, size_t len)
{
    static const char *suffix[] = {" KiB", " MiB", " GiB", " TiB", " PiB", " EiB"};
    char num[64];
    const char *sfx = " bytes";
    int i;
    for (i = 5; i >= 0; i--) {
        double unit = ldexp(1.0, 10 * (i + 1));
        if (value >= unit) {
            snprintf(num, sizeof(num), "%.3f", value / unit);
            sfx = suffix[i];
            break;
        }
    }
    if (i < 0)
        snprintf(num, sizeof(num), "%f", value);
    /* like qemu-io: a ".000" fraction is dropped, any other is kept */
    char *trim = strstr(num, ".000");
    if (trim)
        *trim = 0;
    snprintf(buf, len, "%s%s", num, sfx);
}

void tool_print_cvtnum_err(int err, const char *arg)
{
    if (err == -EINVAL)
        printf("Parsing error: non-numeric argument, or extraneous/unrecognized "
               "suffix -- %s\n", arg);
    else if (err == -ERANGE)
        printf("Parsing error: argument too large -- %s\n", arg);
    else
        printf("Parsing error: %s\n", arg);
}

double tool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- JSON ---- */

enum json_type { JSON_OBJECT, JSON_ARRAY, JSON_INT, JSON_BOOL, JSON_STR };

struct JsonNode {
    enum json_type type;
    char *key;            /* when inside an object */
    int64_t num;
    char *str;
    JsonNode **child;
    int n;
};

static JsonNode *json_node(enum json_type t)
{
    JsonNode *n = calloc(1, sizeof(*n));
    if (!n) {
        perror("calloc");
        exit(1);
    }
    n->type = t;
    return n;
}

JsonNode *json_new_object(void) { return json_node(JSON_OBJECT); }
JsonNode *json_new_array(void) { return json_node(JSON_ARRAY); }

JsonNode *json_int(int64_t v)
{
    JsonNode *n = json_node(JSON_INT);
    n->num = v;
    return n;
}

JsonNode *json_bool(bool v)
{
    JsonNode *n = json_node(JSON_BOOL);
    n->num = v;
    return n;
}

JsonNode *json_str(const char *s)
{
    JsonNode *n = json_node(JSON_STR);
    n->str = strdup(s);
    if (!n->str) {
        perror("strdup");
        exit(1);
    }
    return n;
}

void json_add(JsonNode *c, const char *key, JsonNode *child)
{
    JsonNode **a = realloc(c->child, (c->n + 1) * sizeof(*a));
    if (!a || (key && !(child->key = strdup(key)))) {
        perror("realloc");
        exit(1);
    }
    c->child = a;
    a[c->n++] = child;
}

void json_free(JsonNode *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n; i++)
        json_free(n->child[i]);
    free(n->child);
    free(n->key);
    free(n->str);
    free(n);
}

/* QEMU's QDict bucket for a key (tdb_hash modulo 512).  QEMU walks the
 * buckets in order and, inside a bucket, the newest key first. */
static unsigned qdict_bucket(const char *name)
{
    unsigned v = 0x238F13AF * (unsigned)strlen(name);
    for (unsigned i = 0; name[i]; i++)
        v += (unsigned)(unsigned char)name[i] << (i * 5 % 24);
    return (1103515243 * v + 12345) % 512;
}

/* Decodes one UTF-8 sequence; returns the code point or -1 if invalid. */
static int utf8_next(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    int len = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
            : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!len) {
        *pp = p + 1;
        return -1;
    }
    int cp = len == 1 ? p[0] : p[0] & (0x7f >> len);
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            *pp = p + i;
            return -1;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    *pp = p + len;
    return cp;
}

static void json_print_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        int cp = utf8_next(&p);
        switch (cp) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (cp < 0)
                fputs("\\uFFFD", f);
            else if (cp >= 0x20 && cp < 0x7f)
                fputc(cp, f);
            else if (cp < 0x10000)
                fprintf(f, "\\u%04X", cp);
            else {
                cp -= 0x10000;
                fprintf(f, "\\u%04X\\u%04X", 0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
            }
        }
    }
    fputc('"', f);
}

static int cmp_qdict_order(const void *a, const void *b)
{
    const JsonNode *x = *(JsonNode *const *)a, *y = *(JsonNode *const *)b;
    unsigned hx = qdict_bucket(x->key), hy = qdict_bucket(y->key);
    if (hx != hy)
        return hx < hy ? -1 : 1;
    return 0;
}

static void json_indent(FILE *f, int level)
{
    for (int i = 0; i < level; i++)
        fputs("    ", f);
}

static void json_print_level(FILE *f, const JsonNode *n, int level);

/* The children in the order QEMU prints them (malloc'd). */
static JsonNode **json_order(const JsonNode *n)
{
    bool obj = n->type == JSON_OBJECT;
    JsonNode **order = malloc((n->n ? n->n : 1) * sizeof(*order));
    if (!order) {
        perror("malloc");
        exit(1);
    }
    /* newest first inside a bucket: reverse, then a stable sort */
    for (int i = 0; i < n->n; i++)
        order[i] = n->child[obj ? n->n - 1 - i : i];
    if (obj) {
        for (int i = 1; i < n->n; i++) /* insertion sort keeps ties stable */
            for (int j = i; j > 0 && cmp_qdict_order(&order[j - 1], &order[j]) > 0; j--) {
                JsonNode *t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
    }
    return order;
}

/* level < 0: on one line, as QEMU's json: file names are */
static void json_print_children(FILE *f, const JsonNode *n, int level)
{
    bool obj = n->type == JSON_OBJECT, one_line = level < 0;
    JsonNode **order = json_order(n);
    fputs(obj ? "{" : "[", f);
    if (!one_line)
        fputc('\n', f);
    for (int i = 0; i < n->n; i++) {
        json_indent(f, level + 1);
        if (obj) {
            json_print_string(f, order[i]->key);
            fputs(": ", f);
        }
        json_print_level(f, order[i], one_line ? level : level + 1);
        if (one_line)
            fputs(i + 1 < n->n ? ", " : "", f);
        else
            fputs(i + 1 < n->n ? ",\n" : "\n", f);
    }
    json_indent(f, level);
    fputc(obj ? '}' : ']', f);
    free(order);
}

static void json_print_level(FILE *f, const JsonNode *n, int level)
{
    switch (n->type) {
    case JSON_INT: fprintf(f, "%" PRId64, n->num); break;
    case JSON_BOOL: fputs(n->num ? "true" : "false", f); break;
    case JSON_STR: json_print_string(f, n->str); break;
    case JSON_OBJECT:
    case JSON_ARRAY:
        /* an empty one too opens, breaks the line and closes, as QEMU's
         * "flags": [ ] of a bitmap without flags */
        json_print_children(f, n, level);
        break;
    }
}

void json_print_pretty(FILE *f, const JsonNode *n)
{
    json_print_level(f, n, 0);
}

void json_print_compact(FILE *f, const JsonNode *n)
{
    json_print_level(f, n, -1);
}

JsonNode *json_get(const JsonNode *obj, const char *key)
{
    for (int i = 0; obj && i < obj->n; i++)
        if (obj->child[i]->key && !strcmp(obj->child[i]->key, key))
            return obj->child[i];
    return NULL;
}

static void json_dump_scalar(FILE *f, const JsonNode *n)
{
    if (n->type == JSON_INT)
        fprintf(f, "%" PRId64 "\n", n->num);
    else if (n->type == JSON_BOOL)
        fprintf(f, "%s\n", n->num ? "true" : "false");
    else
        fprintf(f, "%s\n", n->str);
}

void json_dump_human(FILE *f, const JsonNode *n, int indentation)
{
    if (n->type != JSON_OBJECT && n->type != JSON_ARRAY) {
        json_dump_scalar(f, n);
        return;
    }
    JsonNode **order = json_order(n);
    for (int i = 0; i < n->n; i++) {
        const JsonNode *c = order[i];
        bool composite = c->type == JSON_OBJECT || c->type == JSON_ARRAY;
        fprintf(f, "%*s", indentation * 4, "");
        if (n->type == JSON_OBJECT) {
            for (const char *k = c->key; *k; k++)
                fputc(*k == '-' ? ' ' : *k, f);
            fputc(':', f);
            fputc(composite ? '\n' : ' ', f);
        } else {
            fprintf(f, "[%d]:%c", i, composite ? '\n' : ' ');
        }
        json_dump_human(f, c, indentation + 1);
    }
    free(order);
}

JsonNode *json_get_child(const JsonNode *n, int i)
{
    return n && i >= 0 && i < n->n ? n->child[i] : NULL;
}

/* QAPI QCryptoBlockInfo: {"format": "aes"} or the LUKS header; the luks
 * format's own info (QCryptoBlockInfoLUKS) is the header without the
 * "format" member. */
static JsonNode *encrypt_info(const BlockInfo *bi, bool with_format)
{
    JsonNode *enc = json_new_object();
    if (with_format)
        json_add(enc, "format", json_str(bi->encrypt_format));
    if (with_format && strcmp(bi->encrypt_format, "luks"))
        return enc;
    const BlockLuksInfo *l = &bi->luks;
    json_add(enc, "cipher-alg", json_str(l->cipher_alg));
    json_add(enc, "cipher-mode", json_str(l->cipher_mode));
    json_add(enc, "ivgen-alg", json_str(l->ivgen_alg));
    if (l->ivgen_hash_alg[0])
        json_add(enc, "ivgen-hash-alg", json_str(l->ivgen_hash_alg));
    json_add(enc, "hash-alg", json_str(l->hash_alg));
    json_add(enc, "payload-offset", json_int((int64_t)l->payload_offset));
    json_add(enc, "master-key-iters", json_int((int64_t)l->master_key_iters));
    json_add(enc, "uuid", json_str(l->uuid));
    JsonNode *slots = json_new_array();
    for (int i = 0; i < 8; i++) {
        JsonNode *sl = json_new_object();
        json_add(sl, "active", json_bool(l->slots[i].active));
        if (l->slots[i].active) {
            json_add(sl, "iters", json_int(l->slots[i].iters));
            json_add(sl, "stripes", json_int(l->slots[i].stripes));
        }
        json_add(sl, "key-offset", json_int((int64_t)l->slots[i].key_offset));
        json_add(slots, NULL, sl);
    }
    json_add(enc, "slots", slots);
    return enc;
}

/* The QAPI ImageInfoSpecificQCow2 members, in QAPI order. */
JsonNode *tool_format_specific(const BlockInfo *bi)
{
    if (bi->is_luks) {
        JsonNode *spec = json_new_object();
        json_add(spec, "type", json_str("luks"));
        json_add(spec, "data", encrypt_info(bi, false));
        return spec;
    }
    if (!bi->is_qcow2)
        return NULL;
    JsonNode *data = json_new_object();
    bool v3 = bi->qcow2_version >= 3;
    json_add(data, "compat", json_str(v3 ? "1.1" : "0.10"));
    /* the name only where the header has one, as QEMU */
    if (v3 && bi->data_file[0])
        json_add(data, "data-file", json_str(bi->data_file));
    if (v3 && bi->has_data_file)
        json_add(data, "data-file-raw", json_bool(bi->data_file_raw));
    if (v3) {
        json_add(data, "extended-l2", json_bool(bi->extended_l2));
        json_add(data, "lazy-refcounts", json_bool(bi->lazy_refcounts));
        json_add(data, "corrupt", json_bool(bi->corrupt));
    }
    json_add(data, "refcount-bits", json_int(bi->refcount_bits));
    if (bi->nb_bitmaps > 0) {
        JsonNode *bms = json_new_array();
        for (int i = 0; i < bi->nb_bitmaps; i++) {
            const BlockBitmapInfo *b = &bi->bitmaps[i];
            JsonNode *o = json_new_object(), *flags = json_new_array();
            if (b->in_use)
                json_add(flags, NULL, json_str("in-use"));
            if (b->enabled)
                json_add(flags, NULL, json_str("auto"));
            json_add(o, "flags", flags);
            json_add(o, "name", json_str(b->name));
            json_add(o, "granularity", json_int(b->granularity));
            json_add(bms, NULL, o);
        }
        json_add(data, "bitmaps", bms);
    }
    if (bi->encrypted && bi->encrypt_format)
        json_add(data, "encrypt", encrypt_info(bi, true));
    json_add(data, "compression-type",
             json_str(bi->compression_type ? bi->compression_type : "zlib"));
    JsonNode *spec = json_new_object();
    json_add(spec, "type", json_str("qcow2"));
    json_add(spec, "data", data);
    return spec;
}

