/* Save a running VM into its qcow2 disks and restore it (docs/VMSTATE.md).
 *
 * Saving: every vCPU finishes the port or MMIO access it exited for, then
 * the state goes into one buffer of sections (the machine's shape, each
 * vCPU, every device through its bus_state_ops, the in-kernel irqchips,
 * PIT and clock) behind a header, written at the start of the first
 * writable qcow2 disk's VM state area; guest RAM follows at a 2 MiB
 * aligned offset, laid out as one contiguous run of the image file
 * (blk_vmstate_reserve).  Then every writable qcow2 disk gets the
 * internal snapshot, the first with vm_state_size set, as QEMU's savevm.
 *
 * Restoring: the machine is built from the same options, every writable
 * qcow2 disk reverts to the snapshot, the header and sections are read
 * and checked (they are untrusted: devices/vmstate.c parses them), and
 * guest RAM is mapped copy-on-write from the image file when it is one
 * plain run there, so pages the guest never touches are never read. */
#include "vmm/snapshot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/block.h"
#include "devices/disk.h"
#include "devices/vmstate.h"
#include "vmm/vcpu-util.h"

/* Every message also goes to last_error, for the monitor's savevm,
 * loadvm and delvm (vmm/hmp-snapshot.c), which answer with it. */
static char last_error[512];

static void __attribute__((format(printf, 1, 2)))
snap_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    fprintf(stderr, "calf: %s\n", last_error);
}
#define vmm_error snap_error

const char *snapshot_error(void)
{
    return last_error;
}

/* Guest RAM is mapped copy-on-write from an image file (a restore):
 * its pages the guest has not written are still the file's clusters. */
static bool ram_mapped;

#define SNAP_MAX_DISKS 32
#define RAM_CHUNK (64u << 20)

#define T_REGS VMS_TAG('R', 'E', 'G', 'S')
#define T_SREGS VMS_TAG('S', 'R', 'E', 'G')
#define T_FPU VMS_TAG('F', 'P', 'U', ' ')
#define T_XSAVE VMS_TAG('X', 'S', 'A', 'V')
#define T_XCRS VMS_TAG('X', 'C', 'R', 'S')
#define T_MSRS VMS_TAG('M', 'S', 'R', 'S')
#define T_LAPIC VMS_TAG('L', 'A', 'P', 'I')
#define T_EVENTS VMS_TAG('E', 'V', 'N', 'T')
#define T_MP VMS_TAG('M', 'P', 'S', 'T')
#define T_DEBUG VMS_TAG('D', 'B', 'G', 'R')
#define T_CHIP VMS_TAG('C', 'H', 'I', 'P')
#define T_PIT VMS_TAG('P', 'I', 'T', '2')
#define T_CLOCK VMS_TAG('C', 'L', 'O', 'K')
#define MAX_MSRS 4096

/* ---- the build ---- */

static int note_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    char *out = data;

    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        size_t off = 0;

        if (ph->p_type != PT_NOTE)
            continue;
        while (off + sizeof(ElfW(Nhdr)) <= ph->p_memsz) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)(p + off);
            size_t name = (n->n_namesz + 3) & ~3u;
            size_t desc = (n->n_descsz + 3) & ~3u;
            const uint8_t *d = p + off + sizeof(*n) + name;

            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
                !memcmp(p + off + sizeof(*n), "GNU", 4)) {
                for (unsigned k = 0; k < n->n_descsz && 2 * k + 2 <=
                                         VMS_BUILD_ID_MAX; k++)
                    snprintf(out + 2 * k, 3, "%02x", d[k]);
                return 1;
            }
            off += sizeof(*n) + name + desc;
        }
    }
    return 1; /* the program itself comes first: only it counts */
}

/* The GNU build ID of this calf binary (hex), or "unknown". */
static void build_id(char *out)
{
    snprintf(out, VMS_BUILD_ID_MAX + 1, "unknown");
    dl_iterate_phdr(note_cb, out);
}

/* ---- disks ---- */

struct disks {
    struct disk_opened d[SNAP_MAX_DISKS];
    int n;
    int target[SNAP_MAX_DISKS]; /* indices of the writable qcow2 ones */
    int ntarget;
    /* For a restore: where disk i's snapshot is, the disk itself (a
     * target) or, for a ,snapshot overlay, its qcow2 base (read-only:
     * the overlay then reads the base as the snapshot has it); NULL. */
    BlockDriverState *src[SNAP_MAX_DISKS];
    int holder;               /* the first disk with a src, -1: none */
    char id[SNAP_MAX_DISKS][128]; /* the snapshot's ID on src[i] */
    uint64_t clock[SNAP_MAX_DISKS]; /* and its VM clock: the save's stamp */
};

/* What a disk is for the machine section: an overlay counts as its base,
 * whose contents it shows. */
static const BlockDriverState *disk_face(const struct disk_opened *d)
{
    return d->overlay && d->bs->backing ? d->bs->backing : d->bs;
}

static void disks_get(struct disks *k)
{
    k->n = disk_opened_list(k->d, SNAP_MAX_DISKS);
    if (k->n > SNAP_MAX_DISKS)
        k->n = SNAP_MAX_DISKS;
    k->ntarget = 0;
    for (int i = 0; i < k->n; i++) {
        BlockDriverState *bs = k->d[i].bs;

        k->src[i] = NULL;
        if (!k->d[i].overlay && !bs->read_only &&
            !strcmp(bs->drv->name, "qcow2")) {
            k->target[k->ntarget++] = i;
            k->src[i] = bs;
        } else if (k->d[i].overlay && bs->backing &&
                   !strcmp(bs->backing->drv->name, "qcow2")) {
            k->src[i] = bs->backing;
        }
    }
    k->holder = -1;
    for (int i = k->n - 1; i >= 0; i--)
        if (k->src[i])
            k->holder = i;
}

/* The "machine" section: RAM, vCPUs and every disk's shape, and the
 * stamp (VM clock) of this save, which every disk that gets the
 * snapshot records (0 for the others): a restore refuses a disk whose
 * snapshot of that name comes from another save (one that failed after
 * some disks had the new snapshot). */
