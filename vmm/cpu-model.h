/* The guest's CPU model: KVM_GET_SUPPORTED_CPUID, minus what --cpu hides.
 * Spec: "host" optionally followed by ",-feature" items, e.g.
 * "host,-avx2,-xsave" (QEMU's spelling; the leading "host" may be left
 * out). */
#ifndef CALF_VMM_CPU_MODEL_H
#define CALF_VMM_CPU_MODEL_H

#include <linux/kvm.h>

#define CPU_MODEL_MAX_HIDDEN 32

struct cpu_model {
    unsigned nhidden;
    unsigned hidden[CPU_MODEL_MAX_HIDDEN]; /* indexes into the name table */
};

/* Returns 0, or -EINVAL after printing which item is wrong. */
int cpu_model_parse(const char *spec, struct cpu_model *m);
void cpu_model_filter(const struct cpu_model *m, struct kvm_cpuid_entry2 *e);
/* Prints the feature names --cpu knows, on one line. */
void cpu_model_list(void);

#endif
