"""The registry's operations on metadata and blobs, free of HTTP.

Routes call these with a database session, the storage backend and the caller. Every
write records an audit event in the same transaction.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, literal, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jubako.errors import InvalidBundle, NotFound
from jubako.manifest import BentoManifest, ModelManifest, parse_manifest
from jubako.tags import LATEST, Tag

from .db.models import (
    BROKEN,
    FAILED,
    READY,
    UPLOADING,
    AuditEvent,
    Blob,
    BlobUpload,
    Deployment,
    Label,
    Repository,
    Upload,
    Version,
    VersionFile,
    VersionRef,
    utcnow,
)
from .domain.canonical import dump as canonical_dump
from .errors import BadRequest, Conflict, Gone
from .orphans import remove_orphans
from .storage.base import DigestMismatch, PartsMissing, Storage, UploadGone

log = logging.getLogger("jubako.registry")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MANIFEST_KINDS: dict[str, type[BentoManifest] | type[ModelManifest]] = {
    "bento": BentoManifest,
    "model": ModelManifest,
}
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
PART_ALIGN = 1 << 20
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class Caller:
    """Who makes a request: for audit events."""

    user: str
    token_id: int | None = None
    scope: str = "admin"
    client: str = ""


SYSTEM = Caller("system")


def audit(db: Session, caller: Caller, action: str, target: str, **detail: Any) -> None:
    db.add(
        AuditEvent(
            actor=caller.user,
            token_id=caller.token_id,
            action=action,
            target=target[:256],
            detail=detail,
            client=caller.client[:64],
        )
    )


# --- lookups ------------------------------------------------------------------------


def _check_name(kind: str, name: str, version: str | None = None) -> None:
    Tag(name, version or LATEST).validate()


def find_version(db: Session, kind: str, name: str, version: str) -> Version | None:
    return db.scalar(
        select(Version).where(
            Version.kind == kind, Version.name == name, Version.version == version
        )
    )


def get_version(db: Session, kind: str, name: str, version: str, *, ready: bool = False) -> Version:
    """A version; ``latest`` is the newest ready one. ``ready`` refuses other states."""
    _check_name(kind, name, version)
    if version == LATEST:
        v = db.scalar(
            select(Version)
            .where(Version.kind == kind, Version.name == name, Version.state == READY)
            .order_by(Version.created_at.desc(), Version.id.desc())
            .limit(1)
        )
        if v is None:
            raise NotFound(f"{kind} {name!r} has no ready version")
        return v
    v = find_version(db, kind, name, version)
    if v is None:
        raise NotFound(f"{kind} {name}:{version} not found")
    if ready and v.state != READY:
        raise Conflict(f"{kind} {name}:{version} is {v.state}, not ready", state=v.state)
    return v


def version_files(db: Session, v: Version) -> list[VersionFile]:
    return list(db.scalars(select(VersionFile).where(VersionFile.version_id == v.id)))


def used_by(db: Session, v: Version) -> list[str]:
    """What keeps a version from being deleted: deployments and bentos using it."""
    if v.kind == "bento":
        rows = db.scalars(
            select(Deployment).where(
                Deployment.bento_name == v.name, Deployment.bento_version == v.version
            )
        )
        return [f"deployment {d.namespace}/{d.name}" for d in rows]
    rows = db.scalars(
        select(Version)
        .join(VersionRef, VersionRef.bento_version_id == Version.id)
        .where(VersionRef.model_version_id == v.id)
    )
    return [f"bento {b.tag}" for b in rows]


# --- listing ------------------------------------------------------------------------

SORTS = {"created_at", "-created_at", "name", "-name"}


def _selector_clauses(selector: str) -> list[Any]:
    """Kubernetes equality-based label selectors: ``a=b,c!=d,e,!f``."""
    out = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = (s.strip() for s in term.split("!=", 1))
            op = "!="
        elif "==" in term or "=" in term:
            k, v = (s.strip() for s in re.split("==?", term, maxsplit=1))
            op = "="
        elif term.startswith("!"):
            k, v, op = term[1:].strip(), "", "absent"
        else:
            k, v, op = term, "", "present"
        if not LABEL_KEY.fullmatch(k):
            raise BadRequest(f"invalid label selector term {term!r}")
        has = exists().where(Label.version_id == Version.id, Label.key == k)
        if op == "=":
            out.append(
                exists().where(Label.version_id == Version.id, Label.key == k, Label.value == v)
            )
        elif op == "!=":
            out.append(
                ~exists().where(Label.version_id == Version.id, Label.key == k, Label.value == v)
            )
        elif op == "present":
            out.append(has)
        else:
            out.append(~has)
    return out


def _encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != 2 or not isinstance(values[1], int):
            raise ValueError
        if not 0 <= values[1] < 2**63:  # row ids; past 64 bits SQLite raises OverflowError
            raise ValueError
        if sort.lstrip("-") == "created_at":
            values[0] = datetime.fromisoformat(values[0])
        elif not isinstance(values[0], str) or len(values[0]) > 63 or "\x00" in values[0]:
            raise ValueError  # a name: fits its column, no NUL (PostgreSQL refuses it)
        return values
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("invalid cursor") from None


def list_versions(
    db: Session,
    kind: str,
    *,
    name: str | None = None,
    prefix: str = "",
    selector: str = "",
    state: str | None = None,
    sort: str = "-created_at",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Version], str | None]:
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {sorted(SORTS)}")
    q = select(Version).where(Version.kind == kind)
    if name is not None:
        q = q.where(Version.name == name)
    if prefix:
        esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Version.name.like(esc + "%", escape="\\"))
    if state:
        q = q.where(Version.state == state)
    for clause in _selector_clauses(selector):
        q = q.where(clause)
    col = Version.created_at if sort.lstrip("-") == "created_at" else Version.name
    desc = sort.startswith("-")
    if cursor:
        v0, id0 = _decode_cursor(cursor, sort)
        # A row-value comparison, not `col < v0 OR (col = v0 AND id < id0)`: PostgreSQL
        # turns it into an index range start, so a page costs the same at any depth (the
        # OR form filtered every row before the cursor: 7 ms at row 20 000 of 100 000).
        key = tuple_(col, Version.id)
        at = tuple_(literal(v0, col.type), literal(id0, Version.id.type))
        q = q.where(key < at if desc else key > at)
    order = [col.desc(), Version.id.desc()] if desc else [col.asc(), Version.id.asc()]
    rows = list(db.scalars(q.order_by(*order).limit(limit + 1)))
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        nxt = _encode_cursor([getattr(last, col.key), last.id])
    return rows, nxt


def list_repositories(db: Session, kind: str, prefix: str = "") -> list[dict[str, Any]]:
    q = (
        select(
            Version.name,
            func.count(Version.id),
            func.max(Version.created_at),
        )
        .where(Version.kind == kind)
        .group_by(Version.name)
        .order_by(Version.name)
    )
    if prefix:
        q = q.where(Version.name.startswith(prefix, autoescape=True))
    return [{"name": n, "versions": c, "updated_at": t} for n, c, t in db.execute(q)]


# --- push ---------------------------------------------------------------------------


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


@dataclass
class CreateResult:
    version: Version
    upload: Upload | None
    created: bool
    missing: list[PendingBlob] = field(default_factory=list)


MAX_PATH = 1024  # the version_files.path column


def _check_paths(kind: str, manifest: BentoManifest | ModelManifest) -> None:
    seen = set()
    for f in manifest.files:
        p = f.path
        parts = p.split("/")
        if (
            not p
            or p.startswith("/")
            or "\\" in p
            or "\x00" in p
            or any(s in ("", ".", "..") for s in parts)
        ):
            raise InvalidBundle(f"files: unsafe path {p!r}")
        if len(p) > MAX_PATH:
            raise InvalidBundle(f"files: path {p[:60]!r}... longer than {MAX_PATH} characters")
        if p in ("bento.yaml", "model.yaml"):
            raise InvalidBundle(f"files: {p!r} is the manifest itself")
        if kind == "bento" and parts[0] == "models":
            raise InvalidBundle(f"files: {p!r}: models/ is reserved for referenced models")
        if p in seen:
            raise InvalidBundle(f"files: {p!r} listed twice")
        seen.add(p)


def parse(kind: str, name: str, version: str, text: str) -> BentoManifest | ModelManifest:
    _check_name(kind, name, version)
    if version == LATEST:
        raise BadRequest("'latest' is not a version one can push")
    m = parse_manifest(text.encode(), "manifest", MANIFEST_KINDS[kind])
    if (m.name, m.version) != (name, version):
        raise InvalidBundle(f"manifest names {m.tag}, but the request is for {name}:{version}")
    _check_paths(kind, m)
    return m


def _check_labels(labels: dict[str, Any]) -> dict[str, str]:
    for k, v in labels.items():
        if not LABEL_KEY.fullmatch(k):
            raise BadRequest(f"invalid label key {k!r}")
        if v is not None and (not isinstance(v, str) or len(v) > 255 or "\x00" in v):
            raise BadRequest(
                f"label {k!r}: value must be a string of at most 255 characters, without NUL"
            )
    return labels


def _repository(db: Session, kind: str, name: str) -> Repository:
    repo = db.scalar(select(Repository).where(Repository.kind == kind, Repository.name == name))
    if repo is None:
        try:
            with db.begin_nested():
                repo = Repository(kind=kind, name=name)
                db.add(repo)
        except IntegrityError:
            repo = db.scalar(
                select(Repository).where(Repository.kind == kind, Repository.name == name)
            )
    assert repo is not None
    return repo


def _settle_existing(
    db: Session,
    storage: Storage,
    caller: Caller,
    kind: str,
    name: str,
    version: str,
    digest: str,
    wanted: dict[str, int],
    present: set[str],
    *,
    force: bool,
    part_size: int,
    upload_timeout_s: int,
) -> CreateResult | None:
    """Deal with a version already there: answer it (ready, same content), join its push
    (uploading, same content), or clear it for a new one (failed, forced); None when a new
    version row is to be made."""
    existing = find_version(db, kind, name, version)
    if existing is None:
        return None
    if existing.state == READY:
        if existing.digest == digest:
            return CreateResult(existing, None, created=False)
        if not force:
            raise Conflict(
                f"{kind} {name}:{version} already exists with different content"
                f" ({existing.digest}); push with --force to replace it",
                digest=existing.digest,
            )
        delete_version(db, storage, caller, existing, force=False, collect=False)
        db.flush()
    elif existing.state == UPLOADING and existing.digest == digest:
        upload = db.scalar(select(Upload).where(Upload.version_id == existing.id))
        if upload is not None:
            upload.expires_at = utcnow() + timedelta(seconds=upload_timeout_s)
            missing = _session_blobs(db, storage, upload.id, wanted, present, part_size)
            audit(db, caller, f"{kind}.push.resume", existing.tag, upload=upload.id)
            return CreateResult(existing, upload, created=False, missing=missing)
        _drop(db, storage, existing)
    elif existing.state == UPLOADING and not force:
        raise Conflict(
            f"{kind} {name}:{version} is being pushed with different content"
            f" ({existing.digest}); wait for it, or push with --force",
            digest=existing.digest,
        )
    else:  # failed, or a forced takeover of a push in progress
        _drop(db, storage, existing)
    db.flush()
    return None


def create_version(
    db: Session,
    storage: Storage,
    caller: Caller,
    kind: str,
    name: str,
    version: str,
    manifest_text: str,
    *,
    labels: dict[str, str] | None = None,
    force: bool = False,
    part_size: int,
    upload_timeout_s: int,
    max_files: int = 100_000,
    max_blob_bytes: int = 5 << 40,
) -> CreateResult:
    m = parse(kind, name, version, manifest_text)
    _check_labels(m.labels)  # the manifest's labels pass the same checks as PATCH
    labels = _check_labels(labels or {})
    wanted = _wanted_blobs(m, max_files=max_files, max_blob_bytes=max_blob_bytes)
    present = _present_blobs(db, wanted)
    dumped = canonical_dump(m)  # m.dump()'s bytes, without an emitter pass per file
    canonical = dumped.decode()
    digest = "sha256:" + hashlib.sha256(dumped).hexdigest()
    refs: list[Version] = []
    if isinstance(m, BentoManifest):
        for ref in m.models:
            t = ref.parsed
            mv = find_version(db, "model", t.name, t.version)
            if mv is None or mv.state != READY:
                raise InvalidBundle(f"models: model {t} is not in the registry; push it first")
            if mv.digest != ref.digest:
                raise InvalidBundle(
                    f"models: model {t} in the registry has digest {mv.digest}, the bento"
                    f" expects {ref.digest}"
                )
            refs.append(mv)

    settled = _settle_existing(
        db,
        storage,
        caller,
        kind,
        name,
        version,
        digest,
        wanted,
        present,
        force=force,
        part_size=part_size,
        upload_timeout_s=upload_timeout_s,
    )
    if settled is not None:
        return settled

    repo = _repository(db, kind, name)
    all_labels = {**m.labels, **{k: v for k, v in labels.items() if v is not None}}
    v = Version(
        repository_id=repo.id,
        kind=kind,
        name=name,
        version=version,
        state=UPLOADING,
        digest=digest,
        manifest=canonical,
        size=m.size,
        file_count=len(m.files),
        created_at=m.created_at,
        updated_at=utcnow(),
        created_by=caller.user,
        labels=[Label(key=k, value=val) for k, val in all_labels.items()],
    )
    try:
        with db.begin_nested():
            db.add(v)
            db.flush()
    except IntegrityError:
        # Another request made the same version meanwhile (PostgreSQL waited for its
        # commit): join its push, or answer it, as if it had been there first.
        settled = _settle_existing(
            db,
            storage,
            caller,
            kind,
            name,
            version,
            digest,
            wanted,
            present,
            force=False,
            part_size=part_size,
            upload_timeout_s=upload_timeout_s,
        )
        if settled is not None:
            return settled
        raise Conflict(
            f"{kind} {name}:{version} is being pushed concurrently; retry", retry=True
        ) from None
    if m.files:  # multi-row INSERTs on the table: no ORM object nor ORM bulk step per file
        db.execute(
            insert(VersionFile.__table__),
            [
                {"version_id": v.id, "path": f.path, "digest": f.sha256, "size": f.size}
                for f in m.files
            ],
        )
    db.add_all(VersionRef(bento_version_id=v.id, model_version_id=mv.id) for mv in refs)
    upload = Upload(
        id=secrets.token_hex(16),
        version_id=v.id,
        expires_at=utcnow() + timedelta(seconds=upload_timeout_s),
        created_by=caller.user,
    )
    db.add(upload)
    db.flush()
    missing = _session_blobs(db, storage, upload.id, wanted, present, part_size)
    audit(db, caller, f"{kind}.push", v.tag, digest=digest, upload=upload.id)
    return CreateResult(v, upload, created=True, missing=missing)


def _wanted_blobs(
    m: BentoManifest | ModelManifest, *, max_files: int, max_blob_bytes: int
) -> dict[str, int]:
    """The manifest's blobs, digest -> size, refusing declarations no bytes can match: a
    blob is only ever recorded under a digest verified from bytes of the declared size."""
    if len(m.files) > max_files:
        raise InvalidBundle(f"files: {len(m.files)} files, at most {max_files} are accepted")
    wanted: dict[str, int] = {}
    for f in m.files:
        if f.size > max_blob_bytes:
            raise InvalidBundle(
                f"files: {f.path!r}: {f.size} bytes is larger than {max_blob_bytes}"
            )
        if (f.size == 0) != (f.sha256 == EMPTY_SHA256):
            raise InvalidBundle(f"files: {f.path!r}: {f.size} bytes cannot have sha256 {f.sha256}")
        if wanted.setdefault(f.sha256, f.size) != f.size:
            raise InvalidBundle(f"files: sha256 {f.sha256} is declared with two sizes")
    return wanted


def _present_blobs(db: Session, wanted: dict[str, int]) -> set[str]:
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


_BLOB_UPLOAD_ROW = (
    BlobUpload.id,
    BlobUpload.digest,
    BlobUpload.size,
    BlobUpload.key,
    BlobUpload.part_size,
    BlobUpload.multipart_id,
    BlobUpload.done,
)


def _pending(r: Any) -> PendingBlob:
    return PendingBlob(r.digest, r.size, r.key, r.part_size, r.multipart_id)


def pending_blobs(db: Session, upload_id: str) -> list[PendingBlob]:
    """The session's blobs not uploaded yet."""
    q = select(*_BLOB_UPLOAD_ROW).where(
        BlobUpload.upload_id == upload_id, BlobUpload.done.is_(False)
    )
    return [_pending(r) for r in db.execute(q.order_by(BlobUpload.id))]


