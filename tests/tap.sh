# The one TAP core under every test script (tests/*.t, guest-tests/*.t,
# guest-tests/slow/*.t).  tests/lib.sh (tool and block-layer helpers) and
# guest-tests/lib.sh (guest helpers) source it; a test that needs neither
# sources it directly:  . "$(dirname "$0")/tap.sh"
#
# It sets CALF_BUILD, the build directory (the Makefile passes it; by
# default build/ at the top of the tree), and TMP, a scratch directory
# made with mktemp -d and removed at exit (with whatever at_exit adds).
# t_num counts the tests so far and t_fail the failed ones; a script may
# add to t_fail for a failure that is not a test line of its own.
#
# Every verb that reports a test returns 0, pass or fail, so that
# `COND && pass DESC || fail DESC` reports exactly one result.  Any failed
# test makes the script exit non-zero, through done_testing or any other
# way it ends.

CALF_BUILD=${CALF_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build}
TMP=$(mktemp -d)
t_num=0
t_fail=0
_tap_plan=
_tap_cleanup=()

# TODO="reason" around checks of known, reported bugs: they are reported
# as TAP TODO tests and do not fail the file.  Set it back to empty after.
TODO=

# at_exit CMD: run the shell command CMD at exit, before $TMP is removed
# (unmount, kill helpers); instead of a trap of the script's own.
at_exit() { _tap_cleanup+=("$1"); }

_tap_exit() {
    local _tap_rc=$? _tap_c
    for _tap_c in "${_tap_cleanup[@]}"; do eval "$_tap_c"; done
    rm -rf "$TMP"
    [ "$_tap_rc" = 0 ] && [ "$t_fail" -gt 0 ] && _tap_rc=1
    exit "$_tap_rc"
}
trap _tap_exit EXIT

# diag TEXT...: TEXT (any number of lines) as TAP comments, "# " lines
diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

# _tap_line STATUS DESC: the result line; a DESC of several lines keeps
# its first line there and the rest follows as comments (a result line
# must be one line, or the rest could read as TAP)
_tap_line() {
    local first=${2%%$'\n'*}
    echo "$1 $t_num - $first${TODO:+ # TODO $TODO}"
    [ "$first" = "$2" ] || diag "${2#*$'\n'}"
}

# plan N: announce N tests up front (otherwise done_testing prints the
# plan after the tests); done_testing fails the file when the count is off
plan() { echo "1..$1"; _tap_plan=$1; }

# pass DESC...: one passing test
pass() { t_num=$((t_num + 1)); _tap_line ok "$*"; }

# fail DESC [DIAGNOSTICS]: one failing test; DIAGNOSTICS (any number of
# lines) follow it as comments
fail() {
    t_num=$((t_num + 1))
    [ -z "$TODO" ] && t_fail=$((t_fail + 1))
    _tap_line "not ok" "$1"
    [ -n "${2:-}" ] && diag "$2"
    return 0
}

# ok DESC CMD...: runs CMD (a command or shell function, in a subshell);
# passes when it exits 0, else fails with its stdout and stderr shown
ok() {
    local desc=$1 out
    if [ $# -lt 2 ]; then fail "$desc" "ok: no command to run (ok DESC CMD...)"; return 0; fi
    shift
    if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc" "$out"; fi
}

# is GOT EXPECTED DESC: passes when the two strings are equal, else fails
# with a diff of them (a status: is $? 0 DESC, is "$status" 1 DESC)
is() {
    if [ $# -ne 3 ]; then fail "${3:-is}" "is: $# arguments (is GOT EXPECTED DESC)"; return 0; fi
    if [ "$1" == "$2" ]; then
        pass "$3"
    else
        fail "$3" "$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$1") | sed 's/^</expected:/; s/^>/got:     /')"
    fi
}

# relay PREFIX CMD...: the results CMD prints as TAP ("ok N - DESC",
# "not ok N - DESC": a C test program's) as tests of this file, named
# PREFIX DESC; its other lines are dropped
relay() {
    local prefix=$1 line
    shift
    while read -r line; do
        case $line in
            "ok "[0-9]*" - "*) pass "$prefix${line#* - }" ;;
            "not ok "[0-9]*" - "*) fail "$prefix${line#* - }" ;;
        esac
    done < <("$@")
}

# skip REASON [DESC...]: a test not run, "ok N # skip REASON"; with
# DESCs, one skipped test for each, "ok N # skip DESC: REASON"
skip() {
    local reason=$1 d
    shift
    [ $# -eq 0 ] && set -- ""
    for d; do
        t_num=$((t_num + 1))
        echo "ok $t_num # skip ${d:+$d: }$reason"
    done
}

# skip_all REASON: the whole file is skipped ("1..0 # SKIP REASON"); exits
skip_all() { echo "1..0 # SKIP $*"; exit 0; }

# need_cmd CMD...: skips the whole file unless every CMD is installed
need_cmd() {
    local c
    for c; do
        command -v "$c" >/dev/null || skip_all "$c is not installed"
    done
}

# done_testing: ends the file: prints the plan if plan did not, and exits
# non-zero when a test failed or the count differs from the plan
done_testing() {
    if [ -z "$_tap_plan" ]; then
        echo "1..$t_num"
    elif [ "$t_num" -ne "$_tap_plan" ]; then
        diag "planned $_tap_plan tests, ran $t_num"
        exit 1
    fi
    [ "$t_fail" -eq 0 ]
    exit $?
}
