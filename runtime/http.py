"""The proxy's HTTP/1.1 server: httptools callbacks on an asyncio (uvloop) protocol.

The API routes (``POST /<api>``) are served without a task, a future or an ASGI message
per request: the parser's callbacks collect the body, :meth:`Proxy.start_api` validates
it and queues it in the dispatcher with a :class:`Reply` as its sink, and the reply
writes the response when the batch result arrives. Responses leave in request order
(HTTP/1.1 pipelining). Every other route (probes, metrics, docs, static content) is one
``await`` of :meth:`Proxy.respond`. Both speak ``answer.py``'s typed interface.

SIGTERM/SIGINT: stop accepting, answer every request received (at most
``timeout_graceful`` s), close the connections, then stop the proxy.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import signal
import socket
import time
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from jubako.errors import JubakoError

from .answer import Answer, App, Headers, error
from .codec import JSON, error_body

if TYPE_CHECKING:
    from .proxy import ApiState

log = logging.getLogger("jubako.runtime.proxy")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_MAX_PIPELINE = 64  # requests one connection may have in flight before we stop reading it
# How long a connection we refused keeps reading (and dropping) what its client still sends:
# closing with the client's bytes unread makes the kernel reset the connection, and a reset
# can destroy our answer before the client reads it (a lingering close, as nginx does).
_LINGER_S = 2.0


def _head(status: int, ctype: bytes, length: int, headers: Headers, keep_alive: bool) -> bytes:
    parts = [b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
             % (status, _REASONS.get(status, b"Unknown"), ctype, length)]
    for k, v in headers:
        parts.append(b"%s: %s\r\n" % (k, v))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class Reply:
    """One request's answer slot: the :class:`~jubako.runtime.answer.Sink` the proxy answers."""

    __slots__ = ("conn", "keep_alive", "head_only", "st", "t0", "result")

    def __init__(self, conn: Connection, keep_alive: bool, head_only: bool = False,
                 st: ApiState | None = None):
        self.conn = conn
        self.keep_alive = keep_alive
        self.head_only = head_only
        self.st = st
        self.t0 = time.perf_counter()
        self.result: Answer | None = None

    def done(self) -> bool:
        return self.result is not None

    def answer(self, a: Answer) -> None:
        if self.result is not None:
            return
        self.result = a
        st = self.st
        if st is not None:
            self.conn.proxy.record(st, a.status, time.perf_counter() - self.t0)
        self.conn.flush()


