#!/usr/bin/env python3
"""Checks what headless Chromium made of a hisa report: the screenshot is not blank and shows the charts'
colours, and the DOM it parsed holds every section heading and the inline SVG charts.

usage: check_render.py SCREENSHOT.png DOM.html HEADING...

The PNG is decoded here with zlib alone (8-bit RGB or RGBA, not interlaced: what Chromium writes), so the
check needs nothing beyond Python's standard library.
"""
import re
import struct
import sys
import zlib


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(path):
    """Returns (width, height, channels, pixel bytes row after row)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    if depth != 8 or color not in (2, 6) or interlace:
        raise ValueError(f"{path}: unsupported PNG (bit depth {depth}, colour type {color}, interlace {interlace})")
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 255
        elif kind == 2:
            row = bytearray((r + p) & 255 for r, p in zip(row, prev))
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                upper_left = prev[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + paeth(left, prev[i], upper_left)) & 255
        elif kind != 0:
            raise ValueError(f"{path}: bad filter {kind} in row {y}")
        out[y * stride:(y + 1) * stride] = row
        prev = row
    return width, height, bpp, bytes(out)


def main():
    png, dom_path, headings = sys.argv[1], sys.argv[2], sys.argv[3:]
    failures = []
    width, height, bpp, pixels = decode_png(png)
    total = width * height
    non_white = 0
    chart_blue = 0  # the report's HISA colour, #3b6fb6, within a small tolerance
    for i in range(0, len(pixels), bpp):
        r, g, b = pixels[i], pixels[i + 1], pixels[i + 2]
        if r < 245 or g < 245 or b < 245:
            non_white += 1
            if abs(r - 0x3B) < 12 and abs(g - 0x6F) < 12 and abs(b - 0xB6) < 12:
                chart_blue += 1
    print(f"screenshot {width}x{height}: {100.0 * non_white / total:.1f} % non-white, {chart_blue} chart-blue pixels")
    if non_white < total * 0.03:
        failures.append(f"the screenshot is nearly blank ({non_white} of {total} pixels are not white)")
    if chart_blue < 2000:
        failures.append(f"the charts did not render: only {chart_blue} pixels in the HISA colour")

    dom = open(dom_path, encoding="utf-8").read()
    h2 = re.findall(r"<h2>(.*?)</h2>", dom)
    for heading in headings:
        if heading not in h2:
            failures.append(f"heading {heading!r} missing from the rendered DOM (found {h2})")
    svgs = dom.count("<svg")
    print(f"DOM: {len(dom)} characters, headings {h2}, {svgs} svg elements")
    if svgs < 8:
        failures.append(f"only {svgs} svg elements in the rendered DOM")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
