/* libFuzzer harness: a saved VM state (docs/VMSTATE.md) as `calf run
 * --loadvm` would read it from an image, untrusted: the container parser
 * (devices/vmstate.c) and every device's load hook, on the real bus with
 * the devices a PC has, against fake guest RAM.  The first input byte
 * picks what the rest is:
 *   even  a whole state: header, then sections; each section named like
 *         a device on the bus is loaded into it
 *   odd   one section's payload for device (byte / 2) % devices, raw
 * After loading, the devices resume (bus_state_resume: virtio-rng's
 * thread serves what the loaded queue holds), the guest side of each
 * device is read once (a loaded state must leave every device usable),
 * the input runs again as a guest program, and the machine is reset.
 * Besides the ISA devices and the chipset: PIIX3 IDE with a raw disk
 * (primary master) and a CD-ROM (secondary master), the std VGA at
 * 00:02.0 and virtio-rng at 00:03.0. */
#include "tests/fuzz/fuzz-dev.h"

#include "devices/devices.h"
#include "devices/disk.h"
#include "devices/ide/ide.h"
#include "devices/pci.h"
#include "devices/vga.h"
#include "devices/virtio/virtio.h"
#include "devices/vmstate.h"
#include "tests/fuzz/fuzz-hooks.h"

static const uint16_t vmst_ports[][2] = {
    { 0x3f8, 8 }, { 0x70, 2 }, { 0x60, 1 }, { 0x64, 1 }, { 0x510, 2 },
    { 0x600, 64 }, { 0x92, 1 }, { 0x1f0, 8 }, { 0x3f6, 1 }, { 0x170, 8 },
    { 0x376, 1 }, { 0x3c0, 16 }, { 0x3d4, 2 }, { 0x3da, 1 }, { 0x1ce, 2 },
};

static char dir[256], path_raw[300], path_cd[300];

static void images_cleanup(void)
{
    unlink(path_raw);
    unlink(path_cd);
    rmdir(dir);
}

/* small images, put back before every input (a loaded PIO write state
 * may write to the disk) */
static void images_reset(void)
{
    static uint8_t raw[1 << 20], cd[32 * 2048];

    if (!dir[0]) {
        fz_scratch_dir(dir, sizeof(dir), "fuzz-vmstate");
        atexit(images_cleanup);
        snprintf(path_raw, sizeof(path_raw), "%s/disk.raw", dir);
        snprintf(path_cd, sizeof(path_cd), "%s/cd.iso", dir);
        fill_pattern(raw, sizeof(raw), 1);
        fill_pattern(cd, sizeof(cd), 2);
    }
    write_file(path_raw, raw, sizeof(raw));
    write_file(path_cd, cd, sizeof(cd));
}

static int ide_add(struct pci *pci, struct bus *bus)
{
    struct ide_config c;
    struct disk_opts o;
    char spec[400];
    int ret = 0;

    memset(&c, 0, sizeof(c));
    snprintf(spec, sizeof(spec), "%s,format=raw,if=ide,index=0", path_raw);
    memset(&o, 0, sizeof(o));
    if (disk_parse(spec, &o) || ide_config_add(&c, &o) < 0)
        ret = -1;
    snprintf(spec, sizeof(spec), "%s,format=raw,if=ide,index=2,media=cdrom",
             path_cd);
    memset(&o, 0, sizeof(o));
    if (!ret && (disk_parse(spec, &o) || ide_config_add(&c, &o) < 0))
        ret = -1;
    if (!ret)
        ret = ide_create(pci, 1, 1, bus, &c, NULL);
    ide_config_free(&c);
    return ret;
}

static struct vga *fz_vga;

static const struct fz_target vmst_target = {
    .ports = vmst_ports,
    .nports = sizeof(vmst_ports) / sizeof(vmst_ports[0]),
};

static void fz_settle(struct bus *bus)
{
    (void)bus;
}

static int fz_harness_op(struct bus *bus, unsigned op, struct fz *f)
{
    (void)bus, (void)op, (void)f;
    return 0;
}

static int load_one(struct bus *bus, unsigned i, const uint8_t *p, size_t n)
{
    struct vmstate_cursor r;
    int ret;

    vms_reader_init(&r, p, n);
    ret = bus_state_load(bus, i, &r);
    if (!ret)
        ret = vms_finish(&r);
    /* records, as the VMM walks vCPU and irqchip sections */
    {
        struct vmstate_cursor rr;
        const uint8_t *d;
        uint32_t tag, len;

        vms_reader_init(&rr, p, n);
        while (vms_get_record(&rr, &tag, &d, &len) == 1)
            if (len && d[0] == 0xff && d[len - 1] == 0xfe)
                (void)tag;
    }
    return ret;
}

