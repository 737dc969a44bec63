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
  qmp-client.py snapcommit SOCKET SERIAL BASE OVERLAY DUMP
                                        blockdev-snapshot-sync, then
                                        block-commit, under ct.vpat writes
  qmp-client.py idesnap SOCKET SERIAL OVERLAY   the same on IDE
  qmp-client.py limits SOCKET OVERLAYS   overlays and kept jobs, to the caps
  qmp-client.py jobevents SOCKET OVERLAY  three commits' events, in order
  qmp-client.py errors SOCKET OVERLAY BASE OTHER DIR
                                        bad block commands' answers
  qmp-client.py snapstress SOCKET SERIAL BASE OVERLAYS N
                                        N snapshot + commit cycles

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


VPAT = re.compile(rb"calf-test: vpat pass (\d+)")


def passes(path):
    """the last pass the guest's ct.vpat finished"""
    got = VPAT.findall(serial(path))
    return int(got[-1]) if got else 0


async def until_event(qmp, seen, name, seconds=120):
    """job events (appended to seen) up to and with name"""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            ev = await asyncio.wait_for(qmp.events.get(),
                                        end - time.monotonic())
        except asyncio.TimeoutError:
            return False
        d = ev.get("data", {})
        if ev["event"] == "JOB_STATUS_CHANGE":
            seen.append(d["status"])
            if d["status"] == name:
                return True
        elif ev["event"].startswith("BLOCK_JOB"):
            seen.append(ev["event"])
            if ev["event"] == name:
                return True
    return False


async def snapcommit(sock, ser, base, overlay, base_dump):
    """blockdev-snapshot-sync of virtio0 while the guest writes its
    pattern (ct.vpat), the base read (shared) while the overlay takes the
    writes, then block-commit of the overlay back down, its job driven
    through READY and job-complete; calf started --paused."""
    qmp = QMPClient("calf-snap")
    await qmp.connect(sock)
    await qmp.execute("cont")
    say("writing", await wait_for(lambda: passes(ser) >= 2, 120))
    await qmp.execute("blockdev-snapshot-sync",
                      {"device": "virtio0", "snapshot-file": overlay,
                       "format": "qcow2"})
    at = passes(ser)
    blk = (await qmp.execute("query-block"))[0]["inserted"]
    say("block-after-snapshot", f"{blk['file']}:{blk['drv']}")
    # nobody writes the old image any more: a shared read of it now is
    # what it holds at the end of the run, before the commit
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", base,
        base_dump)
    say("base-dump", await proc.wait())
    say("written-after", await wait_for(lambda: passes(ser) >= at + 2, 120))
    # a snapshot while the commit runs is refused
    await qmp.execute("block-commit", {"device": "virtio0",
                                       "job-id": "c1"})
    try:
        await qmp.execute("blockdev-snapshot-sync",
                          {"device": "virtio0",
                           "snapshot-file": overlay + ".2"})
        say("busy", "accepted")
    except ExecuteError as e:
        say("busy", str(e))
    seen = []
    say("ready", await until_event(qmp, seen, "BLOCK_JOB_READY"))
    jobs = await qmp.execute("query-jobs")
    say("query-jobs", ",".join(f"{j['id']}:{j['type']}:{j['status']}"
                               for j in jobs))
    bj = await qmp.execute("query-block-jobs")
    say("query-block-jobs", ",".join(
        f"{j['device']}:{j['ready']}:{0 < j['offset'] <= j['len']}"
        for j in bj))
    # the guest goes on writing into the overlay, mirrored to the base
    at = passes(ser)
    await wait_for(lambda: passes(ser) >= at + 1, 120)
    await qmp.execute("job-complete", {"id": "c1"})
    await until_event(qmp, seen, "null")
    say("events", ",".join(seen))
    say("jobs-after", len(await qmp.execute("query-jobs")))
    blk = (await qmp.execute("query-block"))[0]["inserted"]
    say("block-after-commit", f"{blk['file']}:{blk['drv']}")
    at = passes(ser)
    say("written-after-commit",
        await wait_for(lambda: passes(ser) >= at + 2, 120))
    await qmp.execute("stop")
    say("bad", serial(ser).count(b"vpat: bad"))
    await qmp.execute("quit")
    await hang_up(qmp)


