"""Stored blobs: recording a verified one, which ones a push needs, collecting unused
ones."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import and_, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jubako.errors import InvalidBundle

from ..db.models import Blob, BlobUpload, VersionFile, utcnow
from ..storage.base import Storage

log = logging.getLogger("jubako.registry")


def add_blob(db: Session, storage: Storage, digest: str, size: int, key: str) -> None:
    try:
        with db.begin_nested():
            db.add(Blob(digest=digest, size=size, key=key))
    except IntegrityError:
        other = db.get(Blob, digest)
        if other is not None and other.key != key:
            storage.delete(key)  # another push stored the same content first


def present_blobs(db: Session, wanted: dict[str, int]) -> set[str]:
    """The wanted blobs the registry has (marked as seen); a stored blob's size is the size
    of the bytes verified when it was stored, so another declared size is refused."""
    present: set[str] = set()
    digests = list(wanted)
    for i in range(0, len(digests), 500):
        chunk = digests[i : i + 500]
        for d, size in db.execute(select(Blob.digest, Blob.size).where(Blob.digest.in_(chunk))):
            if size != wanted[d]:
                raise InvalidBundle(
                    f"files: sha256 {d} is declared with {wanted[d]} bytes; its content has {size}"
                )
            present.add(d)
        db.execute(update(Blob).where(Blob.digest.in_(chunk)).values(last_seen_at=utcnow()))
    return present


def unreferenced(
    db: Session, *, digests: Iterable[str] | None = None, grace_s: int = 0
) -> list[str]:
    """Delete the rows of blobs no version references (and, with ``grace_s``, unseen for
    that long); return their storage keys, for ``delete_objects`` once that is committed
    (a blob row never points at a deleted object)."""
    q = select(Blob).where(~exists().where(VersionFile.digest == Blob.digest))
    q = q.where(~exists().where(and_(BlobUpload.digest == Blob.digest, BlobUpload.done.is_(False))))
    if digests is not None:
        ds = list(digests)
        if not ds:
            return []
        q = q.where(Blob.digest.in_(ds))
    if grace_s:
        q = q.where(Blob.last_seen_at < utcnow() - timedelta(seconds=grace_s))
    blobs = list(db.scalars(q))
    for b in blobs:
        db.delete(b)
    db.flush()
    return [b.key for b in blobs]


def delete_objects(storage: Storage, keys: list[str]) -> int:
    """Delete collected blobs from storage (after their rows are gone: see unreferenced)."""
    for key in keys:
        try:
            storage.delete(key)
        except Exception:  # noqa: BLE001 - the next sweep finds the orphan
            log.warning("could not delete blob %s", key, exc_info=True)
    return len(keys)
