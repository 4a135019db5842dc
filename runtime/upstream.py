"""The proxy's links to its workers: one per address the ``--workers`` hosts resolve to.

Each host is resolved again every ``resolve_interval`` seconds (a Kubernetes headless
Service lists one address per ready worker pod): a new address gets a link, a vanished
one is closed. A lost connection is re-opened quickly (50 ms, doubling up to 1 s). The
links themselves are ``jubako.workers.link``; what they carry is the owner's (the proxy).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Generic, TypeVar

from jubako.workers.link import Address, LinkOwner, WorkerLink, connect

log = logging.getLogger("jubako.runtime.proxy")

T = TypeVar("T")


class Upstream(Generic[T]):
    def __init__(self, targets: list[Address], owner: LinkOwner[T], resolve_interval: float,
                 on_lost: Callable[[], None] = lambda: None):
        self.targets = targets
        self.owner = owner
        self.resolve_interval = resolve_interval
        self.on_lost = on_lost  # a connection that was open is gone (a metric)
        self.links: dict[Address, WorkerLink[T]] = {}
        self._tasks: dict[Address, asyncio.Task[None]] = {}
        self._resolver: asyncio.Task[None] | None = None
        self.stopping = False

    @property
    def ready(self) -> bool:
        return any(link.ready for link in self.links.values())

    def start(self) -> None:
        self._resolver = asyncio.ensure_future(self._resolve_forever())

    def stop(self) -> None:
        self.stopping = True
        if self._resolver:
            self._resolver.cancel()
        for t in self._tasks.values():
            t.cancel()
        for link in list(self.links.values()):
            link.close()

    async def _resolve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wanted: set[Address] = set()
            for host, port in self.targets:
                try:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                    wanted.update((info[4][0], port) for info in infos)
                except OSError as e:
                    log.warning("cannot resolve worker host %s: %s", host, e)
            for addr in wanted - set(self._tasks):
                self._tasks[addr] = asyncio.ensure_future(self._maintain(addr))
            for addr in set(self._tasks) - wanted:
                self._tasks.pop(addr).cancel()
                link = self.links.get(addr)
                if link:
                    link.close()
            await asyncio.sleep(self.resolve_interval)

    async def _maintain(self, addr: Address) -> None:
        """Keep one connection to ``addr``; reconnect quickly after a loss."""
        delay = 0.05
        while not self.stopping:
            try:
                link = await connect(self.owner, addr)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            self.links[addr] = link
            try:
                await asyncio.shield(link.closed)
            except asyncio.CancelledError:
                link.close()
                raise
            finally:
                if self.links.get(addr) is link:
                    del self.links[addr]
            self.on_lost()
            await asyncio.sleep(delay)
