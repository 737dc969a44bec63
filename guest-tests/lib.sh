# Shared by the guest tests: one way to boot a guest and read what it
# printed, over the TAP core tests/tap.sh (plan, ok, is, pass, fail, skip,
# skip_all, need_cmd, done_testing; $CALF_BUILD, the scratch directory
# $TMP).  Source it; it sets CALF, GUEST (bzImage) and GUEST_ELF.  A test
# calls need_kvm first: it skips the whole file when /dev/kvm cannot be
# used.

. "$(dirname "${BASH_SOURCE[0]}")/../tests/tap.sh"
CALF=$CALF_BUILD/calf
GUEST=$CALF_BUILD/firmware/testguest.bzImage
GUEST_ELF=$CALF_BUILD/firmware/testguest.elf

# need_kvm: skips the file unless /dev/kvm is there and usable and calf
# and the test guest are built
need_kvm() {
    local f
    [ -e /dev/kvm ] || skip_all "/dev/kvm does not exist"
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || skip_all "/dev/kvm is not accessible to $(id -un)"
    for f in "$CALF" "$GUEST" "$GUEST_ELF"; do
        [ -e "$f" ] || skip_all "$f not built (run make)"
    done
}

# boot NAME ARGS...: runs calf, leaving $TMP/NAME.out (console),
# $TMP/NAME.err, and $status; prints how long the guest took.  With
# BOOT_GUARD=S (BOOT_GUARD=120 boot ...) a calf still running after S
# seconds is killed (status 137): the guard against a hang where calf's
# own --timeout is what a test checks.
boot() {
    local name=$1 t0 t1
    shift
    t0=$(date +%s%N)
    ${BOOT_GUARD:+timeout -s KILL "$BOOT_GUARD"} \
        "$CALF" run "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    status=$?
    t1=$(date +%s%N)
    echo "# $name: status $status after $(( (t1 - t0) / 1000000 )) ms"
}

# wait_out PID NAME TEXT [COUNT]: waits, for an event, until the console
# output of NAME shows TEXT COUNT times (default 1); returns 1 if the
# run PID ended first or 600 s passed (a guard against a hang, no more)
wait_out() {
    local i
    for ((i = 0; i < 6000; i++)); do
        _out_count "$2" "$3" "${4:-1}" && return 0
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    _out_count "$2" "$3" "${4:-1}"
}
_out_count() {  # NAME TEXT COUNT (the file may not be there yet)
    local n
    n=$(grep -caF -- "$2" "$TMP/$1.out" 2>/dev/null)
    [ "${n:-0}" -ge "$3" ]
}

# has NAME TEXT: the console output of NAME contains TEXT
has() { grep -qF -- "$2" "$TMP/$1.out"; }
# has_err NAME TEXT: its stderr contains TEXT
has_err() { grep -qF -- "$2" "$TMP/$1.err"; }

# show NAME: its output as TAP comments, for a failing case
show() {
    # (a run stopped by --expect may end mid-line: add the newline)
    { cat "$TMP/$1.out"; echo; cat "$TMP/$1.err"; } | tr -d '\r' | sed 's/^/#   /'
}

# need_qemu_py: QEMU_PY, the directory of QEMU 7.2's Python QMP client
# (qemu.qmp, unpacked by scripts/qemu-python.sh) to put on PYTHONPATH;
# skips the file without python3 or the client
need_qemu_py() {
    need_cmd python3
    QEMU_PY=$(CALF_BUILD=$CALF_BUILD "$(dirname "${BASH_SOURCE[0]}")/../scripts/qemu-python.sh" 2>"$TMP/py.err") ||
        skip_all "no QEMU Python client: $(cat "$TMP/py.err")"
}

