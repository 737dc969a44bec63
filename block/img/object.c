/* --object secret,... and --image-opts, shared by every calf-img
 * subcommand and by calf-io (which links this file).  Secrets are looked up by id when an
 * option list names one (encrypt.key-secret=ID); the drivers get the
 * passphrase itself. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include "block/ossl.h"

#include "block/img/img.h"
#include "block/tool-util.h"

#define MAX_SECRETS 16
static struct {
    char *id, *data;
} secrets[MAX_SECRETS];
static int nsecrets;

bool img_image_opts;

/* calf-io links this file too: errors carry the running tool's name */
static void obj_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void obj_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* format=base64: the decoded bytes (a passphrase is text: no NULs) */
static char *decode_base64(const char *in)
{
    size_t n = strlen(in);
    char *out = malloc(n / 4 * 3 + 4);
    if (!out || n % 4)
        goto bad;
    int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
    if (len < 0)
        goto bad;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    for (size_t i = n; i > 0 && in[i - 1] == '='; i--)
        len--;
    out[len] = 0;
    if ((int)strlen(out) != len)
        goto bad;
    return out;
bad:
    free(out);
    return NULL;
}

static char *read_secret_file(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        obj_error("Unable to read %s: %s", file, strerror(errno));
        return NULL;
    }
    char *buf = malloc(4096);
    size_t n = buf ? fread(buf, 1, 4095, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

static bool is_secret_type(const BlockOptions *o)
{
    const BlockOpt *t = &o->opt[0];
    /* a bare word parses as "word=on" */
    if (!t->value || !strcmp(t->value, "on"))
        return !strcmp(t->key, "secret");
    return !strcmp(t->key, "qom-type") && !strcmp(t->value, "secret");
}

int img_object_add(const char *arg)
{
    BlockOptions o = {0};
    char *data = NULL;
    int r = blkopts_parse(&o, arg);
    if (r < 0 || !o.n) {
        obj_error("Invalid object option: %s", arg);
        goto fail;
    }
    if (!is_secret_type(&o)) {
        obj_error("Object type '%s' is not supported", o.opt[0].value ? o.opt[0].value
                                                                     : o.opt[0].key);
        goto fail;
    }
    o.opt[0].used = true;
    const char *id = blkopts_get(&o, "id"), *text = blkopts_get(&o, "data");
    const char *file = blkopts_get(&o, "file"), *fmt = blkopts_get(&o, "format");
    if (!id || !!text == !!file) {
        obj_error("Parameter 'id' and exactly one of 'data' or 'file' are required for a "
                  "secret");
        goto fail;
    }
    if (fmt && strcmp(fmt, "raw") && strcmp(fmt, "base64")) {
        obj_error("Invalid parameter '%s' for format", fmt);
        goto fail;
    }
    if (blkopts_first_unused(&o)) {
        obj_error("Invalid parameter '%s'", blkopts_first_unused(&o));
        goto fail;
    }
    for (int i = 0; i < nsecrets; i++) {
        if (!strcmp(secrets[i].id, id)) {
            obj_error("attempt to add duplicate property '%s' to object", id);
            goto fail;
        }
    }
    if (nsecrets == MAX_SECRETS) {
        obj_error("Too many secrets");
        goto fail;
    }
    data = text ? strdup(text) : read_secret_file(file);
    if (!data)
        goto fail;
    if (fmt && !strcmp(fmt, "base64")) {
        if (!calf_ossl_ready()) {
            obj_error("%s", blk_error());
            free(data);
            goto fail;
        }
        char *d = decode_base64(data);
        free(data);
        if (!(data = d)) {
            obj_error("Invalid base64 data in secret '%s'", id);
            goto fail;
        }
    }
    secrets[nsecrets].id = strdup(id);
    secrets[nsecrets].data = data;
    nsecrets++;
    blkopts_free(&o);
    return 0;
fail:
    blkopts_free(&o);
    return -EINVAL;
}

int img_common_option(int c, const char *arg)
{
    if (c == IMG_OPT_IMAGE_OPTS) {
        img_image_opts = true;
        return 0;
    }
    return img_object_add(arg);
}

/* encrypt.key-secret (qcow2), key-secret (luks), and either under
 * "backing." for a backing file */
static bool is_secret_key(const char *key)
{
    static const char k[] = "key-secret";
    size_t n = strlen(key), kn = sizeof(k) - 1;
    return n >= kn && !strcmp(key + n - kn, k) && (n == kn || key[n - kn - 1] == '.');
}

/* g_utf8_validate's rules, which QEMU's secret lookups apply to every
 * passphrase: no overlong forms, surrogates or code points past U+10FFFF */
static bool valid_utf8(const unsigned char *p)
{
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2
              : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0)
            return false;
        uint32_t cp = n ? *p & (0x3f >> n) : *p;
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
            return false;
        p += n + 1;
    }
    return true;
}

