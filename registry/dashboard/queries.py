"""Read queries of the dashboard: keyset pages in both directions, so a page costs the
same with ten versions or a hundred thousand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db.models import READY, AuditEvent, Deployment, Version, VersionFile, VersionRef
from ..domain import queries as domain_queries


@dataclass
class Page:
    items: list[Any]
    next: str | None = None  # cursor of the following page
    prev: str | None = None  # cursor of the preceding page ("" = the first page)
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_prev(self) -> bool:
        return self.prev is not None


def _name_filter(q: Any, kind: str, search: str, selector: str) -> Any:
    q = q.where(Version.kind == kind)
    if search:
        q = q.where(Version.name.contains(search.strip().lower(), autoescape=True))
    for clause in domain_queries.selector_clauses(selector):
        q = q.where(clause)
    return q


def repositories(
    db: Session, kind: str, *, search: str = "", selector: str = "", after: str = "", limit: int = 25
) -> Page:
    """Names with at least one version matching the filters, by name; each with its
    matching version count, last push and newest ready version."""
    q = _name_filter(
        select(Version.name, func.count(Version.id), func.max(Version.created_at)),
        kind,
        search,
        selector,
    ).group_by(Version.name)
    rows = list(
        db.execute(
            (q.where(Version.name > after) if after else q).order_by(Version.name).limit(limit + 1)
        )
    )
    nxt = rows[limit - 1][0] if len(rows) > limit else None
    rows = rows[:limit]
    prev = None
    if after:
        before = list(
            db.scalars(
                _name_filter(select(Version.name), kind, search, selector)
                .where(Version.name <= after)
                .group_by(Version.name)
                .order_by(Version.name.desc())
                .limit(limit + 1)
            )
        )
        prev = before[limit] if len(before) > limit else ""
    total = db.scalar(
        _name_filter(select(func.count(func.distinct(Version.name))), kind, search, selector)
    )
    names = [r[0] for r in rows]
    latest: dict[str, Version] = {}
    if names:
        rn = (
            func.row_number()
            .over(partition_by=Version.name, order_by=(Version.created_at.desc(), Version.id.desc()))
            .label("rn")
        )
        sub = (
            select(Version.id, rn)
            .where(Version.kind == kind, Version.name.in_(names), Version.state == READY)
            .subquery()
        )
        for v in db.scalars(select(Version).join(sub, sub.c.id == Version.id).where(sub.c.rn == 1)):
            latest[v.name] = v
    items = [
        {"name": n, "versions": c, "updated_at": t, "latest": latest.get(n)} for n, c, t in rows
    ]
    return Page(items, nxt, prev, total)


def versions(
    db: Session,
    kind: str,
    name: str,
    *,
    selector: str = "",
    state: str | None = None,
    cursor: str | None = None,
    limit: int = 25,
) -> Page:
    """A name's versions, newest first, with a link back to the newer page."""
    page = domain_queries.list_versions(
        db, kind, name=name, selector=selector, state=state, cursor=cursor, limit=limit
    )
    rows = page.rows
    prev = None
    if cursor and rows:
        newer = domain_queries.list_versions(
            db,
            kind,
            name=name,
            selector=selector,
            state=state,
            sort="created_at",
            cursor=domain_queries.cursor_of(rows[0]),
            limit=limit + 1,
        ).rows
        prev = domain_queries.cursor_of(newer[limit]) if len(newer) > limit else ""
    elif cursor:
        prev = ""
    total = domain_queries.count_versions(db, kind, name=name, selector=selector, state=state)
    return Page(rows, page.next_cursor, prev, total)


def files(db: Session, v: Version, *, page: int, per_page: int = 100) -> list[VersionFile]:
    return list(
        db.scalars(
            select(VersionFile)
            .where(VersionFile.version_id == v.id)
            .order_by(VersionFile.path)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )


def models_of(db: Session, v: Version) -> list[Version]:
    return list(
        db.scalars(
            select(Version)
            .join(VersionRef, VersionRef.model_version_id == Version.id)
            .where(VersionRef.bento_version_id == v.id)
            .order_by(Version.name)
        )
    )


def bentos_using(db: Session, v: Version, limit: int = 100) -> list[Version]:
    return list(
        db.scalars(
            select(Version)
            .join(VersionRef, VersionRef.bento_version_id == Version.id)
            .where(VersionRef.model_version_id == v.id)
            .order_by(Version.name, Version.created_at.desc())
            .limit(limit)
        )
    )


def deployments_of(db: Session, v: Version) -> list[Deployment]:
    return list(
        db.scalars(
            select(Deployment)
            .where(Deployment.bento_name == v.name, Deployment.bento_version == v.version)
            .order_by(Deployment.namespace, Deployment.name)
        )
    )


def deployments(db: Session, *, search: str = "", page: int = 1, per_page: int = 25) -> Page:
    q = select(Deployment)
    count = select(func.count()).select_from(Deployment)
    if search:
        s = search.strip()
        cond = (
            Deployment.name.contains(s, autoescape=True)
            | Deployment.namespace.contains(s, autoescape=True)
            | Deployment.bento_name.contains(s, autoescape=True)
        )
        q, count = q.where(cond), count.where(cond)
    rows = list(
        db.scalars(
            q.order_by(Deployment.namespace, Deployment.name)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    return Page(rows, total=db.scalar(count))


def audit(db: Session, *, action: str = "", before: int | None = None, limit: int = 50) -> Page:
    q = select(AuditEvent)
    if action:
        q = q.where(AuditEvent.action == action)
    rows = list(
        db.scalars(
            (q.where(AuditEvent.id < before) if before else q)
            .order_by(AuditEvent.id.desc())
            .limit(limit + 1)
        )
    )
    nxt = str(rows[limit - 1].id) if len(rows) > limit else None
    rows = rows[:limit]
    prev = None
    if before:
        newer = list(
            db.scalars(
                q.where(AuditEvent.id >= before).order_by(AuditEvent.id.asc()).limit(limit + 1)
            )
        )
        prev = str(newer[limit].id) if len(newer) > limit else ""
    actions = list(db.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
    return Page(rows, nxt, prev, extra={"actions": actions})