async def idesnap(sock, ser, overlay):
    """blockdev-snapshot-sync of the IDE disk ide0-hd0 before the guest
    runs (calf --paused), a block-commit of it at once; the guest's IDE
    checks (ct.ide=1, PIO and DMA) run over the overlay while the job
    mirrors them; job-complete once they passed (ct.hang=1 keeps the
    guest there)."""
    qmp = QMPClient("calf-idesnap")
    await qmp.connect(sock)
    await qmp.execute("blockdev-snapshot-sync",
                      {"device": "ide0-hd0", "snapshot-file": overlay})
    blk = [b for b in await qmp.execute("query-block")
           if b["device"] == "ide0-hd0"][0]["inserted"]
    say("block-after-snapshot", blk["file"])
    await qmp.execute("block-commit", {"device": "ide0-hd0",
                                       "auto-dismiss": False,
                                       "auto-finalize": False})
    seen = []
    await until_event(qmp, seen, "BLOCK_JOB_READY")
    await qmp.execute("cont")
    say("ide-ok", await wait_for(lambda: b"calf-test: ide: ok" in
                                 serial(ser), 120))
    await qmp.execute("block-job-complete", {"device": "ide0-hd0"})
    await until_event(qmp, seen, "BLOCK_JOB_PENDING")
    jobs = await qmp.execute("query-jobs")
    say("pending", ",".join(f"{j['id']}:{j['status']}" for j in jobs))
    await qmp.execute("job-finalize", {"id": "ide0-hd0"})
    await until_event(qmp, seen, "concluded")
    jobs = await qmp.execute("query-jobs")
    say("concluded", ",".join(f"{j['id']}:{j['status']}" for j in jobs))
    await qmp.execute("job-dismiss", {"id": "ide0-hd0"})
    await until_event(qmp, seen, "null")
    say("events", ",".join(seen))
    blk = [b for b in await qmp.execute("query-block")
           if b["device"] == "ide0-hd0"][0]["inserted"]
    say("block-after-commit", blk["file"])
    await qmp.execute("quit")
    await hang_up(qmp)