/* Option i of o names a secret: its value becomes the secret's data.
 * An unknown id is the block layer's error, for the caller to word as
 * qemu-img does there ("Could not open 'OPTIONS': ", "FILE: ", ...). */
static int secret_replace(BlockOptions *o, int i)
{
    int j = 0;
    while (j < nsecrets && strcmp(secrets[j].id, o->opt[i].value))
        j++;
    if (j == nsecrets) {
        blk_set_error("No secret with id '%s'", o->opt[i].value);
        return -ENOENT;
    }
    if (!valid_utf8((const unsigned char *)secrets[j].data)) {
        blk_set_error("Data from secret %s is not valid UTF-8", secrets[j].id);
        return -EILSEQ;
    }
    char *v = strdup(secrets[j].data);
    if (!v) {
        blk_set_error("out of memory");
        return -ENOMEM;
    }
    free(o->opt[i].value);
    o->opt[i].value = v;
    return 0;
}

int img_secret_resolve(BlockOptions *o)
{
    for (int i = 0; i < o->n; i++) {
        if (!is_secret_key(o->opt[i].key) || !o->opt[i].value)
            continue;
        int r = secret_replace(o, i);
        if (r < 0)
            return r;
    }
    return 0;
}

int img_secret_resolve_key(BlockOptions *o, const char *key)
{
    for (int i = 0; i < o->n; i++) {
        if (strcmp(o->opt[i].key, key) || !o->opt[i].value)
            continue;
        int r = secret_replace(o, i);
        if (r < 0) {
            obj_error("%s", blk_error());
            return r;
        }
    }
    return 0;
}

void img_objects_free(void)
{
    for (int i = 0; i < nsecrets; i++) {
        free(secrets[i].id);
        free(secrets[i].data);
    }
    nsecrets = 0;
}

bool img_opts_io_words;

/* qemu-img says "Could not open 'OPTIONS': why", qemu-io "can't open: why" */
static void open_error(const char *arg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void open_error(const char *arg, const char *fmt, ...)
{
    char why[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (img_opts_io_words)
        obj_error("can't open: %s", why);
    else
        obj_error("Could not open '%s': %s", arg, why);
}

/* QEMU names an image opened with its key (a "strong" option: without
 * it the image reads differently) by the options that say so,
 * json:{...}, in its messages and in info; id is the key's secret id. */
static void json_rename(BlockDriverState *bs, const char *key, const char *id, const char *fn)
{
    JsonNode *j = json_new_object(), *file = json_new_object();
    json_add(j, key, json_str(id));
    json_add(j, "driver", json_str(bs->drv->name));
    json_add(file, "driver", json_str("file"));
    json_add(file, "filename", json_str(fn));
    json_add(j, "file", file);
    char *name = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&name, &len);
    if (f) {
        fputs("json:", f);
        json_print_compact(f, j);
        if (fclose(f) == 0 && name) {
            free(bs->filename);
            bs->filename = name;
            name = NULL;
        }
    }
    free(name);
    json_free(j);
}

BlockDriverState *img_open_image_opts(const char *arg, int flags)
{
    BlockOptions o = {0};
    BlockDriverState *bs = NULL;
    if (blkopts_parse(&o, arg) < 0) {
        obj_error("Invalid image options: %s", arg);
        return NULL;
    }
    const char *fn = blkopts_get(&o, "file.filename");
    char *key = NULL, *id = NULL; /* before the id becomes the passphrase */
    for (int i = 0; i < o.n; i++) {
        if (!strcmp(o.opt[i].key, "key-secret") || !strcmp(o.opt[i].key, "encrypt.key-secret")) {
            free(key);
            free(id);
            key = strdup(o.opt[i].key);
            id = strdup(o.opt[i].value);
        }
    }
    if (!strchr(arg, '=')) {
        /* QEMU takes a bare word for the name of a node that does not exist */
        open_error(arg, "Cannot find device='%s' nor node-name='%s'", arg, arg);
    } else if (img_secret_resolve(&o) < 0 && !(flags & BLK_O_NO_IO)) {
        /* (info unlocks nothing: it does not look its secrets up either) */
        open_error(arg, "%s", blk_error());
    } else {
        /* the block layer reads the tree: driver=, file.*, backing.* */
        for (int i = 0; i < o.n; i++)
            o.opt[i].used = false;
        bs = blk_open(NULL, NULL, flags, &o);
        if (!bs)
            open_error(arg, "%s", blk_error());
        else if (key && id && fn)
            json_rename(bs, key, id, fn);
    }
    free(key);
    free(id);
    blkopts_free(&o);
    return bs;
}
