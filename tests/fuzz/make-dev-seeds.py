#!/usr/bin/env python3
"""Writes the hand-made seeds of the device fuzz harnesses into
tests/fuzz/corpus-NAME/seed-*: byte programs in the format of
tests/fuzz/fuzz-dev.h, one per thing a guest (firmware, a driver) does.
Run it again after changing the format; the fuzzer's own finds sit
beside the seeds."""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)))

def le(v, n):
    return (v & ((1 << (8 * n)) - 1)).to_bytes(n, 'little')

def size_code(size):
    return {1: 0, 2: 1, 4: 2, 8: 3}[size]

def pio(pick, off, size, v, write=True):
    return bytes([0 if write else 1, pick, off, size_code(size)]) + le(v, 4)

def port(p, size, v, write=True):
    """Any port: pick 0xff, then the port's two bytes."""
    return bytes([0 if write else 1, 0xff, p & 0xff, size_code(size)]) + le(v, 4) + bytes([p >> 8])

def bar(fn, b, off, size, v, write=True):
    return bytes([2 if write else 3, fn, b, size_code(size)]) + le(off, 4) + le(v, 8)

def ram(gpa, data):
    out = b''
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out += bytes([4]) + le(gpa + i, 4) + bytes([len(chunk)]) + chunk
    return out

def store(gpa, size, v):
    return bytes([5]) + le(gpa, 4) + bytes([{2: 0, 4: 1, 8: 2}[size]]) + le(v, 8)

def cfg(fn, reg, size, v, write=True):
    return bytes([6 if write else 7, fn, reg, size_code(size)]) + le(v, 4)

RESET = bytes([8])

def write(name, seeds):
    d = os.path.join(OUT, 'corpus-' + name)
    os.makedirs(d, exist_ok=True)
    for k, v in seeds.items():
        with open(os.path.join(d, 'seed-' + k), 'wb') as f:
            f.write(v)

def be32(v):
    return struct.pack('>I', v & 0xffffffff)

# ---- fw_cfg and the ISA devices (ports: 0 sel 0x510, 1 dma 0x514, 2 uart,
# 3 kbd data, 4 kbd cmd, 5 debug exit) ----
def fw_dma(gpa, control, length, addr):
    return bytes([9]) + le(gpa, 4) + le(control, 4) + le(length, 4) + le(addr, 8)

def fw_read(sel, n):
    return bytes([10]) + le(sel, 2) + bytes([n])

fw = {
    'signature': fw_read(0, 4) + fw_read(1, 4),
    'dir': fw_read(0x19, 255) + fw_read(0x20, 64),
    'dma-sig': fw_dma(0x1000, 0x08 | 0x02, 16, 0x2000),
    'dma-dir': fw_dma(0x1000, 0x19 << 16 | 0x0a, 4096, 0x2000) + fw_dma(0x1000, 0x02, 100, 0x3000),
    'dma-big': fw_dma(0x1000, 0x20 << 16 | 0x0a, 70000, 0x10000) + fw_dma(0x1000, 0x04, 0xffffffff, 0),
    'dma-edge': fw_dma(0xffff0, 0x0a, 16, 0xfffff) + fw_dma(0x100000 - 16, 0x1a, 0x100, 0xffffffffffffff00)
                + fw_dma(0x10, 0x10, 1, 0) + fw_dma(0x20, 0xffffffff, 0xffffffff, 0),
    'dma-pio': pio(1, 0, 4, 0) + pio(1, 4, 4, 0x00100000) + pio(1, 4, 1, 0xff) + pio(1, 2, 4, 0, False),
    'uart': pio(2, 3, 1, 0x80) + pio(2, 0, 1, 1) + pio(2, 3, 1, 3) + pio(2, 1, 1, 0x0f)
            + b''.join(pio(2, 0, 1, c) for c in b'hello\n') + pio(2, 5, 1, 0, False) + pio(2, 2, 1, 0, False),
    'kbd': pio(4, 0, 1, 0x20) + pio(3, 0, 1, 0, False) + pio(4, 0, 1, 0x60) + pio(3, 0, 1, 0x47)
           + pio(3, 0, 1, 0xff) + pio(3, 0, 1, 0, False) + pio(3, 0, 1, 0xf0) + pio(3, 0, 1, 2)
           + pio(4, 0, 1, 0xd1) + pio(3, 0, 1, 0xdf) + pio(4, 0, 1, 0xfe),
    'reset': fw_read(0x20, 8) + RESET + fw_read(0x20, 8) + pio(5, 0, 1, 1),
}

