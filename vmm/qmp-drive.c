/* query-blockstats and BLOCK_IO_ERROR: see vmm/qmp-drive.h.
 *
 * QEMU shows a drive as a BlockBackend over a graph of nodes: calf's
 * drive is the BlockBackend and its format node (what the guest's
 * requests count at), its host file the "file" node under it (QEMU's
 * "parent" member).  Node names are QEMU's automatic ones (#blockNNN:
 * a counter and two random digits), qdev paths the ones QEMU gives a
 * -drive of the same kind on a PC. */
#include "vmm/qmp-drive.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/ide/ide.h"

/* #blockNDD: node n (file nodes even, format nodes odd, as QEMU opens
 * the file first), DD per process. */
static struct json *node_name(int disk, bool file)
{
    return qjson_strf("#block%d%02d", disk * 2 + !file,
                      (int)(((unsigned)getpid() * 7u + (unsigned)disk * 13u) %
                            100u));
}

/* The qdev path QEMU gives the device: a -drive if=virtio becomes an
 * anonymous virtio-blk-pci, an IDE drive an unattached device numbered
 * after the PC's own 19, in slot order. */
static struct json *qdev_path(const struct vm *vm, const struct vm_disk *d)
{
    int b, u, rank = 0;
    char kind[3];

    if (!strncmp(d->name, "virtio", 6))
        return qjson_strf("/machine/peripheral-anon/device[%s]/virtio-backend",
                          d->name + 6);
    if (sscanf(d->name, "ide%d-%2[a-z]%d", &b, kind, &u) != 3)
        return qjson_str("");
    for (int i = 0; i < vm->ndisks; i++) {
        int b2, u2;
        char k2[3];

        if (sscanf(vm->disks[i].name, "ide%d-%2[a-z]%d", &b2, k2, &u2) == 3 &&
            b2 * 2 + u2 < b * 2 + u)
            rank++;
    }
    return qjson_strf("/machine/unattached/device[%d]", 19 + rank);
}

