/* kvm_pvm emulates ring-0 guest code and stops with an emulation failure
 * on a few instructions (docs/ARCHITECTURE.md section 8).  Here a VMM does what
 * the emulator could not: it is all that is needed for Linux to boot on
 * that backend, and none of it can trigger on VMX/SVM, where these
 * instructions never reach an emulator. */
#include "vmm/pvm-quirks.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/vcpu-util.h"
#include "vmm/vm.h"

#define CPUID1_ECX_CX16 (1u << 13)
/* KVM's paravirtual feature leaf and its PV_SEND_IPI bit
 * (linux/kvm_para.h; not in the uapi headers of every distribution) */
#define KVM_CPUID_FEATURES 0x40000001u
#define KVM_PV_SEND_IPI (1u << 11)

bool pvm_quirks_detect(void)
{
    return access("/sys/module/kvm_pvm", F_OK) == 0;
}

/* `lock cmpxchg16b` cannot be emulated; Linux uses it only when CPUID says
 * CX16.  (The backend ORs the host's other leaf-1 ECX bits back in, so
 * hiding more here would not help; the kernel's clearcpuid= does.)
 *
 * PV IPIs (KVM_HC_SEND_IPI) do not arrive on this backend: a kernel built
 * with CONFIG_KVM_GUEST (every distribution's) sends its IPIs that way
 * once it sees the bit, and with 2 vCPUs it stops for good at "x86:
 * Booting SMP configuration:".  Measured with the test kernel plus
 * guest-tests/linux/kvm-guest.config: hiding this bit alone brings both
 * CPUs up; hiding every other PV bit (kvmclock, PV EOI, PV unhalt, steal
 * time, PV TLB flush, async PF, sched yield, poll control) does not.
 * Without the bit Linux sends IPIs through the APIC, as on bare metal. */
void pvm_quirks_filter_cpuid(struct kvm_cpuid_entry2 *e)
{
    if (e->function == 1)
        e->ecx &= ~CPUID1_ECX_CX16;
    if (e->function == KVM_CPUID_FEATURES)
        e->eax &= ~KVM_PV_SEND_IPI;
}

/* The emulator cannot deliver the #BP of an int3 in long mode: step over
 * it and inject the trap, which leaves the guest exactly where a real
 * int3 would (vector 3 is a trap: the saved RIP is the next byte). */
static int pvm_quirks_int3(struct vcpu *vcpu, struct kvm_regs *regs)
{
    struct kvm_vcpu_events ev;

    if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
        return -errno;
    regs->rip += 1;
    if (ioctl(vcpu->fd, KVM_SET_REGS, regs) < 0)
        return -errno;
    ev.exception.injected = 1;
    ev.exception.nr = 3;
    ev.exception.has_error_code = 0;
    ev.exception.error_code = 0;
    ev.flags = 0;
    if (ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
        return -errno;
    return 0;
}

int pvm_quirks_emulation_failure(struct vcpu *vcpu)
{
    struct kvm_regs regs;
    uint8_t op;

    if (!vcpu->vm->pvm)
        return -ENOTSUP;
    if (vcpu->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION)
        return -ENOTSUP;
    if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0)
        return -errno;
    if (vcpu_read_code(vcpu, regs.rip, &op, 1) != 1)
        return -ENOTSUP;
    switch (op) {
    case 0xcc: /* int3 */
        return pvm_quirks_int3(vcpu, &regs);
    case 0x9b: /* fwait: no x87 exception is ever pending here */
        regs.rip += 1;
        return ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0 ? -errno : 0;
    default:
        return -ENOTSUP;
    }
}
