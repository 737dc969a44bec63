/* The QMP monitor (vmm/qmp.h): sockets, clients, the dispatcher with
 * QEMU 7.2's checks and error words, the commands and the events.
 *
 * Everything here runs on the main thread, inside main_loop()'s poll:
 * a client's bytes go through its qjson_reader (vmm/qmp-json.c), each
 * complete message is dispatched at once, and answers and events queue
 * in the client's output buffer, written as the socket takes them.  The
 * work per poll round is bounded: at most QMP_READS_PER_ROUND reads of
 * QMP_READ_CHUNK bytes per client, and none while a client has more
 * than QMP_OUT_PAUSE bytes it has not read (it is then not read from
 * until it catches up), so a flooding or stalled client never holds up
 * the console, the timeout or the other clients. */
#include "vmm/qmp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/devices.h"
#include "devices/disk.h"
#include "devices/vga.h"
#include "vmm/display.h"
#include "vmm/hmp.h"
#include "vmm/qmp-drive.h"
#include "vmm/qmp-block.h"
#include "vmm/qmp-json.h"

#define QMP_READ_CHUNK 4096
#define QMP_READS_PER_ROUND 16
#define QMP_OUT_PAUSE (1u << 20)     /* stop reading the client */
#define QMP_OUT_MAX (64u << 20)      /* drop the client */
#define QMP_FLUSH_MS 1000            /* at the end of the run */

/* The QEMU whose protocol this is (query-version, the greeting) */
#define QMP_QEMU_MAJOR 7
#define QMP_QEMU_MINOR 2
#define QMP_QEMU_MICRO 0

struct qmp_client {
    int fd;
    struct qjson_reader *reader;
    struct qjson_buf out;
    size_t out_off;
    bool negotiated;
    bool dead;                 /* closed at the end of this round */
    struct qmp *q;
};

struct qmp_socket {
    int fd;
    char *unix_path;           /* removed at the end, NULL for tcp */
    struct qmp_client *client; /* one at a time, as QEMU's chardev */
};

/* send-key's key events wait here until they are due and the i8042's
 * queue has room for them: presses at once, releases hold-time later. */
#define QMP_KEYQ_MAX 1024
#define QMP_HOLD_MS 100              /* QEMU's default hold-time */
#define QMP_HOLD_MAX_MS 60000

struct key_ev {
    uint8_t code[8];
    uint8_t n;
    uint64_t due;              /* vm_now_ns() */
};

struct qmp {
    struct vm *vm;
    const struct qmp_host *host;
    const char *name;
    struct qmp_socket socks[QMP_MAX_SOCKETS];
    int nsocks;
    bool shutdown_sent;
    struct key_ev keyq[QMP_KEYQ_MAX];
    unsigned keyq_head, keyq_len;
    struct qmp_block *blk;     /* live snapshots, commit jobs */
};

struct qmp_error {
    const char *cls;           /* NULL: no error */
    char desc[512];
};

static void set_error(struct qmp_error *e, const char *cls, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));
static void set_error(struct qmp_error *e, const char *cls, const char *fmt,
                      ...)
{
    va_list ap;

    if (e->cls)
        return;
    e->cls = cls;
    va_start(ap, fmt);
    vsnprintf(e->desc, sizeof(e->desc), fmt, ap);
    va_end(ap);
}

/* ---- output ---- */

static void client_send(struct qmp_client *c, const struct json *msg)
{
    if (c->dead)
        return;
    qjson_write(&c->out, msg);
    qjson_buf_add(&c->out, "\r\n", 2);
    if (c->out.oom || c->out.len - c->out_off > QMP_OUT_MAX)
        c->dead = true; /* a client that reads nothing loses its socket */
}

static void client_flush(struct qmp_client *c)
{
    while (!c->dead && c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out_off,
                         c->out.len - c->out_off, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                c->dead = true;
            if (errno != EINTR)
                break;
            continue;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        if (c->out.cap > 65536) { /* a burst's buffer is not kept */
            free(c->out.p);
            c->out.p = NULL;
            c->out.cap = 0;
        }
    }
}

static struct json *timestamp(void)
{
    struct timeval tv;
    struct json *t = qjson_object();

    gettimeofday(&tv, NULL);
    if (t && (qjson_put(t, "seconds", qjson_int(tv.tv_sec)) ||
              qjson_put(t, "microseconds", qjson_int(tv.tv_usec)))) {
        qjson_free(t);
        t = NULL;
    }
    return t;
}

/* Sends an event (data may be NULL; it is consumed) to every client
 * past negotiation. */
static void qmp_event(struct qmp *q, const char *name, struct json *data)
{
    struct json *ev = qjson_object();

    if (!ev || qjson_put(ev, "timestamp", timestamp()) ||
        qjson_put(ev, "event", qjson_str(name)) ||
        (data && qjson_put(ev, "data", data))) {
        qjson_free(ev);
        return;
    }
    for (int i = 0; i < q->nsocks; i++) {
        struct qmp_client *c = q->socks[i].client;

        if (c && c->negotiated)
            client_send(c, ev);
    }
    qjson_free(ev);
}

static struct json *guest_reason(bool guest, const char *reason)
{
    struct json *d = qjson_object();

    if (d && (qjson_put(d, "guest", qjson_bool(guest)) ||
              qjson_put(d, "reason", qjson_str(reason)))) {
        qjson_free(d);
        d = NULL;
    }
    return d;
}

/* Every drive event waiting, before an event that ends or restarts the
 * machine (QEMU sends them first).  Bounded: the drives' queues are. */
static void block_events_flush(struct qmp *q)
{
    const char *name;
    struct json *data;

    for (int i = 0; i < 65536 && (data = qmp_block_event_next(q->vm, &name));
         i++)
        qmp_event(q, name, data);
}

void qmp_event_reset(struct qmp *q, bool guest)
{
    if (q)
        block_events_flush(q);
    if (q)
        qmp_event(q, "RESET",
                  guest_reason(guest, guest ? "guest-reset"
                                            : "host-qmp-system-reset"));
}

static void send_shutdown(struct qmp *q, bool guest, const char *reason)
{
    if (q->shutdown_sent)
        return;
    q->shutdown_sent = true;
    qmp_event(q, "SHUTDOWN", guest_reason(guest, reason));
}

void qmp_event_shutdown(struct qmp *q, enum bus_stop_reason reason)
{
    if (!q)
        return;
    block_events_flush(q);
    /* Where QEMU exits without an event (isa-debug-exit, Ctrl-A x) or
     * has no such end (--expect, --timeout, a halted guest), none. */
    switch (reason) {
    case BUS_STOP_SIGNAL: send_shutdown(q, false, "host-signal"); break;
    case BUS_STOP_POWEROFF: send_shutdown(q, true, "guest-shutdown"); break;
    case BUS_STOP_RESET:
    case BUS_STOP_TRIPLE_FAULT: send_shutdown(q, true, "guest-reset"); break;
    default: break;
    }
}

/* ---- arguments ---- */

enum arg_type { ARG_STR, ARG_INT, ARG_BOOL, ARG_ARRAY };

struct arg_spec {
    const char *name;
    enum arg_type type;
    bool optional;
};

static bool arg_type_ok(const struct json *v, enum arg_type t)
{
    switch (t) {
    case ARG_STR: return v->type == JSON_STRING;
    case ARG_INT: return v->type == JSON_INT ||
                         (v->type == JSON_UINT && v->u <= INT64_MAX);
    case ARG_BOOL: return v->type == JSON_BOOL;
    case ARG_ARRAY: return v->type == JSON_ARRAY;
    }
    return false;
}

/* The order QEMU's input visitor finds members nobody asked for: it
 * puts the keys, in QDict order, in a GLib hash table and reports the
 * first it iterates to.  For up to 7 keys that table has 8 slots (GLib's
 * g_str_hash, index (hash * 11) mod 7, quadratic probing); more, and the
 * QDict order stands. */
