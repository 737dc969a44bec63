/* calf: the command line of `calf run`, the main event loop (console,
 * timeout, signals) and the end of a run (status, --report). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/devices.h"
#include "devices/disk.h"
#include "devices/net/net.h"
#include "devices/vga.h"
#include "devices/virtio/virtio.h"
#include "vmm/boot.h"
#include "vmm/firmware.h"
#include "vmm/machine.h"
#include "vmm/console.h"
#include "vmm/display.h"
#include "vmm/qmp.h"
#include "vmm/report.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

#define TICK_MS 10
#define HALT_PROBE_MS 100 /* how often to look for a dead guest */

struct run_opts {
    uint64_t mem;
    int cpus;
    struct boot_config boot;
    struct firmware_config fw;  /* used without --kernel */
    const char *expect;
    double timeout;
    const char *report;
    bool no_reboot;
    bool paused;           /* --paused: vCPUs wait for QMP cont */
    struct cpu_model cpu;
    const char *disks[MACHINE_MAX_DISKS]; /* --disk specs, vmm/machine.c */
    int ndisks;
    char *cdrom_specs[MACHINE_MAX_DISKS]; /* --cdrom as --disk specs, owned */
    int ncdroms;
    const char *display;   /* "none" or "sdl" */
    const char *vga;       /* "std", "none" or NULL: std with a display */
    const char *screenshot;
    const char *qmp[QMP_MAX_SOCKETS]; /* --qmp specs */
    int nqmp;
    const char *name;
    const char *rng;       /* --rng, NULL: on with --kernel (vmm/machine.c) */
    const char *nets[MACHINE_MAX_NETS]; /* --net specs, vmm/machine.c */
    int nnets;
    const char *savevm;    /* --savevm NAME: vmm/snapshot.c */
    const char *loadvm;
};

/* The window of a run with --display sdl. */
struct run_screen {
    struct display *win;
};

static uint64_t process_start_ns;
static struct qmp *run_qmp;  /* the monitor, NULL without --qmp */
static int signal_wake_fd = -1;
static volatile sig_atomic_t signal_seen;

__attribute__((constructor)) static void note_process_start(void)
{
    process_start_ns = vm_now_ns();
}

/* What calf run --help prints (a line too long for the source is split
 * into two literals) */
