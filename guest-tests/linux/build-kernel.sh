#!/bin/bash
# Builds the small Linux guest (an ELF vmlinux) from Debian's
# linux-source-6.1 with kernel.config, once: the result is kept in
# OUT/vmlinux and in a per-user cache ($CALF_CACHE, default
# ~/.cache/calf), keyed by kernel.config and the source tarball, so a
# fresh clone or `make clean` does not pay the build again.  Concurrent
# callers (make test runs two Linux test files) wait for one build.
#   build-kernel.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
tarball=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -1 || true)
[ -n "$tarball" ] || { echo "build-kernel: linux-source-6.1 is not installed" >&2; exit 1; }
stamp=$(cat "$here/kernel.config" "$tarball" | cksum | cut -d' ' -f1)
cache=${CALF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/calf}/linux-$stamp

exec 9>"$out/.lock"
flock 9
if [ -f "$out/vmlinux" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi
if [ -f "$cache/vmlinux" ] && cp "$cache/vmlinux" "$out/vmlinux.new" 2>/dev/null; then
    mv "$out/vmlinux.new" "$out/vmlinux"
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
echo "build-kernel: configuring (tinyconfig + kernel.config)" >&2
make -s ARCH=x86_64 tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" >/dev/null 2>&1
make -s ARCH=x86_64 olddefconfig >/dev/null
echo "build-kernel: building vmlinux with $(nproc) jobs (a few minutes)" >&2
start=$(date +%s)
make -s ARCH=x86_64 -j"$(nproc)" vmlinux >/dev/null
cp vmlinux "$out/vmlinux.new" && mv "$out/vmlinux.new" "$out/vmlinux"
echo "$stamp" >"$out/stamp"
echo "build-kernel: done in $(( $(date +%s) - start )) s" >&2
if mkdir -p "$cache" 2>/dev/null && cp vmlinux "$cache/vmlinux.new" 2>/dev/null; then
    mv "$cache/vmlinux.new" "$cache/vmlinux"
fi
