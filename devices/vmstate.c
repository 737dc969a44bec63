/* Saved VM state: section cursors and the container (devices/vmstate.h,
 * docs/VMSTATE.md).  Everything read here is untrusted. */
#include "devices/vmstate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/byteorder.h"

/* ---- cursor ---- */

void vms_writer_init(struct vmstate_cursor *c)
{
    memset(c, 0, sizeof(*c));
    c->writing = true;
}

void vms_reader_init(struct vmstate_cursor *c, const void *buf, size_t len)
{
    memset(c, 0, sizeof(*c));
    c->buf = (uint8_t *)buf;
    c->len = len;
}

void vms_free(struct vmstate_cursor *c)
{
    if (c->writing)
        free(c->buf);
    c->buf = NULL;
    c->len = c->cap = c->pos = 0;
}

int vms_fail(struct vmstate_cursor *c, int err, const char *fmt, ...)
{
    va_list ap;

    if (!c->err) {
        c->err = err ? err : -EINVAL;
        va_start(ap, fmt);
        vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
        va_end(ap);
    }
    return c->err;
}

void vms_put(struct vmstate_cursor *c, const void *p, size_t n)
{
    if (c->err)
        return;
    if (!c->writing) {
        vms_fail(c, -EINVAL, "write to a reader");
        return;
    }
    if (n > VMS_SECTION_MAX || c->len + n > VMS_SECTION_MAX * 64ULL) {
        vms_fail(c, -EFBIG, "state too large");
        return;
    }
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        uint8_t *nb;

        while (cap < c->len + n)
            cap *= 2;
        nb = realloc(c->buf, cap);
        if (!nb) {
            vms_fail(c, -ENOMEM, "out of memory");
            return;
        }
        c->buf = nb;
        c->cap = cap;
    }
    if (n)
        memcpy(c->buf + c->len, p, n);
    c->len += n;
}

void vms_put_u8(struct vmstate_cursor *c, uint8_t v) { vms_put(c, &v, 1); }

void vms_put_u16(struct vmstate_cursor *c, uint16_t v)
{
    uint8_t b[2];

    put_le(b, 2, v);
    vms_put(c, b, 2);
}

void vms_put_u32(struct vmstate_cursor *c, uint32_t v)
{
    uint8_t b[4];

    put_le(b, 4, v);
    vms_put(c, b, 4);
}

void vms_put_u64(struct vmstate_cursor *c, uint64_t v)
{
    vms_put_u32(c, (uint32_t)v);
    vms_put_u32(c, (uint32_t)(v >> 32));
}

void vms_get(struct vmstate_cursor *c, void *p, size_t n)
{
    if (!c->err && (c->writing || n > c->len - c->pos))
        vms_fail(c, -EINVAL, "section ends %zu bytes early",
                 c->writing ? 0 : n - (c->len - c->pos));
    if (c->err) {
        memset(p, 0, n);
        return;
    }
    memcpy(p, c->buf + c->pos, n);
    c->pos += n;
}

uint8_t vms_get_u8(struct vmstate_cursor *c)
{
    uint8_t v;

    vms_get(c, &v, 1);
    return v;
}

uint16_t vms_get_u16(struct vmstate_cursor *c)
{
    uint8_t b[2];

    vms_get(c, b, 2);
    return get_le16(b);
}

uint32_t vms_get_u32(struct vmstate_cursor *c)
{
    uint8_t b[4];

    vms_get(c, b, 4);
    return get_le32(b);
}

uint64_t vms_get_u64(struct vmstate_cursor *c)
{
    uint64_t lo = vms_get_u32(c);

    return lo | (uint64_t)vms_get_u32(c) << 32;
}

bool vms_get_bool(struct vmstate_cursor *c)
{
    uint8_t v = vms_get_u8(c);

    if (v > 1) {
        vms_fail(c, -EINVAL, "a flag byte is %u", v);
        return false;
    }
    return v;
}

uint32_t vms_get_max(struct vmstate_cursor *c, uint32_t max, const char *what)
{
    uint32_t v = vms_get_u32(c);

    if (v > max) {
        vms_fail(c, -EINVAL, "%s %u is out of range (at most %u)", what, v,
                 max);
        return 0;
    }
    return v;
}

int vms_get_record(struct vmstate_cursor *c, uint32_t *tag,
                   const uint8_t **data, uint32_t *len)
{
    if (c->err)
        return c->err;
    if (c->pos == c->len)
        return 0;
    *tag = vms_get_u32(c);
    *len = vms_get_u32(c);
    if (c->err)
        return c->err;
    if (*len > c->len - c->pos)
        return vms_fail(c, -EINVAL, "a record of %u bytes runs past its "
                        "section", *len);
    *data = c->buf + c->pos;
    c->pos += *len;
    return 1;
}