# ---- VGA (ports: 0 0x3b4, 1 0x3ba, 2 0x3c0.., 3 0x3d4, 4 0x3da, 5 0x1ce;
# functions: 0 host bridge, 1 the VGA) ----
def render(cursor=1):
    return bytes([9, cursor])

def dispi(i, v):
    return bytes([10]) + le(i, 2) + le(v, 2)

def crtc(i, v):
    return bytes([13, i, v])

def text_screen():
    cells = b''.join(bytes([c, 0x1f if i % 3 else 0x4e]) for i, c in enumerate(b'calf fuzz text screen ' * 8))
    return ram(0xb8000, cells)

vga = {
    'text': text_screen() + render(1) + render(0),
    'text-regs': text_screen() + crtc(0x0a, 0x0d) + crtc(0x0e, 0) + crtc(0x0f, 5) + crtc(0x09, 0x87)
                 + crtc(0x13, 0x50) + crtc(0x0c, 0x7f) + crtc(0x0d, 0xff) + crtc(0x11, 0x80) + crtc(0x01, 0xff)
                 + render() + pio(2, 0, 1, 0x10) + pio(2, 0, 1, 0x88) + render(),
    'mode13': pio(2, 4, 1, 1) + pio(2, 5, 1, 0x0e) + pio(2, 0xe, 1, 5) + pio(2, 0xf, 1, 0x40)
              + pio(2, 0xe, 1, 6) + pio(2, 0xf, 1, 0x05) + bytes([12, 0x5a]) + crtc(0x13, 0x28) + render(),
    'dac': pio(2, 8, 1, 0) + b''.join(pio(2, 9, 1, v) for v in range(48)) + pio(2, 7, 1, 0)
           + b''.join(pio(2, 9, 1, 0, False) for _ in range(6)) + pio(2, 6, 1, 0x0f) + text_screen() + render(),
    'dispi-32': dispi(0, 0xb0c5) + dispi(1, 640) + dispi(2, 480) + dispi(3, 32) + dispi(4, 0x41)
                + bytes([11]) + le(0, 4) + le(4096, 2) + bytes([7]) + render(),
    'dispi-8': dispi(1, 800) + dispi(2, 600) + dispi(3, 8) + dispi(4, 0x61) + dispi(6, 1024)
               + dispi(8, 10) + dispi(9, 20) + render(),
    'dispi-big': dispi(1, 2560) + dispi(2, 1600) + dispi(3, 24) + dispi(4, 0x01) + dispi(9, 0x7fff) + render()
                 + dispi(3, 16) + dispi(6, 0xffff) + render() + dispi(3, 15) + render(),
    'dispi-caps': dispi(4, 0x02) + pio(5, 1, 2, 1, False) + pio(5, 1, 2, 2, False) + dispi(4, 0)
                  + dispi(0x10, 5) + pio(5, 1, 2, 0, False),
    'bar2': bar(1, 2, 0x500 + 2, 2, 1024) + bar(1, 2, 0x504, 2, 768) + bar(1, 2, 0x506, 2, 32)
            + bar(1, 2, 0x508, 2, 0x41) + bar(1, 2, 0x400 + 0x14, 1, 0x3) + bar(1, 2, 0x50a, 2, 0, False) + render(),
    'bar-move': cfg(1, 0x10, 4, 0xffffffff) + cfg(1, 0x10, 4, 0, False) + cfg(1, 0x10, 4, 0xd0000000)
                + dispi(1, 320) + dispi(2, 200) + dispi(3, 32) + dispi(4, 0xc1)
                + bytes([11]) + le(100, 4) + le(2000, 2) + bytes([3]) + cfg(1, 4, 2, 0) + render()
                + cfg(1, 4, 2, 2) + render() + RESET + render(),
}

