#!/usr/bin/env python3
"""What the test guest's ct.vpat=SECTORS left in a raw image (the model
of firmware/testguest/virtio-blk.c): pass P over sectors [0, C) and
pass P-1 over [C, SECTORS) (pass 0: zeros), every 64-bit word of sector s
in pass p being 0xC5 << 56 | p << 24 | s, and zeros after SECTORS.

  vpat-check.py RAW SECTORS          prints "P C" (C < SECTORS), or
                                     "bad: ..." and exits 1
  vpat-check.py --make OUT SECTORS P C SIZE   writes that model as raw
"""
import struct
import sys


def word(p, s):
    return 0xC5 << 56 | p << 24 | s if p else 0


def sector(p, s):
    return struct.pack("<Q", word(p, s)) * 64


def check(path, n):
    data = open(path, "rb").read()
    if len(data) < n * 512:
        return f"bad: {len(data)} bytes, fewer than {n} sectors"
    got = []
    for s in range(n):
        sec = data[s * 512:(s + 1) * 512]
        p = struct.unpack_from("<Q", sec)[0]
        p = (p >> 24) & 0xFFFFFFFF if p >> 56 == 0xC5 else 0
        if sec != sector(p, s):
            return f"bad: sector {s} is not one pass's"
        got.append(p)
    if any(data[n * 512:]):
        return "bad: data past the pattern"
    top = got[0]
    cut = next((s for s in range(n) if got[s] != top), n)
    if cut == n:  # a whole pass: pass top+1 up to sector 0
        return f"{top + 1} 0"
    if any(g != top - 1 for g in got[cut:]) or top == 0:
        return f"bad: passes {got} are not a prefix of the writes"
    return f"{top} {cut}"


def main():
    if sys.argv[1] == "--make":
        out, n, p, c, size = sys.argv[2], *map(int, sys.argv[3:7])
        with open(out, "wb") as f:
            for s in range(n):
                f.write(sector(p if s < c else p - 1, s))
            f.write(bytes(size - n * 512))
        return 0
    r = check(sys.argv[1], int(sys.argv[2]))
    print(r)
    return 1 if r.startswith("bad") else 0


if __name__ == "__main__":
    sys.exit(main())
