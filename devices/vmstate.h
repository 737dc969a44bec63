/* Saved VM state: the byte cursor every device model saves its state
 * into and loads it back from, and calf's own container format that
 * holds those sections (docs/VMSTATE.md describes the bytes).
 *
 * A state read back is untrusted input (it comes from an image file):
 * every read is bounded by the section it comes from, a short section
 * makes the cursor fail (vms_get* then return zeros and vms_error() the
 * first problem), and a device's load hook must check every value it
 * takes before it uses it. */
#ifndef CALF_DEVICES_VMSTATE_H
#define CALF_DEVICES_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- one section's bytes ---- */

#define VMS_SECTION_MAX (16u << 20)  /* the largest section accepted */

struct vmstate_cursor {
    uint8_t *buf;         /* writing: malloc'd, grows; reading: borrowed */
    size_t len, cap, pos;
    bool writing;
    int err;              /* first error, 0: none */
    char msg[160];        /* what went wrong, for the caller's message */
};

void vms_writer_init(struct vmstate_cursor *c);
void vms_reader_init(struct vmstate_cursor *c, const void *buf, size_t len);
/* Frees a writer's buffer. */
void vms_free(struct vmstate_cursor *c);

void vms_put(struct vmstate_cursor *c, const void *p, size_t n);
void vms_put_u8(struct vmstate_cursor *c, uint8_t v);
void vms_put_u16(struct vmstate_cursor *c, uint16_t v);
void vms_put_u32(struct vmstate_cursor *c, uint32_t v);
void vms_put_u64(struct vmstate_cursor *c, uint64_t v);

/* Reads n bytes (zeros and an error when fewer are left). */
void vms_get(struct vmstate_cursor *c, void *p, size_t n);
uint8_t vms_get_u8(struct vmstate_cursor *c);
uint16_t vms_get_u16(struct vmstate_cursor *c);
uint32_t vms_get_u32(struct vmstate_cursor *c);
uint64_t vms_get_u64(struct vmstate_cursor *c);
bool vms_get_bool(struct vmstate_cursor *c);   /* 0 or 1, else an error */
/* A value that must be at most max (else an error and 0). */
uint32_t vms_get_max(struct vmstate_cursor *c, uint32_t max, const char *what);

/* A tagged record inside a section: u32 tag, u32 length, the bytes.
 * Returns 1 with *tag, *data (into the section) and *len, 0 at the end
 * of the section, -EINVAL when a record runs past it. */
int vms_get_record(struct vmstate_cursor *c, uint32_t *tag,
                   const uint8_t **data, uint32_t *len);
void vms_put_record(struct vmstate_cursor *c, uint32_t tag, const void *p,
                    uint32_t len);
#define VMS_TAG(a, b, c, d) \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | \
     (uint32_t)(d) << 24)

/* Marks the cursor failed with a message (the first one wins); returns
 * the error, -EINVAL unless err says otherwise. */
int vms_fail(struct vmstate_cursor *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 0, or the first error; a reader that did not use every byte fails
 * with "N bytes left over". */
int vms_finish(struct vmstate_cursor *c);

/* ---- the container ---- */

#define VMS_MAGIC "CALFVMST"
#define VMS_VERSION 2  /* 2: virtio queues, IDE, VGA, UART break */
#define VMS_HEADER_SIZE 128
#define VMS_BUILD_ID_MAX 48
#define VMS_NAME_MAX 64
#define VMS_MAX_SECTIONS 1024
#define VMS_RAM_ALIGN (2u << 20)  /* RAM's offset in the state */

struct vmstate_header {
    uint32_t version;
    char build_id[VMS_BUILD_ID_MAX + 1];
    uint64_t ram_size;
    uint32_t ncpus;
    uint32_t nsections;
    uint64_t sections_len;  /* bytes of sections after the header */
    uint32_t sections_crc;  /* CRC-32 (zlib's) of those bytes */
    uint64_t ram_offset;    /* where guest RAM starts in the state */
    uint64_t total_len;     /* ram_offset + ram_size */
};

struct vmstate_section {
    char name[VMS_NAME_MAX + 1];  /* "cpu0", "serial 0x3f8", "pci 00:02.0" */
    const uint8_t *data;
    uint32_t len;
};

/* Parses the header (the first VMS_HEADER_SIZE bytes of a state of
 * total bytes).  Returns 0 or -EINVAL with a message in msg. */
int vms_parse_header(const void *buf, size_t len, uint64_t total,
                     struct vmstate_header *h, char *msg, size_t msglen);
/* The sections in buf (header->sections_len bytes following the header),
 * checked against the header's count and CRC: *out is malloc'd, its
 * entries point into buf.  Returns 0 or -EINVAL with a message. */
int vms_parse_sections(const struct vmstate_header *h, const void *buf,
                       size_t len, struct vmstate_section **out,
                       char *msg, size_t msglen);

/* Writing: a header for these values into hdr (VMS_HEADER_SIZE bytes);
 * sections are appended to a writer cursor with vms_put_section. */
void vms_put_section(struct vmstate_cursor *all, const char *name,
                     const void *data, size_t len);
void vms_make_header(uint8_t *hdr, const struct vmstate_header *h);

uint32_t vms_crc32(uint32_t crc, const void *buf, size_t len);

#endif
