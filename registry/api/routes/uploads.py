"""Upload sessions: parts streamed through the registry, completion and verification."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from jubako.errors import InvalidBundle

from ...db.models import Blob
from ...domain import uploads
from ...errors import BadRequest
from ...state import Registry
from ...transactions import verify_and_commit
from .. import API_PREFIX
from ..deps import RegistryDep, SessionDep, WriteCaller
from ..presenters import json_response, upload_out, version_out
from ..schemas import (
    BlobDone,
    CompleteIn,
    PartReceived,
    UploadOut,
    VersionOut,
)

router = APIRouter(prefix=f"{API_PREFIX}/uploads", tags=["uploads"])
UploadId = Annotated[str, Path(pattern="^[0-9a-f]{32}$")]
Digest = Annotated[str, Path(pattern="^[0-9a-f]{64}$")]


@router.get("/{upload_id}", response_model=UploadOut, summary="An upload session (to resume it)")
def get_upload(upload_id: UploadId, reg: RegistryDep, db: SessionDep, _: WriteCaller) -> Response:
    upload = uploads.get_upload(db, upload_id)
    return json_response(upload_out(reg, db, upload, uploads.pending_blobs(db, upload.id)))


def _spool(reg: Registry) -> tuple[int, str]:
    reg.spool_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=reg.spool_dir, prefix="part-")


@router.put(
    "/{upload_id}/blobs/{digest}/parts/{number}",
    response_model=PartReceived,
    summary="Stream one part through the registry (when presigned URLs cannot be used)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_part(
    upload_id: UploadId,
    digest: Digest,
    number: Annotated[int, Path(ge=1, le=10000)],
    request: Request,
    reg: RegistryDep,
    _: WriteCaller,
) -> PartReceived:
    def lookup() -> tuple[str, str, int, bool]:
        with reg.sessions() as db:
            upload = uploads.get_upload(db, upload_id)
            bu = uploads.blob_upload(db, upload, digest)
            # Stored already (by another pusher of the same content): the part is not needed,
            # and its multipart upload may be completed and gone.
            done = bu.done or db.get(Blob, digest) is not None
            return bu.key, bu.multipart_id, uploads.expected_part_size(bu, number), done

    key, multipart, expected, done = await run_in_threadpool(lookup)
    if done:  # verified already (another pusher of the same version): nothing to store
        return PartReceived(number=number, size=expected)
    fd, tmp = await run_in_threadpool(_spool, reg)
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > expected:
                    raise BadRequest(f"part {number} must be {expected} bytes, got more")
                f.write(chunk)
        if size != expected:
            raise BadRequest(f"part {number} must be {expected} bytes, got {size}")
        reg.metrics.bytes_in.inc(size)
        try:
            await run_in_threadpool(reg.storage.put_part, key, multipart, number, tmp, size)
        except Exception:
            # Completed meanwhile by another pusher of the same version (its multipart
            # upload is gone): the part is not needed. That completion may not have
            # recorded the blob yet (it still verifies it, or it died right there: the
            # blob's completion finishes the job), so a blob stored at its key counts too.
            if (await run_in_threadpool(lookup))[3] or await run_in_threadpool(reg.storage.exists, key):
                return PartReceived(number=number, size=size)
            raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return PartReceived(number=number, size=size)


@router.post(
    "/{upload_id}/blobs/{digest}/complete",
    response_model=BlobDone,
    summary="Assemble a blob's parts; the registry verifies size and sha256",
)
def complete_blob(
    upload_id: UploadId, digest: Digest, reg: RegistryDep, db: SessionDep, caller: WriteCaller
) -> BlobDone:
    upload = uploads.get_upload(db, upload_id)
    verify_and_commit(db, reg.storage, upload, digest)
    return BlobDone(digest=digest, done=True)


@router.post(
    "/{upload_id}/complete",
    response_model=VersionOut,
    summary="Finish the push: the version becomes ready once every blob is verified",
)
def complete(
    upload_id: UploadId, body: CompleteIn, reg: RegistryDep, db: SessionDep, caller: WriteCaller
) -> VersionOut:
    upload = uploads.get_upload(db, upload_id)
    v = uploads.complete_version(db, reg.storage, caller, upload, body.digest)
    db.commit()
    reg.metrics.pushes.labels(v.kind).inc()
    return version_out(v)


@router.delete("/{upload_id}", status_code=204, summary="Abandon a push (the version fails)")
def abort(upload_id: UploadId, reg: RegistryDep, db: SessionDep, caller: WriteCaller) -> Response:
    upload = uploads.get_upload(db, upload_id)
    uploads.abort_upload(db, reg.storage, caller, upload)
    db.commit()
    return Response(status_code=204)


__all__ = ["router", "InvalidBundle"]
