/* LUKS1 headers as QEMU stores them inside qcow2 (the region the
 * full-disk-encryption header extension 0x0537be77 points to): a 592-byte
 * header, then 8 key slots of anti-forensically split key material.  The
 * header is untrusted input: luks_parse() validates every field. */
#ifndef CALF_LUKS_H
#define CALF_LUKS_H

#include <stddef.h>
#include <stdint.h>

#include "block/block.h"
#include "block/crypto.h"

#define LUKS_HEADER_SIZE 592
#define LUKS_NUM_SLOTS 8
#define LUKS_STRIPES 4000
#define LUKS_SALT_LEN 32
#define LUKS_DIGEST_LEN 20
/* PBKDF2 iteration counts above this are refused: QEMU's default (2 s of
 * CPU at create time) gives a few million here and ~20 million on a fast
 * core; 2^27 is ~30 s of SHA-256 even on a fast core, so a hostile header
 * cannot make an open spin for hours (at most 8 slots + the digest). */
#define LUKS_MAX_ITERS (UINT32_C(1) << 27)
/* The cap in force: LUKS_MAX_ITERS; the fuzz harness lowers it so that
 * each input stays fast. */
extern uint32_t luks_max_iters;
/* The region never needs more: 4 KiB + 8 slots of 64 * 4000 bytes. */
#define LUKS_MAX_REGION (16u << 20)

typedef struct LuksHeader {
    BlkCipherSpec spec;
    char cipher_name[32], cipher_mode[32], hash[32];
    char uuid[40];
    uint32_t payload_sector;
    uint32_t key_bytes;
    uint8_t mk_digest[LUKS_DIGEST_LEN];
    uint8_t mk_salt[LUKS_SALT_LEN];
    uint32_t mk_iters;
    struct {
        bool active;
        uint32_t iters;
        uint8_t salt[LUKS_SALT_LEN];
        uint32_t key_sector;
        uint32_t stripes;
    } slot[LUKS_NUM_SLOTS];
    /* set by luks_unlock(): a new key slot needs the master key */
    bool unlocked;
    uint8_t master_key[BLK_CRYPTO_MAX_KEY];
} LuksHeader;

/* What `create -o encrypt.*` asks for. */
typedef struct LuksCreateOpts {
    const char *cipher_alg, *cipher_mode, *ivgen_alg, *ivgen_hash_alg, *hash_alg;
    uint64_t iter_time_ms;
} LuksCreateOpts;

/* Parses and checks the header at the start of a region of region_len
 * bytes.  -EINVAL with a message naming the field. */
int luks_parse(const uint8_t *buf, size_t len, uint64_t region_len, LuksHeader *h);
/* Tries the passphrase on each active slot; region holds the whole
 * header region.  *out is the data cipher.  -EACCES: "Invalid password,
 * cannot unlock any keyslot". */
int luks_unlock(LuksHeader *h, const uint8_t *region, size_t region_len,
                const char *passphrase, BlkCipher **out);
/* Bytes of the header region for these options (for measure), or
 * -EINVAL. */
int64_t luks_region_size(const LuksCreateOpts *o);
/* Builds a new header region (malloc'd, *len bytes) with slot 0 holding
 * a fresh random master key under passphrase. */
int luks_create(const LuksCreateOpts *o, const char *passphrase, uint8_t **region,
                size_t *len, BlkCipher **out);
void luks_get_info(const LuksHeader *h, BlockLuksInfo *info);

/* What `amend -o encrypt.*` asks for (QEMU's QCryptoBlockAmendOptionsLUKS);
 * the secrets are the passphrases themselves, NULL when not given. */
typedef struct LuksAmendOpts {
    bool activate;              /* encrypt.state=active, else inactive */
    bool has_keyslot, has_iter_time;
    uint64_t keyslot, iter_time_ms;
    const char *new_secret, *old_secret;
} LuksAmendOpts;

/* Checks an amend against the header as qemu-img 7.2 does and picks the
 * slots it changes (bit i: slot i).  Erasing by password runs PBKDF2 on
 * every active slot.  -EINVAL with QEMU's message. */
int luks_amend_select(const LuksHeader *h, const uint8_t *region, size_t region_len,
                      const LuksAmendOpts *o, bool force, unsigned *slots);
/* PBKDF2 iterations that take iter_time_ms here (measured, as QEMU;
 * clamped as luks_create does).  -ERANGE with QEMU's message when the
 * product overflows. */
int luks_slot_iters(const LuksHeader *h, int i, uint64_t iter_time_ms, uint32_t *iters);
/* Puts the master key (h must be unlocked) under pass into slot i's key
 * material in region and the slot's new salt and iterations into h; the
 * slot stays inactive, so the caller can write the material before the
 * header entry that activates it. */
int luks_slot_fill(LuksHeader *h, uint8_t *region, int i, const char *pass, uint32_t iters);
/* Marks slot i inactive in h, as QEMU leaves an erased slot. */
void luks_slot_clear(LuksHeader *h, int i);
/* Slot i's 48-byte entry as the header stores it, and where it lies in
 * the region. */
void luks_slot_encode(const LuksHeader *h, int i, uint8_t out[48]);
size_t luks_slot_entry_offset(int i);
/* Where slot i's key material lies in the region, and its length. */
uint64_t luks_slot_material_offset(const LuksHeader *h, int i);
size_t luks_slot_material_len(const LuksHeader *h);

/* The amend options named prefix + "state", "keyslot", "new-secret",
 * "old-secret", "iter-time" ("encrypt." in qcow2, "" for the luks
 * format): whether any is given, and all of them checked (QEMU's
 * messages; iter-time defaults to 2000 ms). */
bool luks_amend_wanted(BlockOptions *opts, const char *prefix);
int luks_amend_parse(BlockOptions *opts, const char *prefix, LuksAmendOpts *l);

/* Where a header region lies: at off of fd; sync(opaque) makes each
 * step of an amend durable before the next. */
typedef struct LuksRegionIO {
    int fd;
    uint64_t off;
    const char *filename;
    int (*sync)(void *opaque);
    void *opaque;
} LuksRegionIO;
/* Adds or erases the key slots o selects (luks_amend_select): region
 * holds the region as read from io, h its parsed header (unlocked to
 * add a key); both are updated with what is written. */
int luks_amend_apply(LuksHeader *h, uint8_t *region, size_t region_len, const LuksRegionIO *io,
                     const LuksAmendOpts *o, bool force);

#endif
