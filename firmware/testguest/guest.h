/* The test guest's own tiny runtime: port I/O, serial output, strings. */
#ifndef CALF_TESTGUEST_H
#define CALF_TESTGUEST_H

#include <stddef.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;

    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint16_t inw(uint16_t port)
{
    uint16_t v;

    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;

    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* The virtio-blk and IDE tests' large buffers: zeroed by iobss_zero()
 * when such a test starts, not by every boot (at the emulating backend's
 * speed zeroing them cost ~20 ms of each boot). */
#define IOBSS __attribute__((section(".bss.io")))
void iobss_zero(void);
void serial_init(void);
void serial_puts(const char *s);
void serial_put_hex(uint64_t v);
void serial_put_dec(uint64_t v);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);

/* Value of "key=" in the command line, or NULL; *len gets its length. */
const char *cmdline_get(const char *cmdline, const char *key, size_t *len);
uint64_t parse_num(const char *s, size_t len, int base);

/* cpus.c: CPUs in the MP table, and how many answered INIT/SIPI. */
int mp_count_cpus(void);
/* Enabled CPUs in the ACPI MADT; rsdp 0 means scan the BIOS area. */
int acpi_count_cpus(uint64_t rsdp);
/* The ACPI table with signature sig (checksum verified), or NULL. */
const uint8_t *acpi_find_table(uint64_t rsdp, const char *sig);
/* acpi-pm.c (ct.poweroff): checks the FADT's PM block and powers off
 * through S5; returns only on failure (the failure count). */
int acpi_poweroff(uint64_t rsdp);
int acpi_wait_power_button(uint64_t rsdp);
int start_aps(int expected);
/* ct.topo=1, after start_aps(): CPUID topology leaves of every CPU
 * against n and the APIC IDs of the MP table and MADT; failure count. */
int check_topology(uint64_t rsdp, int n);

/* mptable.c: the I/O APIC pin the MP table gives INTx pin (0 = INTA) of
 * PCI slot (bus 0), or one of these. */
#define MP_NO_TABLE -1
#define MP_NO_ENTRY -2
int mp_pci_irq(unsigned slot, unsigned pin);

/* insns.c: each returns 1 when the instruction did what it should. */
int try_int3(void);
int try_fwait(void);
int try_cmpxchg16b(void);

/* reset.c (ct.reset): note_boot says whether this boot follows the
 * guest's own reset; check runs on that second boot (failure count);
 * reset_now spoils what the VMM must reload and resets (i8042 pulse, or
 * a triple fault). */
int reset_note_boot(void);
int reset_check(void);
void reset_now(int triple, char *cmdline, uint8_t *initrd,
               uint64_t initrd_size, uint8_t *e820_count)
    __attribute__((noreturn));

/* echo.c (ct.echo=1): echoes COM1 input until a line "end". */
void echo_run(void);
/* echo.c (ct.uart=1): UART register checks (LSR, DLAB, loopback, IIR). */
int uart_check(void);

/* virtio-blk.c: drives every virtio-blk function; expects n of them.
 * Returns the failure count. */
#define VBLK_TEST_HOSTILE 1 /* broken requests first (first disk) */
#define VBLK_TEST_MSIX    2 /* completion interrupts through MSI-X */
#define VBLK_TEST_BENCH   4 /* only time requests on the first disk */
#define VBLK_TEST_LEGACY  8 /* through the legacy interface (I/O BAR 0) */
#define VBLK_TEST_FLOOD  16 /* leave a full ring of large reads (first disk) */
int virtio_blk_test(unsigned expected, unsigned flags);
/* ct.vpat=SECTORS: the pattern passes for ever (virtio-blk.c). */
int virtio_blk_pattern(uint64_t sectors);

/* virtio-rng.c (ct.vrng=LEN): reads the virtio-rng function; failures. */
int virtio_rng_test(uint64_t len);

/* virtio-net.c (ct.vnet=PORT): ARP and UDP both ways through
 * virtio-net; failures. */
int virtio_net_test(const char *cmdline, uint64_t port);

/* ide.c: drives the PIIX3 IDE function as the ct.ide* keys say.
 * Returns the failure count. */
int ide_test(const char *cmdline);
/* ide.c, for dstress.c: READ/WRITE DMA of count (1-256) sectors at lba
 * on the primary master through the PRD entries sg[n], begun and then
 * polled (1: running, 0: done, -1: failed), so other devices run beside. */
struct ide_sg {
    void *addr;
    uint32_t len;
};
int ide_dma_begin(int write, uint32_t lba, unsigned count,
                  const struct ide_sg *sg, unsigned n);
int ide_dma_poll(void);
/* dstress.c (ct.dstress=1): several virtio-blk queues and IDE DMA at
 * once over backed qcow2 images; returns the failure count. */
int dstress_test(const char *cmdline);
/* hostile.c (ct.hostile=1): garbage to fw_cfg, PCI configuration space,
 * the UART, the i8042 and the RTC; returns the failure count. */
int hostile_test(void);
/* vga.c: ct.vga=text|lfb|kbd|keys (what is the value of ct.vga); returns the
 * failure count. */
int vga_test(const char *what, size_t len);
/* snap.c (ct.snap=N): the save/restore test; returns the failure count. */
int snap_test(unsigned rounds, int rep);

#endif
