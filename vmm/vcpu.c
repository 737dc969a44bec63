/* vCPUs: creation with their CPUID/MSR/LAPIC state, one thread each, and
 * the exit loop.  Port I/O goes to the bus; everything the VMM cannot
 * handle stops the machine with one message that says where and why. */
#include "vmm/vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/pvm-quirks.h"
#include "vmm/vcpu-util.h"

#define VCPU_KICK_SIGNAL SIGUSR1

#define MSR_IA32_SYSENTER_CS   0x174
#define MSR_IA32_SYSENTER_ESP  0x175
#define MSR_IA32_SYSENTER_EIP  0x176
#define MSR_IA32_MISC_ENABLE   0x1a0
#define MSR_STAR               0xc0000081
#define MSR_LSTAR              0xc0000082
#define MSR_CSTAR              0xc0000083
#define MSR_SYSCALL_MASK       0xc0000084
#define MSR_KERNEL_GS_BASE     0xc0000102
#define MISC_ENABLE_FAST_STRING 1

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static void vcpu_filter_cpuid(struct vcpu *v, struct kvm_cpuid_entry2 *e)
{
    /* The vCPU index is its APIC ID (KVM_CREATE_VCPU), as in the tables. */
    cpu_model_topology(e, v->id, v->vm->ncpus, cpu_model_is_amd(v->vm->cpuid));
    if (e->function == 1)
        e->ecx |= 1u << 31; /* hypervisor */
    cpu_model_filter(&v->vm->cpu_model, e);
    if (v->vm->pvm)
        pvm_quirks_filter_cpuid(e);
}

static int vcpu_setup_cpuid(struct vcpu *v)
{
    const struct kvm_cpuid2 *src = v->vm->cpuid;
    size_t sz = sizeof(*src) + src->nent * sizeof(src->entries[0]);
    uint32_t room = src->nent + CPU_MODEL_TOPOLOGY_EXTRA;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + room * sizeof(c->entries[0]));
    int ret = 0;

    if (!c)
        return -ENOMEM;
    memcpy(c, src, sz);
    cpu_model_add_topology_leaves(c, room);
    for (uint32_t i = 0; i < c->nent; i++)
        vcpu_filter_cpuid(v, &c->entries[i]);
    if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
        ret = -errno;
        vmm_error("vCPU %d: KVM_SET_CPUID2: %s", v->id, strerror(errno));
    }
    free(c);
    return ret;
}

static int vcpu_setup_msrs(struct vcpu *v)
{
    static const uint32_t zeroed[] = {
        MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
        MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE,
    };
    enum { N = sizeof(zeroed) / sizeof(zeroed[0]) + 1 };
    struct kvm_msrs *m = calloc(1, sizeof(*m) + N * sizeof(m->entries[0]));
    int ret = 0;

    if (!m)
        return -ENOMEM;
    for (unsigned i = 0; i < N - 1; i++)
        m->entries[i].index = zeroed[i];
    m->entries[N - 1].index = MSR_IA32_MISC_ENABLE;
    m->entries[N - 1].data = MISC_ENABLE_FAST_STRING;
    m->nmsrs = N;
    /* KVM_SET_MSRS returns how many it set; a backend lacking some of
     * these MSRs is not fatal, the guest programs them itself. */
    if (ioctl(v->fd, KVM_SET_MSRS, m) < 0) {
        ret = -errno;
        vmm_error("vCPU %d: KVM_SET_MSRS: %s", v->id, strerror(errno));
    }
    free(m);
    return ret;
}

static void lapic_set_mode(struct kvm_lapic_state *l, unsigned reg,
                           uint32_t mode)
{
    uint32_t v;

    memcpy(&v, &l->regs[reg], 4);
    v = (v & ~0x700u) | (mode << 8);
    memcpy(&l->regs[reg], &v, 4);
}

/* Virtual-wire mode: PIC interrupts arrive on LINT0, NMIs on LINT1, as
 * the boot protocol (and every BIOS) leaves them. */
