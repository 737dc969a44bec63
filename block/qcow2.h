/* qcow2 driver internals, shared by qcow2*.c (not a public interface).
 * On-disk format: QEMU's docs/interop/qcow2.txt; what this code relies
 * on: docs/ARCHITECTURE.md section 9. */
#ifndef CALF_QCOW2_H
#define CALF_QCOW2_H

#include "block/blkdebug.h"
#include "block/block.h"
#include "block/crypto.h"
#include "block/luks.h"

#include <pthread.h>

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_SNAPSHOT_TABLE (64u << 20)

/* header feature bits */
#define QCOW2_INCOMPAT_DIRTY       (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT     (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2       (UINT64_C(1) << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1fULL
#define QCOW2_COMPAT_LAZY_REFCOUNTS (UINT64_C(1) << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (UINT64_C(1) << 1)
#define QCOW2_AUTOCLEAR_BITMAPS    (UINT64_C(1) << 0)

/* header extension types */
#define QCOW2_EXT_END          0x00000000u
#define QCOW2_EXT_BACKING_FMT  0xe2792acau
#define QCOW2_EXT_FEATURE_TBL  0x6803f857u
#define QCOW2_EXT_BITMAPS      0x23852875u
#define QCOW2_EXT_CRYPTO       0x0537be77u
#define QCOW2_EXT_DATA_FILE    0x44415441u

/* table entry bits */
#define L1E_OFFSET_MASK   UINT64_C(0x00fffffffffffe00)
#define L1E_RESERVED_MASK UINT64_C(0x7f000000000001ff)
#define L2E_OFFSET_MASK   UINT64_C(0x00fffffffffffe00)
#define L2E_STD_RESERVED  UINT64_C(0x3f000000000001fe)
#define REFT_OFFSET_MASK  UINT64_C(0xfffffffffffffe00)
#define QCOW_OFLAG_COPIED     (UINT64_C(1) << 63)
#define QCOW_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW_OFLAG_ZERO       (UINT64_C(1) << 0)

enum qcow2_cluster_type {
    QCOW2_UNALLOCATED,
    QCOW2_ZERO_PLAIN,
    QCOW2_ZERO_ALLOC,
    QCOW2_NORMAL,
    QCOW2_COMPRESSED,
};

/* subcluster type (extended L2), same names where they mean the same */
enum qcow2_sc_type {
    SC_UNALLOCATED_PLAIN, /* cluster unallocated, subcluster -> backing */
    SC_UNALLOCATED_ALLOC, /* cluster allocated, subcluster -> backing */
    SC_ZERO_PLAIN,
    SC_ZERO_ALLOC,
    SC_NORMAL,
    SC_COMPRESSED,
    SC_INVALID,
};

/* A cache of whole metadata tables (L2 tables or refcount blocks), each
 * one cluster.  Used only under Qcow2State.lock. */
typedef struct Qcow2Cache {
    int n;
    size_t table_size;
    uint64_t *offset;   /* host offset of each slot, 0 = empty */
    uint64_t *lru;
    bool *dirty;
    uint8_t *data;
    uint64_t clock;
    int last;           /* the slot found last: looked at first */
    /* slot + 1 of an offset by its hash, 0 = none: a hint, checked
     * against offset[] (a miss falls back to the scan of every slot) */
    int *index;
    uint32_t index_mask;
} Qcow2Cache;

typedef struct Qcow2Ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
} Qcow2Ext;

typedef struct Qcow2Snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id;
    char *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;
    uint32_t extra_size;
    uint8_t *extra; /* kept as read, for unknown fields */
} Qcow2Snapshot;

typedef struct Qcow2FreeRange {
    uint64_t offset;
    uint64_t clusters;
    enum { FREE_NORMAL, FREE_COMPRESSED } kind;
} Qcow2FreeRange;

