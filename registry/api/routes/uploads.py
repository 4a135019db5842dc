"""Upload sessions: parts streamed through the registry, completion and verification."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from jubako.errors import InvalidBundle

from ... import service
from ...db.models import Blob, Upload
from ...errors import BadRequest
from ...state import Registry
from ...storage.base import Part
from .. import API_PREFIX
from ..deps import RegistryDep, SessionDep, WriteCaller
from ..schemas import (
    BlobDone,
    BlobUploadOut,
    CompleteIn,
    PartOut,
    PartReceived,
    UploadOut,
    VersionOut,
)

router = APIRouter(prefix=f"{API_PREFIX}/uploads", tags=["uploads"])
UploadId = Annotated[str, Path(pattern="^[0-9a-f]{32}$")]
Digest = Annotated[str, Path(pattern="^[0-9a-f]{64}$")]


def upload_out(
    reg: Registry, db: Session, upload: Upload, blobs: list[service.PendingBlob]
) -> UploadOut:
    out = []
    # Ask storage only about blobs whose multipart upload was not begun by this request.
    ask = [b for b in blobs if b.multipart_id and not b.fresh]
    got = reg.storage.parts_many([(b.key, b.multipart_id) for b in ask])
    receipts = {b.digest: r for b, r in zip(ask, got, strict=True)}
    for bu in blobs:
        received = receipts.get(bu.digest, {})
        parts = []
        for n in range(1, bu.part_count + 1):
            size = service.expected_part_size(bu, n)
            # A multipart upload that is gone was completed (a crash before the blob was
            # recorded): no part can be sent to it; completing the blob settles it.
            got = Part(n, size) if received is None else received.get(n)
            ok = got is not None and got.size == size
            url = None
            if not ok:
                url = reg.storage.presign_part(
                    bu.key, bu.multipart_id, n, reg.settings.presign_expiry_s
                )
            parts.append(PartOut(number=n, size=size, received=ok, url=url))
        out.append(
            BlobUploadOut(digest=bu.digest, size=bu.size, part_size=bu.part_size, parts=parts)
        )
    return UploadOut(id=upload.id, expires_at=upload.expires_at, blobs=out)


@router.get("/{upload_id}", response_model=UploadOut, summary="An upload session (to resume it)")
def get_upload(upload_id: UploadId, reg: RegistryDep, db: SessionDep, _: WriteCaller) -> UploadOut:
    upload = service.get_upload(db, upload_id)
    return upload_out(reg, db, upload, service.pending_blobs(db, upload.id))


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
            upload = service.get_upload(db, upload_id)
            bu = service.blob_upload(db, upload, digest)
            # Stored already (by another pusher of the same content): the part is not needed,
            # and its multipart upload may be completed and gone.
            done = bu.done or db.get(Blob, digest) is not None
            return bu.key, bu.multipart_id, service.expected_part_size(bu, number), done

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
            # upload is gone): the part is not needed.
            if (await run_in_threadpool(lookup))[3]:
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
    upload = service.get_upload(db, upload_id)
    service.complete_blob(db, reg.storage, caller, upload, digest)
    db.commit()
    return BlobDone(digest=digest, done=True)


@router.post(
    "/{upload_id}/complete",
    response_model=VersionOut,
    summary="Finish the push: the version becomes ready once every blob is verified",
)
def complete(
    upload_id: UploadId, body: CompleteIn, reg: RegistryDep, db: SessionDep, caller: WriteCaller
) -> VersionOut:
    from .versions import version_out

    upload = service.get_upload(db, upload_id)
    v = service.complete_version(db, reg.storage, caller, upload, body.digest)
    db.commit()
    reg.metrics.pushes.labels(v.kind).inc()
    return version_out(v)


@router.delete("/{upload_id}", status_code=204, summary="Abandon a push (the version fails)")
def abort(upload_id: UploadId, reg: RegistryDep, db: SessionDep, caller: WriteCaller) -> Response:
    upload = service.get_upload(db, upload_id)
    service.abort_upload(db, reg.storage, caller, upload)
    db.commit()
    return Response(status_code=204)


__all__ = ["router", "upload_out", "InvalidBundle"]
