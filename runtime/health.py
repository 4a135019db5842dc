"""A minimal HTTP/1.1 server for a worker's ``/livez``, ``/readyz`` and ``/metrics``.

Probes and scrapes are rare and tiny, so this is a few lines over asyncio streams rather
than a web framework in every worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class HealthServer:
    def __init__(self, ready: Callable[[], bool], registry: Any, role: str):
        self.ready = ready
        self.registry = registry
        self.role = role
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, host, port)

    async def stop(self) -> None:
        if self.server:
            self.server.close()

    def respond(self, path: str) -> tuple[int, bytes, bytes]:
        if path == "/livez":
            return 200, b"text/plain", b"ok\n"
        if path == "/readyz":
            ok = self.ready()
            return (200 if ok else 503), b"text/plain", b"ready\n" if ok else b"loading models\n"
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return 200, CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry)
        return 404, b"text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = head.split(b" ", 2)
            path = parts[1].decode().split("?", 1)[0] if len(parts) > 1 else "/"
            status, ctype, body = self.respond(path)
            reason = {200: b"OK", 404: b"Not Found", 503: b"Service Unavailable"}[status]
            writer.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, reason, ctype, len(body)) + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