static void ghash_order(const struct json *args, size_t *idx)
{
    size_t slot[8], n = args->c.n;
    bool used[8] = { false };

    if (n > 7)
        return;
    for (size_t i = 0; i < n; i++) {
        const signed char *k = (const signed char *)args->c.keys[idx[i]];
        uint32_t h = 5381;
        unsigned at, step = 0;

        for (; *k; k++)
            h = (h << 5) + h + (uint32_t)*k;
        at = (h * 11) % 7;
        while (used[at])
            at = (at + ++step) & 7;
        used[at] = true;
        slot[at] = idx[i];
    }
    for (size_t at = 0, j = 0; at < 8; at++)
        if (used[at])
            idx[j++] = slot[at];
}

/* QEMU's input visitor: each declared member in order (missing, wrong
 * type), then the first member nobody asked for. */
static bool args_check(const struct json *args, const struct arg_spec *spec,
                       struct qmp_error *err)
{
    static const char *const tname[] = { "string", "integer", "boolean",
                                         "array" };
    size_t *idx;

    for (const struct arg_spec *s = spec; s && s->name; s++) {
        const struct json *v = qjson_get(args, s->name);

        if (!v && !s->optional) {
            set_error(err, "GenericError", "Parameter '%s' is missing",
                      s->name);
            return false;
        }
        if (v && !arg_type_ok(v, s->type)) {
            set_error(err, "GenericError",
                      "Invalid parameter type for '%s', expected: %s",
                      s->name, tname[s->type]);
            return false;
        }
    }
    idx = malloc((args->c.n ? args->c.n : 1) * sizeof(*idx));
    if (!idx) {
        set_error(err, "GenericError", "out of memory");
        return false;
    }
    qjson_order(args, idx);
    ghash_order(args, idx);
    for (size_t i = 0; i < args->c.n; i++) {
        const char *k = args->c.keys[idx[i]];
        bool known = false;

        for (const struct arg_spec *s = spec; s && s->name && !known; s++)
            known = !strcmp(s->name, k);
        if (!known) {
            set_error(err, "GenericError", "Parameter '%s' is unexpected", k);
            break;
        }
    }
    free(idx);
    return !err->cls;
}

/* ---- commands ---- */

struct qmp_ctx {
    struct qmp *q;
    struct qmp_client *c;
    const struct json *args;
    struct qmp_error *err;
};

typedef struct json *(*qmp_cmd_fn)(struct qmp_ctx *x);

struct qmp_cmd {
    const char *name;
    qmp_cmd_fn fn;
    const struct arg_spec *args;
};

static const struct qmp_cmd qmp_cmds[];

static struct json *obj_or_null(struct json *o, bool failed)
{
    if (failed) {
        qjson_free(o);
        return NULL;
    }
    return o;
}

static struct json *cmd_capabilities(struct qmp_ctx *x)
{
    const struct json *en = qjson_get(x->args, "enable");
    char unavail[256] = "";

    if (x->c->negotiated) {
        set_error(x->err, "CommandNotFound",
                  "Capabilities negotiation is already complete, command "
                  "ignored");
        return NULL;
    }
    /* QEMU's one capability, oob, is not offered here */
    for (size_t i = 0; en && i < en->c.n; i++) {
        const struct json *v = en->c.v[i];

        if (v->type != JSON_STRING) {
            set_error(x->err, "GenericError",
                      "Invalid parameter type for 'enable[%zu]', expected: "
                      "string", i);
            return NULL;
        }
        if (strcmp(v->s, "oob")) {
            set_error(x->err, "GenericError",
                      "Parameter 'enable[%zu]' does not accept value '%s'", i,
                      v->s);
            return NULL;
        }
        snprintf(unavail + strlen(unavail), sizeof(unavail) - strlen(unavail),
                 "%s%s", *unavail ? ", " : "", v->s);
    }
    if (*unavail) {
        set_error(x->err, "GenericError", "Capability %s not available",
                  unavail);
        return NULL;
    }
    x->c->negotiated = true;
    return qjson_object();
}

static struct json *version_obj(void)
{
    struct json *v = qjson_object(), *q = qjson_object();
    bool bad = !v || !q;

    bad = bad || qjson_put(q, "major", qjson_int(QMP_QEMU_MAJOR)) ||
          qjson_put(q, "minor", qjson_int(QMP_QEMU_MINOR)) ||
          qjson_put(q, "micro", qjson_int(QMP_QEMU_MICRO));
    if (bad) {
        qjson_free(q);
        qjson_free(v);
        return NULL;
    }
    if (qjson_put(v, "qemu", q) || qjson_put(v, "package", qjson_str("calf")))
        return obj_or_null(v, true);
    return v;
}

static struct json *cmd_query_version(struct qmp_ctx *x)
{
    (void)x;
    return version_obj();
}

static const char *run_state(struct qmp *q)
{
    if (!atomic_load(&q->vm->paused))
        return "running";
    return atomic_load(&q->vm->prelaunch) ? "prelaunch" : "paused";
}

static struct json *cmd_query_status(struct qmp_ctx *x)
{
    struct json *r = qjson_object();

    /* members in QEMU's schema order: its QDict order depends on it */
    return obj_or_null(r, !r ||
        qjson_put(r, "running", qjson_bool(!atomic_load(&x->q->vm->paused))) ||
        qjson_put(r, "singlestep", qjson_bool(false)) ||
        qjson_put(r, "status", qjson_str(run_state(x->q))));
}

static struct json *cmd_query_commands(struct qmp_ctx *x)
{
    struct json *r = qjson_array();

    (void)x;
    for (const struct qmp_cmd *c = qmp_cmds; r && c->name; c++) {
        struct json *e = qjson_object();

        if (!e || qjson_put(e, "name", qjson_str(c->name)) ||
            qjson_append(r, e))
            return obj_or_null(r, true);
    }
    return r;
}

static struct json *cmd_query_name(struct qmp_ctx *x)
{
    struct json *r = qjson_object();

    return obj_or_null(r, !r || (x->q->name &&
                                 qjson_put(r, "name", qjson_str(x->q->name))));
}

static struct json *cmd_query_kvm(struct qmp_ctx *x)
{
    struct json *r = qjson_object();

    (void)x;
    return obj_or_null(r, !r || qjson_put(r, "enabled", qjson_bool(true)) ||
                              qjson_put(r, "present", qjson_bool(true)));
}

static struct json *cpu_entry(const struct vcpu *v)
{
    struct json *e = qjson_object(), *props = qjson_object();
    bool bad = !e || !props;

    bad = bad || qjson_put(props, "core-id", qjson_int(v->id)) ||
          qjson_put(props, "thread-id", qjson_int(0)) ||
          qjson_put(props, "socket-id", qjson_int(0));
    if (bad) {
        qjson_free(props);
        return obj_or_null(e, true);
    }
    bad = qjson_put(e, "thread-id", qjson_int(atomic_load(&v->tid))) ||
          qjson_put(e, "props", props) ||
          qjson_put(e, "qom-path",
                   qjson_strf("/machine/unattached/device[%d]", v->id)) ||
          qjson_put(e, "cpu-index", qjson_int(v->id)) ||
          qjson_put(e, "target", qjson_str("x86_64"));
    return obj_or_null(e, bad);
}

static struct json *cmd_query_cpus_fast(struct qmp_ctx *x)
{
    struct json *r = qjson_array();

    for (int i = 0; r && i < x->q->vm->ncpus; i++)
        if (qjson_append(r, cpu_entry(&x->q->vm->vcpus[i])))
            return obj_or_null(r, true);
    return r;
}

/* The format of an image given without format=: what calf's block layer
 * would probe, from the first bytes (qcow2 and qcow share a magic and
 * differ in version; LUKS; anything else is raw). */