# wait_sock PATH [SECONDS]: waits until the socket PATH is there, at
# most SECONDS (default 30); returns 1 if it never came
wait_sock() {
    local i
    for ((i = 0; i < ${2:-30} * 10; i++)); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# start NAME ARGS...: calf run ARGS in the background with a QMP socket
# $TMP/NAME.sock (wait=off), the console in $TMP/NAME.out and stderr in
# $TMP/NAME.err; sets pid (killed at exit if still running) and waits
# for the socket (returns 1 if it never came)
start() {
    local name=$1
    shift
    "$CALF" run --qmp "unix:$TMP/$name.sock,server=on,wait=off" "$@" \
        >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
    pid=$!
    at_exit "kill -9 $pid 2>/dev/null"
    wait_sock "$TMP/$name.sock"
}

# finish PID [SECONDS]: waits for calf PID to end by itself (after quit)
# at most SECONDS (default 10), then kills it; sets status
finish() {
    local i
    for ((i = 0; i < ${2:-10} * 10; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null
    wait "$1"
    status=$?
}

# fact NAME KEY: the first KEY=... line a QMP client script printed to
# $TMP/NAME.facts, less the KEY=
fact() { sed -n "s/^$2=//p" "$TMP/$1.facts" | head -1; }

crc32_of() {
    perl -MCompress::Zlib -e 'local $/; open my $f, "<", $ARGV[0] or die; printf "%08x", crc32(<$f>)' "$1"
}

done_testing() {
    echo "1..$t_num"
    [ "$t_fail" = 0 ]
}

# need_linux: the small Linux guest (guest-tests/linux/): sets
# LINUX_KERNEL (built on first use by build-kernel.sh, then cached, so
# the first run of the suite pays a few minutes of compiling) and
# LINUX_APPEND (console, panic, and the parameters this host's KVM
# needs: guest-tests/linux/cmdline.sh).  Skips the file when the
# kernel source is not installed; a failed build is a failed test.
LINUX_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/linux
need_linux() {
    local t0=$(date +%s) log=$TMP/kernel-build.log
    LINUX_KERNEL=$CALF_BUILD/linux/vmlinux
    LINUX_APPEND=$("$LINUX_DIR/cmdline.sh" console=ttyS0 panic=-1)
    if [ -n "${CALF_LINUX_KERNEL:-}" ]; then   # a kernel built elsewhere
        LINUX_KERNEL=$CALF_LINUX_KERNEL
        [ -r "$LINUX_KERNEL" ] || { fail "CALF_LINUX_KERNEL=$LINUX_KERNEL is readable"; done_testing; }
        echo "# kernel: $LINUX_KERNEL (CALF_LINUX_KERNEL)"
        return
    fi
    if ! ls /usr/src/linux-source-6.1.tar.* >/dev/null 2>&1; then
        skip_all "Debian's linux-source-6.1 is not installed (make test installs it as root)"
    fi
    local tool
    for tool in bc flex bison; do
        command -v $tool >/dev/null || skip_all "$tool is not installed (needed to build the kernel)"
    done
    mkdir -p "$CALF_BUILD/linux"
    if ! "$LINUX_DIR/build-kernel.sh" "$CALF_BUILD/linux" 2>"$log"; then
        fail "the small Linux kernel builds" "$(tail -20 "$log")"
        done_testing
    fi
    echo "# kernel ready after $(( $(date +%s) - t0 )) s"
    grep -v warning "$log" | sed 's/^/#   /'
}

# need_initramfs: LINUX_INITRD, a busybox initramfs made for this run
# (or $CALF_LINUX_INITRD, one made by make-initramfs.sh elsewhere from
# the busybox $CALF_LINUX_BUSYBOX), and LINUX_BUSYBOX, the busybox in it.
need_initramfs() {
    LINUX_INITRD=${CALF_LINUX_INITRD:-$TMP/initramfs.cpio}
    LINUX_BUSYBOX=${CALF_LINUX_BUSYBOX:-/bin/busybox}
    [ -n "${CALF_LINUX_INITRD:-}" ] && return
    "$LINUX_DIR/make-initramfs.sh" "$LINUX_INITRD" 2>"$TMP/initramfs.err" ||
        skip_all "no initramfs: $(cat "$TMP/initramfs.err")"
}

# make_mbr_disk QCOW2 RAW: a 32 MiB raw base and a qcow2 over it whose
# MBR (two Linux partitions, vda1 at 1 MiB for 8 MiB and vda2 after it)
# is written into the qcow2 layer only; Linux's partition scan then
# prints "vda: vda1 vda2".  Needs qemu-img, qemu-io and perl.
make_mbr_disk() {
    perl -e 'my $m = "\0" x 446;
             $m .= pack("CA3CA3VV", 0, "\xff" x 3, 0x83, "\xff" x 3, @$_) for [2048, 16384], [18432, 47104];
             $m .= "\0" x 32 . "\x55\xaa"; print $m' >"$TMP/mbr.bin"
    truncate -s 32M "$2"
    qemu-img create -q -f qcow2 -b "$2" -F raw "$1"
    qemu-io -f qcow2 -c "write -s $TMP/mbr.bin 0 512" "$1" >/dev/null
}
