#!/bin/bash
# The monitor's savevm, loadvm and delvm (QEMU's HMP commands through
# QMP's human-monitor-command, vmm/hmp-snapshot.c) on a running test
# guest, driven by QEMU 7.2's own Python QMP client
# (guest-tests/qmp-savevm.py): savevm pauses, saves into the qcow2
# disk and resumes; loadvm puts the guest back where it was saved (its
# tick counter goes back and counts on); a missing snapshot is an
# "Error: " line and leaves the VM paused, as in QEMU; delvm deletes.
# The image then holds only the last save, with its VM state, and
# qemu-img check is clean.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd python3 qemu-img
QEMU_PY=$(CALF_BUILD=$CALF_BUILD "$(dirname "$0")/../scripts/qemu-python.sh" 2>"$TMP/py.err") ||
    skip_all "no QEMU Python client: $(cat "$TMP/py.err")"
CLIENT=$(cd "$(dirname "$0")" && pwd)/qmp-savevm.py

qemu-img create -q -f qcow2 "$TMP/d.qcow2" 64M
# snapshot "bad": a state refused late (a vCPU record this calf does not
# know, checksums valid: after RAM and the devices were loaded)
boot badsave --kernel "$GUEST" --append "ct.tick=1" --cpus 2 \
    --disk "$TMP/d.qcow2" --expect "calf-test: tick" --savevm bad --timeout 60
is "$status" 0 "snapshot bad saved"
hdr=$(perl -e 'local $/; open my $f, "<", $ARGV[0] or die; my $d = <$f>;
    print index($d, "CALFVMST")' "$TMP/d.qcow2")
perl -MCompress::Zlib -e 'open my $f, "+<", $ARGV[0] or die; my $o = $ARGV[1];
    seek $f, $o, 0; read $f, my $h, 128; read $f, my $sec, unpack("Q<", substr($h, 80, 8));
    my $i = index($sec, "\x05\x00cpu 0"); die "no cpu 0" if $i < 0;
    substr($sec, $i + 11, 4) = "ZZZZ"; substr($h, 88, 4) = pack("V", crc32($sec));
    substr($h, 92, 4) = "\0" x 4; substr($h, 92, 4) = pack("V", crc32($h));
    seek $f, $o, 0; print $f $h, $sec' "$TMP/d.qcow2" "$hdr"
"$CALF" run --qmp "unix:$TMP/s.sock,server=on,wait=off" --kernel "$GUEST" \
    --append "ct.tick=1" --cpus 2 --disk "$TMP/d.qcow2" --timeout 300 \
    >"$TMP/s.out" 2>"$TMP/s.err" </dev/null &
pid=$!
at_exit "kill -9 $pid 2>/dev/null"
for ((i = 0; i < 300; i++)); do [ -S "$TMP/s.sock" ] && break; sleep 0.1; done
PYTHONPATH=$QEMU_PY timeout 280 python3 "$CLIENT" "$TMP/s.sock" "$TMP/s.out" \
    >"$TMP/s.facts" 2>"$TMP/s.pyerr"
echo "# client: status $?"
sed 's/^/#   /' "$TMP/s.pyerr"
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null
wait "$pid"
status=$?
fact() { sed -n "s/^$1=//p" "$TMP/s.facts" | head -1; }

is "$(fact counting)" True "the guest counts"
is "$(fact savevm-output)" "''" "savevm s1: no output, as QEMU"
is "$(fact after-savevm)" running "running again after savevm"
is "$(fact counts-on)" True "and counts on"
is "$(fact loadvm-output)" "''" "loadvm s1: no output"
is "$(fact after-loadvm)" running "running after loadvm"
is "$(fact counts-after-loadvm)" True "the restored guest counts"
is "$(fact went-back)" True "from where it was saved (its counter went back)"
is "$(fact in-order)" True "one by one"
is "$(fact missing-output)" True "loadvm of a missing snapshot: an Error: line naming it"
is "$(fact after-missing)" paused "which leaves the VM paused, as QEMU"
is "$(fact after-cont)" running "cont runs it again"
is "$(fact late-output)" True "loadvm of a state refused late: an Error: line"
is "$(fact after-late)" paused "which leaves the VM paused"
is "$(fact late-cont)" "Resetting the Virtual Machine is required" \
    "cont on the half-restored machine is refused"
is "$(fact late-savevm)" True "and so is savevm"
is "$(fact after-late-cont)" paused "the VM stays paused"
is "$(fact reload-output)" "''" "loadvm s1 after it: no output"
is "$(fact after-reload)" running "cont runs it again"
is "$(fact counts-after-reload)" True "and the guest counts"
is "$(fact delvm-output)" "''" "delvm s1: no output"
is "$(fact savevm2-output)" "''" "savevm s2: no output"
is "$status" 0 "calf exits 0 after quit"
ok "the restored guest never failed" bash -c "! grep -q 'calf-test: FAIL' '$TMP/s.out'"
list=$(qemu-img snapshot -l "$TMP/d.qcow2")
echo "$list" | sed 's/^/#   /'
ok "the image holds s2 with its VM state, not s1" \
    bash -c "grep -q ' s2 .* 258 MiB' <<<'$list' && ! grep -q ' s1 ' <<<'$list'"
qemu-img check -q "$TMP/d.qcow2"; is $? 0 "qemu-img check: clean"
# s2 was saved after a loadvm (RAM mapped from s1's clusters) and a
# delvm of s1 (RAM copied off them first): it restores and counts on
boot again --kernel "$GUEST" --append "ct.tick=1" --cpus 2 --disk "$TMP/d.qcow2" \
    --loadvm s2 --expect "calf-test: tick" --timeout 60
is "$status" 0 "s2 restores with --loadvm and the guest counts on"

# the ACPI power button's enable bit survives a save: the test guest
# (ct.pwrbtn=1) saved while it waits for the button, restored with a
# QMP socket, gets system_powerdown and powers off
qemu-img create -q -f qcow2 "$TMP/p.qcow2" 64M
boot psave --kernel "$GUEST" --append "ct.pwrbtn=1 ct.poweroff=1" --disk "$TMP/p.qcow2" \
    --expect "waiting for the power button" --savevm pb --timeout 60
is "$status" 0 "saved while the guest waits for the power button"
"$CALF" run --qmp "unix:$TMP/p.sock,server=on,wait=off" --kernel "$GUEST" \
    --append "ct.pwrbtn=1 ct.poweroff=1" --disk "$TMP/p.qcow2" --loadvm pb \
    --timeout 100 >"$TMP/p.out" 2>"$TMP/p.err" </dev/null &
pid=$!
at_exit "kill -9 $pid 2>/dev/null"
for ((i = 0; i < 300; i++)); do [ -S "$TMP/p.sock" ] && break; sleep 0.1; done
PYTHONPATH=$QEMU_PY timeout 90 python3 "$CLIENT" "$TMP/p.sock" "$TMP/p.out" powerdown \
    >"$TMP/p.facts" 2>"$TMP/p.pyerr"
sed 's/^/#   /' "$TMP/p.pyerr"
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null
wait "$pid"
status=$?
pfact() { sed -n "s/^$1=//p" "$TMP/p.facts" | head -1; }
is "$(pfact pressed)" True "restored, system_powerdown: the guest sees the power button"
is "$(pfact shutdown-event)" "True:guest-shutdown" "and powers off"
is "$status" 0 "calf exits 0 (status $status)"
[ "$t_fail" = 0 ] || { sed 's/^/#   /' "$TMP/s.err"; tail -5 "$TMP/s.out" | sed 's/^/#   /'; }

done_testing
