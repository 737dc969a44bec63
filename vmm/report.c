#include "vmm/report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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