# ---- PCI (ports: 0 0xcf8.., 1 0x92, 2 ACPI PM, 3 0xc000.., 4 0x3c0..;
# functions as scanned: 0 host bridge, 1 PIIX3, 2 ACPI PM (00:01.3),
# 3 VGA, 4 the test function at 00:05.0) ----
def msix_entry(v, addr, data, ctrl):
    return bytes([12, v]) + le(addr, 4) + le(addr >> 32, 4) + le(data, 4) + le(ctrl, 4)

def notify(v):
    return bytes([9]) + le(v, 2)

T = 4
pci = {
    'scan': b''.join(cfg(0xf0, 0, 4, 0, False) + bytes([d]) for d in range(0, 64, 3))
            + b''.join(cfg(i, r, 4, 0, False) for i in range(5) for r in (0, 8, 0x0c, 0x2c, 0x34, 0x3c)),
    'bar-size': b''.join(cfg(T, 0x10 + 4 * b, 4, 0xffffffff) + cfg(T, 0x10 + 4 * b, 4, 0, False) for b in range(6))
                + cfg(T, 0x10, 4, 0xc101) + cfg(T, 0x14, 4, 0xe1000000) + cfg(T, 4, 2, 7)
                + bar(T, 0, 4, 4, 0x1234) + bar(T, 2, 8, 8, 0xdeadbeef) + bar(T, 2, 4094, 4, 1),
    'msix': cfg(T, 4, 2, 6) + cfg(T, 0x40 + 8 + 2, 2, 0x8000) + msix_entry(0, 0xfee00000, 0x41, 0)
            + msix_entry(63, 0xfee01000, 0x42, 1) + notify(0) + notify(63) + notify(64) + notify(0xffff)
            + msix_entry(63, 0xfee01000, 0x42, 0) + bar(T, 1, 2048, 8, 0, False) + cfg(T, 0x4a, 2, 0xc000)
            + notify(3) + cfg(T, 0x4a, 2, 0x8000),
    'intx': cfg(T, 4, 2, 0x407) + bytes([10, 1]) + cfg(T, 6, 2, 0, False) + cfg(T, 4, 2, 7)
            + bytes([10, 1, 10, 0]) + cfg(1, 0x60, 4, 0x0b0a0980) + bytes([10, 1]) + RESET + bytes([10, 1]),
    'dma': cfg(T, 4, 2, 4) + bytes([11]) + le(0, 8) + le(4096, 4) + bytes([0])
           + bytes([11]) + le(16, 8) + le(16, 4) + bytes([1]) + bytes([11]) + le(0xffffffffffffff00, 8) + le(0x200, 4) + bytes([0])
           + cfg(T, 4, 2, 0) + bytes([11]) + le(0, 8) + le(16, 4) + bytes([0]),
    'chipset': cfg(0, 0x59, 1, 0x30) + cfg(0, 0x5a, 4, 0x33333333) + cfg(0, 0x72, 1, 0x4a) + cfg(1, 0x60, 4, 0x80808080)
               + cfg(2, 0x40, 4, 0x601) + cfg(2, 0x80, 1, 1) + pio(2, 4, 2, 0x2001)
               + pio(2, 8, 4, 0, False) + pio(1, 0, 1, 2) + port(0xcf9, 1, 2) + port(0xcf9, 1, 0, False)
               + port(0xcf9, 1, 6),
    'cfg-odd': port(0xcf8, 4, 0x80002800) + port(0xcfd, 2, 0x1234) + port(0xcff, 4, 0xffffffff)
               + port(0xcf8, 4, 0x800028fc) + port(0xcfe, 2, 0xabcd) + port(0xcfc, 4, 0, False)
               + port(0xcf8, 4, 0x80012800) + port(0xcfc, 4, 0, False) + port(0xcf8, 2, 0x1234)
               + cfg(T, 0x40, 4, 0xffffffff) + cfg(T, 0x44, 2, 0xffff) + cfg(T, 0x48, 4, 0, False),
}

# ---- IDE (ports: 0 0x1f0.., 1 0x3f6, 2 0x170.., 3 0x376) ----
def ata(sel, cmd, count=1, lba=0, feature=0, hcount=0, hlba=0):
    return bytes([9, sel, feature, count, hcount]) + le(lba, 4) + bytes([hlba, cmd])

