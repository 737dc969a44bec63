#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz-nbd.c: what well-behaved and badly behaved
NBD clients send, from the client flags on.  The export is named "x" and
is 1 MiB.  Usage: make-nbd-seeds.py DIR (tests/fuzz/corpus-nbd holds the
committed output)."""
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
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for k, v in seeds.items():
    with open(os.path.join(out, k), "wb") as f:
        f.write(v)
