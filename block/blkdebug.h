/* blkdebug: fault injection for testing, compatible with QEMU's driver of
 * that name ("blkdebug:CONFIG:IMAGE" filenames, QEMU's config syntax and
 * event names).
 *
 * QEMU stacks it as a protocol layer under the format driver.  calf has
 * no protocol layer, so the state hangs off the image's BlockDriverState
 * instead: the format drivers announce their code points with
 * blkdebug_event(bs, ...) (a NULL test when no blkdebug is attached), and
 * the host file helpers of block/util.c ask blkdebug_file_check() about
 * every request on a file that has a blkdebug attached (one relaxed load
 * of a global when none has).
 *
 * Semantics, as in QEMU: an event whose inject-error rules match the
 * current state makes them the active rules (replacing the ones before);
 * from then on every host request of a matching type and range fails with
 * the rule's errno, only the first one with once=on.  set-state rules
 * move the state machine (state 0 matches any state; it starts at 1).
 * "immediately" only changes when QEMU's coroutine yields: accepted. */
#ifndef CALF_BLKDEBUG_H
#define CALF_BLKDEBUG_H

#include "block/block.h"

/* QEMU's BlkdebugEvent, same order and names. */
enum BlkdebugEvent {
    BLKDBG_L1_UPDATE,
    BLKDBG_L1_GROW_ALLOC_TABLE,
    BLKDBG_L1_GROW_WRITE_TABLE,
    BLKDBG_L1_GROW_ACTIVATE_TABLE,
    BLKDBG_L2_LOAD,
    BLKDBG_L2_UPDATE,
    BLKDBG_L2_UPDATE_COMPRESSED,
    BLKDBG_L2_ALLOC_COW_READ,
    BLKDBG_L2_ALLOC_WRITE,
    BLKDBG_READ_AIO,
    BLKDBG_READ_BACKING_AIO,
    BLKDBG_READ_COMPRESSED,
    BLKDBG_WRITE_AIO,
    BLKDBG_WRITE_COMPRESSED,
    BLKDBG_VMSTATE_LOAD,
    BLKDBG_VMSTATE_SAVE,
    BLKDBG_COW_READ,
    BLKDBG_COW_WRITE,
    BLKDBG_REFTABLE_LOAD,
    BLKDBG_REFTABLE_GROW,
    BLKDBG_REFTABLE_UPDATE,
    BLKDBG_REFBLOCK_LOAD,
    BLKDBG_REFBLOCK_UPDATE,
    BLKDBG_REFBLOCK_UPDATE_PART,
    BLKDBG_REFBLOCK_ALLOC,
    BLKDBG_REFBLOCK_ALLOC_HOOKUP,
    BLKDBG_REFBLOCK_ALLOC_WRITE,
    BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS,
    BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE,
    BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE,
    BLKDBG_CLUSTER_ALLOC,
    BLKDBG_CLUSTER_ALLOC_BYTES,
    BLKDBG_CLUSTER_FREE,
    BLKDBG_FLUSH_TO_OS,
    BLKDBG_FLUSH_TO_DISK,
    BLKDBG_PWRITEV_RMW_HEAD,
    BLKDBG_PWRITEV_RMW_AFTER_HEAD,
    BLKDBG_PWRITEV_RMW_TAIL,
    BLKDBG_PWRITEV_RMW_AFTER_TAIL,
    BLKDBG_PWRITEV,
    BLKDBG_PWRITEV_ZERO,
    BLKDBG_PWRITEV_DONE,
    BLKDBG_EMPTY_IMAGE_PREPARE,
    BLKDBG_L1_SHRINK_WRITE_TABLE,
    BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS,
    BLKDBG_COR_WRITE,
    BLKDBG_CLUSTER_ALLOC_SPACE,
    BLKDBG_NONE,
    BLKDBG__MAX,
};

/* QEMU's BlkdebugIOType: what a host request is. */
enum BlkdebugIOType {
    BLKDBG_IO_READ,
    BLKDBG_IO_WRITE,
    BLKDBG_IO_WRITE_ZEROES,
    BLKDBG_IO_DISCARD,
    BLKDBG_IO_FLUSH,
    BLKDBG_IO_BLOCK_STATUS,
    BLKDBG_IO__MAX,
};

/* The event or I/O type named name (QEMU's spelling), or -1. */
int blkdebug_event_parse(const char *name);
int blkdebug_iotype_parse(const char *name);
const char *blkdebug_event_name(int event);

enum BlkdebugAction {
    BLKDBG_INJECT_ERROR,
    BLKDBG_SET_STATE,
};

/* One rule, as QEMU's [inject-error] and [set-state] sections (or the
 * inject-error and set-state lists of a json:{"driver": "blkdebug"}
 * filename) give it.  blkdebug_rule_init() fills QEMU's defaults. */
