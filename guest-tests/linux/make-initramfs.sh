#!/bin/bash
# A busybox initramfs whose /init prints a marker and powers off.  Not
# compressed: inflating it would cost the emulating backend many seconds.
#   make-initramfs.sh OUT.cpio
set -euo pipefail
bb=/bin/busybox
[ -x "$bb" ] && { ldd "$bb" 2>&1 || true; } | grep -q "not a dynamic" ||
    { echo "make-initramfs: need a static /bin/busybox (Debian busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys}
cp "$bb" "$root/bin/busybox"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "calf-linux: userspace up, $(/bin/busybox nproc) cpus, $(/bin/busybox awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
/bin/busybox poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$1"