static const char *probe_format(const char *file)
{
    unsigned char h[8];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, h, sizeof(h), 0);

    if (fd >= 0)
        close(fd);
    if (n == 8 && !memcmp(h, "QFI\xfb", 4))
        return h[7] == 1 ? "qcow" : "qcow2";
    if (n >= 6 && !memcmp(h, "LUKS\xba\xbe", 6))
        return "luks";
    return "raw";
}

static struct json *block_entry(struct vm *vm, const struct vm_disk *d)
{
    struct json *e = qjson_object(), *ins = qjson_object(),
                *cache = qjson_object(), *img = qjson_object();
    const char *fmt = d->format ? d->format : probe_format(d->file);
    bool bad = !e || !ins || !cache || !img;
    bool tray = false, locked = false, inserted = true;

    /* a CD's tray and medium (eject, blockdev-change-medium) */
    if (d->cdrom)
        qmp_cd_state(vm, d, &tray, &locked, &inserted);

    bad = bad || qjson_put(cache, "no-flush", qjson_bool(d->cache ==
                                                      DISK_CACHE_UNSAFE)) ||
          qjson_put(cache, "direct", qjson_bool(d->cache == DISK_CACHE_NONE)) ||
          qjson_put(cache, "writeback", qjson_bool(true));
    bad = bad || qjson_put(img, "filename", qjson_str(d->file)) ||
          qjson_put(img, "format", qjson_str(fmt));
    bad = bad || qjson_put(ins, "file", qjson_str(d->file)) ||
          qjson_put(ins, "ro", qjson_bool(d->readonly)) ||
          qjson_put(ins, "drv", qjson_str(fmt)) ||
          qjson_put(ins, "encrypted", qjson_bool(!strcmp(fmt, "luks"))) ||
          qjson_put(ins, "detect_zeroes", qjson_str("off")) ||
          qjson_put(ins, "cache", cache) || (cache = NULL) ||
          qjson_put(ins, "image", img) || (img = NULL);
    bad = bad || qjson_put(e, "device", qjson_str(d->name)) ||
          qjson_put(e, "locked", qjson_bool(locked)) ||
          qjson_put(e, "removable", qjson_bool(d->cdrom)) ||
          qjson_put(e, "type", qjson_str("unknown")) ||
          qjson_put(e, "io-status", qjson_str("ok")) ||
          (d->cdrom && qjson_put(e, "tray_open", qjson_bool(tray))) ||
          (inserted && (qjson_put(e, "inserted", ins) || (ins = NULL)));
    if (!bad && !inserted)
        qjson_free(ins); /* an empty drive: no "inserted" */
    if (bad) {
        qjson_free(cache);
        qjson_free(img);
        qjson_free(ins);
    }
    return obj_or_null(e, bad);
}

static struct json *cmd_query_block(struct qmp_ctx *x)
{
    struct json *r = qjson_array();

    for (int i = 0; r && i < x->q->vm->ndisks; i++)
        if (qjson_append(r, block_entry(x->q->vm, &x->q->vm->disks[i])))
            return obj_or_null(r, true);
    return r;
}

/* ---- query-blockstats (vmm/qmp-drive.c) ---- */

static struct json *cmd_query_blockstats(struct qmp_ctx *x)
{
    const struct json *n = qjson_get(x->args, "query-nodes");

    return qmp_blockstats(x->q->vm, n && n->b);
}

/* BLOCK_IO_ERROR and DEVICE_TRAY_MOVED: what the drives reported since
 * the last round, a bounded number per round. */
static void block_events_pump(struct qmp *q)
{
    const char *name;
    struct json *data;

    for (int i = 0; i < 64 && (data = qmp_block_event_next(q->vm, &name));
         i++)
        qmp_event(q, name, data);
}

/* ---- eject, blockdev-change-medium (vmm/qmp-drive.c) ---- */

static const char *arg_str(const struct json *args, const char *key)
{
    const struct json *v = qjson_get(args, key);

    return v ? v->s : NULL;
}

static struct json *block_cmd_done(struct qmp_ctx *x, int ret,
                                   const struct qmp_block_err *e)
{
    /* the tray's events go before the answer, as QEMU sends them */
    block_events_pump(x->q);
    if (ret) {
        set_error(x->err, e->device_not_found ? "DeviceNotFound"
                                              : "GenericError",
                  "%s", e->desc);
        return NULL;
    }
    return qjson_object();
}

static struct json *cmd_eject(struct qmp_ctx *x)
{
    const struct json *f = qjson_get(x->args, "force");
    struct qmp_block_err e = { 0 };
    int ret = qmp_eject(x->q->vm, arg_str(x->args, "device"),
                        arg_str(x->args, "id"), f && f->b, &e);

    return block_cmd_done(x, ret, &e);
}

static struct json *cmd_change_medium(struct qmp_ctx *x)
{
    const struct json *f = qjson_get(x->args, "force");
    struct qmp_block_err e = { 0 };
    int ret = qmp_change_medium(x->q->vm, arg_str(x->args, "device"),
                                arg_str(x->args, "id"),
                                arg_str(x->args, "filename"),
                                arg_str(x->args, "format"), f && f->b,
                                arg_str(x->args, "read-only-mode"), &e);

    return block_cmd_done(x, ret, &e);
}

static struct json *cmd_stop(struct qmp_ctx *x)
{
    if (!atomic_load(&x->q->vm->paused)) {
        vm_pause(x->q->vm);
        qmp_event(x->q, "STOP", NULL);
    }
    return qjson_object();
}

static struct json *cmd_cont(struct qmp_ctx *x)
{
    if (atomic_load(&x->q->vm->needs_reset)) {
        /* a loadvm failed half way (vmm/hmp-snapshot.c); QEMU's words
         * for a machine that must be reset first */
        set_error(x->err, "GenericError",
                  "Resetting the Virtual Machine is required");
        return NULL;
    }
    if (atomic_load(&x->q->vm->paused)) {
        atomic_store(&x->q->vm->prelaunch, false);
        qmp_event(x->q, "RESUME", NULL);
        vm_resume(x->q->vm);
    }
    return qjson_object();
}

static struct json *cmd_system_reset(struct qmp_ctx *x)
{
    struct vm *vm = x->q->vm;

    if (vm->no_reboot) { /* as QEMU's -no-reboot: the run ends */
        send_shutdown(x->q, false, "host-qmp-system-reset");
        vm_request_stop(vm, BUS_STOP_RESET, CALF_EXIT_OK);
    } else {
        x->q->host->reset(vm);
        /* a stopped machine reset waits as if never started, as QEMU's
         * main loop says after any reset while not running */
        if (atomic_load(&vm->paused))
            atomic_store(&vm->prelaunch, true);
    }
    return qjson_object();
}

/* PPM as QEMU writes it: P6, the size, 255, RGB rows */
static int ppm_fwrite(FILE *f, const struct vga_image *img)
{
    if (fprintf(f, "P6\n%u %u\n255\n", img->width, img->height) < 0 ||
        fwrite(img->rgb, 3, (size_t)img->width * img->height, f) !=
            (size_t)img->width * img->height)
        return errno ? -errno : -EIO;
    return fflush(f) ? -errno : 0;
}

static struct json *cmd_screendump(struct qmp_ctx *x)
{
    const char *path = qjson_get(x->args, "filename")->s;
    const struct json *dev = qjson_get(x->args, "device");
    const struct json *fmt = qjson_get(x->args, "format");
    struct vga_image img = { 0 };
    bool png = false;
    int fd, ret;
    FILE *f;

