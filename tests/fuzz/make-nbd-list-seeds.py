#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz-nbd-list.c: what a server sends to calf-nbd -L
(block/nbd-list.c), whole sessions: a newstyle server with structured
replies and two exports (descriptions, block sizes, meta contexts), one
that refuses structured replies and OPT_INFO, an old-style server, and
one whose replies carry bad lengths.  Usage: make-nbd-list-seeds.py DIR"""
import os, struct, sys

REP = 0x0003e889045565a9
def greet(flags=3):
    return b"NBDMAGIC" + b"IHAVEOPT" + struct.pack(">H", flags)
def rep(opt, typ, data=b""):
    return struct.pack(">QIII", REP, opt, typ, len(data)) + data
def server(name, desc=b""):
    return rep(3, 2, struct.pack(">I", len(name)) + name + desc)
def info_export(size, flags):
    return rep(6, 3, struct.pack(">HQH", 0, size, flags))
def info_bs(mn, pref, mx):
    return rep(6, 3, struct.pack(">HIII", 3, mn, pref, mx))
def ctx(name, cid=0):
    return rep(9, 4, struct.pack(">I", cid) + name)

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
seeds = {}
s = greet() + rep(8, 1)
s += server(b"ex1", b"a base image") + server(b"") + rep(3, 1)
s += info_export(4 << 20, 0x48f) + info_bs(1, 4096, 32 << 20) + rep(6, 1)
s += ctx(b"base:allocation") + ctx(b"qemu:allocation-depth") + ctx(b"qemu:dirty-bitmap:bm0") + rep(9, 1)
s += info_export(3 << 20, 0xded) + rep(6, 1)
s += ctx(b"base:allocation") + rep(9, 1) + ctx(b"qemu:x") + rep(9, 1)
seeds["two-exports"] = s
s = greet(1) + rep(8, (1 << 31) | 1) + server(b"only") + rep(3, 1) + rep(6, (1 << 31) | 1)
seeds["no-structured"] = s
seeds["oldstyle"] = b"NBDMAGIC" + struct.pack(">QQI", 0x00420281861253, 1 << 20, 3) + bytes(124)
s = greet() + rep(8, 1) + rep(3, 2, struct.pack(">I", 1000) + b"x") + rep(3, 1)
seeds["bad-name-length"] = s
s = greet() + rep(8, 1) + server(b"e") + rep(3, 1) + rep(6, 3, b"\0\0\1") + rep(6, 1)
seeds["bad-info"] = s
s = greet() + rep(8, 1) + rep(3, (1 << 31) | 1)
seeds["list-unsupported"] = s
for k, v in seeds.items():
    open(os.path.join(out, k), "wb").write(v)
