"""Finding what storage holds that the database does not know: objects left by a crash
between storing a blob and recording it, unfinished multipart uploads (S3) and upload
scratch entries (local ``.uploads/``) of sessions that are gone.

Only what is older than the grace period goes, and never a key that a blob row or a blob
upload in progress names, so blobs of ready or uploading versions are never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db.models import Blob, BlobUpload, utcnow
from .storage.base import Storage

log = logging.getLogger("jubako.registry")


@dataclass(frozen=True)
class OrphansRemoved:
    objects: int
    uploads: int


def _known_keys(db: Session, keys: list[str]) -> set[str]:
    known: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        known |= set(db.scalars(select(Blob.key).where(Blob.key.in_(chunk))))
        known |= set(db.scalars(select(BlobUpload.key).where(BlobUpload.key.in_(chunk))))
    return known


def remove_orphans(db: Session, storage: Storage, *, grace_s: int) -> OrphansRemoved:
    """Remove orphan objects and unfinished uploads older than ``grace_s``. Commits: no
    transaction (nor SQLite's lock) is held while storage is listed."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    db.commit()
    old = [o.key for o in storage.list_objects() if o.modified < cutoff]
    # Asked after listing: a key recorded meanwhile is known here (and, being recorded
    # after the cut-off, its object was touched or written within the grace period).
    known = _known_keys(db, old)
    db.commit()
    objects = 0
    for key in old:
        if key in known:
            continue
        try:
            storage.delete(key)
            objects += 1
        except Exception:  # noqa: BLE001 - the next sweep tries again
            log.warning("could not delete orphan %s", key, exc_info=True)
    stale = [u for u in storage.list_unfinished() if u.started < cutoff]
    in_flight: set[str] = set()
    ids = [u.upload for u in stale]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        in_flight |= set(
            db.scalars(select(BlobUpload.multipart_id).where(BlobUpload.multipart_id.in_(chunk)))
        )
    db.commit()
    gone = [(u.key, u.upload) for u in stale if u.upload not in in_flight]
    storage.abort_many(gone)  # what fails, the next sweep tries again
    uploads = len(gone)
    if objects or uploads:
        log.info("removed orphans", extra={"objects": objects, "uploads": uploads})
    return OrphansRemoved(objects, uploads)