static void machine_put(struct vm *vm, const struct disks *k, uint64_t stamp,
                        struct vmstate_cursor *w)
{
    vms_put_u64(w, vm->ram_size);
    vms_put_u32(w, (uint32_t)vm->ncpus);
    vms_put_u32(w, (uint32_t)k->n);
    for (int i = 0; i < k->n; i++) {
        const BlockDriverState *bs = disk_face(&k->d[i]);
        size_t fl = strlen(bs->drv->name);

        vms_put_u64(w, bs->size);
        vms_put_u8(w, (uint8_t)(k->d[i].bs->read_only && !k->d[i].overlay));
        vms_put_u8(w, (uint8_t)fl);
        vms_put(w, bs->drv->name, fl);
        vms_put_u64(w, k->src[i] && !k->d[i].overlay ? stamp : 0);
    }
}

static int machine_check(struct vm *vm, const struct disks *k,
                         const struct vmstate_section *s)
{
    struct vmstate_cursor r;
    uint64_t ram;
    uint32_t ncpus, n;

    vms_reader_init(&r, s->data, s->len);
    ram = vms_get_u64(&r);
    ncpus = vms_get_u32(&r);
    n = vms_get_u32(&r);
    if (r.err)
        goto bad;
    if (ram != vm->ram_size) {
        vmm_error("cannot restore: the VM was saved with -m %lluM, this run "
                  "has -m %lluM", (unsigned long long)(ram >> 20),
                  (unsigned long long)(vm->ram_size >> 20));
        return -EINVAL;
    }
    if (ncpus != (uint32_t)vm->ncpus) {
        vmm_error("cannot restore: the VM was saved with --cpus %u, this "
                  "run has --cpus %d", ncpus, vm->ncpus);
        return -EINVAL;
    }
    if (n != (uint32_t)k->n) {
        vmm_error("cannot restore: the VM was saved with %u disks, this "
                  "run has %d", n, k->n);
        return -EINVAL;
    }
    for (int i = 0; i < k->n; i++) {
        const BlockDriverState *bs = disk_face(&k->d[i]);
        bool ro = k->d[i].bs->read_only && !k->d[i].overlay;
        uint64_t size = vms_get_u64(&r);
        uint8_t flags = vms_get_u8(&r), fl = vms_get_u8(&r);
        char fmt[256];
        uint64_t stamp;

        vms_get(&r, fmt, fl);
        fmt[fl] = 0;
        stamp = vms_get_u64(&r);
        if (r.err)
            goto bad;
        if (stamp && (!k->src[i] || k->clock[i] != stamp)) {
            vmm_error("cannot restore: disk %d (%s): its snapshot is not "
                      "the one saved with the VM state (from another save, "
                      "or one that failed part-way)", i, k->d[i].file);
            return -EINVAL;
        }
        if (strcmp(fmt, bs->drv->name) || flags != ro) {
            vmm_error("cannot restore: disk %d (%s) was a %s%s disk when "
                      "saved, now it is a %s%s one", i, k->d[i].file, fmt,
                      flags & 1 ? " read-only" : "", bs->drv->name,
                      ro ? " read-only" : "");
            return -EINVAL;
        }
        if (size != bs->size) {
            vmm_error("cannot restore: disk %d (%s) had %llu bytes when "
                      "saved, now %llu", i, k->d[i].file,
                      (unsigned long long)size, (unsigned long long)bs->size);
            return -EINVAL;
        }
    }
    if (!vms_finish(&r))
        return 0;
bad:
    vmm_error("cannot restore: the VM state's machine section is invalid: "
              "%s", r.msg);
    return -EINVAL;
}

/* ---- vCPUs ---- */

/* A vCPU that exited for port or MMIO I/O completes the instruction on
 * its next KVM_RUN; with immediate_exit set that entry returns at once
 * after it, so the state read next is between two instructions.  Where
 * completing it exits again (a string instruction's next page, say),
 * that exit is handled as the run loop would and the vCPU enters again,
 * a bounded number of times: KVM's pending I/O is never left behind in
 * a saved state.  0, or -EIO: the save must refuse. */
#define COMPLETE_IO_TRIES 64
static int cpu_complete_io(struct vcpu *v)
{
    int ret = -EIO;

    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < COMPLETE_IO_TRIES; i++) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                ret = 0; /* back between two instructions */
            else
                vmm_error("vCPU %d: KVM_RUN: %s", v->id, strerror(errno));
            break;
        }
        if (v->run->exit_reason != KVM_EXIT_IO &&
            v->run->exit_reason != KVM_EXIT_MMIO) {
            vmm_error("vCPU %d: exit %u while completing its I/O", v->id,
                      v->run->exit_reason);
            break;
        }
        vm_coalesced_drain(v->vm);
        vcpu_handle_exit(v);
    }
    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    return ret;
}

static int cpu_get(struct vcpu *v, unsigned long req, const char *what,
                   void *buf, uint32_t len, uint32_t tag, bool optional,
                   struct vmstate_cursor *w)
{
    if (ioctl(v->fd, req, buf) < 0) {
        if (optional)
            return 0;
        return vms_fail(w, -errno, "vCPU %d: %s: %s", v->id, what,
                        strerror(errno));
    }
    vms_put_record(w, tag, buf, len);
    return w->err;
}

static int cpu_save(struct vcpu *v, struct vmstate_cursor *w)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_xsave *xs = calloc(1, sizeof(*xs));
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events ev;
    struct kvm_mp_state mp;
    struct kvm_debugregs dr;
    struct kvm_msrs *msrs;

    if (!xs)
        return vms_fail(w, -ENOMEM, "out of memory");
    cpu_get(v, KVM_GET_REGS, "KVM_GET_REGS", &regs, sizeof(regs), T_REGS,
            false, w);
    cpu_get(v, KVM_GET_SREGS, "KVM_GET_SREGS", &sregs, sizeof(sregs),
            T_SREGS, false, w);
    cpu_get(v, KVM_GET_FPU, "KVM_GET_FPU", &fpu, sizeof(fpu), T_FPU, false,
            w);
    cpu_get(v, KVM_GET_XSAVE, "KVM_GET_XSAVE", xs, sizeof(*xs), T_XSAVE,
            true, w);
    cpu_get(v, KVM_GET_XCRS, "KVM_GET_XCRS", &xcrs, sizeof(xcrs), T_XCRS,
            true, w);
    free(xs);
    msrs = vcpu_msrs_read(v, true);
    if (!msrs)
        return vms_fail(w, -EIO, "vCPU %d: cannot read its MSRs", v->id);
    vms_put_record(w, T_MSRS, msrs->entries,
                   msrs->nmsrs * (uint32_t)sizeof(msrs->entries[0]));
    free(msrs);
    cpu_get(v, KVM_GET_MP_STATE, "KVM_GET_MP_STATE", &mp, sizeof(mp), T_MP,
            false, w);
    cpu_get(v, KVM_GET_LAPIC, "KVM_GET_LAPIC", &lapic, sizeof(lapic),
            T_LAPIC, false, w);
    cpu_get(v, KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", &ev, sizeof(ev),
            T_EVENTS, true, w);
    cpu_get(v, KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", &dr, sizeof(dr),
            T_DEBUG, true, w);
    return w->err;
}

