"""``POST /api/v1/archives``: push a whole bento or model archive in one request (what the
dashboard's upload uses). The body is spooled to disk as it arrives, verified as a hostile
archive, then pushed through the ordinary upload sessions (registry/archive_push.py)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from ...archive_push import push_archive
from ...domain.audit import Caller
from ...errors import BadRequest
from ...state import Registry
from .. import API_PREFIX
from ..deps import RegistryDep, WriteCaller
from ..schemas import ArchivePushed, ArchivePushOut

router = APIRouter(prefix=f"{API_PREFIX}/archives", tags=["archives"])


def parse_labels(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"label {item!r} must look like key=value")
        out[key.strip()] = value
    return out


async def receive_and_push(
    request: Request, reg: Registry, caller: Caller, labels: dict[str, str], force: bool
) -> ArchivePushOut:
    """Spool the request body to a temp file, then push it (in a worker thread)."""
    await run_in_threadpool(reg.spool_dir.mkdir, parents=True, exist_ok=True)
    fd, tmp = await run_in_threadpool(tempfile.mkstemp, dir=reg.spool_dir, prefix="archive-")
    try:
        size = 0
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                f.write(chunk)
        if not size:
            raise BadRequest("the request body is empty: send the archive bytes")
        reg.metrics.bytes_in.inc(size)

        def run() -> list[ArchivePushed]:
            with open(tmp, "rb") as f:
                pushed = push_archive(reg, caller, f, labels=labels, force=force)
            return [ArchivePushed(**asdict(p)) for p in pushed]

        return ArchivePushOut(pushed=await run_in_threadpool(run))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@router.post(
    "",
    response_model=ArchivePushOut,
    responses={409: {}, 422: {"description": "Not a valid, safe archive"}},
    summary="Push a bento or model archive (tar, tar.gz or tar.zst) in one request",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def push(
    request: Request,
    reg: RegistryDep,
    caller: WriteCaller,
    label: Annotated[list[str], Query(description="key=value, for the top bundle")] = [],  # noqa: B006
    force: bool = False,
) -> ArchivePushOut:
    return await receive_and_push(request, reg, caller, parse_labels(label), force)
