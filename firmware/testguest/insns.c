/* Instructions the kvm_pvm emulator cannot run by itself
 * (docs/ARCHITECTURE.md, section 8): the test guest executes them on
 * request so the tests can show that the VMM completes them (int3, fwait)
 * or reports them clearly (cmpxchg16b). */
#include "guest.h"

struct idt_gate {
    uint16_t off_lo, sel;
    uint8_t ist, type;
    uint16_t off_mid;
    uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[4] __attribute__((aligned(16)));
static volatile int int3_hits;
static volatile unsigned __int128 cx16_word;

void bp_handler(void);
__asm__(".text\n"
        "bp_handler:\n"
        "  incl int3_hits(%rip)\n"
        "  iretq\n");

int try_int3(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr;
    uint64_t h = (uint64_t)bp_handler;
    uint16_t cs;

    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    idt[3] = (struct idt_gate){
        .off_lo = (uint16_t)h, .sel = cs, .type = 0x8e,
        .off_mid = (uint16_t)(h >> 16), .off_hi = (uint32_t)(h >> 32),
    };
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (uint64_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
    __asm__ volatile("int3" ::: "memory");
    return int3_hits == 1;
}

int try_fwait(void)
{
    __asm__ volatile("fwait");
    return 1;
}

int try_cmpxchg16b(void)
{
    uint64_t lo = 0, hi = 0;
    uint8_t ok;

    __asm__ volatile("lock cmpxchg16b %1; sete %0"
                     : "=q"(ok), "+m"(cx16_word), "+a"(lo), "+d"(hi)
                     : "b"(1ULL), "c"(2ULL) : "memory");
    return ok && cx16_word == ((unsigned __int128)2 << 64 | 1);
}
