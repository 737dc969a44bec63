#!/bin/bash
# Console input: bytes piped or redirected into calf run reach the guest's
# COM1 (the test guest's ct.echo=1 sends them back until a line "end"),
# none lost when there are more than the UART's 16-byte FIFO holds; end
# of input does not end the VM; Ctrl-A x quits only on a terminal (on a
# pipe it is two bytes for the guest).
. "$(dirname "$0")/lib.sh"
need_kvm

# echoed NAME: what the guest sent back, between its two markers
echoed() {
    perl -0777 -ne 'print $1 if /echo: ready\r\n(.*?)calf-test: echo: \d+ bytes/s' "$TMP/$1.out"
}

# run_echo NAME INPUT-FILE [calf args]: calf with the file on stdin
run_echo() {
    local name=$1 input=$2 t0 t1
    shift 2
    t0=$(date +%s%N)
    "$CALF" run --kernel "$GUEST" --append "ct.echo=1" "$@" \
        <"$input" >"$TMP/$name.out" 2>"$TMP/$name.err"
    status=$?
    t1=$(date +%s%N)
    echo "# $name: status $status after $(( (t1 - t0) / 1000000 )) ms"
}

printf 'hello calf\n\001x is not an escape on a pipe\nend\n' >"$TMP/short.in"
cat "$TMP/short.in" | "$CALF" run --kernel "$GUEST" --append "ct.echo=1" \
    --timeout 60 --report "$TMP/pipe.json" >"$TMP/pipe.out" 2>"$TMP/pipe.err"
status=$?
is "$status" 1 "piped input reaches the guest, which ends the run itself (status $status)"
[ $status = 1 ] || show pipe
echoed pipe | cmp -s - "$TMP/short.in"; is $? 0 "the guest echoed every byte, Ctrl-A x included, unchanged"
ok "Ctrl-A x on a pipe did not quit" grep -q '"exit_reason": "debug-exit"' "$TMP/pipe.json"

perl -e 'srand(3); for (1..100) { print join("", map { chr(32 + int(rand(95))) } 1..40), "\n" } print "end\n"' >"$TMP/long.in"
run_echo long "$TMP/long.in" --timeout 120
is "$status" 1 "a 4 KiB file on stdin (256 times the FIFO) goes through (status $status)"
echoed long | cmp -s - "$TMP/long.in"; is $? 0 "byte for byte, in order"
has long "echo: $(wc -c <"$TMP/long.in") bytes"; is $? 0 "the guest counted them all"

# calf reads the end of input as soon as the UART has taken the bytes
# before it, and handles it before a signal that comes after the echo of
# those bytes: then SIGTERM, not the end of input, must end the run.
# (--timeout 600 only guards against a hang.)
printf 'no end line' >"$TMP/eof.in"
"$CALF" run --kernel "$GUEST" --append "ct.echo=1" --timeout 600 --report "$TMP/eof.json" \
    <"$TMP/eof.in" >"$TMP/eof.out" 2>"$TMP/eof.err" &
pid=$!
wait_out $pid eof "no end line"
kill -TERM $pid 2>/dev/null
wait $pid
status=$?
is "$status" 143 "end of input does not end the VM: it runs on until SIGTERM (status $status)"
ok "and the bytes before the end of input arrived" has eof "no end line"

# A terminal: script(1) gives calf a pty.  Input is sent only once the
# guest is ready, so no timing is assumed.
if command -v script >/dev/null && command -v mkfifo >/dev/null; then
    mkfifo "$TMP/tty.in"
    script -qec "'$CALF' run --kernel '$GUEST' --append ct.echo=1 --timeout 60 --report '$TMP/tty.json'" \
        /dev/null <"$TMP/tty.in" >"$TMP/tty.out" 2>"$TMP/tty.err" &
    pid=$!
    exec 3>"$TMP/tty.in"
    wait_for() { for i in $(seq 600); do grep -q "$1" "$TMP/tty.out" && return 0; sleep 0.1; done; return 1; }
    wait_for "echo: ready"
    printf 'typed on a tty\r' >&3
    wait_for "typed on a tty"
    printf '\001x' >&3
    wait $pid
    status=$?
    exec 3>&-
    is "$status" 0 "on a terminal, Ctrl-A x quits with status 0 (got $status)"
    ok "report says quit" grep -q '"exit_reason": "quit"' "$TMP/tty.json"
    ok "what was typed before reached the guest" has tty "typed on a tty"
else
    skip "script(1) or mkfifo missing" "Ctrl-A x quits on a terminal" "report says quit" "typed text reached the guest"
fi

# The UART's registers (ct.uart=1: divisor latch, LSR, loopback, IIR and
# the THR-empty interrupt) behave the same whether KVM buffers THR writes
# (calf's default while THRI is off: one exit a byte less) or not, and
# as QEMU's 16550A does.
boot uart --kernel "$GUEST" --append "ct.uart=1" --timeout 60 --report "$TMP/uart.json"
is "$status" 1 "UART register checks pass with THR writes buffered (status $status)"
[ $status = 1 ] || show uart
CALF_NO_COALESCED=1 boot uartx --kernel "$GUEST" --append "ct.uart=1" --timeout 60 --report "$TMP/uartx.json"
is "$status" 1 "and with every THR write an exit (status $status)"
[ $status = 1 ] || show uartx
a=$(perl -ne 'print $1 if /"io": (\d+)/' "$TMP/uart.json"); b=$(perl -ne 'print $1 if /"io": (\d+)/' "$TMP/uartx.json")
is $(( ${a:-0} * 3 > ${b:-0} * 2 )) 0 "buffered THR writes save the guest's output exits ($a I/O exits, $b without)"
if QEMU=$(command -v qemu-system-x86_64); then
    timeout 60 "$QEMU" -enable-kvm -M microvm -m 256 -nodefaults -no-user-config -nographic \
        -no-reboot -serial stdio -monitor none -device isa-debug-exit,iobase=0x501,iosize=2 \
        -kernel "$GUEST_ELF" -append "ct.uart=1" >"$TMP/quart.out" 2>&1 </dev/null
    # (the verdict may fail on microvm's missing MP table: read the UART lines)
    grep -q "calf-test: uart checked" "$TMP/quart.out" && ! grep -q "calf-test: uart:" "$TMP/quart.out"
    r=$?
    is $r 0 "the same checks pass on QEMU's 16550A (-M microvm)"
    [ $r = 0 ] || show quart
else
    skip "qemu-system-x86_64 missing" "the UART checks on QEMU"
fi

! grep -qE "Sanitizer|runtime error" "$TMP"/*.err; is $? 0 "no sanitizer report on any run's stderr"

done_testing
