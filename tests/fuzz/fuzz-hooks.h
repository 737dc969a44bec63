/* What the device fuzz harnesses learn from the hooks in fuzz-hooks.c:
 * devices/ide/ide.c and devices/virtio/blk.c are compiled for them with a
 * few calls renamed (-D, see tests/fuzz.mk) so that a harness can wait
 * for work on the devices' own threads without changing the devices. */
#ifndef CALF_TESTS_FUZZ_HOOKS_H
#define CALF_TESTS_FUZZ_HOOKS_H

#include <stdint.h>

/* Forgets the devices of the last input (call before creating new ones). */
void fuzz_hooks_reset(void);
/* The opaque pointer a hooked device registered for port base, or NULL. */
void *fuzz_pio_opaque(uint16_t base);
/* Waits until every virtio-blk queue thread has taken and served every
 * kick sent to it; aborts after 20 s (a hang). */
void fuzz_virtio_settle(void);

#endif
