#!/bin/bash
# extract-vmlinux.sh BZIMAGE OUT: writes the uncompressed ELF vmlinux a
# bzImage carries.  Same idea as the kernel's scripts/extract-vmlinux:
# find each compressor's magic in the file, decompress from there, keep
# the first result that is an ELF.  (Booting the ELF skips the kernel's
# own decompressor, which takes minutes on an emulating KVM backend.)
set -u
in=$1 out=$2
[ -r "$in" ] || { echo "extract-vmlinux: cannot read $in" >&2; exit 1; }

# offsets MAGIC-HEX: every offset of the byte string in the file
offsets() {
    perl -e 'local $/; open my $f, "<", $ARGV[0] or die "$ARGV[0]: $!\n";
             my $d = <$f>; my $m = pack "H*", $ARGV[1]; my $i = -1;
             while (($i = index($d, $m, $i + 1)) >= 0) { print "$i\n" }' "$in" "$1"
}

try() {  # try MAGIC-HEX COMMAND...: decompress from each place MAGIC is
    local magic=$1 off
    shift
    command -v "$1" >/dev/null || return 1
    for off in $(offsets "$magic"); do
        tail -c +$((off + 1)) "$in" | "$@" >"$out" 2>/dev/null
        [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] && return 0
    done
    return 1
}

try fd377a585a00 xz -dc --single-stream ||   # xz (Debian's choice)
try 1f8b08 gzip -dc ||
try 28b52ffd zstd -dc ||
try 02214c18 lz4 -dc ||
{ rm -f "$out"; echo "extract-vmlinux: no compressed ELF found in $in" >&2; exit 1; }
