/* Live block operations of the QMP monitor (vmm/qmp-block.h).
 *
 * blockdev-snapshot-sync: the new qcow2 overlay is created and opened
 * (without its backing file) first; then the disk is held
 * (disk_live_hold(): the requests in flight end, new ones wait), the old
 * image is flushed and made read-only, becomes the overlay's backing
 * file, and the overlay becomes the disk's image; the disk is released.
 * No request is lost or reordered: each one is wholly before the switch
 * or wholly after (a request served in pieces, piece by piece).
 *
 * block-commit, active (top is the disk's image): a job thread copies
 * every range allocated above the base into the base, 64 KiB at a time,
 * while the guest goes on writing into top; the disk's write tracking
 * (devices/disk.h) marks what the guest writes meanwhile, and the thread
 * copies that again.  Once nothing is left dirty the job is READY (the
 * base then lags the guest by the writes not yet copied).  job-complete
 * (or a soft block-job-cancel) makes the thread hold the disk, copy what
 * is still dirty, flush the base and let go; with auto-finalize=false
 * it then goes on copying what the guest writes while the job is
 * pending, until job-finalize stops it.  The finalization (main thread)
 * holds the disk again, copies what the guest wrote since the thread's
 * last copy (nothing much either way), and then (complete) the base
 * becomes the disk's image and the images above it are closed, or
 * (cancel) top stays and the base is read-only again.  So the guest's
 * I/O pauses for those last copies.  (QEMU's mirror keeps its source
 * drained from convergence to finalization; calf does not hold the disk
 * across a wait for the client: a vCPU waiting for the disk may hold the
 * bus lock, which the main loop needs.)
 * block-commit of images below the disk's image: the thread copies what
 * they have allocated above the base (nobody writes them); at
 * finalization, with the disk held, the image above top is rewritten to
 * name the base as its backing file and the images between are closed.
 *
 * Job states and events are QEMU 7.2's (job.c): created, running,
 * ready (+ BLOCK_JOB_READY), then waiting, pending (+ BLOCK_JOB_PENDING
 * with auto-finalize=false), BLOCK_JOB_COMPLETED, concluded, null
 * (auto-dismiss, or job-dismiss); a cancel goes through aborting and
 * BLOCK_JOB_CANCELLED.  Only the main thread changes a job's state and
 * sends events; the thread reports through the job's lock and wakes the
 * main loop (vm->wake_fd).
 *
 * Images the monitor made read-only (an old image under an overlay) keep
 * the write lock of the open they were made from; a commit writes into
 * them again.  An image opened read-only from the start (a backing file
 * named by the image given to --disk) cannot be committed into. */
#include "vmm/qmp-block.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "devices/disk.h"

#define JOB_GRAN (64u << 10)        /* copy and tracking unit */
#define JOB_IDLE_NS (20u * 1000000) /* a READY job looks again */
#define NODE_NAME_MAX 128
#define MAX_NODES 64
/* A client must not grow calf without end: overlays per disk (each read
 * through all below it, recursively, on a device thread's stack) and
 * jobs kept (concluded ones wait for job-dismiss). */
#define MAX_CHAIN 64
#define MAX_JOBS 64

enum job_status {
    J_CREATED, J_RUNNING, J_READY, J_WAITING, J_PENDING, J_ABORTING,
    J_CONCLUDED, J_NULL,
};

static const char *const status_name[] = {
    "created", "running", "ready", "waiting", "pending", "aborting",
    "concluded", "null",
};

struct job {
    struct qmp_block *b;
    char id[NODE_NAME_MAX];
    int disk;                  /* vm->disks[] */
    struct disk_live *live;
    BlockDriverState *top, *base;
    BlockDriverState *overlay; /* below the disk's image: the one over top */
    char *backing_file;        /* what overlay names then (NULL: the base) */
    int base_depth;            /* hops from top down to base */
    uint64_t size;             /* what is copied: the disk's size at most */
    bool active;
    bool auto_finalize, auto_dismiss;
    int status;                /* main thread only */
    bool cancelled;            /* ends as cancelled (aborting) */
    char err[256];             /* the error it ended with, "" if none */
    pthread_t thread;
    bool started;
    /* between main and the thread */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool req_complete, req_cancel, req_force;
    bool req_stop;             /* job_join(): a following thread ends */
    bool th_ready, th_done;
    int th_ret;
    uint64_t offset, len;
    struct job *next;
};

/* Node names given with snapshot-node-name, for top-node/base-node and
 * node-name. */
struct node {
    char name[NODE_NAME_MAX];
    BlockDriverState *bs;
    int disk;
};

struct qmp_block {
    struct vm *vm;
    qmp_block_event_fn event;
    void *opaque;
    struct job *jobs;
    struct node nodes[MAX_NODES];
    int nnodes;
};

struct cmd_err {
    const char **cls;
    char *desc;
    size_t len;
};

static void fail(struct cmd_err *e, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct cmd_err *e, const char *cls, const char *fmt, ...)
{
    va_list ap;

    *e->cls = cls;
    va_start(ap, fmt);
    vsnprintf(e->desc, e->len, fmt, ap);
    va_end(ap);
}

static const char *arg_str(const struct json *args, const char *key)
{
    const struct json *v = qjson_get(args, key);

    return v && v->type == JSON_STRING ? v->s : NULL;
}