static void poke(struct bus *bus)
{
    uint8_t v[4];

    for (unsigned i = 0; i < 8; i++) {
        memset(v, 0xff, sizeof(v));
        bus_pio(bus, (uint16_t)(0x3f8 + i), v, 1, false);
    }
    bus_pio(bus, 0x60, v, 1, false);
    bus_pio(bus, 0x64, v, 1, false);
    bus_pio(bus, 0x71, v, 1, false);
    for (unsigned i = 0; i < 8; i++)
        bus_pio(bus, 0x511, v, 1, false);
    bus_pio(bus, 0x600, v, 2, false);
    bus_pio(bus, 0x92, v, 1, false);
    v[0] = 0x80;
    bus_pio(bus, 0x514, v, 4, false);
    /* IDE: status, then data words of whatever transfer was loaded */
    for (unsigned c = 0; c < 2; c++) {
        uint16_t base = c ? 0x170 : 0x1f0;

        bus_pio(bus, (uint16_t)(base + 7), v, 1, false);
        for (unsigned i = 0; i < 64; i++)
            bus_pio(bus, base, v, 2, (i & 1) != 0);
    }
    /* VGA: the attribute, DAC and CRTC read paths, VBE registers */
    bus_pio(bus, 0x3da, v, 1, false);
    bus_pio(bus, 0x3c1, v, 1, false);
    bus_pio(bus, 0x3c9, v, 1, false);
    bus_pio(bus, 0x3d5, v, 1, false);
    for (uint16_t i = 0; i < 12; i++) {
        bus_pio(bus, 0x1ce, (uint8_t *)&i, 2, true);
        bus_pio(bus, 0x1cf, v, 2, false);
    }
    if (fz_vga) {
        struct vga_image img = { 0, 0, NULL };

        vga_render(fz_vga, &img, 1);
        free(img.rgb);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bus *bus;
    struct rng_opts ro = { .on = true, .max_bytes = VIRTIO_RNG_MAX_BYTES,
                           .period_ms = VIRTIO_RNG_PERIOD_MS };
    struct fw_cfg *fw = NULL;
    struct serial *ser = NULL;
    struct pci *pci = NULL;
    char msg[256];

    images_reset();
    fuzz_hooks_reset();
    fz_vga = NULL;
    bus = fz_bus_create(false);
    if (fw_cfg_create(bus, &fw) || serial_create(bus, 0x3f8, 4, &ser) ||
        rtc_create(bus, FZ_RAM_SIZE, 0) || i8042_create(bus, NULL) ||
        debug_exit_create(bus, 0x501) || port80_create(bus) ||
        piix3_port92_create(bus) || pci_create(bus, 0xc0000000, &pci) ||
        piix3_create(pci, 1, bus, NULL) ||
        acpi_pm_create(pci, 1, 3, bus, false, NULL) || ide_add(pci, bus) ||
        vga_create(pci, 2, bus, &fz_vga) || virtio_rng_add(pci, 3, &ro)) {
        fprintf(stderr, "fuzz-vmstate: cannot create the devices\n");
        abort();
    }
    if (size && !(data[0] & 1)) {
        struct vmstate_header h;
        struct vmstate_section *s = NULL;

        data++, size--;
        if (!vms_parse_header(data, size, size, &h, msg, sizeof(msg)) &&
            size - VMS_HEADER_SIZE >= h.sections_len &&
            !vms_parse_sections(&h, data + VMS_HEADER_SIZE, h.sections_len,
                                &s, msg, sizeof(msg))) {
            for (uint32_t k = 0; k < h.nsections; k++)
                for (unsigned i = 0; i < bus_state_count(bus); i++)
                    if (!strcmp(s[k].name, bus_state_name(bus, i)))
                        load_one(bus, i, s[k].data, s[k].len);
            free(s);
        }
    } else if (size) {
        unsigned i = (data[0] / 2) % bus_state_count(bus);

        load_one(bus, i, data + 1, size - 1);
    }
    {
        /* I/O decode on for the IDE function 00:01.1, whatever the state
         * said, so that the loaded drives' ports answer */
        uint32_t a = 0x80000904;
        uint16_t c = 5;

        bus_pio(bus, 0xcf8, (uint8_t *)&a, 4, true);
        bus_pio(bus, 0xcfc, (uint8_t *)&c, 2, true);
    }
    bus_state_resume(bus);
    fuzz_virtio_settle();
    poke(bus);
    {
        /* the input again, as a guest program on the loaded devices */
        struct fz f = { data, size < 512 ? size : 512, 0 };

        fz_run(bus, &vmst_target, &f);
    }
    fuzz_virtio_settle();
    bus_reset(bus);
    poke(bus);
    bus_shutdown(bus);
    pci_destroy(pci);
    fw_cfg_destroy(fw);
    bus_destroy(bus);
    return 0;
}
