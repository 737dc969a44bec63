/* KVM VM setup: the VM, its RAM slots, the in-kernel irqchip and PIT, the
 * bus, and the stop request every exit path funnels through. */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/console.h"
#include "vmm/pvm-quirks.h"

void vmm_error(const char *fmt, ...)
{
    va_list ap;

    fputs("calf: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

uint64_t vm_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void *vm_gpa(struct vm *vm, uint64_t gpa, uint64_t len)
{
    uint64_t high = vm->ram_size - vm->low_size;

    if (gpa + len < gpa)
        return NULL;
    if (gpa + len <= vm->low_size)
        return vm->ram + gpa;
    if (gpa >= VM_HIGH_RAM_BASE && gpa + len - VM_HIGH_RAM_BASE <= high)
        return vm->ram + vm->low_size + (gpa - VM_HIGH_RAM_BASE);
    return NULL;
}

int vm_set_slot(struct vm *vm, int slot, uint64_t gpa, uint64_t size,
                void *host, uint32_t flags)
{
    struct kvm_userspace_memory_region r = {
        .slot = (uint32_t)slot,
        .flags = flags,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };

    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return -errno;
    return 0;
}

static int vm_add_slot(struct vm *vm, int slot, uint64_t gpa, uint64_t size,
                       void *host)
{
    return vm_set_slot(vm, slot, gpa, size, host, 0);
}

#define VM_HUGE_ALIGN (2u << 20)

static int vm_setup_ram(struct vm *vm, uint64_t ram_size)
{
    int ret;

    uint8_t *map = mmap(NULL, ram_size + VM_HUGE_ALIGN, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    uintptr_t head;

    if (map == MAP_FAILED) {
        vmm_error("cannot allocate %llu MiB of guest RAM: %s",
                  (unsigned long long)(ram_size >> 20), strerror(errno));
        return -ENOMEM;
    }
    /* 2 MiB aligned and eligible for transparent huge pages (as QEMU
     * does): fewer host page faults and TLB misses when devices copy
     * into guest memory, and large EPT/NPT mappings on hardware KVM. */
    head = (VM_HUGE_ALIGN - ((uintptr_t)map & (VM_HUGE_ALIGN - 1))) &
           (VM_HUGE_ALIGN - 1);
    if (head)
        munmap(map, head);
    munmap(map + head + ram_size, VM_HUGE_ALIGN - head);
    vm->ram = map + head;
    madvise(vm->ram, ram_size, MADV_HUGEPAGE);
    vm->ram_size = ram_size;
    vm->low_size = ram_size < VM_LOW_RAM_MAX ? ram_size : VM_LOW_RAM_MAX;
    ret = vm_add_slot(vm, 0, 0, vm->low_size, vm->ram);
    if (!ret && ram_size > vm->low_size)
        ret = vm_add_slot(vm, 1, VM_HIGH_RAM_BASE, ram_size - vm->low_size,
                          vm->ram + vm->low_size);
    if (ret)
        vmm_error("KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
    return ret;
}

static int vm_setup_irqchip(struct vm *vm)
{
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

    /* KVM on Intel needs a TSS region below 4 GiB for real-mode guests;
     * put it just under the BIOS area at the top of the 32-bit space. */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) {
        vmm_error("KVM_SET_TSS_ADDR: %s", strerror(errno));
        return -errno;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        vmm_error("KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -errno;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        vmm_error("KVM_CREATE_PIT2: %s", strerror(errno));
        return -errno;
    }
    vm->has_irqchip_reset = true;
    for (unsigned i = 0; i < 3; i++) {
        vm->irqchip_reset[i].chip_id = i; /* PIC master, slave, I/O APIC */
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &vm->irqchip_reset[i]) < 0)
            vm->has_irqchip_reset = false;
    }
    vm->has_pit_reset = ioctl(vm->vm_fd, KVM_GET_PIT2, &vm->pit_reset) == 0;
    return 0;
}

/* The interrupt controllers and the PIT are in the kernel: put back
 * what they held when created (masked, unprogrammed). */
static int vm_reset_irqchip(struct vm *vm)
{
    for (unsigned i = 0; vm->has_irqchip_reset && i < 3; i++)
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &vm->irqchip_reset[i]) < 0)
            return -errno;
    if (vm->has_pit_reset && ioctl(vm->vm_fd, KVM_SET_PIT2, &vm->pit_reset) < 0)
        return -errno;
    return 0;
}

int vm_reset(struct vm *vm)
{
    int ret = vm_reset_irqchip(vm);

    if (ret) {
        vmm_error("reset: interrupt controllers: %s", strerror(-ret));
        return ret;
    }
    bus_reset(vm->bus);
    for (int i = 0; i < vm->ncpus; i++) {
        ret = vcpu_reset(&vm->vcpus[i]);
        if (ret)
            return ret;
    }
    ret = vm->load(vm, vm->load_cfg);
    if (ret)
        vmm_error("reset: the guest could not be loaded again");
    return ret;
}