static bool arg_bool(const struct json *args, const char *key, bool def)
{
    const struct json *v = qjson_get(args, key);

    return v && v->type == JSON_BOOL ? v->b : def;
}

static void wake_main(struct vm *vm)
{
    uint64_t one = 1;

    if (write(vm->wake_fd, &one, sizeof(one)) < 0) {
        /* the main loop ticks anyway */
    }
}

/* ---- the block graph of a disk ---- */

static int find_disk(struct qmp_block *b, const char *name)
{
    for (int i = 0; name && i < b->vm->ndisks; i++)
        if (!strcmp(b->vm->disks[i].name, name))
            return i;
    return -1;
}

static struct node *find_node(struct qmp_block *b, const char *name)
{
    for (int i = 0; name && i < b->nnodes; i++)
        if (!strcmp(b->nodes[i].name, name))
            return &b->nodes[i];
    return NULL;
}

static void forget_node(struct qmp_block *b, const BlockDriverState *bs)
{
    for (int i = 0; i < b->nnodes;)
        if (b->nodes[i].bs == bs)
            b->nodes[i] = b->nodes[--b->nnodes];
        else
            i++;
}

static void renumber(BlockDriverState *bs)
{
    for (int d = 0; bs; bs = bs->backing, d++)
        bs->depth = d;
}

static bool in_chain(BlockDriverState *top, const BlockDriverState *bs)
{
    for (; top; top = top->backing)
        if (top == bs)
            return true;
    return false;
}

/* QEMU's bdrv_find_backing_image(): by the name as stored, or as the
 * path it resolves to. */
static BlockDriverState *find_backing(BlockDriverState *top, const char *name)
{
    char *want = realpath(name, NULL);
    BlockDriverState *found = NULL;

    for (BlockDriverState *b = top; b && !found; b = b->backing) {
        char *have = b->backing ? realpath(b->backing->filename, NULL) : NULL;

        if (b->backing && (!strcmp(b->backing_file, name) ||
                           !strcmp(b->backing->filename, name) ||
                           (want && have && !strcmp(want, have))))
            found = b->backing;
        free(have);
    }
    free(want);
    return found;
}

static struct job *disk_job(struct qmp_block *b, int disk)
{
    for (struct job *j = b->jobs; j; j = j->next)
        if (j->disk == disk && j->status < J_CONCLUDED)
            return j;
    return NULL;
}

static void set_disk_file(struct vm_disk *d, const char *file,
                          const char *format)
{
    char *f = strdup(file), *fmt = strdup(format);

    if (!f || !fmt) { /* query-block shows the old names */
        free(f);
        free(fmt);
        return;
    }
    free(d->file);
    free(d->format);
    d->file = f;
    d->format = fmt;
}

/* ---- blockdev-snapshot-sync ---- */

/* Whether the overlay's file may be made (or opened): a plain path, a
 * regular file or nothing yet (a FIFO or a device could hold the main
 * loop for ever), and no image in use, by calf itself included (calf's
 * image creation truncates without taking locks first). */
static bool target_ok(const char *file, const BlockDriverState *old,
                      struct cmd_err *e)
{
    struct stat st;
    int fd;

    if (!strcmp(file, old->filename)) {
        fail(e, "GenericError", "Error: Trying to create an image with the "
             "same filename as the backing file");
        return false;
    }
    if (blk_create_name_check(file) < 0) {
        fail(e, "GenericError", "%s", blk_error());
        return false;
    }
    if (stat(file, &st) < 0)
        return true; /* blk_create() says why it cannot make it */
    if (!S_ISREG(st.st_mode)) {
        fail(e, "GenericError", "Could not create '%s': %s", file,
             S_ISDIR(st.st_mode) ? strerror(EISDIR)
                                 : "Not a regular file");
        return false;
    }
    fd = open(file, O_RDWR | O_CLOEXEC);
    if (fd >= 0 && blk_lock(fd, true, file) < 0) {
        char msg[256];

        snprintf(msg, sizeof(msg), "%s", blk_error());
        msg[strcspn(msg, "\n")] = 0;
        fail(e, "GenericError", "%s", msg);
        close(fd);
        return false;
    }
    if (fd >= 0)
        close(fd);
    return true;
}

static struct json *snapshot_sync(struct qmp_block *b, const struct json *a,
                                  struct cmd_err *e)
{
    const char *device = arg_str(a, "device"), *node = arg_str(a, "node-name");
    const char *file = arg_str(a, "snapshot-file");
    const char *snode = arg_str(a, "snapshot-node-name");
    const char *format = arg_str(a, "format"), *mode = arg_str(a, "mode");
    struct node *n = find_node(b, node);
    int disk = find_disk(b, device);
    struct disk_live *l;
    BlockDriverState *old, *bs;
    bool existing;

