#!/bin/bash
# QEMU 7.2's own iotests against calf (make test-iotests): calf-img and
# calf-io, linked in as qemu-img and qemu-io, run the bash iotests that
# support qcow2 and need no QEMU process, NBD or storage daemon, and so
# does the real qemu-img on the same list.  Prints both pass counts and
# fails when calf fails a test that qemu-img passes, unless
# tests/iotests-known lists it (with the reason).
#
#   scripts/iotests.sh [--calf-only] [TEST...]   (default: the whole list)
#
# The suite comes from Debian's `qemu` source package (the 7.2 that
# qemu-utils is), fetched with apt-get source into $IOTESTS_DIR (default
# build/iotests) when it is not there; IOTESTS_SRC names an unpacked
# qemu-iotests folder to use instead.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=${CALF_BUILD:-$here/build}
dir=${IOTESTS_DIR:-$build/iotests}
known=$here/tests/iotests-known
calf_only=false
[ "${1:-}" = --calf-only ] && { calf_only=true; shift; }

die() { echo "iotests: $*" >&2; exit 1; }

fetch() {
    local src=$dir/src
    [ -x "$src/qemu-iotests/check" ] && return 0
    command -v apt-get >/dev/null || die "no apt-get: set IOTESTS_SRC to an unpacked qemu-iotests"
    mkdir -p "$dir/dl" "$src" || die "cannot make $dir"
    if ! ls "$dir"/dl/qemu_7.2*.orig.tar.xz >/dev/null 2>&1; then
        # apt-get source needs a deb-src entry; add one beside the
        # machine's Debian source when there is none (root only).
        if ! grep -rqs 'deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            [ "$(id -u)" = 0 ] || die "no deb-src entry in /etc/apt and not root to add one"
            sed -n 's/^Types: deb$/Types: deb-src/p; /^URIs:\|^Suites:\|^Components:\|^Signed-By:/p; /^$/p' \
                /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/calf-deb-src.sources
            apt-get update -q >/dev/null 2>&1 || die "apt-get update failed"
        fi
        (cd "$dir/dl" && apt-get source --download-only -q qemu >/dev/null 2>&1) ||
            die "apt-get source --download-only qemu failed"
    fi
    local tarball
    tarball=$(ls "$dir"/dl/qemu_7.2*.orig.tar.xz | head -1)
    echo "iotests: unpacking tests/qemu-iotests from $(basename "$tarball")" >&2
    tar -xJf "$tarball" -C "$src" --strip-components=2 --wildcards \
        'qemu-*/tests/qemu-iotests/*' || die "cannot unpack $tarball"
    # check imports nothing from QEMU's python/ for the bash tests
    [ -x "$src/qemu-iotests/check" ] || die "no check script in $tarball"
}

if [ -n "${IOTESTS_SRC:-}" ]; then
    suite=$IOTESTS_SRC
else
    fetch
    suite=$dir/src/qemu-iotests
fi

# The list: bash tests for qcow2 (or any format) that start no QEMU,
# NBD server or storage daemon.
list_tests() {
    local f
    cd "$suite" || exit 1
    for f in [0-9][0-9][0-9] tests/*; do
        [ -f "$f" ] || continue
        case $f in *.out|*.py) continue ;; esac
        head -1 "$f" | grep -q bash || continue
        grep -Eq '_supported_fmt.*\b(qcow2|generic)\b' "$f" || continue
        grep -Eq 'common\.qemu|_launch_qemu|\$QEMU |QEMU_NBD|QSD_PROG|\$QSD|common\.nbd|_qemu_with|run_qemu|_nbd' \
            "$f" && continue
        echo "$f"
    done
}
if [ $# -gt 0 ]; then tests=("$@"); else mapfile -t tests < <(list_tests); fi

# run NAME IMG IO: the list with those programs; prints the tests that
# did not pass (one "fail T" or "notrun T" per line) into $dir/NAME.result
run() {
    local name=$1 img=$2 io=$3 out
    out=$dir/$name
    rm -rf "$out" && mkdir -p "$out/bin" "$out/test" "$out/sock"
    ln -s "$img" "$out/bin/qemu-img"
    ln -s "$io" "$out/bin/qemu-io"
    (cd "$suite" &&
     TEST_DIR=$out/test SOCK_DIR=$out/sock \
     QEMU_IMG_PROG=$out/bin/qemu-img QEMU_IO_PROG=$out/bin/qemu-io \
     QEMU_PROG=$(command -v qemu-system-x86_64 || echo /nonexistent) \
     QEMU_NBD_PROG=$(command -v qemu-nbd || echo /nonexistent) \
     QSD_PROG=$(command -v qemu-storage-daemon || echo /nonexistent) \
     ./check -qcow2 "${tests[@]}") > "$out/log" 2>&1
    {
        sed -n 's/^Failures: //p' "$out/log" | tr ' ' '\n' | sed '/^$/d; s/^/fail /'
        sed -n 's/^Not run: //p' "$out/log" | tr ' ' '\n' | sed '/^$/d; s/^/notrun /'
    } > "$out.result"
    grep -q 'iotests\|done' "$out/log" || { cat "$out/log" >&2; die "$name: check did not run"; }
}

command -v python3 >/dev/null || die "check needs python3"
[ -x "$build/calf-img" ] && [ -x "$build/calf-io" ] || die "build calf-img and calf-io first"
run calf "$build/calf-img" "$build/calf-io"
passed() { # passed NAME T: T passed in NAME's run
    ! grep -qx "[a-z]* $2" "$dir/$1.result"
}
total=${#tests[@]}
ncalf=0
for t in "${tests[@]}"; do passed calf "$t" && ncalf=$((ncalf + 1)); done
if $calf_only; then
    echo "calf passes $ncalf of $total iotests"
    sed 's/^/  /' "$dir/calf.result"
    exit 0
fi

peer_img=$(command -v qemu-img) && peer_io=$(command -v qemu-io) ||
    die "the peer needs qemu-img and qemu-io (qemu-utils)"
run qemu "$peer_img" "$peer_io"
npeer=0 both=0 bad=0
for t in "${tests[@]}"; do
    passed qemu "$t" || continue
    npeer=$((npeer + 1))
    if passed calf "$t"; then
        both=$((both + 1))
    elif grep -q "^$t " "$known" 2>/dev/null; then
        echo "known: $(grep "^$t " "$known")"
    else
        echo "FAIL $t: qemu-img passes it, calf does not (see $dir/calf/test/$t.out.bad)"
        bad=$((bad + 1))
    fi
done
for t in "${tests[@]}"; do
    passed calf "$t" && ! passed qemu "$t" && echo "calf passes $t, which qemu-img does not"
done
echo "calf passes $ncalf of $total iotests; qemu-img passes $npeer"
echo "calf passes $both of the $npeer that qemu-img passes"
[ "$bad" = 0 ]
