"""Who did what: the caller of an operation, and the audit event every write records in
the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ..db.models import AuditEvent


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
