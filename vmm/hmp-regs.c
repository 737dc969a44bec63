/* HMP's `info registers` (QMP human-monitor-command): one vCPU's state
 * from KVM, in the layout of QEMU 7.2's x86 CPU dump (its
 * target/i386/cpu-dump.c is the reference for the format; the code is
 * calf's).  The caller pauses the vCPUs first: KVM answers these ioctls
 * only outside KVM_RUN. */
#include "vmm/hmp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#define EFER_LMA (1u << 10)

static void out(struct qjson_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out(struct qjson_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        qjson_buf_add(b, line, (size_t)n < sizeof(line) ? (size_t)n
                                                        : sizeof(line) - 1);
}

/* The descriptor's flag bits as QEMU keeps them (its second dword) */
static uint32_t seg_flags(const struct kvm_segment *s)
{
    return (uint32_t)s->type << 8 | (uint32_t)s->s << 12 |
           (uint32_t)s->dpl << 13 | (uint32_t)(s->present && !s->unusable)
                                        << 15 |
           (uint32_t)s->avl << 20 | (uint32_t)s->l << 21 |
           (uint32_t)s->db << 22 | (uint32_t)s->g << 23;
}

static void dump_seg(struct qjson_buf *b, const char *name,
                     const struct kvm_segment *s, bool cs64, bool lma,
                     bool pe)
{
    static const char *const sys[2][16] = {
        { "Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16",
          "TaskGate", "IntGate16", "TrapGate16", "Reserved", "TSS32-avl",
          "Reserved", "TSS32-busy", "CallGate32", "Reserved", "IntGate32",
          "TrapGate32" },
        { "<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved",
          "Reserved", "Reserved", "Reserved", "TSS64-avl", "Reserved",
          "TSS64-busy", "CallGate64", "Reserved", "IntGate64",
          "TrapGate64" },
    };
    uint32_t f = seg_flags(s);

    if (cs64)
        out(b, "%-3s=%04x %016llx %08x %08x", name, s->selector,
            (unsigned long long)s->base, s->limit, f & 0x00ffff00);
    else
        out(b, "%-3s=%04x %08x %08x %08x", name, s->selector,
            (uint32_t)s->base, s->limit, f & 0x00ffff00);
    if (pe && (f & 0x8000)) {
        out(b, " DPL=%d ", s->dpl);
        if (s->s && (s->type & 8))
            out(b, "%s [%c%c%c]", s->l ? "CS64" : s->db ? "CS32" : "CS16",
                s->type & 4 ? 'C' : '-', s->type & 2 ? 'R' : '-',
                s->type & 1 ? 'A' : '-');
        else if (s->s)
            out(b, "%s [%c%c%c]", s->db || lma ? "DS  " : "DS16",
                s->type & 4 ? 'E' : '-', s->type & 2 ? 'W' : '-',
                s->type & 1 ? 'A' : '-');
        else
            out(b, "%s", sys[lma][s->type & 15]);
    }
    out(b, "\n");
}

static void dump_fpu(struct qjson_buf *b, const struct kvm_fpu *fpu,
                     bool cs64)
{
    unsigned nxmm = cs64 ? 16 : 8;

    out(b, "FCW=%04x FSW=%04x [ST=%d] FTW=%02x MXCSR=%08x\n", fpu->fcw,
        fpu->fsw, (fpu->fsw >> 11) & 7, fpu->ftwx, fpu->mxcsr);
    for (int i = 0; i < 8; i++) {
        uint64_t mant;
        uint16_t exp;

        memcpy(&mant, fpu->fpr[i], 8);
        memcpy(&exp, fpu->fpr[i] + 8, 2);
        out(b, "FPR%d=%016llx %04x%s", i, (unsigned long long)mant, exp,
            i & 1 ? "\n" : " ");
    }
    for (unsigned i = 0; i < nxmm; i++) {
        uint64_t lo, hi;

        memcpy(&lo, fpu->xmm[i], 8);
        memcpy(&hi, fpu->xmm[i] + 8, 8);
        out(b, "XMM%02u=%016llx %016llx%s", i, (unsigned long long)hi,
            (unsigned long long)lo, i & 1 ? "\n" : " ");
    }
}

int hmp_dump_vcpu(struct vcpu *v, struct qjson_buf *b)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    struct kvm_fpu fpu;
    struct kvm_vcpu_events ev;
    struct kvm_debugregs dr;
    struct kvm_mp_state mp;
    bool lma, cs64, pe;
    uint32_t fl;

    if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 ||
        ioctl(v->fd, KVM_GET_SREGS, &s) < 0 ||
        ioctl(v->fd, KVM_GET_FPU, &fpu) < 0)
        return -1;
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
        memset(&ev, 0, sizeof(ev));
    if (ioctl(v->fd, KVM_GET_DEBUGREGS, &dr) < 0)
        memset(&dr, 0, sizeof(dr));
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
        mp.mp_state = KVM_MP_STATE_RUNNABLE;
    lma = s.efer & EFER_LMA;
    cs64 = lma && s.cs.l;
    pe = s.cr0 & 1;
    fl = (uint32_t)r.rflags;
    out(b, "\nCPU#%d\n", v->id);
    if (cs64) {
        out(b, "RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n",
            r.rax, r.rbx, r.rcx, r.rdx);
        out(b, "RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n",
            r.rsi, r.rdi, r.rbp, r.rsp);
        out(b, "R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n",
            r.r8, r.r9, r.r10, r.r11);
        out(b, "R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n",
            r.r12, r.r13, r.r14, r.r15);
        out(b, "RIP=%016llx RFL=%08x", r.rip, fl);
    } else {
        out(b, "EAX=%08x EBX=%08x ECX=%08x EDX=%08x\n", (uint32_t)r.rax,
            (uint32_t)r.rbx, (uint32_t)r.rcx, (uint32_t)r.rdx);
        out(b, "ESI=%08x EDI=%08x EBP=%08x ESP=%08x\n", (uint32_t)r.rsi,
            (uint32_t)r.rdi, (uint32_t)r.rbp, (uint32_t)r.rsp);
        out(b, "EIP=%08x EFL=%08x", (uint32_t)r.rip, fl);
    }
    out(b, " [%c%c%c%c%c%c%c] CPL=%d II=%d A20=%d SMM=%d HLT=%d\n",
        fl & 0x400 ? 'D' : '-', fl & 0x800 ? 'O' : '-', fl & 0x80 ? 'S' : '-',
        fl & 0x40 ? 'Z' : '-', fl & 0x10 ? 'A' : '-', fl & 0x4 ? 'P' : '-',
        fl & 0x1 ? 'C' : '-', s.ss.dpl, ev.interrupt.shadow ? 1 : 0, 1,
        ev.smi.smm ? 1 : 0, mp.mp_state == KVM_MP_STATE_HALTED);
    dump_seg(b, "ES", &s.es, cs64, lma, pe);
    dump_seg(b, "CS", &s.cs, cs64, lma, pe);
    dump_seg(b, "SS", &s.ss, cs64, lma, pe);
    dump_seg(b, "DS", &s.ds, cs64, lma, pe);
    dump_seg(b, "FS", &s.fs, cs64, lma, pe);
    dump_seg(b, "GS", &s.gs, cs64, lma, pe);
    dump_seg(b, "LDT", &s.ldt, cs64, lma, pe);
    dump_seg(b, "TR", &s.tr, cs64, lma, pe);
    if (lma) {
        out(b, "GDT=     %016llx %08x\n", s.gdt.base, s.gdt.limit);
        out(b, "IDT=     %016llx %08x\n", s.idt.base, s.idt.limit);
        out(b, "CR0=%08x CR2=%016llx CR3=%016llx CR4=%08x\n",
            (uint32_t)s.cr0, s.cr2, s.cr3, (uint32_t)s.cr4);
        for (int i = 0; i < 4; i++)
            out(b, "DR%d=%016llx ", i, dr.db[i]);
        out(b, "\nDR6=%016llx DR7=%016llx\n", dr.dr6, dr.dr7);
    } else {
        out(b, "GDT=     %08x %08x\n", (uint32_t)s.gdt.base, s.gdt.limit);
        out(b, "IDT=     %08x %08x\n", (uint32_t)s.idt.base, s.idt.limit);
        out(b, "CR0=%08x CR2=%08x CR3=%08x CR4=%08x\n", (uint32_t)s.cr0,
            (uint32_t)s.cr2, (uint32_t)s.cr3, (uint32_t)s.cr4);
        for (int i = 0; i < 4; i++)
            out(b, "DR%d=%016llx ", i, dr.db[i]);
        out(b, "\nDR6=%016llx DR7=%016llx\n", dr.dr6, dr.dr7);
    }
    out(b, "EFER=%016llx\n", s.efer);
    dump_fpu(b, &fpu, cs64);
    return 0;
}
