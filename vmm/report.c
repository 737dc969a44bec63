#include "vmm/report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/console.h"
#include "vmm/vm.h"

static double ms_since(uint64_t start, uint64_t t)
{
    return t > start ? (double)(t - start) / 1e6 : 0.0;
}

static void report_exits(FILE *f, struct vm *vm)
{
    uint64_t sum[VM_EXIT_KINDS] = { 0 }, total = 0;

    for (int i = 0; i < vm->ncpus; i++)
        for (int k = 0; k < VM_EXIT_KINDS; k++)
            sum[k] += atomic_load(&vm->vcpus[i].exits[k]);
    for (int k = 0; k < VM_EXIT_KINDS; k++)
        if (k != VM_EXIT_IO_UNHANDLED)
            total += sum[k];
    fprintf(f, "  \"vm_exits\": {\"total\": %llu", (unsigned long long)total);
    for (int k = 0; k < VM_EXIT_KINDS; k++)
        fprintf(f, ", \"%s\": %llu", vm_exit_kind_name(k),
                (unsigned long long)sum[k]);
    fputs("}\n", f);
}

/* Pages of [mem, mem+size) resident now, or 0 where mincore cannot say. */
static uint64_t report_resident_pages(void *mem, uint64_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t n = (size + page - 1) / page, count = 0;
    unsigned char *vec;

    if (!mem || !n || !(vec = malloc(n)))
        return 0;
    if (!mincore(mem, size, vec))
        for (uint64_t i = 0; i < n; i++)
            count += vec[i] & 1;
    free(vec);
    return count;
}

/* The VMM's own resident memory: the process's RSS less the pages of
 * guest memory (RAM, framebuffer, ROM) that are resident, in KiB; -1
 * when /proc cannot tell.  Issue 3 holds it to 8 MiB. */
static long long report_vmm_rss_kib(struct vm *vm)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long vsize, resident;
    uint64_t guest;
    FILE *f = fopen("/proc/self/statm", "r");
    int n;

    if (!f)
        return -1;
    n = fscanf(f, "%llu %llu", &vsize, &resident);
    fclose(f);
    if (n != 2)
        return -1;
    guest = report_resident_pages(vm->ram, vm->ram_size);
    for (int s = VM_FIRST_EXTRA_SLOT; s < VM_MAX_SLOTS; s++)
        if (vm->slot_used[s])
            guest += report_resident_pages(vm->slot_mem[s], vm->slot_size[s]);
    if (guest > resident)
        guest = resident;
    return (long long)((resident - guest) * (uint64_t)page / 1024);
}

int report_write(const char *path, struct vm *vm, int status,
                 uint64_t process_start_ns)
{
    FILE *f = fopen(path, "w");
    uint64_t now = vm_now_ns(), first = atomic_load(&vm->t_first_run_ns);

    if (!f) {
        int err = errno;

        vmm_error("cannot write report '%s': %s", path, strerror(err));
        return -err;
    }
    fprintf(f, "{\n  \"exit_reason\": \"%s\",\n  \"status\": %d,\n",
            vm_stop_reason_name(vm->stop_reason), status);
    if (first)
        fprintf(f, "  \"wall_ms_to_first_instruction\": %.3f,\n",
                ms_since(process_start_ns, first));
    else
        fputs("  \"wall_ms_to_first_instruction\": null,\n", f);
    fprintf(f, "  \"wall_ms_total\": %.3f,\n", ms_since(process_start_ns, now));
    fprintf(f, "  \"resets\": %u,\n", vm->resets);
    fprintf(f, "  \"vmm_rss_kib\": %lld,\n", report_vmm_rss_kib(vm));
    fprintf(f, "  \"cpus\": %d,\n  \"memory_mib\": %llu,\n", vm->ncpus,
            (unsigned long long)(vm->ram_size >> 20));
    fprintf(f, "  \"console_bytes\": %llu,\n  \"console_host_writes\": %llu,\n",
            (unsigned long long)console_bytes(vm->console),
            (unsigned long long)console_host_writes(vm->console));
    fputs("  \"rip_at_exit\": [", f);
    for (int i = 0; i < vm->ncpus; i++)
        fprintf(f, "%s\"0x%llx\"", i ? ", " : "",
                (unsigned long long)vm->vcpus[i].last_rip);
    fputs("],\n", f);
    report_exits(f, vm);
    fputs("}\n", f);
    if (fclose(f)) {
        int err = errno;

        vmm_error("cannot write report '%s': %s", path, strerror(err));
        return -err;
    }
    return 0;
}
