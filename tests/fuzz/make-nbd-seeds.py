#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz-nbd.c: what well-behaved and badly behaved
NBD clients send, from the client flags on (the export is named "x" and
is 1 MiB); and for tests/fuzz/fuzz-nbd-client.c: what servers send, from
the greeting on, to the harness's open, read, block status, write, write
zeroes, trim and flush of 16 KiB each (handles 0x100, 0x200, ...).
Usage: make-nbd-seeds.py SERVER_DIR CLIENT_DIR (tests/fuzz/corpus-nbd and
tests/fuzz/corpus-nbd-client hold the committed output)."""
import os
import struct
import sys

OPTS = 0x49484156454F5054
REQ = 0x25609513


def opt(o, data=b""):
    return struct.pack(">QII", OPTS, o, len(data)) + data


def name_reqs(name, reqs=()):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(reqs)) + b"".join(
        struct.pack(">H", r) for r in reqs)


def meta(name, queries):
    d = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    for q in queries:
        d += struct.pack(">I", len(q)) + q
    return d


def req(t, off, length, flags=0, handle=1, data=b""):
    return struct.pack(">IHHQQI", REQ, flags, t, handle, off, length) + data


FLAGS = struct.pack(">I", 3)
GO = opt(8) + opt(10, meta(b"x", [b"base:allocation", b"qemu:allocation-depth"])) + \
    opt(7, name_reqs(b"x", (1, 2, 3)))
seeds = {
    "go-rw": FLAGS + GO + req(1, 4096, 512, data=b"\xab" * 512, handle=1) +
    req(0, 0, 8192, handle=2) + req(7, 0, 1 << 20, handle=3) +
    req(7, 0, 1 << 20, flags=8, handle=4) + req(3, 0, 0, handle=5) +
    req(4, 0, 65536, handle=6) + req(6, 65536, 65536, flags=2, handle=7) +
    req(1, 8192, 4096, flags=1, data=bytes(4096), handle=8) + req(5, 0, 4096, handle=9) +
    req(2, 0, 0),
    "go-simple": FLAGS + opt(7, name_reqs(b"x")) + req(0, 0, 512) + req(1, 0, 4, data=b"abcd") +
    req(0, 1 << 20, 1, handle=2) + req(9, 0, 0, handle=3) + req(2, 0, 0),
    "export-name": struct.pack(">I", 1) + opt(1, b"x") + req(0, 512, 512) + req(2, 0, 0),
    "list-info-abort": FLAGS + opt(3) + opt(6, name_reqs(b"x", (0, 1, 2, 3))) +
    opt(6, name_reqs(b"nope")) + opt(8) + opt(9, meta(b"x", [])) +
    opt(9, meta(b"x", [b"base:", b"qemu:"])) + opt(5) + opt(99, b"??") + opt(2),
    "bad-lengths": FLAGS + opt(7, struct.pack(">I", 0xffffffff) + b"x") +
    opt(10, meta(b"x", [b"base:allocation"])[:-3]) + struct.pack(">QII", OPTS, 7, 0x7fffffff),
    "oversized": FLAGS + opt(8) + opt(7, name_reqs(b"x")) + req(0, 0, 0xffffffff) +
    req(0, 0xfffffffffffffe00, 512, handle=2) + req(1, 0, 0x7fffffff, handle=3),
    "garbage": b"\x00\x00\x00\x03NBDMAGIC\xff" * 3,
}
REP = 0x3e889045565a9


def rep(o, t, data=b""):
    return struct.pack(">QIII", REP, o, t, len(data)) + data


def chunk(flags, t, handle, data):
    return struct.pack(">IHHQI", 0x668e33ef, flags, t, handle, len(data)) + data


def simple(handle, err=0):
    return struct.pack(">IIQ", 0x67446698, err, handle)


def segs(*parts):
    """The client harness's input: each part answers one client message
    (the first is sent at once; the second answers the client flags)."""
    return b"".join(struct.pack(">H", len(p)) + p for p in parts)


SIZE = 1 << 20
GREET = struct.pack(">QQH", 0x4E42444D41474943, OPTS, 3)
# greeting; flags; STRUCTURED_REPLY; SET_META_CONTEXT; GO
HS = [GREET, b"", rep(8, 1), rep(10, 4, struct.pack(">I", 7) + b"base:allocation") + rep(10, 1),
      rep(7, 3, struct.pack(">HQH", 0, SIZE, 1 | 4 | 8 | 32 | 64)) +
      rep(7, 3, struct.pack(">HIII", 3, 1, 4096, 32 << 20)) + rep(7, 1)]
READ = chunk(0, 1, 0x100, struct.pack(">Q", 0) + b"\x5a" * 4096) + \
    chunk(1, 2, 0x100, struct.pack(">QI", 4096, 12288))
STATUS = chunk(0, 5, 0x200, struct.pack(">IIIII", 7, 65536, 0, SIZE - 65536, 3)) + \
    chunk(1, 0, 0x200, b"")
REST = [simple(0x300), simple(0x400), chunk(1, 0, 0x500, b""), simple(0x600)]
client = {
    "client-good": segs(*HS, READ, STATUS, *REST),
    "client-errors": segs(*HS, chunk(1, 0x8001, 0x100, struct.pack(">IH", 5, 4) + b"oops"),
                          chunk(1, 0x8002, 0x200, struct.pack(">IHQ", 22, 0, 0)),
                          simple(0x300, 28), simple(0x400, 1), simple(0x500, 95),
                          simple(0x600, 5)),
    "client-unknown-export": segs(GREET, b"", rep(8, 1), rep(10, 1),
                                  rep(7, (1 << 31) | 6, b"export 'x' not present")),
    "client-no-go": segs(GREET[:-2] + struct.pack(">H", 0), b"",
                         struct.pack(">QH", SIZE, 1 | 4) + bytes(124),
                         simple(0x100) + b"\x5a" * 16384, simple(0x200), simple(0x300)),
    "client-oldstyle": segs(struct.pack(">QQQI", 0x4E42444D41474943, 0x00420281861253, SIZE, 0) +
                            bytes(124)),
    "client-bad-reply": segs(*HS, chunk(1, 1, 0x100, struct.pack(">Q", 1 << 40) + b"x" * 16),
                             chunk(1, 1, 0x999, b""), simple(0x300)),
    "client-bad-hole": segs(*HS, chunk(1, 2, 0x100, struct.pack(">QI", 1 << 40, 4096))),
    "client-short-read": segs(*HS, chunk(1, 1, 0x100, struct.pack(">Q", 0) + b"\x5a" * 100)),
}
for out, group in ((sys.argv[1], seeds), (sys.argv[2], client)):
    os.makedirs(out, exist_ok=True)
    for k, v in group.items():
        with open(os.path.join(out, k), "wb") as f:
            f.write(v)