    if (fmt && !(png = !strcmp(fmt->s, "png")) && strcmp(fmt->s, "ppm")) {
        set_error(x->err, "GenericError",
                  "Parameter 'format' does not accept value '%s'", fmt->s);
        return NULL;
    }
    if (dev) { /* calf's one VGA has no device ID */
        set_error(x->err, "DeviceNotFound", "Device '%s' not found",
                  dev->s);
        return NULL;
    }
    if (qjson_get(x->args, "head")) {
        set_error(x->err, "GenericError",
                  "'head' must be specified together with 'device'");
        return NULL;
    }
    if (!x->q->vm->vga) {
        set_error(x->err, "GenericError",
                  "There is no console to take a screendump from");
        return NULL;
    }
    /* QEMU opens (and so creates) the file before it writes it; the
     * image goes through that one descriptor, so whatever the path names
     * by then is left alone */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        set_error(x->err, "GenericError", "failed to open file '%s': %s",
                  path, strerror(errno));
        return NULL;
    }
    f = fdopen(fd, "wb");
    if (!f) {
        ret = -errno;
        close(fd);
    } else {
        ret = vga_render(x->q->vm->vga, &img, 1);
        errno = 0;
        if (!ret)
            ret = png ? png_fwrite(f, img.rgb, img.width, img.height)
                      : ppm_fwrite(f, &img);
        /* no half image: cut off through the descriptor, not by the
         * path, which may name another file by now (a FIFO or a device
         * has nothing to cut) */
        if (ret)
            (void)!ftruncate(fileno(f), 0);
        if (fclose(f) && !ret)
            ret = -EIO;
        free(img.rgb);
    }
    if (ret) {
        set_error(x->err, "GenericError", "failed to write '%s': %s", path,
                  strerror(-ret));
        return NULL;
    }
    return qjson_object();
}

/* ---- send-key ---- */

/* QEMU's key names (QKeyCode) and their USB HID usages, which
 * vmm/display-keymap.c turns into set 2 */
static const struct { const char *qcode; unsigned hid; } qcodes[] = {
    { "a", 4 }, { "b", 5 }, { "c", 6 }, { "d", 7 }, { "e", 8 }, { "f", 9 },
    { "g", 10 }, { "h", 11 }, { "i", 12 }, { "j", 13 }, { "k", 14 },
    { "l", 15 }, { "m", 16 }, { "n", 17 }, { "o", 18 }, { "p", 19 },
    { "q", 20 }, { "r", 21 }, { "s", 22 }, { "t", 23 }, { "u", 24 },
    { "v", 25 }, { "w", 26 }, { "x", 27 }, { "y", 28 }, { "z", 29 },
    { "1", 30 }, { "2", 31 }, { "3", 32 }, { "4", 33 }, { "5", 34 },
    { "6", 35 }, { "7", 36 }, { "8", 37 }, { "9", 38 }, { "0", 39 },
    { "ret", 40 }, { "esc", 41 }, { "backspace", 42 }, { "tab", 43 },
    { "spc", 44 }, { "minus", 45 }, { "equal", 46 }, { "bracket_left", 47 },
    { "bracket_right", 48 }, { "backslash", 49 }, { "semicolon", 51 },
    { "apostrophe", 52 }, { "grave_accent", 53 }, { "comma", 54 },
    { "dot", 55 }, { "slash", 56 }, { "caps_lock", 57 }, { "f1", 58 },
    { "f2", 59 }, { "f3", 60 }, { "f4", 61 }, { "f5", 62 }, { "f6", 63 },
    { "f7", 64 }, { "f8", 65 }, { "f9", 66 }, { "f10", 67 }, { "f11", 68 },
    { "f12", 69 }, { "print", 70 }, { "scroll_lock", 71 }, { "pause", 72 },
    { "insert", 73 }, { "home", 74 }, { "pgup", 75 }, { "delete", 76 },
    { "end", 77 }, { "pgdn", 78 }, { "right", 79 }, { "left", 80 },
    { "down", 81 }, { "up", 82 }, { "num_lock", 83 }, { "kp_divide", 84 },
    { "kp_multiply", 85 }, { "kp_subtract", 86 }, { "kp_add", 87 },
    { "kp_enter", 88 }, { "kp_1", 89 }, { "kp_2", 90 }, { "kp_3", 91 },
    { "kp_4", 92 }, { "kp_5", 93 }, { "kp_6", 94 }, { "kp_7", 95 },
    { "kp_8", 96 }, { "kp_9", 97 }, { "kp_0", 98 }, { "kp_decimal", 99 },
    { "less", 100 }, { "menu", 101 }, { "ctrl", 224 }, { "shift", 225 },
    { "alt", 226 }, { "meta_l", 227 }, { "ctrl_r", 228 },
    { "shift_r", 229 }, { "alt_r", 230 }, { "meta_r", 231 },
};

/* The rest of QEMU 7.2's QKeyCode names, with their set 2 codes (0xE0
 * prefix in the high byte; 0: no scancode, the key is taken and sends
 * nothing, as QEMU's PS/2 keyboard does) */
static const struct { const char *qcode; uint16_t set2; } qcodes_more[] = {
    { "unmapped", 0 }, { "asterisk", 0x7c }, { "sysrq", 0x7f },
    { "stop", 0xe028 }, { "again", 0 }, { "props", 0 }, { "undo", 0 },
    { "front", 0 }, { "copy", 0 }, { "open", 0 }, { "paste", 0 },
    { "find", 0 }, { "cut", 0 }, { "lf", 0 }, { "help", 0 },
    { "compose", 0xe02f }, { "ro", 0x51 }, { "hiragana", 0x62 },
    { "henkan", 0x64 }, { "yen", 0x6a }, { "muhenkan", 0x67 },
    { "katakanahiragana", 0x13 }, { "kp_comma", 0x6d },
    { "kp_equals", 0x0f }, { "power", 0xe037 }, { "sleep", 0xe03f },
    { "wake", 0xe05e }, { "audionext", 0xe04d }, { "audioprev", 0xe015 },
    { "audiostop", 0xe03b }, { "audioplay", 0xe034 },
    { "audiomute", 0xe023 }, { "volumeup", 0xe032 },
    { "volumedown", 0xe021 }, { "mediaselect", 0xe050 }, { "mail", 0xe048 },
    { "calculator", 0xe02b }, { "computer", 0xe040 }, { "ac_home", 0xe03a },
    { "ac_back", 0xe038 }, { "ac_forward", 0xe030 },
    { "ac_refresh", 0xe020 }, { "ac_bookmarks", 0xe018 }, { "lang1", 0 },
    { "lang2", 0 },

};

static bool qcode_known(const char *name)
{
    for (size_t i = 0; i < sizeof(qcodes) / sizeof(qcodes[0]); i++)
        if (!strcmp(qcodes[i].qcode, name))
            return true;
    for (size_t i = 0; i < sizeof(qcodes_more) / sizeof(qcodes_more[0]); i++)
        if (!strcmp(qcodes_more[i].qcode, name))
            return true;
    return false;
}

/* A QEMU key number (set 1, 0x80 for the E0 prefix) as set 2 bytes */
static size_t number_to_set2(int64_t num, uint8_t *out)
{
    size_t n = 0;

    if (num <= 0 || num > 0xff || (num & 0x7f) == 0)
        return 0;
    for (unsigned c = 1; c < 0x100; c++) {
        if (i8042_set2_to_set1((uint8_t)c) == (num & 0x7f)) {
            if (num & 0x80)
                out[n++] = 0xe0;
            out[n++] = (uint8_t)c;
            return n;
        }
    }
    return 0;
}

/* A key's make (or break) bytes in set 2; 0 when it has none */
static size_t key_set2(const struct json *k, bool release, uint8_t *out)
{
    const struct json *type = qjson_get(k, "type");
    const struct json *data = qjson_get(k, "data");
    size_t n;

    if (!strcmp(type->s, "number")) {
        n = number_to_set2(data->i, out);
        if (n && release) {
            out[n] = out[n - 1];
            out[n - 1] = 0xf0;
            n++;
        }
        return n;
    }
    for (size_t i = 0; i < sizeof(qcodes) / sizeof(qcodes[0]); i++)
        if (!strcmp(qcodes[i].qcode, data->s))
            return keymap_hid_to_set2(qcodes[i].hid, release, out);
    for (size_t i = 0; i < sizeof(qcodes_more) / sizeof(qcodes_more[0]); i++) {
        unsigned c = qcodes_more[i].set2;

        if (strcmp(qcodes_more[i].qcode, data->s) || !c)
            continue;
        n = 0;
        if (c >> 8)
            out[n++] = 0xe0;
        if (release)
            out[n++] = 0xf0;
        out[n++] = (uint8_t)c;
        return n;
    }
    return 0;
}

