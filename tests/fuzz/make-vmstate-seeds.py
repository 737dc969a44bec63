#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz-vmstate.c from a real saved state.

Usage: make-vmstate-seeds.py STATE OUTDIR

STATE is what `CALF_VMSTATE_DUMP=STATE calf run ... --savevm NAME` wrote
(header and sections, docs/VMSTATE.md), from a machine with an IDE disk
(primary master), a CD-ROM (secondary master), --vga std and virtio-rng,
as the harness has.  The sections are renamed to the harness's PCI slots
(VGA 00:02.0, virtio-rng 00:03.0); virtio ring addresses are folded into
the harness's 1 MiB of RAM.  Writes one whole state (first byte even)
and, per harness device, one section (first byte odd: 2 * index + 1).
"""
import os
import struct
import sys
import zlib

# the harness's bus_state order (fuzz-vmstate.c creates them so)
HARNESS = [
    "fw_cfg", "serial 0x3f8", "rtc", "i8042", "debug-exit 0x501", "port80",
    "port92", "pci", "pci 00:00.0 8086:1237", "pci 00:01.0 8086:7000",
    "pci 00:01.3 8086:7113", "acpi-pm", "pci 00:01.1 8086:7010",
    "ide 0x1f0", "ide 0x170", "pci 00:02.0 1234:1111", "vga", "vga vram 0",
    "vga vram 1", "pci 00:03.0 1af4:1005",
]


def sections(b):
    p, out = 128, []
    while p < len(b):
        n = struct.unpack_from("<H", b, p)[0]
        name = b[p + 2:p + 2 + n].decode()
        p += 2 + n
        dl = struct.unpack_from("<I", b, p)[0]
        p += 4
        out.append((name, bytearray(b[p:p + dl])))
        p += dl
    return out


def harness_name(name):
    if name.startswith("pci ") and name.endswith("1234:1111"):
        return "pci 00:02.0 1234:1111"
    if name.startswith("pci ") and name.endswith("1af4:1005"):
        return "pci 00:03.0 1af4:1005"
    return name


def fold_rings(data):
    # pci part: 256 config bytes, u8 vectors, 16 bytes each, u64, u8
    nvec = data[256]
    p = 256 + 1 + 16 * nvec + 8 + 1
    p += 1 + 1 + 8 + 8 + 4 + 4 + 1 + 1 + 2 + 2
    nq = data[p]
    p += 1
    for _ in range(nq):
        p += 2 + 2 + 1
        for _ in range(3):
            a = struct.unpack_from("<Q", data, p)[0] & 0xff000
            struct.pack_into("<Q", data, p, a)
            p += 8
        p += 2 + 2 + 2 + 1


def main():
    state, outdir = sys.argv[1], sys.argv[2]
    b = open(state, "rb").read()
    secs = {}
    for name, data in sections(b):
        name = harness_name(name)
        if name == "pci 00:03.0 1af4:1005":
            fold_rings(data)
        secs[name] = data
    os.makedirs(outdir, exist_ok=True)
    body = b""
    n = 0
    for name in HARNESS:
        if name in secs:
            nb = name.encode()
            body += struct.pack("<H", len(nb)) + nb
            body += struct.pack("<I", len(secs[name])) + bytes(secs[name])
            n += 1
    hdr = bytearray(b[:128])
    struct.pack_into("<I", hdr, 76, n)
    struct.pack_into("<Q", hdr, 80, len(body))
    struct.pack_into("<I", hdr, 88, zlib.crc32(body))
    ram_off = (128 + len(body) + (2 << 20) - 1) // (2 << 20) * (2 << 20)
    ram = struct.unpack_from("<Q", hdr, 64)[0]
    struct.pack_into("<Q", hdr, 96, ram_off)
    struct.pack_into("<Q", hdr, 104, ram_off + ram)
    struct.pack_into("<I", hdr, 92, 0)
    struct.pack_into("<I", hdr, 92, zlib.crc32(bytes(hdr)))
    with open(os.path.join(outdir, "state-ide-vga-rng"), "wb") as f:
        f.write(b"\0" + bytes(hdr) + body)
    for i, name in enumerate(HARNESS):
        if name in secs and name.split()[0] in ("ide", "vga", "pci") and \
                (name.startswith(("ide", "vga")) or
                 name.endswith(("1234:1111", "1af4:1005", "8086:7010"))):
            fn = "dev-" + name.replace(" ", "-").replace(":", "-")
            with open(os.path.join(outdir, fn), "wb") as f:
                f.write(bytes([2 * i + 1]) + bytes(secs[name]))


main()
