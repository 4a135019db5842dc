"""The sweeper: abandoned uploads failed, failed versions removed, unused blobs and
storage orphans collected (``registry/orphans.py``). It runs outside any request, so it
commits its own steps, as orphans.py does: the one exception to the transaction rule in
domain/__init__.py."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from jubako.errors import NotFound

from ..db.models import FAILED, UPLOADING, Upload, Version, utcnow
from ..orphans import remove_orphans
from ..storage.base import Storage
from .audit import SYSTEM
from .blobs import delete_objects, unreferenced
from .uploads import abort_upload


def sweep(
    db: Session,
    storage: Storage,
    *,
    upload_timeout_s: int,
    gc_grace_s: int,
    configured_timeout_s: int | None = None,
) -> dict[str, int]:
    """Fail abandoned uploads (idle for ``upload_timeout_s``), remove versions failed for as
    long, collect unreferenced blobs unseen for ``gc_grace_s``, and remove what storage
    holds that no row names (orphans.py) when older than ``gc_grace_s``.

    Sessions carry their expiry (set from ``configured_timeout_s`` when last touched), so a
    shorter ``upload_timeout_s`` than configured moves the cut-off accordingly.
    """
    now = utcnow()
    configured = upload_timeout_s if configured_timeout_s is None else configured_timeout_s
    expired_before = now + timedelta(seconds=configured - upload_timeout_s)
    failed = 0
    for upload in list(db.scalars(select(Upload).where(Upload.expires_at <= expired_before))):
        try:
            abort_upload(db, storage, SYSTEM, upload)
        except NotFound:  # finished (or aborted) meanwhile
            continue
        failed += 1
    db.flush()
    old = now - timedelta(seconds=upload_timeout_s)
    # An uploading version without a session cannot finish (a crash between two writes).
    orphans = db.scalars(
        select(Version).where(
            Version.state == UPLOADING,
            Version.updated_at <= old,
            ~exists().where(Upload.version_id == Version.id),
        )
    )
    for v in list(orphans):
        v.state = FAILED
        v.updated_at = now
        failed += 1
    db.flush()
    removed = 0
    for v in list(
        db.scalars(select(Version).where(Version.state == FAILED, Version.updated_at < old))
    ):
        db.delete(v)
        removed += 1
    db.commit()
    keys = unreferenced(db, grace_s=gc_grace_s)
    db.commit()  # forget the rows first: a blob row never points at a deleted object
    collected = delete_objects(storage, keys)
    orphans = remove_orphans(db, storage, grace_s=gc_grace_s)
    return {
        "failed": failed,
        "removed": removed,
        "blobs_collected": collected,
        "orphans_removed": orphans.objects,
        "uploads_aborted": orphans.uploads,
    }