    if (mode && strcmp(mode, "existing") && strcmp(mode, "absolute-paths")) {
        fail(e, "GenericError", "Parameter 'mode' does not accept value '%s'",
             mode);
        return NULL;
    }
    existing = mode && !strcmp(mode, "existing");
    if (disk < 0 && n) /* QEMU: the device first, then the node name */
        disk = n->disk;
    if (disk < 0 || (node && !device && !n)) {
        fail(e, "GenericError", "Cannot find device='%s' nor node-name='%s'",
             device ? device : "", node ? node : "");
        return NULL;
    }
    l = disk_live_get(disk);
    if (!l || b->vm->disks[disk].cdrom || b->vm->disks[disk].readonly) {
        fail(e, "GenericError", "Device '%s' is read only",
             b->vm->disks[disk].name);
        return NULL;
    }
    old = disk_live_bs(l);
    if (n && n->bs != old) {
        fail(e, "GenericError", "Node '%s' is busy: it is not the active "
             "layer of '%s'", node, b->vm->disks[disk].name);
        return NULL;
    }
    if (disk_job(b, disk)) {
        fail(e, "GenericError", "Node '%s' is busy: block device is in use "
             "by block job: commit", b->vm->disks[disk].name);
        return NULL;
    }
    if (node && !snode) {
        fail(e, "GenericError", "New overlay node-name missing");
        return NULL;
    }
    if (snode && (find_node(b, snode) || find_disk(b, snode) >= 0)) {
        fail(e, "GenericError", "New overlay node-name already in use");
        return NULL;
    }
    if (snode && strlen(snode) >= NODE_NAME_MAX) {
        fail(e, "GenericError", "Node name too long");
        return NULL;
    }
    if (snode && b->nnodes == MAX_NODES) {
        fail(e, "GenericError", "calf: too many node names (at most %d)",
             MAX_NODES);
        return NULL;
    }
    if (format && strcmp(format, "qcow2")) {
        fail(e, "GenericError", "Backing file not supported for file format "
             "'%s'", format);
        return NULL;
    }
    {
        int depth = 0;

        for (const BlockDriverState *p = old; p; p = p->backing)
            depth++;
        if (depth >= MAX_CHAIN) {
            fail(e, "GenericError", "calf: the chain of '%s' has %d images "
                 "already (at most %d): commit first",
                 b->vm->disks[disk].name, depth, MAX_CHAIN);
            return NULL;
        }
    }
    if (!target_ok(file, old, e))
        return NULL;
    if (!existing) {
        BlockOptions o = { 0 };
        char *abs = realpath(old->filename, NULL);
        int r = blkopts_set(&o, "backing_file", abs ? abs : old->filename);

        if (!r)
            r = blkopts_set(&o, "backing_fmt", old->drv->name);
        if (!r)
            r = blk_create("qcow2", file, old->size, &o);
        blkopts_free(&o);
        free(abs);
        if (r < 0) {
            fail(e, "GenericError", "%s", blk_error());
            return NULL;
        }
    }
    bs = blk_open(file, "qcow2",
                  BLK_O_RDWR | BLK_O_NO_BACKING |
                      (old->flags & (BLK_O_NOCACHE | BLK_O_UNSAFE |
                                     BLK_O_WRITETHROUGH)), NULL);
    if (!bs) {
        fail(e, "GenericError", "%s", blk_error());
        return NULL;
    }
    if (bs->size < old->size) {
        fail(e, "GenericError", "calf: the overlay '%s' (%llu bytes) is "
             "smaller than the disk (%llu bytes)", file,
             (unsigned long long)bs->size, (unsigned long long)old->size);
        blk_close(bs);
        return NULL;
    }
    disk_live_hold(l);
    if (blk_flush(old) < 0) {
        disk_live_release(l);
        blk_close(bs);
        fail(e, "GenericError", "An IO error has occurred");
        return NULL;
    }
    old->read_only = true; /* nothing reads it as its own image now */
    bs->backing = old;
    renumber(bs);
    disk_live_set_bs(l, bs);
    disk_live_release(l);
    if (snode) {
        struct node *nn = &b->nodes[b->nnodes++];

        snprintf(nn->name, sizeof(nn->name), "%s", snode);
        nn->bs = bs;
        nn->disk = disk;
    }
    set_disk_file(&b->vm->disks[disk], file, "qcow2");
    return qjson_object();
}

/* ---- jobs: the copy thread ---- */

static bool job_flag(struct job *j, const bool *flag)
{
    bool v;

    pthread_mutex_lock(&j->lock);
    v = *flag;
    pthread_mutex_unlock(&j->lock);
    return v;
}

static int copy_range(struct job *j, uint64_t off, uint64_t len, uint8_t *buf)
{
    int r = blk_pread(j->top, off, buf, len);

    if (r >= 0)
        r = blk_pwrite(j->base, off, buf, len);
    pthread_mutex_lock(&j->lock);
    if (r >= 0)
        j->offset += len;
    pthread_mutex_unlock(&j->lock);
    return r < 0 ? r : 0;
}

static uint64_t unit_len(const struct job *j, uint64_t pos)
{
    uint64_t size = j->size;

    return size - pos < JOB_GRAN ? size - pos : JOB_GRAN;
}

/* Calls fn for every range of top's chain allocated above the base;
 * with count, the ranges between count as done (QEMU's commit_run
 * counts the whole disk). */
static int scan_above_base(struct job *j,
                           int (*fn)(struct job *, uint64_t, uint64_t,
                                     uint8_t *),
                           uint8_t *buf, bool count)
{
    uint64_t size = j->size;

    for (uint64_t off = 0; off < size;) {
        uint64_t pnum = 0;
        int depth = 0;
        int st = blk_block_status_above(j->top, off, size - off, &pnum, NULL,
                                        &depth, NULL);

        if (st < 0)
            return st;
        if (!pnum)
            return -EIO;
        if ((st & BLK_STATUS_ALLOCATED) && depth < j->base_depth) {
            int r = fn(j, off, pnum, buf);

            if (r < 0)
                return r;
        } else if (count) {
            pthread_mutex_lock(&j->lock);
            j->offset += pnum;
            pthread_mutex_unlock(&j->lock);
        }
        off += pnum;
    }
    return 0;
}

