"""Where transactions end: the request layer (API routes, dashboard views, the archive
push). The rule is in domain/__init__.py; these are the steps that end one mid-request."""

from __future__ import annotations

from sqlalchemy.orm import Session

from .db.models import Upload
from .domain import uploads
from .storage.base import Storage


def verify_and_commit(db: Session, storage: Storage, upload: Upload, digest: str) -> None:
    """Complete one blob of ``upload``: the blob is read back and hashed with no transaction
    open (nor SQLite's write lock held), then what it recorded is committed, refusal or not
    (a refusal keeps the new multipart upload it started), and a refusal is raised."""
    blob = uploads.blob_to_verify(db, upload, digest)
    if blob is None:
        return
    db.commit()
    refusal = uploads.verify_blob(db, storage, blob)
    db.commit()
    if refusal is not None:
        raise refusal
