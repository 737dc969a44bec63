#!/bin/bash
# QMP system_powerdown seen by Linux (make test-slow): the small kernel
# with guest-tests/linux/powerbutton.config (the ACPI button driver and
# evbug) finds the FADT's fixed-feature power button ("Power Button
# [PWRF]"); pressed through QMP, the PM1 status bit and the SCI reach
# its ACPI code, which reports KEY_POWER (code 116) as an input event
# that evbug logs.  No userspace needed: here it cannot run anyway (the
# kernel waits for a root device that never comes: rootwait).
. "$(dirname "$0")/../lib.sh"
need_kvm
need_linux
need_qemu_py

log=$TMP/pwrbtn-build.log
"$LINUX_DIR/build-kernel.sh" "$CALF_BUILD/linux-pwrbtn" "$LINUX_DIR/powerbutton.config" 2>"$log"
r=$?; is $r 0 "the power button variant of the kernel builds"
[ $r = 0 ] || { tail -20 "$log" | sed 's/^/#   /'; done_testing; }

start l --kernel "$CALF_BUILD/linux-pwrbtn/vmlinux" --no-reboot --timeout 600 \
    --append "$LINUX_APPEND ignore_loglevel root=/dev/vda rootwait"
t0=$(date +%s)
PYTHONPATH=$QEMU_PY python3 - "$TMP/l.sock" "$TMP/l.out" >"$TMP/l.facts" 2>"$TMP/l.pyerr" <<'PY'
import asyncio, sys, time
from qemu.qmp import QMPClient

def has(text):
    with open(sys.argv[2], "rb") as f:
        return text in f.read()

async def wait(text, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not has(text):
        await asyncio.sleep(0.2)
    return has(text)

async def main():
    qmp = QMPClient("linux-powerdown")
    for _ in range(100):
        try:
            await qmp.connect(sys.argv[1])
            break
        except Exception:
            await asyncio.sleep(0.1)
    print("found=%s" % await wait(b"Power Button [PWRF]", 500), flush=True)
    # evbug connects to the button after the button driver's probe
    await wait(b"evbug: Connected device: input0", 120)
    await qmp.execute("system_powerdown")
    print("key=%s" % await wait(b"Code: 116, Value: 1", 60), flush=True)
    try:
        await qmp.execute("quit")
        await qmp.disconnect()
    except Exception:
        pass

asyncio.run(main())
PY
sed 's/^/#   /' "$TMP/l.pyerr"
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
echo "# after $(( $(date +%s) - t0 )) s"
is "$(sed -n 's/^found=//p' "$TMP/l.facts")" True "Linux finds the fixed-feature power button (PWRF)"
is "$(sed -n 's/^key=//p' "$TMP/l.facts")" True "system_powerdown: evbug logs KEY_POWER pressed"
[ "$t_fail" = 0 ] || { tail -30 "$TMP/l.out" | tr -d '\r' | sed 's/^/#   /'; }
tr -d '\r' <"$TMP/l.out" | grep -a -E "PWRF|evbug" | head -5 | sed 's/^/# /'
done_testing
