/* Device models.  Each lives in one file, registers its ports on the bus
 * and keeps its state private; the VMM creates them and may feed console
 * input to the serial port. */
#ifndef CALF_DEVICES_H
#define CALF_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "devices/bus.h"

struct serial;

/* Every device's state belongs to the bus and goes with bus_destroy(). */

/* 16550A UART at base (0x3f8 for COM1) on ISA irq. */
int serial_create(struct bus *bus, uint16_t base, unsigned irq,
                  struct serial **out);
/* Bytes typed on the host console; returns how many the receive FIFO took
 * (the rest should be offered again later).  Takes the bus lock. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);
/* A break on the line (a 0 byte with the LSR's break bit); false when
 * the receive FIFO is full.  Takes the bus lock. */
bool serial_break(struct serial *s);

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
 * controller translates when its command byte says so.  Dropped (0)
 * while the guest disabled the keyboard; -EAGAIN, nothing queued, when
 * the keyboard's 15-byte queue lacks room for all of it.  Takes the bus
 * lock. */
int i8042_key_event(struct i8042 *k, const uint8_t *set2, size_t n);
/* The controller's set 2 -> set 1 translation of one byte (i8042-keys.c);
 * an F0 break prefix is the caller's business. */
uint8_t i8042_set2_to_set1(uint8_t code);

/* QEMU's isa-debug-exit at port 0x501: a write of v stops the machine
 * with exit status (v << 1) | 1. */
int debug_exit_create(struct bus *bus, uint16_t port);

/* PIIX3 PCI-to-ISA bridge at function 0 of slot (a PC has it at 00:01.0),
 * with its PIRQ route registers. */
struct pci;
struct pci_dev;
struct piix3;
int piix3_create(struct pci *pci, int slot, struct bus *bus,
                 struct piix3 **out);
/* A pci_intx_route_fn (devices/pci.h) reading the PIRQ registers, for
 * machines whose firmware programs them; opaque is the struct piix3. */
int piix3_route_intx(void *opaque, int slot, int pin);

/* QEMU's fw_cfg (ports 0x510/0x511, DMA at 0x514): what firmware reads
 * about the machine.  Items are copied; call before the guest runs. */
struct fw_cfg;
int fw_cfg_create(struct bus *bus, struct fw_cfg **out);
/* Not bus-owned (its items are separate allocations): the VMM frees it
 * once the vCPUs are stopped. */
void fw_cfg_destroy(struct fw_cfg *f);
/* A named file, listed in the directory; names as QEMU's ("etc/e820",
 * "vgaroms/vgabios-stdvga.bin", at most 55 bytes).  Adding a name again
 * replaces its contents. */
int fw_cfg_add_file(struct fw_cfg *f, const char *name, const void *data,
                    uint32_t len);
/* A file holding a little-endian integer of size bytes, the form
 * SeaBIOS's romfile_loadint() reads ("etc/boot-fail-wait"). */
int fw_cfg_add_file_int(struct fw_cfg *f, const char *name, uint64_t v,
                        unsigned size);
/* Numbered items (FW_CFG_NB_CPUS 0x05 ...), little-endian. */
int fw_cfg_add_bytes(struct fw_cfg *f, uint16_t key, const void *data,
                     uint32_t len);
int fw_cfg_add_u16(struct fw_cfg *f, uint16_t key, uint16_t v);
int fw_cfg_add_u32(struct fw_cfg *f, uint16_t key, uint32_t v);
int fw_cfg_add_u64(struct fw_cfg *f, uint16_t key, uint64_t v);
#define FW_CFG_RAM_SIZE   0x03
#define FW_CFG_NOGRAPHIC  0x04
#define FW_CFG_NB_CPUS    0x05
#define FW_CFG_MAX_CPUS   0x0f
#define FW_CFG_BOOT_MENU  0x0e
#define FW_CFG_IRQ0_OVERRIDE 0x8002

/* i440FX host bridge chipset registers on 00:00.0: PAM 0x59-0x5f and
 * SMRAM 0x72, stored and read back (guest RAM stays RAM under them). */
int i440fx_init(struct pci_dev *host_bridge);

/* System control port A (0x92): fast A20 and the fast reset bit. */
int piix3_port92_create(struct bus *bus);

/* QEMU's debugcon at port (0x402 for SeaBIOS): reads answer 0xe9 and
 * the bytes go to out when out is not NULL; else the port reads 0xff
 * and the firmware keeps its log to itself. */
struct debugcon;
int debugcon_create(struct bus *bus, uint16_t port, FILE *out);

/* PIIX4 ACPI power management (a PC has it at 00:01.3): PM1
 * event/control and the PM timer at ACPI_PM_BASE; S5 (sleep type
 * ACPI_PM_S5_TYP) powers off.
 * Under firmware boot the firmware enables it; otherwise it starts
 * enabled at ACPI_PM_BASE. */
#define ACPI_PM_BASE 0x600
#define ACPI_PM_S5_TYP 0
#define ACPI_PM_SCI_IRQ 9
struct acpi_pm;
int acpi_pm_create(struct pci *pci, int slot, int fn, struct bus *bus,
                   bool firmware, struct acpi_pm **out);
/* Presses the ACPI power button (PM1 PWRBTN_STS, then the SCI if the
 * guest enabled it); any thread, takes the bus lock. */
void acpi_pm_power_button(struct acpi_pm *pm);

/* Ports decoded and ignored: POST code port 0x80 and friends. */
int port80_create(struct bus *bus);

#endif
