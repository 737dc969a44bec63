/* libFuzzer harness: fw_cfg (selector, data port, DMA interface) and the
 * other small ISA devices firmware talks to (16550 UART, i8042, debug
 * exit), on the real bus against fake guest RAM.  The input is a byte
 * program (tests/fuzz/fuzz-dev.h); the harness's own operations:
 *   9   a DMA request: block gpa, control, length, address, then the
 *       doorbell (the two be32 writes at 0x514/0x518)
 *   10  select an item and read up to 255 bytes of it through 0x511
 * A fw_cfg DMA may write only inside guest RAM (the guard pages fault
 * otherwise); a read of an item is bounded by FW_CFG_DMA_MAX. */
#include "tests/fuzz/fuzz-dev.h"

#include "devices/byteorder.h"
#include "devices/devices.h"

static const uint16_t fwcfg_ports[][2] = {
    { 0x510, 2 }, { 0x514, 8 }, { 0x3f8, 8 }, { 0x60, 1 }, { 0x64, 1 }, { 0x501, 1 },
};

static const struct fz_target fwcfg_target = {
    .ports = fwcfg_ports,
    .nports = sizeof(fwcfg_ports) / sizeof(fwcfg_ports[0]),
};

static void fz_settle(struct bus *bus)
{
    (void)bus; /* every device here works on the vCPU's thread */
}

static int fz_harness_op(struct bus *bus, unsigned op, struct fz *f)
{
    switch (op % 16) {
    case 9: {
        uint32_t gpa = fz_u32(f), control = fz_u32(f), len = fz_u32(f);
        uint64_t addr = fz_le(f, 8);
        uint8_t v[4];

        /* the block in RAM when it fits (else the device must refuse it) */
        if (gpa <= FZ_RAM_SIZE - 16) {
            put_be32(fz_ram + gpa, control);
            put_be32(fz_ram + gpa + 4, len);
            put_be32(fz_ram + gpa + 8, (uint32_t)(addr >> 32));
            put_be32(fz_ram + gpa + 12, (uint32_t)addr);
        }
        put_be32(v, 0);
        bus_pio(bus, 0x514, v, 4, true);
        put_be32(v, gpa);
        bus_pio(bus, 0x518, v, 4, true);
        break;
    }
    case 10: {
        uint16_t sel = fz_u16(f);
        unsigned n = fz_u8(f);
        uint8_t v[2] = { (uint8_t)sel, (uint8_t)(sel >> 8) };

        bus_pio(bus, 0x510, v, 2, true);
        for (unsigned i = 0; i < n; i++)
            bus_pio(bus, 0x511, v, 1, false);
        break;
    }
    default:
        break;
    }
    return 0;
}

/* What the VMM adds for SeaBIOS, in kind: numbered items, files of a few
 * sizes (one larger than a DMA chunk is likely to be), an integer file. */
static int fwcfg_fill(struct fw_cfg *fw)
{
    static uint8_t big[70000];
    uint8_t e820[40] = { 0 };
    int ret;

    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    ret = fw_cfg_add_u64(fw, FW_CFG_RAM_SIZE, FZ_RAM_SIZE);
    if (!ret)
        ret = fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 2);
    if (!ret)
        ret = fw_cfg_add_u16(fw, FW_CFG_MAX_CPUS, 2);
    if (!ret)
        ret = fw_cfg_add_file(fw, "etc/e820", e820, sizeof(e820));
    if (!ret)
        ret = fw_cfg_add_file(fw, "vgaroms/big.bin", big, sizeof(big));
    if (!ret)
        ret = fw_cfg_add_file(fw, "etc/empty", "", 0);
    if (!ret)
        ret = fw_cfg_add_file_int(fw, "etc/boot-fail-wait", 5, 4);
    if (!ret)
        ret = fw_cfg_add_file(fw, "etc/e820", e820, 20); /* replaced */
    return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = { data, size, 0 };
    struct bus *bus = fz_bus_create(false);
    struct fw_cfg *fw = NULL;
    struct serial *ser = NULL;

    if (fw_cfg_create(bus, &fw) || fwcfg_fill(fw) ||
        serial_create(bus, 0x3f8, 4, &ser) || i8042_create(bus, NULL) ||
        debug_exit_create(bus, 0x501)) {
        fprintf(stderr, "fuzz-fwcfg: cannot create the devices\n");
        abort();
    }
    fz_run(bus, &fwcfg_target, &f);
    bus_shutdown(bus);
    fw_cfg_destroy(fw);
    bus_destroy(bus);
    return 0;
}