static int mark_fn(struct job *j, uint64_t off, uint64_t len, uint8_t *buf)
{
    (void)buf;
    disk_live_mark(j->live, off, len);
    return 0;
}

/* Below the disk's image: copied once, in units, until a cancel. */
static int copy_fn(struct job *j, uint64_t off, uint64_t len, uint8_t *buf)
{
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < JOB_GRAN ? len - done : JOB_GRAN;
        int r;

        if (job_flag(j, &j->req_cancel))
            return -ECANCELED;
        r = copy_range(j, off + done, n, buf);
        if (r < 0)
            return r;
        done += n;
    }
    return 0;
}

/* Converged, with auto-finalize=false: the job is done (the main thread
 * takes it to pending), and the thread goes on copying what the guest
 * writes until job_join(), so that the finalization's copy under hold is
 * what the guest wrote in the last moments, not all of pending's.  Its
 * result (th_ret again) is read by job_finalize(). */
static int follow(struct job *j, uint8_t *buf, uint64_t pos)
{
    int r = 0;

    pthread_mutex_lock(&j->lock);
    j->th_ret = 0;
    j->th_done = true;
    pthread_mutex_unlock(&j->lock);
    wake_main(j->b->vm);
    while (r == 0) {
        if (disk_live_take_dirty(j->live, &pos)) {
            r = copy_range(j, pos, unit_len(j, pos), buf);
            pos += JOB_GRAN;
            if (job_flag(j, &j->req_stop))
                break;
            continue;
        }
        pthread_mutex_lock(&j->lock);
        if (!j->req_stop) {
            struct timespec ts;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += JOB_IDLE_NS;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&j->cond, &j->lock, &ts);
        }
        if (j->req_stop) {
            pthread_mutex_unlock(&j->lock);
            break;
        }
        pthread_mutex_unlock(&j->lock);
    }
    return r;
}

/* The mirror of an active commit: see the top of the file. */
static int mirror(struct job *j, uint8_t *buf)
{
    uint64_t pos = 0;
    int r = scan_above_base(j, mark_fn, buf, false);

    while (r == 0) {
        bool cancel, force, complete, ready;

        pthread_mutex_lock(&j->lock);
        cancel = j->req_cancel;
        force = j->req_force;
        complete = j->req_complete;
        ready = j->th_ready;
        pthread_mutex_unlock(&j->lock);
        if (cancel && (force || !ready))
            return -ECANCELED;
        if (complete || cancel) {
            /* converge with the guest's I/O held for the copy; what
             * the guest writes after it the finalization copies */
            disk_live_hold(j->live);
            while (r == 0 && disk_live_take_dirty(j->live, &pos))
                r = copy_range(j, pos, unit_len(j, pos), buf);
            if (r == 0)
                r = blk_flush(j->base);
            disk_live_release(j->live);
            if (r == 0 && !j->auto_finalize)
                r = follow(j, buf, pos);
            return r;
        }
        if (disk_live_take_dirty(j->live, &pos)) {
            r = copy_range(j, pos, unit_len(j, pos), buf);
            pos += JOB_GRAN;
            continue;
        }
        if (!ready) {
            r = blk_flush(j->base);
            if (r)
                break;
            pthread_mutex_lock(&j->lock);
            j->th_ready = true;
            pthread_mutex_unlock(&j->lock);
            wake_main(j->b->vm);
        }
        pthread_mutex_lock(&j->lock);
        if (!j->req_cancel && !j->req_complete) {
            struct timespec ts;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += JOB_IDLE_NS;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&j->cond, &j->lock, &ts);
        }
        pthread_mutex_unlock(&j->lock);
    }
    return r;
}

static void *job_thread(void *opaque)
{
    struct job *j = opaque;
    uint8_t *buf = aligned_alloc(4096, JOB_GRAN);
    int r = buf ? 0 : -ENOMEM;

    if (!r && j->active)
        r = mirror(j, buf);
    else if (!r)
        r = scan_above_base(j, copy_fn, buf, true);
    if (!r && !j->active)
        r = blk_flush(j->base);
    free(buf);
    pthread_mutex_lock(&j->lock);
    j->th_ret = r;
    j->th_done = true;
    pthread_mutex_unlock(&j->lock);
    wake_main(j->b->vm);
    return NULL;
}

/* ---- jobs: states and events (main thread) ---- */

static void set_status(struct job *j, int s)
{
    struct json *d = qjson_object();

    j->status = s;
    if (d && (qjson_put(d, "id", qjson_str(j->id)) ||
              qjson_put(d, "status", qjson_str(status_name[s])))) {
        qjson_free(d);
        d = NULL;
    }
    if (d)
        j->b->event(j->b->opaque, "JOB_STATUS_CHANGE", d);
}

static void progress(struct job *j, uint64_t *offset, uint64_t *len)
{
    uint64_t dirty = j->active && j->status < J_CONCLUDED
                         ? disk_live_dirty_count(j->live) * JOB_GRAN : 0;

    pthread_mutex_lock(&j->lock);
    *offset = j->offset;
    *len = j->active ? j->offset + dirty : j->len;
    if (*len < *offset)
        *len = *offset;
    pthread_mutex_unlock(&j->lock);
}

