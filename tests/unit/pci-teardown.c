/* PCI teardown order, without a VM: pci_destroy() must stop every
 * function's threads before it frees any function, because a thread
 * that completes a request while it is being stopped raises INTx, and
 * the INTx route is read from another function (the PIIX3 at 1.0, whose
 * configuration space piix3_route_intx reads), which devfn order would
 * free first.
 *
 * A fake router function sits at 1.0 and says when it was destroyed;
 * a fake device at 2.0 raises INTx from its stop op, as a virtio-blk
 * queue thread does when it completes a request on its way out.  TAP. */
#include <stdio.h>
#include <string.h>

#include "devices/bus.h"
#include "tests/unit/unit-dev.h"
#include "devices/pci.h"


static const struct bus_host_ops fake_ops = {
    .set_irq = fake_set_irq,
    .console_write = fake_console,
    .request_stop = fake_stop,
};

/* What happened, in order: 'S' stop, 'D' destroy, then the slot. */
static char events[64];
static unsigned nevents;
static int router_gone, routed, routed_after_free;
static struct pci_dev *dev;

static void note(char what, int slot)
{
    if (nevents + 2 < sizeof(events)) {
        events[nevents++] = what;
        events[nevents++] = (char)('0' + slot);
    }
}

static int route(void *opaque, int slot, int pin)
{
    (void)opaque, (void)slot, (void)pin;
    routed++;
    if (router_gone)
        routed_after_free++;
    return 10;
}

static void router_stop(void *opaque)
{
    (void)opaque;
    note('S', 1);
}

static void router_destroy(void *opaque)
{
    (void)opaque;
    note('D', 1);
    router_gone = 1;
}

/* The device's last request completes while its thread is stopped. */
static void dev_stop(void *opaque)
{
    (void)opaque;
    note('S', 2);
    pci_set_intx(dev, 1);
}

static void dev_destroy(void *opaque)
{
    (void)opaque;
    note('D', 2);
}

static const struct pci_func_ops router_ops = {
    .stop = router_stop, .destroy = router_destroy,
};
static const struct pci_func_ops dev_ops = {
    .stop = dev_stop, .destroy = dev_destroy,
};

int main(void)
{
    static const struct pci_dev_config router_cfg = {
        .vendor = 0x8086, .device = 0x7000, .class_code = 0x06,
        .subclass = 0x01, .multifunction = true,
    };
    static const struct pci_dev_config dev_cfg = {
        .vendor = 0x1af4, .device = 0x1042, .class_code = 0x01,
        .subclass = 0x80, .intx = true,
    };
    struct bus *bus = bus_create(&fake_ops, NULL);
    struct pci *pci = NULL;
    struct pci_dev *router = NULL;

    if (!bus || pci_create(bus, 0xe0000000ULL, &pci) ||
        pci_add_fn(pci, 1, 0, &router_cfg, &router_ops, NULL, &router) ||
        pci_add_fn(pci, 2, 0, &dev_cfg, &dev_ops, NULL, &dev)) {
        printf("not ok 1 - PCI bus and functions created\n1..1\n");
        return 1;
    }
    pci_set_intx_router(pci, route, NULL);
    pci_destroy(pci);
    events[nevents] = 0;
    printf("# teardown: %s\n", events);
    ok(!strcmp(events, "S1S2D1D2"),
       "pci_destroy stops every function before it destroys any, each pass in devfn order");
    ok(routed > 0 && routed_after_free == 0,
       "an INTx raised while a function stops does not read the router of a destroyed function");
    bus_shutdown(bus);
    bus_destroy(bus);
    printf("1..%d\n", t_num);
    return t_fail != 0;
}