typedef struct Qcow2State {
    pthread_mutex_t lock;
    BlockDriverState *bs;
    int fd;
    /* Guest data: an external data file (incompatible feature bit 2),
     * where each data cluster lies at its guest offset and has no
     * refcount, or the image file itself (data_fd == fd, data_bs NULL).
     * data_bs is opened as a raw image, locked like the image. */
    int data_fd;
    int data_vfd; /* the data file's node as host file (a node with no
                     file of its own: null-co), released at close; else 0 */
    BlockDriverState *data_bs;
    char *data_file_name;     /* as stored in the header extension, or NULL */

    /* header */
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t crypt_method;
    uint64_t incompat, compat, autoclear;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    uint8_t *header_tail;     /* fields past 112 we don't know, kept */
    uint32_t header_tail_len;
    uint64_t backing_offset;  /* as read; rewritten on header update */

    /* derived */
    bool extl2;
    int l2_entry_bytes;       /* 8 or 16 */
    uint32_t l2_bits;         /* log2(entries per L2 table) */
    uint64_t l2_size;         /* entries per L2 table */
    uint64_t subcluster_size;
    int csize_shift;          /* compressed descriptor: sector count shift */
    uint64_t csize_mask;
    uint64_t cluster_offset_mask;
    uint32_t refcount_bits;
    uint32_t rb_bits;         /* log2(entries per refcount block) */
    uint64_t refcount_max;

    /* L1 (active) */
    uint64_t l1_offset;
    uint32_t l1_size;
    uint64_t *l1;             /* host order */

    /* refcount table */
    uint64_t rt_offset;
    uint32_t rt_clusters;
    uint64_t rt_size;         /* entries */
    uint64_t *rt;             /* host order */

    Qcow2Cache l2_cache;
    Qcow2Cache rb_cache;

    /* extensions we do not interpret, kept on header rewrite */
    Qcow2Ext *exts;
    int nexts;

    /* snapshots */
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    Qcow2Snapshot *snapshots;
    uint64_t snapshots_size;  /* bytes the table spans on disk as read; 0: measure */
    /* check mode: the table could not be read at open (qcow2_check reads
     * it again, and may repair it); the header keeps these values */
    bool sn_unread;
    bool sn_repairable;       /* the last failed table read is one check -r all repairs */
    uint32_t sn_hdr_nb;
    uint64_t sn_hdr_offset;

    /* allocation */
    uint64_t free_hint;       /* cluster index to start searching at */
    uint64_t file_end;        /* bytes: end of the host file as we know it */
    uint64_t free_byte_offset; /* compressed writes: next free byte in a
                                  partly used host cluster, 0 = none */
    bool lazy;                /* lazy refcounts active (dirty bit set on first write) */
    bool dirty_set;
    bool need_sync;           /* anything written since the last sync */
    bool deps_unsynced;       /* data or refcounts that L2 entries may
                                 point to written since the last sync */
    /* refcount table entries [lo, hi) that point at new refcount blocks
     * in memory but not yet in the file: qcow2_sync() writes them once
     * the blocks are on disk (see create_refblock()) */
    uint64_t rt_hook_lo, rt_hook_hi;
    Qcow2FreeRange *pending_free;
    size_t npending, pending_cap;

    /* guest clusters whose allocation is under way with the lock dropped:
     * other writers to them wait on alloc_cond */
    struct { uint64_t first, n; } *inflight;
    int ninflight, inflight_cap;
    pthread_cond_t alloc_cond;

    /* Data I/O at host offsets looked up under the lock but done with it
     * dropped, counted by epoch: a host cluster is not freed for reuse
     * until every such I/O that began before it was unreferenced has
     * ended (qcow2_io_drain), or a stalled write would land in the
     * cluster's next owner and a stalled read return its data. */
    unsigned io_epoch;        /* under lock */
    unsigned io_count[2];     /* atomic */
    unsigned io_waiters;      /* atomic */
    pthread_mutex_t io_mu;
    pthread_cond_t io_cond;

    /* zeros for COW */
    uint8_t *zero_cluster;
    /* Each thread keeps the last cluster it decompressed (qcow2-cluster.c);
     * this changes whenever an L2 entry may have changed, so that a kept
     * cluster is used only while the mapping it came from still holds.
     * 0: not set yet.  Values are unique in the process. */
    uint64_t cbuf_gen;

    bool prealloc_checked, prealloc_detected; /* see looks_preallocated() */

    /* persistent dirty bitmaps (qcow2-bitmap.c), from a valid extension */
    uint32_t nb_bitmaps;      /* in s->bitmaps: on disk or added since */
    uint32_t bm_dir_count;    /* entries of the directory on disk */
    uint64_t bm_dir_offset, bm_dir_size;
    struct Qcow2Bitmap *bitmaps;
    bool bm_ext_dropped;      /* an invalid one was read: not written back */
    bool bm_dirty;            /* changed in memory: qcow2_bitmaps_store() */
    bool bm_writes_seen;      /* the bitmaps were set up for guest writes */

    /* a make_empty that failed half way left the file and this state
     * apart: nothing more is written (the dirty bit has it repaired) */
    bool broken;

    /* errors found while running (corrupt image) */
    bool corrupt_marked;
    bool corrupt_signaled;    /* said so on stderr once, as QEMU does */

    /* encryption (qcow2-crypto.c): NULL cipher = no key given */
    BlkCipher *crypto;
    /* guest sectors being written: a partial sector is read, patched and
     * written back holding its sector exclusively, so that no other
     * write of that sector runs in between (every write of an encrypted
     * image holds its sectors here) */
    BlkRangeLock crypt_rmw;
    bool crypt_physical;      /* IV from the host offset (LUKS) */
    LuksHeader *luks;
} Qcow2State;

