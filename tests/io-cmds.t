#!/bin/bash
# calf-io against qemu-io, command by command: output (timing filtered),
# errors, exit status, and the image bytes afterwards.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io

base=$TMP/base.raw
qemu-img create -q -f raw "$base" 2M
qemu-io -f raw -c 'write -P 1 0 4k' -c 'write -P 2 64k 128k' -c 'write -P 3 1000k 4k' "$base" >/dev/null

# io_case DESC FMTOPTS CMD...: fresh copies of base in both dirs, the same
# commands through both tools, then the images must be identical.
io_case() {
    local desc=$1 opts=$2; shift 2
    local args=() c
    for c in "$@"; do args+=(-c "$c"); done
    cp --sparse=always "$base" "$QDIR/t.img"
    cp --sparse=always "$base" "$CDIR/t.img"
    same_io "$desc" $opts "${args[@]}" t.img
    local todo=$TODO
    TODO= # the known differences are in the output, not in the data
    ok "$desc: same image afterwards" cmp "$QDIR/t.img" "$CDIR/t.img"
    TODO=$todo
}

cases=(
    'read 0 512' 'read -P 1 0 4k' 'read -P 2 64k 128k' 'read -P 0xac 0 512' 'read -v 510 40'
    'read -C 0 512' 'read -q 0 4k' 'read -l 10 -s 5 -P 1 0 64' 'read -l 10 -s 60 -P 1 0 64'
    'read -s 5 0 64' 'read 2M 512' 'read 0 2G' 'read 0 x' 'read -P 300 0 512' 'read 0'
    'read -x 0 1' 'read 513 100' 'read 0 0' 'read -b 0 512' 'r 0 512'
    'write 0 4k' 'write -P 0x55 3k 5k' 'write -P 1 1000000 100000' 'write -z 8k 4k'
    'write -z -u 0 4k' 'write -z -P 1 0 512' 'write -u 0 512' 'write -c -z 0 512' 'write -c 0 64k'
    'write 0 2G' 'write -z 0 2G' 'write -z -n 0 3G' 'write -n 0 512' 'write -b -z 0 1'
    'write -f -c 0 512' 'write -f 0 512' 'write 2M 1' 'write -q 0 1' 'write -C 0 1' 'w 0 1'
    'writev 0 100' 'writev -P 7 512 1k 2k' 'writev 0' 'readv -P 0 4k 512 513' 'readv 0 x'
    'readv -v 0 16 16' 'readv -P 1 0 4k 4k' 'aio_read 0 512' 'aio_write -P 1 0 512'
    'aio_write -z 0 64k' 'aio_write -u 0 1' 'aio_flush' 'flush' 'discard 0 4k' 'discard -q 0 512'
    'discard 2M 1' 'discard 0' 'discard 0 3G' 'alloc 0 2M' 'alloc 2M' 'alloc 0' 'alloc 1 512'
    'alloc 0 100' 'alloc 0 x' 'map' 'map -x' 'info' 'length' 'length 1' 'truncate 1M'
    'truncate 4M' 'truncate -1' 'truncate 1x' 'truncate' 'bogus' 'help' 'help read' ''
    'read 0x10 0x1k' 'read 0 1.5k' 'read 1.k 1' 'read 0 1e3' 'read 0 9223372036854775808'
    'aio_read 2M 512' 'readv 2M 512' 'writev 2M 512' 'aio_write 2M 512' 'aio_write -z 2M 512'
    'aio_read -P 2 0 512' 'aio_read -v 0 32' 'aio_read -C 0 1' 'aio_write -f 0 1'
    'aio_write -z -P 1 0 1' 'aio_read -i 0 1' 'aio_write -i 0 1' 'aio_write -z 0 1 2'
    'aio_read 0 x' 'aio_write -P 0x33 0 512 512' 'aio_read -x 0 1' 'aio_read 0 3G'
)
for c in "${cases[@]}"; do
    TODO=
    case $c in
    help) TODO="calf-io has no blkdebug breakpoint commands (break, resume, ...)" ;;
    esac
    io_case "$c" "-f raw" "$c"
done
TODO=

printf 'abc' >"$QDIR/pat.bin"; cp "$QDIR/pat.bin" "$CDIR/pat.bin"
: >"$QDIR/empty.bin"; : >"$CDIR/empty.bin"
io_case "write -s repeats the file" "-f raw" 'write -s pat.bin 0 10' 'read -v 0 16' \
    'write -s pat.bin 1 2' 'write -s t.img 100 70000' 'read -v 64k 32'
io_case "write -s with an empty file" "-f raw" 'write -s empty.bin 0 1'
io_case "write -s with a missing file" "-f raw" 'write -s nonexist.bin 0 1'
io_case "write -s with -P" "-f raw" 'write -s pat.bin -P 1 0 1'
io_case "sequence: write, read back, map" "-f raw" 'write -P 9 128k 64k' 'read -P 9 128k 64k' 'map'
io_case "a failed command makes the exit status 1" "-f raw" 'read 2M 1' 'read -q 0 1'
io_case "quit stops" "-f raw" 'quit' 'bogus'
io_case "read-only: writes refused" "-r -f raw" 'write 0 1' 'writev 0 1' 'discard 0 512' \
    'truncate 0' 'aio_write 0 512' 'read -q 0 1'
io_case "-U without -r" "-f raw -U" 'read -q 0 1'
io_case "-U -r" "-f raw -r -U" 'read -P 1 0 1'
io_case "-t bogus" "-f raw -t bogus" 'read -q 0 1'
io_case "-t writethrough" "-f raw -t writethrough" 'write -P 4 0 4k' 'read -P 4 0 4k'
io_case "-n" "-f raw -n" 'read 0 4k' 'write -P 3 4k 4k' 'read -P 3 4k 4k'
io_case "probing warns about raw" "" 'read -q 0 1'
io_case "no probe warning with -r" "-r" 'length'
script=$'write -P 4 0 4k\nread -P 4 0 4k\nlength\nbogus\nquit\nlength\n'
cp --sparse=always "$base" "$QDIR/s.img"; cp --sparse=always "$base" "$CDIR/s.img"
is "$(cd "$CDIR" && printf '%s' "$script" | "$CALF_IO" -f raw s.img 2>&1 | filter_io | filter_names)" \
   "$(cd "$QDIR" && printf '%s' "$script" | qemu-io -f raw s.img 2>&1 | filter_io)" \
   "commands from standard input" < /dev/null
same_io "missing image" -c 'read 0 1' nonexist
same_io "no image" -c 'length'
io_case "-n unaligned" "-f raw -n" 'read 1 511'
done_testing
