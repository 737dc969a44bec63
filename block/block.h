/* The block layer: one driver interface, format drivers (raw, qcow2) and
 * backing chains.  Nothing here knows about KVM or devices.
 *
 * Conventions: functions return 0 (or a count) on success and a negative
 * errno on failure.  The failing function records a one-line message with
 * blk_set_error(); callers print it with blk_error(), adding their own
 * context ("calf-img: Could not open 'x': <message>").
 */
#ifndef CALF_BLOCK_H
#define CALF_BLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#define BLK_SECTOR_SIZE 512

/* blk_open() flags */
#define BLK_O_RDWR        0x0001 /* open for writing (takes the write lock) */
#define BLK_O_NO_BACKING  0x0002 /* do not open the backing chain */
#define BLK_O_SHARE       0x0004 /* -U/--force-share: no lock (read-only) */
#define BLK_O_NOCACHE     0x0008 /* O_DIRECT on the host file */
#define BLK_O_UNSAFE      0x0010 /* flush is a no-op (cache=unsafe) */
#define BLK_O_NO_REPAIR   0x0020 /* do not repair a dirty image on open */
#define BLK_O_CHECK       0x0040 /* opened to be checked: allow damage */
#define BLK_O_FILL        0x0080 /* written in long runs into ranges that hold
                                    nothing yet (convert's target) */
#define BLK_O_NO_IO       0x0100 /* metadata only (info): an encrypted image
                                    is not unlocked, its key not needed */
#define BLK_O_BITMAPS     0x0200 /* opened to edit persistent bitmaps
                                    (see blk_bitmap()) */
#define BLK_O_WRITETHROUGH 0x0400 /* each write flushes before it completes
                                     (cache=writethrough, qemu-io's default) */
#define BLK_O_AS_BACKING   0x0800 /* opened by name as another image's backing
                                     file (info --backing-chain): named as
                                     QEMU names a backing node */

/* blk_pwrite_zeroes() flags */
#define BLK_ZERO_MAY_UNMAP 0x1 /* the range may be deallocated */

/* blk_block_status() result bits */
#define BLK_STATUS_DATA       0x01 /* reads come from data stored here */
#define BLK_STATUS_ZERO       0x02 /* reads as zeros */
#define BLK_STATUS_ALLOCATED  0x04 /* this layer decides the content */
#define BLK_STATUS_OFFSET     0x08 /* *host_offset is valid */
#define BLK_STATUS_COMPRESSED 0x10 /* stored compressed */

/* preallocation modes (create, truncate) */
enum blk_prealloc {
    BLK_PREALLOC_OFF,
    BLK_PREALLOC_METADATA,
    BLK_PREALLOC_FALLOC,
    BLK_PREALLOC_FULL,
};
/* or'ed into a truncate's mode: a grow whose new size the next flush
 * makes durable rather than the grow itself (a node grown as a host file
 * under a format whose flush reaches it); drivers that do not say they
 * heed it never see it */
#define BLK_PREALLOC_NO_SYNC 0x100
int blk_prealloc_parse(const char *s); /* -EINVAL if unknown */
const char *blk_prealloc_name(int mode);

/* ---- key=value option lists ("-o a=b,c=d"; ",," escapes a comma) ---- */

typedef struct BlockOpt {
    char *key;
    char *value;
    bool used;
} BlockOpt;

typedef struct BlockOptions {
    int n;
    BlockOpt *opt;
} BlockOptions;

/* Appends the options of str to o; later keys override earlier ones. */
int blkopts_parse(BlockOptions *o, const char *str);
int blkopts_set(BlockOptions *o, const char *key, const char *value);
/* Lookups mark the option used; NULL / default when absent. */
const char *blkopts_get(BlockOptions *o, const char *key);
int blkopts_get_bool(BlockOptions *o, const char *key, bool def, bool *out);
int blkopts_get_size(BlockOptions *o, const char *key, uint64_t def, uint64_t *out);
int blkopts_get_uint(BlockOptions *o, const char *key, uint64_t def, uint64_t *out);
/* The first option nobody asked for, or NULL. */
const char *blkopts_first_unused(const BlockOptions *o);
void blkopts_free(BlockOptions *o);

/* Sizes as qemu-img takes them: 512, 64k, 1.5G, 2T (powers of 1024);
 * a bare number is bytes.  Returns -EINVAL on garbage or overflow. */
int blk_parse_size(const char *s, uint64_t *out);
/* "64 MiB", "1.5 GiB", "512 B" (qemu's size_to_str) into buf. */
char *blk_size_to_str(uint64_t size, char *buf, size_t len);

/* ---- errors ---- */
void blk_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *blk_error(void);
/* The image tool that hints name ("repair it with 'calf-img check -r
 * all'"): "calf-img", which calf run keeps; the tools set it to
 * "qemu-img" when they run under a qemu-* name, as QEMU's say. */
extern const char *blk_img_tool;

/* ---- drivers ---- */

typedef struct BlockDriverState BlockDriverState;
typedef struct BlockDriver BlockDriver;
typedef struct BlockBitmapReq BlockBitmapReq;

/* A LUKS header as `info` shows it (QAPI QCryptoBlockInfoLUKS). */
typedef struct BlockLuksInfo {
    char cipher_alg[16];      /* "aes-256" */
    char cipher_mode[8];      /* "xts" */
    char ivgen_alg[8];        /* "plain64" */
    char ivgen_hash_alg[16];  /* "" unless essiv */
    char hash_alg[32];        /* "sha256" */
    char uuid[40];
    uint64_t payload_offset;  /* bytes */
    uint64_t master_key_iters;
    struct {
        bool active;
        uint32_t iters, stripes; /* shown for active slots only */
        uint64_t key_offset;     /* bytes */
    } slots[8];
} BlockLuksInfo;

/* What `info` shows.  Drivers fill what applies; the rest stays zero. */
typedef struct BlockSnapshotInfo {
    char id[128];
    char name[256];
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount; /* UINT64_MAX: not recorded */
} BlockSnapshotInfo;

/* A persistent dirty bitmap as `info` lists it (QAPI Qcow2BitmapInfo). */
typedef struct BlockBitmapInfo {
    char name[1024];
    uint32_t granularity;  /* bytes per bit */
    bool in_use;           /* "in-use": its content can no longer be trusted */
    bool enabled;          /* "auto": it records guest writes */
} BlockBitmapInfo;

typedef struct BlockInfo {
    uint64_t cluster_size; /* 0: not applicable */
    bool encrypted;
    bool dirty;            /* "dirty-flag" */
    int nb_snapshots;
    BlockSnapshotInfo *snapshots; /* malloc'd; blk_info_free() */
    /* qcow2 format-specific data */
    bool is_qcow2;
    int qcow2_version;     /* 2 -> compat "0.10", 3 -> "1.1" */
    const char *compression_type; /* "zlib" / "zstd" */
    bool lazy_refcounts;
    int refcount_bits;
    bool corrupt;
    bool extended_l2;
    char data_file[1024];  /* "" when none */
    bool has_data_file;    /* even where no name is stored */
    bool data_file_raw;
    const char *encrypt_format; /* "aes" / "luks" when encrypted, else NULL */
    BlockLuksInfo luks;         /* when encrypt_format is "luks", or is_luks */
    bool is_luks;               /* the luks format: its header is the format-specific info */
    int nb_bitmaps;
    BlockBitmapInfo *bitmaps;   /* malloc'd; blk_info_free() */
} BlockInfo;
void blk_info_free(BlockInfo *info);

/* What `check` found (qemu-img's ImageCheck). */
typedef struct BlockCheckResult {
    int64_t corruptions, leaks, check_errors;
    int64_t corruptions_fixed, leaks_fixed;
    int64_t total_clusters, allocated_clusters, fragmented_clusters, compressed_clusters;
    uint64_t image_end_offset;
    bool error_msg; /* a failing check left its report in blk_error() */
} BlockCheckResult;
#define BLK_CHECK_FIX_LEAKS  0x1
#define BLK_CHECK_FIX_ERRORS 0x2

struct BlockDriver {
    const char *name;
    /* Score 0..100 for the first bytes of a file; highest wins. */
    int (*probe)(const uint8_t *buf, size_t len);
    /* bs->fd, bs->filename and bs->flags are set; the driver fills
     * bs->size, bs->backing_file and bs->backing_format and may keep its
     * state in bs->opaque.  Unused options are an error. */
    int (*open)(BlockDriverState *bs, BlockOptions *opts);
    void (*close)(BlockDriverState *bs);
    int (*pread)(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
    int (*pwrite)(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
    /* Optional: a scattered request without a copy; -ENOTSUP sends it
     * through the gather buffer and pread/pwrite instead. */
    int (*preadv)(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt);
    int (*pwritev)(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt);
    int (*pwrite_zeroes)(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
    int (*discard)(BlockDriverState *bs, uint64_t off, uint64_t len);
    int (*flush)(BlockDriverState *bs);
    /* Optional: blk_start_writeback() for a driver with more host files
     * than bs->fd (NULL: bs->fd's). */
    void (*start_writeback)(BlockDriverState *bs);
    /* Status of [off, off+len): returns BLK_STATUS_* bits for the first
     * *pnum bytes (0 < *pnum <= len), or a negative errno. */
    int (*block_status)(BlockDriverState *bs, uint64_t off, uint64_t len,
                        uint64_t *pnum, uint64_t *host_offset);
    /* prealloc may carry BLK_PREALLOC_NO_SYNC where truncate_no_sync */
    int (*truncate)(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink);
    bool truncate_no_sync;
    int (*get_info)(BlockDriverState *bs, BlockInfo *info);
    /* Creates filename (which may exist: it is truncated).  opts holds
     * the -o options; every option it does not know is an error. */
    int (*create)(const char *filename, uint64_t size, BlockOptions *opts);
    /* Compares stored refcounts with the references the metadata makes;
     * prints one line per problem to stderr (as qemu-img does) and
     * repairs what fix asks for.  NULL: the format cannot be checked. */
    int (*check)(BlockDriverState *bs, BlockCheckResult *res, int fix);
    /* Internal snapshots (listed through get_info).  name_or_id matches a
     * snapshot's id first, then its name, as qemu-img does. */
    int (*snapshot_create)(BlockDriverState *bs, const char *name);
    int (*snapshot_apply)(BlockDriverState *bs, const char *name_or_id);
    int (*snapshot_delete)(BlockDriverState *bs, const char *name_or_id);
    /* Read-only: makes reads see the snapshot matching id and name (NULL:
     * either may be anything) instead of the active state; -ENOENT if none. */
    int (*snapshot_load_tmp)(BlockDriverState *bs, const char *id, const char *name);
    /* Drops every cluster of the top layer (commit without -d). */
    int (*make_empty)(BlockDriverState *bs);
    /* Rewrites the backing file name and format ("" detaches). */
    int (*change_backing_file)(BlockDriverState *bs, const char *file, const char *fmt);
    /* qemu-img amend -o: changes format options in place. */
    int (*amend)(BlockDriverState *bs, BlockOptions *opts, bool force);
    /* Writes whole clusters compressed (a tail at the end of the image may
     * be short); data that does not shrink is stored plain. */
    int (*pwrite_compressed)(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
    /* Bytes the host file uses (st_blocks); NULL: the generic one. */
    int64_t (*allocated_size)(BlockDriverState *bs);
    /* Optional: [off, off+len) of the image shares len bytes of host file
     * src_fd from src_off (a reflink: nothing is copied).  0 when shared,
     * 1 when the kernel had to copy them instead (done, but not worth
     * asking again), -ENOTSUP where it never can, -EINVAL where not this
     * range (then write the bytes). */
    int (*copy_from_file)(BlockDriverState *bs, uint64_t off, int src_fd, uint64_t src_off,
                          uint64_t len);
    /* The driver has no host file (null-co): it opens with bs->fd -1 and
     * its options only ("driver=null-co,size=1M"). */
    bool no_file;
    /* Optional: the VM state area (QEMU's savevm data, qemu-io's -b):
     * len bytes at byte pos of it, stored apart from the guest disk.
     * NULL: the format has none (-ENOTSUP). */
    int (*save_vmstate)(BlockDriverState *bs, const void *buf, uint64_t pos, size_t len);
    int (*load_vmstate)(BlockDriverState *bs, void *buf, uint64_t pos, size_t len);
    /* Optional, with the VM state area: lay [pos, pos+len) out as one
     * contiguous run of the image file; where such a run is (host_range);
     * an internal snapshot that records vm_state_size bytes of VM state
     * and then drops the active copy of them (QEMU's savevm). */
    int (*vmstate_reserve)(BlockDriverState *bs, uint64_t pos, uint64_t len);
    int (*vmstate_zero)(BlockDriverState *bs, uint64_t pos, uint64_t len);
    int (*vmstate_host_range)(BlockDriverState *bs, uint64_t pos, uint64_t len, int *fd,
                              uint64_t *off);
    int (*snapshot_create_vm)(BlockDriverState *bs, const char *name, uint64_t vm_state_size,
                              uint64_t vm_clock_nsec);
    /* Optional: snapshot_apply for the guest disk only; a snapshot's VM
     * state read through its own tables (buf), or where it lies (buf
     * NULL: *fd, *off of one plain run). */
    int (*snapshot_apply_disk)(BlockDriverState *bs, const char *name_or_id);
    int (*snapshot_vmstate)(BlockDriverState *bs, const char *name_or_id, uint64_t pos,
                            uint64_t len, void *buf, int *fd, uint64_t *off);
    /* Persistent dirty bitmaps (blk_bitmap()); NULL: the format has none. */
    int (*bitmap)(BlockDriverState *bs, BlockBitmapReq *req);
    /* A new image does not read as zeros (luks: the hole under its
     * payload decrypts to noise), so convert writes the zeros too. */
    bool no_zero_init;
    /* The format `info` shows when not name: QEMU probes a format over a
     * protocol (nbd) and shows "raw". */
    const char *shown_as;
};

extern const BlockDriver blk_raw_driver;
extern const BlockDriver blk_qcow2_driver;
extern const BlockDriver blk_qcow_driver;
extern const BlockDriver blk_null_driver;
extern const BlockDriver blk_luks_driver;
extern const BlockDriver blk_quorum_driver;
extern const BlockDriver blk_nbd_driver;
/* The format info shows for bs (QEMU's name for it). */
static inline const char *blk_format_shown(const BlockDriverState *bs);
/* NBD names (block/nbd.c): "nbd://...", "nbd+unix://...", "nbd:...";
 * nbd_parse_filename appends the nbd driver's options (server.type,
 * server.host, server.port, server.path, export) to o, or is -EINVAL with
 * the error set. */
bool nbd_is_filename(const char *name);
int nbd_parse_filename(const char *name, BlockOptions *o);
const BlockDriver *blk_find_driver(const char *name);
/* A name qemu-img takes for a format (-F of rebase -u): a driver, one of
 * QEMU's host file drivers ("file", "host_device") or a filter. */
bool blk_format_name_known(const char *name);

/* ---- file names and option trees ----
 *
 * blk_open() takes, as QEMU does, wherever a file name goes (the tools'
 * arguments, a backing file name stored in an image):
 *   PATH, or "file:PATH" (PATH may then hold a colon anywhere);
 *   "json:{...}", QEMU's JSON (single quotes too), nested objects being
 *     dotted keys: {"file": {"filename": "x"}} is "file.filename": "x";
 *   "NAME:..." where a registered filter NAME parses such names.
 * and options (--image-opts) in the same dotted tree:
 *   driver=FMT            the format (absent: probed)
 *   file.driver=file      the host file (also host_device, host_cdrom)
 *   file.filename=PATH    its name
 *   file.driver=FILTER, file.CHILD.filename=PATH: a filter between
 *                         the format and its host file (below)
 *   file.driver=FORMAT, file.*: the host file is a node of that format
 *                         (raw, qcow2, ...) with the file.* options,
 *                         opened as a node of its own (see BLK_VFD_BASE)
 *   backing=null (json)   do not open the backing file: reads as zeros
 *   backing.KEY=V         options of the backing file's node (backing.driver,
 *                         backing.file.filename, backing.encrypt.key-secret)
 *   node-name=N           accepted; calf has no node graph to name
 *   anything else         the format driver's option (encrypt.key-secret)
 * The tree's options win over those of a json: name, -f over both. */

/* "json:{...}" */
bool blk_is_json_filename(const char *filename);
/* Appends the options of a "json:{...}" name (or a bare "{...}") to out,
 * flattened: strings as they are, numbers as written, true/false as
 * on/off, null as "".  Bounded (depth, length): hostile input is
 * -EINVAL with QEMU's error text set. */
int blk_json_parse(const char *filename, BlockOptions *out);

/* A filter node between a format and its host file, as QEMU's blkdebug:
 * "driver=qcow2,file.driver=NAME,file.CHILD.filename=PATH,file.X=Y".
 * The format driver still reads and writes the host file of PATH through
 * bs->fd; the filter gets bs before the format driver opens it, to set
 * up what it needs (its state in bs->filter_opaque, hooks the drivers
 * call), and its own options, "file." taken off (X=Y, CHILD.* excluded).
 * Options it leaves unused are an error.  Register filters before the
 * first blk_open() (from main() or a constructor): the table is not
 * locked. */
typedef struct BlockFilter {
    const char *name;  /* file.driver=NAME */
    const char *child; /* the child node's option name ("image") */
    int (*open)(BlockDriverState *bs, BlockOptions *opts);
    void (*close)(BlockDriverState *bs); /* may be NULL */
    /* Optional: a "NAME:..." file name into the filter's options
     * ("blkdebug:CONF:PATH" -> config=CONF, image.filename=PATH). */
    int (*parse_filename)(const char *filename, BlockOptions *opts);
    /* Optional: called once the format under it is open (bs->size known);
     * an error closes the image. */
    int (*opened)(BlockDriverState *bs);
    /* Optional: the error ("%s": the host file driver) when it is named
     * as the top node straight over a host file, with no format between. */
    const char *over_host_file;
} BlockFilter;
/* 0, or -ENOSPC when the table is full. */
int blk_register_filter(const BlockFilter *f);
const BlockFilter *blk_find_filter(const char *name);

struct BlockDriverState {
    const BlockDriver *drv;
    char *filename;          /* as QEMU names it back ("file:" off; json: under a filter) */
    int fd;                  /* the host file; -1 for a driver without one */
    /* The node that is this one's host file ("file.driver=qcow2"), owned
     * here; fd is then its virtual fd (blk_file_is_node).  NULL: fd is a
     * real file. */
    BlockDriverState *file;
    const BlockFilter *filter; /* between the format and fd, or NULL */
    /* the filter was named as the top node (QEMU's "driver=NAME" over
     * "NAME.child.driver=FORMAT"): it sees the guest's requests, not the
     * host file's; set before the filter opens */
    bool filter_top;
    void *filter_opaque;     /* the filter's state */
    int flags;               /* BLK_O_* */
    bool read_only;
    uint64_t size;           /* virtual size in bytes */
    char backing_file[1024]; /* as stored in the image, "" if none */
    char backing_format[32]; /* as stored, "" if none */
    char *full_backing_filename; /* resolved path of backing_file */
    BlockDriverState *backing;   /* NULL if none or not opened */
    /* The file the driver's host offsets are in when not this one (a
     * qcow2 external data file, owned by the driver); NULL: this one */
    BlockDriverState *data_file;
    void *opaque;            /* driver state */
    int depth;               /* 0 for the top of a chain */
    /* blk_map_read()'s read-only mapping of the host file, if made */
    const uint8_t *map;
    uint64_t map_size;
    /* BLK_O_FILL on a filesystem where allocating a run's blocks before
     * writing it pays (blk_file_fill); cleared where fallocate is refused */
    bool fill;
    /* no bitmap records guest writes: the format need not be told of
     * them (block.c and the driver, atomic) */
    bool bitmaps_marked;
    /* The options this layer was opened with (a key-secret's passphrase
     * among them), without its backing file's: to open it again. */
    BlockOptions options;
    /* Long operations (amend) report how far they are, if set. */
    void (*progress)(void *progress_opaque, uint64_t done, uint64_t total);
    void *progress_opaque;
    /* Fault injection (block/blkdebug.h); NULL unless opened through it */
    struct BlkDebug *debug;
    /* A top "compress" filter (block/filter-compress.c): its alignment,
     * the format's cluster size; data writes become compressed whole
     * clusters.  0 without it. */
    uint64_t compress_align;
};

static inline const char *blk_format_shown(const BlockDriverState *bs)
{
    return bs->drv->shown_as ? bs->drv->shown_as : bs->drv->name;
}

static inline void blk_progress(BlockDriverState *bs, uint64_t done, uint64_t total)
{
    if (bs->progress)
        bs->progress(bs->progress_opaque, done, total);
}

/* The path of backing file `backing` named by `image`: relative names are
 * relative to the image's directory, as in QEMU.  malloc'd; NULL on ENOMEM. */
char *blk_backing_path(const char *image, const char *backing);

/* Opens filename with the given format (NULL: probe) and its backing
 * chain (read-only, never written).  opts may be NULL.  Returns NULL and
 * sets the error message on failure. */
BlockDriverState *blk_open(const char *filename, const char *format, int flags,
                           BlockOptions *opts);
void blk_close(BlockDriverState *bs); /* closes the whole chain */
/* A throw-away view of filename: a temporary qcow2 overlay (in $TMPDIR,
 * default /var/tmp) over it, opened read-write and unlinked at once, so
 * nothing is left behind even after a kill -9.  filename itself is opened
 * read-only as the backing file and never written. */
BlockDriverState *blk_open_snapshot(const char *filename, const char *format, int flags);

int blk_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
int blk_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
int blk_preadv(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt);
int blk_pwritev(BlockDriverState *bs, uint64_t off, const struct iovec *iov, int iovcnt);
size_t blk_iov_total(const struct iovec *iov, int iovcnt); /* bytes in all segments */
int blk_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
int blk_discard(BlockDriverState *bs, uint64_t off, uint64_t len);
int blk_flush(BlockDriverState *bs);
/* Starts writing back to the disk what was written to bs's host files,
 * without waiting for it: a long run of writes that ends in a flush
 * (commit, rebase) keeps the disk busy meanwhile, instead of leaving it
 * all to the flush.  A hint: it cannot fail. */
void blk_start_writeback(BlockDriverState *bs);
int blk_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                     uint64_t *pnum, uint64_t *host_offset);
int blk_truncate(BlockDriverState *bs, uint64_t size, int prealloc, bool shrink);
int blk_get_info(BlockDriverState *bs, BlockInfo *info);
int64_t blk_allocated_size(BlockDriverState *bs);
int blk_snapshot_create(BlockDriverState *bs, const char *name);
int blk_snapshot_apply(BlockDriverState *bs, const char *name_or_id);
/* 0, or -EBUSY where reverting bs to a snapshot is refused (persistent
 * dirty bitmaps, as QEMU): every revert path asks it first. */
int blk_snapshot_revert_check(BlockDriverState *bs);
int blk_snapshot_delete(BlockDriverState *bs, const char *name_or_id);
/* qemu-img convert -l: id and/or name, or name_or_id (id first). */
int blk_snapshot_load_tmp(BlockDriverState *bs, const char *id, const char *name);
int blk_snapshot_load_tmp_by_id_or_name(BlockDriverState *bs, const char *name_or_id);
int blk_make_empty(BlockDriverState *bs);
/* The VM state area (block/vmstate.c): -ENOTSUP where the format has none. */
int blk_save_vmstate(BlockDriverState *bs, const void *buf, uint64_t pos, size_t len);
int blk_load_vmstate(BlockDriverState *bs, void *buf, uint64_t pos, size_t len);
/* Lays [pos, pos+len) of the VM state area out as one contiguous,
 * cluster-aligned run of the image file (qcow2: what the active image
 * mapped there is dropped, then its L2 tables come first, then the data
 * clusters), before the state is written there, so that
 * blk_vmstate_host_range() can find it later.  -ENOTSUP where the format
 * cannot; the state is still written and read as usual then. */
int blk_vmstate_reserve(BlockDriverState *bs, uint64_t pos, uint64_t len);
/* Makes [pos, pos+len) of the VM state area read as zeros: in place,
 * a hole where the file system can, where the range lies in plain
 * clusters the active image owns alone (blk_vmstate_reserve() made
 * them), else by writing zeros (blk_save_vmstate()). */
int blk_save_vmstate_zero(BlockDriverState *bs, uint64_t pos, uint64_t len);
/* When [pos, pos+len) of the VM state area is one uncompressed,
 * unencrypted run of one host file: that file's descriptor (owned by the
 * image) and the offset of byte pos in it, for mmap(); -ENOTSUP
 * otherwise (read it with blk_load_vmstate()). */
int blk_vmstate_host_range(BlockDriverState *bs, uint64_t pos, uint64_t len, int *fd,
                           uint64_t *off);
/* An internal snapshot holding vm_state_size bytes of VM state from the
 * area (written before with blk_save_vmstate()); the active image drops
 * its copy of them afterwards, as QEMU's savevm does. */
int blk_snapshot_create_vm(BlockDriverState *bs, const char *name, uint64_t vm_state_size,
                           uint64_t vm_clock_nsec);
/* Reverts the guest disk to an internal snapshot as blk_snapshot_apply()
 * does, but leaves the active image's VM state area as it is: a restore
 * then reads the snapshot's VM state with blk_snapshot_load_vmstate()
 * and maps it with blk_snapshot_vmstate_host_range(), and costs nothing
 * per cluster of that state.  -ENOTSUP where the format cannot (then use
 * blk_snapshot_apply() and the active area); so do the other two. */
int blk_snapshot_apply_disk(BlockDriverState *bs, const char *name_or_id);
int blk_snapshot_load_vmstate(BlockDriverState *bs, const char *name_or_id, void *buf,
                              uint64_t pos, size_t len);
int blk_snapshot_vmstate_host_range(BlockDriverState *bs, const char *name_or_id, uint64_t pos,
                                    uint64_t len, int *fd, uint64_t *off);
int blk_change_backing_file(BlockDriverState *bs, const char *file, const char *fmt);
int blk_amend(BlockDriverState *bs, BlockOptions *opts, bool force);
int blk_pwrite_compressed(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
/* block.c's: a data write under a top compress filter, aligned */
int blk_compress_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, uint64_t len);
/* Persistent dirty bitmaps, as `qemu-img bitmap` edits them.  A bitmap
 * has one bit per `granularity` bytes of the virtual disk; bit j of byte
 * i stands for chunk i * 8 + j (the on-disk order of qcow2).  Listing is
 * blk_get_info()'s.  Changes are kept in memory and stored at flush or
 * close; the image never names a half-written bitmap.  Guest writes
 * (write, zeroes, discard, make_empty) are recorded in the enabled
 * bitmaps, which are "in-use" on disk from the first write until close
 * stores them, as in QEMU: a crash leaves them in-use, never silently
 * stale.  Reverting to an internal snapshot is refused, as QEMU does. */
enum blk_bitmap_op {
    BLK_BITMAP_ADD,     /* new, empty: granularity (0: the default), enabled */
    BLK_BITMAP_REMOVE,
    BLK_BITMAP_CLEAR,
    BLK_BITMAP_ENABLE,
    BLK_BITMAP_DISABLE,
    BLK_BITMAP_READ,    /* *bits: malloc'd, nbytes long; granularity set */
    BLK_BITMAP_WRITE,   /* replaces the content with bits (nbytes long) */
    BLK_BITMAP_PROBE,   /* 0 if this image can hold bitmaps (no name) */
    BLK_BITMAP_GUEST_WRITE, /* the block layer's own: guest data of
                               [offset, offset+nbytes) changes: 1 while
                               bitmaps record writes, 0 when none does */
};
struct BlockBitmapReq {
    int op;
    const char *name;
    uint32_t granularity;
    bool enabled;
    uint8_t *bits;
    uint64_t nbytes;
    uint64_t offset;    /* GUEST_WRITE */
};
/* -ENOTSUP (with qemu-img's message) when the format keeps no bitmaps. */
int blk_bitmap(BlockDriverState *bs, BlockBitmapReq *req);
/* dst_name of dst |= src_name of src (qemu-img bitmap --merge), whatever
 * their granularities; both disks must have the same size. */
int blk_bitmap_merge(BlockDriverState *dst, const char *dst_name, BlockDriverState *src,
                     const char *src_name);
/* Whether bs's format can keep persistent bitmaps at all. */
bool blk_has_bitmaps(BlockDriverState *bs);
/* Bytes of a bitmap of a size-byte disk (ceil(size / granularity) bits). */
static inline uint64_t blk_bitmap_bytes(uint64_t size, uint32_t granularity)
{
    uint64_t bits = size / granularity + (size % granularity != 0);
    return (bits + 7) / 8;
}

/* -ENOTSUP when the format has no checker (qemu-img's exit code 63). */
int blk_check(BlockDriverState *bs, BlockCheckResult *res, int fix);

/* Status through the chain, as qemu-img map walks it: the first layer
 * that has the range allocated answers, with *depth its index (0 = bs).
 * A range no layer has reads as zeros: the answer is BLK_STATUS_ZERO (plus
 * BLK_STATUS_OFFSET if that layer has a host offset for it) from the last
 * layer that covers it, i.e. the one without a backing file or whose
 * backing file ends before the range.  *file, if not NULL, gets the layer. */
int blk_block_status_above(BlockDriverState *bs, uint64_t off, uint64_t len,
                           uint64_t *pnum, uint64_t *host_offset, int *depth,
                           BlockDriverState **file);

/* The bytes of [off, off+len) of bs, read through the chain, without a
 * copy: where the first bytes are stored as they are and contiguous in a
 * host file (a raw file, or uncompressed, unencrypted clusters of a qcow2
 * or qcow layer), a pointer into a read-only shared mapping of that file,
 * with *pnum (<= len) the bytes it covers; NULL where they are not (or
 * the file cannot be mapped, or is opened with O_DIRECT), with *pnum the
 * bytes that are not (0 if even their status cannot be read): read those
 * with blk_pread.  The pages are faulted in before it returns, unless
 * flags has BLK_MAP_LAZY (for bytes only the kernel will touch, by
 * blk_copy_mapped or a write from them).  The mapping lives until
 * blk_close(); a file truncated under it meanwhile raises SIGBUS on
 * access, which the caller may want to catch. */
#define BLK_MAP_LAZY 1
const uint8_t *blk_map_read(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            int flags);
/* The same for a host range already known from blk_block_status_above:
 * [host, host+len) of layer file's host file, or NULL. */
const uint8_t *blk_map_host(BlockDriverState *file, uint64_t host, uint64_t len, int flags);
/* What blk_block_status_above said that blk_map_host can map: data stored
 * as it is, at a host offset. */
static inline bool blk_status_mappable(int st)
{
    return st >= 0 && (st & (BLK_STATUS_DATA | BLK_STATUS_OFFSET | BLK_STATUS_ZERO |
                             BLK_STATUS_COMPRESSED)) == (BLK_STATUS_DATA | BLK_STATUS_OFFSET);
}
/* The host file and offset of p, which blk_map_read(bs, ...) gave: -1 if
 * no layer of bs's chain has p mapped. */
int blk_map_source(BlockDriverState *bs, const uint8_t *p, uint64_t *host);
/* Copy offload (the driver's copy_from_file): [off, off+len) of bs gets
 * the bytes at p, which blk_map_read(src, ...) gave, without their being
 * copied: 0, or 1 if they were copied after all (by the kernel); -ENOTSUP
 * where bs or the files never can, -EINVAL where not this range (the
 * caller then writes p itself). */
int blk_copy_mapped(BlockDriverState *bs, uint64_t off, BlockDriverState *src, const uint8_t *p,
                    uint64_t len);

/* Done with [p, p+len), which blk_map_read(bs, ...) gave, for now: those
 * pages, and the neighbours the kernel mapped with them (fault-around),
 * leave this process's resident set.  They stay in the page cache; a
 * later access maps them again. */
void blk_map_done(BlockDriverState *bs, const uint8_t *p, uint64_t len);

/* Reads [off, off+len) of bs's backing chain for bs's driver: zeros where
 * there is no backing file or past its end. */
int blk_read_backing(BlockDriverState *bs, uint64_t off, void *buf, size_t len);

/* Creates an image.  size BLK_SIZE_UNSET with a backing file takes the
 * backing file's size.  opts are the -o options ("backing_file",
 * "backing_fmt" included). */
#define BLK_SIZE_UNSET UINT64_MAX
int blk_create(const char *format, const char *filename, uint64_t size,
               BlockOptions *opts);
/* Whether filename can be created: a plain path or file:PATH, not another
 * protocol ("Unknown protocol 'json'", as qemu-img says before anything
 * else).  blk_create() checks it too. */
int blk_create_name_check(const char *filename);

/* ---- cluster compression (type 0 deflate, 1 zstd) ---- */
/* Compresses cs bytes of src into at most dst_len bytes of dst: the
 * compressed size, -ENOSPC when it does not fit, or a negative errno. */
ssize_t blk_compress_cluster(int type, uint8_t *dst, size_t dst_len, const uint8_t *src,
                             size_t cs);
/* Fills out with exactly cs bytes from in; trailing input (the stored
 * length is rounded up to sectors) is fine.  -EIO on bad data. */
int blk_decompress_cluster(int type, const uint8_t *in, size_t in_len, uint8_t *out, size_t cs);

/* ---- host file helpers (full transfers; EINTR and short I/O handled) ---- */
/* fdatasync; once it failed on an open file, every later call on that
 * file fails with the same error without trying (util.c) */
int blk_file_sync(int fd);
/* Closes a host file that blk_file_sync may have seen, forgetting its
 * failed sync first (else the record outlives the fd and can hold a
 * later open that gets the same number and inode); -1 does nothing.
 * Every close of an image file in block/ goes through it. */
void blk_file_close(int fd);
void blk_file_start_writeback(int fd); /* sync_file_range(WRITE), no wait */
/* Reads past end of file return zeros. */
int blk_file_pread(int fd, void *buf, size_t len, uint64_t off);
int blk_file_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
int blk_file_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
int blk_file_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* [off, off+len) of fd shares the blocks of src_fd at src_off (a reflink,
 * FICLONERANGE): 0, or -errno (-EOPNOTSUPP/-EXDEV where the filesystem
 * has none, -EINVAL for ranges not in whole blocks or a file that is not
 * a regular one). */
int blk_file_clone(int fd, uint64_t off, int src_fd, uint64_t src_off, uint64_t len);
int64_t blk_file_size(int fd);
/* Makes [off, off+len) read as zeros, punching a hole where possible. */
int blk_file_zero(int fd, uint64_t off, uint64_t len);
int blk_file_punch(int fd, uint64_t off, uint64_t len); /* best effort */
/* blk_open calls it before it opens a file with O_DIRECT (and so must
 * anything else that does): the host file helpers then ask each file
 * whether it is one, and serialize its read-modify-writes. */
void blk_file_direct_opened(void);
/* Makes the file cover [off, off+len), which must hold nothing of anyone
 * else's (the tail of a cluster being written): the range reads as zeros
 * and the file never gets shorter, whatever other threads write beyond
 * it meanwhile (ftruncate could cut their data off). */
int blk_file_extend(int fd, uint64_t off, uint64_t len);
/* Long writes into holes: whether allocating first pays on fd's
 * filesystem, and the allocation (0, or -errno where it is refused). */
bool blk_file_fill_pays(int fd);
int blk_file_fill(int fd, uint64_t off, uint64_t len);
/* What a driver calls before writing the n bytes at off of its host file
 * into a range that holds nothing yet (a no-op unless bs->fill). */
void blk_fill(BlockDriverState *bs, uint64_t off, uint64_t n);

/* The raw calls a driver makes on its host file, through the same door
 * (a node as host file answers them too); 0 or -errno, and the offset
 * for blk_file_seek (SEEK_END, SEEK_DATA, SEEK_HOLE). */
int blk_file_stat(int fd, struct stat *st);
int blk_file_truncate(int fd, uint64_t size);
/* A file at least size bytes long: ftruncate where it is shorter, never
 * shorter than it is (a node's file: in one step, so a grow by another
 * thread since the caller looked is never undone) */
int blk_file_grow_to(int fd, uint64_t size);
int blk_file_allocate(int fd, uint64_t off, uint64_t len); /* posix_fallocate */
int64_t blk_file_seek(int fd, uint64_t off, int whence);

/* ---- a node as the host file of another (the protocol layer) ----
 * A format's host file may be another node ("driver=raw,file.driver=
 * qcow2,file.file.filename=X": a raw image stored inside a qcow2 one).
 * The format drivers keep doing their host I/O on an int fd: the node's
 * is a virtual fd, a number from a range no real fd reaches (open_host
 * refuses real ones there), and every blk_file_* call on it goes to the
 * node's blk_pread/blk_pwrite/blk_flush/blk_truncate/blk_pwrite_zeroes/
 * blk_block_status.  A real fd pays one compare.  Reflinks, kernel
 * copies and mappings of a node are -ENOTSUP (callers fall back to
 * reads and writes).  Writes past the node's end grow it, as a file. */
#define BLK_VFD_BASE 0x40000000
#define BLK_VFD_MAX 256
static inline bool blk_file_is_node(int fd)
{
    return __builtin_expect(fd >= BLK_VFD_BASE, 0);
}
/* The virtual fd of node (which the caller keeps open until
 * blk_vfd_release), or -EMFILE with the error set. */
int blk_vfd_new(BlockDriverState *node);
void blk_vfd_release(int fd);
BlockDriverState *blk_vfd_node(int fd);
/* blk_block_status of fd's node within the end the format above sees,
 * under the slot's lock (past the end: zeros, as past a file's) */
int blk_vfd_block_status(int fd, uint64_t off, uint64_t len, uint64_t *pnum,
                         uint64_t *host_offset);

/* Range locks: a holder of [lo, hi) under key waits for every
 * overlapping holder under the same key when either of them is
 * exclusive.  Shared holders overlap freely.  Used for read-modify-writes
 * that must not interleave with other writes of the same bytes. */
typedef struct BlkRange {
    uint64_t key, lo, hi;
    bool excl;
    struct BlkRange *next;
} BlkRange;
typedef struct BlkRangeLock {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    BlkRange *head;
} BlkRangeLock;
#define BLK_RANGE_LOCK_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL }
void blk_range_lock(BlkRangeLock *l, BlkRange *r, uint64_t key, uint64_t lo, uint64_t hi,
                    bool excl);
void blk_range_unlock(BlkRangeLock *l, BlkRange *r);

/* Image locking compatible with QEMU's byte-range scheme (OFD locks):
 * a writer excludes other writers and readers that did not pass -U. */
int blk_lock(int fd, bool write, const char *filename);

#endif