def _session_blobs(
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
    rows = db.execute(
        select(*_BLOB_UPLOAD_ROW).where(BlobUpload.upload_id == upload_id).order_by(BlobUpload.id)
    )
    have = {r.digest: r for r in rows}
    new: list[PendingBlob] = []
    redo: dict[int, PendingBlob] = {}  # to (re)start: collected since, or never begun
    for d, size in wanted.items():
        if d in present:
            continue
        if size == 0:  # the empty blob (d is EMPTY_SHA256: checked by _wanted_blobs)
            key = storage.key_for(d, upload_id)
            storage.put_empty(key)
            _add_blob(db, storage, d, 0, key)
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
    if new:
        db.execute(
            insert(BlobUpload.__table__),
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


def _add_blob(db: Session, storage: Storage, digest: str, size: int, key: str) -> None:
    try:
        with db.begin_nested():
            db.add(Blob(digest=digest, size=size, key=key))
    except IntegrityError:
        other = db.get(Blob, digest)
        if other is not None and other.key != key:
            storage.delete(key)  # another push stored the same content first


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


def complete_blob(
    db: Session, storage: Storage, caller: Caller, upload: Upload, digest: str
) -> None:
    """Assemble and verify one blob. Idempotent: concurrent or repeated completions of the
    same blob all answer alike, and a retry after a crash at any point finishes the job."""
    bu = blob_upload(db, upload, digest)
    if bu.done:
        return
    key, multipart, size, parts, bu_id = bu.key, bu.multipart_id, bu.size, bu.part_count, bu.id
    # Verifying reads the whole blob back: hold no transaction (nor SQLite's lock) meanwhile.
    db.commit()
    try:
        storage.complete(key, multipart, size, digest, parts)
    except PartsMissing as e:
        # Another pusher of the same version may still be sending them: keep the upload.
        if db.get(Blob, digest) is None:
            raise Conflict(
                f"blob {digest}: {e}; send them, then complete again", retry=True
            ) from None
    except UploadGone as e:
        if db.get(Blob, digest) is None:
            _restart_blob(db, storage, bu_id, key, multipart)
            raise Conflict(f"blob {digest}: {e}; send it again", retry=True) from None
    except DigestMismatch as e:
        row = db.execute(
            select(BlobUpload.done, BlobUpload.multipart_id).where(BlobUpload.id == bu_id)
        ).first()
        if row is None or row.done:  # a concurrent completion stored it (and finished)
            if db.get(Blob, digest) is not None:
                return
            raise InvalidBundle(f"blob {digest}: {e}") from None
        # Start the blob over so the client can retry from scratch.
        with contextlib.suppress(Exception):
            storage.abort(key, multipart)
        if row.multipart_id == multipart:
            db.execute(
                update(BlobUpload)
                .where(BlobUpload.id == bu_id)
                .values(multipart_id=storage.begin(key))
                .execution_options(synchronize_session=False)
            )
        db.commit()
        raise InvalidBundle(f"blob {digest}: {e}") from None
    _add_blob(db, storage, digest, size, key)
    # A Core UPDATE: a joined pusher may have finished the whole upload (and removed this
    # row) meanwhile, which is no error: the blob is stored and recorded either way.
    db.execute(
        update(BlobUpload)
        .where(BlobUpload.id == bu_id)
        .values(done=True)
        .execution_options(synchronize_session=False)
    )


def _restart_blob(db: Session, storage: Storage, bu_id: int, key: str, multipart: str) -> None:
    """A new multipart upload for a blob upload whose old one is gone (unless a concurrent
    request replaced it already)."""
    db.execute(
        update(BlobUpload)
        .where(BlobUpload.id == bu_id, BlobUpload.multipart_id == multipart)
        .values(multipart_id=storage.begin(key))
        .execution_options(synchronize_session=False)
    )
    db.commit()


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
    _delete_upload(db, upload)
    audit(db, caller, f"{v.kind}.ready", v.tag, digest=v.digest, upload=upload.id)
    db.flush()
    db.refresh(v)
    return v


def abort_upload(db: Session, storage: Storage, caller: Caller, upload: Upload) -> None:
    v = upload.version
    _abort_blobs(db, storage, upload)
    v.state = FAILED
    v.updated_at = utcnow()
    _delete_upload(db, upload)
    audit(db, caller, f"{v.kind}.push.abort", v.tag, upload=upload.id)


def _delete_upload(db: Session, upload: Upload) -> None:
    # The database deletes its blob uploads (ON DELETE CASCADE): none is loaded to go.
    db.execute(
        delete(Upload)
        .where(Upload.id == upload.id)
        .execution_options(synchronize_session=False)
    )
    db.expunge(upload)


def _abort_blobs(db: Session, storage: Storage, upload: Upload) -> None:
    for bu in pending_blobs(db, upload.id):
        if bu.multipart_id:
            with contextlib.suppress(Exception):
                storage.abort(bu.key, bu.multipart_id)


def _drop(db: Session, storage: Storage, v: Version) -> None:
    upload = db.scalar(select(Upload).where(Upload.version_id == v.id))
    if upload is not None:
        _abort_blobs(db, storage, upload)
    db.delete(v)


# --- changes and deletion -----------------------------------------------------------


def update_labels(
    db: Session, caller: Caller, v: Version, labels: dict[str, str | None]
) -> Version:
    _check_labels(labels)
    current = {lb.key: lb for lb in v.labels}
    for k, val in labels.items():
        if val is None:
            if k in current:
                v.labels.remove(current[k])
        elif k in current:
            current[k].value = val
        else:
            v.labels.append(Label(key=k, value=val))
    v.updated_at = utcnow()
    audit(db, caller, f"{v.kind}.labels", v.tag, labels=labels)
    db.flush()
    return v


def delete_version(
    db: Session, storage: Storage, caller: Caller, v: Version, *, force: bool, collect: bool = True
) -> list[str]:
    users = used_by(db, v)
    if users and not force:
        raise Conflict(
            f"{v.kind} {v.tag} is used by {', '.join(users[:5])}; delete with force to override",
            used_by=users,
        )
    digests = {f.digest for f in version_files(db, v)}
    if v.kind == "model" and users:
        _break_bentos(db, caller, v)
    _drop(db, storage, v)
    audit(db, caller, f"{v.kind}.delete", v.tag, digest=v.digest, force=force, used_by=users)
    db.flush()
    if collect:
        collect_blobs(db, storage, digests=digests)
    return users


def _break_bentos(db: Session, caller: Caller, model: Version) -> None:
    """A model deleted with force leaves the bentos using it ``broken``: no reader (pull,
    download, archive, ``latest``) serves them, listings and the dashboard show the state,
    and an upload in progress cannot finish (it is no longer ``uploading``)."""
    bentos = list(
        db.scalars(
            select(Version)
            .join(VersionRef, VersionRef.bento_version_id == Version.id)
            .where(VersionRef.model_version_id == model.id, Version.state != BROKEN)
        )
    )
    now = utcnow()
    for b in bentos:
        b.state, b.updated_at = BROKEN, now
        audit(db, caller, "bento.broken", b.tag, model=model.tag, digest=model.digest)
    db.flush()


def collect_blobs(
    db: Session, storage: Storage, *, digests: Iterable[str] | None = None, grace_s: int = 0
) -> int:
    """Delete blobs no version references (and, with ``grace_s``, unseen for that long)."""
    q = select(Blob).where(~exists().where(VersionFile.digest == Blob.digest))
    q = q.where(~exists().where(and_(BlobUpload.digest == Blob.digest, BlobUpload.done.is_(False))))
    if digests is not None:
        ds = list(digests)
        if not ds:
            return 0
        q = q.where(Blob.digest.in_(ds))
    if grace_s:
        q = q.where(Blob.last_seen_at < utcnow() - timedelta(seconds=grace_s))
    blobs = list(db.scalars(q))
    for b in blobs:
        db.delete(b)
    db.flush()
    keys = [b.key for b in blobs]
    db.commit()  # forget the rows first: a blob row never points at a deleted object
    for key in keys:
        try:
            storage.delete(key)
        except Exception:  # noqa: BLE001 - the next sweep finds the orphan
            log.warning("could not delete blob %s", key, exc_info=True)
    return len(keys)


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
        abort_upload(db, storage, SYSTEM, upload)
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
    collected = collect_blobs(db, storage, grace_s=gc_grace_s)
    orphans = remove_orphans(db, storage, grace_s=gc_grace_s)
    return {
        "failed": failed,
        "removed": removed,
        "blobs_collected": collected,
        "orphans_removed": orphans.objects,
        "uploads_aborted": orphans.uploads,
    }


# --- deployments --------------------------------------------------------------------


def report_deployment(
    db: Session,
    caller: Caller,
    namespace: str,
    name: str,
    bento: str,
    cluster: str,
    status: dict[str, Any],
) -> Deployment:
    tag = Tag.parse(bento)
    d = db.get(Deployment, (namespace, name))
    if d is None:
        d = Deployment(namespace=namespace, name=name)
        db.add(d)
    changed = (d.bento_name, d.bento_version, d.cluster) != (tag.name, tag.version, cluster)
    d.bento_name, d.bento_version, d.cluster, d.status = tag.name, tag.version, cluster, status
    d.updated_at = utcnow()
    if changed:  # status-only reports would flood the audit log
        audit(
            db, caller, "deployment.report", f"{namespace}/{name}", bento=str(tag), cluster=cluster
        )
    db.flush()
    return d


def clear_deployment(db: Session, caller: Caller, namespace: str, name: str) -> None:
    n = db.execute(
        delete(Deployment).where(Deployment.namespace == namespace, Deployment.name == name)
    ).rowcount
    if n:
        audit(db, caller, "deployment.clear", f"{namespace}/{name}")


def blobs_of(db: Session, v: Version) -> dict[str, str]:
    """The storage key of each blob of a version."""
    q = (
        select(Blob.digest, Blob.key)
        .join(VersionFile, VersionFile.digest == Blob.digest)
        .where(VersionFile.version_id == v.id)
    )
    return {d: k for d, k in db.execute(q)}
