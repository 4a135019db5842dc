"""Deployments reported by the operator (a used bento version cannot be deleted)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from jubako.tags import Tag

from ..db.models import Deployment, utcnow
from .audit import Caller, audit


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
