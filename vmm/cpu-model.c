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
};
#define NFEATURES (sizeof(features) / sizeof(features[0]))

static int cpu_model_hide(struct cpu_model *m, const char *name)
{
    for (unsigned i = 0; i < NFEATURES; i++) {
        if (strcmp(features[i].name, name))
            continue;
        if (m->nhidden == CPU_MODEL_MAX_HIDDEN) {
            vmm_error("--cpu: more than %d hidden features",
                      CPU_MODEL_MAX_HIDDEN);
            return -EINVAL;
        }
        m->hidden[m->nhidden++] = i;
        return 0;
    }
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

void cpu_model_list(void)
{
    for (unsigned i = 0; i < NFEATURES; i++)
        printf("%s%s", features[i].name, i + 1 < NFEATURES ? " " : "\n");
}
