/* calf-io: qemu-io's core commands over the block layer. */
#ifndef CALF_IO_H
#define CALF_IO_H

#include <stdbool.h>

#include "block/block.h"

/* Runs one command line ("write -P 0xab 0 64k") against bs (which may be
 * NULL when no file is open).  Returns 0, or a negative errno if the
 * command failed; *quit is set by "quit". */
int io_command(BlockDriverState *bs, const char *line, bool *quit);
/* Waits for the aio requests still running (before the image closes). */
void io_aio_drain(void);

#endif
