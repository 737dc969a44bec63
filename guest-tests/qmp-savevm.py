#!/usr/bin/env python3
"""savevm / loadvm / delvm through QMP's human-monitor-command, driven by
QEMU 7.2's own QMP client (qemu.qmp on PYTHONPATH), for
guest-tests/qmp-savevm.t.  Prints one "key=value" line per fact.

  qmp-savevm.py SOCKET SERIAL            the session below
  qmp-savevm.py SOCKET SERIAL powerdown  system_powerdown to a guest
                                           restored while it waited for
                                           the ACPI power button

SERIAL is the guest's console: the test guest with ct.tick=1, which
prints "calf-test: tick N" about ten times a second.  The session: let
it count, savevm s1, let it count on, loadvm s1 (the counter goes back
to where it was saved and counts on from there), a loadvm of a snapshot
that does not exist (an error, the VM left paused, as QEMU), cont, a
loadvm of snapshot "bad" the test made refusable late (paused; cont and
savevm refused), loadvm s1 again, delvm s1, savevm s2, quit.
"""
import asyncio
import re
import sys
import time

from qemu.qmp import QMPClient

TICK = re.compile(rb"calf-test: tick (\d+)")


def ticks(path):
    with open(path, "rb") as f:
        return [int(n) for n in TICK.findall(f.read())]


def say(key, value):
    print(f"{key}={value}", flush=True)


async def wait_for(pred, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def hmp(qmp, line):
    return await qmp.execute("human-monitor-command",
                             {"command-line": line})


async def status(qmp):
    return (await qmp.execute("query-status"))["status"]


async def session(sock, ser):
    qmp = QMPClient("calf-test")
    await qmp.connect(sock)
    say("counting", await wait_for(lambda: len(ticks(ser)) >= 3, 60))
    out = await hmp(qmp, "savevm s1")
    saved_at = max(ticks(ser))
    say("savevm-output", repr(out))
    say("after-savevm", await status(qmp))
    n = len(ticks(ser))
    say("counts-on", await wait_for(lambda: len(ticks(ser)) >= n + 5, 60))
    before = max(ticks(ser))
    n = len(ticks(ser))
    out = await hmp(qmp, "loadvm s1")
    say("loadvm-output", repr(out))
    say("after-loadvm", await status(qmp))
    say("counts-after-loadvm",
        await wait_for(lambda: len(ticks(ser)) >= n + 3, 60))
    after = ticks(ser)[n:]
    # back to where it was saved: the first tick after the restore is
    # the one after saved_at (or saved_at, printed again), not after before
    say("went-back", bool(after) and after[0] <= saved_at + 1 < before + 1
        and after[0] < before)
    say("in-order", all(b == a + 1 for a, b in zip(after, after[1:])))
    out = await hmp(qmp, "loadvm nosuch")
    say("missing-output", out.startswith("Error: ") and "nosuch" in out)
    say("after-missing", await status(qmp))
    await qmp.execute("cont")
    say("after-cont", await status(qmp))
    # a state refused after it changed the machine: devices stay frozen,
    # cont and savevm are refused; a loadvm that works runs it again
    out = await hmp(qmp, "loadvm bad")
    say("late-output", out.startswith("Error: "))
    say("after-late", await status(qmp))
    try:
        await qmp.execute("cont")
        say("late-cont", "accepted")
    except Exception as e:
        say("late-cont", getattr(e, "error_message", str(e)))
    out = await hmp(qmp, "savevm s3")
    say("late-savevm", out.startswith("Error: "))
    say("after-late-cont", await status(qmp))
    n = len(ticks(ser))
    out = await hmp(qmp, "loadvm s1")
    say("reload-output", repr(out))
    await qmp.execute("cont")  # loadvm left a paused VM paused
    say("after-reload", await status(qmp))
    say("counts-after-reload",
        await wait_for(lambda: len(ticks(ser)) >= n + 3, 60))
    say("delvm-output", repr(await hmp(qmp, "delvm s1")))
    say("savevm2-output", repr(await hmp(qmp, "savevm s2")))
    await qmp.execute("quit")
    try:
        await qmp.disconnect()
    except EOFError:
        pass


async def powerdown(sock, ser):
    qmp = QMPClient("calf-test")
    await qmp.connect(sock)
    await qmp.execute("system_powerdown")
    with_text = lambda t: lambda: t in open(ser, "rb").read()
    say("pressed", await wait_for(with_text(b"power button pressed"), 60))
    end = time.monotonic() + 60
    ev = None
    while time.monotonic() < end:
        try:
            ev = await asyncio.wait_for(qmp.events.get(),
                                        end - time.monotonic())
        except asyncio.TimeoutError:
            break
        if ev["event"] == "SHUTDOWN":
            break
    say("shutdown-event",
        ev and f"{ev['data']['guest']}:{ev['data']['reason']}")
    try:
        await qmp.disconnect()
    except EOFError:
        pass


if len(sys.argv) > 3 and sys.argv[3] == "powerdown":
    asyncio.run(powerdown(sys.argv[1], sys.argv[2]))
else:
    asyncio.run(session(sys.argv[1], sys.argv[2]))
