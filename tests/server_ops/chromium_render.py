"""Render an HTML report in real headless Chromium: DOM dump and screenshot pixels (no extra packages)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def _chromium() -> str:
    exe = shutil.which("chromium")
    assert exe, "chromium (Debian package, in APT_PACKAGES) is required to render reports"
    return exe


def dump_dom(html_path: str) -> str:
    with tempfile.TemporaryDirectory() as prof:
        p = subprocess.run(
            [
                _chromium(),
                *FLAGS,
                f"--user-data-dir={prof}",
                "--dump-dom",
                "file://" + os.path.abspath(html_path),
            ],  # noqa: E501
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return p.stdout


def screenshot(html_path: str, size: str = "1600,1200") -> tuple[int, int, list[tuple[int, int, int]]]:
    """(width, height, RGB pixels) of the rendered page."""
    with tempfile.TemporaryDirectory() as prof:
        png = os.path.join(prof, "shot.png")
        subprocess.run(
            [
                _chromium(),
                *FLAGS,
                f"--user-data-dir={prof}",
                f"--screenshot={png}",
                f"--window-size={size}",
                "file://" + os.path.abspath(html_path),
            ],  # fmt: skip
            capture_output=True,
            timeout=120,
            check=True,
        )
        with open(png, "rb") as fh:
            return decode_png(fh.read())


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Minimal decoder for Chromium's 8-bit RGB/RGBA non-interlaced PNGs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if ctype == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            bpp = 3 if color == 2 else 4
        elif ctype == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    pixels = []
    i = 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 0xFF
            elif ftype == 2:
                line[x] = (line[x] + b) & 0xFF
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pred) & 0xFF
        pixels.extend(tuple(line[x : x + 3]) for x in range(0, stride, bpp))
        prev = line
    return width, height, pixels


def count_colour(pixels, hex_rgb: str, tolerance: int = 3) -> int:
    r, g, b = (int(hex_rgb[i : i + 2], 16) for i in (0, 2, 4))
    t = tolerance
    return sum(1 for p in pixels if abs(p[0] - r) <= t and abs(p[1] - g) <= t and abs(p[2] - b) <= t)
