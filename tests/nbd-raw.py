#!/usr/bin/env python3
"""A raw NBD client for the tests (tests/nbd-*.t): well-behaved, or
hostile on purpose.  nbd-raw.py SOCKET|PORT MODE [EXPORT]; prints one line
saying what the server did.  MODE:
  hold       handshake (GO), then wait until stdin closes; "held"
  garbage    random bytes instead of a handshake; "closed" or "replied"
  bigopt     an option claiming 4 GiB of data; "closed" when hung up on
  bigwrite   a write claiming 2 GiB of payload; "closed" when hung up on
  bigread    a 64 MiB read: an error reply, then a 4 KiB read that works
  past-end   reads and writes past the end: the wire errors (EINVAL, ENOSPC)
  midwrite   a write request with half its payload, then a hang-up
  storm      20000 pipelined reads without reading replies, then a hang-up;
             then up to 512 pipelined 1 MiB writes (of 0x5a at 0) pushed
             until the server stops taking them for 2 s
  readstorm  32 pipelined 32 MiB reads, replies never read, 3 s, a hang-up;
             "sent"
  slow       connects and sends nothing (a handshake that never ends)
  deaf       NBD_OPT_INFO for unknown 4 KiB names, sent until the server
             stops taking them, replies never read; "connected", then
             waits until stdin closes
  badcmd     unknown command and flags: the wire errors, the session goes on"""
import os
import socket
import struct
import sys
import time

OPTS = 0x49484156454F5054


def connect(where):
    if where.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(where)
    else:
        s = socket.create_connection(("127.0.0.1", int(where)))
    return s


def recvall(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b


def opt(o, data=b""):
    return struct.pack(">QII", OPTS, o, len(data)) + data


def go(s, name, structured=False):
    recvall(s, 18)
    s.sendall(struct.pack(">I", 3))
    if structured:
        s.sendall(opt(8))
        recvall(s, 20)
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(opt(7, data))
    while True:
        h = recvall(s, 20)
        _, _, typ, ln = struct.unpack(">QIII", h)
        body = recvall(s, ln)
        if typ == 3 and struct.unpack(">H", body[:2])[0] == 0:
            size = struct.unpack(">Q", body[2:10])[0]
        if typ != 3:
            break
    assert typ == 1, hex(typ)
    return size


def req(t, off, ln, handle=1, flags=0):
    return struct.pack(">IHHQQI", 0x25609513, flags, t, handle, off, ln)


def simple_reply(s):
    magic, err, handle = struct.unpack(">IIQ", recvall(s, 16))
    assert magic == 0x67446698
    return err, handle


def closed(s):
    try:
        s.settimeout(10)
        while s.recv(65536):
            pass
        return "closed"
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    except socket.timeout:
        return "still open"


def main():
    where, mode = sys.argv[1], sys.argv[2]
    name = (sys.argv[3] if len(sys.argv) > 3 else "").encode()
    s = connect(where)
    if mode == "hold":
        go(s, name)
        print("held", flush=True)
        sys.stdin.read()
    elif mode == "garbage":
        s.sendall(os.urandom(4096))
        print(closed(s))
    elif mode == "bigopt":
        recvall(s, 18)
        s.sendall(struct.pack(">I", 3) + struct.pack(">QII", OPTS, 7, 0xffffffff))
        print(closed(s))
    elif mode == "bigwrite":
        go(s, name)
        s.sendall(req(1, 0, 0x80000000))
        print(closed(s))
    elif mode == "bigread":
        go(s, name)
        s.sendall(req(0, 0, 64 << 20))
        e1, _ = simple_reply(s)
        s.sendall(req(0, 0, 4096, handle=2))
        e2, h = simple_reply(s)
        data = recvall(s, 4096) if e2 == 0 else b""
        print("errors %d %d, handle %d, %d bytes" % (e1, e2, h, len(data)))
    elif mode == "past-end":
        size = go(s, name)
        s.sendall(req(0, size - 512, 1024))
        e1, _ = simple_reply(s)
        s.sendall(req(1, size, 512, handle=2) + b"\0" * 512)
        e2, _ = simple_reply(s)
        s.sendall(req(0, 0xffffffffffffff00, 512, handle=3))
        e3, _ = simple_reply(s)
        print("errors %d %d %d" % (e1, e2, e3))
    elif mode == "midwrite":
        go(s, name)
        s.sendall(req(1, 0, 1 << 20) + b"\xee" * (512 << 10))
        s.close()
        print("hung up")
    elif mode == "storm":
        go(s, name)
        batch = b"".join(req(0, 0, 1 << 20, handle=i) for i in range(1000))
        s.setblocking(False)
        sent = 0
        try:
            for _ in range(20):
                s.sendall(batch)
                sent += 1000
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass
        s.close()
        s = connect(where)
        go(s, name)
        w = req(1, 0, 1 << 20) + b"\x5a" * (1 << 20)
        s.setblocking(False)
        buf, n, idle = b"", 0, 0
        while idle < 400 and (n < 512 or buf):
            if not buf and n < 512:
                buf, n = w, n + 1
            try:
                k = s.send(buf)
                buf, idle = buf[k:], 0
            except BlockingIOError:
                idle += 1
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                break
        print("sent %d+ reads, %d MiB of writes" % (sent, n - (1 if buf else 0)))
        s.close()
    elif mode == "slow":
        recvall(s, 18)
        print(closed(s) if len(sys.argv) > 4 else "connected", flush=True)
        sys.stdin.read()
    elif mode == "readstorm":
        go(s, name)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for i in range(32):
            s.sendall(req(0, 0, 32 << 20, handle=i + 1))
        time.sleep(3)
        print("sent", flush=True)
        s.close()
    elif mode == "deaf":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        recvall(s, 18)
        s.sendall(struct.pack(">I", 3))
        nm = b"x" * 4096
        o = opt(6, struct.pack(">I", len(nm)) + nm + struct.pack(">H", 0))
        s.setblocking(False)
        buf, n, idle = b"", 0, 0
        while n < 2000 and idle < 200:
            if not buf:
                buf, n = o, n + 1
            try:
                buf = buf[s.send(buf):]
                idle = 0
            except BlockingIOError:
                idle += 1
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                break
        print("connected", flush=True)
        sys.stdin.read()
    elif mode == "badcmd":
        go(s, name)
        s.sendall(req(42, 0, 0))
        e1, _ = simple_reply(s)
        s.sendall(req(0, 0, 512, flags=0x80, handle=2))
        e2, _ = simple_reply(s)
        s.sendall(req(7, 0, 512, handle=3))  # block status without a context
        e3, _ = simple_reply(s)
        s.sendall(req(0, 0, 512, handle=4))
        e4, _ = simple_reply(s)
        recvall(s, 512)
        s.sendall(req(2, 0, 0))
        print("errors %d %d %d then %d" % (e1, e2, e3, e4))


main()
