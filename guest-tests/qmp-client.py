#!/usr/bin/env python3
"""Drives a running `calf run --qmp` with QEMU's own QMP client
(qemu.qmp from QEMU 7.2's python/, on PYTHONPATH) for guest-tests/qmp.t
and qmp-stress.t.  It prints one "key=value" line per fact it saw; the
TAP script compares them with what they must be.

  qmp-client.py session SOCKET SERIAL   the scripted session of qmp.t
  qmp-client.py stress SOCKET SERIAL N  N rounds of stop/cont/query-status
                                        (and a few system_reset) checked
                                        against a model
  qmp-client.py powerdown SOCKET SERIAL system_powerdown, with ct.pwrbtn=1
  qmp-client.py screen SOCKET SERIAL PNG PPM  screendump both ways
  qmp-client.py regs SOCKET SERIAL      info registers once it counts
  qmp-client.py keys SOCKET SERIAL      send-key to ct.vga=keys26
  qmp-client.py churn SOCKET SERIAL     stop and cont, a few ms apart,
                                        until the guest ends the run
  qmp-client.py media SOCKET SERIAL CD2 CD3  eject and blockdev-change-medium
                                        on the test guest's CD (ct.idewatch
                                        =lock): what the guest and the
                                        client saw at each step
  qmp-client.py ioerror SOCKET SERIAL [N]  N (2) BLOCK_IO_ERROR events
                                        while the test guest (ct.virtio=1)
                                        runs on a disk with blkdebug rules
  qmp-client.py blockstats SOCKET SERIAL  query-blockstats once the test
                                        guest (ct.virtio=1) printed what
                                        its requests must count

SERIAL is the file calf writes the guest's console to; the test guest
runs with ct.tick=1 and prints "calf-test: tick N" about ten times a
second while it runs.
"""
import asyncio
import os
import re
import sys
import time

from qemu.qmp import ExecuteError, QMPClient

TICK = re.compile(rb"calf-test: tick (\d+)")


def serial(path):
    with open(path, "rb") as f:
        return f.read()


def ticks(path):
    """how many tick lines the console holds so far"""
    return len(TICK.findall(serial(path)))


