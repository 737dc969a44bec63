/* The monitor's savevm, loadvm and delvm (QEMU's HMP commands, reached
 * through QMP's human-monitor-command; vmm/qmp.c): the running VM is
 * paused (vm_pause(): every vCPU parked outside KVM_RUN), saved into or
 * restored from its qcow2 disks by vmm/snapshot.c, and resumed if it
 * was running (delvm too: it may copy guest RAM off the image).  As
 * QEMU: success prints nothing, a failure prints "Error: " and why, a
 * failed loadvm leaves the VM paused (and, if it got as far as changing
 * the machine, its devices frozen and cont refused until system_reset
 * or a loadvm that works), and savevm without a name names the snapshot
 * after the time, vm-YYYYMMDDhhmmss. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "devices/bus.h"
#include "vmm/hmp.h"
#include "vmm/snapshot.h"

static void error_line(struct qjson_buf *b, const char *what)
{
    qjson_buf_add(b, "Error: ", 7);
    qjson_buf_add(b, what, strlen(what));
    qjson_buf_add(b, "\r\n", 2);
}

bool hmp_snapshot(struct vm *vm, const char *line, struct qjson_buf *b)
{
    size_t n = strcspn(line, " ");
    const char *arg = line + n + strspn(line + n, " ");
    char name[128];
    bool running = !atomic_load(&vm->paused);
    int ret;

    if (!(n == 6 && !strncmp(line, "savevm", 6)) &&
        !(n == 6 && !strncmp(line, "loadvm", 6)) &&
        !(n == 5 && !strncmp(line, "delvm", 5)))
        return false;
    snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg, " "), arg);
    if (!name[0] && line[0] != 's') {
        error_line(b, "Parameter 'name' is missing");
        return true;
    }
    if (!name[0]) {
        time_t t = time(NULL);
        struct tm tm;

        localtime_r(&t, &tm);
        strftime(name, sizeof(name), "vm-%Y%m%d%H%M%S", &tm);
    }
    /* delvm too: a restore may have mapped guest RAM from the image, and
     * the delete copies it off first - a vCPU write meanwhile would be
     * lost.  The pause lasts the delete (QEMU's holds its big lock). */
    if (running)
        vm_pause(vm);
    if (line[0] == 'd') {
        if (snapshot_delete(vm, name)) /* keeps frozen devices frozen */
            error_line(b, snapshot_error());
        if (running)
            vm_resume(vm);
        return true;
    }
    if (line[0] == 's' && atomic_load(&vm->needs_reset)) {
        /* a half-restored machine is nothing to save */
        error_line(b, "Resetting the Virtual Machine is required");
        return true;
    }
    if (line[0] == 's') {
        ret = snapshot_save(vm, name);
    } else {
        /* no device thread writes RAM while it is replaced; a load
         * that worked resumes them itself.  One that failed after it
         * changed the machine (or after an earlier one did) leaves them
         * frozen: their restored rings would meet disks not reverted.
         * QEMU 7.2 lets cont run such a machine; calf refuses cont (as
         * QEMU does where a reset is needed) until system_reset or a
         * loadvm that works. */
        snapshot_quiesce(vm);
        ret = snapshot_load(vm, name);
        if (!ret)
            atomic_store(&vm->needs_reset, false);
        else if (snapshot_load_changed() || atomic_load(&vm->needs_reset))
            atomic_store(&vm->needs_reset, true);
        else
            bus_state_resume(vm->bus);
    }
    if (ret)
        error_line(b, snapshot_error()[0] ? snapshot_error()
                                           : "the VM could not be saved");
    /* a failed loadvm leaves the machine half restored: paused */
    if (running && (!ret || line[0] == 's'))
        vm_resume(vm);
    return true;
}
