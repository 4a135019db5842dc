"""The registry's gate: pure ASGI middleware that runs before any handler reads a body.

FastAPI reads a route's body before it solves the route's dependencies, so a token checked
by a dependency is checked too late: an anonymous client could make the server read and
hold any number of bytes. Here the token of every API request that carries a body is
checked from its headers first, and every body (API, dashboard) is capped: a declared
``Content-Length`` over the cap is refused at once, and a streamed body is counted as it
arrives and stopped at the cap (413 either way). NUL bytes in the path or the query are
refused for every route (400).
"""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..state import Registry
from . import API_PREFIX
from .deps import check_token

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}  # every such API route needs write or more
FORM_BYTES = 64 << 10  # a dashboard form: a few fields, labels at most
UPLOAD_PATHS = (f"{API_PREFIX}/archives", "/ui/push")  # and parts, below


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} B"


# On a refusal with body bytes still to come, the connection is closed: otherwise the
# server keeps reading (and discarding) the rest of the body to reuse the connection.
CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, setting: str):
        super().__init__(
            413,
            f"request body too large: the limit is {limit} bytes ({_size(limit)};"
            f" JUBAKO_REGISTRY_{setting})",
            headers=CLOSE,
        )


class ApiGate:
    def __init__(self, app: ASGIApp, registry: Registry):
        self.app, self.reg = app, registry

    def _limit(self, path: str) -> tuple[int, str]:
        s = self.reg.settings
        if path in UPLOAD_PATHS or (
            path.startswith(f"{API_PREFIX}/uploads/") and "/parts/" in path
        ):  # parts are also held to their declared size by their route
            return s.max_upload_bytes, "MAX_UPLOAD_BYTES"
        if path.startswith("/ui/") and s.max_body_bytes > FORM_BYTES:
            # Dashboard forms are read before their session is checked (login has none).
            return FORM_BYTES, "MAX_BODY_BYTES, 64 KiB for dashboard forms"
        return s.max_body_bytes, "MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path, method = scope["path"], scope["method"]
        query = scope.get("query_string", b"")
        if "\x00" in path or b"%00" in query or b"\x00" in query:
            # PostgreSQL refuses NUL in text: refused here, for every route, with a reason.
            detail = "NUL bytes are not allowed in the path or query parameters"
            await JSONResponse({"detail": detail}, 400)(scope, receive, send)
            return
        limit, setting = self._limit(path)
        declared = headers.get("content-length")
        try:
            length = int(declared) if declared is not None else None
        except ValueError:
            await JSONResponse({"detail": "invalid Content-Length"}, 400)(scope, receive, send)
            return
        if length is not None and length > limit:
            err = BodyTooLarge(limit, setting)
            await JSONResponse({"detail": err.detail}, 413, headers=CLOSE)(scope, receive, send)
            return
        has_body = bool(length) or "transfer-encoding" in headers
        if has_body and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            scheme, credentials = get_authorization_scheme_param(headers.get("authorization"))
            client = scope["client"][0] if scope.get("client") else ""
            needed = "write" if method in WRITE_METHODS else "read"
            try:
                caller = await run_in_threadpool(
                    check_token,
                    self.reg,
                    credentials if scheme.lower() == "bearer" else None,
                    client,
                    needed,
                )
            except HTTPException as e:
                headers = {**(e.headers or {}), **CLOSE}
                response = JSONResponse({"detail": e.detail}, e.status_code, headers=headers)
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["api_caller"] = caller

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        await self.app(scope, capped_receive if has_body else receive, send)