static uint64_t ld(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* BlockDeviceStats: s NULL for a node that counts nothing but its
 * highest write (QEMU's nodes below the BlockBackend). */
static struct json *device_stats(struct disk_stats *s, uint64_t wr_highest)
{
    static const char *const name[DISK_ACCT_TYPES] = { "rd", "wr", "flush",
                                                       "unmap" };
    struct json *o = qjson_object(), *timed = qjson_array();
    bool bad = !o || !timed;
    char key[64];

    for (int t = 0; !bad && t < DISK_ACCT_TYPES; t++) {
        if (t != DISK_ACCT_FLUSH) {
            snprintf(key, sizeof(key), "%s_bytes", name[t]);
            bad = bad ||
                  qjson_put(o, key, qjson_uint(s ? ld(&s->bytes[t]) : 0));
            snprintf(key, sizeof(key), "%s_merged", name[t]);
            bad = bad || qjson_put(o, key, qjson_int(0));
        }
        snprintf(key, sizeof(key), "%s_operations", name[t]);
        bad = bad || qjson_put(o, key, qjson_uint(s ? ld(&s->ops[t]) : 0));
        snprintf(key, sizeof(key), "%s_total_time_ns", name[t]);
        bad = bad || qjson_put(o, key, qjson_uint(s ? ld(&s->time_ns[t]) : 0));
        snprintf(key, sizeof(key), "failed_%s_operations", name[t]);
        bad = bad || qjson_put(o, key, qjson_uint(s ? ld(&s->failed[t]) : 0));
        snprintf(key, sizeof(key), "invalid_%s_operations", name[t]);
        bad = bad || qjson_put(o, key, qjson_uint(s ? ld(&s->invalid[t]) : 0));
    }
    bad = bad || qjson_put(o, "wr_highest_offset", qjson_uint(wr_highest));
    if (!bad && s) {
        int64_t last = atomic_load_explicit(&s->last_ns, memory_order_relaxed);

        if (last > 0) {
            int64_t idle = disk_acct_now() - last;

            bad = qjson_put(o, "idle_time_ns", qjson_int(idle > 0 ? idle : 0));
        }
    }
    bad = bad || qjson_put(o, "account_invalid", qjson_bool(s != NULL)) ||
          qjson_put(o, "account_failed", qjson_bool(s != NULL));
    if (!bad) {
        bad = qjson_put(o, "timed_stats", timed) != 0; /* takes it */
        timed = NULL;
    }
    if (bad) {
        qjson_free(timed);
        qjson_free(o);
        return NULL;
    }
    return o;
}

/* Whether the image is raw: given as such, or nothing else found in its
 * first bytes (the block layer's probe: qcow, qcow2, LUKS magics). */
static bool is_raw(const struct vm_disk *d)
{
    unsigned char h[6];
    int fd;
    ssize_t n;

    if (d->format)
        return !strcmp(d->format, "raw");
    fd = open(d->file, O_RDONLY | O_CLOEXEC);
    n = fd < 0 ? -1 : pread(fd, h, sizeof(h), 0);
    if (fd >= 0)
        close(fd);
    return !(n >= 4 && !memcmp(h, "QFI\xfb", 4)) &&
           !(n == 6 && !memcmp(h, "LUKS\xba\xbe", 6));
}

/* The host file's node: QEMU's file-posix, with its discard counters. */
static struct json *file_node(struct vm_disk *d, int i, int level)
{
    struct json *o = qjson_object(), *ds = qjson_object();
    struct disk_stats *s = &d->stats;
    bool raw = !level && is_raw(d), bad = !o || !ds;
    uint64_t ok = level ? 0 : ld(&s->discard_ok),
             failed = level ? 0 : ld(&s->discard_failed),
             bytes = level ? 0 : ld(&s->discard_bytes_ok);

    /* a backing file (level > 0) is only read: nothing to count */
    bad = bad || qjson_put(ds, "driver", qjson_str("file")) ||
          qjson_put(ds, "discard-nb-ok", qjson_uint(ok)) ||
          qjson_put(ds, "discard-nb-failed", qjson_uint(failed)) ||
          qjson_put(ds, "discard-bytes-ok", qjson_uint(bytes));
    /* A raw image's writes land where the guest put them; a format's
     * host offsets are not followed (0). */
    bad = bad || qjson_put(o, "stats",
                           device_stats(NULL, raw ? ld(&s->wr_highest) : 0)) ||
          qjson_put(o, "node-name", node_name(i + 100 * level, true));
    if (!bad) {
        bad = qjson_put(o, "driver-specific", ds) != 0; /* takes it */
        ds = NULL;
    }
    if (bad) {
        qjson_free(ds);
        qjson_free(o);
        return NULL;
    }
    return o;
}

/* The backing image `level` (1: the first) under drive i, and (up to
 * depth; 0: not) the ones under it: QEMU's "backing" member, nodes that
 * count nothing. */
static struct json *backing_node(struct vm_disk *d, int i, int level,
                                 int depth)
{
    struct json *o = qjson_object();
    bool bad = !o;

    bad = bad || qjson_put(o, "parent", file_node(d, i, level)) ||
          qjson_put(o, "stats", device_stats(NULL, 0)) ||
          qjson_put(o, "node-name", node_name(i + 100 * level, false)) ||
          (level < depth && depth &&
           qjson_put(o, "backing", backing_node(d, i, level + 1, depth)));
    if (bad) {
        qjson_free(o);
        return NULL;
    }
    return o;
}

/* Whether drive i has no medium (a CD whose disc the monitor took out):
 * QEMU then shows the BlockBackend alone, with no node under it. */
static bool drive_empty(struct vm *vm, int i)
{
    bool open, locked, inserted;

    return !qmp_cd_state(vm, &vm->disks[i], &open, &locked, &inserted) &&
           !inserted;
}

/* The format node: blk says whether as the drive (with the BlockBackend's
 * counters, device and qdev) or as a node of the graph. */
static struct json *drive_entry(struct vm *vm, int i, bool blk)
{
    struct vm_disk *d = &vm->disks[i];
    struct json *o = qjson_object();
    uint64_t high = ld(&d->stats.wr_highest);
    int depth = atomic_load(&d->stats.backing_depth);
    bool bad = !o;

    if (blk && drive_empty(vm, i)) {
        if (bad || qjson_put(o, "device", qjson_str(d->name)) ||
            qjson_put(o, "stats", device_stats(&d->stats, high)) ||
            qjson_put(o, "qdev", qdev_path(vm, d))) {
            qjson_free(o);
            return NULL;
        }
        return o;
    }
    bad = bad || (blk && qjson_put(o, "device", qjson_str(d->name))) ||
          qjson_put(o, "parent", file_node(d, i, 0)) ||
          qjson_put(o, "stats", device_stats(blk ? &d->stats : NULL, high)) ||
          qjson_put(o, "node-name", node_name(i, false)) ||
          (blk && depth > 0 &&
           qjson_put(o, "backing", backing_node(d, i, 1, depth))) ||
          (blk && qjson_put(o, "qdev", qdev_path(vm, d)));
    if (bad) {
        qjson_free(o);
        return NULL;
    }
    return o;
}

struct json *qmp_blockstats(struct vm *vm, bool query_nodes)
{
    struct json *r = qjson_array();

    for (int i = 0; r && i < vm->ndisks; i++) {
        if (query_nodes) {
            /* bdrv_next_node() order: each file node, then its format */
            int depth = atomic_load(&vm->disks[i].stats.backing_depth);

            if (drive_empty(vm, i))
                continue; /* no node */
            if (qjson_append(r, file_node(&vm->disks[i], i, 0)) ||
                qjson_append(r, drive_entry(vm, i, false)))
                goto fail;
            for (int l = 1; l <= depth; l++)
                if (qjson_append(r, file_node(&vm->disks[i], i, l)) ||
                    qjson_append(r, backing_node(&vm->disks[i], i, l, 0)))
                    goto fail;
        } else if (qjson_append(r, drive_entry(vm, i, true))) {
            goto fail;
        }
    }
    return r;
fail:
    qjson_free(r);
    return NULL;
}

/* BLOCK_IO_ERROR's data: QEMU's for an error reported to the guest
 * (werror/rerror=report, the default) on a drive with I/O status on. */
static struct json *io_error_data(struct vm *vm, int i,
                                  const struct disk_event *e)
{
    struct json *o = qjson_object();

    if (o && (qjson_put(o, "device", qjson_str(vm->disks[i].name)) ||
              qjson_put(o, "node-name", node_name(i, false)) ||
              qjson_put(o, "operation",
                        qjson_str(e->write ? "write" : "read")) ||
              qjson_put(o, "action", qjson_str("report")) ||
              qjson_put(o, "nospace", qjson_bool(e->err == ENOSPC)) ||
              qjson_put(o, "reason", qjson_str(strerror(e->err))))) {
        qjson_free(o);
        o = NULL;
    }
    return o;
}

static struct json *tray_data(struct vm *vm, int i, bool open)
{
    struct json *o = qjson_object();

    if (o && (qjson_put(o, "device", qjson_str(vm->disks[i].name)) ||
              qjson_put(o, "tray-open", qjson_bool(open)) ||
              qjson_put(o, "id", qdev_path(vm, &vm->disks[i])))) {
        qjson_free(o);
        o = NULL;
    }
    return o;
}

/* The drives take turns (the monitor's thread only): one flooding
 * errors cannot hold back another's events past a round's budget. */
static int event_turn;

struct json *qmp_block_event_next(struct vm *vm, const char **name)
{
    for (int k = 0; k < vm->ndisks; k++) {
        int i = (event_turn + k) % vm->ndisks;
        struct disk_event e;

        if (!disk_event_pop(&vm->disks[i].stats, &e))
            continue;
        event_turn = (i + 1) % vm->ndisks;
        if (e.kind == DISK_EV_TRAY) {
            *name = "DEVICE_TRAY_MOVED";
            return tray_data(vm, i, e.tray_open);
        }
        *name = "BLOCK_IO_ERROR";
        return io_error_data(vm, i, &e);
    }
    return NULL;
}

/* ---- eject, blockdev-change-medium ---- */

/* QEMU's qmp_get_blk(): by device name or by qdev ID (calf's devices
 * have none but their path).  NULL with the error set. */
static struct vm_disk *find_drive(struct vm *vm, const char *device,
                                  const char *id, struct qmp_block_err *err)
{
    if (!device == !id) {
        snprintf(err->desc, sizeof(err->desc),
                 "Need exactly one of 'device' and 'id'");
        return NULL;
    }
    for (int i = 0; i < vm->ndisks; i++) {
        struct vm_disk *d = &vm->disks[i];
        bool match = device && !strcmp(d->name, device);

        if (id) {
            struct json *q = qdev_path(vm, d);

            match = q && q->type == JSON_STRING && !strcmp(q->s, id);
            qjson_free(q);
        }
        if (match)
            return d;
    }
    err->device_not_found = true;
    snprintf(err->desc, sizeof(err->desc), "Device '%s' not found",
             device ? device : id);
    return NULL;
}

/* The IDE slot of a CD drive (ideB-cdU), or -1. */
static int cd_slot(const struct vm_disk *d)
{
    int b, u;

    if (!d->cdrom || sscanf(d->name, "ide%d-cd%d", &b, &u) != 2)
        return -1;
    return b * 2 + u;
}

/* QEMU's do_open_tray(), its medium taken out (bs NULL) or bs put in,
 * and with close its tray closed: one step (ide_medium_change()), so a
 * guest closing the tray meanwhile cannot fail it.  0, or -1 with the
 * error set. */
static int change(struct vm *vm, struct vm_disk *d, const char *what,
                  bool force, BlockDriverState *bs, const char *name,
                  bool close, struct qmp_block_err *err)
{
    int slot = cd_slot(d), ret;

    if (slot < 0 || !vm->ide) {
        snprintf(err->desc, sizeof(err->desc), "Device '%s' is not removable",
                 what);
        return -1;
    }
    ret = ide_medium_change(vm->ide, slot, force, bs, name, close);
    if (ret == -EBUSY) {
        snprintf(err->desc, sizeof(err->desc),
                 "Device '%s' is locked and force was not specified, "
                 "wait for tray to open and try again", what);
        return -1;
    }
    if (ret) {
        snprintf(err->desc, sizeof(err->desc), "%s", strerror(-ret));
        return -1;
    }
    return 0;
}

int qmp_eject(struct vm *vm, const char *device, const char *id, bool force,
              struct qmp_block_err *err)
{
    struct vm_disk *d = find_drive(vm, device, id, err);

    if (!d)
        return -1;
    return change(vm, d, device ? device : id, force, NULL, NULL, false, err);
}

int qmp_change_medium(struct vm *vm, const char *device, const char *id,
                      const char *filename, const char *format, bool force,
                      const char *ro_mode, struct qmp_block_err *err)
{
    struct vm_disk *d;
    struct disk_opts o;
    BlockDriverState *bs;
    char *spec, *file = NULL, *fmt = NULL;

    if (ro_mode && strcmp(ro_mode, "retain") && strcmp(ro_mode, "read-only") &&
        strcmp(ro_mode, "read-write")) {
        snprintf(err->desc, sizeof(err->desc),
                 "Parameter 'read-only-mode' does not accept value '%s'",
                 ro_mode);
        return -1;
    }
    d = find_drive(vm, device, id, err);
    if (!d)
        return -1;
    /* The image first, as QEMU; a CD reads it read-only whatever the
     * mode (the drive never writes). */
    spec = disk_cdrom_spec(filename);
    if (spec && format) {
        char *s2 = malloc(strlen(spec) + strlen(format) * 2 + 16);

        if (s2) {
            char *w = s2 + sprintf(s2, "%s,format=", spec);

            for (const char *f = format; *f; f++) {
                *w++ = *f;
                if (*f == ',')
                    *w++ = ',';
            }
            *w = 0;
        }
        free(spec);
        spec = s2;
    }
    if (!spec || disk_parse(spec, &o)) {
        free(spec);
        snprintf(err->desc, sizeof(err->desc), "Could not open '%s'", filename);
        return -1;
    }
    free(spec);
    o.stats = &d->stats;
    blk_set_error("%s", "");
    bs = disk_open(&o);
    disk_opts_free(&o);
    if (!bs) {
        const char *why = blk_error();

        if (!strcmp(why, "unknown error"))
            snprintf(err->desc, sizeof(err->desc), "Could not open '%s'",
                     filename);
        else
            snprintf(err->desc, sizeof(err->desc), "%s", why);
        return -1;
    }
    file = strdup(filename);
    fmt = format ? strdup(format) : NULL;
    if (!file || (format && !fmt) ||
        change(vm, d, device ? device : id, force, bs, filename, true, err)) {
        if (!file || (format && !fmt))
            snprintf(err->desc, sizeof(err->desc), "out of memory");
        free(file);
        free(fmt);
        disk_forget(bs);
        blk_close(bs);
        return -1;
    }
    free(d->file);
    free(d->format);
    d->file = file;
    d->format = fmt;
    return 0;
}

int qmp_cd_state(struct vm *vm, const struct vm_disk *d, bool *tray_open,
                 bool *locked, bool *inserted)
{
    struct ide_media m;
    int slot = cd_slot(d);

    if (slot < 0 || !vm->ide || ide_media_get(vm->ide, slot, &m))
        return -1;
    *tray_open = m.tray_open;
    *locked = m.locked;
    *inserted = m.inserted;
    return 0;
}
