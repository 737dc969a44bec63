#!/usr/bin/env python3
"""A hostile NBD server for the client tests (tests/nbd-client.t): it
handshakes properly (structured replies, base:allocation, GO), then
answers the first read badly.  nbd-evil-server.py SOCKET MODE; serves
one connection on the Unix socket SOCKET.  MODE:
  killsend  a read's data chunk, whole, then shutdown(SHUT_RD) (the
            client's next send fails with EPIPE), a hang-up 2 s later
  overlap   a read answered by two data chunks over the same first half
            (their lengths add up to the request; the second half is
            never sent)
  lostflush a write acknowledged, then a hang-up; the next connection
            is served properly (writes and flushes acknowledged)
  gounsup   structured replies acknowledged, GO refused as unsupported,
            NBD_OPT_EXPORT_NAME then taken: the reads are answered with
            structured replies (0x11), as negotiated
  chaos     connection after connection: reads answered with each 4 KiB
            block's index as its bytes, writes and flushes acknowledged,
            until a random read (1 to 12 requests in) gets half its data
            before the server shuts its read side and hangs up"""
import random
import socket
import struct
import sys
import time

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


def chunk(c, flags, typ, handle, data):
    c.sendall(struct.pack(">IHHQI", 0x668E33EF, flags, typ, handle, len(data)) + data)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(1)
    print("listening", flush=True)
    first = True
    while True:
        c, _ = ls.accept()
        serve(c, mode, first)
        first = False
        if mode not in ("lostflush", "chaos"):
            return


RNG = random.Random(7)


def serve(c, mode, first):
    left = RNG.randint(1, 12)
    c.sendall(b"NBDMAGIC" + struct.pack(">QH", OPTS, 3))
    recvall(c, 4)
    while True:
        _, opt, ln = struct.unpack(">QII", recvall(c, 16))
        recvall(c, ln)
        if opt == 8:
            reply(c, opt, 1)
        elif opt == 10:
            q = b"base:allocation"
            reply(c, opt, 4, struct.pack(">I", 1) + q)
            reply(c, opt, 1)
        elif opt == 7 and mode == "gounsup":
            reply(c, opt, 0x80000001)
        elif opt == 1:
            c.sendall(struct.pack(">QH", SIZE, 1 | 4))
            break
        elif opt == 7:
            reply(c, opt, 3, struct.pack(">HQH", 0, SIZE, 1 | 4))
            reply(c, opt, 1)
            break
        else:
            reply(c, opt, 0x80000001)
    while True:
        _, _, typ, handle, off, ln = struct.unpack(">IHHQQI", recvall(c, 28))
        if typ == 1:
            recvall(c, ln)
            chunk(c, 1, 0, handle, b"")
            if mode == "lostflush" and first:
                time.sleep(0.1)
                c.close()
                return
            continue
        if typ == 2:
            c.close()
            return
        if typ != 0:
            chunk(c, 1, 0, handle, b"")
            continue
        half = ln // 2
        if mode == "chaos":
            data = b"".join(bytes([((off >> 12) + k) & 0xFF]) * 4096 for k in range(ln // 4096))
            left -= 1
            if left > 0:
                chunk(c, 1, 1, handle, struct.pack(">Q", off) + data)
                continue
            c.sendall(struct.pack(">IHHQI", 0x668E33EF, 1, 1, handle, 8 + ln) +
                      struct.pack(">Q", off) + data[:half])
            c.shutdown(socket.SHUT_RD)
            time.sleep(0.02)
            c.close()
            return
        if mode == "gounsup":
            chunk(c, 1, 1, handle, struct.pack(">Q", off) + b"\x11" * ln)
            continue
        if mode == "killsend":
            chunk(c, 1, 1, handle, struct.pack(">Q", off) + b"\x11" * ln)
            c.shutdown(socket.SHUT_RD)
            time.sleep(2)
            c.close()
            return
        if mode == "overlap":
            chunk(c, 0, 1, handle, struct.pack(">Q", off) + b"\x33" * half)
            chunk(c, 1, 1, handle, struct.pack(">Q", off) + b"\x44" * (ln - half))
            time.sleep(0.5)
            c.close()
            return


main()