async def snapstress(sock, ser, base, overlays, cycles, dev="virtio0"):
    """cycles of blockdev-snapshot-sync and block-commit under the
    guest's writes, checked against a model of the disk's chain: active
    commits (job-complete, block-job-complete), commits of an image below
    the active layer (top-node), soft cancels (block-job-cancel after
    READY: the overlay stays) and forced ones (job-cancel); each job's
    events against QEMU's order, query-block's file against the model;
    at the end everything committed into base."""
    qmp = QMPClient("calf-snapstress")
    await qmp.connect(sock)
    await qmp.execute("cont")
    await wait_for(lambda: passes(ser) >= 1, 120)
    done = ["waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"]
    want_active = ["created", "running", "ready", "BLOCK_JOB_READY"] + done
    want_below = ["created", "running"] + done
    want_manual = ["created", "running", "ready", "BLOCK_JOB_READY",
                   "waiting", "pending", "BLOCK_JOB_PENDING",
                   "BLOCK_JOB_COMPLETED", "concluded", "null"]
    want_forced = ["created", "running", "ready", "BLOCK_JOB_READY",
                   "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"]
    chain = [base]
    node = {}
    bad_events = bad_file = 0
    made = 0
    manual_jobs = pending_copied = pending_left = 0

    async def check_file(what):
        nonlocal bad_file
        f = (await qmp.execute("query-block"))[0]["inserted"]["file"]
        if f != chain[-1]:
            bad_file += 1
            print(f"# {what}: file {f}, model {chain[-1]}")

    async def snapshot():
        nonlocal made
        ov = f"{overlays}.{made}"
        node[ov] = f"ov{made}"
        made += 1
        await qmp.execute("blockdev-snapshot-sync",
                          {"device": dev, "snapshot-file": ov,
                           "snapshot-node-name": node[ov]})
        chain.append(ov)
        await check_file("snapshot")

    async def progress(job_id):
        for j in await qmp.execute("query-jobs"):
            if j["id"] == job_id:
                return (j["current-progress"], j["total-progress"])
        return (0, 0)

    async def job(i, args, want, finish):
        nonlocal bad_events, manual_jobs
        manual = "BLOCK_JOB_PENDING" in want
        manual_jobs += manual
        await qmp.execute("block-commit", {**args, "job-id": f"j{i}",
                                           "auto-finalize": not manual})
        seen = []
        if "ready" in want:
            await until_event(qmp, seen, "BLOCK_JOB_READY")
            if i % 4 == 2:
                await asyncio.sleep(0.05)
            await finish()
        if manual:  # the guest writes on before job-finalize
            await until_event(qmp, seen, "BLOCK_JOB_PENDING")
            p0 = await progress(f"j{i}")
            at = passes(ser)
            await wait_for(lambda: passes(ser) > at, 60)
            # the copy goes on while pending: what the guest wrote since
            # is in the base before job-finalize holds the disk
            end = time.monotonic() + 10
            while (p1 := await progress(f"j{i}"))[0] <= p0[0] and \
                    time.monotonic() < end:
                await asyncio.sleep(0.05)
            nonlocal pending_copied, pending_left
            pending_copied += p1[0] > p0[0]
            pending_left = max(pending_left, p1[1] - p1[0])
            await qmp.execute("job-finalize", {"id": f"j{i}"})
        await until_event(qmp, seen, "null")
        if seen != want:
            bad_events += 1
            print(f"# cycle {i}: events {seen}")

    for i in range(cycles):
        await snapshot()
        if i % 3 == 1:  # let a pass land in the overlay
            at = passes(ser)
            await wait_for(lambda: passes(ser) > at, 60)
        kind = i % 6
        if kind == 4 and len(chain) >= 3:
            # the image under the active one, into the bottom
            below = chain[-2]
            await job(i, {"device": dev, "top-node": node[below]},
                      want_below, None)
            chain[1:-1] = []
        elif kind == 3:
            await job(i, {"device": dev}, want_active,
                      lambda: qmp.execute("block-job-cancel",
                                          {"device": f"j{i}"}))
        elif kind == 5:
            await job(i, {"device": dev}, want_forced,
                      lambda: qmp.execute("job-cancel", {"id": f"j{i}"}))
        else:
            args = {"device": dev}
            if i % 2:
                args["top-node"] = node[chain[-1]]
            await job(i, args, want_manual if kind == 0 else want_active,
                      (lambda: qmp.execute("block-job-complete",
                                           {"device": f"j{i}"})) if i % 2
                      else (lambda: qmp.execute("job-complete",
                                                {"id": f"j{i}"})))
            chain[1:] = []
        await check_file(f"cycle {i}")
    if len(chain) > 1:
        await job(cycles, {"device": dev}, want_active,
                  lambda: qmp.execute("job-complete", {"id": f"j{cycles}"}))
        chain[1:] = []
        await check_file("last commit")
    say("cycles", cycles)
    say("overlays", made)
    say("bad-events", bad_events)
    say("bad-file", bad_file)
    say("manual", manual_jobs)
    say("pending-copied", pending_copied)
    say("pending-left", pending_left)
    at = passes(ser)
    say("writing-after", await wait_for(lambda: passes(ser) > at, 120))
    await qmp.execute("stop")
    say("passes", passes(ser))
    say("bad", serial(ser).count(b"vpat: bad"))
    await qmp.execute("quit")
    await hang_up(qmp)


