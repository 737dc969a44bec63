/* What the machine is to its devices: the bus_host_ops (devices/bus.h)
 * behind every bus_* call a device makes, done with KVM ioctls on the VM
 * (interrupt lines, MSIs, irqfds and ioeventfds, GSI routing, memory
 * slots, the coalesced I/O ring) and with the console and the stop
 * request of struct vm.  The only file that implements them; host is
 * always the struct vm. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "vmm/console.h"
#include "vmm/vm.h"

static int kvm_host_set_irq(void *host, unsigned irq, int level)
{
    struct vm *vm = host;
    struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };

    return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

static void kvm_host_console_write(void *host, const uint8_t *buf, size_t len)
{
    struct vm *vm = host;

    console_write(vm->console, buf, len);
}

static void kvm_host_request_stop(void *host, enum bus_stop_reason reason,
                                  int status)
{
    vm_request_stop(host, reason, status);
}

static void *kvm_host_guest_ram(void *host, uint64_t gpa, uint64_t len)
{
    return vm_gpa(host, gpa, len);
}

static int kvm_host_signal_msi(void *host, uint64_t addr, uint32_t data)
{
    struct vm *vm = host;
    struct kvm_msi msi = {
        .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
        .data = data,
    };

    return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

static int kvm_host_ioeventfd(void *host, uint64_t addr, unsigned len, int fd,
                              bool assign)
{
    struct vm *vm = host;
    struct kvm_ioeventfd io = {
        .addr = addr, .len = len, .fd = fd,
        .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
    };

    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

/* KVM_SET_GSI_ROUTING replaces the whole table: the irqchip routes KVM
 * sets up by default (GSI n on I/O APIC pin n, and on the PICs for n < 16)
 * go in again with the MSI routes. */
static int kvm_host_msi_routes(void *host, const struct bus_msi_route *routes,
                               unsigned n)
{
    struct vm *vm = host;
    unsigned max = 24 + 16 + n, k = 0;
    struct kvm_irq_routing *t = calloc(1, sizeof(*t) +
                                       max * sizeof(t->entries[0]));
    int ret;

    if (!t)
        return -ENOMEM;
    for (unsigned gsi = 0; gsi < 24; gsi++) {
        t->entries[k].gsi = gsi;
        t->entries[k].type = KVM_IRQ_ROUTING_IRQCHIP;
        t->entries[k].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        t->entries[k++].u.irqchip.pin = gsi;
        if (gsi >= 16)
            continue;
        t->entries[k].gsi = gsi;
        t->entries[k].type = KVM_IRQ_ROUTING_IRQCHIP;
        t->entries[k].u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                                  : KVM_IRQCHIP_PIC_SLAVE;
        t->entries[k++].u.irqchip.pin = gsi % 8;
    }
    for (unsigned i = 0; i < n; i++, k++) {
        t->entries[k].gsi = routes[i].gsi;
        t->entries[k].type = KVM_IRQ_ROUTING_MSI;
        t->entries[k].u.msi.address_lo = (uint32_t)routes[i].addr;
        t->entries[k].u.msi.address_hi = (uint32_t)(routes[i].addr >> 32);
        t->entries[k].u.msi.data = routes[i].data;
    }
    t->nr = k;
    ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, t) < 0 ? -errno : 0;
    free(t);
    return ret;
}

static int kvm_host_ioeventfd_pio(void *host, uint16_t port, unsigned len,
                                  uint32_t value, int fd, bool assign)
{
    struct vm *vm = host;
    struct kvm_ioeventfd io = {
        .datamatch = value, .addr = port, .len = len, .fd = fd,
        .flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH |
                 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };

    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int kvm_host_irqfd(void *host, int fd, unsigned gsi, bool assign)
{
    struct vm *vm = host;
    struct kvm_irqfd irqfd = {
        .fd = (uint32_t)fd, .gsi = gsi,
        .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
    };

    return ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

/* Slots 0 and 1 are guest RAM; the rest are handed out here. */
static int kvm_host_map_ram(void *host, uint64_t gpa, uint64_t size,
                            void *mem, bool readonly)
{
    struct vm *vm = host;
    int ret = -ENOSPC;

    if (!size || (size | gpa | (uintptr_t)mem) & 4095)
        return -EINVAL;
    pthread_mutex_lock(&vm->stop_lock);
    for (int s = VM_FIRST_EXTRA_SLOT; s < VM_MAX_SLOTS; s++) {
        if (vm->slot_used[s])
            continue;
        ret = vm_set_slot(vm, s, gpa, size, mem,
                          readonly ? KVM_MEM_READONLY : 0);
        if (!ret) {
            vm->slot_used[s] = true;
            vm->slot_mem[s] = mem;
            vm->slot_size[s] = size;
            ret = s;
        }
        break;
    }
    pthread_mutex_unlock(&vm->stop_lock);
    return ret;
}

static void kvm_host_unmap_ram(void *host, int slot)
{
    struct vm *vm = host;

    if (slot < VM_FIRST_EXTRA_SLOT || slot >= VM_MAX_SLOTS)
        return;
    pthread_mutex_lock(&vm->stop_lock);
    if (vm->slot_used[slot] && !vm_set_slot(vm, slot, 0, 0, NULL, 0))
        vm->slot_used[slot] = false;
    pthread_mutex_unlock(&vm->stop_lock);
}

static int kvm_host_coalesce_pio(void *host, uint16_t port, unsigned len,
                                 bool on)
{
    struct vm *vm = host;
    struct kvm_coalesced_mmio_zone zone = { .addr = port, .size = len,
                                            .pio = 1 };

    if (!vm->coalesced)
        return -ENOTSUP;
    if (ioctl(vm->vm_fd, on ? KVM_REGISTER_COALESCED_MMIO
                            : KVM_UNREGISTER_COALESCED_MMIO, &zone) < 0)
        return -errno;
    return 0;
}

const struct bus_host_ops kvm_host_ops = {
    .set_irq = kvm_host_set_irq,
    .console_write = kvm_host_console_write,
    .request_stop = kvm_host_request_stop,
    .guest_ram = kvm_host_guest_ram,
    .signal_msi = kvm_host_signal_msi,
    .ioeventfd = kvm_host_ioeventfd,
    .msi_routes = kvm_host_msi_routes,
    .irqfd = kvm_host_irqfd,
    .ioeventfd_pio = kvm_host_ioeventfd_pio,
    .coalesce_pio = kvm_host_coalesce_pio,
    .map_ram = kvm_host_map_ram,
    .unmap_ram = kvm_host_unmap_ram,
};