static int vm_get_cpuid(struct vm *vm)
{
    int n = 64;

    for (;;) {
        struct kvm_cpuid2 *c =
            calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

        if (!c)
            return -ENOMEM;
        c->nent = (uint32_t)n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            return 0;
        }
        free(c);
        if (errno != E2BIG || n >= 4096) {
            vmm_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
            return -errno;
        }
        n *= 2;
    }
}

static int vm_open_kvm(struct vm *vm)
{
    int version;

    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        vmm_error("cannot open /dev/kvm: %s", strerror(errno));
        return -errno;
    }
    version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        vmm_error("/dev/kvm speaks API %d, calf needs %d", version,
                  KVM_API_VERSION);
        return -ENOTSUP;
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        vmm_error("KVM_CREATE_VM: %s", strerror(errno));
        return -errno;
    }
    vm->run_size = (size_t)ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    vm->pvm = pvm_quirks_detect();
    return 0;
}

void vm_coalesced_drain(struct vm *vm)
{
    struct kvm_coalesced_mmio_ring *ring = vm->coalesced;
    uint32_t first;

    if (!ring || __atomic_load_n(&ring->first, __ATOMIC_RELAXED) ==
                 __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&vm->coalesced_lock);
    first = ring->first;
    while (first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE) &&
           first < vm->coalesced_max) {
        struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[first];
        uint8_t data[8];
        unsigned len = e->len <= 8 ? e->len : 8;

        memcpy(data, e->data, len);
        if (e->pio)
            bus_pio(vm->bus, (uint16_t)e->phys_addr, data, len, true);
        else
            bus_mmio(vm->bus, e->phys_addr, data, len, true);
        first = (first + 1) % vm->coalesced_max;
        __atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&vm->coalesced_lock);
}

/* The ring is a page of the vCPU mapping, at the page the capability
 * names; one ring serves every vCPU. */
static void vm_setup_coalesced(struct vm *vm)
{
    int page = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) > 0
        ? ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO) : 0;
    long psize = sysconf(_SC_PAGESIZE);

    if (page <= 0 || (size_t)(page + 1) * (size_t)psize > vm->run_size ||
        getenv("CALF_NO_COALESCED"))
        return;
    vm->coalesced = (void *)((uint8_t *)vm->vcpus[0].run + page * psize);
    vm->coalesced_max = (unsigned)((psize - sizeof(*vm->coalesced)) /
                                   sizeof(struct kvm_coalesced_mmio));
}

int vm_create(struct vm *vm, uint64_t ram_size, int ncpus)
{
    int ret;

    vm->kvm_fd = vm->vm_fd = vm->wake_fd = -1;
    vm->ncpus = ncpus;
    pthread_mutex_init(&vm->stop_lock, NULL);
    pthread_mutex_init(&vm->coalesced_lock, NULL);
    pthread_mutex_init(&vm->pause_lock, NULL);
    pthread_cond_init(&vm->pause_cond, NULL);
    vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->wake_fd < 0)
        return -errno;
    ret = vm_open_kvm(vm);
    /* RAM's memory slot before the in-kernel irqchip: on this host's
     * backend a slot added after KVM_CREATE_IRQCHIP takes 4-10 ms, before
     * it 0.1 ms (the irqchip is just as fast either way). */
    if (!ret)
        ret = vm_setup_ram(vm, ram_size);
    if (!ret)
        ret = vm_setup_irqchip(vm);
    if (!ret)
        ret = vm_get_cpuid(vm);
    for (int i = 0; !ret && i < ncpus; i++)
        ret = vcpu_create(vm, i);
    if (!ret)
        vm_setup_coalesced(vm);
    return ret;
}

/* Calf's exit does not wait for the kernel to destroy the VM.  Closing
 * the last reference to a VM makes the kernel tear it down, which on this
 * host's backend takes 10-20 ms once the guest has run (a third of the
 * test guest's whole boot); calf's caller has nothing to gain from it.
 * A child forked at the very end (every other thread has been joined)
 * keeps only the VM's descriptor (every disk and the terminal are closed
 * by then: no image lock and no pipe outlives calf) and guest RAM's pages,
 * waits for calf to be gone, and drops them.  CALF_SYNC_TEARDOWN=1 keeps
 * the destruction in calf's own exit.  Returns 0 when a child took it
 * over; vm_destroy() then only drops calf's own references.  The child
 * makes async-signal-safe calls only. */