async def errors(sock, overlay, base, other, tmpdir):
    """the answers to bad block commands, one line each ("ok" or CLASS:
    DESC), for comparison with QEMU's on the same machine state: a
    virtio0 disk without backing file, then with one overlay"""
    qmp = QMPClient("calf-errors")
    await qmp.connect(sock)
    cmds = [
        ("blockdev-snapshot-sync", {"device": "nosuch", "snapshot-file": "x"}),
        ("blockdev-snapshot-sync", {"node-name": "nosuch",
                                    "snapshot-file": "x"}),
        ("blockdev-snapshot-sync", {"device": "virtio0",
                                    "snapshot-file": "x", "mode": "bogus"}),
        ("blockdev-snapshot-sync", {"device": "virtio0"}),
        ("blockdev-snapshot-sync", {"device": "virtio0", "snapshot-file": 7}),
        ("block-commit", {"device": "nosuch"}),
        ("block-commit", {"device": "virtio0"}),
        ("block-commit", {}),
        ("job-dismiss", {"id": "nosuch"}),
        ("job-complete", {"id": "nosuch"}),
        ("job-cancel", {"id": "nosuch"}),
        ("job-finalize", {"id": "nosuch"}),
        ("block-job-cancel", {"device": "nosuch"}),
        ("block-job-complete", {"device": "nosuch"}),
        ("block-job-dismiss", {"id": "nosuch"}),
        ("block-job-finalize", {"id": "nosuch"}),
        ("query-jobs", {}),
        ("query-block-jobs", {}),
        ("blockdev-snapshot-sync", {"device": "virtio0",
                                    "snapshot-file": base}),
        ("blockdev-snapshot-sync", {"device": "virtio0",
                                    "snapshot-file": other}),
        ("blockdev-snapshot-sync", {"device": "virtio0",
                                    "snapshot-file": "/nonexistent/x.qcow2"}),
        ("blockdev-snapshot-sync", {"device": "virtio0",
                                    "snapshot-file": tmpdir}),
        ("blockdev-snapshot-sync", {"device": "virtio0",
                                    "snapshot-file": overlay,
                                    "snapshot-node-name": "snap0"}),
        ("blockdev-snapshot-sync", {"device": "virtio0",
                                    "snapshot-file": overlay + ".2",
                                    "snapshot-node-name": "snap0"}),
        ("block-commit", {"device": "virtio0", "job-id": "1bad"}),
        ("block-commit", {"device": "virtio0", "top": "nosuch.qcow2"}),
        ("block-commit", {"device": "virtio0", "base": "nosuch.qcow2"}),
        ("block-commit", {"device": "virtio0", "top": "a", "top-node": "b"}),
        ("block-commit", {"device": "virtio0", "base": "a",
                          "base-node": "b"}),
        ("block-commit", {"device": "virtio0", "top-node": "nosuch"}),
        ("block-commit", {"device": "virtio0", "top-node": "snap0",
                          "base-node": "snap0"}),
        ("block-commit", {"device": "virtio0", "backing-file": "x"}),
        ("block-commit", {"device": "virtio0", "speed": -1}),
        ("block-commit", {"device": "virtio0", "bogus": 1}),
    ]
    for name, args in cmds:
        try:
            await qmp.execute(name, args)
            print("ok")
        except ExecuteError as e:
            print(f"{e.error_class}: {e.error.error.desc}")
    await qmp.execute("quit")
    await hang_up(qmp)


