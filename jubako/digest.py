"""sha256 helpers that stream, so large model files are never read whole."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> tuple[int, str]:
    """Size and hex sha256 of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def copy_hashing(src: BinaryIO, dst: BinaryIO, limit: int | None = None) -> tuple[int, str]:
    """Copy ``src`` to ``dst`` (at most ``limit`` bytes); return bytes copied and sha256."""
    h = hashlib.sha256()
    size = 0
    while True:
        n = CHUNK if limit is None else min(CHUNK, limit - size)
        if n <= 0:
            break
        chunk = src.read(n)
        if not chunk:
            break
        h.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return size, h.hexdigest()
