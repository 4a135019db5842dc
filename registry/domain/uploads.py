"""Upload sessions: the blobs a push must send, their completion and verification, the
version's completion, and abandoning a push."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from jubako.errors import InvalidBundle, JubakoError, NotFound

from ..db.bulk import insert_rows
from ..db.models import (
    FAILED,
    READY,
    UPLOADING,
    Blob,
    BlobUpload,
    Upload,
    Version,
    VersionFile,
    utcnow,
)
from ..errors import BadRequest, Conflict, Gone
from ..storage.base import DigestMismatch, PartsMissing, PartsReplaced, Storage, UploadGone
from .audit import Caller, audit
from .blobs import add_blob
from .queries import lock

MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload


PART_ALIGN = 1 << 20


@dataclass
class PendingBlob:
    """A blob the client is to upload, read as a row: a push can have tens of thousands,
    too many for an ORM object each."""

    digest: str
    size: int
    key: str
    part_size: int
    multipart_id: str
    fresh: bool = False  # begun by this request: no part can have arrived (upload_out)

    @property
    def part_count(self) -> int:
        return max(1, -(-self.size // self.part_size))


_BLOB_UPLOAD_ROW = (
    BlobUpload.id,
    BlobUpload.digest,
    BlobUpload.size,
    BlobUpload.key,
    BlobUpload.part_size,
    BlobUpload.multipart_id,
    BlobUpload.done,
)


def _rows(db: Session, q: Any) -> Any:
    """The rows of a Core SELECT through the session's connection: tens of thousands of
    plain rows, without the ORM's result processing (~40 % of the read's time)."""
    db.flush()  # the SELECT sees what the session has pending, as Session.execute would
    return db.connection().execute(q)


def _pending(r: Any) -> PendingBlob:
    return PendingBlob(r.digest, r.size, r.key, r.part_size, r.multipart_id)


def pending_blobs(db: Session, upload_id: str) -> list[PendingBlob]:
    """The session's blobs not uploaded yet."""
    q = select(*_BLOB_UPLOAD_ROW).where(
        BlobUpload.upload_id == upload_id, BlobUpload.done.is_(False)
    )
    return [_pending(r) for r in _rows(db, q.order_by(BlobUpload.id))]


def session_blobs(
    db: Session,
    storage: Storage,
    upload_id: str,
    wanted: dict[str, int],
    present: set[str],
    part_size: int,
) -> list[PendingBlob]:
    """Add to the session every blob of the version the registry lacks; return the
    session's unfinished blob uploads. Set-based: one SELECT, one multi-row INSERT and one
    bulk UPDATE, whatever the number of files."""
    rows = _rows(
        db,
        select(*_BLOB_UPLOAD_ROW).where(BlobUpload.upload_id == upload_id).order_by(BlobUpload.id),
    )
    have = {r.digest: r for r in rows}
    new: list[PendingBlob] = []
    redo: dict[int, PendingBlob] = {}  # to (re)start: collected since, or never begun
    for d, size in wanted.items():
        if d in present:
            continue
        if size == 0:  # the empty blob (d is EMPTY_SHA256: checked by wanted_blobs)
            key = storage.key_for(d, upload_id)
            storage.put_empty(key)
            add_blob(db, storage, d, 0, key)
            continue
        r = have.get(d)
        if r is None:
            key = storage.key_for(d, upload_id)
            new.append(PendingBlob(d, size, key, blob_part_size(size, part_size), ""))
        elif r.done or not r.multipart_id:  # done: its blob was collected since
            redo[r.id] = PendingBlob(r.digest, r.size, r.key, r.part_size, "")
    begin = new + list(redo.values())
    for p, mid in zip(begin, storage.begin_many([p.key for p in begin]), strict=True):
        p.multipart_id, p.fresh = mid, True
    insert_rows(
        db,
        BlobUpload.__table__,
        [
            {
                "upload_id": upload_id,
                "digest": p.digest,
                "size": p.size,
                "key": p.key,
                "part_size": p.part_size,
                "multipart_id": p.multipart_id,
                "done": False,
            }
            for p in new
        ],
    )
    if redo:
        db.execute(
            update(BlobUpload),
            [{"id": i, "done": False, "multipart_id": p.multipart_id} for i, p in redo.items()],
        )
    waiting = [redo.get(r.id) or _pending(r) for r in have.values() if r.id in redo or not r.done]
    return waiting + new