/* QEMU's checks of one KeyValue, in its visitor's order */
static bool key_check(const struct json *k, size_t i, struct qmp_error *err)
{
    const struct json *type, *data;
    bool number;

    if (k->type != JSON_OBJECT) {
        set_error(err, "GenericError",
                  "Invalid parameter type for 'keys[%zu]', expected: object",
                  i);
        return false;
    }
    type = qjson_get(k, "type");
    if (!type) {
        set_error(err, "GenericError", "Parameter 'keys[%zu].type' is missing",
                  i);
        return false;
    }
    if (type->type != JSON_STRING) {
        set_error(err, "GenericError",
                  "Invalid parameter type for 'keys[%zu].type', expected: "
                  "string", i);
        return false;
    }
    number = !strcmp(type->s, "number");
    if (!number && strcmp(type->s, "qcode")) {
        set_error(err, "GenericError",
                  "Parameter 'type' does not accept value '%s'", type->s);
        return false;
    }
    data = qjson_get(k, "data");
    if (!data) {
        set_error(err, "GenericError", "Parameter 'keys[%zu].data' is missing",
                  i);
        return false;
    }
    if (number ? data->type != JSON_INT : data->type != JSON_STRING) {
        set_error(err, "GenericError",
                  "Invalid parameter type for 'keys[%zu].data', expected: %s",
                  i, number ? "integer" : "string");
        return false;
    }
    if (!number) {
        if (qcode_known(data->s))
            return true;
        set_error(err, "GenericError",
                  "Parameter 'data' does not accept value '%s'", data->s);
        return false;
    }
    return true;
}

static void keyq_push(struct qmp *q, const uint8_t *code, size_t n,
                      uint64_t due)
{
    struct key_ev *e = &q->keyq[(q->keyq_head + q->keyq_len++) %
                                QMP_KEYQ_MAX];

    memcpy(e->code, code, n);
    e->n = (uint8_t)n;
    e->due = due;
}

/* Feeds the i8042 the key events that are due, as its queue drains
 * (each main loop round). */
static void keyq_pump(struct qmp *q)
{
    uint64_t now = q->keyq_len ? vm_now_ns() : 0;

    while (q->keyq_len) {
        struct key_ev *e = &q->keyq[q->keyq_head];

        if (e->due > now || i8042_key_event(q->vm->kbd, e->code, e->n))
            break;
        q->keyq_head = (q->keyq_head + 1) % QMP_KEYQ_MAX;
        q->keyq_len--;
    }
}

/* Presses the keys in order, then hold-time (ms, QEMU's default 100)
 * later releases them in reverse.  The events queue behind those of
 * earlier send-keys and go to the i8042 as its queue has room; a
 * send-key whose events do not all fit in the queue is dropped whole
 * (as QEMU drops input past its queue's limit), so no press is taken
 * without its release. */
static struct json *cmd_send_key(struct qmp_ctx *x)
{
    const struct json *keys = qjson_get(x->args, "keys");
    const struct json *hold = qjson_get(x->args, "hold-time");
    struct qmp *q = x->q;
    int64_t hold_ms = hold ? hold->i : QMP_HOLD_MS;
    uint8_t codes[8];
    size_t n, events = 0;
    uint64_t due;

    for (size_t i = 0; i < keys->c.n; i++)
        if (!key_check(keys->c.v[i], i, x->err))
            return NULL;
    if (!q->vm->kbd)
        return qjson_object();
    for (size_t i = 0; i < keys->c.n; i++)
        if (key_set2(keys->c.v[i], false, codes))
            events += 2;
    if (q->keyq_len + events > QMP_KEYQ_MAX)
        return qjson_object();
    hold_ms = hold_ms < 0 ? 0 : hold_ms > QMP_HOLD_MAX_MS ? QMP_HOLD_MAX_MS
                                                          : hold_ms;
    due = vm_now_ns();
    if (q->keyq_len) {
        uint64_t last = q->keyq[(q->keyq_head + q->keyq_len - 1) %
                                QMP_KEYQ_MAX].due;

        if (last > due)
            due = last;
    }
    for (size_t i = 0; i < keys->c.n; i++)
        if ((n = key_set2(keys->c.v[i], false, codes)))
            keyq_push(q, codes, n, due);
    due += (uint64_t)hold_ms * 1000000u;
    for (size_t i = keys->c.n; i-- > 0;)
        if ((n = key_set2(keys->c.v[i], true, codes)))
            keyq_push(q, codes, n, due);
    keyq_pump(q);
    return qjson_object();
}

/* The ACPI power button: what the guest makes of it is its business. */
static struct json *cmd_system_powerdown(struct qmp_ctx *x)
{
    qmp_event(x->q, "POWERDOWN", NULL);
    acpi_pm_power_button(x->q->vm->acpi_pm);
    return qjson_object();
}

static struct json *cmd_quit(struct qmp_ctx *x)
{
    send_shutdown(x->q, false, "host-qmp-quit");
    vm_request_stop(x->q->vm, BUS_STOP_QUIT, CALF_EXIT_OK);
    return qjson_object();
}

/* ---- human-monitor-command ---- */

static void hmp_info_cpus(struct qmp *q, struct qjson_buf *b)
{
    for (int i = 0; i < q->vm->ncpus; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "%c CPU #%d: thread_id=%d\r\n",
                         i ? ' ' : '*', i, atomic_load(&q->vm->vcpus[i].tid));

        qjson_buf_add(b, line, (size_t)n);
    }
}

/* info block, as QEMU prints its drives (calf's have no node names or
 * QOM paths, so neither is shown) */
static void hmp_info_block(struct qmp *q, struct qjson_buf *b)
{
    for (int i = 0; i < q->vm->ndisks; i++) {
        const struct vm_disk *d = &q->vm->disks[i];
        bool tray = false, locked = false, inserted = true;
        char *s = NULL, rem[64] = "";
        int n;

        if (d->cdrom) {
            qmp_cd_state(q->vm, d, &tray, &locked, &inserted);
            snprintf(rem, sizeof(rem), "    Removable device: %slocked, "
                     "tray %s\n", locked ? "" : "not ",
                     tray ? "open" : "closed");
        }
        if (!inserted)
            n = asprintf(&s, "%s%s: [not inserted]\n%s", i ? "\n" : "",
                         d->name, rem);
        else
            n = asprintf(&s,
                         "%s%s: %s (%s%s)\n%s    Cache mode:       %s%s%s\n",
                         i ? "\n" : "", d->name, d->file,
                         d->format ? d->format : probe_format(d->file),
                         d->readonly ? ", read-only" : "",
                         rem,
                         "writeback",
                         d->cache == DISK_CACHE_NONE ? ", direct" : "",
                         d->cache == DISK_CACHE_UNSAFE ? ", ignore flushes"
                                                       : "");

        if (n > 0)
            qjson_buf_add(b, s, (size_t)n);
        free(s);
    }
}

/* text with \n line ends, as the monitor sends it: \r\n */
static void add_crlf(struct qjson_buf *b, const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n')
            qjson_buf_add(b, "\r", 1);
        qjson_buf_add(b, text + i, 1);
    }
}

/* info registers [-a]: the monitor's CPU (cpu-index, default 0) or all;
 * the vCPUs are parked meanwhile if they were running. */
