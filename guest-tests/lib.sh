# Shared by the guest tests: TAP helpers and one way to boot a guest.
# Source it; it sets CALF, GUEST (bzImage) and GUEST_ELF, and skips the
# whole file when /dev/kvm cannot be used.

CALF_BUILD=${CALF_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
CALF=$CALF_BUILD/calf
GUEST=$CALF_BUILD/firmware/testguest.bzImage
GUEST_ELF=$CALF_BUILD/firmware/testguest.elf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
t_num=0
t_fail=0

need_kvm() {
    if [ ! -e /dev/kvm ]; then
        echo "1..0 # SKIP /dev/kvm does not exist"; exit 0
    fi
    if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        echo "1..0 # SKIP /dev/kvm is not accessible to $(id -un)"; exit 0
    fi
    for f in "$CALF" "$GUEST" "$GUEST_ELF"; do
        [ -e "$f" ] || { echo "1..0 # SKIP $f not built (run make)"; exit 0; }
    done
}

ok() {   # ok COND-STATUS DESCRIPTION
    t_num=$((t_num + 1))
    if [ "$1" = 0 ]; then
        echo "ok $t_num - $2"
    else
        echo "not ok $t_num - $2"
        t_fail=$((t_fail + 1))
    fi
}

# boot NAME ARGS...: runs calf, leaving $TMP/NAME.out (console),
# $TMP/NAME.err, and $status; prints how long the guest took.
boot() {
    local name=$1 t0 t1
    shift
    t0=$(date +%s%N)
    "$CALF" run "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    status=$?
    t1=$(date +%s%N)
    echo "# $name: status $status after $(( (t1 - t0) / 1000000 )) ms"
}

# has NAME TEXT: the console output of NAME contains TEXT
has() { grep -qF -- "$2" "$TMP/$1.out"; }
# has_err NAME TEXT: its stderr contains TEXT
has_err() { grep -qF -- "$2" "$TMP/$1.err"; }

show() {  # show NAME: its output as TAP comments, for a failing case
    # (a run stopped by --expect may end mid-line: add the newline)
    { cat "$TMP/$1.out"; echo; cat "$TMP/$1.err"; } | tr -d '\r' | sed 's/^/#   /'
}

crc32_of() {
    perl -MCompress::Zlib -e 'local $/; open my $f, "<", $ARGV[0] or die; printf "%08x", crc32(<$f>)' "$1"
}

done_testing() {
    echo "1..$t_num"
    [ "$t_fail" = 0 ]
}
