#!/bin/bash
# A failed fdatasync makes every later flush of that open image fail
# (tests/unit/blk-syncfail.c, QEMU's file-posix does the same): raw and
# qcow2; the qcow2 image is then judged by qemu-img check and read back
# with qemu-io.
. "$(dirname "$0")/tap.sh"
need_cmd qemu-img qemu-io
[ -x "$CALF_BUILD/tests/blk-syncfail" ] || skip_all "blk-syncfail is not built"
plan 23
run() {  # run LABEL ARGS...
    local label=$1
    shift
    local line
    while read -r line; do
        case $line in
            "ok "[0-9]*" - "*) pass "$label: ${line#* - }" ;;
            "not ok "[0-9]*" - "*) fail "$label: ${line#* - }" ;;
            "#"*) echo "$line" ;;
        esac
    done < <("$CALF_BUILD/tests/blk-syncfail" "$@" 2>&1)
}
qemu-img create -q -f raw "$TMP/s.raw" 256K
run raw raw "$TMP/s.raw"
qemu-img create -q -f qcow2 "$TMP/s.qcow2" 256K
run qcow2 qcow2 "$TMP/s.qcow2"
# exit 3: leaks only (the data cluster whose L2 entry never went out)
qemu-img check -q "$TMP/s.qcow2" >/dev/null 2>&1; st=$?
if [ $st = 0 ] || [ $st = 3 ]; then pass "qcow2: qemu-img check finds no corruption (leaks allowed)"
else fail "qcow2: qemu-img check finds no corruption (leaks allowed)" "$(qemu-img check "$TMP/s.qcow2" 2>&1)"; fi
out=$(qemu-io -f qcow2 -c "read -P 1 0 64k" -c "read -P 0 64k 64k" "$TMP/s.qcow2" 2>&1)
if echo "$out" | grep -q "Pattern verification failed\|Could not\|error"; then
    fail "qcow2: qemu-io reads the flushed write, and zeros where the sync failed" "$out"
else pass "qcow2: qemu-io reads the flushed write, and zeros where the sync failed"; fi
# a create whose sync failed leaves nothing behind for the next open
run create create "$TMP/c.qcow2" "$TMP/c.link"
# a flush that starts while another's fdatasync is in flight gets its error
qemu-img create -q -f raw "$TMP/t.raw" 256K
run concurrent concurrent "$TMP/t.raw"
