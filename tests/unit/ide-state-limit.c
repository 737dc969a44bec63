/* A loaded ATAPI data-in whose byte count limit offers no chunk (0, or 1
 * with more than a byte left) would sit with DRQ set and never move:
 * the IDE state load refuses it (devices/ide/state.c), as
 * atapi_data_in() refuses such a limit from the guest.  Limits 2 and 1
 * with one byte left load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/bus.h"
#include "devices/disk.h"
#include "devices/ide/ide-int.h"
#include "devices/ide/ide.h"
#include "devices/pci.h"
#include "devices/vmstate.h"
#include "tests/unit/unit-dev.h"

static const struct bus_host_ops fake_ops = {
    .set_irq = fake_set_irq,
    .console_write = fake_console,
    .request_stop = fake_stop,
};

/* the secondary channel with a CD-ROM master in an ATAPI data-in of
 * left bytes from the buffer, limit as given */
static int load(struct bus *bus, unsigned idx, uint32_t limit, uint64_t left)
{
    struct vmstate_cursor w, r;
    static uint8_t buf[IDE_BUF_SIZE];
    uint8_t tf[12] = { 0 }, cdb[12] = { 0 };
    int ret;

    vms_writer_init(&w);
    vms_put(&w, tf, sizeof(tf));
    vms_put_u8(&w, 0);       /* intrq */
    vms_put_u8(&w, 0);       /* bm_cmd */
    vms_put_u8(&w, 0);       /* bm_status */
    vms_put_u32(&w, 0);      /* prd */
    vms_put_u8(&w, 0);       /* no DMA pending */
    vms_put_u8(&w, 3);       /* a CD-ROM */
    vms_put_u8(&w, 0x58);    /* status: DRDY DSC DRQ */
    vms_put_u8(&w, 0);
    vms_put_u16(&w, 0);
    vms_put_u16(&w, 0);
    vms_put_u8(&w, 0);       /* mult */
    vms_put_u8(&w, 0);
    vms_put_u8(&w, 0);
    vms_put_u8(&w, PIO_ATAPI_DATA);
    vms_put_u32(&w, 0);      /* pos */
    vms_put_u32(&w, 0);      /* end: the current chunk is done */
    vms_put_u64(&w, 0);      /* lba */
    vms_put_u64(&w, left);
    vms_put_u32(&w, 1);      /* block */
    vms_put_u8(&w, 0);       /* from the buffer */
    vms_put_u8(&w, 0);       /* PIO */
    vms_put_u32(&w, limit);
    vms_put(&w, cdb, sizeof(cdb));
    vms_put_u8(&w, 0);
    vms_put_u8(&w, 0);
    vms_put_u8(&w, 0);
    vms_put_u8(&w, 0);
    vms_put_u8(&w, 0);
    vms_put_u8(&w, 1);       /* the buffer follows */
    vms_put(&w, buf, sizeof(buf));
    vms_put_u8(&w, 0);       /* no slave */
    vms_reader_init(&r, w.buf, w.len);
    ret = bus_state_load(bus, idx, &r);
    if (!ret)
        ret = vms_finish(&r);
    if (ret)
        printf("# limit %u, %llu left: %s\n", limit,
               (unsigned long long)left, r.msg);
    vms_free(&w);
    return ret;
}

int main(void)
{
    static const struct pci_dev_config isa_cfg = {
        .vendor = 0x8086, .device = 0x7000, .class_code = 0x06,
        .subclass = 0x01, .multifunction = true,
    };
    char dir[] = "/tmp/ide-state-limit.XXXXXX", iso[64], spec[128];
    static uint8_t cd[32 * 2048];
    struct bus *bus = bus_create(&fake_ops, NULL);
    struct pci *pci = NULL;
    struct pci_dev *isa = NULL;
    struct ide_config c;
    struct disk_opts o;
    int idx = -1;
    FILE *f;

    if (!mkdtemp(dir))
        return 1;
    snprintf(iso, sizeof(iso), "%s/cd.iso", dir);
    f = fopen(iso, "wb");
    if (!f || fwrite(cd, 1, sizeof(cd), f) != sizeof(cd) || fclose(f))
        return 1;
    memset(&c, 0, sizeof(c));
    memset(&o, 0, sizeof(o));
    snprintf(spec, sizeof(spec), "%s,format=raw,if=ide,index=2,media=cdrom",
             iso);
    if (!bus || pci_create(bus, 0xe0000000ULL, &pci) ||
        pci_add_fn(pci, 1, 0, &isa_cfg, NULL, NULL, &isa) ||
        disk_parse(spec, &o) || ide_config_add(&c, &o) < 0 ||
        ide_create(pci, 1, 1, bus, &c, NULL)) {
        printf("not ok 1 - IDE with a CD-ROM created\n1..1\n");
        return 1;
    }
    ide_config_free(&c);
    for (unsigned i = 0; i < bus_state_count(bus); i++)
        if (!strcmp(bus_state_name(bus, i), "ide 0x170"))
            idx = (int)i;
    ok(idx >= 0, "the secondary channel has a state");
    ok(load(bus, (unsigned)idx, 2, 100) == 0, "limit 2, 100 bytes left: loads");
    ok(load(bus, (unsigned)idx, 1, 1) == 0, "limit 1, 1 byte left: loads");
    ok(load(bus, (unsigned)idx, 0, 100) != 0, "limit 0 with data left: refused");
    ok(load(bus, (unsigned)idx, 1, 100) != 0, "limit 1 with 100 bytes left: refused");
    ok(load(bus, (unsigned)idx, 0x10000, 100) != 0, "limit over 0xfffe: refused");
    pci_destroy(pci);
    bus_shutdown(bus);
    bus_destroy(bus);
    unlink(iso);
    rmdir(dir);
    printf("1..%d\n", t_num);
    return t_fail != 0;
}
