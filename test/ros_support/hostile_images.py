"""Hostile images for the input-bound tests (issue #15): a PNG decompression bomb built without
ever holding its pixels, and a thin strip."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=4)
def png_bomb(width: int = 20000, height: int = 20000, level: int = 1) -> bytes:
    """A valid 8-bit gray PNG of ``width`` x ``height`` zeros: a few hundred KB to a few MB of file,
    ``width * height`` bytes once decoded (1.2 GB as BGR for the default)."""
    comp = zlib.compressobj(level)
    rows = max(1, (1 << 22) // (width + 1))
    block = b"\0" * ((width + 1) * rows)  # filter byte 0, then the row
    parts = [comp.compress(block) for _ in range(height // rows)]
    parts.append(comp.compress(b"\0" * ((width + 1) * (height % rows))))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
