/* The virtual machine: KVM handles, guest RAM, vCPUs, the device bus, and
 * the one place that decides when and why the machine stops. */
#ifndef CALF_VMM_VM_H
#define CALF_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "devices/bus.h"
#include "devices/disk.h"
#include "vmm/cpu-model.h"

#define VM_MAX_CPUS 64
#define VM_FIRST_EXTRA_SLOT 2  /* 0: RAM below 4 GiB, 1: RAM above */
#define VM_MAX_SLOTS 32
#define VM_MAX_DISKS 16

/* What the monitor (vmm/qmp.c) reports about a --disk: recorded by
 * vmm/machine.c as it creates the drive. */
struct vm_disk {
    char name[32];            /* QEMU's: virtio0, ide1-cd0, ... */
    char *file;
    char *format;             /* NULL: probed */
    bool cdrom, readonly, snapshot;
    int cache;                /* enum disk_cache (devices/disk.h) */
    /* What the drive counted (query-blockstats) and the errors it
     * reported (BLOCK_IO_ERROR); its I/O threads write, qmp.c reads */
    struct disk_stats stats;
};

/* Exit statuses of calf run.  Guest statuses from the debug-exit port are
 * always odd ((v << 1) | 1); the VMM's own are even so the two never mix. */
#define CALF_EXIT_OK          0
#define CALF_EXIT_SETUP       2   /* bad option, bad kernel, KVM failure */
#define CALF_EXIT_GUEST_ERROR 4   /* internal error, unexpected exit */
#define CALF_EXIT_NO_EXPECT   6   /* guest ended, --expect text never seen */
#define CALF_EXIT_TIMEOUT     124 /* --timeout, as timeout(1) */

/* Guest RAM below 4 GiB ends here when RAM is larger (PCI hole above). */
#define VM_LOW_RAM_MAX  0xc0000000ULL
#define VM_HIGH_RAM_BASE 0x100000000ULL

enum vm_exit_kind {
    VM_EXIT_IO, VM_EXIT_IO_UNHANDLED, VM_EXIT_MMIO, VM_EXIT_HLT,
    VM_EXIT_SHUTDOWN, VM_EXIT_INTERNAL_ERROR, VM_EXIT_INTR,
    VM_EXIT_SYSTEM_EVENT, VM_EXIT_QUIRK, VM_EXIT_OTHER, VM_EXIT_KINDS
};

struct vm;
struct ide;

/* A vCPU's architectural state right after creation and setup: what a
 * machine reset puts back before the boot method runs again.  The
 * optional parts are NULL/false where the backend lacks the ioctl. */
struct vcpu_reset_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_lapic_state lapic;
    struct kvm_mp_state mp;
    struct kvm_vcpu_events events;
    struct kvm_debugregs debugregs;
    struct kvm_xcrs xcrs;
    struct kvm_msrs *msrs;     /* every MSR KVM lists that could be read */
    bool has_events, has_debugregs, has_xcrs;
};

struct vcpu {
    struct vm *vm;
    int id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
    _Atomic uint64_t exits[VM_EXIT_KINDS];
    /* Halt detection: the main loop sets probe and kicks; the vCPU
     * answers with dead = halted with interrupts off (or never started)
     * and clears probe. */
    atomic_bool probe;
    atomic_bool dead;
    uint64_t last_rip;        /* where the vCPU was when the run ended */
    atomic_int tid;           /* its thread's Linux thread ID */
    bool parked, exited;      /* under vm->pause_lock */
    struct vcpu_reset_state reset;
};

/* How the machine is booted: loads what the guest starts from (kernel,
 * boot tables, firmware) into RAM and sets the boot vCPU's registers.
 * Runs at start and again after every reset, with devices and vCPUs
 * back in their power-on state; prints its own errors. */
typedef int (*vm_load_fn)(struct vm *vm, const void *cfg);

struct vm {
    int kvm_fd;
    int vm_fd;
    size_t run_size;
    bool pvm;                 /* the kvm_pvm software backend (quirks on) */

    uint8_t *ram;
    uint64_t ram_size;
    uint64_t low_size;        /* RAM mapped at 0; the rest sits at 4 GiB */

    int ncpus;
    struct vcpu vcpus[VM_MAX_CPUS];
    struct kvm_cpuid2 *cpuid; /* what KVM supports, filtered per vCPU */
    struct cpu_model cpu_model;

    struct bus *bus;
    /* The machine's devices (vmm/machine.c creates them all) */
    struct pci *pci;          /* PCI bus 0 (devices/pci.c) */
    struct piix3 *piix3;      /* ISA bridge at 00:01.0 */
    struct acpi_pm *acpi_pm;  /* PIIX4 power management at 00:01.3 */
    struct fw_cfg *fw_cfg;
    struct i8042 *kbd;
    struct vga *vga;          /* NULL without one */
    struct ide *ide;          /* the IDE function, NULL without one */
    struct firmware *firmware; /* vmm/firmware.c, NULL under --kernel */
    struct serial *serial;
    struct console *console;