/* BLOCK_JOB_READY, _COMPLETED, _CANCELLED */
static void block_event(struct job *j, const char *name)
{
    struct json *d = qjson_object();
    uint64_t off, len;

    progress(j, &off, &len);
    if (d && (qjson_put(d, "type", qjson_str("commit")) ||
              qjson_put(d, "device", qjson_str(j->id)) ||
              qjson_put(d, "len", qjson_uint(len)) ||
              qjson_put(d, "offset", qjson_uint(off)) ||
              qjson_put(d, "speed", qjson_int(0)) ||
              (j->err[0] && !strcmp(name, "BLOCK_JOB_COMPLETED") &&
               qjson_put(d, "error", qjson_str(j->err))))) {
        qjson_free(d);
        d = NULL;
    }
    if (d)
        j->b->event(j->b->opaque, name, d);
}

static void job_request(struct job *j, bool *flag)
{
    pthread_mutex_lock(&j->lock);
    *flag = true;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

static void job_join(struct job *j)
{
    if (j->started) {
        job_request(j, &j->req_stop);
        pthread_join(j->thread, NULL);
        j->started = false;
    }
}

/* Closes top and what is between it and the base (not the base). */
static void close_above_base(struct qmp_block *b, BlockDriverState *top,
                             BlockDriverState *base)
{
    BlockDriverState *p = top;

    while (p->backing != base)
        p = p->backing;
    p->backing = NULL;
    for (BlockDriverState *q = top; q; q = q->backing)
        forget_node(b, q);
    blk_close(top);
}

/* The end of the job's work, on the main thread (never while a device
 * thread could wait for it: the disk is held only for the last copy and
 * the graph change): the change or its undoing, the events, concluded
 * (and null). */
static void job_finalize(struct job *j)
{
    struct qmp_block *b = j->b;
    bool pivot;

    job_join(j);
    if (j->active && !j->cancelled && !j->err[0] && j->th_ret < 0) {
        /* a copy while pending failed (follow()) */
        snprintf(j->err, sizeof(j->err), "%s", strerror(-j->th_ret));
        set_status(j, J_ABORTING);
    }
    pivot = !j->cancelled && !j->err[0] &&
            (!j->active || job_flag(j, &j->req_complete));
    if (j->active) {
        /* The last copy, with the guest's I/O held: what it wrote since
         * the thread converged (auto-finalize: next to nothing). */
        int r = 0;

        disk_live_hold(j->live);
        if (!j->cancelled && !j->err[0]) {
            uint8_t *buf = aligned_alloc(4096, JOB_GRAN);
            uint64_t pos = 0;

            r = buf ? 0 : -ENOMEM;
            while (r == 0 && disk_live_take_dirty(j->live, &pos))
                r = copy_range(j, pos, unit_len(j, pos), buf);
            if (r == 0)
                r = blk_flush(j->base);
            free(buf);
            if (r < 0) {
                snprintf(j->err, sizeof(j->err), "%s", strerror(-r));
                set_status(j, J_ABORTING);
                pivot = false;
            }
        }
        if (pivot) {
            disk_live_set_bs(j->live, j->base);
            renumber(j->base);
        } else {
            j->base->read_only = true;
        }
        disk_live_track_stop(j->live);
        disk_live_release(j->live);
        if (pivot) {
            close_above_base(b, j->top, j->base);
            set_disk_file(&b->vm->disks[j->disk], j->base->filename,
                          j->base->drv->name);
        }
    } else {
        int r = 0;

        disk_live_hold(j->live);
        if (pivot) {
            BlockDriverState *o = j->overlay;
            bool ro = o->read_only;

            o->read_only = false;
            /* QEMU writes backing-file as given, unchecked */
            r = blk_change_backing_file(o, j->backing_file ? j->backing_file
                                                           : j->base->filename,
                                        j->base->drv->name);
            if (r == 0)
                r = blk_flush(o);
            o->read_only = ro;
            if (r == 0) {
                o->backing = j->base;
                renumber(disk_live_bs(j->live));
            }
        }
        j->base->read_only = true;
        disk_live_release(j->live);
        if (pivot && r == 0) /* nothing reads top and below it now */
            close_above_base(b, j->top, j->base);
        else if (pivot)
            snprintf(j->err, sizeof(j->err), "%s", strerror(-r));
    }
    if (j->cancelled)
        block_event(j, "BLOCK_JOB_CANCELLED");
    else
        block_event(j, "BLOCK_JOB_COMPLETED");
    set_status(j, J_CONCLUDED);
    if (j->auto_dismiss)
        set_status(j, J_NULL);
}

static void job_free(struct qmp_block *b, struct job *j)
{
    for (struct job **p = &b->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    job_join(j);
    free(j->backing_file);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    free(j);
}

/* The thread ended: on to pending (success) or aborting. */
static void job_ended(struct job *j)
{
    bool forced;
    int r;

    pthread_mutex_lock(&j->lock);
    r = j->th_ret;
    forced = j->req_cancel && j->req_force;
    pthread_mutex_unlock(&j->lock);
    /* with auto-finalize=false an active commit's thread follows the
     * guest while pending (follow()): job_finalize() joins it */
    /* a forced cancel that came while the thread was ending wins */
    if (r == -ECANCELED || (forced && r == 0))
        j->cancelled = true;
    else if (r < 0)
        snprintf(j->err, sizeof(j->err), "%s", strerror(-r));
    if (j->cancelled || j->err[0]) {
        set_status(j, J_ABORTING);
        job_finalize(j);
        return;
    }
    set_status(j, J_WAITING);
    set_status(j, J_PENDING);
    if (!j->auto_finalize) {
        struct json *d = qjson_object();

        if (d && (qjson_put(d, "type", qjson_str("commit")) ||
                  qjson_put(d, "id", qjson_str(j->id)))) {
            qjson_free(d);
            d = NULL;
        }
        if (d)
            j->b->event(j->b->opaque, "BLOCK_JOB_PENDING", d);
        return;
    }
    job_finalize(j);
}

void qmp_block_poll(struct qmp_block *b)
{
    for (struct job *j = b ? b->jobs : NULL, *next; j; j = next) {
        bool ready, done;

        next = j->next;
        pthread_mutex_lock(&j->lock);
        ready = j->th_ready;
        done = j->th_done;
        pthread_mutex_unlock(&j->lock);
        if (j->status == J_RUNNING && ready) {
            set_status(j, J_READY);
            block_event(j, "BLOCK_JOB_READY");
        }
        if (done && (j->status == J_RUNNING || j->status == J_READY))
            job_ended(j);
        if (j->status == J_NULL)
            job_free(b, j);
    }
}

/* ---- block-commit ---- */

static bool id_wellformed(const char *id)
{
    if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z')))
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
              *p == '_'))
            return false;
    return strlen(id) < NODE_NAME_MAX;
}

