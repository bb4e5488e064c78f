#!/usr/bin/env python3
"""html-report-check.py DOM.html SCREENSHOT.png: checks the simulator's HTML report as Chromium
rendered it: every section and plot is in the DOM, and each series colour of the legends is
actually painted in the screenshot (a style rule that greyed the legends, or a plot that drew
nothing, fails). Standard library only: the PNG is decoded here with zlib."""
import re
import struct
import sys
import zlib

SECTIONS = ["thresholds", "latency", "over-time", "rollout", "arrivals", "convergence",
            "phase-time", "errors", "tls", "faults", "failures"]
PLOTS = ["latency-plot", "latency-over-time", "requests-over-time", "rollout-curve",
         "requests-plot", "verdict"]
# The series colours of simulator/src/report/html/plots.rs.
COLOURS = {"blue": (0x4E, 0x79, 0xA7), "green": (0x59, 0xA1, 0x4F), "orange": (0xF2, 0x8E, 0x2B),
           "red": (0xE1, 0x57, 0x59), "purple": (0xB0, 0x7A, 0xA1)}


def pixels(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, head = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = head
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {head}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    out = []
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        out.append(bytes(line))
        prev = line
    return out, bpp


dom = open(sys.argv[1]).read()
fail = 0
for id_ in SECTIONS + PLOTS:
    if f'id="{id_}"' not in dom:
        print(f"html report: #{id_} missing from the rendered page")
        fail = 1
if "plot failed" in dom:
    print("html report: a plot failed to draw")
    fail = 1
rows, bpp = pixels(sys.argv[2])
counts = dict.fromkeys(COLOURS, 0)
for row in rows:
    for i in range(0, len(row), bpp):
        px = (row[i], row[i + 1], row[i + 2])
        for name, c in COLOURS.items():
            if all(abs(px[k] - c[k]) <= 6 for k in range(3)):
                counts[name] += 1
for name, n in counts.items():
    if n < 50:
        print(f"html report: the {name} series colour is (almost) not painted: {n} pixels")
        fail = 1
if not fail:
    print(f"html report: {len(SECTIONS)} sections, {len(PLOTS)} plots; series colours painted: {counts}")
sys.exit(fail)