static void hmp_info_registers(struct qmp_ctx *x, bool all,
                               struct qjson_buf *b)
{
    struct vm *vm = x->q->vm;
    const struct json *ci = qjson_get(x->args, "cpu-index");
    int first = ci ? (int)ci->i : 0;
    bool was_running = !atomic_load(&vm->paused);
    struct qjson_buf text = { 0 };

    if (was_running)
        vm_pause(vm);
    for (int i = all ? 0 : first; i < (all ? vm->ncpus : first + 1); i++)
        if (hmp_dump_vcpu(&vm->vcpus[i], &text))
            qjson_buf_add(&text, "(registers not readable)\n", 26);
    if (was_running)
        vm_resume(vm);
    add_crlf(b, text.p ? text.p : "", text.len);
    free(text.p);
}

static struct json *cmd_hmp(struct qmp_ctx *x)
{
    const char *line = qjson_get(x->args, "command-line")->s;
    const struct json *ci = qjson_get(x->args, "cpu-index");
    struct qjson_buf b = { 0 };
    struct json *r;
    char cmd[64];
    size_t n;

    if (ci && (ci->i < 0 || ci->i >= x->q->vm->ncpus)) {
        set_error(x->err, "GenericError",
                  "Parameter 'cpu-index' expects a CPU number");
        return NULL;
    }

    while (*line == ' ')
        line++;
    n = strcspn(line, " ");
    if (n == 4 && !strncmp(line, "info", 4)) {
        const char *what = line + 4 + strspn(line + 4, " ");

        n = strcspn(what, " ");
        snprintf(cmd, sizeof(cmd), "%.*s", (int)n, what);
        if (!strcmp(cmd, "status")) {
            const char *st = run_state(x->q);

            /* QEMU's HMP: "paused (why)" for a stop not by stop */
            if (!strcmp(st, "prelaunch"))
                st = "paused (prelaunch)";
            qjson_buf_add(&b, "VM status: ", 11);
            qjson_buf_add(&b, st, strlen(st));
            qjson_buf_add(&b, "\r\n", 2);
        } else if (!strcmp(cmd, "cpus")) {
            hmp_info_cpus(x->q, &b);
        } else if (!strcmp(cmd, "block")) {
            struct qjson_buf t = { 0 };

            hmp_info_block(x->q, &t);
            add_crlf(&b, t.p ? t.p : "", t.len);
            free(t.p);
        } else if (!strcmp(cmd, "registers")) {
            const char *opt = what + n + strspn(what + n, " ");

            hmp_info_registers(x, !strncmp(opt, "-a", 2), &b);
        } else {
            char *s;

            if (asprintf(&s, "unknown command: 'info %s'\r\n", cmd) > 0) {
                qjson_buf_add(&b, s, strlen(s));
                free(s);
            }
        }
    } else if (hmp_snapshot(x->q->vm, line, &b)) {
        /* savevm, loadvm, delvm: vmm/hmp-snapshot.c */
    } else if (n) {
        char *s;

        if (asprintf(&s, "unknown command: '%.*s'\r\n", (int)n, line) > 0) {
            qjson_buf_add(&b, s, strlen(s));
            free(s);
        }
    }
    r = qjson_str(b.p ? b.p : "");
    free(b.p);
    return r;
}

/* ---- live block operations and jobs (vmm/qmp-block.c) ---- */

static void block_event(void *opaque, const char *name, struct json *data)
{
    qmp_event(opaque, name, data);
}

static struct json *block_call(struct qmp_ctx *x, const char *name)
{
    const char *cls = NULL;
    char desc[sizeof(x->err->desc)];
    struct json *r;

    if (!x->q->blk) { /* the run is ending */
        set_error(x->err, "GenericError", "The VM is shutting down");
        return NULL;
    }
    r = qmp_block_cmd(x->q->blk, name, x->args, &cls, desc, sizeof(desc));

    if (cls)
        set_error(x->err, cls, "%s", desc);
    return r;
}

#define BLOCK_CMD(fn, name) \
    static struct json *fn(struct qmp_ctx *x) { return block_call(x, name); }
BLOCK_CMD(cmd_snapshot_sync, "blockdev-snapshot-sync")
BLOCK_CMD(cmd_block_commit, "block-commit")
BLOCK_CMD(cmd_query_jobs, "query-jobs")
BLOCK_CMD(cmd_query_block_jobs, "query-block-jobs")
BLOCK_CMD(cmd_job_cancel, "job-cancel")
BLOCK_CMD(cmd_job_complete, "job-complete")
BLOCK_CMD(cmd_job_finalize, "job-finalize")
BLOCK_CMD(cmd_job_dismiss, "job-dismiss")
BLOCK_CMD(cmd_bjob_cancel, "block-job-cancel")
BLOCK_CMD(cmd_bjob_complete, "block-job-complete")
BLOCK_CMD(cmd_bjob_finalize, "block-job-finalize")
BLOCK_CMD(cmd_bjob_dismiss, "block-job-dismiss")

static const struct arg_spec snapshot_sync_args[] = {
    { "device", ARG_STR, true }, { "node-name", ARG_STR, true },
    { "snapshot-file", ARG_STR, false },
    { "snapshot-node-name", ARG_STR, true }, { "format", ARG_STR, true },
    { "mode", ARG_STR, true }, { NULL, 0, false },
};
static const struct arg_spec block_commit_args[] = {
    { "job-id", ARG_STR, true }, { "device", ARG_STR, false },
    { "base-node", ARG_STR, true }, { "base", ARG_STR, true },
    { "top-node", ARG_STR, true }, { "top", ARG_STR, true },
    { "backing-file", ARG_STR, true }, { "speed", ARG_INT, true },
    { "on-error", ARG_STR, true }, { "filter-node-name", ARG_STR, true },
    { "auto-finalize", ARG_BOOL, true }, { "auto-dismiss", ARG_BOOL, true },
    { NULL, 0, false },
};
static const struct arg_spec job_id_args[] = {
    { "id", ARG_STR, false }, { NULL, 0, false },
};
static const struct arg_spec bjob_device_args[] = {
    { "device", ARG_STR, false }, { NULL, 0, false },
};
static const struct arg_spec bjob_cancel_args[] = {
    { "device", ARG_STR, false }, { "force", ARG_BOOL, true },
    { NULL, 0, false },
};

static const struct arg_spec caps_args[] = {
    { "enable", ARG_ARRAY, true }, { NULL, 0, false },
};
static const struct arg_spec hmp_args[] = {
    { "command-line", ARG_STR, false }, { "cpu-index", ARG_INT, true },
    { NULL, 0, false },
};

static const struct arg_spec screendump_args[] = {
    { "filename", ARG_STR, false }, { "device", ARG_STR, true },
    { "head", ARG_INT, true }, { "format", ARG_STR, true },
    { NULL, 0, false },
};

static const struct arg_spec send_key_args[] = {
    { "keys", ARG_ARRAY, false }, { "hold-time", ARG_INT, true },
    { NULL, 0, false },
};

static const struct arg_spec blockstats_args[] = {
    { "query-nodes", ARG_BOOL, true }, { NULL, 0, false },
};

static const struct arg_spec eject_args[] = {
    { "device", ARG_STR, true }, { "id", ARG_STR, true },
    { "force", ARG_BOOL, true }, { NULL, 0, false },
};

static const struct arg_spec change_medium_args[] = {
    { "device", ARG_STR, true }, { "id", ARG_STR, true },
    { "filename", ARG_STR, false }, { "format", ARG_STR, true },
    { "force", ARG_BOOL, true }, { "read-only-mode", ARG_STR, true },
    { NULL, 0, false },
};

