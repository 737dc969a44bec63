/* QMP's JSON (vmm/qmp-json.h): a lexer with QEMU's token grammar, a
 * streamer that counts brackets to find where a message ends, a
 * recursive-descent parser over the stored tokens (depth bounded by the
 * streamer's nesting limit), values, and QEMU's writer.  The behaviour
 * (token rules, error words, the order of object members) is QEMU 7.2's,
 * as observed and as its qobject/json-*.c describe it; the code is
 * calf's own. */
#include "vmm/qmp-json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- values ---- */

static struct json *qjson_new(enum qjson_type type)
{
    struct json *v = calloc(1, sizeof(*v));

    if (v)
        v->type = type;
    return v;
}

struct json *qjson_null(void) { return qjson_new(JSON_NULL); }

struct json *qjson_bool(bool b)
{
    struct json *v = qjson_new(JSON_BOOL);

    if (v)
        v->b = b;
    return v;
}

struct json *qjson_int(int64_t i)
{
    struct json *v = qjson_new(JSON_INT);

    if (v)
        v->i = i;
    return v;
}

struct json *qjson_uint(uint64_t u)
{
    struct json *v = qjson_new(JSON_UINT);

    if (v)
        v->u = u;
    return v;
}

static struct json *qjson_double(double d)
{
    struct json *v = qjson_new(JSON_DOUBLE);

    if (v)
        v->d = d;
    return v;
}

static struct json *qjson_str_take(char *s)
{
    struct json *v = s ? qjson_new(JSON_STRING) : NULL;

    if (v)
        v->s = s;
    else
        free(s);
    return v;
}

struct json *qjson_str(const char *s)
{
    return qjson_str_take(strdup(s));
}

struct json *qjson_strf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : qjson_str_take(s);
}

struct json *qjson_object(void) { return qjson_new(JSON_OBJECT); }
struct json *qjson_array(void) { return qjson_new(JSON_ARRAY); }

void qjson_free(struct json *v)
{
    if (!v)
        return;
    if (v->type == JSON_STRING)
        free(v->s);
    if (v->type == JSON_OBJECT || v->type == JSON_ARRAY) {
        for (size_t i = 0; i < v->c.n; i++) {
            qjson_free(v->c.v[i]);
            if (v->c.keys)
                free(v->c.keys[i]);
        }
        free(v->c.v);
        free(v->c.keys);
    }
    free(v);
}

static int qjson_grow(struct json *c)
{
    size_t cap = c->c.cap ? c->c.cap * 2 : 4;
    struct json **nv;

    if (c->c.n < c->c.cap)
        return 0;
    nv = realloc(c->c.v, cap * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    c->c.v = nv;
    if (c->type == JSON_OBJECT) {
        char **nk = realloc(c->c.keys, cap * sizeof(*nk));

        if (!nk)
            return -ENOMEM;
        c->c.keys = nk;
    }
    c->c.cap = cap;
    return 0;
}

int qjson_append(struct json *arr, struct json *v)
{
    if (!v || qjson_grow(arr)) {
        qjson_free(v);
        return -ENOMEM;
    }
    arr->c.v[arr->c.n++] = v;
    return 0;
}

/* Members are kept in insertion order; a key is looked up linearly, so
 * the parser checks duplicates through its own index (see below). */
int qjson_put(struct json *obj, const char *key, struct json *v)
{
    char *k = strdup(key);

    if (!v || !k || qjson_grow(obj)) {
        qjson_free(v);
        free(k);
        return -ENOMEM;
    }
    obj->c.keys[obj->c.n] = k;
    obj->c.v[obj->c.n++] = v;
    return 0;
}

struct json *qjson_get(const struct json *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->c.n; i++)
        if (!strcmp(obj->c.keys[i], key))
            return obj->c.v[i];
    return NULL;
}

struct json *qjson_copy(const struct json *v)
{
    struct json *c;

    switch (v->type) {
    case JSON_STRING:
        return qjson_str(v->s);
    case JSON_OBJECT:
    case JSON_ARRAY:
        c = qjson_new(v->type);
        for (size_t i = 0; c && i < v->c.n; i++) {
            struct json *e = qjson_copy(v->c.v[i]);
            int r = v->type == JSON_OBJECT ? qjson_put(c, v->c.keys[i], e)
                                           : qjson_append(c, e);

            if (r) {
                qjson_free(c);
                return NULL;
            }
        }
        return c;
    default:
        c = qjson_new(v->type);
        if (c)
            *c = *v;
        return c;
    }
}