static int vcpu_setup_lapic(struct vcpu *v)
{
    struct kvm_lapic_state l;

    if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
        return -errno;
    lapic_set_mode(&l, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    lapic_set_mode(&l, APIC_LVT_LINT1, APIC_MODE_NMI);
    if (ioctl(v->fd, KVM_SET_LAPIC, &l) < 0)
        return -errno;
    return 0;
}

static int vcpu_setup_fpu(struct vcpu *v)
{
    struct kvm_fpu fpu;

    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    return ioctl(v->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

/* ---- reset state ---- */

#define MSR_IA32_TSC        0x10
#define MSR_IA32_TSC_ADJUST 0x3b

/* The guest's clock keeps running across a reset (as kvmtool and
 * Firecracker leave it); every other MSR KVM knows goes back, which
 * also turns off paravirtual MSRs (kvmclock, async PF, steal time) that
 * would otherwise keep writing into the rebooted guest's RAM. */
static bool msr_reset_skipped(uint32_t index)
{
    return index == MSR_IA32_TSC || index == MSR_IA32_TSC_ADJUST;
}

static struct kvm_msr_list *msr_index_list(int kvm_fd)
{
    struct kvm_msr_list probe = { .nmsrs = 0 }, *l;

    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return NULL;
    l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
    if (!l)
        return NULL;
    l->nmsrs = probe.nmsrs;
    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

/* Reads every listed MSR the vCPU answers for: KVM_GET_MSRS stops at the
 * first it cannot read, so that one is dropped and the rest retried. */
struct kvm_msrs *vcpu_msrs_read(struct vcpu *v, bool all)
{
    struct kvm_msr_list *list = msr_index_list(v->vm->kvm_fd);
    struct kvm_msrs *m = NULL, *tmp = NULL;
    uint32_t n = 0;

    if (list) {
        size_t sz = sizeof(*m) + list->nmsrs * sizeof(m->entries[0]);

        m = calloc(1, sz);
        tmp = calloc(1, sz);
    }
    for (uint32_t i = 0; m && tmp && i < list->nmsrs;) {
        int got;

        tmp->nmsrs = 0;
        for (uint32_t j = i; j < list->nmsrs; j++)
            if (all || !msr_reset_skipped(list->indices[j]))
                tmp->entries[tmp->nmsrs++].index = list->indices[j];
        if (!tmp->nmsrs)
            break;
        got = ioctl(v->fd, KVM_GET_MSRS, tmp);
        got = got < 0 ? 0 : got;
        memcpy(&m->entries[n], tmp->entries,
               (size_t)got * sizeof(m->entries[0]));
        n += (uint32_t)got;
        /* past what was read and the one that failed */
        for (uint32_t seen = 0; i < list->nmsrs && seen <= (uint32_t)got; i++)
            seen += all || !msr_reset_skipped(list->indices[i]);
    }
    if (m)
        m->nmsrs = n;
    free(tmp);
    free(list);
    return m;
}

static int vcpu_save_reset_state(struct vcpu *v)
{
    struct vcpu_reset_state *r = &v->reset;

    if (ioctl(v->fd, KVM_GET_REGS, &r->regs) < 0 ||
        ioctl(v->fd, KVM_GET_SREGS, &r->sregs) < 0 ||
        ioctl(v->fd, KVM_GET_FPU, &r->fpu) < 0 ||
        ioctl(v->fd, KVM_GET_LAPIC, &r->lapic) < 0 ||
        ioctl(v->fd, KVM_GET_MP_STATE, &r->mp) < 0) {
        vmm_error("vCPU %d: cannot read its initial state: %s", v->id,
                  strerror(errno));
        return -errno;
    }
    r->has_events = ioctl(v->fd, KVM_GET_VCPU_EVENTS, &r->events) == 0;
    r->has_debugregs = ioctl(v->fd, KVM_GET_DEBUGREGS, &r->debugregs) == 0;
    r->has_xcrs = ioctl(v->fd, KVM_GET_XCRS, &r->xcrs) == 0;
    r->msrs = vcpu_msrs_read(v, false);
    return 0;
}

/* Writes back up to n MSRs, skipping any the backend refuses. */
void vcpu_msrs_write(struct vcpu *v, const struct kvm_msrs *m)
{
    uint32_t done = 0;
    size_t sz = sizeof(*m) + m->nmsrs * sizeof(m->entries[0]);
    struct kvm_msrs *tmp = malloc(sz);

    while (tmp && done < m->nmsrs) {
        int put;

        tmp->nmsrs = m->nmsrs - done;
        tmp->pad = 0;
        memcpy(tmp->entries, &m->entries[done],
               tmp->nmsrs * sizeof(m->entries[0]));
        put = ioctl(v->fd, KVM_SET_MSRS, tmp);
        done += (put > 0 ? (uint32_t)put : 0) + 1; /* past the refused one */
    }
    free(tmp);
}

int vcpu_reset(struct vcpu *v)
{
    struct vcpu_reset_state *r = &v->reset;

    if (ioctl(v->fd, KVM_SET_SREGS, &r->sregs) < 0 ||
        ioctl(v->fd, KVM_SET_REGS, &r->regs) < 0 ||
        ioctl(v->fd, KVM_SET_FPU, &r->fpu) < 0)
        goto fail;
    if (r->has_xcrs && ioctl(v->fd, KVM_SET_XCRS, &r->xcrs) < 0)
        goto fail;
    if (r->msrs)
        vcpu_msrs_write(v, r->msrs);
    if (ioctl(v->fd, KVM_SET_MP_STATE, &r->mp) < 0 ||
        ioctl(v->fd, KVM_SET_LAPIC, &r->lapic) < 0)
        goto fail;
    if (r->has_events && ioctl(v->fd, KVM_SET_VCPU_EVENTS, &r->events) < 0)
        goto fail;
    if (r->has_debugregs &&
        ioctl(v->fd, KVM_SET_DEBUGREGS, &r->debugregs) < 0)
        goto fail;
    atomic_store(&v->probe, false);
    atomic_store(&v->dead, false);
    return 0;
fail:
    vmm_error("vCPU %d: reset: %s", v->id, strerror(errno));
    return -errno;
}

int vcpu_create(struct vm *vm, int id)
{
    struct vcpu *v = &vm->vcpus[id];
    int ret;

    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
    if (v->fd < 0) {
        vmm_error("KVM_CREATE_VCPU %d: %s", id, strerror(errno));
        return -errno;
    }
    v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                  v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        return -errno;
    }
    ret = vcpu_setup_cpuid(v);
    if (!ret)
        ret = vcpu_setup_msrs(v);
    if (!ret && (ret = vcpu_setup_lapic(v)))
        vmm_error("vCPU %d: LAPIC setup: %s", id, strerror(-ret));
    if (!ret && (ret = vcpu_setup_fpu(v)))
        vmm_error("vCPU %d: KVM_SET_FPU: %s", id, strerror(-ret));
    if (!ret)
        ret = vcpu_save_reset_state(v);
    return ret;
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->started)
        pthread_join(v->thread, NULL);
    if (v->run)
        munmap(v->run, v->vm->run_size);
    if (v->fd > 0)
        close(v->fd);
    free(v->reset.msrs);
}

size_t vcpu_read_code(struct vcpu *v, uint64_t rip, uint8_t *buf, size_t len)
{
    struct kvm_sregs sregs;
    size_t n = 0;

    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return 0;
    while (n < len) {
        struct kvm_translation t = {
            .linear_address = sregs.cs.base + rip + n
        };
        uint8_t *p;

        if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
            break;
        p = vm_gpa(v->vm, t.physical_address, 1);
        if (!p)
            break;
        buf[n++] = *p;
    }
    return n;
}

static void vcpu_report(struct vcpu *v, const char *what)
{
    struct kvm_regs regs;
    uint8_t code[16];
    char hex[3 * sizeof(code) + 1] = "";
    size_t n = 0;

    if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
        memset(&regs, 0, sizeof(regs));
    else
        n = vcpu_read_code(v, regs.rip, code, sizeof(code));
    for (size_t i = 0; i < n; i++)
        snprintf(hex + (i ? 3 * i - 1 : 0), 4, "%s%02x", i ? " " : "", code[i]);
    vmm_error("vCPU %d: %s at RIP 0x%llx; bytes at RIP: %s", v->id, what,
              (unsigned long long)regs.rip, n ? hex : "(not readable)");
}

static void vcpu_internal_error(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    char what[160];

    if (pvm_quirks_emulation_failure(v) == 0) {
        v->exits[VM_EXIT_QUIRK]++;
        return;
    }
    snprintf(what, sizeof(what),
             "KVM_EXIT_INTERNAL_ERROR (exit reason %u), suberror %u%s",
             run->exit_reason, run->internal.suberror,
             run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                 ? " (instruction emulation failed)" : "");
    vcpu_report(v, what);
    vm_request_stop(v->vm, BUS_STOP_ERROR, CALF_EXIT_GUEST_ERROR);
}

static void vcpu_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

    for (uint32_t i = 0; i < run->io.count; i++) {
        if (!bus_pio(v->vm->bus, run->io.port, data, run->io.size, is_write))
            v->exits[VM_EXIT_IO_UNHANDLED]++;
        data += run->io.size;
    }
}

/* MMIO: unclaimed addresses read all ones, writes are dropped. */
static void vcpu_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    unsigned len = run->mmio.len <= 8 ? run->mmio.len : 8;

    bus_mmio(v->vm->bus, run->mmio.phys_addr, run->mmio.data, len,
             run->mmio.is_write);
}

