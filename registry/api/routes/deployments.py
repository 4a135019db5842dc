"""Deployment usage, reported by the operator (a used bento version cannot be deleted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy import select

from ...db.models import Deployment
from ...domain import deployments
from .. import API_PREFIX
from ..deps import ReadCaller, SessionDep, WriteCaller
from ..presenters import deployment_out
from ..schemas import DeploymentIn, DeploymentOut

router = APIRouter(prefix=f"{API_PREFIX}/deployments", tags=["deployments"])
K8sName = Annotated[str, Path(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", max_length=253)]


@router.get("", response_model=list[DeploymentOut], summary="Every reported deployment")
def list_deployments(db: SessionDep, _: ReadCaller) -> list[DeploymentOut]:
    rows = db.scalars(select(Deployment).order_by(Deployment.namespace, Deployment.name))
    return [deployment_out(d) for d in rows]


@router.put("/{namespace}/{name}", response_model=DeploymentOut, summary="Report a deployment")
def report(
    namespace: K8sName, name: K8sName, body: DeploymentIn, db: SessionDep, caller: WriteCaller
) -> DeploymentOut:
    d = deployments.report_deployment(
        db, caller, namespace, name, body.bento, body.cluster[:253], body.status
    )
    db.commit()
    return deployment_out(d)


@router.delete("/{namespace}/{name}", status_code=204, summary="Clear a deployment's report")
def clear(namespace: K8sName, name: K8sName, db: SessionDep, caller: WriteCaller) -> Response:
    deployments.clear_deployment(db, caller, namespace, name)
    db.commit()
    return Response(status_code=204)
