#!/usr/bin/env python3
"""Raw-socket QMP client for guest-tests/qmp-hostile.t (no QMP library:
it sends bytes a library would never send).

  qmp-raw.py transcript SOCKET|HOST:PORT INPUT
      sends INPUT's lines (after the greeting, each line as it is, with
      its newline), reads until the monitor has been quiet for a second,
      prints everything it got with the greeting's version masked, so
      that calf's and qemu-system-x86_64's transcripts compare byte for
      byte.
  qmp-raw.py hostile SOCKET SERIAL PID
      the hostile client: huge and deeply nested messages, a client
      that leaves mid-command, a second client while one is connected,
      a flood, a client that does not read; prints key=value facts.
"""
import os
import re
import socket
import sys
import threading
import time


def connect(addr):
    if ":" in addr and not addr.startswith("/"):
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.connect(addr)
    return s


def read_until_quiet(s, quiet=1.0, limit=60):
    s.settimeout(quiet)
    out = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            break
        if not d:
            break
        out += d
    return out


def read_line(s, timeout=30):
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        buf += d
    return buf


def transcript(addr, path):
    s = connect(addr)
    greeting = read_line(s)
    greeting = re.sub(rb'"version": \{.*\}, "capabilities": \[[^]]*\]',
                      b'"version": VERSION, "capabilities": CAPS', greeting)
    out = greeting
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            if line:
                s.sendall(line + b"\n")
                out += read_until_quiet(s, 0.3)
    out += read_until_quiet(s)
    sys.stdout.buffer.write(out)


def say(k, v):
    print(f"{k}={v}", flush=True)


def ticks(path):
    with open(path, "rb") as f:
        return f.read().count(b"calf-test: tick ")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def negotiate(addr):
    s = connect(addr)
    read_line(s)
    s.sendall(b'{"execute":"qmp_capabilities"}\n')
    read_line(s)
    return s


def ask(s, cmd, ident):
    """sends cmd with id ident; the answer carrying that id"""
    s.sendall(cmd[:-1] + b', "id": "' + ident.encode() + b'"}\n')
    end = time.monotonic() + 60
    while time.monotonic() < end:
        line = read_line(s)
        if not line:
            return b""
        if b'"id": "' + ident.encode() + b'"' in line:
            return line
    return b""


STATUS = b'{"execute":"query-status"}'


def hostile(addr, ser, pid):
    rss0 = rss_kb(pid)
    s = negotiate(addr)

    # a message past the size limit, then 0xFF to resynchronise
    big = b'{"execute":"query-status","id":"' + b"a" * (3 << 20) + b'"}'
    sender = threading.Thread(target=s.sendall, args=(big + b"\xff\n",))
    sender.start()
    got = b""
    s.settimeout(30)
    while b"size limit exceeded" not in got:
        d = s.recv(65536)
        if not d:
            break
        got += d
    sender.join()
    say("huge", b"JSON token size limit exceeded" in got)
    say("after-huge", b'"status": "running"' in ask(s, STATUS, "h"))

    # deep nesting: QEMU's limit of 1024 levels
    s.sendall(b"[" * 100000 + b"\xff\n")
    got = read_until_quiet(s, 1.0)
    say("deep", got.count(b"JSON nesting depth limit exceeded"))
    say("after-deep", b'"status": "running"' in ask(s, STATUS, "d"))

    # wrong types, unknown commands, junk
    hmp = b'{"execute":"human-monitor-command","arguments":{"command-line":[]}}'
    say("wrong-type", ask(s, hmp, "t").decode().strip())
    say("unknown", ask(s, b'{"execute":"no-such"}', "u").decode().strip())
    s.sendall(bytes(range(256)) * 64 + b"\n")
    say("after-junk", b'"status": "running"' in ask(s, STATUS, "j"))

    # a second client waits while the first is connected, then is greeted
    t = connect(addr)
    t.settimeout(0.5)
    try:
        early = t.recv(100)
    except socket.timeout:
        early = b""
    say("second-waits", early == b"")
    # the first leaves in the middle of a command
    s.sendall(b'{"execute":"query-sta')
    s.close()
    say("second-greeted", read_line(t, 10).startswith(b'{"QMP"'))
    t.sendall(b'{"execute":"qmp_capabilities"}\n')
    read_line(t)

    # a flood of pipelined commands, every one answered in order
    n = 20000
    flood = b"".join(b'{"execute":"query-status","id":%d}\n' % i
                     for i in range(n))
    sender = threading.Thread(target=t.sendall, args=(flood,))
    t0 = time.monotonic()
    sender.start()
    seen, buf = 0, b""
    ok = True
    t.settimeout(60)
    while seen < n:
        d = t.recv(1 << 20)
        if not d:
            break
        buf += d
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if b'"id": %d}' % seen not in line:
                ok = False
            seen += 1
    sender.join()
    say("flood", f"{seen} {ok}")
    say("flood-rate", int(n / (time.monotonic() - t0)))

    # a client that does not read: the VM runs on while its answers wait
    t.setblocking(False)
    sent = 0
    chunk = b'{"execute":"query-cpus-fast"}\n' * 1000
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            sent += t.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
    t.setblocking(True)
    base = ticks(ser)
    time.sleep(1.5)
    say("runs-while-stalled", ticks(ser) > base)
    say("rss-growth-mb", (rss_kb(pid) - rss0) // 1024)
    t.close()

    u = negotiate(addr)
    say("still-running", b'"status": "running"' in ask(u, STATUS, "z"))
    base = ticks(ser)
    time.sleep(1)
    say("ticks-at-end", ticks(ser) > base)
    u.sendall(b'{"execute":"quit"}\n')
    read_until_quiet(u, 2)


def main():
    if sys.argv[1] == "transcript":
        transcript(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "hostile":
        hostile(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("unknown mode")


if __name__ == "__main__":
    main()
