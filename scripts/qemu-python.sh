#!/bin/bash
# QEMU 7.2's Python QMP client (python/qemu/qmp, the `qemu.qmp` package
# and its qmp-shell) for the QMP tests: unpacked from Debian's `qemu`
# source package into $CALF_BUILD/qemu-python when it is not there, the
# tarball fetched with apt-get source as scripts/iotests.sh does (into
# the same $CALF_BUILD/iotests/dl).  Prints the directory to put on
# PYTHONPATH; exits 1 with the reason on stderr when it cannot.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=${CALF_BUILD:-$here/build}
dl=$build/iotests/dl
dest=$build/qemu-python

die() { echo "qemu-python: $*" >&2; exit 1; }

if [ ! -e "$dest/qemu/qmp/qmp_client.py" ]; then
    command -v python3 >/dev/null || die "python3 is not installed"
    if ! ls "$dl"/qemu_7.2*.orig.tar.xz >/dev/null 2>&1; then
        command -v apt-get >/dev/null || die "no apt-get to fetch QEMU's source"
        grep -rqs 'deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ ||
            die "no deb-src entry in /etc/apt (scripts/iotests.sh adds one as root)"
        mkdir -p "$dl" || die "cannot make $dl"
        (cd "$dl" && apt-get source --download-only -q qemu >/dev/null 2>&1) ||
            die "apt-get source --download-only qemu failed"
    fi
    tarball=$(ls "$dl"/qemu_7.2*.orig.tar.xz | head -1)
    tmp=$dest.tmp.$$
    rm -rf "$tmp" && mkdir -p "$tmp" || die "cannot make $tmp"
    tar -xJf "$tarball" -C "$tmp" --strip-components=2 --wildcards \
        'qemu-*/python/qemu/qmp/*' || die "cannot unpack $tarball"
    [ -e "$tmp/qemu/qmp/qmp_client.py" ] || die "no python/qemu/qmp in $tarball"
    rm -rf "$dest" && mv "$tmp" "$dest" || die "cannot make $dest"
fi
echo "$dest"