struct cpu_records {
    const uint8_t *rec[16];
    uint32_t len[16];
};

static const uint32_t cpu_tags[] = {
    T_SREGS, T_REGS, T_FPU, T_XSAVE, T_XCRS, T_MSRS, T_MP, T_LAPIC,
    T_EVENTS, T_DEBUG,
};
#define NCPU_TAGS (sizeof(cpu_tags) / sizeof(cpu_tags[0]))

static int cpu_set(struct vcpu *v, unsigned long req, const char *what,
                   const uint8_t *rec, uint32_t len, size_t want)
{
    void *buf;
    int ret = 0;

    if (len != want) {
        vmm_error("cannot restore vCPU %d: its %s record has %u bytes, not "
                  "%zu", v->id, what, len, want);
        return -EINVAL;
    }
    buf = malloc(want);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, rec, want);
    if (req == KVM_SET_VCPU_EVENTS) {
        struct kvm_vcpu_events *ev = buf;

        /* only what the KVM that wrote it said is valid */
        ev->flags &= KVM_VCPUEVENT_VALID_NMI_PENDING |
                     KVM_VCPUEVENT_VALID_SIPI_VECTOR |
                     KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
    }
    if (ioctl(v->fd, req, buf) < 0) {
        ret = -errno;
        vmm_error("cannot restore vCPU %d: %s: %s", v->id, what,
                  strerror(errno));
    }
    free(buf);
    return ret;
}

static int cpu_load(struct vcpu *v, const struct vmstate_section *s)
{
    struct vmstate_cursor r;
    struct cpu_records c;
    const uint8_t *data;
    uint32_t tag, len;
    int got, ret = 0;

    memset(&c, 0, sizeof(c));
    vms_reader_init(&r, s->data, s->len);
    while ((got = vms_get_record(&r, &tag, &data, &len)) == 1) {
        unsigned i;

        for (i = 0; i < NCPU_TAGS && cpu_tags[i] != tag; i++)
            ;
        if (i == NCPU_TAGS || c.rec[i]) {
            vmm_error("cannot restore vCPU %d: %s record 0x%08x", v->id,
                      i == NCPU_TAGS ? "unknown" : "repeated", tag);
            return -EINVAL;
        }
        c.rec[i] = data;
        c.len[i] = len;
    }
    if (got < 0) {
        vmm_error("cannot restore vCPU %d: %s", v->id, r.msg);
        return -EINVAL;
    }
    for (unsigned i = 0; i < NCPU_TAGS; i++) {
        uint32_t t = cpu_tags[i];

        if (!c.rec[i] && (t == T_SREGS || t == T_REGS || t == T_FPU ||
                          t == T_MSRS || t == T_MP || t == T_LAPIC)) {
            vmm_error("cannot restore vCPU %d: a record is missing", v->id);
            return -EINVAL;
        }
    }
    /* the order of vcpu_reset(): sregs (APIC base) before the LAPIC */
    ret = cpu_set(v, KVM_SET_SREGS, "KVM_SET_SREGS", c.rec[0], c.len[0],
                  sizeof(struct kvm_sregs));
    if (!ret)
        ret = cpu_set(v, KVM_SET_REGS, "KVM_SET_REGS", c.rec[1], c.len[1],
                      sizeof(struct kvm_regs));
    if (!ret)
        ret = cpu_set(v, KVM_SET_FPU, "KVM_SET_FPU", c.rec[2], c.len[2],
                      sizeof(struct kvm_fpu));
    if (!ret && c.rec[3])
        ret = cpu_set(v, KVM_SET_XSAVE, "KVM_SET_XSAVE", c.rec[3], c.len[3],
                      sizeof(struct kvm_xsave));
    if (!ret && c.rec[4])
        ret = cpu_set(v, KVM_SET_XCRS, "KVM_SET_XCRS", c.rec[4], c.len[4],
                      sizeof(struct kvm_xcrs));
    if (!ret) {
        uint32_t n = c.len[5] / (uint32_t)sizeof(struct kvm_msr_entry);
        struct kvm_msrs *m;

        if (c.len[5] % sizeof(struct kvm_msr_entry) || n > MAX_MSRS) {
            vmm_error("cannot restore vCPU %d: its MSR record has %u bytes",
                      v->id, c.len[5]);
            return -EINVAL;
        }
        m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
        if (!m)
            return -ENOMEM;
        m->nmsrs = n;
        memcpy(m->entries, c.rec[5], c.len[5]);
        vcpu_msrs_write(v, m);
        free(m);
    }
    if (!ret)
        ret = cpu_set(v, KVM_SET_MP_STATE, "KVM_SET_MP_STATE", c.rec[6],
                      c.len[6], sizeof(struct kvm_mp_state));
    if (!ret)
        ret = cpu_set(v, KVM_SET_LAPIC, "KVM_SET_LAPIC", c.rec[7], c.len[7],
                      sizeof(struct kvm_lapic_state));
    if (!ret && c.rec[8])
        ret = cpu_set(v, KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS",
                      c.rec[8], c.len[8], sizeof(struct kvm_vcpu_events));
    if (!ret && c.rec[9])
        ret = cpu_set(v, KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", c.rec[9],
                      c.len[9], sizeof(struct kvm_debugregs));
    return ret;
}

/* ---- irqchips, PIT, clock ---- */

