#!/bin/bash
# Builds the small Linux guest from Debian's linux-source-6.1 with
# kernel.config, once: an ELF vmlinux (what the tests boot) and a
# bzImage of the same build (what QEMU's -kernel needs for bench/boot:
# the config has no PVH note).  Both are kept in OUT/ and in a per-user cache ($CALF_CACHE, default
# ~/.cache/calf), keyed by kernel.config and the source tarball, so a
# fresh clone or `make clean` does not pay the build again.  Concurrent
# callers (make test runs two Linux test files) wait for one build.
# EXTRA, if given, is a config fragment merged after kernel.config (a
# variant such as kvm-guest.config, built in its own OUT).
#   build-kernel.sh OUT [EXTRA]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
extra=${2:+$(cd "$(dirname "$2")" && pwd)/$(basename "$2")}
tarball=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -1 || true)
[ -n "$tarball" ] || { echo "build-kernel: linux-source-6.1 is not installed" >&2; exit 1; }
stamp=$(cat "$here/kernel.config" ${extra:+"$extra"} "$tarball" | cksum | cut -d' ' -f1)
cache=${CALF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/calf}/linux-$stamp

exec 9>"$out/.lock"
flock 9
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi
if [ -f "$cache/vmlinux" ] && [ -f "$cache/bzImage" ] &&
   cp "$cache/vmlinux" "$out/vmlinux.new" 2>/dev/null && cp "$cache/bzImage" "$out/bzImage.new" 2>/dev/null; then
    mv "$out/vmlinux.new" "$out/vmlinux"
    mv "$out/bzImage.new" "$out/bzImage"
    echo "$stamp" >"$out/stamp"
    echo "build-kernel: taken from the cache $cache" >&2
    exit 0
fi
rm -f "$out/stamp"
src=$out/src
if [ ! -f "$src/Makefile" ]; then
    echo "build-kernel: unpacking $tarball" >&2
    rm -rf "$src" && mkdir -p "$src"
    tar -xf "$tarball" -C "$src" --strip-components=1
fi
cd "$src"
echo "build-kernel: configuring (tinyconfig + kernel.config${extra:+ + ${extra##*/}})" >&2
make -s ARCH=x86_64 tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" ${extra:+"$extra"} >/dev/null 2>&1
make -s ARCH=x86_64 olddefconfig >/dev/null
echo "build-kernel: building vmlinux and bzImage with $(nproc) jobs (a few minutes)" >&2
start=$(date +%s)
make -s ARCH=x86_64 -j"$(nproc)" vmlinux bzImage >/dev/null
for f in vmlinux arch/x86/boot/bzImage; do
    cp "$f" "$out/${f##*/}.new" && mv "$out/${f##*/}.new" "$out/${f##*/}"
done
echo "$stamp" >"$out/stamp"
echo "build-kernel: done in $(( $(date +%s) - start )) s" >&2
if mkdir -p "$cache" 2>/dev/null && cp arch/x86/boot/bzImage "$cache/bzImage.new" 2>/dev/null &&
   cp vmlinux "$cache/vmlinux.new" 2>/dev/null; then
    mv "$cache/bzImage.new" "$cache/bzImage"
    mv "$cache/vmlinux.new" "$cache/vmlinux"
fi
