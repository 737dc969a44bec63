/* libFuzzer harness for the QMP JSON reader (vmm/qmp-json.c): every byte
 * a QMP client sends goes through it.  The input is fed in pieces (the
 * first byte picks the piece size, as a socket would cut it); each
 * message must come out as a value or an error text, never both.  Each
 * value is written (QEMU's writer) and parsed again: the two values must
 * be equal (non-finite numbers aside: QEMU writes them as inf/nan, which
 * no JSON reader takes back).  Bounded memory and no
 * crash are checked by the sanitizers and -rss_limit_mb.
 *
 *   make fuzz-qmp-json   (libFuzzer, clang)
 *   build/tests/fuzz-qmp-json FILE|DIR...  (replay, tests/fuzz-qmp-json.t) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/qmp-json.h"

struct again {
    struct json *v;
    int values;
};

static const struct json *sort_obj;

static int key_cmp(const void *a, const void *b)
{
    return strcmp(sort_obj->c.keys[*(const size_t *)a],
                  sort_obj->c.keys[*(const size_t *)b]);
}

static size_t *sorted_keys(const struct json *o)
{
    size_t *idx = malloc((o->c.n ? o->c.n : 1) * sizeof(*idx));

    if (!idx)
        abort();
    for (size_t i = 0; i < o->c.n; i++)
        idx[i] = i;
    sort_obj = o;
    qsort(idx, o->c.n, sizeof(*idx), key_cmp);
    return idx;
}

static double number(const struct json *v)
{
    switch (v->type) {
    case JSON_INT: return (double)v->i;
    case JSON_UINT: return (double)v->u;
    case JSON_DOUBLE: return v->d;
    default: return NAN;
    }
}

/* Equal values; objects as sets of members (QEMU's member order depends
 * on insertion order within a hash bucket, so a text round trip may
 * reorder them) */
static bool same(const struct json *a, const struct json *b)
{
    size_t *ia, *ib;
    bool eq = true;

    /* a whole double is written as an integer (2.5e3 as 2500) */
    if (a->type == JSON_DOUBLE || b->type == JSON_DOUBLE)
        return number(a) == number(b);
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case JSON_NULL: return true;
    case JSON_BOOL: return a->b == b->b;
    case JSON_INT: return a->i == b->i;
    case JSON_UINT: return a->u == b->u;
    case JSON_DOUBLE: return a->d == b->d;
    case JSON_STRING: return !strcmp(a->s, b->s);
    case JSON_ARRAY:
        if (a->c.n != b->c.n)
            return false;
        for (size_t i = 0; i < a->c.n && eq; i++)
            eq = same(a->c.v[i], b->c.v[i]);
        return eq;
    case JSON_OBJECT:
        if (a->c.n != b->c.n)
            return false;
        ia = sorted_keys(a);
        ib = sorted_keys(b);
        for (size_t i = 0; i < a->c.n && eq; i++)
            eq = !strcmp(a->c.keys[ia[i]], b->c.keys[ib[i]]) &&
                 same(a->c.v[ia[i]], b->c.v[ib[i]]);
        free(ia);
        free(ib);
        return eq;
    }
    return false;
}

static bool finite_only(const struct json *v)
{
    if (v->type == JSON_DOUBLE)
        return isfinite(v->d);
    if (v->type == JSON_OBJECT || v->type == JSON_ARRAY)
        for (size_t i = 0; i < v->c.n; i++)
            if (!finite_only(v->c.v[i]))
                return false;
    return true;
}

static void on_again(void *opaque, struct json *v, const char *err)
{
    struct again *a = opaque;

    if (!v) {
        fprintf(stderr, "fuzz: written JSON does not parse: %s\n", err);
        abort();
    }
    if (a->values++)
        qjson_free(v);
    else
        a->v = v;
}

static void on_message(void *opaque, struct json *v, const char *err)
{
    struct qjson_buf first = { 0 };
    struct again a = { NULL, 0 };
    struct qjson_reader *r;

    (void)opaque;
    if (!v == !err) {
        fprintf(stderr, "fuzz: a message with %s\n",
                v ? "a value and an error" : "neither value nor error");
        abort();
    }
    if (!v) {
        if (strncmp(err, "JSON ", 5))
            abort(); /* every reader error is QEMU's "JSON ..." text */
        return;
    }
    qjson_write(&first, v);
    if (!first.oom && finite_only(v)) {
        r = qjson_reader_new(on_again, &a);
        if (!r)
            abort();
        /* a bare number ends at the next byte: QMP's line end */
        qjson_reader_feed(r, first.p, first.len);
        qjson_reader_feed(r, "\r\n", 2);
        qjson_reader_free(r);
        if (a.values != 1 || !same(v, a.v)) {
            fprintf(stderr, "fuzz: round trip differs (%d values):\n%s\n",
                    a.values, first.p);
            abort();
        }
    }
    free(first.p);
    qjson_free(a.v);
    qjson_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qjson_reader *r = qjson_reader_new(on_message, NULL);
    size_t piece = size ? (size_t)data[0] % 64 + 1 : 1;

    if (!r)
        return 0;
    for (size_t off = 0; off < size; off += piece)
        qjson_reader_feed(r, data + off, size - off < piece ? size - off
                                                            : piece);
    qjson_reader_free(r);
    return 0;
}