def data_io(chan, words, write=False, seed=0, dword=False):
    return bytes([10, chan | (2 if write else 0) | (4 if dword else 0), seed]) + le(words, 2)

def prd(chan, table, entries, to_mem=True, inram=True):
    out = bytes([11, chan | (2 if to_mem else 0) | (4 if inram else 0)]) + le(table, 4) + bytes([len(entries)])
    for addr, cnt in entries:
        out += le(addr, 4) + le(cnt, 2)
    return out

def packet(sel, cdb, dma=False, limit=0xfffe):
    cdb = bytes(cdb) + bytes(12 - len(cdb))
    return bytes([12, sel, 1 if dma else 0]) + le(limit, 2) + cdb

def media(how):
    return bytes([13, how])

# after a disc change: "no disc", UNIT ATTENTION, REQUEST SENSE takes it
ua_taken = packet(1, [0]) + packet(1, [0]) + packet(1, [0x03, 0, 0, 0, 18]) + data_io(1, 9)

LBA = 4
ide = {
    'identify': ata(0, 0xec) + data_io(0, 256) + ata(2, 0xec) + data_io(0, 256) + ata(1, 0xa1) + data_io(1, 256)
                + ata(1, 0xec) + ata(3, 0xec),
    'pio-rw': ata(LBA, 0x20, 2, 10) + data_io(0, 512) + ata(LBA, 0x30, 2, 20) + data_io(0, 512, True, 9)
              + ata(LBA, 0x24, 1, 5, 0, 0, 0) + data_io(0, 256) + ata(LBA, 0x34, 3, 500) + data_io(0, 768, True)
              + ata(LBA | 2, 0x20, 4, 250) + data_io(0, 1024, dword=True),
    'multiple': ata(0, 0xc6, 4) + ata(LBA, 0xc4, 9, 0) + data_io(0, 9 * 256) + ata(LBA, 0xc5, 3, 8)
                + data_io(0, 768, True) + ata(0, 0x91, 63, 0x0f000000) + ata(0, 0x20, 1, 0x00000101),
    'dma-read': ata(LBA, 0xc8, 8, 0) + prd(0, 0x1000, [(0x20000, 2048), (0x30000, 2048)]),
    'dma-write': ata(LBA | 2, 0xca, 16, 256) + prd(0, 0x1000, [(0x20000, 0)], to_mem=False)
                 + ata(LBA | 2, 0x25, 0, 0, 0, 1) + prd(0, 0x2000, [(0x40000, 0)] * 8),
    'dma-bad': ata(LBA, 0xc8, 8, 0) + prd(0, 0xffff8, [(0xffff0, 4096), (0, 0)], inram=False)
               + ata(LBA, 0xc8, 1, 0x7ffff) + prd(0, 0x1000, [(0x20000, 512)])
               + ata(LBA, 0xc8, 64, 0) + prd(0, 0x1000, [(0x20000, 1)] * 8) + pio(1, 0, 1, 4) + pio(1, 0, 1, 0),
    'flags': ata(0, 0xef, 0x45, 0, 0x03) + ata(0, 0xef, 0, 0, 0x02) + ata(0, 0xef, 0, 0, 0x82) + ata(0, 0xe7)
             + ata(0, 0xea) + ata(0, 0x40, 4, 0) + ata(0, 0x90) + ata(0, 0xe5) + ata(0, 0x00) + ata(0, 0x08)
             + ata(0, 0x10) + pio(0, 7, 1, 0, False),
    'atapi-inquiry': packet(1, [0x12, 0, 0, 0, 96]) + data_io(1, 48) + packet(1, [0x25]) + data_io(1, 4)
                     + packet(1, [0x03, 0, 0, 0, 18]) + data_io(1, 9) + packet(1, [0]),
    'atapi-read': packet(1, [0x28, 0, 0, 0, 0, 2, 0, 0, 4]) + data_io(1, 4096)
                  + packet(1, [0xa8, 0, 0, 0, 0, 60, 0, 0, 0, 8]) + data_io(1, 8192)
                  + packet(1, [0x28, 0, 0, 0, 0, 0, 0, 0, 3], limit=1000) + data_io(1, 3072),
    'atapi-dma': packet(1, [0x28, 0, 0, 0, 0, 1, 0, 0, 2], dma=True) + prd(1, 0x1000, [(0x20000, 4096)])
                 + packet(1, [0x43, 0, 0, 0, 0, 0, 0, 0, 100], dma=True) + prd(1, 0x1000, [(0x20000, 100)]),
    'atapi-misc': packet(1, [0x43, 2, 0, 0, 0, 0, 0, 0xff, 0xff]) + data_io(1, 100) + packet(1, [0x46, 0, 0, 0, 0, 0, 0, 0, 64])
                  + data_io(1, 32) + packet(1, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]) + data_io(1, 4)
                  + packet(1, [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 64]) + data_io(1, 32)
                  + packet(1, [0x1e, 0, 0, 0, 1]) + packet(1, [0x1b, 0, 0, 0, 2]) + packet(1, [0x25])
                  + packet(1, [0x1e, 0, 0, 0, 0]) + packet(1, [0x1b, 0, 0, 0, 2]) + packet(1, [0x00])
                  + packet(1, [0x03, 0, 0, 0, 18]) + data_io(1, 9) + packet(1, [0xbb]) + ata(1, 0x08),
    # the monitor at the tray (op 13): open, empty, swap, close; locked;
    # during a DMA transfer
    'media-swap': packet(1, [0]) + media(0) + media(1) + packet(1, [0x28, 0, 0, 0, 0, 0, 0, 0, 1]) + data_io(1, 1024)
                  + media(2 | 8) + packet(1, [0]) + packet(1, [0]) + packet(1, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8])
                  + data_io(1, 4) + packet(1, [0]) + packet(1, [0x03, 0, 0, 0, 18]) + data_io(1, 9)
                  + packet(1, [0x28, 0, 0, 0, 0, 0, 0, 0, 2]) + data_io(1, 2048) + media(3),
    'media-locked': packet(1, [0x1e, 0, 0, 0, 1]) + media(1) + packet(1, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8])
                    + data_io(1, 4) + media(1 | 4 | 8) + packet(1, [0x25]) + data_io(1, 4),
    'media-dma': packet(1, [0x28, 0, 0, 0, 0, 0, 0, 0, 16], dma=True) + media(0x10 | 1 | 4)
                 + packet(1, [0x03, 0, 0, 0, 18]) + data_io(1, 9) + media(2 | 8) + ua_taken
                 + packet(1, [0x28, 0, 0, 0, 0, 0, 0, 0, 8], dma=True) + media(0x10 | 2 | 4 | 8) + ua_taken
                 + packet(1, [0x28, 0, 0, 0, 0, 0, 0, 0, 4], dma=True) + media(2 | 4 | 8)
                 + packet(1, [0x03, 0, 0, 0, 18]) + data_io(1, 9),
    'reset-mid': ata(LBA, 0xc8, 128, 0) + prd(0, 0x1000, [(0x20000, 0)]) + ata(LBA, 0x20, 8, 0) + data_io(0, 300)
                 + pio(1, 0, 1, 4) + pio(1, 0, 1, 0) + ata(LBA, 0x20, 1, 0) + RESET + data_io(0, 256),
}

