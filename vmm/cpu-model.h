/* The guest's CPU model: KVM_GET_SUPPORTED_CPUID, minus what --cpu hides.
 * Spec: "host" optionally followed by ",-feature" items, e.g.
 * "host,-avx2,-xsave" (QEMU's spelling; the leading "host" may be left
 * out). */
#ifndef CALF_VMM_CPU_MODEL_H
#define CALF_VMM_CPU_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#define CPU_MODEL_MAX_HIDDEN 32

struct cpu_model {
    unsigned nhidden;
    unsigned hidden[CPU_MODEL_MAX_HIDDEN]; /* indexes into the name table */
};

/* Returns 0, or -EINVAL after printing which item is wrong. */
int cpu_model_parse(const char *spec, struct cpu_model *m);
void cpu_model_filter(const struct cpu_model *m, struct kvm_cpuid_entry2 *e);
/* CPU topology, as QEMU 7.2 lays out `-smp N` (machine types since 6.2
 * prefer cores over sockets): one package of n cores, one thread each,
 * APIC IDs 0..n-1 (the MP table and MADT list the same).  Fills the
 * leaves that describe it for the vCPU with APIC ID id: 1 (EBX APIC ID
 * and count), 4 and AMD's 0x8000001D (cores per package, cache sharing),
 * 0xB and 0x1F (x2APIC levels), AMD's 0x80000008 ECX, 0x8000001E, and
 * the CmpLegacy bit of 0x80000001.  amd: the vendor is AMD or Hygon. */
void cpu_model_topology(struct kvm_cpuid_entry2 *e, int id, int n, bool amd);
/* KVM may list only subleaf 0 of leaves 0xB/0x1F; the topology needs
 * levels 0 and 1 and an invalid level 2 to end the walk.  Appends the
 * missing subleaves; c has room for room entries in all.  Returns how
 * many are needed (at most CPU_MODEL_TOPOLOGY_EXTRA). */
#define CPU_MODEL_TOPOLOGY_EXTRA 4
void cpu_model_add_topology_leaves(struct kvm_cpuid2 *c, uint32_t room);
/* From leaf 0 of a CPUID table: AuthenticAMD or HygonGenuine. */
bool cpu_model_is_amd(const struct kvm_cpuid2 *cpuid);

/* Prints the feature names --cpu knows, on one line. */
void cpu_model_list(void);

#endif