static void vcpu_system_event(struct vcpu *v)
{
    switch (v->run->system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
        vm_request_stop(v->vm, BUS_STOP_HALT, CALF_EXIT_OK);
        break;
    case KVM_SYSTEM_EVENT_RESET:
        vm_request_stop(v->vm, BUS_STOP_RESET, CALF_EXIT_OK);
        break;
    default:
        vcpu_report(v, "unexpected KVM_EXIT_SYSTEM_EVENT");
        vm_request_stop(v->vm, BUS_STOP_ERROR, CALF_EXIT_GUEST_ERROR);
        break;
    }
}

static void vcpu_halt(struct vcpu *v)
{
    struct kvm_regs regs;

    /* Without the in-kernel LAPIC halting would exit here; with it this
     * only shows up when the guest halts for good. */
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0 && !(regs.rflags & 0x200))
        vm_request_stop(v->vm, BUS_STOP_HALT, CALF_EXIT_OK);
}

void vcpu_handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    char what[64];

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        v->exits[VM_EXIT_IO]++;
        vcpu_io(v);
        break;
    case KVM_EXIT_MMIO:
        v->exits[VM_EXIT_MMIO]++;
        vcpu_mmio(v);
        break;
    case KVM_EXIT_HLT:
        v->exits[VM_EXIT_HLT]++;
        vcpu_halt(v);
        break;
    case KVM_EXIT_SHUTDOWN:
        v->exits[VM_EXIT_SHUTDOWN]++;
        vcpu_report(v, "triple fault (KVM_EXIT_SHUTDOWN)");
        vm_request_stop(v->vm, BUS_STOP_TRIPLE_FAULT, CALF_EXIT_OK);
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        v->exits[VM_EXIT_INTERNAL_ERROR]++;
        vcpu_internal_error(v);
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        v->exits[VM_EXIT_SYSTEM_EVENT]++;
        vcpu_system_event(v);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        v->exits[VM_EXIT_OTHER]++;
        snprintf(what, sizeof(what), "KVM_EXIT_FAIL_ENTRY (reason 0x%llx)",
                 (unsigned long long)
                     run->fail_entry.hardware_entry_failure_reason);
        vcpu_report(v, what);
        vm_request_stop(v->vm, BUS_STOP_ERROR, CALF_EXIT_GUEST_ERROR);
        break;
    default:
        v->exits[VM_EXIT_OTHER]++;
        snprintf(what, sizeof(what), "unexpected exit reason %u",
                 run->exit_reason);
        vcpu_report(v, what);
        vm_request_stop(v->vm, BUS_STOP_ERROR, CALF_EXIT_GUEST_ERROR);
        break;
    }
}