async def wait_for(pred, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


def say(key, value):
    print(f"{key}={value}", flush=True)


async def next_event(qmp, name, seconds=30):
    """the next event called name (others are skipped), or None"""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            ev = await asyncio.wait_for(qmp.events.get(),
                                        end - time.monotonic())
        except asyncio.TimeoutError:
            return None
        if ev["event"] == name:
            return ev
    return None


async def hang_up(qmp):
    """after quit: calf closes the socket first, as QEMU does"""
    try:
        await qmp.disconnect()
    except EOFError:
        pass


async def session(sock, ser):
    qmp = QMPClient("calf-test")
    await qmp.connect(sock)
    ver = qmp.greeting.QMP.version["qemu"]
    say("greeting", f"{ver['major']}.{ver['minor']}")
    say("status", (await qmp.execute("query-status"))["status"])
    say("name", (await qmp.execute("query-name")).get("name", ""))
    say("kvm", (await qmp.execute("query-kvm"))["enabled"])
    cpus = await qmp.execute("query-cpus-fast")
    say("cpus", ",".join(str(c["cpu-index"]) for c in cpus))
    say("cpu-threads", all(c["thread-id"] > 0 for c in cpus))
    names = [c["name"] for c in await qmp.execute("query-commands")]
    say("has-commands", all(n in names for n in
                            ("stop", "cont", "quit", "system_reset")))
    blocks = await qmp.execute("query-block")
    say("block", ",".join(f"{b['device']}:{b['inserted']['drv']}:"
                          f"{b['inserted']['ro']}:{b['removable']}"
                          for b in blocks))
    hmp = await qmp.execute("human-monitor-command",
                            {"command-line": "info status"})
    say("hmp-status", hmp.strip())
    hmp = await qmp.execute("human-monitor-command",
                            {"command-line": "info block"})
    say("hmp-block", hmp.replace("\r\n", "|"))

    say("ticking", await wait_for(lambda: ticks(ser) >= 3, 60))

    await qmp.execute("stop")
    say("stop-event", (await next_event(qmp, "STOP")) is not None)
    say("stopped-status", (await qmp.execute("query-status"))["status"])
    t1 = ticks(ser)
    await asyncio.sleep(2)
    t2 = ticks(ser)
    say("ticks-while-stopped", t2 - t1)
    hmp = await qmp.execute("human-monitor-command",
                            {"command-line": "info status"})
    say("hmp-stopped", hmp.strip())

    await qmp.execute("cont")
    say("resume-event", (await next_event(qmp, "RESUME")) is not None)
    say("ticks-after-cont",
        await wait_for(lambda: ticks(ser) >= t2 + 3, 60))

    boots = serial(ser).count(b"calf-test: booted via")
    await qmp.execute("system_reset")
    ev = await next_event(qmp, "RESET")
    say("reset-event", ev and f"{ev['data']['guest']}:{ev['data']['reason']}")
    say("rebooted", await wait_for(
        lambda: serial(ser).count(b"calf-test: booted via") > boots, 60))
    base = ticks(ser)
    say("ticks-after-reset", await wait_for(lambda: ticks(ser) > base, 60))

    await qmp.execute("quit")
    ev = await next_event(qmp, "SHUTDOWN", 10)
    say("shutdown-event",
        ev and f"{ev['data']['guest']}:{ev['data']['reason']}")
    await hang_up(qmp)


async def stress(sock, ser, rounds):
    """stop, cont and query-status in a random order while the guest
    runs, each answer checked against the model of the run state; the
    STOP and RESUME events counted against the transitions made."""
    import random
    rng = random.Random(17)
    qmp = QMPClient("calf-stress")
    await qmp.connect(sock)
    paused = prelaunch = False
    bad = 0
    transitions = {"STOP": 0, "RESUME": 0, "RESET": 0}
    t0 = time.monotonic()
    for i in range(rounds):
        op = rng.choice(("stop", "cont", "query-status", "query-status",
                         "stop", "cont", "query-status", "query-status",
                         "stop", "cont", "query-status", "query-status",
                         "system_reset"))
        if op == "system_reset":
            # a reset keeps a stopped VM stopped, and then QEMU says
            # "prelaunch" until the next cont
            await qmp.execute(op)
            transitions["RESET"] += 1
            prelaunch = prelaunch or paused
            continue
        if op == "query-status":
            st = await qmp.execute("query-status")
            want = ("prelaunch" if prelaunch else "paused") if paused else "running"
            if st["status"] != want or st["running"] == paused:
                bad += 1
                print(f"# round {i}: status {st} while {want}")
            continue
        await qmp.execute(op)
        if op == "stop" and not paused:
            transitions["STOP"] += 1
        if op == "cont" and paused:
            transitions["RESUME"] += 1
        paused = op == "stop"
        prelaunch = prelaunch and paused
    if paused:
        await qmp.execute("cont")
        transitions["RESUME"] += 1
    say("rounds-per-s", int(rounds / (time.monotonic() - t0)))
    say("model-mismatches", bad)
    seen = {"STOP": 0, "RESUME": 0, "RESET": 0}
    while True:
        try:
            ev = await asyncio.wait_for(qmp.events.get(), 1)
        except asyncio.TimeoutError:
            break
        if ev["event"] in seen:
            seen[ev["event"]] += 1
    say("events-match", seen == transitions)
    print(f"# transitions {transitions}, events {seen}")
    base = ticks(ser)
    say("ticks-after-stress", await wait_for(lambda: ticks(ser) > base, 60))
    await qmp.execute("quit")
    await hang_up(qmp)


async def powerdown(sock, ser):
    """system_powerdown to a guest waiting for the ACPI power button"""
    qmp = QMPClient("calf-powerdown")
    await qmp.connect(sock)
    say("waiting", await wait_for(
        lambda: b"waiting for the power button" in serial(ser), 60))
    await qmp.execute("system_powerdown")
    say("powerdown-event", (await next_event(qmp, "POWERDOWN")) is not None)
    say("pressed", await wait_for(
        lambda: b"power button pressed" in serial(ser), 60))
    ev = await next_event(qmp, "SHUTDOWN", 60)
    say("shutdown-event",
        ev and f"{ev['data']['guest']}:{ev['data']['reason']}")
    await hang_up(qmp)


def png_rgb(path):
    """the RGB rows of a PNG as calf writes them (8-bit RGB, filter 0)"""
    import struct
    import zlib
    data = open(path, "rb").read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows = [raw[y * (3 * w + 1):(y + 1) * (3 * w + 1)] for y in range(h)]
    assert all(r[0] == 0 for r in rows)
    return w, h, b"".join(r[1:] for r in rows)


async def screen(sock, ser, png, ppm):
    """screendump of the test guest's text screen, as PNG and as PPM"""
    qmp = QMPClient("calf-screen")
    await qmp.connect(sock)
    say("drawn", await wait_for(lambda: b"calf-test: PASS" in serial(ser), 60))
    await qmp.execute("screendump", {"filename": png, "format": "png"})
    await qmp.execute("screendump", {"filename": ppm})
    w, h, rgb = png_rgb(png)
    data = open(ppm, "rb").read()
    head = b"P6\n%d %d\n255\n" % (w, h)
    say("ppm-header", data.startswith(head))
    say("ppm-is-png", data[len(head):] == rgb)
    # through a FIFO: the image must come through the one descriptor
    # calf opened (a second open would find no reader left)
    fifo = ppm + ".fifo"
    os.mkfifo(fifo)

    def read_fifo(limit):
        with open(fifo, "rb") as f:
            return f.read(limit) if limit else f.read()

    loop = asyncio.get_running_loop()
    got = loop.run_in_executor(None, read_fifo, 0)
    try:
        await asyncio.wait_for(
            qmp.execute("screendump", {"filename": fifo}), 30)
        say("fifo-same", (await asyncio.wait_for(got, 30)) == data)
    except asyncio.TimeoutError:
        say("fifo-same", "hung")
        return
    # a reader that goes away after 16 bytes: an error, and the path
    # (maybe another file by now) is not removed
    got = loop.run_in_executor(None, read_fifo, 16)
    try:
        await asyncio.wait_for(
            qmp.execute("screendump", {"filename": fifo}), 30)
        say("fifo-cut", "no error")
    except ExecuteError as e:
        say("fifo-cut", str(e).startswith("failed to write"))
    except asyncio.TimeoutError:
        say("fifo-cut", "hung")
        return
    await got
    say("fifo-kept", os.path.exists(fifo))
    await qmp.execute("quit")
    await hang_up(qmp)


async def keys(sock, ser):
    """send-key: 'a', then Return, then shift+abcdefgh, to the test
    guest's ct.vga=keys26"""
    qmp = QMPClient("calf-keys")
    await qmp.connect(sock)
    say("ready", await wait_for(
        lambda: b"keyboard ready" in serial(ser), 60))
    await qmp.execute("send-key", {"keys": [{"type": "qcode", "data": "a"}]})
    await qmp.execute("send-key", {"keys": [{"type": "number", "data": 0x1c}],
                                   "hold-time": 50})
    await wait_for(lambda: serial(ser).count(b"calf-test: key ") >= 4, 60)
    say("codes", b" ".join(re.findall(rb"calf-test: key (..)",
                                     serial(ser))[:4]).decode())
    # 9 presses and 9 releases are 18 bytes once translated to set 1:
    # more than the i8042's 15-byte queue holds, and the stopped guest
    # reads none
    await qmp.execute("stop")
    await qmp.execute("send-key", {"keys": [
        {"type": "qcode", "data": k} for k in
        ("shift", "a", "b", "c", "d", "e", "f", "g", "h")]})
    await asyncio.sleep(0.3)  # past hold-time: all of it due
    await qmp.execute("cont")
    await wait_for(lambda: serial(ser).count(b"calf-test: key ") >= 22, 60)
    say("chord", b" ".join(re.findall(rb"calf-test: key (..)",
                                     serial(ser))[4:22]).decode())
    # QEMU's other names: sysrq and kp_equals have scancodes, 'again'
    # none (taken, nothing sent)
    await qmp.execute("send-key", {"keys": [
        {"type": "qcode", "data": k} for k in
        ("again", "sysrq", "kp_equals")], "hold-time": 10})
    await wait_for(lambda: serial(ser).count(b"calf-test: key ") >= 26, 60)
    say("more", b" ".join(re.findall(rb"calf-test: key (..)",
                                    serial(ser))[22:]).decode())
    await hang_up(qmp)


async def regs(sock, ser):
    """info registers of CPU 0, stopped once the guest counts"""
    qmp = QMPClient("calf-regs")
    await qmp.connect(sock)
    await wait_for(lambda: ticks(ser) >= 1, 120)
    await qmp.execute("stop")
    text = await qmp.execute("human-monitor-command",
                             {"command-line": "info registers"})
    sys.stdout.write(text.replace("\r\n", "\n"))
    await qmp.execute("quit")
    await hang_up(qmp)


async def churn(sock, ser):
    """stop/cont while the guest does its I/O, until it ends the run.
    calf was started --paused: the first cont starts the guest, so the
    churn covers its I/O from the first instruction however fast it is."""
    qmp = QMPClient("calf-churn")
    await qmp.connect(sock)
    st = await qmp.execute("query-status")
    say("start-status", st["status"])
    hmp = await qmp.execute("human-monitor-command",
                            {"command-line": "info status"})
    say("start-hmp", hmp.strip())
    await asyncio.sleep(0.2)
    say("serial-before-cont", len(serial(ser)))
    cycles = 0
    try:
        while True:
            await qmp.execute("stop")
            await asyncio.sleep(0.002)
            await qmp.execute("cont")
            cycles += 1
            await asyncio.sleep(0.002)
    except Exception as e:  # the run ended: the socket went away
        print(f"# churn ended by {type(e).__name__}")
    say("cycles", cycles)
    try:
        await qmp.disconnect()
    except Exception:
        pass


ACCT = re.compile(rb"virtio-blk \d+: acct rd=(\d+)/(\d+) wr=(\d+)/(\d+) "
                  rb"flush=(\d+) invalid=(\d+)/(\d+) failed_wr=(\d+) high=(\d+)")


def stats_line(st):
    """a drive's counters in the order of the guest's acct line"""
    return " ".join(str(st[k]) for k in (
        "rd_operations", "rd_bytes", "wr_operations", "wr_bytes",
        "flush_operations", "invalid_rd_operations", "invalid_wr_operations",
        "failed_wr_operations", "wr_highest_offset"))


async def blockstats(sock, ser):
    qmp = QMPClient("calf-test")
    await qmp.connect(sock)
    ok = await wait_for(lambda: b"virtio-blk disks:" in serial(ser), 120)
    m = ACCT.search(serial(ser))
    say("guest-done", ok and m is not None)
    if m:
        say("guest-acct", " ".join(x.decode() for x in m.groups()))
    r = await qmp.execute("query-blockstats")
    byname = {e["device"]: e for e in r}
    v = byname.get("virtio0", {})
    st = v.get("stats", {})
    if st:
        say("host-acct", stats_line(st))
        say("timed", all(st[t + "_total_time_ns"] > 0 for t in ("rd", "wr", "flush")))
        say("idle", 0 <= st.get("idle_time_ns", -1) < 120 * 10**9)
        say("unmap", f'{st["unmap_operations"]} {st["unmap_bytes"]} {st["failed_rd_operations"]}')
        par = v.get("parent", {})
        say("parent", f'{par.get("driver-specific", {}).get("driver")} '
                      f'{par.get("stats", {}).get("wr_highest_offset")} '
                      f'{par.get("stats", {}).get("wr_operations")}')
        say("qdev", v.get("qdev"))
    cd = byname.get("ide1-cd0", {}).get("stats", {})
    if cd:
        say("cd-idle", stats_line(cd))
    nodes = await qmp.execute("query-blockstats", {"query-nodes": True})
    say("nodes", " ".join(sorted(n["node-name"][:6] for n in nodes)) +
        f' {sum("device" in n for n in nodes)}')
    await qmp.execute("quit")
    await hang_up(qmp)


def cd_lines(ser):
    return [ln.decode(errors="replace")
            for ln in re.findall(rb"calf-test: cd: ([^\r\n]*)\r?\n", serial(ser))]


async def cd_wait(ser, pred, seen, seconds=60):
    """waits for a CD line after the first seen that the predicate likes;
    returns it (or None)"""
    got = []

    def look():
        for ln in cd_lines(ser)[seen:]:
            if pred(ln):
                got.append(ln)
                return True
        return False
    await wait_for(look, seconds)
    return got[0] if got else None


def cd_block(info):
    cd = [b for b in info if b["device"] == "ide1-cd0"][0]
    ins = cd.get("inserted")
    return (f'{cd["tray_open"]}:{cd["locked"]}:'
            f'{ins["file"] if ins else "-"}')


async def media(sock, ser, cd2, cd3):
    qmp = QMPClient("calf-test")
    await qmp.connect(sock)
    ok = await wait_for(lambda: any(ln.startswith("tray locked")
                                    for ln in cd_lines(ser)), 60)
    say("watching", [ln for ln in cd_lines(ser) if ln.startswith("watching")][:1])
    say("locked", ok)
    say("block-locked", cd_block(await qmp.execute("query-block")))
    # a locked tray: the guest is asked, the client told to wait
    seen = len(cd_lines(ser))
    try:
        await qmp.execute("eject", {"device": "ide1-cd0"})
        say("eject-locked", "no error")
    except ExecuteError as e:
        say("eject-locked", str(e))
    say("eject-request", await cd_wait(ser, lambda ln: ln.startswith("media"), seen))
    # force: the tray opens, the disc goes
    seen = len(cd_lines(ser))
    await qmp.execute("eject", {"device": "ide1-cd0", "force": True})
    ev = await next_event(qmp, "DEVICE_TRAY_MOVED", 10)
    say("eject-event", ev and f'{ev["data"]["device"]}:{ev["data"]["tray-open"]}')
    say("ejected", await cd_wait(ser, lambda ln: ln.startswith("media"), seen))
    say("block-ejected", cd_block(await qmp.execute("query-block")))
    # a new disc into the open tray: it closes, the guest reads it
    seen = len(cd_lines(ser))
    await qmp.execute("blockdev-change-medium",
                      {"device": "ide1-cd0", "filename": cd2, "format": "raw"})
    ev = await next_event(qmp, "DEVICE_TRAY_MOVED", 10)
    say("change-event", ev and f'{ev["data"]["device"]}:{ev["data"]["tray-open"]}')
    say("changed", await cd_wait(ser, lambda ln: ln.startswith("media"), seen))
    say("changed-read", await cd_wait(ser, lambda ln: ln.startswith("ready"), seen))
    say("block-changed", cd_block(await qmp.execute("query-block")))
    # and again with the tray closed (by qdev ID, format probed): it
    # opens and closes, the guest sees the disc go and come
    seen = len(cd_lines(ser))
    await qmp.execute("blockdev-change-medium",
                      {"id": "/machine/unattached/device[19]", "filename": cd3})
    evs = []
    for _ in range(2):
        ev = await next_event(qmp, "DEVICE_TRAY_MOVED", 10)
        evs.append(str(ev and ev["data"]["tray-open"]))
    say("change2-events", ",".join(evs))
    say("change2-read", await cd_wait(ser, lambda ln: ln.startswith("ready"), seen))
    hmp = await qmp.execute("human-monitor-command", {"command-line": "info block"})
    say("hmp-block", hmp.replace("\r\n", "|"))
    try:
        await qmp.execute("eject", {"device": "virtio0"})
        say("eject-virtio", "no error")
    except ExecuteError as e:
        say("eject-virtio", str(e))
    await qmp.execute("quit")
    await hang_up(qmp)


async def ioerror(sock, ser, nevents):
    """the VM starts paused (--paused, -S): no event is sent before the
    client is there"""
    qmp = QMPClient("calf-test")
    await qmp.connect(sock)
    await qmp.execute("cont")
    for i in range(nevents):
        ev = await next_event(qmp, "BLOCK_IO_ERROR", 60)
        if ev:
            d = dict(ev["data"])
            d["node-name"] = re.sub(r"[0-9]+", "N", d.get("node-name", ""))
            say(f"event{i}", " ".join(f"{k}={d[k]}" for k in sorted(d)))
            say(f"event{i}-keys", ",".join(ev["data"]))
    ok = await wait_for(lambda: b"virtio-blk disks:" in serial(ser), 60)
    say("guest-done", ok)
    say("guest-saw", len(re.findall(
        rb"check failed: (32 KiB read in 4 segments|write before a discard)",
        serial(ser))))
    st = [e for e in await qmp.execute("query-blockstats")
          if e["device"] == "virtio0"][0]["stats"]
    say("failed", f'{st["failed_rd_operations"]} {st["failed_wr_operations"]}')
    await qmp.execute("quit")
    await hang_up(qmp)


def main():
    mode, sock = sys.argv[1:3]
    ser = sys.argv[3] if len(sys.argv) > 3 else None
    if mode == "churn":
        asyncio.run(churn(sock, ser))
    elif mode == "media":
        asyncio.run(media(sock, ser, sys.argv[4], sys.argv[5]))
    elif mode == "ioerror":
        asyncio.run(ioerror(sock, ser, int(sys.argv[4]) if len(sys.argv) > 4 else 2))
    elif mode == "blockstats":
        asyncio.run(blockstats(sock, ser))
    elif mode == "screen":
        asyncio.run(screen(sock, ser, sys.argv[4], sys.argv[5]))
    elif mode == "regs":
        asyncio.run(regs(sock, ser))
    elif mode == "keys":
        asyncio.run(keys(sock, ser))
    elif mode == "powerdown":
        asyncio.run(powerdown(sock, ser))
    elif mode == "session":
        asyncio.run(session(sock, ser))
    elif mode == "stress":
        asyncio.run(stress(sock, ser, int(sys.argv[4])))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
