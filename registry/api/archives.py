"""Archive download of a bento or a model: a tar stream of the self-contained layout (docs/contracts.md),
built from blobs as it is sent. Same members, order and format as ``jubako export``
(``jubako.archive``): ``bento.yaml`` first, the bento's files, then per model
``models/<name>/<version>/model.yaml`` and its files; PAX headers, mode 0644, the bento's
creation time. ``jubako import`` reads it."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator

import zstandard
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from jubako.archive import SUFFIXES
from jubako.manifest import BENTO_MANIFEST, MODEL_MANIFEST

from ..db.models import Version, VersionRef
from ..domain import queries
from ..state import Registry

BLOCK = 512
RECORD = BLOCK * 20


def _members(db: Session, v: Version) -> list[tuple[str, int, bytes | str]]:
    """(archive name, size, manifest bytes or blob key) in archive order."""
    out: list[tuple[str, int, bytes | str]] = []

    def add(prefix: str, ver: Version, manifest_name: str) -> None:
        data = ver.manifest.encode()
        out.append((prefix + manifest_name, len(data), data))
        keys = queries.blobs_of(db, ver)
        for f in sorted(queries.version_files(db, ver), key=lambda f: f.path):
            out.append((prefix + f.path, f.size, keys[f.digest]))

    add("", v, BENTO_MANIFEST if v.kind == "bento" else MODEL_MANIFEST)
    if v.kind != "bento":
        return out
    models = db.scalars(
        select(Version)
        .join(VersionRef, VersionRef.model_version_id == Version.id)
        .where(VersionRef.bento_version_id == v.id)
        .order_by(Version.name, Version.version)
    )
    for m in models:
        add(f"models/{m.name}/{m.version}/", m, MODEL_MANIFEST)
    return out


def _tar(reg: Registry, members: list[tuple[str, int, bytes | str]], mtime: int) -> Iterator[bytes]:
    total = 0
    for name, size, source in members:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, mtime
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        yield header
        total += len(header)
        if isinstance(source, bytes):
            yield source
        elif size:
            for chunk in reg.storage.read(source):
                reg.metrics.bytes_out.inc(len(chunk))
                yield chunk
        pad = -size % BLOCK
        yield b"\0" * pad
        total += size + pad
    end = BLOCK * 2
    total += end
    yield b"\0" * (end + (-total % RECORD))


def _compressed(chunks: Iterator[bytes], compression: str) -> Iterator[bytes]:
    if compression == "none":
        yield from chunks
        return
    if compression == "gzip":
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing
    else:
        comp = zstandard.ZstdCompressor(level=3).compressobj()
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


def archive_response(reg: Registry, db: Session, v: Version, compression: str) -> StreamingResponse:
    members = _members(db, v)
    db.commit()  # end the read transaction before streaming (SQLite: its lock)
    mtime = int(v.created_at.timestamp())
    filename = f"{v.name}-{v.version}{SUFFIXES[compression]}"
    media = {"none": "application/x-tar", "gzip": "application/gzip", "zstd": "application/zstd"}
    return StreamingResponse(
        _compressed(_tar(reg, members, mtime), compression),
        media_type=media[compression],
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Jubako-Digest": v.digest,
        },
    )