class Connection(asyncio.Protocol):
    __slots__ = ("server", "proxy", "parser", "transport", "url", "headers", "body", "size", "too_big",
                 "replies", "paused", "closed", "head_bytes", "head_raw", "reading_since", "idle_since")

    def __init__(self, server: HttpServer):
        self.server = server
        self.proxy = server.proxy
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.too_big = False
        self.replies: deque[Reply] = deque()
        self.paused = False
        self.closed = False
        self.head_bytes = 0  # URL + header bytes of the request being read
        self.head_raw = 0  # bytes received while a request's head is incomplete
        self.reading_since: float | None = None  # a request's first byte came, its headers not yet
        self.idle_since = time.monotonic()  # nothing read or in flight since (keep-alive)

    # --- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not TCP
                pass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.server.idle_check()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
        except httptools.HttpParserError as e:  # also what a callback's _Refused becomes
            self._fail(400, f"malformed HTTP request: {e}")
        if self.reading_since is not None and not self.closed:
            # httptools reports a header only once its value is complete and buffers it
            # until then: bound what an unfinished head may hold, whatever its shape
            self.head_raw += len(data)
            limit = self.server.settings.max_url_bytes + self.server.settings.max_header_bytes
            if self.head_raw > limit:
                self._fail(431, f"request headers larger than {self.server.settings.max_header_bytes} bytes")

    def check_timeouts(self, now: float, header_timeout: float, idle_timeout: float) -> None:
        """Called by the server's sweep: 408 for headers too slow to come (slow-loris),
        close a keep-alive connection idle too long."""
        if self.closed:
            return
        if self.reading_since is not None:
            if now - self.reading_since > header_timeout:
                self._fail(408, f"request headers not received within {header_timeout:g} s")
        elif not self.replies and now - self.idle_since > idle_timeout and self.transport is not None:
            self.transport.close()
            self.closed = True

    def _fail(self, status: int, message: str) -> None:
        body = error_body(message)
        t = self.transport
        if t is not None and not self.closed:
            t.write(_head(status, JSON, len(body), (), False) + body)
            if t.can_write_eof():  # a lingering close: FIN after the answer, drop the rest
                t.write_eof()
                if self.paused:
                    t.resume_reading()
                asyncio.get_running_loop().call_later(_LINGER_S, t.close)
            else:
                t.close()
        self.closed = True

    # --- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.size = 0
        self.too_big = False
        self.head_bytes = 0
        self.head_raw = 0
        self.reading_since = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.server.settings.max_url_bytes:
            self._refuse(414, f"URL longer than {self.server.settings.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.server.settings.max_header_bytes:
            self._refuse(431, f"request headers larger than {self.server.settings.max_header_bytes} bytes")
        self.headers.append((name.lower(), value))

    def _refuse(self, status: int, message: str) -> None:
        """Answer and close now, and stop the parser (it would go on buffering)."""
        self._fail(status, message)
        raise _Refused(message)

    def on_headers_complete(self) -> None:
        self.reading_since = None
        self.head_raw = 0
        self.idle_since = time.monotonic()  # a body still coming is not idleness
        for k, v in self.headers:
            if k == b"expect" and v.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.server.max_body:
            self.too_big = True
            self.body = []
        elif not self.too_big:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closed:
            return
        self.reading_since = None
        if self.server.stopping:
            # draining: answer, and say the connection closes, rather than leave the
            # client with a reset socket; the client retries elsewhere
            reply = Reply(self, False)
            self.replies.append(reply)
            reply.answer(error(503, "the server is shutting down; retry"))
            return
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive() and not self.server.stopping
        url = self.url
        q = url.find(b"?")
        raw_path = url if q < 0 else url[:q]
        st = self.proxy.api(method, raw_path.decode("latin-1"))
        if st is not None and not self.too_big:
            # overload: refused before the body is decoded (runtime/admission.py)
            refusal = self.server.gate.check(st.dispatcher)
            if refusal is not None:
                if keep_alive and not self.replies and self.transport is not None:
                    self.transport.write(self.server.gate.response(refusal))  # pre-encoded
                    self.proxy.record(st, 503, 0.0)
                    return
                reply = Reply(self, keep_alive, False, st)
                self.replies.append(reply)
                retry = b"%d" % max(1, math.ceil(refusal.retry_after))
                reply.answer(error(503, f"overloaded: {refusal.reason}; retry", [(b"retry-after", retry)]))
                return
        reply = Reply(self, keep_alive, method == b"HEAD", st)
        self.replies.append(reply)
        if st is not None:
            if self.too_big:
                reply.answer(error(413, f"body: larger than {self.server.max_body} bytes"))
            else:
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.proxy.start_api(st, self.headers, body, reply)
        else:
            task = asyncio.ensure_future(self._other(method, raw_path, self.headers, reply))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)
        if len(self.replies) >= _MAX_PIPELINE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    # --- responses -------------------------------------------------------------------

    def flush(self) -> None:
        """Write every answered reply at the head of the line, in request order."""
        replies = self.replies
        t = self.transport
        while replies and replies[0].result is not None:
            r = replies.popleft()
            if self.closed or t is None:
                continue
            status, body, ctype, headers = r.result
            head = _head(status, ctype, len(body), headers, r.keep_alive)
            t.write(head if r.head_only else head + body)
            if not r.keep_alive:
                t.close()
                self.closed = True
        if self.paused and len(replies) < _MAX_PIPELINE // 2 and t is not None and not self.closed:
            self.paused = False
            t.resume_reading()
        if not replies:
            self.idle_since = time.monotonic()
            self.server.idle_check()

    async def _other(self, method: bytes, raw_path: bytes, headers: Headers, reply: Reply) -> None:
        """Any route but the APIs."""
        try:
            reply.answer(await self.proxy.respond(method.decode(), unquote(raw_path.decode("latin-1")), headers))
        except Exception:
            log.exception("error serving %s %s", method.decode(), raw_path.decode("latin-1"))
            reply.answer(error(500, "internal error"))


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request already answered."""


class HttpServer:
    def __init__(self, proxy: App, max_body: int):
        self.proxy = proxy
        self.settings = proxy.settings
        self.max_body = max_body
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._drained: asyncio.Event | None = None
        self.gate = proxy.gate  # early refusals of API requests under overload

    def idle_check(self) -> None:
        if self._drained is not None and not any(c.replies for c in self.connections):
            self._drained.set()

    async def _sweep_forever(self) -> None:
        """One pass over the connections per period instead of a timer per request: the
        lean server keeps no per-request timer (10 000 idle connections: a few ms a pass)."""
        s = self.settings
        period = min(1.0, s.http_header_timeout_s / 2, s.http_idle_timeout_s / 2)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for c in list(self.connections):
                c.check_timeouts(now, s.http_header_timeout_s, s.http_idle_timeout_s)

    async def serve(self, host: str, port: int, backlog: int = 4096, timeout_graceful: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.proxy.startup()
        try:
            server = await loop.create_server(lambda: Connection(self), host, port, backlog=backlog,
                                              reuse_address=True, reuse_port=self.settings.reuse_port or None)
        except OSError as e:
            await self.proxy.shutdown()
            if e.errno == errno.EADDRINUSE:
                raise JubakoError(f"port {port} is in use") from None
            raise JubakoError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        sweeper = asyncio.ensure_future(self._sweep_forever())
        try:
            await stop.wait()
        finally:
            self.stopping = True
            sweeper.cancel()
            server.close()
            self._drained = asyncio.Event()
            self.idle_check()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout_graceful)
            except TimeoutError:
                log.warning("requests still open after %.0f s; closing", timeout_graceful)
            for c in list(self.connections):
                if c.transport is not None:
                    c.transport.close()
            for t in list(self.tasks):
                t.cancel()
            await self.proxy.shutdown()
