"""One TCP connection to one worker process: CALL frames out, RESULT frames back.

Many calls are in flight on one link, matched to their results by message id (ids wrap
at ``wire.MAX_ID`` and skip those still in flight). What a call carries besides its frame
(the proxy's batch, ``jubako run``'s future) is the owner's: the link keeps it as an opaque
token and hands it back with the result, or in the list of calls left unanswered when the
connection is lost. The owner learns everything through :class:`LinkOwner`.

A frame that does not decode, or a result the owner cannot use, drops the connection:
the owner then fails the calls left on it (nothing waits for an answer that cannot come).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import orjson

from . import wire

log = logging.getLogger("jubako.workers")

T = TypeVar("T")
Address = tuple[str, int]


class LinkOwner(Protocol[T]):
    """What a link tells its owner (the proxy, or ``jubako run``'s pool)."""

    def link_up(self, link: WorkerLink[T]) -> None:
        """The worker said HELLO (its models are loaded): ``link.info`` is set, calls may go."""

    def link_result(self, link: WorkerLink[T], token: T, result: wire.Result) -> None:
        """The RESULT of the call sent with ``token``."""

    def link_down(self, link: WorkerLink[T], unanswered: list[T], was_up: bool) -> None:
        """The connection is gone; ``unanswered`` are the tokens of the calls it still held."""


class WorkerLink(asyncio.Protocol, Generic[T]):
    """An asyncio protocol: open it with :func:`connect`."""

    def __init__(self, owner: LinkOwner[T], addr: Address):
        self.owner = owner
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.frames = wire.FrameReader()
        self.ids = wire.MessageIds()
        self.pending: dict[int, T] = {}  # message id -> token, for the calls in flight
        self.ready = False  # HELLO received, connection open
        self.info: dict[str, Any] = {}  # the worker's HELLO: pid, bento, apis, device
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"worker {self.addr[0]}:{self.addr[1]}"

    # --- calls -----------------------------------------------------------------------

    def call(self, token: T, api: str, sizes: list[int], tensor: np.ndarray | None = None,
             segments: list[bytes] | None = None) -> int:
        """Send one CALL (a batch of ``len(sizes)`` requests); returns its message id."""
        assert self.transport is not None, "call() before the connection is made"
        mid = self.ids.take(self.pending)
        frame = wire.encode_call(mid, api, sizes, tensor=tensor, segments=segments)
        self.pending[mid] = token
        self.transport.write(frame)
        return mid

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and not self.closed.done()

    # --- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.frames.feed(data)
        except ValueError:
            log.exception("%s sent a bad frame; dropping the connection", self)
            self.close()
            return
        try:
            for body in frames:
                kind = wire.kind_of(body)
                if kind == wire.RESULT:
                    res = wire.decode_result(body)
                    token = self.pending.pop(res.id, None)
                    if token is not None:  # else failed already (in-flight timeout): dropped
                        self.owner.link_result(self, token, res)
                elif kind == wire.HELLO and not self.ready:
                    self.info = orjson.loads(wire.decode_hello(body))
                    self.ready = True
                    self.owner.link_up(self)
        except Exception:  # a result that does not decode or match its call: fail loudly, never hang
            log.exception("%s sent a result that cannot be used; dropping the connection", self)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        was_up, self.ready = self.ready, False
        unanswered, self.pending = list(self.pending.values()), {}
        self.owner.link_down(self, unanswered, was_up)
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(owner: LinkOwner[T], addr: Address) -> WorkerLink[T]:
    """Open a link to the worker at ``addr`` (``OSError`` when nothing listens there)."""
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(lambda: WorkerLink(owner, addr), addr[0], addr[1])
    return link
