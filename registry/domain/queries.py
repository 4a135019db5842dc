"""The read model: lookups and listings of versions, shared by the REST API and the
dashboard. Reads only; a writer that must act on what it read reads it locked
(``find_version(lock=...)``, ``lock``)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, literal, select, tuple_
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from jubako.errors import NotFound
from jubako.tags import LATEST

from ..db.models import READY, Blob, Deployment, Label, Version, VersionFile, VersionRef
from ..errors import BadRequest, Conflict
from .manifests import LABEL_KEY, check_name


def find_version(
    db: Session, kind: str, name: str, version: str, *, lock: str | None = None
) -> Version | None:
    """``lock``: "update" holds the row until the transaction ends, after waiting for any
    transaction that changed it to commit (the row read is then the committed one);
    "share" only keeps others from changing or deleting it meanwhile. PostgreSQL; SQLite
    serialises writers anyway."""
    q = select(Version).where(Version.kind == kind, Version.name == name, Version.version == version)
    if lock is not None:
        q = q.with_for_update(read=lock == "share").execution_options(populate_existing=True)
    return db.scalar(q)


def lock(db: Session, v: Version) -> None:
    """Re-read ``v`` locked until the transaction ends (PostgreSQL: after waiting for any
    transaction that changed it); NotFound when a concurrent delete committed first."""
    what = f"{v.kind} {v.tag}"
    try:
        db.refresh(v, with_for_update=True)
    except InvalidRequestError:  # the row is gone
        raise NotFound(f"{what} not found (deleted meanwhile)") from None


def get_version(db: Session, kind: str, name: str, version: str, *, ready: bool = False) -> Version:
    """A version; ``latest`` is the newest ready one. ``ready`` refuses other states."""
    check_name(kind, name, version)
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


def blobs_of(db: Session, v: Version) -> dict[str, str]:
    """The storage key of each blob of a version."""
    q = (
        select(Blob.digest, Blob.key)
        .join(VersionFile, VersionFile.digest == Blob.digest)
        .where(VersionFile.version_id == v.id)
    )
    return {d: k for d, k in db.execute(q)}


SORTS = {"created_at", "-created_at", "name", "-name"}


def selector_clauses(selector: str) -> list[Any]:
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


def encode_cursor(values: list[Any]) -> str:
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


def _filtered(
    q: Any,
    kind: str,
    name: str | None,
    prefix: str,
    selector: str,
    state: str | None,
) -> Any:
    q = q.where(Version.kind == kind)
    if name is not None:
        q = q.where(Version.name == name)
    if prefix:
        esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Version.name.like(esc + "%", escape="\\"))
    if state:
        q = q.where(Version.state == state)
    for clause in selector_clauses(selector):
        q = q.where(clause)
    return q


@dataclass
class VersionsPage:
    """One page of versions, and the cursor of the next (None on the last page)."""

    rows: list[Version]
    next_cursor: str | None


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
) -> VersionsPage:
    """Versions matching the filters, in ``sort`` order, a keyset page at a time: the one
    listing of the REST API and the dashboard."""
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {sorted(SORTS)}")
    q = _filtered(select(Version), kind, name, prefix, selector, state)
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
        nxt = cursor_of(rows[-1], sort)
    return VersionsPage(rows, nxt)


def cursor_of(v: Version, sort: str = "-created_at") -> str:
    """The cursor of the page that follows ``v`` in ``sort`` order."""
    col = "created_at" if sort.lstrip("-") == "created_at" else "name"
    return encode_cursor([getattr(v, col), v.id])


def count_versions(
    db: Session,
    kind: str,
    *,
    name: str | None = None,
    prefix: str = "",
    selector: str = "",
    state: str | None = None,
) -> int:
    """How many versions ``list_versions`` pages through with the same filters."""
    q = _filtered(select(func.count(Version.id)), kind, name, prefix, selector, state)
    return db.scalar(q) or 0
