"""Audit log and maintenance (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from ...db.models import AuditEvent
from ...domain import sweeper
from ...domain.audit import audit
from .. import API_PREFIX
from ..deps import AdminCaller, RegistryDep, SessionDep
from ..schemas import AuditOut, AuditPage, SweepOut

router = APIRouter(prefix=API_PREFIX, tags=["admin"])


@router.get("/audit", response_model=AuditPage, summary="Audit events, newest first")
def audit_log(
    db: SessionDep,
    _: AdminCaller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPage:
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if cursor is not None:
        q = q.where(AuditEvent.id < cursor)
    if action:
        q = q.where(AuditEvent.action == action)
    rows = list(db.scalars(q))
    nxt = rows[limit - 1].id if len(rows) > limit else None
    items = [
        AuditOut(
            id=e.id,
            at=e.at,
            actor=e.actor,
            token_id=e.token_id,
            action=e.action,
            target=e.target,
            detail=e.detail,
            client=e.client,
        )
        for e in rows[:limit]
    ]
    return AuditPage(items=items, next_cursor=nxt)


@router.post(
    "/admin/sweep", response_model=SweepOut, summary="Sweep abandoned uploads, collect blobs"
)
def sweep(
    reg: RegistryDep,
    db: SessionDep,
    caller: AdminCaller,
    upload_timeout_s: Annotated[int | None, Query(ge=0, le=10**7)] = None,
    gc_grace_s: Annotated[int | None, Query(ge=0, le=10**7)] = None,
) -> SweepOut:
    s = reg.settings
    res = sweeper.sweep(
        db,
        reg.storage,
        upload_timeout_s=s.upload_timeout_s if upload_timeout_s is None else upload_timeout_s,
        gc_grace_s=s.gc_grace_s if gc_grace_s is None else gc_grace_s,
        configured_timeout_s=s.upload_timeout_s,
    )
    audit(db, caller, "registry.sweep", "registry", **res)
    db.commit()
    return SweepOut(**res)
