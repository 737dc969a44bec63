#!/bin/bash
# Debian's stock kernel (linux-image-amd64) under calf (make test-slow):
# fetched with apt-get download, unpacked with dpkg-deb -x, its ELF vmlinux
# taken out of the bzImage (extract-vmlinux.sh), booted directly with a
# virtio-blk disk attached.  Debian builds virtio, virtio-pci and
# virtio_blk as modules, which only userspace can load, and on the
# emulating kvm_pvm backend no userspace runs (docs/ARCHITECTURE.md): the
# furthest milestone that is about calf is the kernel's PCI scan finding
# the virtio-blk function ([1af4:1042]) through the ACPI tables.  Measured
# here (kvm_pvm, 2 host cores shared with other work; guest clock / wall):
#   load ~5:  Memory 29 s / 100 s, ACPI interpreter 161 s / 326 s, the
#             PCI scan 163 s / 329 s;
#   load ~12: Memory 62 s / 225 s, ACPI interpreter 281 s / 936 s, the
#             PCI scan 284 s / 945 s (258 s of CPU time for calf).
# Most of it is ftrace's boot-time check of every traced function, which
# holds up late initcalls for minutes more, so /init is no bounded
# milestone here.  The timeout covers a heavily loaded host.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_cmd apt-get apt-cache dpkg-deb xz perl
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=$CALF_BUILD/linux-stock
mkdir -p "$CACHE"

# The metapackage names the current kernel package.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || skip_all "apt-cache does not know linux-image-amd64 (no Debian package lists)"
KERNEL=$CACHE/$pkg.vmlinux
if [ ! -s "$KERNEL" ]; then
    t0=$(date +%s)
    rm -rf "$CACHE/root" "$CACHE"/*.deb
    (cd "$CACHE" && apt-get download "$pkg" >"$CACHE/apt.log" 2>&1) ||
        skip_all "apt-get download $pkg failed (no network or mirror?): $(tail -1 "$CACHE/apt.log")"
    dpkg-deb -x "$CACHE"/*.deb "$CACHE/root" ||
        skip_all "dpkg-deb -x failed on $(ls "$CACHE"/*.deb)"
    "$HERE/extract-vmlinux.sh" "$CACHE"/root/boot/vmlinuz-* "$KERNEL.tmp" && mv "$KERNEL.tmp" "$KERNEL"
    rm -rf "$CACHE/root" "$CACHE"/*.deb
    echo "# fetched and extracted $pkg in $(( $(date +%s) - t0 )) s"
fi
ok "the ELF vmlinux of $pkg extracted from its bzImage" [ -s "$KERNEL" ]
[ -s "$KERNEL" ] || done_testing   # (a failed test: it exits non-zero)

APPEND=$("$(dirname "$0")/../linux/cmdline.sh" console=ttyS0 panic=-1 nowatchdog cryptomgr.notests)
[ -e /sys/module/kvm_pvm ] && echo "# backend: kvm_pvm (software): 5 to 20 minutes, depending on host load"
truncate -s 64M "$TMP/disk.raw"
marker="[1af4:1042]"

# The console with the wall time each line arrived at, for the record.
t0=$(date +%s%N)
"$CALF" run --kernel "$KERNEL" -m 512M --disk "$TMP/disk.raw,format=raw" \
    --append "$APPEND" --expect "$marker" --timeout 2400 --report "$TMP/stock.json" \
    2>"$TMP/stock.err" </dev/null |
    perl -MTime::HiRes=time -ne 'BEGIN { $| = 1; $t = time } printf "[%6.1f s] %s", time - $t, $_' \
    >"$TMP/stock.out"
status=${PIPESTATUS[0]}
echo "# stock kernel: status $status after $(( ($(date +%s%N) - t0) / 1000000000 )) s"

milestone() {  # milestone TEXT DESCRIPTION
    local line
    line=$(grep -aF -m1 -- "$1" "$TMP/stock.out" | tr -d '\r')
    ok "$2" [ -n "$line" ]
    [ -n "$line" ] && echo "#   ${line:0:110}"
}
is "$status" 0 "Debian's stock kernel reaches the PCI scan of the virtio-blk disk (status $status)"
milestone "Linux version" "it starts and prints on the serial console"
milestone "Kernel command line: $APPEND" "with the command line calf gave it"
grep -qaE "Memory: [0-9]+K/52[0-9]{4}K available" "$TMP/stock.out"
is $? 0 "it sees 512 MiB of RAM"
milestone "smp: Brought up 1 node, 1 CPU" "it brings up its CPU"
milestone "ACPI: Interpreter enabled" "it runs calf's ACPI tables"
milestone "$marker" "its PCI scan finds the virtio-blk function"
if [ $status != 0 ]; then
    echo "# how far it got:"
    tail -5 "$TMP/stock.out" | tr -d '\r' | sed 's/^/#   /'
    sed 's/^/#   /' "$TMP/stock.err"
fi
done_testing