# ---- virtio-blk (first byte: bit 0 qcow2, bit 1 modern-only; function 1
# is the device) ----
def vinit(legacy=False, feat=None, event_idx=False):
    how = (1 if legacy else 0) | (2 if feat is not None else 0) | (4 if event_idx else 0)
    return bytes([13, how]) + le(feat or 0, 8)

def vqueue(q, region, legacy=False, size=None):
    how = q | region << 2 | (0x10 if legacy else 0) | (0x20 if size is not None else 0)
    return bytes([11, how]) + le(size or 0, 2)

def vreq(q, region, typ, sector, lens, indirect=False, legacy_notify=False, idx=None):
    how = q | region << 2 | (0x10 if indirect else 0) | (0x20 if legacy_notify else 0)
    out = bytes([12, how, len(lens), typ]) + le(sector, 8)
    for n in lens:
        out += le(n, 2)
    return out + (bytes([0xff]) + le(idx, 2) if idx is not None else bytes([0]))

def mcommon(off, size, v):
    return bytes([9, off, size_code(size)]) + le(v, 8)

def lreg(off, size, v):
    return bytes([10, off, size_code(size)]) + le(v, 4)

SEC = 0x8000000000000000
virtio = {
    'modern-rw': bytes([0]) + vinit() + vqueue(0, 0) + vreq(0, 0, 1, SEC | 8, [4096]) + vreq(0, 0, 0, SEC | 8, [4096])
                 + vreq(0, 0, 8, 0, [20]) + vreq(0, 0, 2, 0, []),
    'legacy-rw': bytes([0]) + vinit(legacy=True, feat=0x10000000) + vqueue(0, 1, legacy=True)
                 + vreq(0, 1, 1, SEC | 1, [512, 512], legacy_notify=True) + vreq(0, 1, 0, SEC | 0, [1024], legacy_notify=True),
    'indirect': bytes([1]) + vinit() + vqueue(1, 2, size=64) + vreq(1, 2, 0, SEC | 100, [512] * 4, indirect=True)
                + vreq(1, 2, 1, SEC | 200, [2048, 0, 1], indirect=True) + vreq(1, 2, 4, 0, [], indirect=True),
    'discard': bytes([1]) + vinit() + vqueue(0, 0) + vreq(0, 0, 4, 0, [16]) + vreq(0, 0, 5, 0, [16, 16])
               + vreq(0, 0, 0xf0, 0, [8]),
    'mixed': bytes([0]) + vinit() + vqueue(0, 0) + lreg(0x0e, 2, 1) + lreg(0x08, 4, 0x30) + vreq(0, 0, 1, SEC | 3, [512])
             + lreg(0x12, 1, 0) + vreq(0, 0, 0, SEC | 3, [512]) + vinit(legacy=True) + vqueue(0, 3, legacy=True)
             + vreq(0, 3, 0, SEC | 3, [512], legacy_notify=True),
    'reset-mid': bytes([1]) + vinit() + vqueue(0, 0) + vqueue(1, 1) + vreq(0, 0, 1, SEC | 0, [65535, 65535])
                 + mcommon(0x14, 1, 0) + vreq(1, 1, 0, SEC | 0, [65535]) + RESET + vinit() + vqueue(0, 0)
                 + vreq(0, 0, 0, SEC | 0, [4096]),
    'bad-ring': bytes([2]) + vinit() + vqueue(0, 0, size=16) + vreq(0, 0, 0, SEC | 0, [512], idx=0x1000)
                + vinit() + vqueue(0, 0) + store(0x10000 + 14, 2, 0) + vreq(0, 0, 0, 0, [512])
                + store(0x10000 + 12, 2, 1) + vreq(0, 0, 1, SEC, [1]),
    'msix': bytes([0]) + cfg(1, 4, 2, 7) + cfg(1, 0x40, 4, 0, False) + vinit() + mcommon(0x10, 2, 0)
            + mcommon(0x16, 2, 0) + mcommon(0x1a, 2, 1) + vqueue(0, 0) + vreq(0, 0, 0, SEC, [512]) + mcommon(0x1a, 2, 0) + vreq(0, 0, 0, SEC, [512]),
    'config': bytes([0]) + bar(1, 4, 0x2000, 8, 0, False) + bar(1, 4, 0x2022, 1, 0, False) + bar(1, 4, 0x2000, 4, 0)
              + bar(1, 0, 0x14, 4, 0, False) + bar(1, 4, 0x1000, 1, 0, False) + lreg(0x13, 1, 0)
              + bar(1, 4, 0x3000, 2, 5) + bar(1, 4, 0x3004, 4, 1),
}

