/* The host side of the serial console: guest output is collected and
 * written to the host in batches (one host write per guest byte is the
 * boot-time sink to avoid), scanned on the way for the --expect text;
 * terminal input is read in raw mode, with Ctrl-A x to quit; input from
 * a pipe or file goes to the guest untouched. */
#ifndef CALF_VMM_CONSOLE_H
#define CALF_VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct console;

/* on_match runs (once, on the writing thread) when expect is seen. */
struct console *console_create(int out_fd, const char *expect,
                               void (*on_match)(void *), void *opaque);
void console_destroy(struct console *c);

void console_write(struct console *c, const uint8_t *buf, size_t len);
/* Writes out what is buffered; the main loop calls it every few ms. */
void console_flush(struct console *c);
bool console_pending(struct console *c);

/* Input from in_fd: a terminal is put in raw mode (restored by
 * console_destroy) and takes QEMU's Ctrl-A commands: x quits, b sends a
 * BREAK, Ctrl-A Ctrl-A sends one Ctrl-A; anything else (a pipe, a file)
 * is read as it is, every byte for the guest, unless the environment
 * has CALF_CONSOLE_ESCAPES=1 (then it takes the commands too: scripted
 * tests).  Returns -EBADF when in_fd is not open for reading. */
int console_input_start(struct console *c, int in_fd);
/* Reads what is there; copies guest-bound bytes into buf.  Sets *quit on
 * Ctrl-A x, *brk on Ctrl-A b (a BREAK goes to the guest after the bytes
 * returned; what followed it comes with the next call, which then reads
 * nothing new).  Returns the byte count (0 when nothing was for the
 * guest), -ENODATA at end of input (the VM keeps running), or another
 * -errno. */
long console_input_read(struct console *c, uint8_t *buf, size_t len,
                        bool *quit, bool *brk);

/* Bytes read from the input and not handed out yet (after a break). */
bool console_input_more(struct console *c);
uint64_t console_bytes(struct console *c);
uint64_t console_host_writes(struct console *c);

#endif