void vms_put_record(struct vmstate_cursor *c, uint32_t tag, const void *p,
                    uint32_t len)
{
    vms_put_u32(c, tag);
    vms_put_u32(c, len);
    vms_put(c, p, len);
}

int vms_finish(struct vmstate_cursor *c)
{
    if (!c->err && !c->writing && c->pos != c->len)
        vms_fail(c, -EINVAL, "%zu bytes left over", c->len - c->pos);
    return c->err;
}

/* ---- CRC-32 (zlib's polynomial), bytewise: states are small but RAM,
 * which it does not cover ---- */

uint32_t vms_crc32(uint32_t crc, const void *buf, size_t len)
{
    static uint32_t table[256];
    static bool ready;
    const uint8_t *p = buf;

    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;

            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        __atomic_store_n(&ready, true, __ATOMIC_RELEASE);
    }
    crc = ~crc;
    while (len--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- container ---- */

/* Header bytes (little-endian), docs/VMSTATE.md */
#define H_MAGIC      0
#define H_VERSION    8
#define H_HDRSIZE    12
#define H_BUILD      16
#define H_RAM_SIZE   64
#define H_NCPUS      72
#define H_NSECT      76
#define H_SECT_LEN   80
#define H_SECT_CRC   88
#define H_HDR_CRC    92
#define H_RAM_OFF    96
#define H_TOTAL      104

static uint64_t le64(const uint8_t *p)
{
    return get_le(p, 4) | (uint64_t)get_le(p + 4, 4) << 32;
}

static void put64(uint8_t *p, uint64_t v)
{
    put_le(p, 4, (uint32_t)v);
    put_le(p + 4, 4, (uint32_t)(v >> 32));
}

static uint32_t header_crc(const uint8_t *hdr)
{
    uint8_t copy[VMS_HEADER_SIZE];

    memcpy(copy, hdr, sizeof(copy));
    memset(copy + H_HDR_CRC, 0, 4);
    return vms_crc32(0, copy, sizeof(copy));
}

void vms_make_header(uint8_t *hdr, const struct vmstate_header *h)
{
    memset(hdr, 0, VMS_HEADER_SIZE);
    memcpy(hdr + H_MAGIC, VMS_MAGIC, 8);
    put_le(hdr + H_VERSION, 4, h->version);
    put_le(hdr + H_HDRSIZE, 4, VMS_HEADER_SIZE);
    memcpy(hdr + H_BUILD, h->build_id,
           strnlen(h->build_id, VMS_BUILD_ID_MAX));
    put64(hdr + H_RAM_SIZE, h->ram_size);
    put_le(hdr + H_NCPUS, 4, h->ncpus);
    put_le(hdr + H_NSECT, 4, h->nsections);
    put64(hdr + H_SECT_LEN, h->sections_len);
    put_le(hdr + H_SECT_CRC, 4, h->sections_crc);
    put64(hdr + H_RAM_OFF, h->ram_offset);
    put64(hdr + H_TOTAL, h->total_len);
    put_le(hdr + H_HDR_CRC, 4, header_crc(hdr));
}

#define FAIL(...) \
    do { snprintf(msg, msglen, __VA_ARGS__); return -EINVAL; } while (0)

int vms_parse_header(const void *buf, size_t len, uint64_t total,
                     struct vmstate_header *h, char *msg, size_t msglen)
{
    const uint8_t *p = buf;

    memset(h, 0, sizeof(*h));
    if (len < VMS_HEADER_SIZE || total < VMS_HEADER_SIZE)
        FAIL("the VM state is truncated (%llu bytes, a header alone is %u)",
             (unsigned long long)(len < total ? len : total), VMS_HEADER_SIZE);
    if (memcmp(p + H_MAGIC, VMS_MAGIC, 8)) {
        if (!memcmp(p, "QEVM", 4))
            FAIL("the VM state was saved by QEMU, not calf (QEMU's vmstate "
                 "format is not calf's)");
        FAIL("the VM state is not calf's (bad magic)");
    }
    h->version = get_le32(p + H_VERSION);
    if (h->version != VMS_VERSION)
        FAIL("the VM state has format version %u, this calf reads %u",
             h->version, VMS_VERSION);
    if (get_le32(p + H_HDRSIZE) != VMS_HEADER_SIZE)
        FAIL("the VM state header has size %u, not %u",
             get_le32(p + H_HDRSIZE), VMS_HEADER_SIZE);
    if (get_le32(p + H_HDR_CRC) != header_crc(p))
        FAIL("the VM state header is corrupt (checksum mismatch)");
    memcpy(h->build_id, p + H_BUILD, VMS_BUILD_ID_MAX);
    h->build_id[VMS_BUILD_ID_MAX] = 0;
    for (const char *c = h->build_id; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            FAIL("the VM state's build id is not printable");
    h->ram_size = le64(p + H_RAM_SIZE);
    h->ncpus = get_le32(p + H_NCPUS);
    h->nsections = get_le32(p + H_NSECT);
    h->sections_len = le64(p + H_SECT_LEN);
    h->sections_crc = get_le32(p + H_SECT_CRC);
    h->ram_offset = le64(p + H_RAM_OFF);
    h->total_len = le64(p + H_TOTAL);
    if (h->nsections > VMS_MAX_SECTIONS)
        FAIL("the VM state has %u sections (at most %u)", h->nsections,
             VMS_MAX_SECTIONS);
    if (h->sections_len > (uint64_t)VMS_SECTION_MAX * 4)
        FAIL("the VM state's sections are too large (%llu bytes)",
             (unsigned long long)h->sections_len);
    if (h->ram_offset % VMS_RAM_ALIGN ||
        h->ram_offset < VMS_HEADER_SIZE + h->sections_len)
        FAIL("the VM state's RAM offset 0x%llx is invalid",
             (unsigned long long)h->ram_offset);
    /* no sum may wrap: RAM ends inside the state and the state inside
     * the snapshot (ram_offset <= total - ram_size) */
    if (h->ram_size > (1ULL << 46) || h->ram_size % 4096 ||
        h->ram_offset > UINT64_MAX - h->ram_size ||
        h->total_len != h->ram_offset + h->ram_size)
        FAIL("the VM state's sizes are inconsistent (RAM %llu bytes at "
             "0x%llx, total %llu)", (unsigned long long)h->ram_size,
             (unsigned long long)h->ram_offset,
             (unsigned long long)h->total_len);
    if (h->total_len > total)
        FAIL("the VM state is truncated: it needs %llu bytes, the snapshot "
             "holds %llu", (unsigned long long)h->total_len,
             (unsigned long long)total);
    return 0;
}

int vms_parse_sections(const struct vmstate_header *h, const void *buf,
                       size_t len, struct vmstate_section **out,
                       char *msg, size_t msglen)
{
    const uint8_t *p = buf;
    struct vmstate_section *s;
    size_t pos = 0;

    *out = NULL;
    if (len != h->sections_len)
        FAIL("the VM state is truncated (%zu of %llu section bytes)", len,
             (unsigned long long)h->sections_len);
    if (vms_crc32(0, buf, len) != h->sections_crc)
        FAIL("the VM state is corrupt (checksum mismatch)");
    s = calloc(h->nsections ? h->nsections : 1, sizeof(*s));
    if (!s)
        FAIL("out of memory");
    for (uint32_t i = 0; i < h->nsections; i++) {
        uint32_t nl, dl;

        if (len - pos < 2)
            goto short_;
        nl = get_le16(p + pos);
        pos += 2;
        if (!nl || nl > VMS_NAME_MAX) {
            snprintf(msg, msglen, "VM state section %u has a name of %u "
                     "bytes", i, nl);
            goto bad;
        }
        if (len - pos < nl + 4)
            goto short_;
        memcpy(s[i].name, p + pos, nl);
        s[i].name[nl] = 0;
        for (uint32_t k = 0; k < nl; k++)
            if (p[pos + k] < 0x20 || p[pos + k] > 0x7e) {
                snprintf(msg, msglen, "VM state section %u has an "
                         "unprintable name", i);
                goto bad;
            }
        pos += nl;
        dl = get_le32(p + pos);
        pos += 4;
        if (dl > VMS_SECTION_MAX || dl > len - pos)
            goto short_;
        s[i].data = p + pos;
        s[i].len = dl;
        pos += dl;
        for (uint32_t k = 0; k < i; k++)
            if (!strcmp(s[k].name, s[i].name)) {
                snprintf(msg, msglen, "VM state section '%s' appears twice",
                         s[i].name);
                goto bad;
            }
    }
    if (pos != len) {
        snprintf(msg, msglen, "the VM state has %zu bytes after its last "
                 "section", len - pos);
        goto bad;
    }
    *out = s;
    return 0;
short_:
    snprintf(msg, msglen, "the VM state's sections run past their end");
bad:
    free(s);
    return -EINVAL;
}

void vms_put_section(struct vmstate_cursor *all, const char *name,
                     const void *data, size_t len)
{
    size_t nl = strlen(name);

    if (!nl || nl > VMS_NAME_MAX) {
        vms_fail(all, -EINVAL, "section name '%s' is too long", name);
        return;
    }
    if (len > VMS_SECTION_MAX) {
        vms_fail(all, -EFBIG, "section '%s' is too large", name);
        return;
    }
    vms_put_u16(all, (uint16_t)nl);
    vms_put(all, name, nl);
    vms_put_u32(all, (uint32_t)len);
    vms_put(all, data, len);
}