# ---- virtio-rng (fuzz-virtio.c built as fuzz-vrng): the same program;
# first byte bit 1 modern-only, bit 2 a rate limit from the second byte
# (max-bytes 1 + b, period 1 + b >> 5 ms); function 1 is the device ----
vrng = {
    'fill': bytes([0, 0]) + vinit() + vqueue(0, 0) + vreq(0, 0, 0, 0, [64]) + vreq(0, 0, 0, 0, [4096, 4096])
            + vreq(0, 0, 0, 0, [65535] * 4, indirect=True),
    'legacy': bytes([0, 0]) + vinit(legacy=True, feat=0) + vqueue(0, 1, legacy=True)
              + vreq(0, 1, 0, 0, [512, 16], legacy_notify=True),
    'limited': bytes([4, 0x27]) + vinit() + vqueue(0, 0) + vreq(0, 0, 0, 0, [4096]) + vreq(0, 0, 0, 0, [30])
               + vreq(0, 0, 0, 0, [30]) + mcommon(0x14, 1, 0) + vinit() + vqueue(0, 0) + vreq(0, 0, 0, 0, [8]),
    'modern-only': bytes([2, 0]) + vinit() + vqueue(0, 2, size=64) + vreq(0, 2, 0, 0, [1, 2, 3]) + vreq(1, 2, 0, 0, [8]),
    'bad-ring': bytes([0, 0]) + vinit() + vqueue(0, 0, size=16) + vreq(0, 0, 0, 0, [512], idx=0x1000)
                + vinit() + vqueue(0, 0) + store(0x10000 + 14, 2, 0) + vreq(0, 0, 0, 0, [512]) + RESET
                + vinit() + vqueue(0, 0) + vreq(0, 0, 0, 0, [512]),
}