    vm_load_fn load;
    const void *load_cfg;
    bool no_reboot;           /* a guest reset ends the run */
    struct vm_disk disks[VM_MAX_DISKS];
    int ndisks;

    /* stop/cont (vm_pause(), vm_resume()): while paused is set every
     * vCPU thread parks outside KVM_RUN; pause_lock guards the vCPUs'
     * parked and exited flags and orders the wake-ups. */
    atomic_bool paused;
    atomic_bool prelaunch;    /* paused since start (--paused) or a reset
                                 while stopped, no cont yet */
    /* a monitor loadvm failed after it changed the machine: the devices
     * stay frozen and cont is refused until a reset or a loadvm that
     * works (vmm/hmp-snapshot.c) */
    atomic_bool needs_reset;
    pthread_mutex_t pause_lock;
    pthread_cond_t pause_cond;

    pthread_mutex_t stop_lock;
    /* KVM's coalesced I/O ring (writes KVM buffers instead of exiting;
     * NULL without the capability), drained under coalesced_lock before
     * any exit is handled, so devices see accesses in guest order. */
    struct kvm_coalesced_mmio_ring *coalesced;
    unsigned coalesced_max;
    pthread_mutex_t coalesced_lock;
    atomic_bool stopping;
    /* A guest reset to carry out: vCPU threads leave, the main loop
     * resets the machine and starts them again. */
    atomic_bool reset_pending;
    enum bus_stop_reason reset_reason;
    unsigned resets;          /* restarts done */
    enum bus_stop_reason stop_reason;
    int stop_status;
    int wake_fd;              /* eventfd: wakes the main loop */

    /* The in-kernel PIC, I/O APIC and PIT as created, for a reset. */
    struct kvm_irqchip irqchip_reset[3];
    struct kvm_pit_state2 pit_reset;
    bool has_irqchip_reset, has_pit_reset;

    _Atomic uint64_t t_first_run_ns;
    bool slot_used[VM_MAX_SLOTS]; /* extra memory slots (kvm-host.c) */
    void *slot_mem[VM_MAX_SLOTS];  /* their host memory, for the report */
    uint64_t slot_size[VM_MAX_SLOTS];
};

/* vm->cpu_model must be set before: vCPUs are created here. */
int vm_create(struct vm *vm, uint64_t ram_size, int ncpus);

/* Hands the writes KVM buffered to the bus, oldest first. */
void vm_coalesced_drain(struct vm *vm);
/* Leaves the kernel's destruction of the VM to a child that outlives
 * calf (vm.c); 0 when it did.  Call it last, then vm_destroy(). */
int vm_teardown_detached(struct vm *vm);
void vm_destroy(struct vm *vm);

/* KVM memory slot slot: size bytes of host memory at gpa (size 0
 * deletes it).  Slots 0 and 1 are guest RAM, the rest are handed out to
 * RAM-backed regions outside it (framebuffers, ROMs: vmm/kvm-host.c). */
int vm_set_slot(struct vm *vm, int slot, uint64_t gpa, uint64_t size,
                void *host, uint32_t flags);

/* vmm/kvm-host.c: the bus_host_ops of every machine (host: the struct
 * vm), done with KVM ioctls. */
extern const struct bus_host_ops kvm_host_ops;

/* Host pointer to len bytes of guest RAM at gpa, or NULL when any of
 * them is not RAM (the range may not cross the 4 GiB hole). */
void *vm_gpa(struct vm *vm, uint64_t gpa, uint64_t len);

/* First caller wins; later requests are ignored.  A guest reset
 * (BUS_STOP_RESET, BUS_STOP_TRIPLE_FAULT) becomes a restart unless
 * no_reboot is set. */
void vm_request_stop(struct vm *vm, enum bus_stop_reason reason, int status);
/* Main thread, vCPU threads joined: devices and vCPUs back to power-on
 * state, then vm->load again.  Returns 0 or -errno (the run must end). */
int vm_reset(struct vm *vm);
const char *vm_stop_reason_name(enum bus_stop_reason reason);
const char *vm_exit_kind_name(enum vm_exit_kind kind);

uint64_t vm_now_ns(void);

/* Pauses every vCPU (main thread): returns once each vCPU thread is
 * parked outside KVM_RUN (its last exit handled, any I/O it completed
 * written back to KVM) or gone.  Device threads keep running: requests
 * in flight complete and their interrupts wait in the irqchip. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* Wakes parked vCPUs so that they see stopping or reset_pending. */
void vm_pause_wake(struct vm *vm);

/* vcpu.c */
int vcpu_create(struct vm *vm, int id);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu);
/* Back to the state saved at creation (vCPU thread not running). */
int vcpu_reset(struct vcpu *vcpu);
void vcpu_kick(struct vcpu *vcpu);
/* True once every vCPU halted with interrupts off (none can wake up but
 * by NMI/INIT, which nothing here sends); starts the next probe. */
bool vm_all_dead(struct vm *vm);

/* Prints "calf: " and the message to stderr. */
void vmm_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