static int vm_chips_save(struct vm *vm, struct vmstate_cursor *w)
{
    for (unsigned i = 0; i < 3; i++) {
        struct kvm_irqchip chip = { .chip_id = i };

        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
            return vms_fail(w, -errno, "KVM_GET_IRQCHIP %u: %s", i,
                            strerror(errno));
        vms_put_record(w, T_CHIP, &chip, sizeof(chip));
    }
    return w->err;
}

static int vm_pit_save(struct vm *vm, struct vmstate_cursor *w)
{
    struct kvm_pit_state2 pit;

    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return vms_fail(w, -errno, "KVM_GET_PIT2: %s", strerror(errno));
    vms_put_record(w, T_PIT, &pit, sizeof(pit));
    return w->err;
}

static int vm_clock_save(struct vm *vm, struct vmstate_cursor *w)
{
    struct kvm_clock_data clock;

    memset(&clock, 0, sizeof(clock));
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
        return vms_fail(w, -errno, "KVM_GET_CLOCK: %s", strerror(errno));
    vms_put_record(w, T_CLOCK, &clock, sizeof(clock));
    return w->err;
}

/* One record of tag and exactly len bytes per call, in order. */
static int vm_records_load(struct vm *vm, const struct vmstate_section *s,
                           uint32_t tag, size_t len, unsigned count)
{
    struct vmstate_cursor r;
    const uint8_t *data;
    uint32_t t, l;
    unsigned n = 0;
    int got;

    vms_reader_init(&r, s->data, s->len);
    while ((got = vms_get_record(&r, &t, &data, &l)) == 1) {
        uint8_t buf[sizeof(struct kvm_pit_state2) > sizeof(struct kvm_irqchip)
                        ? sizeof(struct kvm_pit_state2)
                        : sizeof(struct kvm_irqchip)];
        unsigned long req;
        const char *what;

        if (t != tag || l != len || n == count || len > sizeof(buf)) {
            vmm_error("cannot restore: bad record in section '%s'", s->name);
            return -EINVAL;
        }
        memcpy(buf, data, len);
        if (tag == T_CHIP) {
            ((struct kvm_irqchip *)buf)->chip_id = n;
            req = KVM_SET_IRQCHIP;
            what = "KVM_SET_IRQCHIP";
        } else if (tag == T_PIT) {
            req = KVM_SET_PIT2;
            what = "KVM_SET_PIT2";
        } else {
            struct kvm_clock_data *c = (struct kvm_clock_data *)buf;

            /* the guest's clock goes on from where it was saved */
            c->flags = 0;
            c->realtime = c->host_tsc = 0;
            memset(c->pad, 0, sizeof(c->pad));
            req = KVM_SET_CLOCK;
            what = "KVM_SET_CLOCK";
        }
        if (ioctl(vm->vm_fd, req, buf) < 0) {
            vmm_error("cannot restore: %s: %s", what, strerror(errno));
            return -errno;
        }
        n++;
    }
    if (got < 0 || n != count) {
        vmm_error("cannot restore: section '%s' is invalid%s%s", s->name,
                  got < 0 ? ": " : "", got < 0 ? r.msg : "");
        return -EINVAL;
    }
    return 0;
}

/* ---- save ---- */

static void put_cursor(struct vmstate_cursor *all, const char *name,
                       struct vmstate_cursor *sec, uint32_t *n)
{
    if (sec->err) {
        vms_fail(all, sec->err, "%s", sec->msg);
    } else {
        vms_put_section(all, name, sec->buf, sec->len);
        (*n)++;
    }
    vms_free(sec);
}

/* The sections into all; *n counts them. */
static int collect(struct vm *vm, const struct disks *k, uint64_t stamp,
                   struct vmstate_cursor *all, uint32_t *n)
{
    struct vmstate_cursor sec;
    char name[VMS_NAME_MAX + 1];

    vms_writer_init(&sec);
    machine_put(vm, k, stamp, &sec);
    put_cursor(all, "machine", &sec, n);
    /* devices first: they finish (or hold) their work in flight, and
     * every interrupt they raised is then in the vCPU and irqchip state */
    for (unsigned i = 0; i < bus_state_count(vm->bus) && !all->err; i++) {
        vms_writer_init(&sec);
        if (bus_state_save(vm->bus, i, &sec) && !sec.err)
            vms_fail(&sec, -EIO, "%s cannot be saved",
                     bus_state_name(vm->bus, i));
        put_cursor(all, bus_state_name(vm->bus, i), &sec, n);
    }
    for (int i = 0; i < vm->ncpus && !all->err; i++) {
        vms_writer_init(&sec);
        cpu_save(&vm->vcpus[i], &sec);
        snprintf(name, sizeof(name), "cpu %d", i);
        put_cursor(all, name, &sec, n);
    }
    vms_writer_init(&sec);
    vm_chips_save(vm, &sec);
    put_cursor(all, "irqchip", &sec, n);
    vms_writer_init(&sec);
    vm_pit_save(vm, &sec);
    put_cursor(all, "pit", &sec, n);
    vms_writer_init(&sec);
    vm_clock_save(vm, &sec);
    put_cursor(all, "clock", &sec, n);
    return all->err;
}

/* The guest's clock (KVM's, which a restore carries on), for the
 * snapshot table's VM CLOCK column. */
static uint64_t vm_clock_ns(struct vm *vm)
{
    struct kvm_clock_data clock;

    memset(&clock, 0, sizeof(clock));
    return ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) == 0 ? clock.clock : 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[4096];

    for (size_t o = 0; o < n; o += sizeof(zero))
        if (memcmp(p + o, zero, n - o < sizeof(zero) ? n - o : sizeof(zero)))
            return false;
    return true;
}

/* Guest RAM at pos of the state, in runs of ZERO_UNIT pieces: the runs
 * that are all zeros become zeros in the image without being written
 * (holes, where the reserved clusters allow), the others are written. */