async def jobevents(sock, overlay):
    """the job events, in order, of three commits of an idle disk: one
    completed, one soft-cancelled after READY with auto-finalize and
    auto-dismiss off (query-jobs between), one forced off; one line each,
    for comparison with QEMU's"""
    qmp = QMPClient("calf-jobevents")
    await qmp.connect(sock)

    def show(seen):
        print(" ".join(seen))

    async def status():
        return ",".join(f"{j['id']}:{j['status']}"
                        for j in await qmp.execute("query-jobs"))

    seen = []
    await qmp.execute("blockdev-snapshot-sync",
                      {"device": "virtio0", "snapshot-file": overlay + ".1"})
    await qmp.execute("block-commit", {"device": "virtio0", "job-id": "a"})
    await until_event(qmp, seen, "BLOCK_JOB_READY")
    await qmp.execute("job-complete", {"id": "a"})
    await until_event(qmp, seen, "null")
    show(seen)
    seen = []
    await qmp.execute("blockdev-snapshot-sync",
                      {"device": "virtio0", "snapshot-file": overlay + ".2"})
    await qmp.execute("block-commit", {"device": "virtio0", "job-id": "b",
                                       "auto-finalize": False,
                                       "auto-dismiss": False})
    await until_event(qmp, seen, "BLOCK_JOB_READY")
    await qmp.execute("block-job-cancel", {"device": "b"})
    await until_event(qmp, seen, "BLOCK_JOB_PENDING")
    seen.append(await status())
    await qmp.execute("block-job-finalize", {"id": "b"})
    await until_event(qmp, seen, "concluded")
    seen.append(await status())
    await qmp.execute("block-job-dismiss", {"id": "b"})
    await until_event(qmp, seen, "null")
    show(seen)
    seen = []
    await qmp.execute("block-commit", {"device": "virtio0", "job-id": "c"})
    await until_event(qmp, seen, "BLOCK_JOB_READY")
    await qmp.execute("job-cancel", {"id": "c"})
    await until_event(qmp, seen, "null")
    show(seen)
    print((await qmp.execute("query-block"))[0]["inserted"]["file"])
    await qmp.execute("quit")
    await hang_up(qmp)


async def limits(sock, overlays):
    """a client growing calf: overlays until refused, one commit of the
    whole chain; then commits kept concluded (auto-dismiss=false) until
    refused, all dismissed"""
    qmp = QMPClient("calf-limits")
    await qmp.connect(sock)
    made = refused = 0
    for i in range(70):
        try:
            await qmp.execute("blockdev-snapshot-sync",
                              {"device": "virtio0",
                               "snapshot-file": f"{overlays}.{i}"})
            made += 1
        except ExecuteError as e:
            refused += 1
            last = e.error.error.desc
    say("overlays", made)
    say("refused", f"{refused}:{last}")
    seen = []
    await qmp.execute("block-commit", {"device": "virtio0"})
    await until_event(qmp, seen, "BLOCK_JOB_READY")
    await qmp.execute("job-complete", {"id": "virtio0"})
    say("deep-commit", await until_event(qmp, seen, "null"))
    kept = 0
    for i in range(70):
        try:
            await qmp.execute("blockdev-snapshot-sync",
                              {"device": "virtio0",
                               "snapshot-file": f"{overlays}.k{i}"})
            await qmp.execute("block-commit", {"device": "virtio0",
                                               "job-id": f"k{i}",
                                               "auto-dismiss": False})
        except ExecuteError as e:
            last = e.error.error.desc
            break
        seen = []
        await until_event(qmp, seen, "BLOCK_JOB_READY")
        await qmp.execute("job-complete", {"id": f"k{i}"})
        await until_event(qmp, seen, "concluded")
        kept += 1
    say("kept", f"{kept}:{last}")
    for j in await qmp.execute("query-jobs"):
        await qmp.execute("job-dismiss", {"id": j["id"]})
    say("after-dismiss", len(await qmp.execute("query-jobs")))
    seen = []  # the last overlay (its commit was refused), committed now
    await qmp.execute("block-commit", {"device": "virtio0"})
    await until_event(qmp, seen, "BLOCK_JOB_READY")
    await qmp.execute("job-complete", {"id": "virtio0"})
    await until_event(qmp, seen, "null")
    blk = (await qmp.execute("query-block"))[0]["inserted"]["file"]
    say("file", blk)
    await qmp.execute("quit")
    await hang_up(qmp)


