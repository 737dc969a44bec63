# Shared TAP helpers for the tool tests (tests/img-*.t, tests/io-*.t).
# Source it from a test: it sets CALF_IMG and CALF_IO, makes a temporary
# directory $TMP (removed at exit) and counts results; end the test with
# done_testing, which prints the plan and sets the exit status.

CALF_BUILD=${CALF_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
CALF_IMG=$CALF_BUILD/calf-img
CALF_IO=$CALF_BUILD/calf-io
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
t_num=0
t_fail=0

# Set TODO="reason" around checks of known, reported bugs: they are
# reported as TAP TODO tests and do not fail the file.
TODO=

_todo() { [ -n "$TODO" ] && echo " # TODO $TODO"; }

pass() { t_num=$((t_num + 1)); echo "ok $t_num - $*$(_todo)"; }

# fail DESC [DIAGNOSTICS]: diagnostics go out as "# " lines
fail() {
    t_num=$((t_num + 1))
    [ -z "$TODO" ] && t_fail=$((t_fail + 1))
    echo "not ok $t_num - $1$(_todo)"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'
    return 0
}

skip() { t_num=$((t_num + 1)); echo "ok $t_num # skip ${2:-$1}"; }

# ok DESC COMMAND...: passes when COMMAND exits with status 0
ok() {
    local desc=$1; shift
    local out
    if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc" "$out"; fi
}

# is GOT EXPECTED DESC: string equality, with a diff when they differ
is() {
    if [ "$1" == "$2" ]; then
        pass "$3"
    else
        fail "$3" "$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$1") | sed 's/^</expected:/; s/^>/got:     /')"
    fi
}

plan() { echo "1..$1"; t_planned=1; }

done_testing() {
    [ -z "${t_planned:-}" ] && echo "1..$t_num"
    [ "$t_fail" -eq 0 ]
    exit $?
}

# skip_all REASON: the whole file is skipped
skip_all() { echo "1..0 # SKIP $*"; exit 0; }

need_qemu() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || skip_all "$t is not installed"
    done
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
run_capture() {
    local dir=$1; shift
    local out err rc
    out=$(cd "$dir" && "$@" 2>"$TMP/.stderr"); rc=$?
    err=$(cat "$TMP/.stderr")
    printf 'stdout:\n%s\nstderr:\n%s\nexit: %s\n' "$out" "$err" "$rc" | filter_io | filter_names
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

# qcow2_works: true once calf's qcow2 driver reads an image qemu-img made.
# CALF_TEST_NO_QCOW2=1 pretends it does not (to exercise the skip paths).
qcow2_works() {
    [ -n "${CALF_TEST_NO_QCOW2:-}" ] && return 1
    if [ -z "${_qcow2_works:-}" ]; then
        _qcow2_works=no
        qemu-img create -q -f qcow2 "$TMP/.probe.qcow2" 1M >/dev/null 2>&1 &&
            "$CALF_IO" -c 'read 0 512' "$TMP/.probe.qcow2" >/dev/null 2>&1 &&
            _qcow2_works=yes
        rm -f "$TMP/.probe.qcow2"
    fi
    [ "$_qcow2_works" = yes ]
}
QCOW2_SKIP="qcow2 driver not available"

# driver_works FMT: the same check for any format qemu-img can create.
driver_works() {
    [ "$1" = qcow2 ] && { qcow2_works; return; }
    local probe=$TMP/.probe.$1
    qemu-img create -q -f "$1" "$probe" 1M >/dev/null 2>&1 &&
        "$CALF_IO" -f "$1" -c 'read 0 512' "$probe" >/dev/null 2>&1
    local r=$?
    rm -f "$probe"
    return $r
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