static const char usage_text[] =
    "usage: calf run [--kernel FILE | --disk FILE...] [options]\n"
    "  -k, --kernel FILE    bzImage or ELF vmlinux (64-bit entry)\n"
    "      --initrd FILE    initial ramdisk\n"
    "      --append TEXT    kernel command line\n"
    "  without --kernel the machine boots firmware (SeaBIOS), whose\n"
    "  screen is on the serial console (and the VGA, with one):\n"
    "      --firmware FILE  BIOS ROM (default " FIRMWARE_DEFAULT ")\n"
    "      --boot ORDER     c: disks, d: CD-ROMs, diskN: the N-th --disk\n"
    "                       (from 0), order=cd, menu=on|off; comma-separated\n"
    "      --bios-log FILE  the firmware's debug log (port 0x402)\n"
    "  -m, --memory SIZE    guest RAM, e.g. 256M, 2G (default 256M;\n"
    "                       a bare number is MiB)\n"
    "  -c, --cpus N         vCPUs (default 1)\n"
    "      --cpu host,-FEAT,...  hide CPUID features (--help-cpu lists)\n"
    "      --expect TEXT    exit 0 once the serial console shows TEXT\n"
    "      --timeout S      give up after S seconds (exit status 124)\n"
    "      --report FILE    write a JSON summary of the run to FILE\n"
    "      --no-reboot      a guest reset ends the run (default: restart)\n"
    "      --disk FILE[,format=raw|qcow2|qcow][,if=virtio|ide][,readonly]\n"
    "             [,snapshot][,cache=writeback|none|unsafe]"
    "[,discard=ignore|unmap]\n"
    "             [,serial=S][,index=0-3][,media=disk|cdrom][,disable-legacy]\n"
    "                       a virtio-blk disk, transitional (1af4:1001)"
    " unless\n"
    "                       disable-legacy (1af4:1042); with if=ide a"
    " drive on\n"
    "                       the PIIX3 IDE controller (primary master"
    " first, or\n"
    "                       index=N; media=cdrom: ATAPI) (repeatable)\n"
    "      --cdrom FILE     an ATAPI CD-ROM with image FILE (read-only;\n"
    "                       secondary master first)\n"
    "      --display none|sdl  none (the default): the serial console only;\n"
    "                       sdl: a window with the VGA screen and keyboard\n"
    "      --vga std|none   the std VGA (Bochs VBE, PCI 1234:1111);"
    " by default\n"
    "                       there is one with --display sdl or --screenshot\n"
    "      --screenshot FILE.png  write the screen as PNG when the run ends\n"
    "      --qmp unix:PATH,server=on[,wait=off] | tcp:HOST:PORT,server=on"
    "[,wait=off]\n"
    "                       a QMP monitor socket, as QEMU's -qmp (HOST on"
    " loopback;\n"
    "                       wait=on, the default, waits for a client)"
    " (repeatable)\n"
    "      --name NAME      the VM's name (QMP query-name)\n"
    "      --paused         start with the vCPUs stopped, as QEMU's -S:\n"
    "                       QMP cont starts them (needs --qmp)\n"
    "      --rng on|off[,max-bytes=N][,period=MS][,disable-legacy]\n"
    "                       virtio-rng (1af4:1005) fed by getrandom(), at\n"
    "                       most N bytes per MS milliseconds; on by default\n"
    "                       with --kernel, off under firmware\n"
    "      --net user[,hostfwd=[tcp|udp]:[HADDR]:HPORT-[GADDR]:GPORT]\n"
    "             [,restrict=on|off][,mac=M][,disable-legacy]\n"
    "      --net tap[,ifname=NAME][,mac=M][,disable-legacy]\n"
    "                       a virtio-net function (1af4:1000) on user-mode\n"
    "                       networking (libslirp: 10.0.2.0/24, DHCP gives\n"
    "                       10.0.2.15, host 10.0.2.2, DNS 10.0.2.3;\n"
    "                       restrict=off by default as QEMU's; hostfwd\n"
    "                       binds 127.0.0.1 by default) or a host tap; MAC\n"
    "                       52:54:00:12:34:56 + n by default (repeatable)\n"
    "      --savevm NAME    once --expect TEXT shows, save the VM as internal\n"
    "                       snapshot NAME of its writable qcow2 disks; end\n"
    "      --loadvm NAME    start from snapshot NAME instead of booting\n"
    "exit status: 0 ok/expect seen, (v<<1)|1 guest wrote v to port 0x501,\n"
    "  2 setup error, 4 guest error, 6 guest ended without the expected\n"
    "  text, 124 timeout, 128+n signal n\n"
    "console: the serial port; Ctrl-A x quits, Ctrl-A b sends a BREAK (on\n"
    "  a terminal, or with CALF_CONSOLE_ESCAPES=1; other input\n"
    "  from a pipe or file goes to the guest as it is)\n";

static void usage(FILE *f)
{
    fputs(usage_text, f);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': case '\0': v <<= 20; end += !!*end; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: return -EINVAL;
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct run_opts *o)
{
    static const struct option longopts[] = {
        { "kernel", required_argument, NULL, 'k' },
        { "initrd", required_argument, NULL, 'i' },
        { "append", required_argument, NULL, 'a' },
        { "memory", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'c' },
        { "expect", required_argument, NULL, 'e' },
        { "timeout", required_argument, NULL, 't' },
        { "report", required_argument, NULL, 'r' },
        { "no-reboot", no_argument, NULL, 'n' },
        { "cpu", required_argument, NULL, 'C' },
        { "disk", required_argument, NULL, 'D' },
        { "cdrom", required_argument, NULL, 'R' },
        { "help-cpu", no_argument, NULL, 'H' },
        { "display", required_argument, NULL, 'd' },
        { "vga", required_argument, NULL, 'V' },
        { "screenshot", required_argument, NULL, 'S' },
        { "firmware", required_argument, NULL, 'F' },
        { "boot", required_argument, NULL, 'B' },
        { "bios-log", required_argument, NULL, 'L' },
        { "qmp", required_argument, NULL, 'Q' },
        { "name", required_argument, NULL, 'N' },
        { "rng", required_argument, NULL, 'G' },
        { "net", required_argument, NULL, 0x101 },
        { "paused", no_argument, NULL, 0x102 },
        { "savevm", required_argument, NULL, 'W' },
        { "loadvm", required_argument, NULL, 'O' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char *end;
    int c;

    while ((c = getopt_long(argc, argv, "k:m:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k': o->boot.kernel = optarg; break;
        case 'i': o->boot.initrd = optarg; break;
        case 'a': o->boot.cmdline = optarg; break;
        case 'e': o->expect = optarg; break;
        case 'r': o->report = optarg; break;
        case 'n': o->no_reboot = true; break;
        case 'd': o->display = optarg; break;
        case 'V': o->vga = optarg; break;
        case 'S': o->screenshot = optarg; break;
        case 'F': o->fw.rom = optarg; break;
        case 'B':
            if (firmware_check_boot_spec(optarg))
                return -EINVAL;
            o->fw.boot = optarg;
            break;
        case 'L': o->fw.bios_log = optarg; break;
        case 'N': o->name = optarg; break;
        case 'Q':
            if (o->nqmp == QMP_MAX_SOCKETS) {
                vmm_error("too many --qmp (at most %d)", QMP_MAX_SOCKETS);
                return -EINVAL;
            }
            if (qmp_check_spec(optarg))
                return -EINVAL;
            o->qmp[o->nqmp++] = optarg;
            break;
        case 'W': o->savevm = optarg; break;
        case 'O': o->loadvm = optarg; break;
        case 'D':
            if (o->ndisks == MACHINE_MAX_DISKS) {
                vmm_error("too many --disk (at most %d)", MACHINE_MAX_DISKS);
                return -EINVAL;
            }
            o->disks[o->ndisks++] = optarg;
            break;
        case 'R':
            if (o->ndisks == MACHINE_MAX_DISKS) {
                vmm_error("too many --disk/--cdrom (at most %d)",
                          MACHINE_MAX_DISKS);
                return -EINVAL;
            }
            o->cdrom_specs[o->ncdroms] = disk_cdrom_spec(optarg);
            if (!o->cdrom_specs[o->ncdroms])
                return -ENOMEM;
            o->disks[o->ndisks++] = o->cdrom_specs[o->ncdroms++];
            break;
        case 'h': usage(stdout); exit(0);
        case 'G': {
            struct rng_opts ro;

            if (virtio_rng_parse(optarg, &ro))
                return -1;
            o->rng = optarg;
            break;
        }
        case 0x101: { /* --net */
            struct net_opts no;

            if (o->nnets == MACHINE_MAX_NETS) {
                vmm_error("too many --net (at most %d)", MACHINE_MAX_NETS);
                return -1;
            }
            if (net_parse(optarg, (unsigned)o->nnets, &no))
                return -1;
            o->nets[o->nnets++] = optarg;
            break;
        }
        case 0x102: o->paused = true; break;
        case 'H': cpu_model_list(); exit(0);
        case 'C':
            if (cpu_model_parse(optarg, &o->cpu))
                return -EINVAL;
            break;
        case 'm':
            if (parse_size(optarg, &o->mem) || o->mem < (4 << 20) ||
                o->mem % 4096) {
                vmm_error("bad --memory '%s' (at least 4M, a page multiple)",
                          optarg);
                return -EINVAL;
            }
            break;
        case 'c':
            o->cpus = (int)strtol(optarg, &end, 10);
            if (*end || o->cpus < 1 || o->cpus > VM_MAX_CPUS) {
                vmm_error("bad --cpus '%s' (1 to %d)", optarg, VM_MAX_CPUS);
                return -EINVAL;
            }
            break;
        case 't':
            o->timeout = strtod(optarg, &end);
            if (*end || !(o->timeout > 0)) {
                vmm_error("bad --timeout '%s' (seconds, > 0)", optarg);
                return -EINVAL;
            }
            break;
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (strcmp(o->display, "none") && strcmp(o->display, "sdl")) {
        vmm_error("bad --display '%s' (none or sdl)", o->display);
        return -EINVAL;
    }
    if (o->vga && strcmp(o->vga, "std") && strcmp(o->vga, "none")) {
        vmm_error("bad --vga '%s' (std or none)", o->vga);
        return -EINVAL;
    }
    if (o->vga && !strcmp(o->vga, "none") &&
        (!strcmp(o->display, "sdl") || o->screenshot)) {
        vmm_error("--vga none leaves nothing to %s",
                  o->screenshot ? "take a screenshot of" : "display");
        return -EINVAL;
    }
    if (optind != argc) {
        vmm_error("unexpected argument '%s'", argv[optind]);
        usage(stderr);
        return -EINVAL;
    }
    if (o->savevm && !(o->expect && *o->expect)) {
        vmm_error("--savevm needs --expect TEXT: the VM is saved when TEXT "
                  "shows");
        return -EINVAL;
    }
    if (o->paused && !o->nqmp) {
        vmm_error("--paused needs --qmp: only QMP cont starts the vCPUs");
        return -EINVAL;
    }
    if (o->boot.kernel && (o->fw.rom || o->fw.boot || o->fw.bios_log)) {
        vmm_error("--firmware, --boot and --bios-log need a firmware boot "
                  "(no --kernel)");
        return -EINVAL;
    }
    return 0;
}

static void on_expect(void *opaque)
{
    vm_request_stop(opaque, BUS_STOP_EXPECT, CALF_EXIT_OK);
}

static void on_signal(int sig)
{
    uint64_t one = 1;
    ssize_t n;

    signal_seen = sig;
    n = write(signal_wake_fd, &one, sizeof(one));
    (void)n;
}

static void install_signals(struct vm *vm)
{
    struct sigaction sa;

    signal_wake_fd = vm->wake_fd;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* vCPU threads must not take the termination signals: those belong to
 * the main loop.  They inherit this mask. */
static int start_vcpus(struct vm *vm)
{
    sigset_t block, old;
    int ret = 0;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; !ret && i < vm->ncpus; i++)
        ret = vcpu_start(&vm->vcpus[i]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret)
        vmm_error("cannot start vCPU thread: %s", strerror(-ret));
    return ret;
}

static void stop_vcpus(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_kick(&vm->vcpus[i]);
    vm_pause_wake(vm); /* parked (stopped) vCPUs leave too */
    for (int i = 0; i < vm->ncpus; i++) {
        if (vm->vcpus[i].started)
            pthread_join(vm->vcpus[i].thread, NULL);
        vm->vcpus[i].started = false;
    }
}

/* A guest reset: same process, disks and console; the machine starts
 * over from its power-on state.  --timeout still bounds a reset loop.
 * guest: the guest asked (QMP's RESET event says who). */
static void restart_vm(struct vm *vm, bool guest)
{
    stop_vcpus(vm);
    vm_coalesced_drain(vm);
    console_flush(vm->console);
    if (vm_reset(vm)) {
        vm_request_stop(vm, BUS_STOP_ERROR, CALF_EXIT_SETUP);
        return;
    }
    vm->resets++;
    atomic_store(&vm->reset_pending, false);
    /* the devices a failed loadvm left frozen are reset: they may run */
    if (atomic_exchange(&vm->needs_reset, false))
        bus_state_resume(vm->bus);
    qmp_event_reset(run_qmp, guest);
    if (start_vcpus(vm))
        vm_request_stop(vm, BUS_STOP_ERROR, CALF_EXIT_SETUP);
}

/* QMP system_reset (struct qmp_host): a reset now, from the main loop */
static void qmp_host_reset(struct vm *vm)
{
    vm_request_stop(vm, BUS_STOP_RESET, CALF_EXIT_OK);
    if (atomic_load(&vm->reset_pending) && !atomic_load(&vm->stopping))
        restart_vm(vm, false);
}

static const struct qmp_host qmp_host = { .reset = qmp_host_reset };

/* Console input waiting for room in the UART's receive FIFO: stdin is
 * read again only once all of it went in, so a pipe never loses bytes. */
struct input_pending {
    uint8_t buf[64];
    size_t off, len;
    bool brk; /* a BREAK goes to the UART once buf went in (Ctrl-A b) */
    int wait_ms; /* 1 ms while the guest drains the FIFO, backing off to
                    TICK_MS while it does not read */
};

static void handle_input(struct vm *vm, int *in_fd, struct input_pending *in,
                         bool readable)
{
    bool quit = false, brk = false;

    if (in->off == in->len && !in->brk &&
        (readable || console_input_more(vm->console))) {
        long n = console_input_read(vm->console, in->buf, sizeof(in->buf),
                                    &quit, &brk);

        in->off = 0;
        in->len = n > 0 ? (size_t)n : 0;
        in->brk = brk;
        if (n < 0)
            *in_fd = -1; /* end of input: the guest keeps running */
    }
    if (in->off < in->len) {
        size_t took = serial_receive(vm->serial, in->buf + in->off,
                                     in->len - in->off);

        in->off += took;
        in->wait_ms = took ? 1 : in->wait_ms * 2 > TICK_MS ? TICK_MS
                                                            : in->wait_ms * 2;
    }
    if (in->off == in->len && in->brk) {
        bool sent = serial_break(vm->serial);

        in->brk = !sent;
        in->wait_ms = sent ? 1 : in->wait_ms * 2 > TICK_MS ? TICK_MS
                                                           : in->wait_ms * 2;
    }
    if (quit)
        vm_request_stop(vm, BUS_STOP_QUIT, CALF_EXIT_OK);
}

/* QEMU gives every PC a VGA; here it comes with a use for it, so that
 * a serial-only run stays as small as before (--vga std forces one). */
static bool want_vga(const struct run_opts *o)
{
    if (o->vga)
        return !strcmp(o->vga, "std");
    return !strcmp(o->display, "sdl") || o->screenshot;
}

static int open_display(struct vm *vm, const struct run_opts *o,
                        struct run_screen *scr)
{
    int ret;

    if (!vm->vga || strcmp(o->display, "sdl"))
        return 0;
    ret = display_sdl_open(vm->vga, vm->kbd, &scr->win);
    if (ret == -ENOTSUP)
        vmm_error("--display sdl: this calf was built without SDL2 "
                  "(install libsdl2-dev and rebuild)");
    return ret;
}

static void main_loop(struct vm *vm, const struct run_opts *o, int in_fd,
                      struct run_screen *scr)
{
    uint64_t deadline = o->timeout > 0
        ? process_start_ns + (uint64_t)(o->timeout * 1e9) : 0;
    struct input_pending in = { .off = 0, .len = 0, .wait_ms = 1 };
    uint64_t next_probe = vm_now_ns() + HALT_PROBE_MS * 1000000ULL;

    while (!atomic_load(&vm->stopping)) {
        /* poll the FIFO, not stdin */
        bool waiting = in.off < in.len || in.brk ||
                       console_input_more(vm->console);
        struct pollfd pfd[2 + 2 * QMP_MAX_SOCKETS] = {
            { .fd = vm->wake_fd, .events = POLLIN },
            { .fd = waiting ? -1 : in_fd, .events = POLLIN },
        };
        int nqmp = qmp_pollfds(run_qmp, pfd + 2);
        uint64_t drain, now;

        if (poll(pfd, (nfds_t)(2 + nqmp), waiting ? in.wait_ms : TICK_MS) > 0 &&
            pfd[0].revents && read(vm->wake_fd, &drain, sizeof(drain)) < 0)
            drain = 0;
        if (in_fd >= 0 || waiting)
            handle_input(vm, &in_fd, &in, in_fd >= 0 && pfd[1].revents);
        qmp_dispatch(run_qmp, pfd + 2, nqmp);
        if (signal_seen)
            vm_request_stop(vm, BUS_STOP_SIGNAL, 128 + signal_seen);
        now = vm_now_ns();
        if (deadline && now >= deadline) {
            vmm_error("timeout: guest still running after %g s", o->timeout);
            vm_request_stop(vm, BUS_STOP_TIMEOUT, CALF_EXIT_TIMEOUT);
        }
        if (atomic_load(&vm->reset_pending) && !atomic_load(&vm->stopping))
            restart_vm(vm, true);
        if (now >= next_probe) {
            next_probe = now + HALT_PROBE_MS * 1000000ULL;
            if (vm_all_dead(vm))
                vm_request_stop(vm, BUS_STOP_HALT, CALF_EXIT_OK);
        }
        vm_coalesced_drain(vm);
        console_flush(vm->console);
        if (scr->win && !display_tick(scr->win))
            vm_request_stop(vm, BUS_STOP_QUIT, CALF_EXIT_OK);
    }
}

static int final_status(struct vm *vm, const struct run_opts *o)
{
    switch (vm->stop_reason) {
    case BUS_STOP_RESET:
    case BUS_STOP_TRIPLE_FAULT:
    case BUS_STOP_HALT:
    case BUS_STOP_POWEROFF:
        if (o->expect && *o->expect) {
            vmm_error("guest ended (%s) without printing '%s'",
                      vm_stop_reason_name(vm->stop_reason), o->expect);
            return CALF_EXIT_NO_EXPECT;
        }
        return CALF_EXIT_OK;
    default:
        return vm->stop_status;
    }
}

static int run_vm(struct vm *vm, const struct run_opts *o,
                  struct run_screen *scr)
{
    struct machine_config mc = {
        .disks = o->disks, .ndisks = o->ndisks, .vga = want_vga(o),
    };
    int status, in_fd;

    vm->bus = bus_create(&kvm_host_ops, vm);
    vm->console = console_create(STDOUT_FILENO, o->expect, on_expect, vm);
    /* The firmware's ROM first, then the machine (vmm/machine.c), then
     * what the firmware learns about it through fw_cfg.  A kernel boot
     * has fw_cfg too, as on QEMU's machines, with only its signature and
     * ID items (a guest may probe it; nothing depends on it). */
    if (!vm->bus || !vm->console ||
        (!o->boot.kernel && firmware_setup(vm, &o->fw)))
        return CALF_EXIT_SETUP;
    mc.firmware = !o->boot.kernel;
    mc.rng = o->rng;
    mc.nets = o->nets;
    mc.nnets = o->nnets;
    mc.bios_log = firmware_log(vm);
    if (machine_create(vm, &mc) ||
        (!o->boot.kernel && firmware_finish(vm)) ||
        open_display(vm, o, scr) ||
        (o->loadvm ? snapshot_load(vm, o->loadvm) : vm->load(vm, vm->load_cfg)))
        return CALF_EXIT_SETUP;
    if (o->nqmp) {
        run_qmp = qmp_open(vm, &qmp_host, o->qmp, o->nqmp, o->name);
        if (!run_qmp)
            return CALF_EXIT_SETUP;
    }
    install_signals(vm);
    /* Raw mode before the guest runs: nothing typed early is flushed. */
    in_fd = console_input_start(vm->console, STDIN_FILENO) ? -1 : STDIN_FILENO;
    if (o->paused) { /* each vCPU parks before its first instruction */
        atomic_store(&vm->prelaunch, true);
        atomic_store(&vm->paused, true);
    }
    if (start_vcpus(vm))
        vm_request_stop(vm, BUS_STOP_ERROR, CALF_EXIT_SETUP);
    main_loop(vm, o, in_fd, scr);
    stop_vcpus(vm);
    qmp_end_jobs(run_qmp); /* before --savevm writes the disks */
    vm_coalesced_drain(vm);
    console_flush(vm->console);
    if (vm->stop_reason == BUS_STOP_TIMEOUT)
        for (int i = 0; i < vm->ncpus; i++)
            vmm_error("vCPU %d was at RIP 0x%llx", i,
                      (unsigned long long)vm->vcpus[i].last_rip);
    status = final_status(vm, o);
    if (o->savevm && vm->stop_reason == BUS_STOP_EXPECT &&
        snapshot_save(vm, o->savevm))
        status = CALF_EXIT_SETUP;
    qmp_event_shutdown(run_qmp, vm->stop_reason);
    qmp_close(run_qmp);
    run_qmp = NULL;
    if (o->screenshot && vm->vga && screenshot_write(vm->vga, o->screenshot))
        status = status ? status : CALF_EXIT_SETUP;
    if (o->report && report_write(o->report, vm, status, process_start_ns))
        status = status ? status : CALF_EXIT_SETUP;
    return status;
}

/* The boot method (vm_load_fn): direct Linux boot. */
static int load_linux(struct vm *vm, const void *cfg)
{
    return boot_linux(vm, cfg);
}

static int cmd_run(int argc, char **argv)
{
    struct run_opts o = { .mem = 256ULL << 20, .cpus = 1, .display = "none" };
    struct run_screen scr = { 0 };
    struct vm vm;
    int status;

    if (parse_opts(argc, argv, &o))
        return CALF_EXIT_SETUP;
    memset(&vm, 0, sizeof(vm));
    vm.cpu_model = o.cpu;
    vm.no_reboot = o.no_reboot;
    vm.load = o.boot.kernel ? load_linux : firmware_load;
    vm.load_cfg = &o.boot;
    if (vm_create(&vm, o.mem, o.cpus))
        status = CALF_EXIT_SETUP;
    else
        status = run_vm(&vm, &o, &scr);
    if (scr.win)
        display_close(scr.win);
    bus_shutdown(vm.bus); /* device threads (the RTC's timer) stop first */
    machine_destroy(&vm); /* I/O threads stop before guest RAM goes */
    firmware_destroy(&vm);
    console_destroy(vm.console);
    bus_destroy(vm.bus);
    for (int i = 0; i < o.ncdroms; i++)
        free(o.cdrom_specs[i]);
    /* the kernel's part happens after calf's exit */
    vm_teardown_detached(&vm);
    vm_destroy(&vm);
    return status;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return cmd_run(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr,
            "usage: calf run [--kernel FILE] [options] (calf run --help)\n");
    return CALF_EXIT_SETUP;
}
