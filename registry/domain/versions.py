"""Versions: a push's start (the manifest checked and recorded, its upload session
opened), label changes, deletion."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jubako.errors import InvalidBundle
from jubako.manifest import BentoManifest

from ..db.bulk import insert_rows
from ..db.models import (
    BROKEN,
    READY,
    UPLOADING,
    Label,
    Repository,
    Upload,
    Version,
    VersionFile,
    VersionRef,
    utcnow,
)
from ..errors import Conflict
from ..storage.base import Storage
from .audit import Caller, audit
from .blobs import present_blobs, unreferenced
from .canonical import dump as canonical_dump
from .manifests import check_labels, parse, wanted_blobs
from .queries import find_version, lock, used_by, version_files
from .uploads import PendingBlob, drop, session_blobs


@dataclass
class CreateResult:
    version: Version
    upload: Upload | None
    created: bool
    missing: list[PendingBlob] = field(default_factory=list)


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
    # locked, so that a completion committing meanwhile is waited for, not seen half-way:
    # read in between (PostgreSQL's READ COMMITTED), the version was still uploading but
    # its session gone, and a ready version was dropped as a crashed push
    existing = find_version(db, kind, name, version, lock="update")
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
            missing = session_blobs(db, storage, upload.id, wanted, present, part_size)
            audit(db, caller, f"{kind}.push.resume", existing.tag, upload=upload.id)
            return CreateResult(existing, upload, created=False, missing=missing)
        drop(db, storage, existing)
    elif existing.state == UPLOADING and not force:
        raise Conflict(
            f"{kind} {name}:{version} is being pushed with different content"
            f" ({existing.digest}); wait for it, or push with --force",
            digest=existing.digest,
        )
    else:  # failed, or a forced takeover of a push in progress
        drop(db, storage, existing)
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
    check_labels(m.labels)  # the manifest's labels pass the same checks as PATCH
    labels = check_labels(labels or {})
    wanted = wanted_blobs(m, max_files=max_files, max_blob_bytes=max_blob_bytes)
    present = present_blobs(db, wanted)
    dumped = canonical_dump(m)  # m.dump()'s bytes, without an emitter pass per file
    canonical = dumped.decode()
    digest = "sha256:" + hashlib.sha256(dumped).hexdigest()
    refs: list[Version] = []
    if isinstance(m, BentoManifest):
        for ref in m.models:
            t = ref.parsed
            # shared: the model cannot be deleted or replaced before this bento commits
            mv = find_version(db, "model", t.name, t.version, lock="share")
            if mv is None or mv.state != READY:
                raise InvalidBundle(f"models: model {t} is not in the registry; push it first")
            if mv.digest != ref.digest:
                raise InvalidBundle(
                    f"models: model {t} in the registry has digest {mv.digest}, the bento"
                    f" expects {ref.digest}"
                )
            refs.append(mv)

    def settle(force: bool) -> CreateResult | None:  # the version exists already: join or answer it
        return _settle_existing(db, storage, caller, kind, name, version, digest, wanted, present,
                                force=force, part_size=part_size, upload_timeout_s=upload_timeout_s)

    settled = settle(force)
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
        settled = settle(False)
        if settled is not None:
            return settled
        raise Conflict(
            f"{kind} {name}:{version} is being pushed concurrently; retry", retry=True
        ) from None
    # no ORM object nor ORM bulk step per file: COPY on PostgreSQL, INSERTs on SQLite
    insert_rows(
        db,
        VersionFile.__table__,
        [{"version_id": v.id, "path": f.path, "digest": f.sha256, "size": f.size} for f in m.files],
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
    missing = session_blobs(db, storage, upload.id, wanted, present, part_size)
    audit(db, caller, f"{kind}.push", v.tag, digest=digest, upload=upload.id)
    return CreateResult(v, upload, created=True, missing=missing)


def update_labels(
    db: Session, caller: Caller, v: Version, labels: dict[str, str | None]
) -> Version:
    check_labels(labels)
    lock(db, v)  # a concurrent change commits first: its labels are seen here
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


@dataclass
class Deleted:
    used_by: list[str]
    blob_keys: list[str]  # to delete from storage once committed (blobs.delete_objects)


def delete_version(
    db: Session, storage: Storage, caller: Caller, v: Version, *, force: bool, collect: bool = True
) -> Deleted:
    # locked first: a bento push that holds this model (create_version) commits before its
    # users are counted; counted before, the model went and the new bento's reference with it
    lock(db, v)
    users = used_by(db, v)
    if users and not force:
        raise Conflict(
            f"{v.kind} {v.tag} is used by {', '.join(users[:5])}; delete with force to override",
            used_by=users,
        )
    digests = {f.digest for f in version_files(db, v)}
    if v.kind == "model" and users:
        _break_bentos(db, caller, v)
    drop(db, storage, v)
    audit(db, caller, f"{v.kind}.delete", v.tag, digest=v.digest, force=force, used_by=users)
    db.flush()
    keys = unreferenced(db, digests=digests) if collect else []
    return Deleted(users, keys)


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
