/* Device models.  Each lives in one file, registers its ports on the bus
 * and keeps its state private; the VMM creates them and may feed console
 * input to the serial port. */
#ifndef CALF_DEVICES_H
#define CALF_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/bus.h"

struct serial;

/* Every device's state belongs to the bus and goes with bus_destroy(). */

/* 16550A UART at base (0x3f8 for COM1) on ISA irq. */
int serial_create(struct bus *bus, uint16_t base, unsigned irq,
                  struct serial **out);
/* Bytes typed on the host console; returns how many the receive FIFO took
 * (the rest should be offered again later).  Takes the bus lock. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

/* MC146818 CMOS/RTC at 0x70/0x71: host time (UTC) and the memory-size
 * bytes firmware reads.  low_ram counts RAM below 4 GiB, high_ram above. */
int rtc_create(struct bus *bus, uint64_t low_ram, uint64_t high_ram);

/* i8042 keyboard controller at 0x60/0x64 with a PS/2 keyboard (no
 * mouse); its reset line stops the machine.  *out (may be NULL) is for
 * i8042_key_event(). */
struct i8042;
int i8042_create(struct bus *bus, struct i8042 **out);
/* A key press or release from the host in scan code set 2 (the bytes of
 * one key); the keyboard converts them to the set the guest chose, the
 * controller translates when its command byte says so.  Dropped while
 * the guest disabled the keyboard.  Takes the bus lock. */
void i8042_key_event(struct i8042 *k, const uint8_t *set2, size_t n);
/* The controller's set 2 -> set 1 translation of one byte (i8042-keys.c);
 * an F0 break prefix is the caller's business. */
uint8_t i8042_set2_to_set1(uint8_t code);

/* QEMU's isa-debug-exit at port 0x501: a write of v stops the machine
 * with exit status (v << 1) | 1. */
int debug_exit_create(struct bus *bus, uint16_t port);

/* PIIX3 PCI-to-ISA bridge at 00:01.0 with its PIRQ route registers. */
struct pci;
struct piix3;
int piix3_create(struct pci *pci, struct bus *bus, struct piix3 **out);
/* A pci_intx_route_fn (vmm/pci.h) reading the PIRQ registers, for
 * machines whose firmware programs them; opaque is the struct piix3. */
int piix3_route_intx(void *opaque, int slot, int pin);

/* Ports decoded and ignored: POST code port 0x80 and friends. */
int port80_create(struct bus *bus);

#endif
