"""Blob downloads streamed by the registry (local backend, or clients without S3 access)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import StreamingResponse

from jubako.errors import NotFound

from ...db.models import Blob
from ...errors import BadRequest
from .. import API_PREFIX
from ..deps import ReadCaller, RegistryDep, SessionDep

router = APIRouter(prefix=f"{API_PREFIX}/blobs", tags=["blobs"])
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@router.get(
    "/{digest}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {}, 416: {}},
    summary="A blob's bytes, streamed (Range supported, to resume)",
)
def get_blob(
    digest: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
    reg: RegistryDep,
    db: SessionDep,
    _: ReadCaller,
    range: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    blob = db.get(Blob, digest)
    if blob is None:
        raise NotFound(f"blob {digest} not found")
    start, end, status = 0, blob.size - 1, 200
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{digest}"'}
    if range:
        m = RANGE.match(range.strip())
        if not m:
            raise BadRequest("only one 'bytes=start-[end]' range is supported")
        start = int(m[1])
        end = min(int(m[2]), blob.size - 1) if m[2] else blob.size - 1
        if start > end or start >= blob.size:
            return StreamingResponse(
                iter(()), status_code=416, headers={"Content-Range": f"bytes */{blob.size}"}
            )
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    headers["Content-Length"] = str(end - start + 1 if blob.size else 0)
    key, metrics, storage = blob.key, reg.metrics, reg.storage
    db.commit()  # end the read transaction before streaming (SQLite: its lock)

    def body():  # type: ignore[no-untyped-def]
        if blob.size == 0:
            return
        for chunk in storage.read(key, start, end):
            metrics.bytes_out.inc(len(chunk))
            yield chunk

    return StreamingResponse(
        body(), status_code=status, media_type="application/octet-stream", headers=headers
    )