#define ZERO_UNIT (2u << 20)
static int ram_save(struct vm *vm, BlockDriverState *bs, uint64_t pos)
{
    uint64_t off = 0;
    int ret = 0;

    while (!ret && off < vm->ram_size) {
        uint64_t end = off;
        bool zero = all_zero(vm->ram + off, vm->ram_size - off < ZERO_UNIT
                                                ? vm->ram_size - off
                                                : ZERO_UNIT);

        /* the run: pieces of the same kind, at most RAM_CHUNK bytes */
        while (end < vm->ram_size && end - off < RAM_CHUNK) {
            uint64_t n = vm->ram_size - end < ZERO_UNIT ? vm->ram_size - end
                                                        : ZERO_UNIT;

            if (end != off && all_zero(vm->ram + end, n) != zero)
                break;
            end += n;
        }
        ret = zero ? blk_save_vmstate_zero(bs, pos + off, end - off)
                   : blk_save_vmstate(bs, vm->ram + off, pos + off, end - off);
        off = end;
    }
    return ret;
}

/* The one snapshot of bs that name means, by the rule of the qcow2
 * driver (block/qcow2-snapshot.c find_snapshot, as QEMU): an ID first,
 * then a name.  Its ID into id, its VM state size into *vmsize.  A name
 * that several snapshots share is refused (naming one of them by ID
 * works): the table's checks and the revert must mean the same one.
 * 0, -ENOENT (none), -EINVAL (ambiguous), -EIO; the error is printed
 * after what. */
static int snap_resolve(BlockDriverState *bs, const char *what,
                        const char *name, char *id, size_t len,
                        uint64_t *vmsize, uint64_t *clock)
{
    BlockInfo info;
    int idx = -1, n = 0;

    memset(&info, 0, sizeof(info));
    if (blk_get_info(bs, &info) < 0) {
        vmm_error("%s: %s: %s", what, bs->filename, blk_error());
        return -EIO;
    }
    for (int i = 0; idx < 0 && i < info.nb_snapshots; i++)
        if (!strcmp(info.snapshots[i].id, name))
            idx = i;
    for (int i = 0; idx < 0 && i < info.nb_snapshots; i++)
        if (!strcmp(info.snapshots[i].name, name) && !n++) {
            for (int j = i + 1; j < info.nb_snapshots; j++)
                n += !strcmp(info.snapshots[j].name, name);
            idx = i;
        }
    if (n > 1) {
        vmm_error("%s: %s has %d snapshots named '%s': name one by its ID",
                  what, bs->filename, n, name);
        blk_info_free(&info);
        return -EINVAL;
    }
    if (idx < 0) {
        vmm_error("%s: %s has no snapshot '%s'", what, bs->filename, name);
        blk_info_free(&info);
        return -ENOENT;
    }
    snprintf(id, len, "%s", info.snapshots[idx].id);
    if (vmsize)
        *vmsize = info.snapshots[idx].vm_state_size;
    if (clock)
        *clock = info.snapshots[idx].vm_clock_nsec;
    blk_info_free(&info);
    return 0;
}

/* The IDs of every snapshot of bs named name (at most max): *n. */
static int snap_ids_named(BlockDriverState *bs, const char *name,
                          char (*ids)[128], int max, int *n)
{
    BlockInfo info;

    *n = 0;
    memset(&info, 0, sizeof(info));
    if (blk_get_info(bs, &info) < 0)
        return -EIO;
    for (int i = 0; i < info.nb_snapshots; i++)
        if (!strcmp(info.snapshots[i].name, name)) {
            if (*n == max) {
                blk_info_free(&info);
                blk_set_error("more than %d snapshots named '%s'", max, name);
                return -E2BIG;
            }
            snprintf(ids[(*n)++], 128, "%s", info.snapshots[i].id);
        }
    blk_info_free(&info);
    return 0;
}

/* Before a snapshot is deleted: the clusters it frees may back guest
 * RAM (mapped by a restore), and whatever reuses them would change the
 * guest's memory under it.  RAM becomes anonymous memory again, with the
 * same contents (all-zero pieces are left unwritten).  vCPUs stopped and
 * devices quiet: nothing writes RAM meanwhile. */
