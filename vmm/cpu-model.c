#include "vmm/cpu-model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vm.h"

enum cpuid_reg { EAX, EBX, ECX, EDX };

struct cpu_feature {
    const char *name;
    unsigned leaf, subleaf;
    enum cpuid_reg reg;
    unsigned bit;
};

/* Linux /proc/cpuinfo names; the ones a guest kernel most often has to
 * be steered away from. */
static const struct cpu_feature features[] = {
    { "sse3", 1, 0, ECX, 0 },      { "pclmulqdq", 1, 0, ECX, 1 },
    { "monitor", 1, 0, ECX, 3 },   { "vmx", 1, 0, ECX, 5 },
    { "ssse3", 1, 0, ECX, 9 },     { "fma", 1, 0, ECX, 12 },
    { "cx16", 1, 0, ECX, 13 },     { "pcid", 1, 0, ECX, 17 },
    { "sse4_1", 1, 0, ECX, 19 },   { "sse4_2", 1, 0, ECX, 20 },
    { "x2apic", 1, 0, ECX, 21 },   { "movbe", 1, 0, ECX, 22 },
    { "popcnt", 1, 0, ECX, 23 },   { "tsc_deadline_timer", 1, 0, ECX, 24 },
    { "aes", 1, 0, ECX, 25 },      { "xsave", 1, 0, ECX, 26 },
    { "avx", 1, 0, ECX, 28 },      { "f16c", 1, 0, ECX, 29 },
    { "rdrand", 1, 0, ECX, 30 },   { "hypervisor", 1, 0, ECX, 31 },
    { "sse", 1, 0, EDX, 25 },      { "sse2", 1, 0, EDX, 26 },
    { "fsgsbase", 7, 0, EBX, 0 },  { "bmi1", 7, 0, EBX, 3 },
    { "avx2", 7, 0, EBX, 5 },      { "smep", 7, 0, EBX, 7 },
    { "bmi2", 7, 0, EBX, 8 },      { "erms", 7, 0, EBX, 9 },
    { "invpcid", 7, 0, EBX, 10 },  { "avx512f", 7, 0, EBX, 16 },
    { "rdseed", 7, 0, EBX, 18 },   { "adx", 7, 0, EBX, 19 },
    { "smap", 7, 0, EBX, 20 },     { "sha_ni", 7, 0, EBX, 29 },
    { "umip", 7, 0, ECX, 2 },      { "pku", 7, 0, ECX, 3 },
    { "la57", 7, 0, ECX, 16 },     { "rdpid", 7, 0, ECX, 22 },
    { "pdpe1gb", 0x80000001, 0, EDX, 26 },
    { "rdtscp", 0x80000001, 0, EDX, 27 },
    { "lahf_lm", 0x80000001, 0, ECX, 0 },
    { "abm", 0x80000001, 0, ECX, 5 },
    /* KVM's paravirtual features (leaf 0x40000001 EAX), QEMU's names;
     * "kvmclock" is both clock source bits, as in QEMU */
    { "kvmclock", 0x40000001, 0, EAX, 0 },
    { "kvm-nopiodelay", 0x40000001, 0, EAX, 1 },
    { "kvmclock", 0x40000001, 0, EAX, 3 },
    { "kvm-asyncpf", 0x40000001, 0, EAX, 4 },
    { "kvm-steal-time", 0x40000001, 0, EAX, 5 },
    { "kvm-pv-eoi", 0x40000001, 0, EAX, 6 },
    { "kvm-pv-unhalt", 0x40000001, 0, EAX, 7 },
    { "kvm-pv-tlb-flush", 0x40000001, 0, EAX, 9 },
    { "kvm-asyncpf-vmexit", 0x40000001, 0, EAX, 10 },
    { "kvm-pv-ipi", 0x40000001, 0, EAX, 11 },
    { "kvm-poll-control", 0x40000001, 0, EAX, 12 },
    { "kvm-pv-sched-yield", 0x40000001, 0, EAX, 13 },
    { "kvm-asyncpf-int", 0x40000001, 0, EAX, 14 },
    { "kvm-msi-ext-dest-id", 0x40000001, 0, EAX, 15 },
    { "kvmclock-stable-bit", 0x40000001, 0, EAX, 24 },
};
#define NFEATURES (sizeof(features) / sizeof(features[0]))

static int cpu_model_hide(struct cpu_model *m, const char *name)
{
    bool found = false;
    for (unsigned i = 0; i < NFEATURES; i++) {
        if (strcmp(features[i].name, name))
            continue;
        if (m->nhidden == CPU_MODEL_MAX_HIDDEN) {
            vmm_error("--cpu: more than %d hidden features",
                      CPU_MODEL_MAX_HIDDEN);
            return -EINVAL;
        }
        m->hidden[m->nhidden++] = i;
        found = true;
    }
    if (found)
        return 0;
    vmm_error("--cpu: unknown feature '%s' (known: see calf run --help-cpu)",
              name);
    return -EINVAL;
}

int cpu_model_parse(const char *spec, struct cpu_model *m)
{
    char *copy = strdup(spec), *save = NULL, *item;
    int ret = 0, first = 1;

    if (!copy)
        return -ENOMEM;
    for (item = strtok_r(copy, ",", &save); item && !ret;
         item = strtok_r(NULL, ",", &save), first = 0) {
        if (first && !strcmp(item, "host"))
            continue;
        if (item[0] != '-') {
            vmm_error("--cpu: '%s': only 'host' and '-feature' items are "
                      "supported", item);
            ret = -EINVAL;
        } else {
            ret = cpu_model_hide(m, item + 1);
        }
    }
    free(copy);
    return ret;
}

