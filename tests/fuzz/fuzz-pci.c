/* libFuzzer harness: the PCI core (devices/pci.c, devices/msix.c): configuration mechanism
 * #1, BAR sizing and relocation, the command register, INTx and its
 * routing through the PIIX3 PIRQ registers, the MSI-X capability, table
 * and PBA, machine reset.  The functions on the bus are the host bridge
 * (with the i440FX registers), the PIIX3 ISA bridge, the ACPI PM
 * function, the std VGA, and a test function with 64 MSI-X vectors whose
 * interrupts and DMA the program drives itself, as a device model would.
 * The input is a byte program (tests/fuzz/fuzz-dev.h); the harness's own
 * operations:
 *   9   the test function sends an MSI-X vector (any number)
 *   10  the test function drives its INTx line
 *   11  the test function asks pci_dma() for a buffer and writes all of it
 *   12  an MSI-X table entry: vector, address, data, control (dwords)
 * Every buffer pci_dma() hands out is written whole: one that strays
 * outside guest RAM faults on the guard pages. */
#include "tests/fuzz/fuzz-dev.h"

#include "devices/devices.h"
#include "devices/vga.h"
#include "devices/pci.h"

static const uint16_t pci_ports[][2] = {
    { 0xcf8, 8 }, { 0x92, 1 }, { ACPI_PM_BASE, 64 }, { 0xc000, 256 }, { 0x3c0, 32 },
};

#define TEST_BAR_IO   0
#define TEST_BAR_MSIX 1
#define TEST_BAR_MEM  2

struct testfn {
    struct pci_dev *dev;
    uint8_t mem[4096], io[256];
    uint64_t bar_at[PCI_MAX_BARS];
};

static struct testfn *tf;

static void fz_settle(struct bus *bus)
{
    (void)bus;
}

static void test_bar_rw(void *opaque, int bar, uint64_t off, uint8_t *data, unsigned size,
                        bool is_write)
{
    struct testfn *t = opaque;
    uint8_t *m = bar == TEST_BAR_IO ? t->io : t->mem;
    size_t len = bar == TEST_BAR_IO ? sizeof(t->io) : sizeof(t->mem);

    /* pci.c promises an access inside the BAR, never the MSI-X BAR */
    if (bar == TEST_BAR_MSIX || off + size > len || size == 0 || size > 8) {
        fprintf(stderr, "fuzz-pci: BAR %d access at %#llx size %u\n", bar,
                (unsigned long long)off, size);
        abort();
    }
    if (is_write)
        memcpy(m + off, data, size);
    else
        memcpy(data, m + off, size);
}

static void test_bar_moved(void *opaque, int bar, uint64_t addr)
{
    struct testfn *t = opaque;

    if (bar < 0 || bar >= PCI_MAX_BARS) {
        fprintf(stderr, "fuzz-pci: bar_moved(%d)\n", bar);
        abort();
    }
    t->bar_at[bar] = addr;
}

static void test_cfg_written(void *opaque, unsigned off, unsigned size)
{
    struct testfn *t = opaque;

    if (off + size > 256) {
        fprintf(stderr, "fuzz-pci: cfg_written(%#x, %u)\n", off, size);
        abort();
    }
    (void)pci_cfg_read(t->dev, 0x40, 4);
}

static void test_cfg_read(void *opaque, unsigned off, unsigned size)
{
    struct testfn *t = opaque;

    if (off + size > 256) {
        fprintf(stderr, "fuzz-pci: cfg_read(%#x, %u)\n", off, size);
        abort();
    }
    pci_cfg_write_ro(t->dev, 0x48, 4, (uint32_t)t->mem[0] * 0x01010101u);
}

static void test_destroy(void *opaque)
{
    free(opaque);
}

static const struct pci_func_ops test_ops = {
    .bar_rw = test_bar_rw,
    .bar_moved = test_bar_moved,
    .cfg_written = test_cfg_written,
    .cfg_read = test_cfg_read,
    .destroy = test_destroy,
};

static int fz_harness_op(struct bus *bus, unsigned op, struct fz *f)
{
    switch (op % 16) {
    case 9: {
        unsigned v = fz_u16(f);

        pci_msix_notify(tf->dev, v & 0x100 ? v : v % 64);
        break;
    }
    case 10:
        pci_set_intx(tf->dev, fz_u8(f) & 1);
        break;
    case 11: {
        uint64_t gpa = fz_le(f, 8);
        uint64_t len = fz_u32(f);
        uint8_t *p;

        if (fz_u8(f) & 1) /* mostly near RAM's end */
            gpa = FZ_RAM_SIZE - (gpa & 0xffff);
        p = pci_dma(tf->dev, gpa, len);
        if (p && len)
            memset(p, 0xa5, len);
        break;
    }
    case 12: {
        bool io;
        unsigned vec = fz_u8(f) % 64;
        uint64_t base = fz_bar_addr(bus, 0x08 * 5, TEST_BAR_MSIX, &io);

        for (unsigned i = 0; i < 4; i++) {
            uint32_t w = fz_u32(f);
            uint8_t b[4] = { (uint8_t)w, (uint8_t)(w >> 8), (uint8_t)(w >> 16),
                             (uint8_t)(w >> 24) };

            if (base && !io)
                fz_mem(bus, base + vec * 16 + 4 * i, b, 4, true);
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct pci_dev_config test_cfg = {
        .vendor = 0x1b36, .device = 0x0005, .class_code = 0xff,
        .bar_size = { [TEST_BAR_IO] = 256, [TEST_BAR_MSIX] = 4096, [TEST_BAR_MEM] = 4096 },
        .bar_io = 1 << TEST_BAR_IO,
        .msix_vectors = PCI_MAX_MSIX, .msix_bar = TEST_BAR_MSIX, .intx = true,
    };
    static const uint8_t vendor_cap[8] = { 0x09, 0, 8, 1, 2, 3, 4, 5 };
    struct fz f = { data, size, 0 };
    struct bus *bus = fz_bus_create(false);
    struct pci *pci = NULL;
    struct piix3 *piix3 = NULL;
    struct vga *vga = NULL;
    unsigned bdfs[16];
    struct fz_target t = { pci_ports, sizeof(pci_ports) / sizeof(pci_ports[0]), bdfs, 0 };

    tf = calloc(1, sizeof(*tf));
    if (!tf || pci_create(bus, 0xe0000000ULL, &pci) || i440fx_init(pci_host_bridge(pci)) ||
        piix3_create(pci, 1, bus, &piix3) || piix3_port92_create(bus) ||
        acpi_pm_create(pci, 1, 3, bus, true, NULL) || vga_create(pci, 2, bus, &vga) ||
        pci_add_fn(pci, 5, 0, &test_cfg, &test_ops, tf, &tf->dev)) {
        fprintf(stderr, "fuzz-pci: cannot create the devices\n");
        abort();
    }
    pci_set_intx_router(pci, piix3_route_intx, piix3);
    pci_cfg_init(tf->dev, 0x40, 4, 0x12345678, 0x00ff00ff);
    pci_cfg_init(tf->dev, 0x44, 2, 0, 0xffff);
    if (pci_add_cap(tf->dev, vendor_cap, sizeof(vendor_cap)) < 0) {
        fprintf(stderr, "fuzz-pci: pci_add_cap failed\n");
        abort();
    }
    t.nbdfs = fz_pci_scan(bus, bdfs, 16);
    fz_run(bus, &t, &f);
    bus_shutdown(bus);
    pci_destroy(pci);
    bus_destroy(bus);
    return 0;
}
