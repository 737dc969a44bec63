# Helpers of the tool and block-layer tests (tests/img-*.t, io-*.t,
# qcow2-*.t, blk-*.t, interop.t, crypto*.t ...) over the TAP core
# tests/tap.sh (plan, ok, is, pass, fail, skip, skip_all, need_cmd,
# done_testing; $CALF_BUILD, the scratch directory $TMP).  Source it from
# a test:  . "$(dirname "$0")/lib.sh"
# It sets CALF_IMG and CALF_IO, and makes $QDIR and $CDIR in $TMP.

. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
CALF_IMG=$CALF_BUILD/calf-img
CALF_IO=$CALF_BUILD/calf-io

# need_qemu CMD...: skips the file unless the QEMU tools CMD... are
# installed and calf-img and calf-io are built
need_qemu() {
    need_cmd "$@"
    [ -x "$CALF_IMG" ] && [ -x "$CALF_IO" ] || skip_all "calf-img/calf-io not built in $CALF_BUILD"
}

# The timing line of qemu-io and calf-io changes with every run: blank
# it out the way QEMU's iotests (_filter_qemu_io) do.
filter_io() {
    sed -e 's/[0-9]* ops; [0-9/:. sec]* ([0-9/.inf]* [EPTGMKiBbytes]*\/sec and [0-9/.inf]* ops\/sec)/X ops; XX:XX:XX.X (XXX YYY\/sec and XXX ops\/sec)/' \
        -e 's/^[0-9]*,[0-9]*,[0-9:.]*,[-0-9.naif]*,[-0-9.naif]*$/CSV REPORT/'
}

# Our tools name themselves; for comparisons they should read like QEMU's.
filter_names() { sed -e 's/calf-img/qemu-img/g' -e 's/calf-io/qemu-io/g'; }

# run_capture DIR CMD...: runs CMD inside DIR and prints stdout, stderr
# and the exit status as one comparable text.
run_capture() { _capture "$@" | filter_io | filter_names; }
_capture() {  # DIR CMD...: that text, unfiltered
    local dir=$1; shift
    local out err rc
    out=$(cd "$dir" && "$@" 2>"$TMP/.stderr"); rc=$?
    err=$(cat "$TMP/.stderr")
    printf 'stdout:\n%s\nstderr:\n%s\nexit: %s\n' "$out" "$err" "$rc"
}

# Two directories with the same file names, one for each tool.
QDIR=$TMP/qemu
CDIR=$TMP/calf
mkdir -p "$QDIR" "$CDIR"

# same_img DESC ARGS...: qemu-img ARGS in $QDIR and calf-img ARGS in $CDIR
# must print the same and exit the same.
same_img() {
    local desc=$1; shift
    is "$(run_capture "$CDIR" "$CALF_IMG" "$@")" "$(run_capture "$QDIR" qemu-img "$@")" "$desc"
}

# same_io DESC ARGS...: the same for qemu-io and calf-io.
same_io() {
    local desc=$1; shift
    is "$(run_capture "$CDIR" "$CALF_IO" "$@")" "$(run_capture "$QDIR" qemu-io "$@")" "$desc"
}

# convert_like_qemu DESC OUTFMT ARGS...: calf-img and qemu-img convert
# -O OUTFMT ARGS... into c.out and q.out (in the current directory); the
# two must read the same.  Returns non-zero, after a failed check, when
# calf-img's convert itself failed (the caller then skips its own checks).
convert_like_qemu() {
    local desc=$1 of=$2 out
    shift 2
    rm -f c.out q.out
    if ! out=$("$CALF_IMG" convert -O "$of" "$@" c.out 2>&1); then
        fail "$desc: calf convert" "$out"
        return 1
    fi
    qemu-img convert -O "$of" "$@" q.out
    ok "$desc: same as qemu-img" qemu-img compare -f "$of" -F "$of" c.out q.out
}

# in_both CMD...: runs a setup command (e.g. qemu-img create) in both dirs.
in_both() {
    (cd "$QDIR" && "$@") >/dev/null 2>&1 && (cd "$CDIR" && "$@") >/dev/null 2>&1
}

# driver_check FMT: one test, that calf-io reads an image of format FMT
# (qcow2, qcow) that qemu-img made.  Every driver is built in, so this
# failing is a regression, never a reason to skip: the tests after it run
# anyway (and fail too); this line names the cause.
driver_check() {
    local probe=$TMP/.probe.$1 out
    if ! out=$(qemu-img create -q -f "$1" "$probe" 1M 2>&1); then
        fail "qemu-img creates a $1 image" "$out"
        return 0
    fi
    ok "calf-io reads a $1 image that qemu-img made" \
        "$CALF_IO" -f "$1" -c 'read -P 0 0 512' "$probe"
    rm -f "$probe"
}

# qemu_retry CMD...: qemu-img's LUKS code times PBKDF2 with the thread's
# CPU clock, whose tick is coarse here: when a timing round reads 0 ms it
# gives up ("Unable to get accurate CPU usage") before writing anything,
# on a busy host often several times in a row.  Retried quietly; the last
# try shows its error.
qemu_retry() {
    local i
    for i in $(seq 20); do
        "$@" 2>/dev/null && return 0
    done
    "$@"
}

# consistent IMAGE: no corruption: qemu-img check finds none, leaks
# allowed.  An image with lazy refcounts is dirty after a crash and its
# refcounts may be stale, as in QEMU (iotest 039): then calf-img check -r
# all must make it clean.  Sets $why.
consistent() {
    local j; j=$(qemu-img check --output=json "$1" 2>&1)
    if ! grep -q '"corruptions"\|"check-errors": [1-9]' <<<"$j"; then why="leaks allowed"; return 0; fi
    if qemu-img info -U --output=json "$1" | grep -q '"dirty-flag": true' &&
       "$CALF_IMG" check -r all "$1" >/dev/null 2>&1 && qemu-img check "$1" >/dev/null 2>&1; then
        why="dirty image, stale refcounts repaired"; return 0
    fi
    why=$(tr -d '\n' <<<"$j" | cut -c1-300); return 1
}

# qemu_names: calf-img and calf-io linked in as qemu-img and qemu-io in
# $TMP/bin; CPATH finds them first, QPATH the real ones.  Then
# run_named DIR SEARCHPATH CMD... runs CMD found through SEARCHPATH (so
# argv[0] is the bare name, as QEMU's iotests run it) inside DIR and
# prints stdout, stderr and exit status as one text, timing lines blanked
# and names kept; same_named DESC CMD... compares calf's run in $CDIR
# with QEMU's in $QDIR.
qemu_names() {
    mkdir -p "$TMP/bin"
    ln -sf "$CALF_IMG" "$TMP/bin/qemu-img"
    ln -sf "$CALF_IO" "$TMP/bin/qemu-io"
    QPATH=$PATH
    CPATH=$TMP/bin:$PATH
}
run_named() {
    local dir=$1 path=$2
    shift 2
    PATH=$path _capture "$dir" "$@" | filter_io
}
same_named() {
    local desc=$1; shift
    is "$(run_named "$CDIR" "$CPATH" "$@")" "$(run_named "$QDIR" "$QPATH" "$@")" "$desc"
}