void cpu_model_filter(const struct cpu_model *m, struct kvm_cpuid_entry2 *e)
{
    for (unsigned i = 0; i < m->nhidden; i++) {
        const struct cpu_feature *f = &features[m->hidden[i]];
        uint32_t *reg[] = { &e->eax, &e->ebx, &e->ecx, &e->edx };

        if (e->function == f->leaf && e->index == f->subleaf)
            *reg[f->reg] &= ~(1u << f->bit);
    }
}

/* ---- topology ---- */

static unsigned order_of(unsigned n) /* bits for IDs 0..n-1 */
{
    unsigned b = 0;

    while ((1u << b) < n)
        b++;
    return b;
}

/* Leaves 0xB/0x1F: level 0 is SMT (one thread per core), level 1 the
 * cores; the shift at each level takes an x2APIC ID to the next one up. */
static void topology_x2apic(struct kvm_cpuid_entry2 *e, int id, int n)
{
    uint32_t sub = e->index;

    e->edx = (uint32_t)id;
    switch (sub) {
    case 0:
        e->eax = 0;
        e->ebx = 1;
        e->ecx = sub | 1u << 8;
        break;
    case 1:
        e->eax = order_of((unsigned)n);
        e->ebx = (uint32_t)n;
        e->ecx = sub | 2u << 8;
        break;
    default:
        e->eax = e->ebx = 0;
        e->ecx = sub; /* level type 0: no more levels */
        break;
    }
}

/* Leaf 4 and 0x8000001D: EAX[25:14] is how many logical CPUs share the
 * cache, minus one (L1/L2: a core's own; L3: the package), and leaf 4's
 * EAX[31:26] the cores in the package, minus one. */
static void topology_cache(struct kvm_cpuid_entry2 *e, int n, bool leaf4)
{
    unsigned level = (e->eax >> 5) & 7;
    uint32_t sharing = level >= 3 ? (uint32_t)n - 1 : 0;

    if (!(e->eax & 0x1f))
        return; /* no cache at this index */
    e->eax = (e->eax & ~(0xfffu << 14)) | sharing << 14;
    if (leaf4)
        e->eax = (e->eax & 0x03ffffff) | ((uint32_t)n - 1) << 26;
}

void cpu_model_topology(struct kvm_cpuid_entry2 *e, int id, int n, bool amd)
{
    switch (e->function) {
    case 1:
        e->ebx = (e->ebx & 0x0000ffff) | (uint32_t)id << 24 |
                 (uint32_t)(n > 255 ? 255 : n) << 16;
        if (n > 1)
            e->edx |= 1u << 28; /* HTT: the count above is valid */
        else
            e->edx &= ~(1u << 28);
        break;
    case 4:
        topology_cache(e, n, true);
        break;
    case 0xb:
    case 0x1f:
        topology_x2apic(e, id, n);
        break;
    case 0x80000001:
        if (amd && n > 1)
            e->ecx |= 1u << 1; /* CmpLegacy: cores, not HTT siblings */
        else if (amd)
            e->ecx &= ~(1u << 1);
        break;
    case 0x80000008:
        if (amd) /* NC = cores - 1; ApicIdCoreIdSize */
            e->ecx = (e->ecx & ~0xf0ffu) | ((uint32_t)n - 1) |
                     order_of((unsigned)n) << 12;
        break;
    case 0x8000001d:
        if (amd)
            topology_cache(e, n, false);
        break;
    case 0x8000001e:
        if (amd) { /* extended APIC ID; core ID, 1 thread; node 0 */
            e->eax = (uint32_t)id;
            e->ebx = (uint32_t)id & 0xff;
            e->ecx = 0;
        }
        break;
    default:
        break;
    }
}

static bool cpuid_has(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return true;
    return false;
}

void cpu_model_add_topology_leaves(struct kvm_cpuid2 *c, uint32_t room)
{
    static const uint32_t leaves[] = { 0xb, 0x1f };

    for (unsigned l = 0; l < 2; l++) {
        if (!cpuid_has(c, leaves[l], 0))
            continue;
        for (uint32_t idx = 1; idx <= 2; idx++) {
            if (cpuid_has(c, leaves[l], idx) || c->nent >= room)
                continue;
            c->entries[c->nent++] = (struct kvm_cpuid_entry2){
                .function = leaves[l], .index = idx,
                .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            };
        }
    }
}

bool cpu_model_is_amd(const struct kvm_cpuid2 *cpuid)
{
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

        if (e->function == 0)
            return (e->ebx == 0x68747541 && e->edx == 0x69746e65 &&
                    e->ecx == 0x444d4163) || /* AuthenticAMD */
                   (e->ebx == 0x6f677948 && e->edx == 0x6e65476e &&
                    e->ecx == 0x656e6975);   /* HygonGenuine */
    }
    return false;
}

void cpu_model_list(void)
{
    for (unsigned i = 0; i < NFEATURES; i++) {
        unsigned j = 0;
        while (j < i && strcmp(features[j].name, features[i].name))
            j++;
        if (j == i) /* once per name */
            printf("%s%s", features[i].name, i + 1 < NFEATURES ? " " : "\n");
    }
}
