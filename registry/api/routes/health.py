"""Probes and metrics (no token needed)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ..deps import RegistryDep

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is up")
def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Database and storage reachable", responses={503: {}})
async def readyz(reg: RegistryDep, response: Response) -> dict[str, str]:
    def probe() -> dict[str, str]:
        out = {}
        try:
            with reg.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            out["database"] = "ok"
        except Exception as e:  # noqa: BLE001
            out["database"] = f"error: {type(e).__name__}"
        try:
            reg.storage.check()
            out["storage"] = "ok"
        except Exception as e:  # noqa: BLE001
            out["storage"] = f"error: {e}"[:200]
        return out

    out = await run_in_threadpool(probe)
    if any(v != "ok" for v in out.values()):
        response.status_code = 503
    return out


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics(reg: RegistryDep) -> Response:
    return Response(generate_latest(reg.metrics.registry), media_type=CONTENT_TYPE_LATEST)
