"""The runtime's own worker processes, driven over the runtime's wire protocol.

``jubako run`` starts N ``python -m jubako.runtime worker`` processes exactly as
``jubako serve`` does (same command, same environment: ``JUBAKO_DEVICE``,
``JUBAKO_NUM_THREADS`` = cores / N, pinned-memory staging, per-request re-runs after a
failed batch) and plays the proxy's part: one TCP connection per worker, CALL frames out,
RESULT frames back (``jubako.runtime.wire``), up to ``max_inflight_per_worker`` batches in
flight on each so a worker never waits for the next batch. A worker that dies is started
again and its batches are sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
from typing import Any

import numpy as np
import orjson

from jubako.errors import JubakoError
from jubako.runtime import wire
from jubako.runtime.serve import Child, free_port


class WorkerLost(Exception):
    pass


class _Link(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.frames = wire.FrameReader()
        self.pending: dict[int, asyncio.Future[wire.Result]] = {}
        loop = asyncio.get_running_loop()
        self.hello: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        for body in self.frames.feed(data):
            kind = wire.kind_of(body)
            if kind == wire.RESULT:
                res = wire.decode_result(body)
                fut = self.pending.pop(res.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(res)
            elif kind == wire.HELLO and not self.hello.done():
                self.hello.set_result(orjson.loads(wire.decode_hello(body)))

    def connection_lost(self, exc: Exception | None) -> None:
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerLost("the worker's connection was lost"))
        if not self.hello.done():
            self.hello.set_exception(WorkerLost("the worker closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and not self.closed.done()


class _Worker:
    def __init__(self, index: int, bento: str, env: dict[str, str], python: str = sys.executable):
        self.index = index
        self.port = free_port()
        argv = [python, "-P", "-m", "jubako.runtime", "worker", "--bento", bento, "--host", "127.0.0.1",
                "--port", str(self.port), "--http-port", str(free_port())]
        self.child = Child(f"worker {index}", argv, env)
        self.link: _Link | None = None
        self.inflight = 0
        self.info: dict[str, Any] = {}


class WorkerPool:
    def __init__(self, bento: str, workers: int, max_inflight: int = 2, ready_timeout: float = 300.0,
                 python: str = sys.executable):
        if workers < 1:
            raise JubakoError("--workers must be >= 1")
        env = dict(os.environ)
        if not env.get("JUBAKO_NUM_THREADS"):
            env["JUBAKO_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
        # the workers' logs would scribble over the progress bar; errors reach the error file
        env.setdefault("JUBAKO_LOG_LEVEL", "CRITICAL")
        self.workers = [_Worker(i, bento, env, python) for i in range(workers)]  # python: the bento's venv
        self.max_inflight = max_inflight
        self.ready_timeout = ready_timeout
        self.ids = wire.MessageIds()
        self.changed: asyncio.Condition | None = None
        self.restarts = 0
        self.closing = False

    @property
    def devices(self) -> list[str]:
        return [str(w.info.get("device") or "cpu") for w in self.workers]

    async def start(self) -> None:
        self.changed = asyncio.Condition()
        for w in self.workers:
            w.child.start()
        await asyncio.gather(*(self._connect(w) for w in self.workers))

    async def _connect(self, w: _Worker) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        delay = 0.05
        while True:
            if not w.child.alive():
                code = w.child.proc.returncode if w.child.proc else None
                raise JubakoError(f"worker {w.index} exited ({code}) before it was ready; see the messages above")
            try:
                _, link = await loop.create_connection(_Link, "127.0.0.1", w.port)
                w.info = await asyncio.wait_for(link.hello, 30)
                break
            except (OSError, WorkerLost, TimeoutError):
                if loop.time() > deadline:
                    raise JubakoError(f"worker {w.index} not ready after {self.ready_timeout:.0f}s") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        w.link = link
        w.inflight = 0
        assert self.changed is not None
        async with self.changed:
            self.changed.notify_all()

    async def _restart(self, w: _Worker) -> None:
        if self.closing:
            return
        self.restarts += 1
        if self.restarts > 3 * len(self.workers) + 3:
            raise JubakoError("workers keep dying; giving up")
        await asyncio.get_running_loop().run_in_executor(None, w.child.stop, 5)
        w.child.start()
        await self._connect(w)

    async def _acquire(self) -> _Worker:
        assert self.changed is not None
        async with self.changed:
            while True:
                ready = [w for w in self.workers if w.link is not None and w.link.alive and w.inflight < self.max_inflight]
                if ready:
                    w = min(ready, key=lambda w: w.inflight)
                    w.inflight += 1
                    return w
                await self.changed.wait()

    async def _release(self, w: _Worker) -> None:
        assert self.changed is not None
        async with self.changed:
            w.inflight = max(0, w.inflight - 1)
            self.changed.notify(1)

    async def call(self, api: str, sizes: list[int], tensor: np.ndarray | None = None,
                   segments: list[bytes] | None = None) -> wire.Result:
        """Run one batch on the least loaded worker; sent again if the worker dies."""
        for attempt in itertools.count():
            w = await self._acquire()
            link = w.link
            assert link is not None and link.transport is not None
            mid = self.ids.take(link.pending)
            fut: asyncio.Future[wire.Result] = asyncio.get_running_loop().create_future()
            link.pending[mid] = fut
            try:
                link.transport.write(wire.encode_call(mid, api, sizes, tensor=tensor, segments=segments))
                return await fut
            except WorkerLost:
                if attempt >= 2:
                    raise JubakoError(f"worker {w.index} died {attempt + 1} times running the same batch") from None
                if w.link is link:  # the first caller to notice restarts it; the others wait in _acquire
                    w.link = None
                    await self._restart(w)
            finally:
                await self._release(w)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self.closing = True
        for w in self.workers:
            if w.link is not None and w.link.transport is not None:
                w.link.transport.close()
        await asyncio.get_running_loop().run_in_executor(None, self._stop_all)

    def _stop_all(self) -> None:
        for w in self.workers:
            w.child.stop(30)