static int ram_detach(struct vm *vm)
{
    uint8_t *p;

    if (!ram_mapped)
        return 0;
    p = mmap(NULL, vm->ram_size, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    for (uint64_t o = 0; o < vm->ram_size; o += ZERO_UNIT) {
        uint64_t n = vm->ram_size - o < ZERO_UNIT ? vm->ram_size - o
                                                   : ZERO_UNIT;

        if (!all_zero(vm->ram + o, n))
            memcpy(p + o, vm->ram + o, n);
    }
    if (mremap(p, vm->ram_size, vm->ram_size, MREMAP_MAYMOVE | MREMAP_FIXED,
               vm->ram) == MAP_FAILED) {
        int err = errno;

        munmap(p, vm->ram_size);
        return -err;
    }
    ram_mapped = false;
    return 0;
}

/* CALF_VMSTATE_DUMP=FILE: the header and sections also go to FILE (to
 * seed tests/fuzz/corpus-vmstate from a real machine). */
static void dump_state(const uint8_t *buf, size_t len)
{
    const char *path = getenv("CALF_VMSTATE_DUMP");
    FILE *f = path && *path ? fopen(path, "wb") : NULL;

    if (!f)
        return;
    if (fwrite(buf, 1, len, f) != len)
        vmm_error("CALF_VMSTATE_DUMP=%s: short write", path);
    fclose(f);
}

static int save_machine(struct vm *vm, const char *name)
{
    struct vmstate_cursor all;
    struct vmstate_header h;
    struct disks k;
    BlockDriverState *bs;
    uint8_t *buf = NULL;
    char what[128];
    uint32_t n = 0;
    uint64_t t0 = vm_now_ns(), stamp;
    int ret;

    disks_get(&k);
    if (!k.ntarget) {
        vmm_error("--savevm %s: no writable qcow2 disk to hold the VM state "
                  "(read-only disks, ,snapshot overlays and other formats "
                  "cannot)", name);
        return -ENOTSUP;
    }
    if (bus_state_missing(vm->bus, what, sizeof(what))) {
        vmm_error("--savevm %s: cannot save the VM: %s has no save/restore "
                  "support", name, what);
        return -ENOTSUP;
    }
    for (int i = 0; i < vm->ncpus; i++)
        if (cpu_complete_io(&vm->vcpus[i])) {
            vmm_error("--savevm %s: cannot save the VM: vCPU %d's I/O does "
                      "not complete", name, i);
            return -EIO;
        }
    vm_coalesced_drain(vm);
    /* one VM clock for every disk's snapshot: the save's stamp */
    stamp = vm_clock_ns(vm);
    if (!stamp)
        stamp = vm_now_ns();
    vms_writer_init(&all);
    if (collect(vm, &k, stamp, &all, &n)) {
        vmm_error("--savevm %s: cannot save the VM: %s", name, all.msg);
        vms_free(&all);
        return all.err;
    }
    memset(&h, 0, sizeof(h));
    h.version = VMS_VERSION;
    build_id(h.build_id);
    h.ram_size = vm->ram_size;
    h.ncpus = (uint32_t)vm->ncpus;
    h.nsections = n;
    h.sections_len = all.len;
    h.sections_crc = vms_crc32(0, all.buf, all.len);
    h.ram_offset = (VMS_HEADER_SIZE + all.len + VMS_RAM_ALIGN - 1) /
                   VMS_RAM_ALIGN * VMS_RAM_ALIGN;
    h.total_len = h.ram_offset + vm->ram_size;
    buf = calloc(1, VMS_HEADER_SIZE + all.len);
    if (!buf) {
        vms_free(&all);
        return -ENOMEM;
    }
    vms_make_header(buf, &h);
    memcpy(buf + VMS_HEADER_SIZE, all.buf, all.len);
    dump_state(buf, VMS_HEADER_SIZE + all.len);
    bs = k.d[k.target[0]].bs;
    /* RAM as one run of the file, for a restore that maps it */
    ret = blk_vmstate_reserve(bs, h.ram_offset, vm->ram_size);
    if (ret == -ENOTSUP)
        ret = 0;
    if (!ret)
        ret = blk_save_vmstate(bs, buf, 0, VMS_HEADER_SIZE + all.len);
    if (!ret)
        ret = ram_save(vm, bs, h.ram_offset);
    free(buf);
    vms_free(&all);
    if (ret) {
        vmm_error("--savevm %s: cannot write the VM state to %s: %s", name,
                  bs->filename, blk_error());
        return ret;
    }
    /* every writable qcow2 disk: the new snapshot, then every older one
     * of the same name goes, by its ID (as QEMU's savevm replaces it) */
    for (int t = 0; t < k.ntarget; t++) {
        BlockDriverState *d = k.d[k.target[t]].bs;
        char old[16][128];
        int nold = 0;

        ret = snap_ids_named(d, name, old, 16, &nold);
        if (!ret)
            ret = blk_snapshot_create_vm(d, name, t ? 0 : h.total_len,
                                         stamp);
        if (!ret && nold && (ret = ram_detach(vm)))
            blk_set_error("cannot copy guest RAM off the image: %s",
                          strerror(-ret));
        for (int o = 0; !ret && o < nold; o++)
            ret = blk_snapshot_delete(d, old[o]);
        if (!ret)
            ret = blk_flush(d);
        if (ret) {
            vmm_error("--savevm %s: %s: %s", name, d->filename, blk_error());
            return ret;
        }
    }
    if (getenv("CALF_SNAPSHOT_TIMING"))
        fprintf(stderr, "calf: saved '%s' (%llu bytes of state, %llu MiB "
                "of RAM) in %.1f ms\n", name, (unsigned long long)
                h.sections_len, (unsigned long long)(vm->ram_size >> 20),
                (double)(vm_now_ns() - t0) / 1e6);
    return 0;
}

int snapshot_save(struct vm *vm, const char *name)
{
    int ret;

    last_error[0] = 0;
    ret = save_machine(vm, name);

    /* devices with threads of their own go on (the machine may run on) */
    bus_state_resume(vm->bus);
    return ret;
}

/* ---- load ---- */

static const struct vmstate_section *find(const struct vmstate_section *s,
                                          uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(s[i].name, name))
            return &s[i];
    return NULL;
}

static bool vm_section_name(const struct vm *vm, const char *name)
{
    int c;
    char tail;

    if (!strcmp(name, "machine") || !strcmp(name, "irqchip") ||
        !strcmp(name, "pit") || !strcmp(name, "clock"))
        return true;
    return sscanf(name, "cpu %d%c", &c, &tail) == 1 && c >= 0 &&
           c < vm->ncpus;
}

/* Every section the machine expects is there and nothing else. */
static int names_check(struct vm *vm, const struct vmstate_section *s,
                       uint32_t n)
{
    char name[VMS_NAME_MAX + 1];

    for (int i = 0; i < vm->ncpus; i++) {
        snprintf(name, sizeof(name), "cpu %d", i);
        if (!find(s, n, name)) {
            vmm_error("cannot restore: the saved VM has no vCPU %d", i);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < bus_state_count(vm->bus); i++)
        if (!find(s, n, bus_state_name(vm->bus, i))) {
            vmm_error("cannot restore: this machine has device '%s', which "
                      "the saved VM did not have", bus_state_name(vm->bus, i));
            return -EINVAL;
        }
    for (uint32_t i = 0; i < n; i++) {
        bool known = vm_section_name(vm, s[i].name);

        for (unsigned d = 0; !known && d < bus_state_count(vm->bus); d++)
            known = !strcmp(s[i].name, bus_state_name(vm->bus, d));
        if (!known) {
            vmm_error("cannot restore: the saved VM has '%s', which this "
                      "machine does not have", s[i].name);
            return -EINVAL;
        }
    }
    if (!find(s, n, "machine") || !find(s, n, "irqchip") ||
        !find(s, n, "pit") || !find(s, n, "clock")) {
        vmm_error("cannot restore: the VM state lacks a section");
        return -EINVAL;
    }
    return 0;
}

/* Guest RAM: mapped copy-on-write from the image file where it is one
 * plain run there, else read. */
static int ram_load(struct vm *vm, BlockDriverState *bs, const char *name,
                    bool direct, uint64_t pos, bool *mapped)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t off;
    int fd, ret;

    *mapped = false;
    if (!getenv("CALF_LOADVM_READ") &&
        (direct ? blk_snapshot_vmstate_host_range(bs, name, pos,
                                                  vm->ram_size, &fd, &off)
                : blk_vmstate_host_range(bs, pos, vm->ram_size, &fd,
                                         &off)) == 0 &&
        off % (uint64_t)page == 0) {
        /* through a descriptor of its own: a mapping keeps its open file
         * alive, and the image's (with its byte-range locks) must go at
         * close, not when the VM's last page does (vm_teardown_detached) */
        char path[64];
        int rfd;
        void *p = MAP_FAILED;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0) {
            p = mmap(vm->ram, vm->ram_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, rfd,
                     (off_t)off);
            close(rfd);
        }
        if (p == vm->ram) {
            *mapped = true;
            ram_mapped = true;
            return 0;
        }
        /* MAP_FIXED failing leaves the range unmapped: put RAM back */
        p = mmap(vm->ram, vm->ram_size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
                 0);
        if (p != vm->ram) {
            vmm_error("cannot restore: guest RAM is gone: %s",
                      strerror(errno));
            return -ENOMEM;
        }
    }
    for (uint64_t o = 0; o < vm->ram_size; o += RAM_CHUNK) {
        uint64_t len = vm->ram_size - o < RAM_CHUNK ? vm->ram_size - o
                                                    : RAM_CHUNK;

        ret = direct ? blk_snapshot_load_vmstate(bs, name, vm->ram + o,
                                                 pos + o, len)
                     : blk_load_vmstate(bs, vm->ram + o, pos + o, len);
        if (ret) {
            vmm_error("cannot restore: reading guest RAM from %s: %s",
                      bs->filename, blk_error());
            return ret;
        }
    }
    return 0;
}

/* Every disk with a src has snapshot name: its ID into k->id[i]; the
 * holder's VM state size in *size. */
static int disks_find(struct disks *k, const char *name, uint64_t *size)
{
    char what[300];

    snprintf(what, sizeof(what), "--loadvm %s", name);
    for (int i = k->holder; i >= 0 && i < k->n; i++) {
        BlockDriverState *bs = k->src[i];
        uint64_t vms = 0;
        int ret;

        if (!bs)
            continue;
        ret = snap_resolve(bs, what, name, k->id[i], sizeof(k->id[i]), &vms,
                           &k->clock[i]);
        if (ret)
            return ret;
        if (i == k->holder) {
            *size = vms;
            if (!vms) {
                vmm_error("--loadvm %s: snapshot '%s' of %s holds no VM "
                          "state (a disk-only snapshot)", name, name,
                          bs->filename);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* Reverts every target disk.  direct: the state is read through the
 * snapshot's own tables, so the disks revert without their VM state
 * area where the format allows (no refcount update per RAM cluster). */
static int disks_revert(const struct disks *k, const char *name, bool direct)
{
    /* what would refuse a revert refuses before any disk reverts */
    for (int i = 0; i < k->n; i++)
        if (k->src[i] && !k->d[i].overlay &&
            blk_snapshot_revert_check(k->src[i]) < 0) {
            vmm_error("--loadvm %s: %s: %s", name, k->src[i]->filename,
                      blk_error());
            return -EBUSY;
        }
    /* each disk by the ID its snapshot resolved to (disks_find) */
    for (int i = 0; i < k->n; i++) {
        BlockDriverState *bs = k->src[i];
        int r;

        if (!bs)
            continue;
        if (k->d[i].overlay) { /* the base, read as the snapshot has it */
            r = blk_snapshot_load_tmp_by_id_or_name(bs, k->id[i]);
        } else {
            r = direct ? blk_snapshot_apply_disk(bs, k->id[i]) : -ENOTSUP;
            if (r == -ENOTSUP)
                r = blk_snapshot_apply(bs, k->id[i]);
        }
        if (r < 0) {
            vmm_error("--loadvm %s: %s: %s", name, bs->filename, blk_error());
            return -EIO;
        }
    }
    return 0;
}

/* The VM state's bytes, from the snapshot (direct) or the active area. */
static int state_read(BlockDriverState *bs, const char *name, bool direct,
                      void *buf, uint64_t pos, size_t len)
{
    return direct ? blk_snapshot_load_vmstate(bs, name, buf, pos, len)
                  : blk_load_vmstate(bs, buf, pos, len);
}

static bool load_changed;

bool snapshot_load_changed(void)
{
    return load_changed;
}

int snapshot_load(struct vm *vm, const char *name)
{
    uint8_t hdr[VMS_HEADER_SIZE];
    struct vmstate_header h;
    struct vmstate_section *s = NULL;
    char msg[256], bid[VMS_BUILD_ID_MAX + 1];
    uint8_t *secbuf = NULL;
    struct disks k;
    BlockDriverState *bs, *view = NULL;
    uint64_t size = 0, t0 = vm_now_ns();
    bool mapped = false, direct;
    const char *sid;
    int ret;

    last_error[0] = 0;
    load_changed = false;
    disks_get(&k);
    if (k.holder < 0) {
        vmm_error("--loadvm %s: no qcow2 disk to restore from (a writable "
                  "one, or the base of a ,snapshot overlay)", name);
        return -ENOTSUP;
    }
    ret = disks_find(&k, name, &size);
    if (ret)
        return ret;
    bs = k.src[k.holder];
    sid = k.id[k.holder];
    /* The state straight from the snapshot's own tables where the format
     * allows; else (extended L2, an external data file) through a second,
     * read-only view of the image showing the snapshot.  Either way the
     * disks revert last, after everything was read, checked and loaded:
     * a refused restore leaves every disk as it was. */
    direct = (!getenv("CALF_LOADVM_APPLY") || k.d[k.holder].overlay) &&
             blk_snapshot_load_vmstate(bs, sid, hdr, 0, sizeof(hdr)) == 0;
    if (!direct && k.d[k.holder].overlay) {
        vmm_error("--loadvm %s: %s: the VM state cannot be read from this "
                  "base image in place (%s)", name, bs->filename,
                  blk_error());
        return -ENOTSUP;
    }
    if (!direct) {
        view = blk_open(bs->filename, bs->drv->name,
                        BLK_O_SHARE | BLK_O_NO_REPAIR, NULL);
        if (!view || blk_snapshot_load_tmp(view, sid, NULL) < 0) {
            vmm_error("--loadvm %s: %s: cannot read the snapshot's VM "
                      "state: %s", name, bs->filename, blk_error());
            ret = -EIO;
            goto out;
        }
        bs = view;
        ret = blk_load_vmstate(bs, hdr, 0, sizeof(hdr));
    }
    if (!ret && vms_parse_header(hdr, sizeof(hdr), size, &h, msg,
                                 sizeof(msg)))
        ret = -EINVAL;
    else if (ret)
        snprintf(msg, sizeof(msg), "%s", blk_error());
    if (ret) {
        vmm_error("--loadvm %s: %s: %s", name, bs->filename, msg);
        goto out;
    }
    build_id(bid);
    if (strcmp(bid, h.build_id)) {
        vmm_error("--loadvm %s: the VM was saved by another build of calf "
                  "(build id %s, this one is %s)", name, h.build_id, bid);
        ret = -EINVAL;
        goto out;
    }
    /* the header's shape, before anything reads RAM for it */
    if (h.ram_size != vm->ram_size) {
        vmm_error("cannot restore: the VM was saved with -m %lluM, this run "
                  "has -m %lluM", (unsigned long long)(h.ram_size >> 20),
                  (unsigned long long)(vm->ram_size >> 20));
        ret = -EINVAL;
        goto out;
    }
    if (h.ncpus != (uint32_t)vm->ncpus) {
        vmm_error("cannot restore: the VM was saved with --cpus %u, this "
                  "run has --cpus %d", h.ncpus, vm->ncpus);
        ret = -EINVAL;
        goto out;
    }
    secbuf = malloc(h.sections_len ? h.sections_len : 1);
    if (!secbuf) {
        ret = -ENOMEM;
        goto out;
    }
    ret = state_read(bs, sid, direct, secbuf, VMS_HEADER_SIZE,
                     h.sections_len);
    if (ret)
        snprintf(msg, sizeof(msg), "%s", blk_error());
    else if (vms_parse_sections(&h, secbuf, h.sections_len, &s, msg,
                                sizeof(msg)))
        ret = -EINVAL;
    if (ret) {
        vmm_error("--loadvm %s: %s: %s", name, bs->filename, msg);
        goto out;
    }
    if (!find(s, h.nsections, "machine")) {
        vmm_error("--loadvm %s: the VM state has no machine section", name);
        ret = -EINVAL;
        goto out;
    }
    ret = machine_check(vm, &k, find(s, h.nsections, "machine"));
    if (!ret)
        ret = names_check(vm, s, h.nsections);
    if (!ret) {
        load_changed = true; /* from here on, a failure is half done */
        ret = ram_load(vm, bs, sid, direct, h.ram_offset, &mapped);
    }
    for (unsigned i = 0; !ret && i < bus_state_count(vm->bus); i++) {
        const struct vmstate_section *d = find(s, h.nsections,
                                               bus_state_name(vm->bus, i));
        struct vmstate_cursor r;

        vms_reader_init(&r, d->data, d->len);
        ret = bus_state_load(vm->bus, i, &r);
        if (!ret)
            ret = vms_finish(&r);
        if (ret)
            vmm_error("cannot restore %s: %s", d->name,
                      r.msg[0] ? r.msg : strerror(-ret));
    }
    for (int i = 0; !ret && i < vm->ncpus; i++) {
        char cname[VMS_NAME_MAX + 1];

        snprintf(cname, sizeof(cname), "cpu %d", i);
        ret = cpu_load(&vm->vcpus[i], find(s, h.nsections, cname));
    }
    if (!ret)
        ret = vm_records_load(vm, find(s, h.nsections, "irqchip"), T_CHIP,
                              sizeof(struct kvm_irqchip), 3);
    if (!ret)
        ret = vm_records_load(vm, find(s, h.nsections, "pit"), T_PIT,
                              sizeof(struct kvm_pit_state2), 1);
    if (!ret)
        ret = vm_records_load(vm, find(s, h.nsections, "clock"), T_CLOCK,
                              sizeof(struct kvm_clock_data), 1);
    if (!ret)
        ret = disks_revert(&k, name, direct);
    if (!ret)
        bus_state_resume(vm->bus); /* the disks are as saved: I/O may go */
    if (!ret && getenv("CALF_SNAPSHOT_TIMING"))
        fprintf(stderr, "calf: restored '%s' in %.2f ms (guest RAM %s, "
                "state %s)\n", name, (double)(vm_now_ns() - t0) / 1e6,
                mapped ? "mapped from the image" : "read",
                direct ? "from the snapshot"
                       : "from a read-only view of the snapshot, whole "
                         "snapshot applied");
out:
    if (view)
        blk_close(view);
    free(s);
    free(secbuf);
    return ret;
}

void snapshot_quiesce(struct vm *vm)
{
    struct vmstate_cursor scratch;

    /* a save into nowhere: every device finishes or holds its work */
    for (unsigned i = 0; i < bus_state_count(vm->bus); i++) {
        vms_writer_init(&scratch);
        bus_state_save(vm->bus, i, &scratch);
        vms_free(&scratch);
    }
}

int snapshot_delete(struct vm *vm, const char *name)
{
    struct disks k;
    int ret = 0;

    last_error[0] = 0;
    disks_get(&k);
    if (ram_mapped && !atomic_load(&vm->paused)) {
        /* a vCPU write to a page already copied would be lost */
        vmm_error("delvm %s: guest RAM is mapped from the image and the "
                  "VM is running", name);
        return -EBUSY;
    }
    if (ram_mapped) {
        /* devices quiet, then RAM off the clusters the delete may free */
        snapshot_quiesce(vm);
        ret = ram_detach(vm);
        if (!atomic_load(&vm->needs_reset)) /* else they stay frozen */
            bus_state_resume(vm->bus);
        if (ret) {
            vmm_error("delvm %s: cannot copy guest RAM off the image: %s",
                      name, strerror(-ret));
            return ret;
        }
    }
    for (int t = 0; t < k.ntarget; t++) {
        BlockDriverState *d = k.d[k.target[t]].bs;
        char old[16][128];
        int nold = 0;

        ret = snap_ids_named(d, name, old, 16, &nold);
        for (int o = 0; !ret && o < nold; o++)
            ret = blk_snapshot_delete(d, old[o]);
        if (!ret)
            ret = blk_flush(d);
        if (ret) {
            vmm_error("delvm %s: %s: %s", name, d->filename, blk_error());
            return ret;
        }
    }
    return 0;
}