/* Runs on the vCPU thread after a kick: a halted vCPU sits inside
 * KVM_RUN, so only here can its state be read. */
static void vcpu_answer_probe(struct vcpu *v)
{
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    bool dead = false;

    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0) {
        if (mp.mp_state == KVM_MP_STATE_HALTED)
            dead = ioctl(v->fd, KVM_GET_REGS, &regs) == 0 &&
                   !(regs.rflags & 0x200);
        else if (v->id != 0)
            dead = mp.mp_state == KVM_MP_STATE_UNINITIALIZED ||
                   mp.mp_state == KVM_MP_STATE_INIT_RECEIVED;
    }
    atomic_store(&v->dead, dead);
    atomic_store(&v->probe, false);
}

bool vm_all_dead(struct vm *vm)
{
    bool answered = true, dead = true;

    for (int i = 0; i < vm->ncpus; i++) {
        answered &= !atomic_load(&vm->vcpus[i].probe);
        dead &= atomic_load(&vm->vcpus[i].dead);
    }
    if (!answered)
        return false;
    for (int i = 0; i < vm->ncpus; i++) {
        atomic_store(&vm->vcpus[i].probe, true);
        vcpu_kick(&vm->vcpus[i]);
    }
    return dead;
}

/* Stopped by the monitor (vm_pause()): wait outside KVM_RUN until cont,
 * a reset or the end of the run.  A kick meanwhile (halt probe) only
 * leaves immediate_exit set: the next KVM_RUN returns at once. */
