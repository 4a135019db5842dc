"""Build tar archives member by member, for the malicious-archive corpus."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass


@dataclass
class Member:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    size: int | None = None  # header size, when it should lie about the data


def read_members(archive: bytes) -> list[Member]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            out.append(Member(m.name, data, m.type, m.linkname))
    return out


def write_members(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.linkname = m.linkname
            info.mode = 0o644
            if m.type == tarfile.REGTYPE:
                info.size = len(m.data) if m.size is None else m.size
                payload = m.data if m.size is None or m.size <= len(m.data) else m.data + b"\0" * (m.size - len(m.data))
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()