static struct job *find_job(struct qmp_block *b, const char *id)
{
    for (struct job *j = b->jobs; id && j; j = j->next)
        if (!strcmp(j->id, id))
            return j;
    return NULL;
}

static struct json *block_commit(struct qmp_block *b, const struct json *a,
                                 struct cmd_err *e)
{
    const char *device = arg_str(a, "device"), *job_id = arg_str(a, "job-id");
    const char *top_s = arg_str(a, "top"), *base_s = arg_str(a, "base");
    const char *top_n = arg_str(a, "top-node");
    const char *base_n = arg_str(a, "base-node");
    const char *on_error = arg_str(a, "on-error");
    int disk = find_disk(b, device);
    BlockDriverState *live_bs, *top, *base;
    struct disk_live *l;
    struct node *n;
    struct job *j;

    if (disk < 0 && (n = find_node(b, device)))
        disk = n->disk;
    if (disk < 0) {
        fail(e, "DeviceNotFound", "Device '%s' not found", device);
        return NULL;
    }
    l = disk_live_get(disk);
    if (!l) {
        fail(e, "GenericError", "Device '%s' is read only",
             b->vm->disks[disk].name);
        return NULL;
    }
    if (disk_job(b, disk)) {
        fail(e, "GenericError", "Node '%s' is busy: block device is in use "
             "by block job: commit", b->vm->disks[disk].name);
        return NULL;
    }
    live_bs = top = disk_live_bs(l);
    if (top_n && top_s) {
        fail(e, "GenericError", "'top-node' and 'top' are mutually exclusive");
        return NULL;
    } else if (top_n) {
        n = find_node(b, top_n);
        if (!n) {
            fail(e, "GenericError", "Cannot find device='' nor node-name='%s'",
                 top_n);
            return NULL;
        }
        if (!in_chain(live_bs, n->bs)) {
            fail(e, "GenericError", "'%s' is not in this backing file chain",
                 top_n);
            return NULL;
        }
        top = n->bs;
    } else if (top_s && strcmp(top_s, live_bs->filename)) {
        top = find_backing(live_bs, top_s);
        if (!top) {
            fail(e, "GenericError", "Top image file %s not found", top_s);
            return NULL;
        }
    }
    if (base_n && base_s) {
        fail(e, "GenericError",
             "'base-node' and 'base' are mutually exclusive");
        return NULL;
    } else if (base_n) {
        n = find_node(b, base_n);
        if (!n) {
            fail(e, "GenericError", "Cannot find device='' nor node-name='%s'",
                 base_n);
            return NULL;
        }
        if (!in_chain(top, n->bs)) {
            fail(e, "GenericError", "'%s' is not in this backing file chain",
                 base_n);
            return NULL;
        }
        base = n->bs;
    } else if (base_s) {
        base = find_backing(top, base_s);
        if (!base) {
            fail(e, "GenericError", "Can't find '%s' in the backing chain",
                 base_s);
            return NULL;
        }
    } else {
        base = top; /* the bottom of the chain (QEMU's bdrv_find_base) */
        while (base->backing)
            base = base->backing;
    }
    if (top == base) {
        fail(e, "GenericError", "cannot commit an image into itself");
        return NULL;
    }
    if (on_error && strcmp(on_error, "report")) {
        fail(e, "GenericError", "calf: block-commit supports on-error=report "
             "only");
        return NULL;
    }
    if (top == live_bs && qjson_get(a, "backing-file")) {
        fail(e, "GenericError",
             "'backing-file' specified, but 'top' is the active layer");
        return NULL;
    }
    if (!(base->flags & BLK_O_RDWR)) {
        fail(e, "GenericError", "Could not reopen '%s' read-write: calf "
             "opened it read-only as a backing file", base->filename);
        return NULL;
    }
    if (!job_id)
        job_id = b->vm->disks[disk].name;
    if (!id_wellformed(job_id)) {
        fail(e, "GenericError", "Invalid job ID '%s'", job_id);
        return NULL;
    }
    if (find_job(b, job_id)) {
        fail(e, "GenericError", "Job ID '%s' already in use", job_id);
        return NULL;
    }
    {
        const struct json *sp = qjson_get(a, "speed");

        /* QEMU's block_job_set_speed(), when it makes the job */
        if (sp && sp->type == JSON_INT && sp->i < 0) {
            fail(e, "GenericError", "Parameter 'speed' expects a "
                 "non-negative value");
            return NULL;
        }
    }
    {
        int njobs = 0;

        for (struct job *k = b->jobs; k; k = k->next)
            njobs++;
        if (njobs >= MAX_JOBS) {
            fail(e, "GenericError", "calf: %d jobs kept already: dismiss "
                 "the concluded ones (job-dismiss)", njobs);
            return NULL;
        }
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        fail(e, "GenericError", "out of memory");
        return NULL;
    }
    snprintf(j->id, sizeof(j->id), "%s", job_id);
    j->b = b;
    j->disk = disk;
    j->live = l;
    j->top = top;
    j->base = base;
    j->active = top == live_bs;
    if (arg_str(a, "backing-file") &&
        !(j->backing_file = strdup(arg_str(a, "backing-file")))) {
        free(j);
        fail(e, "GenericError", "out of memory");
        return NULL;
    }
    for (BlockDriverState *p = live_bs; !j->active && p; p = p->backing)
        if (p->backing == top)
            j->overlay = p;
    for (BlockDriverState *p = top; p != base; p = p->backing)
        j->base_depth++;
    /* a mode=existing overlay may be larger than the disk: what lies
     * past the disk's end the guest never sees, and the base ends there */
    j->size = top->size < disk_live_size(l) ? top->size : disk_live_size(l);
    j->auto_finalize = arg_bool(a, "auto-finalize", true);
    j->auto_dismiss = arg_bool(a, "auto-dismiss", true);
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    if (!j->active && !(j->overlay->flags & BLK_O_RDWR)) {
        fail(e, "GenericError", "Could not reopen '%s' read-write: calf "
             "opened it read-only as a backing file", j->overlay->filename);
        job_free(b, j);
        return NULL;
    }
    /* the base writable, the guest's writes tracked from here on */
    disk_live_hold(l);
    int r = j->active ? disk_live_track_start(l, JOB_GRAN) : 0;
    if (!r)
        base->read_only = false;
    disk_live_release(l);
    if (r) {
        fail(e, "GenericError", "%s", strerror(-r));
        job_free(b, j);
        return NULL;
    }
    if (!j->active)
        j->len = j->size; /* QEMU's commit: the whole disk */
    j->next = b->jobs;
    b->jobs = j;
    set_status(j, J_CREATED);
    r = pthread_create(&j->thread, NULL, job_thread, j);
    j->started = !r;
    if (r) {
        snprintf(j->err, sizeof(j->err), "%s", strerror(r));
        set_status(j, J_ABORTING);
        job_finalize(j);
        return qjson_object();
    }
    set_status(j, J_RUNNING);
    return qjson_object();
}