static const struct qmp_cmd qmp_cmds[] = {
    { "qmp_capabilities", cmd_capabilities, caps_args },
    { "query-version", cmd_query_version, NULL },
    { "query-commands", cmd_query_commands, NULL },
    { "query-status", cmd_query_status, NULL },
    { "query-name", cmd_query_name, NULL },
    { "query-kvm", cmd_query_kvm, NULL },
    { "query-cpus-fast", cmd_query_cpus_fast, NULL },
    { "query-block", cmd_query_block, NULL },
    { "query-blockstats", cmd_query_blockstats, blockstats_args },
    { "eject", cmd_eject, eject_args },
    { "blockdev-change-medium", cmd_change_medium, change_medium_args },
    { "stop", cmd_stop, NULL },
    { "cont", cmd_cont, NULL },
    { "system_reset", cmd_system_reset, NULL },
    { "system_powerdown", cmd_system_powerdown, NULL },
    { "screendump", cmd_screendump, screendump_args },
    { "send-key", cmd_send_key, send_key_args },
    { "quit", cmd_quit, NULL },
    { "human-monitor-command", cmd_hmp, hmp_args },
    { "blockdev-snapshot-sync", cmd_snapshot_sync, snapshot_sync_args },
    { "block-commit", cmd_block_commit, block_commit_args },
    { "query-jobs", cmd_query_jobs, NULL },
    { "query-block-jobs", cmd_query_block_jobs, NULL },
    { "job-cancel", cmd_job_cancel, job_id_args },
    { "job-complete", cmd_job_complete, job_id_args },
    { "job-finalize", cmd_job_finalize, job_id_args },
    { "job-dismiss", cmd_job_dismiss, job_id_args },
    { "block-job-cancel", cmd_bjob_cancel, bjob_cancel_args },
    { "block-job-complete", cmd_bjob_complete, bjob_device_args },
    { "block-job-finalize", cmd_bjob_finalize, job_id_args },
    { "block-job-dismiss", cmd_bjob_dismiss, job_id_args },
    { NULL, NULL, NULL },
};

/* ---- dispatch ---- */

/* QEMU's qmp_dispatch_check_obj(): members in QDict order. */
static const char *request_check(const struct json *req,
                                 struct qmp_error *err)
{
    size_t *idx = malloc((req->c.n ? req->c.n : 1) * sizeof(*idx));
    const char *exec = NULL;

    if (!idx) {
        set_error(err, "GenericError", "out of memory");
        return NULL;
    }
    qjson_order(req, idx);
    for (size_t i = 0; i < req->c.n && !err->cls; i++) {
        const char *k = req->c.keys[idx[i]];
        const struct json *v = req->c.v[idx[i]];

        if (!strcmp(k, "execute")) {
            if (v->type != JSON_STRING)
                set_error(err, "GenericError",
                          "QMP input member 'execute' must be a string");
            else
                exec = v->s;
        } else if (!strcmp(k, "arguments")) {
            if (v->type != JSON_OBJECT)
                set_error(err, "GenericError",
                          "QMP input member 'arguments' must be an object");
        } else if (strcmp(k, "id")) {
            set_error(err, "GenericError",
                      "QMP input member '%s' is unexpected", k);
        }
    }
    free(idx);
    if (!err->cls && !exec)
        set_error(err, "GenericError", "QMP input lacks member 'execute'");
    return err->cls ? NULL : exec;
}

static struct json *dispatch(struct qmp_client *c, const struct json *req,
                             struct qmp_error *err)
{
    static const struct json no_args = { .type = JSON_OBJECT };
    const struct qmp_cmd *cmd = NULL;
    const char *name = request_check(req, err);
    struct qmp_ctx x = { c->q, c, NULL, err };

    if (!name)
        return NULL;
    for (const struct qmp_cmd *k = qmp_cmds; k->name && !cmd; k++)
        if (!strcmp(k->name, name) &&
            (c->negotiated || k->fn == cmd_capabilities))
            cmd = k;
    if (!cmd) {
        set_error(err, "CommandNotFound", "The command %s has not been found",
                  name);
        return NULL;
    }
    x.args = qjson_get(req, "arguments");
    if (!x.args)
        x.args = &no_args;
    if (!args_check(x.args, cmd->args, err))
        return NULL;
    return cmd->fn(&x);
}

static void on_message(void *opaque, struct json *req, const char *perr)
{
    struct qmp_client *c = opaque;
    struct qmp_error err = { NULL, "" };
    struct json *ret = NULL, *rsp = qjson_object();
    const struct json *id = NULL;
    bool was_negotiated = c->negotiated;

    if (!req)
        set_error(&err, "GenericError", "%s", perr);
    else if (req->type != JSON_OBJECT)
        set_error(&err, "GenericError", "QMP input must be a JSON object");
    else
        id = qjson_get(req, "id");
    if (!err.cls) {
        ret = dispatch(c, req, &err);
        if (!ret && !err.cls)
            set_error(&err, "GenericError", "out of memory");
    }
    /* before negotiation, every unknown command gets one answer */
    if (!was_negotiated && err.cls && !strcmp(err.cls, "CommandNotFound"))
        snprintf(err.desc, sizeof(err.desc),
                 "Expecting capabilities negotiation with 'qmp_capabilities'");
    if (rsp && err.cls) {
        struct json *e = qjson_object();

        qjson_free(ret);
        ret = NULL;
        if (!e || qjson_put(e, "class", qjson_str(err.cls)) ||
            qjson_put(e, "desc", qjson_str(err.desc)) ||
            qjson_put(rsp, "error", e)) {
            qjson_free(rsp);
            rsp = NULL;
        }
    } else if (rsp && qjson_put(rsp, "return", ret)) {
        qjson_free(rsp);
        rsp = NULL;
    }
    if (rsp && id && qjson_put(rsp, "id", qjson_copy(id))) {
        qjson_free(rsp);
        rsp = NULL;
    }
    if (rsp)
        client_send(c, rsp);
    else
        c->dead = true; /* out of memory: this client goes */
    qjson_free(rsp);
    qjson_free(req);
}

/* ---- clients and sockets ---- */

static void client_free(struct qmp_client *c)
{
    if (!c)
        return;
    close(c->fd);
    qjson_reader_free(c->reader);
    free(c->out.p);
    free(c);
}

static void client_greet(struct qmp_client *c)
{
    struct json *g = qjson_object(), *in = qjson_object();

    if (!g || !in || qjson_put(in, "version", version_obj()) ||
        qjson_put(in, "capabilities", qjson_array()) ||
        qjson_put(g, "QMP", in)) {
        qjson_free(in);
        qjson_free(g);
        c->dead = true;
        return;
    }
    client_send(c, g);
    qjson_free(g);
}

static struct qmp_client *client_new(struct qmp *q, int fd)
{
    struct qmp_client *c = calloc(1, sizeof(*c));

    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->q = q;
    c->reader = qjson_reader_new(on_message, c);
    if (!c->reader) {
        client_free(c);
        return NULL;
    }
    client_greet(c);
    client_flush(c);
    return c;
}

static void sock_accept(struct qmp *q, struct qmp_socket *s)
{
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd >= 0)
        s->client = client_new(q, fd);
}

static void client_read(struct qmp_client *c)
{
    char buf[QMP_READ_CHUNK];

    for (int i = 0; i < QMP_READS_PER_ROUND && !c->dead; i++) {
        ssize_t n;

        if (c->out.len - c->out_off > QMP_OUT_PAUSE)
            break;
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            c->dead = true; /* gone, maybe mid-message: nothing to answer */
            break;
        }
        if (n < 0)
            break;
        qjson_reader_feed(c->reader, buf, (size_t)n);
        client_flush(c);
        if (atomic_load(&c->q->vm->stopping))
            break; /* quit: answer, read nothing more */
    }
}

int qmp_pollfds(struct qmp *q, struct pollfd *pfd)
{
    int n = 0;

    for (int i = 0; q && i < q->nsocks; i++) {
        struct qmp_socket *s = &q->socks[i];
        struct qmp_client *c = s->client;

        if (!c) {
            pfd[n++] = (struct pollfd){ .fd = s->fd, .events = POLLIN };
            continue;
        }
        pfd[n++] = (struct pollfd){ .fd = -1 };
        pfd[n++] = (struct pollfd){
            .fd = c->fd,
            .events = (short)((c->out.len - c->out_off > QMP_OUT_PAUSE
                                   ? 0 : POLLIN) |
                              (c->out_off < c->out.len ? POLLOUT : 0)),
        };
    }
    return n;
}

