/* Byte order of device registers and guest structures, independent of
 * the host's: PCI configuration space, virtio and ATA are little-endian,
 * fw_cfg and SCSI/ATAPI are big-endian.  Every device model uses these;
 * none keeps a copy of its own. */
#ifndef CALF_DEVICES_BYTEORDER_H
#define CALF_DEVICES_BYTEORDER_H

#include <stdint.h>

/* size bytes (1 to 8) at p, least significant first. */
static inline uint64_t get_le(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < size && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline void put_le(uint8_t *p, unsigned size, uint64_t v)
{
    for (unsigned i = 0; i < size && i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)get_le(p, 2);
}

static inline uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)get_le(p, 4);
}

static inline uint64_t get_le64(const uint8_t *p)
{
    return get_le(p, 8);
}

static inline void put_le16(uint8_t *p, uint16_t v)
{
    put_le(p, 2, v);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    put_le(p, 4, v);
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    put_le(p, 8, v);
}

/* size bytes (1 to 8) at p, most significant first. */
static inline uint64_t get_be(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < size && i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline void put_be(uint8_t *p, unsigned size, uint64_t v)
{
    for (unsigned i = size < 8 ? size : 8; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)get_be(p, 2);
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)get_be(p, 4);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
    put_be(p, 2, v);
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    put_be(p, 4, v);
}

#endif