/* ---- QEMU's dictionary order ---- */

#define QDICT_BUCKETS 512

/* The gdbm hash (via tdb) that QEMU's QDict buckets keys by */
static unsigned qdict_hash(const char *key)
{
    unsigned h = 0x238F13AFu * (unsigned)strlen(key);

    for (unsigned i = 0; key[i]; i++)
        h += (unsigned)(unsigned char)key[i] << (i * 5 % 24);
    return 1103515243u * h + 12345u;
}

static int order_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Buckets in ascending order; in a bucket the newest key first. */
size_t qjson_order(const struct json *obj, size_t *idx)
{
    size_t n = obj->c.n;
    uint64_t *k = malloc((n ? n : 1) * sizeof(*k));

    if (!k) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        return n;
    }
    for (size_t i = 0; i < n; i++)
        k[i] = (uint64_t)(qdict_hash(obj->c.keys[i]) % QDICT_BUCKETS) << 32 |
               (uint32_t)(n - 1 - i);
    qsort(k, n, sizeof(*k), order_cmp);
    for (size_t i = 0; i < n; i++)
        idx[i] = n - 1 - (uint32_t)k[i];
    free(k);
    return n;
}

/* ---- modified UTF-8 ---- */

static bool codepoint_ok(long cp)
{
    return cp <= 0x10FFFF && !(cp >= 0xFDD0 && cp <= 0xFDEF) &&
           (cp & 0xFFFE) != 0xFFFE && !(cp >= 0xD800 && cp <= 0xDFFF);
}

/* One code point from s (a NUL ends the input); -1 for a bad sequence,
 * *end past what was looked at. */
static long utf8_next(const unsigned char *s, const unsigned char **end)
{
    static const long min[] = { 0x80, 0x800, 0x10000, 0x200000, 0x4000000 };
    unsigned c = *s++, len = 0;
    long cp;

    if (c < 0x80 || c >= 0xFE || !(c & 0x40)) {
        *end = s;
        return c < 0x80 ? (long)c : -1;
    }
    for (unsigned m = 0x80; c & m; m >>= 1)
        len++;
    cp = c & ((0x80u >> len) - 1);
    for (unsigned i = 1; i < len; i++, s++) {
        if ((*s & 0xC0) != 0x80) {
            *end = s;
            return -1;
        }
        cp = cp << 6 | (*s & 0x3F);
    }
    *end = s;
    if (!codepoint_ok(cp) || (cp < min[len - 2] && !(cp == 0 && len == 2)))
        return -1;
    return cp;
}

