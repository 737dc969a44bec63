/* A PCI function's saved interrupt state is taken after its own save
 * quiesced it (devices/pci-state.c): a request completing during that
 * wait (here: the function's state save raises INTx, as a virtio
 * request finishing while virtio_state_save waits for its queue lock)
 * must be in the INTx level and status bit saved, else the restored
 * guest never sees that interrupt. */
#include <stdio.h>
#include <string.h>

#include "devices/bus.h"
#include "devices/pci.h"
#include "devices/vmstate.h"
#include "tests/unit/unit-dev.h"

static const struct bus_host_ops fake_ops = {
    .set_irq = fake_set_irq,
    .console_write = fake_console,
    .request_stop = fake_stop,
};

static struct pci_dev *dev;

/* the request in flight completes while the save waits for it */
static int dev_save(void *opaque, struct vmstate_cursor *w)
{
    (void)opaque;
    pci_set_intx(dev, 1);
    vms_put_u8(w, 0x5a);
    return w->err;
}

static int dev_load(void *opaque, struct vmstate_cursor *r)
{
    (void)opaque;
    vms_get_u8(r);
    return vms_finish(r);
}

static const struct bus_state_ops dev_state = {
    .save = dev_save, .load = dev_load,
};
static const struct pci_func_ops dev_ops = { .state = &dev_state };

int main(void)
{
    static const struct pci_dev_config dev_cfg = {
        .vendor = 0x1af4, .device = 0x1005, .class_code = 0x00,
        .subclass = 0xff, .intx = true,
    };
    struct bus *bus = bus_create(&fake_ops, NULL);
    struct pci *pci = NULL;
    struct vmstate_cursor w;
    int idx = -1;

    if (!bus || pci_create(bus, 0xe0000000ULL, &pci) ||
        pci_add_fn(pci, 3, 0, &dev_cfg, &dev_ops, NULL, &dev)) {
        printf("not ok 1 - PCI bus and function created\n1..1\n");
        return 1;
    }
    for (unsigned i = 0; i < bus_state_count(bus); i++)
        if (strstr(bus_state_name(bus, i), "1af4:1005"))
            idx = (int)i;
    vms_writer_init(&w);
    ok(idx >= 0 && !bus_state_save(bus, (unsigned)idx, &w) && !w.err,
       "the function saves");
    /* configuration space, MSI-X count (0), pending bits, INTx level,
     * then the function's own byte */
    ok(w.len == 256 + 1 + 8 + 1 + 1, "the state has the expected size");
    if (w.len == 256 + 1 + 8 + 1 + 1) {
        printf("# intx %u, status 0x%02x\n", w.buf[265], w.buf[6]);
        ok(w.buf[265] == 1,
           "an INTx raised while the function quiesced is saved as raised");
        ok(w.buf[6] & 0x08,
           "and so is the status register's interrupt bit");
        ok(w.buf[266] == 0x5a, "the function's own state follows");
    }
    vms_free(&w);
    pci_destroy(pci);
    bus_shutdown(bus);
    bus_destroy(bus);
    printf("1..%d\n", t_num);
    return t_fail != 0;
}