/* ---- job commands ---- */

static struct job *job_by_id(struct qmp_block *b, const char *id,
                             bool block_job, struct cmd_err *e)
{
    struct job *j = find_job(b, id);

    if (!j && block_job)
        fail(e, "DeviceNotActive", "Block job '%s' not found", id);
    else if (!j)
        fail(e, "GenericError", "Job not found");
    return j;
}

/* QEMU's JobVerbTable */
enum { V_CANCEL, V_COMPLETE, V_FINALIZE, V_DISMISS };
static const char *const verb_name[] = { "cancel", "complete", "finalize",
                                         "dismiss" };

static bool verb_ok(struct job *j, int verb, struct cmd_err *e)
{
    int s = j->status;
    bool ok = verb == V_CANCEL ? s <= J_PENDING && s != J_ABORTING
            : verb == V_COMPLETE ? s == J_READY
            : verb == V_FINALIZE ? s == J_PENDING
            : s == J_CONCLUDED;

    if (!ok)
        fail(e, "GenericError", "Job '%s' in state '%s' cannot accept "
             "command verb '%s'", j->id, status_name[s], verb_name[verb]);
    return ok;
}

static struct json *job_cancel(struct job *j, bool force, struct cmd_err *e)
{
    if (!verb_ok(j, V_CANCEL, e))
        return NULL;
    if (j->status == J_PENDING) { /* the thread ended: undo, abort */
        j->cancelled = true;
        set_status(j, J_ABORTING);
        job_finalize(j);
        return qjson_object();
    }
    pthread_mutex_lock(&j->lock);
    j->req_force |= force || j->status != J_READY;
    pthread_mutex_unlock(&j->lock);
    job_request(j, &j->req_cancel);
    return qjson_object();
}