typedef struct BlkdebugRule {
    int action;       /* BlkdebugAction */
    int event;        /* BlkdebugEvent */
    int64_t state;    /* only in this state; 0: any */
    /* inject-error */
    int error;        /* positive errno, default EIO; 0 injects nothing */
    int iotype;       /* BlkdebugIOType, or -1: read, write, write-zeroes,
                         discard and flush */
    int64_t sector;   /* only requests covering this 512-byte sector; -1: any */
    bool once;        /* removed after its first failure */
    bool immediately;
    /* set-state */
    int64_t new_state;
} BlkdebugRule;

void blkdebug_rule_init(BlkdebugRule *rule, int action);

typedef struct BlkDebug BlkDebug;

/* QEMU's blkdebug request limits (align, max-transfer, opt-write-zero,
 * max-write-zero, opt-discard, max-discard), in bytes; 0: none.  Fixed
 * once the blkdebug is attached. */
typedef struct BlkdebugLimits {
    uint64_t align, max_transfer;
    uint64_t opt_write_zero, max_write_zero;
    uint64_t opt_discard, max_discard;
} BlkdebugLimits;

/* bs's limits, or NULL when it has no blkdebug or the blkdebug none. */
const BlkdebugLimits *blkdebug_limits(const BlockDriverState *bs);

/* A blkdebug with these rules (copied) and no file yet, one reference
 * held by the caller; NULL on ENOMEM. */
BlkDebug *blkdebug_new(const BlkdebugRule *rules, int n);
void blkdebug_unref(BlkDebug *d); /* NULL is fine */
/* Reads a QEMU blkdebug config file: appends its rules to *rules
 * (malloc'd, *n of them).  -errno with a message on error. */
int blkdebug_read_config(const char *path, BlkdebugRule **rules, int *n);
/* Ties d to bs (and bs's host file), before the driver opens it, taking
 * a reference; detach (blk_close does) drops it. */
void blkdebug_attach(BlockDriverState *bs, BlkDebug *d);
void blkdebug_detach(BlockDriverState *bs);

/* qemu-io's break, remove_break, resume and wait_break: the next request
 * that reaches event stops there, tagged, until resumed ("blkdebug:
 * Suspended request 'TAG'" on stdout, as QEMU prints it).  -ENOTSUP
 * without blkdebug, -ENOENT for an unknown event or tag. */
int blkdebug_break(BlockDriverState *bs, const char *event, const char *tag);
int blkdebug_remove_break(BlockDriverState *bs, const char *tag);
int blkdebug_resume(BlockDriverState *bs, const char *tag);
bool blkdebug_is_suspended(BlockDriverState *bs, const char *tag);
/* whether a request could stop at a breakpoint now, or is stopped */
bool blkdebug_has_breaks(BlockDriverState *bs);
/* Drops every breakpoint and lets every stopped request go on: what is
 * waited for next (the image closing) must not wait for ever. */
void blkdebug_release(BlockDriverState *bs);

/* A blkdebug named as the top node (bs->filter_top) is where QEMU's
 * block layer, not its host file, is: it sees neither the format's code
 * points nor host requests, but the block layer's events (copy-on-read,
 * pwritev) and the guest's requests. */
void blkdebug_event_slow(BlkDebug *d, int event, bool top);
/* A code point of a format driver was reached. */
static inline void blkdebug_event(BlockDriverState *bs, int event)
{
    if (bs && __builtin_expect(bs->debug != NULL, 0))
        blkdebug_event_slow(bs->debug, event, false);
}
/* A code point of QEMU's block layer, above the format, was reached. */
static inline void blkdebug_top_event(BlockDriverState *bs, int event)
{
    if (bs && __builtin_expect(bs->debug != NULL, 0))
        blkdebug_event_slow(bs->debug, event, true);
}
/* Whether a guest request on bs fails under a top blkdebug (0 or -errno). */
int blkdebug_top_check_slow(BlkDebug *d, int iotype, uint64_t off, uint64_t len);
static inline int blkdebug_top_check(BlockDriverState *bs, int iotype, uint64_t off,
                                     uint64_t len)
{
    if (__builtin_expect(bs->debug != NULL, 0))
        return blkdebug_top_check_slow(bs->debug, iotype, off, len);
    return 0;
}

/* For block/util.c: how many files have a blkdebug attached, and whether
 * a request on fd fails (0 or -errno). */
extern int blkdebug_files;
int blkdebug_file_check_slow(int fd, int iotype, uint64_t off, uint64_t len);
static inline bool blkdebug_on(void)
{
    return __builtin_expect(__atomic_load_n(&blkdebug_files, __ATOMIC_RELAXED) != 0, 0);
}
static inline int blkdebug_file_check(int fd, int iotype, uint64_t off, uint64_t len)
{
    return blkdebug_on() ? blkdebug_file_check_slow(fd, iotype, off, len) : 0;
}

#endif
