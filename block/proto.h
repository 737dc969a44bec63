/* The host file calls of block/util.c on a virtual fd (a node as host
 * file, see blk_file_is_node in block/block.h): block/proto.c answers
 * them with the node's requests.  Only block/util.c calls these. */
#ifndef CALF_BLOCK_PROTO_H
#define CALF_BLOCK_PROTO_H

#include "block/block.h"

int vfd_pread(int fd, void *buf, size_t len, uint64_t off);
int vfd_pwrite(int fd, const void *buf, size_t len, uint64_t off);
int vfd_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
int vfd_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
int vfd_sync(int fd);
int64_t vfd_size(int fd);
int vfd_stat(int fd, struct stat *st);
int vfd_truncate(int fd, uint64_t size);
/* the node covers [0, off+len); what it gains reads as zeros */
int vfd_extend(int fd, uint64_t off, uint64_t len);
/* [off, off+len) reads as zeros (the node may deallocate it) */
int vfd_zero(int fd, uint64_t off, uint64_t len);
int64_t vfd_seek(int fd, uint64_t off, int whence);

#endif