def blob_part_size(size: int, configured: int) -> int:
    """The configured part size, grown (in whole MiB) so a blob has at most MAX_PARTS."""
    need = -(-size // MAX_PARTS)
    return max(configured, -(-need // PART_ALIGN) * PART_ALIGN)


def get_upload(db: Session, upload_id: str) -> Upload:
    upload = db.get(Upload, upload_id)
    if upload is None:
        raise NotFound(f"upload {upload_id} not found (finished, aborted or swept)")
    if upload.expires_at < utcnow():
        raise Gone(f"upload {upload_id} expired at {upload.expires_at:%Y-%m-%d %H:%M:%S}Z")
    return upload


def blob_upload(db: Session, upload: Upload, digest: str) -> BlobUpload:
    bu = db.scalar(
        select(BlobUpload).where(BlobUpload.upload_id == upload.id, BlobUpload.digest == digest)
    )
    if bu is None:
        raise NotFound(f"blob {digest} is not part of upload {upload.id}")
    return bu


def expected_part_size(bu: BlobUpload | PendingBlob, number: int) -> int:
    if not 1 <= number <= bu.part_count:
        raise BadRequest(f"part number must be between 1 and {bu.part_count}")
    if number < bu.part_count:
        return bu.part_size
    return bu.size - bu.part_size * (bu.part_count - 1)


@dataclass(frozen=True)
class BlobToVerify:
    """A blob upload to assemble and verify, read before the transaction ends."""

    id: int
    digest: str
    key: str
    multipart_id: str
    size: int
    part_count: int


def blob_to_verify(db: Session, upload: Upload, digest: str) -> BlobToVerify | None:
    """The blob upload of ``digest`` to complete, or None when it is done already."""
    bu = blob_upload(db, upload, digest)
    if bu.done:
        return None
    return BlobToVerify(bu.id, digest, bu.key, bu.multipart_id, bu.size, bu.part_count)


def verify_blob(db: Session, storage: Storage, blob: BlobToVerify) -> JubakoError | None:
    """Assemble and verify one blob, then record it. Idempotent: concurrent or repeated
    completions of the same blob all answer alike, and a retry after a crash at any point
    finishes the job.

    The caller holds no transaction while this reads the whole blob back (nor SQLite's
    lock), and commits afterwards whatever the outcome: a refusal is returned, not raised,
    because what it recorded (a new multipart upload to start over) must be kept."""
    digest, key, multipart = blob.digest, blob.key, blob.multipart_id
    try:
        storage.complete(key, multipart, blob.size, digest, blob.part_count)
    except PartsMissing as e:
        # Another pusher of the same version may still be sending them: keep the upload.
        if db.get(Blob, digest) is None:
            return Conflict(f"blob {digest}: {e}; send them, then complete again", retry=True)
    except UploadGone as e:
        if db.get(Blob, digest) is None:
            _restart_blob(db, storage, blob.id, key, multipart)
            return Conflict(f"blob {digest}: {e}; send it again", retry=True)
    except PartsReplaced as e:
        if db.get(Blob, digest) is None:
            with contextlib.suppress(Exception):
                storage.abort(key, multipart)
            _restart_blob(db, storage, blob.id, key, multipart)
            return Conflict(f"blob {digest}: {e}; send it again", retry=True)
    except DigestMismatch as e:
        row = db.execute(
            select(BlobUpload.done, BlobUpload.multipart_id).where(BlobUpload.id == blob.id)
        ).first()
        if row is None or row.done:  # a concurrent completion stored it (and finished)
            if db.get(Blob, digest) is not None:
                return None
            return InvalidBundle(f"blob {digest}: {e}")
        # Start the blob over so the client can retry from scratch.
        with contextlib.suppress(Exception):
            storage.abort(key, multipart)
        if row.multipart_id == multipart:
            db.execute(
                update(BlobUpload)
                .where(BlobUpload.id == blob.id)
                .values(multipart_id=storage.begin(key))
                .execution_options(synchronize_session=False)
            )
        return InvalidBundle(f"blob {digest}: {e}")
    add_blob(db, storage, digest, blob.size, key)
    # A Core UPDATE: a joined pusher may have finished the whole upload (and removed this
    # row) meanwhile, which is no error: the blob is stored and recorded either way.
    db.execute(
        update(BlobUpload)
        .where(BlobUpload.id == blob.id)
        .values(done=True)
        .execution_options(synchronize_session=False)
    )
    return None


def _restart_blob(db: Session, storage: Storage, bu_id: int, key: str, multipart: str) -> None:
    """A new multipart upload for a blob upload whose old one is gone (unless a concurrent
    request replaced it already)."""
    db.execute(
        update(BlobUpload)
        .where(BlobUpload.id == bu_id, BlobUpload.multipart_id == multipart)
        .values(multipart_id=storage.begin(key))
        .execution_options(synchronize_session=False)
    )


def complete_version(
    db: Session, storage: Storage, caller: Caller, upload: Upload, digest: str
) -> Version:
    v = upload.version
    if digest != v.digest:
        raise InvalidBundle(f"digest {digest} does not match the manifest's {v.digest}")
    waiting = db.scalar(
        select(BlobUpload.digest)
        .where(BlobUpload.upload_id == upload.id, BlobUpload.done.is_(False))
        .limit(1)
    )
    if waiting is not None:
        raise Conflict(f"blob {waiting} has not been uploaded", missing=[waiting])
    missing = sorted(
        db.scalars(
            select(VersionFile.digest)
            .where(
                VersionFile.version_id == v.id,
                ~exists().where(Blob.digest == VersionFile.digest),
            )
            .distinct()
        )
    )
    if missing:
        raise Conflict(
            f"{len(missing)} blob(s) of {v.kind} {v.tag} are missing; push again", missing=missing
        )
    now = utcnow()
    n = db.execute(
        update(Version)
        .where(Version.id == v.id, Version.state == UPLOADING)
        .values(state=READY, ready_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if n != 1:
        db.refresh(v)
        if v.state == READY and v.digest == digest:  # a joined pusher finished it first
            return v
        raise Conflict(f"{v.kind} {v.tag} is no longer being uploaded")
    storage.release(_multiparts(db, upload.id))
    _delete_upload(db, upload)
    audit(db, caller, f"{v.kind}.ready", v.tag, digest=v.digest, upload=upload.id)
    db.flush()
    db.refresh(v)
    return v


def abort_upload(db: Session, storage: Storage, caller: Caller, upload: Upload) -> None:
    v = upload.version
    # locked, then looked at again: a completion committing meanwhile made the version ready
    # and removed this session; failing it then turned a ready version into a failed one
    lock(db, v)
    if v.state != UPLOADING or db.scalar(select(Upload.id).where(Upload.id == upload.id)) is None:
        raise NotFound(f"upload {upload.id} not found (finished, aborted or swept)")
    _abort_blobs(db, storage, upload)
    v.state = FAILED
    v.updated_at = utcnow()
    _delete_upload(db, upload)
    audit(db, caller, f"{v.kind}.push.abort", v.tag, upload=upload.id)


def _delete_upload(db: Session, upload: Upload) -> None:
    # The database deletes its blob uploads (ON DELETE CASCADE): none is loaded to go.
    db.execute(
        delete(Upload).where(Upload.id == upload.id).execution_options(synchronize_session=False)
    )
    db.expunge(upload)


def _multiparts(db: Session, upload_id: str, pending: bool = False) -> list[tuple[str, str]]:
    """(key, multipart id) of the session's blob uploads (only those not done: pending)."""
    q = select(BlobUpload.key, BlobUpload.multipart_id).where(
        BlobUpload.upload_id == upload_id, BlobUpload.multipart_id != ""
    )
    if pending:
        q = q.where(BlobUpload.done.is_(False))
    return [(r.key, r.multipart_id) for r in _rows(db, q)]


def _abort_blobs(db: Session, storage: Storage, upload: Upload) -> None:
    storage.abort_many(_multiparts(db, upload.id, pending=True))
    with contextlib.suppress(Exception):  # what is left, the orphan sweep finds
        storage.release(_multiparts(db, upload.id))


def drop(db: Session, storage: Storage, v: Version) -> None:
    upload = db.scalar(select(Upload).where(Upload.version_id == v.id))
    if upload is not None:
        _abort_blobs(db, storage, upload)
    db.delete(v)
