#!/bin/bash
# The tools take their name from argv[0], as QEMU's do (issue 16): linked
# in as qemu-img and qemu-io, calf's output and exit status are QEMU's
# byte for byte, with no filter_names; started as calf-img and calf-io,
# they still say calf-img and calf-io.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 33

qemu_names
BIN=$TMP/bin
ln -s "$CALF_IMG" "$BIN/calf-img"
ln -s "$CALF_IO" "$BIN/calf-io"

# same DESC CMD...: calf under QEMU's name in $CDIR, QEMU in $QDIR: equal
same() { same_named "$@"; }

# same_stdin DESC INPUT CMD...: the same with INPUT on standard input
same_stdin() {
    local desc=$1 input=$2; shift 2
    is "$(printf '%s' "$input" | run_named "$CDIR" "$CPATH" "$@")" \
       "$(printf '%s' "$input" | run_named "$QDIR" "$QPATH" "$@")" "$desc"
}

# calf_says DESC EXPECTED CMD...: calf's stderr and status, run from $BIN
calf_says() {
    local desc=$1 want=$2; shift 2
    is "$(cd "$CDIR" && export PATH="$CPATH" && "$@" 2>&1 >/dev/null; echo "exit: $?")" \
       "$want" "$desc"
}

poke() { # file offset hexbytes...
    local f=$1 off=$2; shift 2
    printf "$(printf '\\x%s' "$@")" | dd of="$f" bs=1 seek=$((off)) conv=notrunc status=none
}

# the same images in both directories, made by QEMU's tools
mk() {
    qemu-img create -q -f qcow2 t.qcow2 1M &&
        qemu-img create -q -f qcow2 -b t.qcow2 -F qcow2 o.qcow2 &&
        qemu-img create -q -f qcow2 d.qcow2 64M &&
        qemu-io -c "write -P 0x61 0 1M" d.qcow2 >/dev/null &&
        cp d.qcow2 z.qcow2 && cp t.qcow2 k.qcow2 && cp t.qcow2 e.qcow2 || return 1
    # d: a leaked cluster (layout of 64k clusters: refblock at 0x20000)
    local c=$(( ($(stat -c %s d.qcow2) + 65535) / 65536 ))
    truncate -s $(( (c + 1) * 65536 )) d.qcow2
    poke d.qcow2 $((0x20000 + 2 * c)) 00 01
    # z: a data cluster whose refcount is 0, a corruption
    poke z.qcow2 $((0x20000 + 2 * 5)) 00 00
    # k: the corrupt bit (incompatible feature bit 1) set
    poke k.qcow2 79 02
    # e: a refcount for the cluster just past the end of the file, which
    # QEMU does not compare (no leak, the end offset unmoved)
    c=$(( ($(stat -c %s e.qcow2) + 65535) / 65536 ))
    poke e.qcow2 $((0x20000 + 2 * c)) 00 01
}
in_both mk || fail "making the images"

q_is_calf() { [ "$(cd "$CDIR" && PATH=$CPATH command -v qemu-img)" = "$BIN/qemu-img" ]; }
ok "qemu-img on the test's PATH is calf-img" q_is_calf

# qemu-img
first_words() { "$@" 2>&1 | head -1 | cut -d' ' -f1-2; }
same "qemu-img --version: the first words" first_words qemu-img --version
same "qemu-img -V: the first words" first_words qemu-img -V
same "qemu-img --help: the usage line" eval 'qemu-img --help | grep ^usage:'
same "qemu-img info of a missing file" qemu-img info /nonexistent
same "qemu-img: a bad option" qemu-img --bogus
same "qemu-img info: a bad option" qemu-img info --bogus
same "qemu-img: no command" qemu-img
same "qemu-img: an unknown command" qemu-img bogus
same "qemu-img create: a bad size" qemu-img create -f qcow2 n.qcow2 1Q
same "qemu-img create: a hex size with a suffix (warning)" qemu-img create -f qcow2 h.qcow2 0x1k
same "qemu-img map: a bad offset" qemu-img map --start-offset=1x t.qcow2
same "qemu-img create: backing file without its format" \
    qemu-img create -f qcow2 -b t.qcow2 n.qcow2 1M
same "qemu-img resize: shrinking without --shrink (warning)" qemu-img resize t.qcow2 512k
same "qemu-img amend: the backing file (the rebase hint)" \
    qemu-img amend -o backing_file=foo o.qcow2
same "qemu-img check: a leaked cluster" qemu-img check d.qcow2
same "qemu-img check: a corruption" qemu-img check z.qcow2
same "qemu-img check: a refcount past the end of the file" qemu-img check e.qcow2

# qemu-io
same "qemu-io --version: the first words" first_words qemu-io --version
same_stdin "qemu-io: the prompt, then quit" $'quit\n' qemu-io t.qcow2
same_stdin "qemu-io: prompts for each command, up to end of input" \
    $'read 0 512\nbogus\n' qemu-io t.qcow2
same "qemu-io: no prompt with -c" qemu-io -c quit t.qcow2
same "qemu-io: a write to a read-only image" qemu-io -r -c 'write 0 512' t.qcow2
same "qemu-io: a missing file" qemu-io -c quit /nonexistent
same "qemu-io: a bad cache mode" qemu-io -t bogus -c quit t.qcow2
same "qemu-io truncate: a bad preallocation mode" qemu-io -c 'truncate -m bogus 1M' t.qcow2
stderr_only() { "$@" 2>&1 >/dev/null; }
same "qemu-io: a bad option (getopt's message)" stderr_only qemu-io --bogus

# as calf-img and calf-io, the same messages name calf's tools
calf_says "calf-img: a missing file" \
    "calf-img: Could not open '/nonexistent': Could not open '/nonexistent': \
No such file or directory
exit: 1" calf-img info /nonexistent
calf_says "calf-img: a bad option, and the --help hint" \
    "calf-img: unrecognized option '--bogus'
Try 'calf-img --help' for more information
exit: 1" calf-img --bogus
calf_says "calf-img amend: the rebase hint" \
    "calf-img: Cannot amend the backing file
You can use 'calf-img rebase' instead.
exit: 1" calf-img amend -o backing_file=foo o.qcow2
is "$(cd "$CDIR" && export PATH="$CPATH" && printf 'quit\n' | calf-io t.qcow2; echo " exit: $?")" \
    "calf-io>  exit: 0" \
    "calf-io: its own prompt"
# a corrupt image: QEMU's own words, whatever the name
calf_says "calf-io: a corrupt image, in QEMU's words" \
    "calf-io: can't open device k.qcow2: qcow2: Image is corrupt; cannot be opened read/write
exit: 1" calf-io -c quit k.qcow2
same "qemu-io (calf): a corrupt image, as qemu-io says it" qemu-io -c quit k.qcow2

done_testing