# ---- virtio-net (fuzz-virtio.c built as fuzz-vnet): queue 0 receives,
# queue 1 transmits; the "request" header and data make the frame (type
# 2, a flush, so that the header's first byte, the virtio flags, is 4:
# DATA_VALID, not NEEDS_CSUM, and the data buffers are readable); an ARP
# request gets slirp's answer into queue 0; the features must be net's
# (a driver asking for more gets no FEATURES_OK) ----
def arp_frame(at):
    # The transmitted frame is the last 4 bytes of the 16-byte request
    # header (the high half of its sector: 0x7fffffff -> ff ff ff 7f, a
    # destination MAC slirp does not check) after the 12-byte virtio
    # header, then the data buffer: here the rest of an ARP request for
    # 10.0.2.2, written at `at` (the harness's first data buffer).
    f = bytes([0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1,
               0x52, 0x54, 0, 0x12, 0x34, 0x56, 10, 0, 2, 15] + [0] * 6 + [10, 0, 2, 2])
    return bytes([4]) + le(at, 4) + bytes([len(f)]) + f, len(f)

NETF = (1 << 32) | (1 << 5) | (1 << 16) | (1 << 1)  # VERSION_1 MAC STATUS GUEST_CSUM
vnet = {
    'arp': bytes([0]) + vinit(feat=NETF) + vqueue(0, 0) + vqueue(1, 1) + vreq(0, 0, 0, 0, [1600, 1600])
           + arp_frame(0x81000)[0] + vreq(1, 1, 2, 0x7fffffff00000000, [arp_frame(0)[1]]),
    'mrg': bytes([0]) + vinit(feat=(1 << 32) | (1 << 15) | (1 << 5) | 3) + vqueue(0, 0) + vqueue(1, 1)
           + vreq(0, 0, 0, 0, [16, 16, 16, 16]) + vreq(0, 0, 0, 0, [32]) + vreq(1, 1, 2, 0, [60, 60], indirect=True),
    'legacy': bytes([0]) + vinit(legacy=True, feat=(1 << 5) | (1 << 15)) + vqueue(0, 2, legacy=True)
              + vqueue(1, 3, legacy=True) + vreq(0, 2, 0, 0, [2048], legacy_notify=True)
              + vreq(1, 3, 2, 0, [100], legacy_notify=True),
    'no-rx': bytes([2]) + vinit(feat=NETF) + vqueue(1, 1) + vreq(1, 1, 2, 0, [64]) * 8 + RESET + vinit(feat=NETF) + vqueue(0, 0)
             + vreq(0, 0, 0, 0, [1600]),
}

if __name__ == '__main__':
    which = sys.argv[1:] or ['fwcfg', 'vga', 'pci', 'ide', 'virtio', 'vrng', 'vnet']
    for name in which:
        write(name, globals()[name if name != 'fwcfg' else 'fw'])