async def below(sock, subdir, backing_file):
    """a commit of the image below the active one (SUBDIR/o1 under
    SUBDIR/o2), with backing-file when given: its final progress and the
    events' order; auto-dismiss off to read query-jobs once concluded"""
    qmp = QMPClient("calf-below")
    await qmp.connect(sock)
    for name in ("o1", "o2"):
        await qmp.execute("blockdev-snapshot-sync",
                          {"device": "virtio0",
                           "snapshot-file": f"{subdir}/{name}.qcow2"})
    args = {"device": "virtio0", "job-id": "below", "auto-dismiss": False,
            "top": f"{subdir}/o1.qcow2"}
    if backing_file:
        args["backing-file"] = backing_file
    await qmp.execute("block-commit", args)
    seen = []
    await until_event(qmp, seen, "concluded")
    j = (await qmp.execute("query-jobs"))[0]
    say("progress", f"{j['current-progress']}/{j['total-progress']}")
    say("events", ",".join(seen))
    await qmp.execute("job-dismiss", {"id": "below"})
    say("file", (await qmp.execute("query-block"))[0]["inserted"]["file"])
    await qmp.execute("quit")
    await hang_up(qmp)


async def bigger(sock, overlay):
    """a mode=existing overlay larger than the disk, committed (active):
    the job's events, its error if any, the disk's file after"""
    qmp = QMPClient("calf-bigger")
    await qmp.connect(sock)
    await qmp.execute("blockdev-snapshot-sync",
                      {"device": "virtio0", "snapshot-file": overlay,
                       "mode": "existing"})
    seen = []
    await qmp.execute("block-commit", {"device": "virtio0"})
    await until_event(qmp, seen, "BLOCK_JOB_READY", 30)
    if "BLOCK_JOB_READY" in seen:
        await qmp.execute("job-complete", {"id": "virtio0"})
    await until_event(qmp, seen, "null", 30)
    say("events", ",".join(seen))
    say("file", (await qmp.execute("query-block"))[0]["inserted"]["file"])
    await qmp.execute("quit")
    await hang_up(qmp)


async def bigidle(sock, pid, overlay):
    """an active commit READY on a large sparse disk, the guest idle:
    the CPU time calf spends in 3 s (in ticks of /proc), then the
    commit completes"""
    qmp = QMPClient("calf-bigidle")
    await qmp.connect(sock)

    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        return int(st[11]) + int(st[12])

    seen = []
    await qmp.execute("blockdev-snapshot-sync",
                      {"device": "virtio0", "snapshot-file": overlay})
    await qmp.execute("block-commit", {"device": "virtio0"})
    await until_event(qmp, seen, "BLOCK_JOB_READY", 60)
    c0 = cpu()
    await asyncio.sleep(3)
    say("ready-ticks", cpu() - c0)
    await qmp.execute("job-complete", {"id": "virtio0"})
    await until_event(qmp, seen, "null", 60)
    say("events", ",".join(seen))
    await qmp.execute("quit")
    await hang_up(qmp)


def main():
    mode, sock = sys.argv[1:3]
    ser = sys.argv[3] if len(sys.argv) > 3 else None
    if mode == "jobevents":
        asyncio.run(jobevents(sock, ser))
    elif mode == "limits":
        asyncio.run(limits(sock, ser))
    elif mode == "below":
        asyncio.run(below(sock, ser, sys.argv[4]))
    elif mode == "bigger":
        asyncio.run(bigger(sock, ser))
    elif mode == "bigidle":
        asyncio.run(bigidle(sock, sys.argv[3], sys.argv[4]))
    elif mode == "errors":
        asyncio.run(errors(sock, *sys.argv[3:7]))
    elif mode == "snapcommit":
        asyncio.run(snapcommit(sock, ser, *sys.argv[4:7]))
    elif mode == "idesnap":
        asyncio.run(idesnap(sock, ser, sys.argv[4]))
    elif mode == "snapstress":
        asyncio.run(snapstress(sock, ser, sys.argv[4], sys.argv[5],
                               int(sys.argv[6]), *sys.argv[7:8]))
    elif mode == "churn":
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