static void vcpu_park(struct vcpu *v)
{
    struct vm *vm = v->vm;

    pthread_mutex_lock(&vm->pause_lock);
    v->parked = true;
    pthread_cond_broadcast(&vm->pause_cond);
    while (atomic_load(&vm->paused) && !atomic_load(&vm->stopping) &&
           !atomic_load(&vm->reset_pending))
        pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
    v->parked = false;
    pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    struct kvm_regs regs;
    uint64_t zero = 0;

    atomic_store(&v->tid, (int)gettid());
    if (v->id == 0)
        atomic_compare_exchange_strong(&vm->t_first_run_ns, &zero,
                                       vm_now_ns());
    while (!atomic_load(&vm->stopping) && !atomic_load(&vm->reset_pending)) {
        /* A pause parks only after an interrupted KVM_RUN, which first
         * completes the I/O of the exit handled last. */
        if (atomic_load(&vm->paused))
            __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                v->exits[VM_EXIT_INTR]++;
                /* Sequentially consistent, as in vcpu_kick: a kick whose
                 * flag this store overwrites set probe or stopping before
                 * it, so the loads after this store see them. */
                __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                if (atomic_load(&v->probe))
                    vcpu_answer_probe(v);
                if (atomic_load(&vm->paused))
                    vcpu_park(v);
                continue;
            }
            vmm_error("vCPU %d: KVM_RUN: %s", v->id, strerror(errno));
            vm_request_stop(vm, BUS_STOP_ERROR, CALF_EXIT_GUEST_ERROR);
            break;
        }
        vm_coalesced_drain(vm);
        vcpu_handle_exit(v);
    }
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
        v->last_rip = regs.rip;
    pthread_mutex_lock(&vm->pause_lock);
    v->exited = true;
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
    return NULL;
}

static void vcpu_kick_handler(int sig)
{
    (void)sig; /* its only job is to interrupt KVM_RUN */
}

int vcpu_start(struct vcpu *v)
{
    static bool handler_installed;
    int ret;

    if (!handler_installed) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = vcpu_kick_handler;
        sigemptyset(&sa.sa_mask);
        sigaction(VCPU_KICK_SIGNAL, &sa, NULL); /* no SA_RESTART */
        handler_installed = true;
    }
    pthread_mutex_lock(&v->vm->pause_lock);
    v->exited = false;
    pthread_mutex_unlock(&v->vm->pause_lock);
    ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (ret)
        return -ret;
    v->started = true;
    return 0;
}

/* immediate_exit closes the race with a vCPU about to enter KVM_RUN: the
 * signal interrupts a running one, the flag the next entry.  The flag is
 * shared with the vCPU thread, which clears it after each interrupted
 * KVM_RUN (and with the kernel, which reads it at entry): both sides use
 * sequentially consistent stores, so a clear that lands after this store
 * is ordered after the caller's store to probe or stopping too, and the
 * vCPU thread's next check of them cannot miss this kick.  (started is
 * only ever touched by the main thread.) */
void vcpu_kick(struct vcpu *v)
{
    if (!v->started)
        return;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}
