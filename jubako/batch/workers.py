"""The runtime's own worker processes, driven over the runtime's wire protocol.

``jubako run`` starts N ``python -m jubako.runtime worker`` processes exactly as
``jubako serve`` does (``jubako.workers.spawn``: same command, same environment:
``JUBAKO_DEVICE``, ``JUBAKO_NUM_THREADS`` = cores / N) and plays the proxy's part over the
same link (``jubako.workers.link``): one TCP connection per worker, CALL frames out,
RESULT frames back, up to ``max_inflight_per_worker`` batches in flight on each so a
worker never waits for the next batch. A worker that dies is started again and its
batches are sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import Any

import numpy as np

from jubako.errors import JubakoError
from jubako.workers.link import WorkerLink, connect
from jubako.workers.spawn import Child, free_port, worker_command, worker_env
from jubako.workers.wire import Result


class WorkerLost(Exception):
    pass


class _Worker:
    """One worker process and its link, whose :class:`LinkOwner` it is: each call is a future."""

    def __init__(self, index: int, bento: str, env: dict[str, str], python: str = sys.executable):
        self.index = index
        self.port = free_port()
        self.child = Child(f"worker {index}", worker_command(bento, self.port, free_port(), python), env)
        self.link: WorkerLink[asyncio.Future[Result]] | None = None
        self.hello: asyncio.Future[dict[str, Any]] | None = None
        self.inflight = 0
        self.info: dict[str, Any] = {}

    def link_up(self, link: WorkerLink[asyncio.Future[Result]]) -> None:
        if self.hello is not None and not self.hello.done():
            self.hello.set_result(link.info)

    def link_result(self, link: WorkerLink[asyncio.Future[Result]], token: asyncio.Future[Result],
                    result: Result) -> None:
        if not token.done():
            token.set_result(result)

    def link_down(self, link: WorkerLink[asyncio.Future[Result]], unanswered: list[asyncio.Future[Result]],
                  was_up: bool) -> None:
        for fut in unanswered:
            if not fut.done():
                fut.set_exception(WorkerLost("the worker's connection was lost"))
        if self.hello is not None and not self.hello.done():
            self.hello.set_exception(WorkerLost("the worker closed the connection"))


class WorkerPool:
    def __init__(self, bento: str, workers: int, max_inflight: int = 2, ready_timeout: float = 300.0,
                 python: str = sys.executable):
        if workers < 1:
            raise JubakoError("--workers must be >= 1")
        env = worker_env(workers)
        # the workers' logs would scribble over the progress bar; errors reach the error file
        env.setdefault("JUBAKO_LOG_LEVEL", "CRITICAL")
        self.workers = [_Worker(i, bento, env, python) for i in range(workers)]  # python: the bento's venv
        self.max_inflight = max_inflight
        self.ready_timeout = ready_timeout
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
                code = w.child.returncode
                raise JubakoError(f"worker {w.index} exited ({code}) before it was ready; see the messages above")
            w.hello = loop.create_future()
            link = None
            try:
                link = await connect(w, ("127.0.0.1", w.port))
                w.info = await asyncio.wait_for(w.hello, 30)
                break
            except (OSError, WorkerLost, TimeoutError):
                if link is not None:
                    link.close()
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
                # a worker whose connection went while it had nothing in flight comes first:
                # no call noticed, so its caller is the one to restart it (in call())
                dead = [w for w in self.workers if w.link is not None and not w.link.alive]
                ready = dead or [w for w in self.workers
                                 if w.link is not None and w.inflight < self.max_inflight]
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
                   segments: list[bytes] | None = None) -> Result:
        """Run one batch on the least loaded worker; sent again if the worker dies."""
        for attempt in itertools.count():
            w = await self._acquire()
            link = w.link
            assert link is not None
            fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            try:
                if not link.alive:
                    raise WorkerLost("the worker's connection was lost")
                link.call(fut, api, sizes, tensor=tensor, segments=segments)
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
            if w.link is not None:
                w.link.close()
        await asyncio.get_running_loop().run_in_executor(None, self._stop_all)

    def _stop_all(self) -> None:
        for w in self.workers:
            w.child.stop(30)
