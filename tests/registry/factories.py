"""Small synthetic bundles made through the store API."""

from __future__ import annotations

import os
from pathlib import Path

from jubako.bundle import file_entries
from jubako.manifest import BentoManifest, ModelManifest, ModelRef, utcnow
from jubako.store import Bundle, Store


def _write(root: Path, files: dict[str, bytes | int]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, int):  # that many random bytes, written in chunks
            with open(p, "wb") as f:
                left = content
                while left:
                    n = min(left, 1 << 20)
                    f.write(os.urandom(n))
                    left -= n
        else:
            p.write_bytes(content)


def make_model(
    store: Store, name: str, version: str, files: dict[str, bytes | int] | None = None, **kw: object
) -> Bundle[ModelManifest]:
    files = files if files is not None else {"weights.bin": os.urandom(3000), "config.json": b"{}"}
    with store.models.staging() as staged:
        _write(staged, files)
        m = ModelManifest(
            name=name,
            version=version,
            created_at=utcnow(),
            framework="torch",
            format="torch.state_dict",
            files=file_entries(staged, files),
            **kw,
        )
        return store.models.commit(staged, m)


def make_bento(
    store: Store,
    name: str,
    version: str,
    models: list[Bundle[ModelManifest]] = (),  # type: ignore[assignment]
    files: dict[str, bytes | int] | None = None,
    labels: dict[str, str] | None = None,
) -> Bundle[BentoManifest]:
    files = (
        files if files is not None else {"src/service.py": b"print('hi')\n", "src/empty.txt": b""}
    )
    with store.bentos.staging() as staged:
        _write(staged, files)
        m = BentoManifest(
            name=name,
            version=version,
            created_at=utcnow(),
            service="service:svc",
            labels=labels or {},
            models=[ModelRef(tag=str(b.tag), digest=b.manifest.digest()) for b in models],
            files=file_entries(staged, files),
        )
        return store.bentos.commit(staged, m)