void qmp_dispatch(struct qmp *q, const struct pollfd *pfd, int n)
{
    int k = 0;

    for (int i = 0; q && i < q->nsocks && k < n; i++) {
        struct qmp_socket *s = &q->socks[i];
        struct qmp_client *c = s->client;

        if (!c) {
            if (pfd[k++].revents & POLLIN)
                sock_accept(q, s);
            continue;
        }
        k++;
        if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
            client_read(c);
        k++;
    }
    if (q) {
        keyq_pump(q);
        block_events_pump(q);
        qmp_block_poll(q->blk);
    }
    /* answers and events of this round (they may be for any client),
     * then the clients that went away */
    for (int i = 0; q && i < q->nsocks; i++) {
        struct qmp_client *c = q->socks[i].client;

        if (c)
            client_flush(c);
        if (c && c->dead) {
            client_free(c);
            q->socks[i].client = NULL;
        }
    }
}

/* ---- listeners ---- */

struct spec {
    bool is_unix;
    char addr[108];
    char port[16];
    bool wait;
};

static int parse_spec(const char *spec, struct spec *sp)
{
    const char *p, *opts;
    bool server = false;
    size_t len;

    memset(sp, 0, sizeof(*sp));
    sp->wait = true; /* QEMU's default for a server */
    if (!strncmp(spec, "unix:", 5)) {
        sp->is_unix = true;
        p = spec + 5;
        len = strcspn(p, ",");
        if (!len || len >= sizeof(sp->addr)) {
            vmm_error("--qmp '%s': a socket path of 1 to %zu bytes", spec,
                      sizeof(sp->addr) - 1);
            return -EINVAL;
        }
        memcpy(sp->addr, p, len);
    } else if (!strncmp(spec, "tcp:", 4)) {
        const char *colon;

        p = spec + 4;
        len = strcspn(p, ",");
        colon = memrchr(p, ':', len);
        if (!colon || colon == p || (size_t)(colon - p) >= sizeof(sp->addr) ||
            len - (size_t)(colon - p) - 1 >= sizeof(sp->port) ||
            colon + 1 == p + len) {
            vmm_error("--qmp '%s': tcp:HOST:PORT", spec);
            return -EINVAL;
        }
        memcpy(sp->addr, p, (size_t)(colon - p));
        memcpy(sp->port, colon + 1, len - (size_t)(colon - p) - 1);
    } else {
        vmm_error("--qmp '%s': unix:PATH or tcp:HOST:PORT, with server=on",
                  spec);
        return -EINVAL;
    }
    for (opts = p + len; *opts == ','; opts += len) {
        opts++;
        len = strcspn(opts, ",");
        if ((len == 6 && !strncmp(opts, "server", 6)) ||
            (len == 9 && !strncmp(opts, "server=on", 9)))
            server = true;
        else if ((len == 6 && !strncmp(opts, "nowait", 6)) ||
                 (len == 8 && !strncmp(opts, "wait=off", 8)))
            sp->wait = false;
        else if (len == 7 && !strncmp(opts, "wait=on", 7))
            sp->wait = true;
        else if (!(len == 10 && !strncmp(opts, "server=off", 10))) {
            vmm_error("--qmp '%s': unknown option '%.*s'", spec, (int)len,
                      opts);
            return -EINVAL;
        }
    }
    if (!server) {
        vmm_error("--qmp '%s': calf only listens: add server=on", spec);
        return -EINVAL;
    }
    return 0;
}

int qmp_check_spec(const char *spec)
{
    struct spec sp;

    return parse_spec(spec, &sp);
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >>
                24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(
            &((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

static int listen_tcp(const struct spec *sp, const char *spec)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res, *a;
    int fd = -1, one = 1, r;

    r = getaddrinfo(sp->addr, sp->port, &hints, &res);
    if (r) {
        vmm_error("--qmp '%s': %s", spec, gai_strerror(r));
        return -EINVAL;
    }
    for (a = res; a; a = a->ai_next) {
        if (!is_loopback(a->ai_addr)) {
            vmm_error("--qmp '%s': %s is not a loopback address: the "
                      "monitor has no authentication", spec, sp->addr);
            freeaddrinfo(res);
            return -EPERM;
        }
    }
    for (a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 1)) {
            r = -errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        vmm_error("--qmp '%s': %s", spec, strerror(r ? -r : EINVAL));
    return fd;
}

static int listen_unix(const struct spec *sp, const char *spec)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    memcpy(sun.sun_path, sp->addr, strlen(sp->addr) + 1);
    /* a socket left by an earlier run is replaced, as QEMU does; any
     * other file is not */
    if (!lstat(sp->addr, &st) && S_ISSOCK(st.st_mode))
        unlink(sp->addr);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) ||
        listen(fd, 1)) {
        vmm_error("--qmp '%s': %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* wait=on: the run starts once a client is there (QEMU's default) */
static void wait_client(struct qmp *q, struct qmp_socket *s, const char *spec)
{
    struct pollfd p = { .fd = s->fd, .events = POLLIN };

    fprintf(stderr, "calf: waiting for a QMP client on %s\n", spec);
    while (!s->client) {
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return;
        sock_accept(q, s);
    }
}

struct qmp *qmp_open(struct vm *vm, const struct qmp_host *host,
                     const char *const *specs, int nspecs, const char *name)
{
    struct qmp *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    q->vm = vm;
    q->host = host;
    q->name = name;
    q->blk = qmp_block_new(vm, block_event, q);
    if (!q->blk)
        goto fail;
    for (int i = 0; i < nspecs && i < QMP_MAX_SOCKETS; i++) {
        struct qmp_socket *s = &q->socks[q->nsocks];
        struct spec sp;

        if (parse_spec(specs[i], &sp))
            goto fail;
        s->fd = sp.is_unix ? listen_unix(&sp, specs[i])
                           : listen_tcp(&sp, specs[i]);
        if (s->fd < 0)
            goto fail;
        if (sp.is_unix && !(s->unix_path = strdup(sp.addr))) {
            close(s->fd);
            goto fail;
        }
        q->nsocks++;
        if (sp.wait)
            wait_client(q, s, specs[i]);
    }
    return q;
fail:
    qmp_close(q);
    return NULL;
}

void qmp_end_jobs(struct qmp *q)
{
    if (!q)
        return;
    qmp_block_free(q->blk);
    q->blk = NULL;
}

void qmp_close(struct qmp *q)
{
    uint64_t end = vm_now_ns() + QMP_FLUSH_MS * 1000000ULL;

    if (!q)
        return;
    qmp_end_jobs(q); /* their events go out too */
    /* the last answers and events (SHUTDOWN) reach clients that read */
    for (;;) {
        struct pollfd pfd[QMP_MAX_SOCKETS];
        int n = 0;
        uint64_t now = vm_now_ns();

        for (int i = 0; i < q->nsocks; i++) {
            struct qmp_client *c = q->socks[i].client;

            if (c && !c->dead && c->out_off < c->out.len)
                pfd[n++] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
        }
        if (!n || now >= end)
            break;
        poll(pfd, (nfds_t)n, (int)((end - now) / 1000000) + 1);
        for (int i = 0; i < q->nsocks; i++)
            if (q->socks[i].client)
                client_flush(q->socks[i].client);
    }
    for (int i = 0; i < q->nsocks; i++) {
        client_free(q->socks[i].client);
        close(q->socks[i].fd);
        if (q->socks[i].unix_path)
            unlink(q->socks[i].unix_path);
        free(q->socks[i].unix_path);
    }
    free(q);
}
