/* "json:{...}" file names: QEMU's JSON dialect (single-quoted strings
 * too) read into a flat option list, nested objects and arrays becoming
 * dotted keys ("file.driver", "inject-error.0.event") as QEMU flattens
 * them, so that {"file": {"filename": x}} and {"file.filename": x} are
 * the same.  A file name comes from the command line or from an image
 * header, which may be hostile: depth and length are bounded. */
#include "block/block.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 32         /* option trees are a few levels deep */
#define JSON_MAX_LEN (1u << 20)   /* a whole json: name, and so any string in it */
#define JSON_MAX_KEY 1024         /* a dotted key */

struct jparse {
    const char *p;
    BlockOptions *out;
    const char *err;
};

static void skip_ws(struct jparse *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static int fail(struct jparse *j, const char *why)
{
    if (!j->err)
        j->err = why;
    return -EINVAL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string in double or single quotes (QEMU takes both; either quote may
 * be escaped in either).  malloc'd; the whole input bounds its size. */
static char *parse_string(struct jparse *j)
{
    char q = *j->p++;
    const char *start = j->p;
    size_t n = 0;
    while (start[n] && start[n] != q)
        n += start[n] == '\\' && start[n + 1] ? 2 : 1;
    char *s = malloc(n + 1);
    if (!s) {
        fail(j, "out of memory");
        return NULL;
    }
    size_t o = 0;
    while (*j->p != q) {
        char c = *j->p;
        if (!c || (unsigned char)c < 0x20) {
            fail(j, c ? "control character in a string" : "premature EOI");
            goto bad;
        }
        j->p++;
        if (c != '\\') {
            s[o++] = c;
            continue;
        }
        if (!(c = *j->p)) {
            fail(j, "premature EOI");
            goto bad;
        }
        j->p++;
        switch (c) {
        case '"': case '\'': case '\\': case '/': s[o++] = c; break;
        case 'b': s[o++] = '\b'; break;
        case 'f': s[o++] = '\f'; break;
        case 'n': s[o++] = '\n'; break;
        case 'r': s[o++] = '\r'; break;
        case 't': s[o++] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                int h = hexval(j->p[i]);
                if (h < 0) {
                    fail(j, "invalid escape sequence in string");
                    goto bad;
                }
                cp = cp << 4 | (unsigned)h;
            }
            j->p += 4;
            if (cp == 0 || (cp >= 0xd800 && cp < 0xe000)) {
                /* a C string holds no NUL; surrogate pairs are rare enough
                 * in a file name to refuse */
                fail(j, "invalid escape sequence in string");
                goto bad;
            }
            /* \uXXXX takes 6 bytes and gives at most 3 */
            o += put_utf8(s + o, cp);
            break;
        }
        default:
            fail(j, "invalid escape sequence in string");
            goto bad;
        }
    }
    j->p++;
    s[o] = 0;
    return s;
bad:
    free(s);
    return NULL;
}

static int add(struct jparse *j, const char *key, const char *value)
{
    if (!*key)
        return fail(j, "a value outside of an object");
    return blkopts_set(j->out, key, value) < 0 ? fail(j, "out of memory") : 0;
}

static int parse_value(struct jparse *j, char *key, size_t klen, int depth);

/* Members of an object (or, for an array, elements named 0, 1, ...)
 * under key[0..klen). */
static int parse_container(struct jparse *j, char *key, size_t klen, int depth)
{
    bool array = *j->p == '[';
    char close = array ? ']' : '}';
    if (depth >= JSON_MAX_DEPTH)
        return fail(j, "too deeply nested");
    j->p++;
    skip_ws(j);
    if (*j->p == close) {
        j->p++;
        return 0;
    }
    for (unsigned idx = 0;; idx++) {
        size_t n = klen;
        char name[24];
        const char *member = name;
        char *owned = NULL;
        if (array) {
            snprintf(name, sizeof(name), "%u", idx);
        } else {
            if (*j->p != '"' && *j->p != '\'')
                return fail(j, *j->p ? "expected a string key" : "premature EOI");
            if (!(owned = parse_string(j)))
                return -EINVAL;
            member = owned;
            skip_ws(j);
            if (*j->p != ':') {
                free(owned);
                return fail(j, *j->p ? "expected ':'" : "premature EOI");
            }
            j->p++;
        }
        size_t ml = strlen(member);
        if (klen + 1 + ml + 1 > JSON_MAX_KEY) {
            free(owned);
            return fail(j, "key too long");
        }
        if (klen)
            key[n++] = '.';
        memcpy(key + n, member, ml + 1);
        free(owned);
        int r = parse_value(j, key, n + ml, depth + 1);
        key[klen] = 0;
        if (r < 0)
            return r;
        skip_ws(j);
        if (*j->p == ',') {
            j->p++;
            skip_ws(j);
            continue;
        }
        if (*j->p == close) {
            j->p++;
            return 0;
        }
        return fail(j, *j->p ? "expected ',' or a closing bracket" : "premature EOI");
    }
}

static int parse_value(struct jparse *j, char *key, size_t klen, int depth)
{
    skip_ws(j);
    char c = *j->p;
    if (c == '{' || c == '[')
        return parse_container(j, key, klen, depth);
    if (c == '"' || c == '\'') {
        char *s = parse_string(j);
        if (!s)
            return -EINVAL;
        int r = add(j, key, s);
        free(s);
        return r;
    }
    static const struct {
        const char *word, *value;
    } words[] = {
        /* booleans as the on/off of an option string; null is the empty
         * value ("backing": null, like backing=, means none) */
        {"true", "on"}, {"false", "off"}, {"null", ""},
    };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i].word);
        if (!strncmp(j->p, words[i].word, n)) {
            j->p += n;
            return add(j, key, words[i].value);
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *s = j->p;
        if (*j->p == '-')
            j->p++;
        while ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' ||
               *j->p == 'E' || ((*j->p == '+' || *j->p == '-') && (j->p[-1] | 0x20) == 'e'))
            j->p++;
        size_t n = (size_t)(j->p - s);
        if (n > 64)
            return fail(j, "number too long");
        char num[65];
        memcpy(num, s, n);
        num[n] = 0;
        return add(j, key, num);
    }
    return fail(j, c ? "invalid token" : "premature EOI");
}

bool blk_is_json_filename(const char *filename)
{
    return !strncmp(filename, "json:", 5);
}

int blk_json_parse(const char *filename, BlockOptions *out)
{
    const char *text = filename + (blk_is_json_filename(filename) ? 5 : 0);
    if (strlen(text) > JSON_MAX_LEN) {
        blk_set_error("Could not parse the JSON options: JSON token size limit exceeded");
        return -EINVAL;
    }
    struct jparse j = {.p = text, .out = out};
    skip_ws(&j);
    if (!*j.p) {
        blk_set_error("Could not parse the JSON options: Expecting a JSON value");
        return -EINVAL;
    }
    if (*j.p != '{') {
        blk_set_error("Invalid JSON object given");
        return -EINVAL;
    }
    char *key = malloc(JSON_MAX_KEY);
    int r = key ? 0 : fail(&j, "out of memory");
    if (key) {
        key[0] = 0;
        r = parse_container(&j, key, 0, 0);
        free(key);
    }
    if (r == 0)
        skip_ws(&j);
    if (r == 0 && *j.p) {
        blk_set_error("Could not parse the JSON options: Expecting at most one JSON value");
        r = -EINVAL;
    } else if (r < 0) {
        blk_set_error("Could not parse the JSON options: JSON parse error, %s", j.err);
    }
    if (r < 0)
        blkopts_free(out);
    return r;
}