/* U+0000 as C0 80; returns the length, 0 for an invalid code point */
static int utf8_put(char *buf, long cp)
{
    if (!codepoint_ok(cp) || cp < 0)
        return 0;
    if (cp > 0 && cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (char)(0xC0 | cp >> 6);
        buf[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | cp >> 12);
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | cp >> 18);
    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- writer ---- */

void qjson_buf_add(struct qjson_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(struct qjson_buf *b, const char *s)
{
    qjson_buf_add(b, s, strlen(s));
}

static void buf_printf(struct qjson_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void buf_printf(struct qjson_buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    qjson_buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof(tmp) ? (size_t)n
                                                             : sizeof(tmp) - 1);
}

static void write_str(struct qjson_buf *b, const char *str)
{
    const unsigned char *p = (const unsigned char *)str, *end;

    qjson_buf_add(b, "\"", 1);
    while (*p) {
        const unsigned char *run = p;

        while (*p >= 0x20 && *p < 0x7F && *p != '"' && *p != '\\')
            p++;
        qjson_buf_add(b, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        long cp = utf8_next(p, &end);

        p = end;
        switch (cp) {
        case '"': buf_str(b, "\\\""); break;
        case '\\': buf_str(b, "\\\\"); break;
        case '\b': buf_str(b, "\\b"); break;
        case '\f': buf_str(b, "\\f"); break;
        case '\n': buf_str(b, "\\n"); break;
        case '\r': buf_str(b, "\\r"); break;
        case '\t': buf_str(b, "\\t"); break;
        default:
            if (cp < 0)
                cp = 0xFFFD;
            if (cp > 0xFFFF)
                buf_printf(b, "\\u%04lX\\u%04lX",
                           0xD800 + ((cp - 0x10000) >> 10),
                           0xDC00 + ((cp - 0x10000) & 0x3FF));
            else
                buf_printf(b, "\\u%04lX", cp);
        }
    }
    qjson_buf_add(b, "\"", 1);
}

void qjson_write(struct qjson_buf *b, const struct json *v)
{
    size_t *idx;

    switch (v->type) {
    case JSON_NULL: buf_str(b, "null"); break;
    case JSON_BOOL: buf_str(b, v->b ? "true" : "false"); break;
    case JSON_INT: buf_printf(b, "%lld", (long long)v->i); break;
    case JSON_UINT: buf_printf(b, "%llu", (unsigned long long)v->u); break;
    case JSON_DOUBLE: buf_printf(b, "%.17g", v->d); break;
    case JSON_STRING: write_str(b, v->s); break;
    case JSON_ARRAY:
        buf_str(b, "[");
        for (size_t i = 0; i < v->c.n; i++) {
            if (i)
                buf_str(b, ", ");
            qjson_write(b, v->c.v[i]);
        }
        buf_str(b, "]");
        break;
    case JSON_OBJECT:
        idx = malloc((v->c.n ? v->c.n : 1) * sizeof(*idx));
        if (!idx) {
            b->oom = true;
            return;
        }
        qjson_order(v, idx);
        buf_str(b, "{");
        for (size_t i = 0; i < v->c.n; i++) {
            if (i)
                buf_str(b, ", ");
            write_str(b, v->c.keys[idx[i]]);
            buf_str(b, ": ");
            qjson_write(b, v->c.v[idx[i]]);
        }
        buf_str(b, "}");
        free(idx);
        break;
    }
}

/* ---- lexer ---- */

enum lex_state {
    L_START, L_RECOVERY, L_DQ, L_DQ_ESC, L_SQ, L_SQ_ESC, L_ZERO, L_SIGN,
    L_DIGITS, L_MANT, L_MANT_DIGITS, L_EXP_E, L_EXP_SIGN, L_EXP_DIGITS,
    L_KEYWORD,
};

/* token types, as stored before each token's text */
enum {
    T_INT = 'i', T_FLOAT = 'f', T_KEYWORD = 'k', T_STRING = 's',
};

struct qjson_reader {
    qjson_emit_fn emit;
    void *opaque;
    enum lex_state state;
    char *tok;                 /* the token being lexed */
    size_t tok_len, tok_cap;
    char *msg;                 /* the message's tokens: type, text, NUL */
    size_t msg_len, msg_cap;
    size_t ntokens, token_size;
    long braces, brackets;
    bool oom;
};

struct qjson_reader *qjson_reader_new(qjson_emit_fn emit, void *opaque)
{
    struct qjson_reader *r = calloc(1, sizeof(*r));

    if (r) {
        r->emit = emit;
        r->opaque = opaque;
    }
    return r;
}

void qjson_reader_free(struct qjson_reader *r)
{
    if (!r)
        return;
    free(r->tok);
    free(r->msg);
    free(r);
}

static bool grow(char **p, size_t *cap, size_t need)
{
    size_t c = *cap ? *cap : 64;
    char *np;

    if (need <= *cap)
        return true;
    while (c < need)
        c *= 2;
    np = realloc(*p, c);
    if (!np)
        return false;
    *p = np;
    *cap = c;
    return true;
}

static void tok_add(struct qjson_reader *r, char c)
{
    if (!grow(&r->tok, &r->tok_cap, r->tok_len + 2)) {
        r->oom = true;
        return;
    }
    r->tok[r->tok_len++] = c;
    r->tok[r->tok_len] = 0;
}

static void msg_reset(struct qjson_reader *r)
{
    r->braces = r->brackets = 0;
    r->msg_len = r->ntokens = r->token_size = 0;
    /* a hostile message's buffer does not stay allocated */
    if (r->msg_cap > 65536) {
        free(r->msg);
        r->msg = NULL;
        r->msg_cap = 0;
    }
}

static void emit_error(struct qjson_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void emit_error(struct qjson_reader *r, const char *fmt, ...)
{
    va_list ap;
    char *s;

    msg_reset(r);
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    r->emit(r->opaque, NULL, s ? s : "JSON parse error, out of memory");
    free(s);
}

static struct json *parse_message(const char *toks, size_t len, char **err);

static void message_token(struct qjson_reader *r, int type)
{
    const char *text = r->tok ? r->tok : "";
    size_t len = r->tok_len;
    struct json *v;
    char *err = NULL;

    switch (type) {
    case '{': r->braces++; break;
    case '}': r->braces--; break;
    case '[': r->brackets++; break;
    case ']': r->brackets--; break;
    }
    if (r->token_size + len + 1 > JSON_MAX_BYTES) {
        emit_error(r, "JSON token size limit exceeded");
        return;
    }
    if (r->ntokens + 1 > JSON_MAX_TOKENS) {
        emit_error(r, "JSON token count limit exceeded");
        return;
    }
    if (r->braces + r->brackets > JSON_MAX_NESTING) {
        emit_error(r, "JSON nesting depth limit exceeded");
        return;
    }
    if (!grow(&r->msg, &r->msg_cap, r->msg_len + len + 2)) {
        emit_error(r, "JSON parse error, out of memory");
        return;
    }
    r->msg[r->msg_len++] = (char)type;
    memcpy(r->msg + r->msg_len, text, len);
    r->msg_len += len;
    r->msg[r->msg_len++] = 0;
    r->ntokens++;
    r->token_size += len;
    if ((r->braces > 0 || r->brackets > 0) && r->braces >= 0 &&
        r->brackets >= 0)
        return;
    v = parse_message(r->msg, r->msg_len, &err);
    msg_reset(r);
    r->emit(r->opaque, v, v ? NULL : err ? err : "JSON parse error, "
                                                  "out of memory");
    free(err);
}

/* What a byte does in a state: go to a state taking the byte, end a
 * token before it (LOOKAHEAD: the byte is looked at again in L_START),
 * end a token with it, or be an error. */
enum lex_action { A_NEXT, A_END_BEFORE, A_END_WITH, A_ERROR, A_SKIP };

static enum lex_action lex_step(enum lex_state s, unsigned char c,
                                enum lex_state *next, int *type)
{
    bool digit = c >= '0' && c <= '9';

    switch (s) {
    case L_START:
        switch (c) {
        case '"': *next = L_DQ; return A_NEXT;
        case '\'': *next = L_SQ; return A_NEXT;
        case '0': *next = L_ZERO; return A_NEXT;
        case '-': *next = L_SIGN; return A_NEXT;
        case '{': case '}': case '[': case ']': case ',': case ':':
            *type = c;
            return A_END_WITH;
        case ' ': case '\t': case '\r': case '\n':
            return A_SKIP;
        }
        if (c >= '1' && c <= '9') {
            *next = L_DIGITS;
            return A_NEXT;
        }
        if (c >= 'a' && c <= 'z') {
            *next = L_KEYWORD;
            return A_NEXT;
        }
        return A_ERROR;
    case L_RECOVERY: /* skip to a structural or control character */
        if (c < 0x20 || c >= 0xFE || strchr("[]{}:,", c)) {
            if (c == '\t')
                return A_SKIP;
            *type = 0;
            return A_END_BEFORE;
        }
        return A_SKIP;
    case L_DQ:
    case L_SQ:
        if (c == (s == L_DQ ? '"' : '\'')) {
            *type = T_STRING;
            return A_END_WITH;
        }
        if (c < 0x20 || c > 0xFD)
            return A_ERROR;
        *next = c == '\\' ? (s == L_DQ ? L_DQ_ESC : L_SQ_ESC) : s;
        return A_NEXT;
    case L_DQ_ESC:
    case L_SQ_ESC:
        if (c < 0x20 || c > 0xFD)
            return A_ERROR;
        *next = s == L_DQ_ESC ? L_DQ : L_SQ;
        return A_NEXT;
    case L_ZERO:
        if (digit)
            return A_ERROR;
        if (c == '.') {
            *next = L_MANT;
            return A_NEXT;
        }
        *type = T_INT;
        return A_END_BEFORE;
    case L_SIGN:
        if (!digit)
            return A_ERROR;
        *next = c == '0' ? L_ZERO : L_DIGITS;
        return A_NEXT;
    case L_DIGITS:
        if (digit || c == '.' || c == 'e' || c == 'E') {
            *next = digit ? L_DIGITS : c == '.' ? L_MANT : L_EXP_E;
            return A_NEXT;
        }
        *type = T_INT;
        return A_END_BEFORE;
    case L_MANT:
        if (!digit)
            return A_ERROR;
        *next = L_MANT_DIGITS;
        return A_NEXT;
    case L_MANT_DIGITS:
        if (digit || c == 'e' || c == 'E') {
            *next = digit ? L_MANT_DIGITS : L_EXP_E;
            return A_NEXT;
        }
        *type = T_FLOAT;
        return A_END_BEFORE;
    case L_EXP_E:
        if (c == '-' || c == '+') {
            *next = L_EXP_SIGN;
            return A_NEXT;
        }
        /* fall through */
    case L_EXP_SIGN:
        if (!digit)
            return A_ERROR;
        *next = L_EXP_DIGITS;
        return A_NEXT;
    case L_EXP_DIGITS:
        if (digit) {
            *next = L_EXP_DIGITS;
            return A_NEXT;
        }
        *type = T_FLOAT;
        return A_END_BEFORE;
    case L_KEYWORD:
        if (c >= 'a' && c <= 'z') {
            *next = L_KEYWORD;
            return A_NEXT;
        }
        *type = T_KEYWORD;
        return A_END_BEFORE;
    }
    return A_ERROR;
}

static void lex_byte(struct qjson_reader *r, unsigned char c)
{
    for (;;) {
        enum lex_state next = L_START;
        int type = 0;

        switch (lex_step(r->state, c, &next, &type)) {
        case A_NEXT:
            tok_add(r, (char)c);
            r->state = next;
            break;
        case A_SKIP:
            break;
        case A_END_WITH:
            tok_add(r, (char)c);
            message_token(r, type);
            r->tok_len = 0;
            r->state = L_START;
            break;
        case A_END_BEFORE:
            if (type)
                message_token(r, type);
            r->tok_len = 0;
            r->state = L_START;
            continue; /* the byte again, from L_START */
        case A_ERROR:
            tok_add(r, (char)c);
            emit_error(r, "JSON parse error, stray '%s'", r->tok ? r->tok : "");
            r->tok_len = 0;
            r->state = L_RECOVERY;
            break;
        }
        break;
    }
    if (r->tok_len > JSON_MAX_BYTES) {
        emit_error(r, "JSON token size limit exceeded");
        r->tok_len = 0;
        r->state = L_START;
    }
}

void qjson_reader_feed(struct qjson_reader *r, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    for (size_t i = 0; i < len; i++) {
        lex_byte(r, p[i]);
        if (r->oom) {
            r->oom = false;
            r->tok_len = 0;
            r->state = L_RECOVERY;
            emit_error(r, "JSON parse error, out of memory");
        }
    }
}

/* ---- parser ---- */

struct parser {
    const char *p, *end;       /* the next token */
    const char *cur;           /* the last one popped */
    char *err;
};

static void perr(struct parser *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void perr(struct parser *ps, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (ps->err)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (asprintf(&ps->err, "JSON parse error, %s", msg) < 0)
        ps->err = NULL;
}

static const char *peek(struct parser *ps)
{
    return ps->p < ps->end ? ps->p : NULL;
}

static const char *pop(struct parser *ps)
{
    const char *t = peek(ps);

    if (t)
        ps->p = t + 1 + strlen(t + 1) + 1;
    ps->cur = t;
    return t;
}

static struct json *parse_value(struct parser *ps);

static int hex4(const char *s)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        char c = s[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static struct json *parse_string(struct parser *ps, const char *tok)
{
    const char *p = tok + 1;
    char quote = tok[0];
    size_t n = 0;
    char *out = malloc(strlen(tok) * 2 + 5), u8[4];
    long cp;
    int k;

    if (!out)
        return NULL;
    while (*p != quote) {
        if (*p != '\\') {
            const unsigned char *end;

            cp = utf8_next((const unsigned char *)p, &end);
            if (cp < 0) {
                perr(ps, "invalid UTF-8 sequence in string");
                goto fail;
            }
            p = (const char *)end;
            n += (size_t)utf8_put(out + n, cp);
            continue;
        }
        const char *beg = p++;

        switch (*p++) {
        case '"': out[n++] = '"'; break;
        case '\'': out[n++] = '\''; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u':
            /* the token holds at least the closing quote: hex4 stops at
             * any non-hex byte, so it never reads past it */
            cp = hex4(p);
            for (int i = 0; i < 4 && *p; i++) /* QEMU's error shows them */
                p++;
            if (cp >= 0xD800 && cp <= 0xDBFF && p[0] == '\\' && p[1] == 'u') {
                int t = hex4(p + 2);

                if (t >= 0xDC00 && t <= 0xDFFF) {
                    cp = 0x10000 + ((cp & 0x3FF) << 10) + (t & 0x3FF);
                    p += 6;
                } else {
                    cp = -1;
                }
            }
            k = utf8_put(u8, cp);
            if (!k) {
                /* QEMU names the escape as far as it read it */
                perr(ps, "%.*s is not a valid Unicode character",
                     (int)(p - beg), beg);
                goto fail;
            }
            memcpy(out + n, u8, (size_t)k);
            n += (size_t)k;
            break;
        default:
            perr(ps, "invalid escape sequence in string");
            goto fail;
        }
    }
    out[n] = 0;
    return qjson_str_take(out);
fail:
    free(out);
    return NULL;
}

static struct json *parse_number(const char *tok, int type)
{
    char *end;

    if (type == T_INT) {
        long long i;
        unsigned long long u;

        errno = 0;
        i = strtoll(tok, &end, 10);
        if (!errno)
            return qjson_int(i);
        if (tok[0] != '-') {
            errno = 0;
            u = strtoull(tok, &end, 10);
            if (!errno)
                return qjson_uint(u);
        }
    }
    return qjson_double(strtod(tok, &end));
}

/* An index of an object's keys while it is parsed, so that a hostile
 * object of many members costs no quadratic duplicate check.  Its hash
 * is SipHash-1-3 over every byte of the key under a key drawn once per
 * process: a client cannot pick keys that share a slot.  (qdict_hash,
 * QEMU's, only orders output: it ignores which position a byte is at
 * modulo 24, so colliding keys are easy to make.) */
struct key_index {
    uint32_t *slot;            /* member index + 1, 0 = empty */
    size_t cap;
};

static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_seed(void)
{
    uint64_t k[2];

    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
        struct timespec ts;

        /* no entropy source: still differ per process and run */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^
               (uint64_t)getpid();
        k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                        \
    do {                                                                \
        v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);   \
        v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                        \
        v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                        \
        v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);   \
    } while (0)

static uint64_t key_hash(const char *key)
{
    const unsigned char *p = (const unsigned char *)key;
    size_t len = strlen(key), i;
    uint64_t v0, v1, v2, v3, m, b = (uint64_t)len << 56;

    pthread_once(&sip_once, sip_seed);
    v0 = sip_k0 ^ 0x736f6d6570736575ull;
    v1 = sip_k1 ^ 0x646f72616e646f6dull;
    v2 = sip_k0 ^ 0x6c7967656e657261ull;
    v3 = sip_k1 ^ 0x7465646279746573ull;
    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&m, p + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static bool key_index_has(struct key_index *ki, const struct json *obj,
                          const char *key)
{
    if (!ki->cap) {
        for (size_t i = 0; i < obj->c.n; i++)
            if (!strcmp(obj->c.keys[i], key))
                return true;
        return false;
    }
    for (size_t h = key_hash(key) & (ki->cap - 1); ki->slot[h];
         h = (h + 1) & (ki->cap - 1))
        if (!strcmp(obj->c.keys[ki->slot[h] - 1], key))
            return true;
    return false;
}

/* After obj's member n-1 was added: index it (from 16 members on). */
static int key_index_add(struct key_index *ki, const struct json *obj)
{
    size_t n = obj->c.n;

    if (n < 16)
        return 0;
    if (n * 2 > ki->cap) {
        size_t cap = ki->cap ? ki->cap * 2 : 64;
        uint32_t *s = calloc(cap, sizeof(*s));

        if (!s)
            return -ENOMEM;
        free(ki->slot);
        ki->slot = s;
        ki->cap = cap;
        for (size_t i = 0; i + 1 < n; i++) {
            size_t h = key_hash(obj->c.keys[i]) & (cap - 1);

            while (s[h])
                h = (h + 1) & (cap - 1);
            s[h] = (uint32_t)i + 1;
        }
    }
    size_t h = key_hash(obj->c.keys[n - 1]) & (ki->cap - 1);

    while (ki->slot[h])
        h = (h + 1) & (ki->cap - 1);
    ki->slot[h] = (uint32_t)n;
    return 0;
}

static int parse_pair(struct parser *ps, struct json *obj,
                      struct key_index *ki)
{
    struct json *key, *value;
    const char *t;

    if (!peek(ps)) {
        perr(ps, "premature EOI");
        return -1;
    }
    key = parse_value(ps);
    if (!key || key->type != JSON_STRING) {
        perr(ps, "key is not a string in object");
        qjson_free(key);
        return -1;
    }
    t = pop(ps);
    if (!t || *t != ':') {
        perr(ps, t ? "missing : in object pair" : "premature EOI");
        qjson_free(key);
        return -1;
    }
    value = parse_value(ps);
    if (!value) {
        perr(ps, "Missing value in dict");
        qjson_free(key);
        return -1;
    }
    if (key_index_has(ki, obj, key->s)) {
        perr(ps, "duplicate key");
        qjson_free(key);
        qjson_free(value);
        return -1;
    }
    if (qjson_put(obj, key->s, value) || key_index_add(ki, obj)) {
        perr(ps, "out of memory");
        qjson_free(key);
        return -1;
    }
    qjson_free(key);
    return 0;
}

static struct json *parse_container(struct parser *ps, bool is_obj)
{
    struct json *c = is_obj ? qjson_object() : qjson_array();
    struct key_index ki = { NULL, 0 };
    char close = is_obj ? '}' : ']';
    const char *t;

    pop(ps);
    if (!c) {
        perr(ps, "out of memory");
        return NULL;
    }
    t = peek(ps);
    if (!t) {
        perr(ps, "premature EOI");
        goto fail;
    }
    if (*t == close) {
        pop(ps);
        return c;
    }
    for (bool first = true;; first = false) {
        if (!first) {
            t = pop(ps);
            if (!t) {
                perr(ps, "premature EOI");
                goto fail;
            }
            if (*t == close)
                break;
            if (*t != ',') {
                perr(ps, is_obj ? "expected separator in dict"
                                : "expected separator in list");
                goto fail;
            }
        }
        if (is_obj) {
            if (parse_pair(ps, c, &ki))
                goto fail;
        } else {
            struct json *v = parse_value(ps);

            if (!v) {
                perr(ps, "expecting value");
                goto fail;
            }
            if (qjson_append(c, v)) {
                perr(ps, "out of memory");
                goto fail;
            }
        }
    }
    free(ki.slot);
    return c;
fail:
    free(ki.slot);
    qjson_free(c);
    return NULL;
}

static struct json *parse_value(struct parser *ps)
{
    const char *t = peek(ps);

    if (!t) {
        perr(ps, "premature EOI");
        return NULL;
    }
    switch (*t) {
    case '{':
        return parse_container(ps, true);
    case '[':
        return parse_container(ps, false);
    case T_STRING:
        pop(ps);
        return parse_string(ps, t + 1);
    case T_INT:
    case T_FLOAT:
        pop(ps);
        return parse_number(t + 1, *t);
    case T_KEYWORD:
        pop(ps);
        if (!strcmp(t + 1, "true"))
            return qjson_bool(true);
        if (!strcmp(t + 1, "false"))
            return qjson_bool(false);
        if (!strcmp(t + 1, "null"))
            return qjson_null();
        perr(ps, "invalid keyword '%s'", t + 1);
        return NULL;
    default:
        perr(ps, "expecting value");
        return NULL;
    }
}

static struct json *parse_message(const char *toks, size_t len, char **err)
{
    struct parser ps = { toks, toks + len, NULL, NULL };
    struct json *v = parse_value(&ps);

    if (v && !ps.err && peek(&ps)) /* cannot happen: the streamer ends a */
        perr(&ps, "expecting value"); /* message where brackets balance */
    if (ps.err) {
        qjson_free(v);
        *err = ps.err;
        return NULL;
    }
    if (!v)
        *err = strdup("JSON parse error, out of memory");
    return v;
}