static inline uint64_t qcow2_be64(const void *p)
{
    const uint8_t *b = p;
    return ((uint64_t)b[0] << 56) | ((uint64_t)b[1] << 48) | ((uint64_t)b[2] << 40) |
           ((uint64_t)b[3] << 32) | ((uint64_t)b[4] << 24) | ((uint64_t)b[5] << 16) |
           ((uint64_t)b[6] << 8) | b[7];
}
static inline uint32_t qcow2_be32(const void *p)
{
    const uint8_t *b = p;
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}
static inline uint16_t qcow2_be16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)((b[0] << 8) | b[1]);
}
static inline void qcow2_put64(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}
static inline void qcow2_put32(void *p, uint32_t v)
{
    uint8_t *b = p;
    for (int i = 3; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}
static inline void qcow2_put16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

/* Guest clusters live in an external data file. */
static inline bool qcow2_has_data_file(const Qcow2State *s)
{
    return (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
}

static inline uint64_t qcow2_offset_in_cluster(const Qcow2State *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}
static inline uint64_t qcow2_align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* qcow2.c */
int qcow2_update_header(Qcow2State *s);
int qcow2_mark_corrupt(Qcow2State *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int qcow2_sync(Qcow2State *s);
/* qcow2_sync()'s part: with the image file synced, writes the refcount
 * table entries of new refcount blocks that wait for it */
int qcow2_write_hookups(Qcow2State *s);
void qcow2_rt_replaced(Qcow2State *s);

/* qcow2-cache.c */
int qcow2_cache_init(Qcow2Cache *c, int n, size_t table_size);
void qcow2_cache_destroy(Qcow2Cache *c);
/* Returns the table at host offset off (read from disk on a miss), or
 * NULL with *err set.  The pointer stays valid until the next call on the
 * same cache. */
uint8_t *qcow2_cache_get(Qcow2State *s, Qcow2Cache *c, uint64_t off, int *err);
/* Like get, but the table is new: filled with zeros, not read. */
uint8_t *qcow2_cache_get_empty(Qcow2State *s, Qcow2Cache *c, uint64_t off, int *err);
void qcow2_cache_mark_dirty(Qcow2Cache *c, const uint8_t *table);
int qcow2_cache_write_table(Qcow2State *s, Qcow2Cache *c, const uint8_t *table);
int qcow2_cache_flush(Qcow2State *s, Qcow2Cache *c);
void qcow2_cache_discard(Qcow2Cache *c, uint64_t off);

/* qcow2-refcount.c */
int qcow2_refcount_init(Qcow2State *s);
int qcow2_get_refcount(Qcow2State *s, uint64_t cluster, uint64_t *ref);
/* Lazy refcounts: sets the dirty bit (once) before refcounts may go stale. */
int qcow2_mark_dirty(Qcow2State *s);
/* Adds delta to the refcount of each cluster of [offset, offset+len). */
int qcow2_update_refcount(Qcow2State *s, uint64_t offset, uint64_t len, int64_t delta);
/* Allocates n contiguous clusters; returns the host byte offset or a
 * negative errno. */
int64_t qcow2_alloc_clusters(Qcow2State *s, uint64_t n);
/* Frees host clusters once the metadata that stopped pointing to them is
 * on disk (see qcow2_flush_metadata). */
int qcow2_free_later(Qcow2State *s, uint64_t offset, uint64_t clusters, int kind);
int qcow2_free_compressed_later(Qcow2State *s, uint64_t l2_entry);
/* Writes back L2 tables and refcounts in crash-safe order and applies
 * deferred frees. */
int qcow2_flush_metadata(Qcow2State *s);
/* Data I/O with the lock dropped: begin (lock held, in the same hold
 * as the lookup that found the host offset) returns a token for end
 * (any time, lock not held: end never takes s->lock).  drain (lock held)
 * returns once every I/O begun before it has ended; it is called before
 * freed clusters become reusable. */
unsigned qcow2_io_begin(Qcow2State *s);
void qcow2_io_end(Qcow2State *s, unsigned token);
void qcow2_io_drain(Qcow2State *s);
/* Checks a new allocation does not overlap fixed metadata. */
int qcow2_check_overlap(Qcow2State *s, uint64_t offset, uint64_t len);

/* qcow2-check.c: recomputes every refcount from the metadata and writes
 * the result (the repair of a dirty image). */
int qcow2_repair_refcounts(Qcow2State *s);
int qcow2_check(BlockDriverState *bs, BlockCheckResult *res, int fix);
/* Rewrites the refcount structure with 2^order-bit entries (amend). */
int qcow2_change_refcount_order(Qcow2State *s, uint32_t order);

/* qcow2-snapshot.c */
int qcow2_snapshot_create(BlockDriverState *bs, const char *name);
int qcow2_snapshot_apply(BlockDriverState *bs, const char *name_or_id);
int qcow2_snapshot_delete(BlockDriverState *bs, const char *name_or_id);
int qcow2_snapshot_load_tmp(BlockDriverState *bs, const char *id, const char *name);
/* Version 3 wants the 64-bit VM state size and the disk size in every
 * snapshot table entry: whether entry i lacks them, and a rewrite of the
 * table that gives every entry the extra data QEMU writes (s->lock held). */
#define QCOW2_SN_EXTRA_V3 16
static inline bool qcow2_snapshot_incomplete(const Qcow2State *s, uint32_t i)
{
    return s->snapshots[i].extra_size < QCOW2_SN_EXTRA_V3;
}
int qcow2_snapshot_complete_table(Qcow2State *s);
/* Reads the snapshot table.  With repair (check -r all), drops the
 * extra data past the limit of an entry (counted in *dropped) and the
 * entries past the table's size limit (counted in *reduced) instead of
 * failing. */
int qcow2_read_snapshots(Qcow2State *s, bool repair, uint32_t *reduced, uint32_t *dropped);

/* qcow2-amend.c */
int qcow2_make_empty(BlockDriverState *bs);
int qcow2_change_backing_file(BlockDriverState *bs, const char *file, const char *fmt);
int qcow2_amend(BlockDriverState *bs, BlockOptions *opts, bool force);
/* Shrinks the virtual size: clusters past the new end are freed and the
 * file tail is cut where nothing is left in use. */
int qcow2_shrink(BlockDriverState *bs, uint64_t size);

/* qcow2-bitmap.c */
/* The bitmaps header extension (data d, len bytes), read on open. */
int qcow2_bitmap_ext_read(Qcow2State *s, const uint8_t *d, uint32_t len);
/* Its 24 bytes for the header; false when there is no directory. */
bool qcow2_bitmap_ext_data(const Qcow2State *s, uint8_t out[24]);
/* A resize: begin holds every bitmap in memory (an in-use one refuses
 * it, as in QEMU), end fits them to the new size, to be stored. */
int qcow2_bitmaps_resize_begin(Qcow2State *s);
int qcow2_bitmaps_resize_end(Qcow2State *s, uint64_t old_size);
/* Writes what a session changed in memory (lock held). */
int qcow2_bitmaps_store(Qcow2State *s);
/* Loads the directory (and, for a BLK_O_BITMAPS session, has every
 * bitmap stored anew at flush or close, as QEMU does). */
int qcow2_bitmaps_open(Qcow2State *s);
void qcow2_bitmaps_free(Qcow2State *s);
int qcow2_bitmap_info(Qcow2State *s, BlockInfo *info);
/* Calls ref(opaque, offset, bytes) for every cluster range the bitmaps
 * use (directory, tables, data): 0, 1 when some of it is corrupt (what
 * could be read is still counted), or a negative errno. */
int qcow2_bitmap_refs(Qcow2State *s, int (*ref)(void *opaque, uint64_t off, uint64_t len),
                      void *opaque);
int qcow2_bitmap_op(BlockDriverState *bs, BlockBitmapReq *req);

/* qcow2-compress.c */
int qcow2_pwrite_compressed(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);

/* qcow2-crypto.c */
struct qcow2_crypto_create {
    int method;               /* crypt_method: 0, 1 AES, 2 LUKS */
    const char *secret;       /* the passphrase */
    LuksCreateOpts luks;
};
int qcow2_crypto_open(Qcow2State *s, BlockOptions *opts);
void qcow2_crypto_close(Qcow2State *s);
/* En/decrypts whole sectors of guest data stored at host offset host;
 * -EACCES when the image was opened without its key. */
int qcow2_crypt(Qcow2State *s, uint64_t guest, uint64_t host, uint8_t *buf, size_t len,
                bool encrypt);
/* An encrypted, malloc'd copy of buf for writing at host. */
int qcow2_crypt_copy(Qcow2State *s, uint64_t guest, uint64_t host, const void *buf, size_t len,
                     uint8_t **out);
/* Reads n decrypted bytes (any alignment) of guest data stored at host. */
int qcow2_crypt_read(Qcow2State *s, uint64_t guest, uint64_t host, uint8_t *buf, size_t n);
/* Every write (buf) or zero write (buf NULL) of an encrypted image. */
int qcow2_crypto_pwrite(BlockDriverState *bs, uint64_t off, const uint8_t *buf, uint64_t len,
                        int zflags);
int qcow2_crypto_parse_create(BlockOptions *o, struct qcow2_crypto_create *c);
/* Sets up encryption on an image being created (after its L1 table). */
int qcow2_crypto_create(Qcow2State *s, const struct qcow2_crypto_create *c);
void qcow2_crypto_info(Qcow2State *s, BlockInfo *info);
/* amend -o encrypt.state=...: LUKS key slots added or erased */
struct qcow2_crypto_amend {
    bool wanted;
    LuksAmendOpts luks;
};
/* Takes the encrypt.* amend options out of opts and checks them. */
int qcow2_crypto_amend_parse(Qcow2State *s, BlockOptions *opts, struct qcow2_crypto_amend *a);
int qcow2_crypto_amend(Qcow2State *s, const struct qcow2_crypto_amend *a, bool force);

/* qcow2-cluster.c */
int qcow2_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
int qcow2_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
/* qcow2-vmstate.c */
int qcow2_save_vmstate(BlockDriverState *bs, const void *buf, uint64_t pos, size_t len);
int qcow2_load_vmstate(BlockDriverState *bs, void *buf, uint64_t pos, size_t len);
int qcow2_vmstate_reserve(BlockDriverState *bs, uint64_t pos, uint64_t len);
int qcow2_vmstate_host_range(BlockDriverState *bs, uint64_t pos, uint64_t len, int *fd,
                             uint64_t *off);
/* qcow2-cluster.c: the host offset of guest bytes [off, off+len) when
 * they are one run of plain data clusters in the image file; image lock
 * held. */
int qcow2_host_run(Qcow2State *s, uint64_t off, uint64_t len, uint64_t *host);
/* The same, and every cluster the active image's alone (COPIED): bytes
 * that may be changed in place.  Plain images only. */
int qcow2_host_run_owned(Qcow2State *s, uint64_t off, uint64_t len, uint64_t *host);
int qcow2_vmstate_zero(BlockDriverState *bs, uint64_t pos, uint64_t len);
/* qcow2.c: a guest read as the driver's pread does it (encrypted images
 * wait for partial-sector rewrites: crypt_rmw). */
int qcow2_guest_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
int qcow2_snapshot_apply_disk(BlockDriverState *bs, const char *name_or_id);
int qcow2_snapshot_vmstate(BlockDriverState *bs, const char *name_or_id, uint64_t pos,
                           uint64_t len, void *buf, int *fd, uint64_t *host);
int qcow2_snapshot_create_vm(BlockDriverState *bs, const char *name, uint64_t vm_state_size,
                             uint64_t vm_clock_nsec);
/* The same without the encrypted images' sector lock (crypt_rmw): for
 * qcow2_crypto_pwrite, which holds it.  Whole sectors when encrypted. */
int qcow2_pwrite_sectors(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
int qcow2_pwrite_zeroes_sectors(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
/* Drops every cluster of [off, off+len) for good, whatever the version
 * and backing file (shrink: nothing past the end may come back). */
int qcow2_discard_tail(BlockDriverState *bs, uint64_t off, uint64_t len);
int qcow2_copy_from_file(BlockDriverState *bs, uint64_t off, int src_fd, uint64_t src_off,
                         uint64_t len);
int qcow2_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
int qcow2_discard(BlockDriverState *bs, uint64_t off, uint64_t len);
int qcow2_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       uint64_t *host_offset);
int qcow2_grow_l1(Qcow2State *s, uint64_t min_size);
int qcow2_preallocate(Qcow2State *s, uint64_t start, uint64_t end, int mode);
enum qcow2_cluster_type qcow2_cluster_type(const Qcow2State *s, uint64_t l2e);
/* For other modules (compressed writes): l2_get_writable() and
 * inflight_wait() of qcow2-cluster.c. */
int qcow2_l2_get_writable(Qcow2State *s, uint64_t off, uint8_t **table);
void qcow2_inflight_wait(Qcow2State *s, uint64_t first, uint64_t n);
/* Compressed clusters decompressed before may be stale now (lock held). */
void qcow2_cbuf_invalidate(Qcow2State *s);
/* compressed descriptor -> host offset and byte count to read */
void qcow2_compressed_span(const Qcow2State *s, uint64_t l2e, uint64_t *off, uint64_t *bytes);

#endif
