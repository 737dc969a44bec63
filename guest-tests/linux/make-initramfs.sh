#!/bin/bash
# A busybox initramfs whose /init prints a marker and powers off, or,
# with `calf.shell` on the kernel command line (make run), opens a shell
# on the console first; `calf.dd` writes to /dev/vda (linux-virtio.t).  Not compressed: inflating it would cost the
# emulating backend many seconds.
#   make-initramfs.sh OUT.cpio
set -euo pipefail
bb=/bin/busybox
[ -x "$bb" ] && { ldd "$bb" 2>&1 || true; } | grep -q "not a dynamic" ||
    { echo "make-initramfs: need a static /bin/busybox (Debian busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp}
cp "$bb" "$root/bin/busybox"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "calf-linux: userspace up, $(/bin/busybox nproc) cpus, $(/bin/busybox awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
case " $(/bin/busybox cat /proc/cmdline) " in
*" calf.dd "*)
    # guest-tests/linux-virtio.t: 64 KiB the host knows (the start of this
    # very busybox) written at 1 MiB of the first virtio disk
    /bin/busybox mount -t devtmpfs devtmpfs /dev
    /bin/busybox dd if=/bin/busybox of=/dev/vda bs=65536 count=1 seek=16 conv=fsync &&
        echo "calf-linux: dd done"
    ;;
*" calf.shell "*)
    /bin/busybox --install -s
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    echo "calf-linux: a busybox shell; exit or poweroff -f ends the VM (Ctrl-A x at any time)"
    setsid cttyhack sh -l
    ;;
esac
/bin/busybox poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$1"
