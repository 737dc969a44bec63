/* Saved state of a virtio PCI function (pci_func_ops.state,
 * docs/VMSTATE.md).  This first version saves a device the driver has
 * not set up (status 0, what a guest that never probed it leaves) and
 * refuses to save one in use, naming it: queues, features and in-flight
 * requests are not recorded yet. */
#include <errno.h>
#include <stdatomic.h>

#include "devices/virtio/virtio-int.h"
#include "devices/vmstate.h"

static int virtio_state_save(void *opaque, struct vmstate_cursor *w)
{
    struct virtio_pci *vp = opaque;
    uint8_t status = atomic_load(&vp->status);

    if (status)
        return vms_fail(w, -EBUSY, "virtio device at %s is in use by the "
                        "guest (status 0x%02x): saving a virtio device the "
                        "guest drives is not supported yet",
                        pci_dev_name(vp->dev), status);
    vms_put_u8(w, 0); /* the status: nothing else while it is 0 */
    return w->err;
}

static int virtio_state_load(void *opaque, struct vmstate_cursor *r)
{
    struct virtio_pci *vp = opaque;
    uint8_t status = vms_get_u8(r);

    if (vms_finish(r))
        return r->err;
    if (status)
        return vms_fail(r, -EINVAL, "virtio device at %s: status 0x%02x",
                        pci_dev_name(vp->dev), status);
    return 0;
}

const struct bus_state_ops virtio_pci_state = {
    .save = virtio_state_save, .load = virtio_state_load,
};
