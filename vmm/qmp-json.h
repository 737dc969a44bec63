/* QMP's JSON: a streaming reader that cuts a byte stream into messages
 * the way QEMU 7.2's monitor does (its lexer's token grammar, single-
 * quoted strings included, and its error words), bounded in message size,
 * token count and nesting; values; and a writer whose output is QEMU's
 * byte for byte (object members in QEMU's dictionary order).
 *
 * Untrusted input: every byte a client sends goes through
 * qjson_reader_feed().  tests/fuzz/fuzz-qmp-json.c fuzzes it. */
#ifndef CALF_VMM_QMP_JSON_H
#define CALF_VMM_QMP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum qjson_type {
    JSON_NULL, JSON_BOOL, JSON_INT, JSON_UINT, JSON_DOUBLE, JSON_STRING,
    JSON_OBJECT, JSON_ARRAY,
};

/* Strings are NUL-terminated modified UTF-8 (U+0000 is C0 80), as in
 * QEMU, so they never hold a NUL byte. */
struct json {
    enum qjson_type type;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double d;
        char *s;
        struct {
            struct json **v;
            char **keys;         /* objects only */
            size_t n, cap;
        } c;
    };
};

/* Limits of one message (QEMU: 1024 levels, 64 MiB, 2 Mi tokens) */
#define JSON_MAX_NESTING 1024
#define JSON_MAX_BYTES (1u << 20)  /* sum of its tokens' lengths */
#define JSON_MAX_TOKENS (128u << 10)

/* A message callback: value is the parsed message (the callee owns it)
 * or NULL with err, QEMU's error text ("JSON parse error, ..."). */
typedef void (*qjson_emit_fn)(void *opaque, struct json *value,
                             const char *err);

struct qjson_reader;

struct qjson_reader *qjson_reader_new(qjson_emit_fn emit, void *opaque);
void qjson_reader_free(struct qjson_reader *r);
/* Feeds bytes; emit runs once per complete message or error. */
void qjson_reader_feed(struct qjson_reader *r, const void *buf, size_t len);

/* Values.  Constructors return NULL only when memory runs out; adders
 * take ownership of v (and free it on failure). */
struct json *qjson_null(void);
struct json *qjson_bool(bool b);
struct json *qjson_int(int64_t i);
struct json *qjson_uint(uint64_t u);
struct json *qjson_str(const char *s);
struct json *qjson_strf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
struct json *qjson_object(void);
struct json *qjson_array(void);
int qjson_put(struct json *obj, const char *key, struct json *v);
int qjson_append(struct json *arr, struct json *v);
struct json *qjson_get(const struct json *obj, const char *key);
struct json *qjson_copy(const struct json *v);
void qjson_free(struct json *v);

/* Appends v as QEMU writes it: "{"a": 1, "b": [true, null]}" */
struct qjson_buf {
    char *p;
    size_t len, cap;
    bool oom;
};
void qjson_write(struct qjson_buf *b, const struct json *v);
void qjson_buf_add(struct qjson_buf *b, const char *s, size_t n);

/* Object members in the order QEMU 7.2's QDict iterates them. */
size_t qjson_order(const struct json *obj, size_t *idx);

#endif