int vm_teardown_detached(struct vm *vm)
{
    int p[2];
    pid_t pid;
    const char *sync = getenv("CALF_SYNC_TEARDOWN");

    if ((sync && *sync && strcmp(sync, "0")) || vm->vm_fd < 0 || pipe(p))
        return -1;
    pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid > 0) {
        close(p[0]);
        return 0;           /* p[1] goes with calf's exit */
    }
    /* The VM's own descriptor holds it (the vCPUs' and /dev/kvm's need
     * not: they only keep references to it) */
    int a = vm->vm_fd < p[0] ? vm->vm_fd : p[0];
    int b = vm->vm_fd < p[0] ? p[0] : vm->vm_fd;
    if (a > 0)
        close_range(0, (unsigned)a - 1, 0);
    if (b > a + 1)
        close_range((unsigned)a + 1, (unsigned)b - 1, 0);
    close_range((unsigned)b + 1, ~0U, 0);
    setsid();               /* no terminal signals for it */
    for (char c; read(p[0], &c, 1) < 0 && errno == EINTR;)
        ;
    _exit(0);
}

void vm_destroy(struct vm *vm)
{
    vm->coalesced = NULL;
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_destroy(&vm->vcpus[i]);
    if (vm->ram)
        munmap(vm->ram, vm->ram_size);
    free(vm->cpuid);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    if (vm->wake_fd >= 0)
        close(vm->wake_fd);
    pthread_mutex_destroy(&vm->stop_lock);
    pthread_mutex_destroy(&vm->coalesced_lock);
    pthread_mutex_destroy(&vm->pause_lock);
    pthread_cond_destroy(&vm->pause_cond);
}

/* ---- stop and cont ---- */

static bool vm_pause_done(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpus[i];

        if (v->started && !v->parked && !v->exited)
            return false;
    }
    return true;
}

void vm_pause(struct vm *vm)
{
    atomic_store(&vm->paused, true);
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_kick(&vm->vcpus[i]);
    pthread_mutex_lock(&vm->pause_lock);
    while (!vm_pause_done(vm))
        pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
    pthread_mutex_unlock(&vm->pause_lock);
}

void vm_resume(struct vm *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    atomic_store(&vm->paused, false);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

void vm_pause_wake(struct vm *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

static bool vm_is_reset(enum bus_stop_reason reason)
{
    return reason == BUS_STOP_RESET || reason == BUS_STOP_TRIPLE_FAULT;
}

void vm_request_stop(struct vm *vm, enum bus_stop_reason reason, int status)
{
    uint64_t one = 1;
    ssize_t n;

    pthread_mutex_lock(&vm->stop_lock);
    if (vm_is_reset(reason) && !vm->no_reboot) {
        if (!atomic_load(&vm->reset_pending)) {
            vm->reset_reason = reason;
            atomic_store(&vm->reset_pending, true);
        }
    } else if (!atomic_load(&vm->stopping)) {
        vm->stop_reason = reason;
        vm->stop_status = status;
        atomic_store(&vm->stopping, true);
    }
    pthread_mutex_unlock(&vm->stop_lock);
    n = write(vm->wake_fd, &one, sizeof(one));
    (void)n; /* a full counter already wakes the loop */
}

const char *vm_stop_reason_name(enum bus_stop_reason reason)
{
    static const char *const names[] = {
        [BUS_STOP_NONE] = "none",
        [BUS_STOP_DEBUG_EXIT] = "debug-exit",
        [BUS_STOP_EXPECT] = "expect",
        [BUS_STOP_TIMEOUT] = "timeout",
        [BUS_STOP_RESET] = "reset",
        [BUS_STOP_TRIPLE_FAULT] = "triple-fault",
        [BUS_STOP_HALT] = "halt",
        [BUS_STOP_ERROR] = "error",
        [BUS_STOP_SIGNAL] = "signal",
        [BUS_STOP_QUIT] = "quit",
        [BUS_STOP_POWEROFF] = "poweroff",
    };

    return (unsigned)reason < sizeof(names) / sizeof(names[0]) ? names[reason]
                                                                : "unknown";
}

const char *vm_exit_kind_name(enum vm_exit_kind kind)
{
    static const char *const names[VM_EXIT_KINDS] = {
        [VM_EXIT_IO] = "io",
        [VM_EXIT_IO_UNHANDLED] = "io_unhandled",
        [VM_EXIT_MMIO] = "mmio",
        [VM_EXIT_HLT] = "hlt",
        [VM_EXIT_SHUTDOWN] = "shutdown",
        [VM_EXIT_INTERNAL_ERROR] = "internal_error",
        [VM_EXIT_INTR] = "intr",
        [VM_EXIT_SYSTEM_EVENT] = "system_event",
        [VM_EXIT_QUIRK] = "emulator_quirk",
        [VM_EXIT_OTHER] = "other",
    };

    return names[kind];
}
