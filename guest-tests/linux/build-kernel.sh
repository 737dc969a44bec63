#!/bin/bash
# Builds the small Linux guest (an ELF vmlinux) from Debian's
# linux-source-6.1 with kernel.config, once: the result is cached in
# OUT/vmlinux and rebuilt only when kernel.config changes.
#   build-kernel.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
tarball=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -1)
[ -n "$tarball" ] || { echo "build-kernel: linux-source-6.1 is not installed" >&2; exit 1; }
stamp=$(cat "$here/kernel.config" "$tarball" | cksum | cut -d' ' -f1)
if [ -f "$out/vmlinux" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi
src=$out/src
if [ ! -f "$src/Makefile" ]; then
    echo "build-kernel: unpacking $tarball" >&2
    rm -rf "$src" && mkdir -p "$src"
    tar -xf "$tarball" -C "$src" --strip-components=1
fi
cd "$src"
echo "build-kernel: configuring (tinyconfig + kernel.config)" >&2
make -s ARCH=x86_64 tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" >/dev/null
make -s ARCH=x86_64 olddefconfig >/dev/null
echo "build-kernel: building vmlinux with $(nproc) jobs" >&2
start=$(date +%s)
make -s ARCH=x86_64 -j"$(nproc)" vmlinux >/dev/null
cp vmlinux "$out/vmlinux"
echo "$stamp" >"$out/stamp"
echo "build-kernel: done in $(( $(date +%s) - start )) s" >&2