static struct json *job_complete(struct job *j, struct cmd_err *e)
{
    if (!verb_ok(j, V_COMPLETE, e))
        return NULL;
    if (!j->active || job_flag(j, &j->req_cancel)) {
        fail(e, "GenericError", "The active block job '%s' cannot be "
             "completed", j->id);
        return NULL;
    }
    job_request(j, &j->req_complete);
    return qjson_object();
}

static struct json *job_finalize_cmd(struct job *j, struct cmd_err *e)
{
    if (!verb_ok(j, V_FINALIZE, e))
        return NULL;
    job_finalize(j);
    if (j->status == J_NULL)
        job_free(j->b, j);
    return qjson_object();
}

static struct json *job_dismiss(struct job *j, struct cmd_err *e)
{
    if (!verb_ok(j, V_DISMISS, e))
        return NULL;
    set_status(j, J_NULL);
    job_free(j->b, j);
    return qjson_object();
}

static struct json *query_jobs(struct qmp_block *b, bool block_jobs)
{
    struct json *r = qjson_array();

    for (struct job *j = b->jobs; r && j; j = j->next) {
        struct json *o = qjson_object();
        uint64_t off, len;
        bool bad = !o;

        progress(j, &off, &len);
        if (block_jobs)
            bad = bad || qjson_put(o, "type", qjson_str("commit")) ||
                  qjson_put(o, "device", qjson_str(j->id)) ||
                  qjson_put(o, "len", qjson_uint(len)) ||
                  qjson_put(o, "offset", qjson_uint(off)) ||
                  qjson_put(o, "busy", qjson_bool(j->status == J_RUNNING)) ||
                  qjson_put(o, "paused", qjson_bool(false)) ||
                  qjson_put(o, "speed", qjson_int(0)) ||
                  qjson_put(o, "io-status", qjson_str("ok")) ||
                  qjson_put(o, "ready", qjson_bool(j->status == J_READY)) ||
                  qjson_put(o, "status", qjson_str(status_name[j->status])) ||
                  qjson_put(o, "auto-finalize", qjson_bool(j->auto_finalize)) ||
                  qjson_put(o, "auto-dismiss", qjson_bool(j->auto_dismiss));
        else
            bad = bad || qjson_put(o, "id", qjson_str(j->id)) ||
                  qjson_put(o, "type", qjson_str("commit")) ||
                  qjson_put(o, "status", qjson_str(status_name[j->status])) ||
                  qjson_put(o, "current-progress", qjson_uint(off)) ||
                  qjson_put(o, "total-progress", qjson_uint(len));
        if (j->err[0] || j->cancelled)
            bad = bad || qjson_put(o, "error", qjson_str(
                             j->err[0] ? j->err : strerror(ECANCELED)));
        if (bad || qjson_append(r, o)) {
            if (bad)
                qjson_free(o);
            qjson_free(r);
            return NULL;
        }
    }
    return r;
}

/* ---- the interface ---- */

struct json *qmp_block_cmd(struct qmp_block *b, const char *name,
                           const struct json *args, const char **cls,
                           char *desc, size_t desc_len)
{
    struct cmd_err e = { cls, desc, desc_len };
    const char *id = arg_str(args, "id"), *dev = arg_str(args, "device");
    bool block_job = !strncmp(name, "block-job-", 10);
    struct job *j;

    *cls = NULL;
    if (!strcmp(name, "blockdev-snapshot-sync"))
        return snapshot_sync(b, args, &e);
    if (!strcmp(name, "block-commit"))
        return block_commit(b, args, &e);
    if (!strcmp(name, "query-jobs"))
        return query_jobs(b, false);
    if (!strcmp(name, "query-block-jobs"))
        return query_jobs(b, true);
    j = job_by_id(b, block_job && dev ? dev : id, block_job, &e);
    if (!j)
        return NULL;
    if (!strcmp(name, "job-cancel"))
        return job_cancel(j, true, &e);
    if (!strcmp(name, "block-job-cancel"))
        return job_cancel(j, arg_bool(args, "force", false), &e);
    if (!strcmp(name, "job-complete") || !strcmp(name, "block-job-complete"))
        return job_complete(j, &e);
    if (!strcmp(name, "job-finalize") || !strcmp(name, "block-job-finalize"))
        return job_finalize_cmd(j, &e);
    if (!strcmp(name, "job-dismiss") || !strcmp(name, "block-job-dismiss"))
        return job_dismiss(j, &e);
    fail(&e, "CommandNotFound", "The command %s has not been found", name);
    return NULL;
}

struct qmp_block *qmp_block_new(struct vm *vm, qmp_block_event_fn event,
                                void *opaque)
{
    struct qmp_block *b = calloc(1, sizeof(*b));

    if (b) {
        b->vm = vm;
        b->event = event;
        b->opaque = opaque;
    }
    return b;
}

void qmp_block_free(struct qmp_block *b)
{
    if (!b)
        return;
    /* force-cancel what runs, finish what waits, as at QEMU's exit */
    for (struct job *j = b->jobs; j; j = j->next)
        if (j->status < J_PENDING)
            job_request(j, &j->req_force), job_request(j, &j->req_cancel);
    while (b->jobs) {
        struct job *j = b->jobs;

        if (j->status < J_PENDING) {
            job_join(j);
            job_ended(j);
        }
        if (j->status == J_PENDING) { /* auto-finalize=false: let go */
            j->cancelled = true;
            set_status(j, J_ABORTING);
            job_finalize(j);
        }
        job_free(b, j);
    }
    free(b);
}
