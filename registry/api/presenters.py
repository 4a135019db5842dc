"""Presenters: every response body of the REST API built from domain objects and rows, in
one place (route modules build none and import none from each other)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response
from sqlalchemy.orm import Session

from ..db.models import Deployment, Token, Upload, Version, VersionFile
from ..domain import uploads
from ..state import Registry
from ..storage.base import Part
from .schemas import (
    DeploymentOut,
    DownloadOut,
    FileOut,
    TokenOut,
    UploadOut,
    VersionOut,
)


def version_out(v: Version) -> VersionOut:
    return VersionOut(
        kind=v.kind,
        name=v.name,
        version=v.version,
        tag=v.tag,
        state=v.state,
        digest=v.digest,
        size=v.size,
        file_count=v.file_count,
        labels=v.label_dict,
        created_at=v.created_at,
        updated_at=v.updated_at,
        ready_at=v.ready_at,
        created_by=v.created_by,
    )


def upload_out(
    reg: Registry, db: Session, upload: Upload, blobs: list[uploads.PendingBlob]
) -> dict[str, Any]:
    """An ``UploadOut`` as JSON-ready data: a session can list tens of thousands of blobs,
    too many for a pydantic object each (see ``json_response``)."""
    out = []
    # Ask storage only about blobs whose multipart upload was not begun by this request.
    ask = [b for b in blobs if b.multipart_id and not b.fresh]
    got = reg.storage.parts_many([(b.key, b.multipart_id) for b in ask])
    receipts = {b.digest: r for b, r in zip(ask, got, strict=True)}
    presigns, expiry = reg.storage.presigns, reg.settings.presign_expiry_s
    for bu in blobs:
        received = receipts.get(bu.digest, {})
        parts = []
        for n in range(1, bu.part_count + 1):
            size = uploads.expected_part_size(bu, n)
            # A multipart upload that is gone was completed (a crash before the blob was
            # recorded): no part can be sent to it; completing the blob settles it.
            got = Part(n, size) if received is None else received.get(n)
            ok = got is not None and got.size == size
            url = None
            if not ok and presigns:
                url = reg.storage.presign_part(bu.key, bu.multipart_id, n, expiry)
            parts.append({"number": n, "size": size, "received": ok, "url": url})
        out.append({"digest": bu.digest, "size": bu.size, "part_size": bu.part_size, "parts": parts})
    head = UploadOut(id=upload.id, expires_at=upload.expires_at, blobs=[]).model_dump(mode="json")
    return {**head, "blobs": out}


def json_response(data: dict[str, Any], status_code: int = 200) -> Response:
    """``data`` as the JSON body, serialized by orjson: a Response skips FastAPI's
    validation and encoding of the route's response_model (which still documents it), a
    second pass over every blob of a big session."""
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")


def download_out(
    reg: Registry, v: Version, blobs: dict[str, str], files: list[VersionFile], presigned: bool
) -> DownloadOut:
    """Where to fetch each file: a presigned URL where storage gives one, else the
    registry's blob route. ``blobs``: the storage key of each digest."""
    out = []
    for f in files:
        url = None
        if presigned and f.digest in blobs:
            url = reg.storage.presign_get(blobs[f.digest], reg.settings.presign_expiry_s)
        out.append(
            FileOut(
                path=f.path, size=f.size, sha256=f.digest, url=url or f"/api/v1/blobs/{f.digest}"
            )
        )
    return DownloadOut(tag=v.tag, digest=v.digest, manifest=v.manifest, files=out)


def deployment_out(d: Deployment) -> DeploymentOut:
    return DeploymentOut(
        namespace=d.namespace,
        name=d.name,
        bento=f"{d.bento_name}:{d.bento_version}",
        cluster=d.cluster,
        status=d.status,
        updated_at=d.updated_at,
    )


def token_out(t: Token) -> TokenOut:
    return TokenOut(
        id=t.id,
        user=t.user.name,
        name=t.name,
        prefix=t.prefix,
        scope=t.scope,
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )
