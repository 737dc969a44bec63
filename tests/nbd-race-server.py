#!/usr/bin/env python3
"""NBD servers that time their hang-ups against the nbd driver's races
(tests/nbd-races.t, tests/unit/nbd-races.c).  nbd-race-server.py SOCKET MODE
Every connection: the fixed newstyle handshake, GO with a 1 MiB export
(flush supported), simple replies only.  Reads answer byte (off + i) % 251.
MODE:
  flap   conn 1 hangs up at its first request; conn 2 hangs up right
         after its handshake; conn 3 and later serve.
  flush2 conn 1 acks writes at once but holds flushes until it has two
         and has acked a write sent after both; then it acks both
         flushes, waits 0.3 s and hangs up (that write was never
         flushed).  Conn 2 and later serve.
  mem4k  a 1 MiB export in memory (zeros at the start) whose minimum
         block is 4 KiB; it takes write zeroes and trim (both leave
         zeros) and fails with EINVAL any request not in whole blocks."""
import time
import socket
import struct
import sys

OPTS, REP = 0x49484156454F5054, 0x3E889045565A9
SIZE = 1 << 20


def recvall(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b


def reply(c, opt, typ, data=b""):
    c.sendall(struct.pack(">QIII", REP, opt, typ, len(data)) + data)


def simple(c, handle, data=b""):
    c.sendall(struct.pack(">IIQ", 0x67446698, 0, handle) + data)


MEM = bytearray(SIZE)


def handshake(c, mode):
    c.sendall(b"NBDMAGIC" + struct.pack(">QH", OPTS, 3))
    recvall(c, 4)
    while True:
        _, opt, ln = struct.unpack(">QII", recvall(c, 16))
        recvall(c, ln)
        if opt == 7:  # GO: HAS_FLAGS | SEND_FLUSH (| SEND_TRIM | SEND_WRITE_ZEROES)
            if mode == "mem4k":
                reply(c, opt, 3, struct.pack(">HQH", 0, SIZE, 1 | 4 | 0x20 | 0x40))
                reply(c, opt, 3, struct.pack(">HIII", 3, 4096, 4096, 1 << 20))
            else:
                reply(c, opt, 3, struct.pack(">HQH", 0, SIZE, 1 | 4))
            reply(c, opt, 1)
            return
        reply(c, opt, 0x80000001)  # unsupported: no structured replies


def pattern(off, n):
    return bytes((off + i) % 251 for i in range(n))


def serve_mem(c):
    while True:
        _, _, typ, handle, off, ln = struct.unpack(">IHHQQI", recvall(c, 28))
        data = recvall(c, ln) if typ == 1 else b""
        if typ == 2:
            return
        if (off | ln) % 4096 or off + ln > SIZE:
            c.sendall(struct.pack(">IIQ", 0x67446698, 22, handle))
        elif typ == 0:
            simple(c, handle, bytes(MEM[off:off + ln]))
        elif typ == 1:
            MEM[off:off + ln] = data
            simple(c, handle)
        elif typ in (4, 6):
            MEM[off:off + ln] = bytes(ln)
            simple(c, handle)
        else:
            simple(c, handle)


def serve(c):
    while True:
        _, _, typ, handle, off, ln = struct.unpack(">IHHQQI", recvall(c, 28))
        if typ == 0:
            simple(c, handle, pattern(off, ln))
        elif typ == 1:
            recvall(c, ln)
            simple(c, handle)
        elif typ == 2:
            return
        else:
            simple(c, handle)


def hold_flushes(c):
    held, after = [], 0
    while True:
        _, _, typ, handle, off, ln = struct.unpack(">IHHQQI", recvall(c, 28))
        if typ == 1:
            recvall(c, ln)
            simple(c, handle)
            after += len(held) == 2
        elif typ == 3:
            held.append(handle)
        elif typ == 2:
            return
        else:
            simple(c, handle, pattern(off, ln) if typ == 0 else b"")
        if len(held) == 2 and after:
            for h in held:
                simple(c, h)
            time.sleep(0.3)
            return


def main():
    mode = sys.argv[2]
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(sys.argv[1])
    ls.listen(4)
    n = 0
    while True:
        c, _ = ls.accept()
        n += 1
        try:
            handshake(c, mode)
            if mode == "mem4k":
                serve_mem(c)
            elif mode == "flap" and n == 1:
                recvall(c, 28)
            elif mode == "flap" and n == 2:
                pass
            elif mode == "flush2" and n == 1:
                hold_flushes(c)
            else:
                serve(c)
        except (EOFError, ConnectionError):
            pass
        c.close()
        print("conn", n, "closed", flush=True)


main()
