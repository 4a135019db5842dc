"""Push a whole archive (``jubako export``, or the registry's own archive download) that the
client sent in one request: the REST route ``POST /api/v1/archives`` and the dashboard's
upload both land here.

The archive is verified as hostile input by :func:`jubako.archive.extract` into a staging
folder of the spool, then every bundle in it goes through the same path as a CLI push:
``versions.create_version`` (manifest checks, models of a bento ready with the pinned
digests, conflicts), one upload session, the missing blobs stored part by part through the
storage backend, ``complete_blob`` (size and sha256 verified again by the backend) and
``complete_version``. Models go first, then the bento. A failure aborts the session, so
the version ends up ``failed`` (never half ``ready``) and nothing is left in the spool.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jubako.archive import extract
from jubako.bundle import MODELS_DIR
from jubako.manifest import BENTO_MANIFEST, MODEL_MANIFEST, BentoManifest, Manifest

from .domain import uploads, versions
from .domain.audit import Caller
from .state import Registry
from .transactions import verify_and_commit

COPY_CHUNK = 1 << 20

log = logging.getLogger("jubako.registry")


@dataclass
class Pushed:
    kind: str
    tag: str
    digest: str
    created: bool  # False: the registry already had this exact version
    uploaded_bytes: int


def push_archive(
    reg: Registry,
    caller: Caller,
    archive: BinaryIO,
    *,
    labels: dict[str, str] | None = None,
    force: bool = False,
) -> list[Pushed]:
    """Verify ``archive`` and push what it holds; models first, then the top bundle.

    ``labels`` are added to the top bundle only (as ``jubako push --label`` does)."""
    reg.spool_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=reg.spool_dir, prefix="archive-"))
    try:
        ex = extract(archive, staging / "x")
        out = []
        for m in ex.models:
            root = staging / "x" / MODELS_DIR / m.name / m.version
            out.append(_push_bundle(reg, caller, m, root, {}, False))
        out.append(_push_bundle(reg, caller, ex.manifest, staging / "x", labels or {}, force))
        return out
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _manifest_file(m: Manifest) -> str:
    return BENTO_MANIFEST if isinstance(m, BentoManifest) else MODEL_MANIFEST


def _push_bundle(
    reg: Registry,
    caller: Caller,
    manifest: Manifest,
    root: Path,
    labels: dict[str, str],
    force: bool,
) -> Pushed:
    kind = manifest.kind
    text = (root / _manifest_file(manifest)).read_text()
    s = reg.settings
    if len(text.encode()) > s.max_manifest_bytes:
        from jubako.errors import InvalidBundle

        raise InvalidBundle("manifest too large")
    with reg.sessions() as db:
        res = versions.create_version(
            db,
            reg.storage,
            caller,
            kind,
            manifest.name,
            manifest.version,
            text,
            labels=labels,
            force=force,
            part_size=s.part_size,
            upload_timeout_s=s.upload_timeout_s,
            max_files=s.max_files,
            max_blob_bytes=s.max_blob_bytes,
        )
        db.commit()
        v = res.version
        if res.upload is None:
            return Pushed(kind, v.tag, v.digest, False, 0)
        upload_id = res.upload.id
        todo = [(b.digest, b.size, b.key, b.multipart_id, b.part_size) for b in res.missing]
    paths = {f.sha256: root / f.path for f in manifest.files}
    sent = 0
    try:
        for digest, size, key, multipart, part_size in todo:
            sent += _store_blob(reg, paths[digest], size, key, multipart, part_size)
            with reg.sessions() as db:
                upload = uploads.get_upload(db, upload_id)
                verify_and_commit(db, reg.storage, upload, digest)
        with reg.sessions() as db:
            upload = uploads.get_upload(db, upload_id)
            v = uploads.complete_version(db, reg.storage, caller, upload, manifest.digest())
            db.commit()
        reg.metrics.pushes.labels(kind).inc()
    except BaseException:
        _abort(reg, caller, upload_id)
        raise
    return Pushed(kind, v.tag, v.digest, True, sent)


def _store_blob(
    reg: Registry, path: Path, size: int, key: str, multipart: str, part_size: int
) -> int:
    """Hand the file to the backend part by part (each part spooled, as the route does)."""
    count = max(1, -(-size // part_size))
    with open(path, "rb") as src:
        for n in range(1, count + 1):
            want = part_size if n < count else size - part_size * (count - 1)
            fd, tmp = tempfile.mkstemp(dir=reg.spool_dir, prefix="part-")
            try:
                with os.fdopen(fd, "wb") as part:
                    left = want
                    while left:
                        chunk = src.read(min(COPY_CHUNK, left))
                        if not chunk:
                            break
                        part.write(chunk)
                        left -= len(chunk)
                reg.storage.put_part(key, multipart, n, Path(tmp), want)
                reg.metrics.bytes_in.inc(want)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return size


def _abort(reg: Registry, caller: Caller, upload_id: str) -> None:
    try:
        with reg.sessions() as db:
            upload = uploads.get_upload(db, upload_id)
            uploads.abort_upload(db, reg.storage, caller, upload)
            db.commit()
    except Exception:  # noqa: BLE001 - the sweeper fails it later
        log.warning("could not abort upload %s", upload_id, exc_info=True)
