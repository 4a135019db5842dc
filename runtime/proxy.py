"""The proxy: the routes behind the HTTP server (``http.py``), in front of the workers.

``POST /<api>`` (:meth:`Proxy.start_api`) decodes and validates the body (``codec``), then queues it in the API's
:class:`~jubako.runtime.dispatcher.Dispatcher` (every API has one; a non-batchable API's
batches hold one request; a request of more than a batch is split and gathered). The
dispatcher is driven by events only: arrivals, results, and at most one timer per API for
the moment it asked for; one sweep a second fails calls a worker has not answered within
the in-flight timeout. Workers are reached over one
TCP connection each (``wire``); each ``--workers`` host is resolved again and again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from jubako import logs
from jubako.manifest import BentoManifest

from . import wire
from .answer import Answer, Headers, Sink, error
from .codec import ApiCodec, InputError, is_json_type
from .dispatcher import Batch, CostModel, Dispatcher, Refusal
from .settings import Batching, ProxySettings
from .static import StaticSite

log = logging.getLogger("jubako.runtime.proxy")

DEADLINE_HEADER = b"x-jubako-deadline-ms"
_PLAIN = b"text/plain; charset=utf-8"
_ROOT_ROUTES = frozenset(("/livez", "/readyz", "/metrics"))


def event_loop_policy() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a runtime dependency off Windows
        pass


class WorkerLink(asyncio.Protocol):
    """One TCP connection to one worker; many batches in flight, matched by id."""

    def __init__(self, proxy: Proxy, addr: tuple[str, int]):
        self.proxy = proxy
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.frames = wire.FrameReader()
        self.pending: dict[int, InFlight] = {}
        self.ready = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.info: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"worker {self.addr[0]}:{self.addr[1]}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.frames.feed(data)
        except ValueError:
            log.exception("%s sent a bad frame; dropping it", self)
            self.close()
            return
        try:
            for body in frames:
                kind = wire.kind_of(body)
                if kind == wire.RESULT:
                    self.proxy.on_result(self, wire.decode_result(body))
                elif kind == wire.HELLO:
                    self.info = orjson.loads(wire.decode_hello(body))
                    self.ready = True
                    self.proxy.worker_up(self)
        except Exception:  # a result that does not decode or match its call: fail loudly, never hang
            log.exception("%s sent a result the proxy cannot use; dropping the connection", self)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        was_ready, self.ready = self.ready, False
        if was_ready:
            self.proxy.worker_down(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Queued(NamedTuple):
    """A request's payload in the dispatcher: its decoded value and where its answer goes."""

    value: Any
    sink: Sink


@dataclass(eq=False, slots=True)
class InFlight:
    """A batch sent to a worker, awaiting its RESULT."""

    st: ApiState
    target: Batch
    sent_at: float


@dataclass(eq=False)
class ApiState:
    name: str
    codec: ApiCodec
    dispatcher: Dispatcher
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None
    counters: dict[int, Any] = field(default_factory=dict)
    latency: Any = None
    batch_size: Any = None
    batch_seconds: Any = None


class Proxy:
    def __init__(self, manifest: BentoManifest, workers: list[tuple[str, int]], batching: dict[str, Batching],
                 settings: ProxySettings | None = None, static: StaticSite | None = None):
        from . import metrics

        self.settings = settings or ProxySettings.load()
        self.manifest = manifest
        self.targets = workers
        self.batching = batching
        self.links: dict[tuple[str, int], WorkerLink] = {}
        self.ids = wire.MessageIds()
        self.m = metrics.ProxyMetrics(self)
        self.apis: dict[str, ApiState] = {}
        self.routes: dict[str, ApiState] = {}
        self._tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._resolver: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._docs: Any = None
        self.static = static  # the bento's static web content, under /ui/ (runtime/static.py)
        self.root = self.settings.root
        self.stopping = False

    # --- lifecycle -------------------------------------------------------------------

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        for spec in self.manifest.apis:
            # every API, batchable or not, goes through a dispatcher: the same admission,
            # deadlines and bounded queue (a non-batchable one sends batches of one request)
            b = self.batching[spec.name]
            d = Dispatcher(
                b.max_batch_size, b.max_latency_ms / 1000.0, max_queue_items=b.max_queue_items,
                max_inflight_per_worker=b.max_inflight_per_worker,
                cost=CostModel(a=0.001, b=0.0001, span=b.max_batch_size), clock=time.monotonic,
            )
            st = ApiState(spec.name, ApiCodec(spec), d)
            self.m.attach(st)
            self.apis[spec.name] = st
            self.routes[spec.route] = st
        self._resolver = asyncio.ensure_future(self._resolve_forever())
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def shutdown(self) -> None:
        self.stopping = True
        for task in (self._resolver, self._sweeper):
            if task:
                task.cancel()
        for t in self._tasks.values():
            t.cancel()
        for link in list(self.links.values()):
            link.close()

    def local_path(self, path: str) -> str | None:
        """``path`` without the root path prefix; None for a path outside it (404), but
        the probes and /metrics answer at the root too (kubelet and Prometheus use it)."""
        root = self.root
        if not root:
            return path
        if path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
            return path[len(root):] or "/"
        return path if path in _ROOT_ROUTES else None

    @property
    def ready(self) -> bool:
        return any(link.ready for link in self.links.values())

    # --- workers ---------------------------------------------------------------------

    async def _resolve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wanted: set[tuple[str, int]] = set()
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
            await asyncio.sleep(self.settings.resolve_interval)

    async def _maintain(self, addr: tuple[str, int]) -> None:
        """Keep one connection to ``addr``; reconnect quickly after a loss."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        while not self.stopping:
            try:
                _, link = await loop.create_connection(lambda: WorkerLink(self, addr), addr[0], addr[1])
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
            self.m.worker_lost.inc()
            await asyncio.sleep(delay)

    def worker_up(self, link: WorkerLink) -> None:
        log.info("%s ready (pid %s)", link, link.info.get("pid"))
        for st in self.apis.values():
            st.dispatcher.add_worker(link)
            self.kick(st)

    def worker_down(self, link: WorkerLink) -> None:
        log.warning("%s lost with %d batch(es) in flight", link, len(link.pending))
        pending, link.pending = link.pending, {}
        for call in pending.values():
            _fail_call(call, 503, f"{link} was lost; retry")
        for st in self.apis.values():
            lost, stranded = st.dispatcher.remove_worker(link)
            for p in stranded:
                p.payload.sink.answer(error(503, "no worker is ready; retry"))
            self.kick(st)

    # --- batching --------------------------------------------------------------------

    def kick(self, st: ApiState) -> None:
        d = st.dispatcher
        batches, expired = d.poll()
        for p in expired:
            p.payload.sink.answer(error(503, "deadline passed while queued; retry"))
        for b in batches:
            self._send_batch(st, b)
        wake = d.next_wakeup()
        if wake != st.timer_at:  # the one timer per API moves only when the moment does
            if st.timer is not None:
                st.timer.cancel()
                st.timer = None
            st.timer_at = wake
            if wake is not None:
                # uvloop's loop.time() has millisecond resolution: schedule from our own clock
                assert self._loop is not None
                st.timer = self._loop.call_later(max(wake - time.monotonic(), 0.0), self._on_timer, st)

    def _on_timer(self, st: ApiState) -> None:
        st.timer = None
        st.timer_at = None
        self.kick(st)

    def _send_batch(self, st: ApiState, b: Batch) -> None:
        link: WorkerLink = b.worker  # type: ignore[assignment]
        mid = self.ids.take(link.pending)
        reqs = b.requests
        sizes = [p.items for p in reqs]
        if st.codec.tensor_in:
            arr = reqs[0].payload.value if len(reqs) == 1 else np.concatenate([p.payload.value for p in reqs])
            frame = wire.encode_call(mid, st.name, sizes, tensor=arr)
        else:
            frame = wire.encode_call(mid, st.name, sizes, segments=[p.payload.value for p in reqs])
        link.pending[mid] = InFlight(st, b, b.dispatched_at)
        link.send(frame)
        st.batch_size.observe(b.items)

    def on_result(self, link: WorkerLink, res: wire.Result) -> None:
        call = link.pending.pop(res.id, None)
        if call is None:
            return
        st, target = call.st, call.target
        d = st.dispatcher
        now = d.clock()
        st.batch_seconds.observe(now - target.dispatched_at)
        d.complete(target, res.exec_seconds, res.wait_seconds)
        off = 0
        tensor = res.tensor
        for p, status, seg in zip(target.requests, res.statuses, res.segments, strict=True):
            sink = p.payload.sink
            if status != 200:
                sink.answer(error(status, seg.decode(errors="replace")))
            elif tensor is not None and not st.codec.batchable:
                sink.answer(Answer(200, st.codec.encode_tensor(tensor)))  # the whole output
            elif tensor is not None:
                sink.answer(Answer(200, st.codec.encode_tensor(tensor[off : off + p.items])))
                off += p.items
            else:
                sink.answer(Answer(200, seg, st.codec.content_type))
        self.kick(st)

    # --- calls a worker does not answer --------------------------------------------

    def inflight_timeout(self, st: ApiState) -> float:
        return max(self.batching[st.name].inflight_timeout_s, st.dispatcher.max_latency)

    async def _sweep_forever(self) -> None:
        period = min([1.0, *(self.inflight_timeout(st) / 4 for st in self.apis.values())])
        while True:
            await asyncio.sleep(period)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Fail every call a worker has not answered within its in-flight timeout (504),
        and drop that worker's connection: it is wedged, or gone without a reset, and
        every batch sent to it would wait as long. The proxy reconnects as usual."""
        for link in list(self.links.values()):
            late = [mid for mid, c in link.pending.items() if now - c.sent_at > self.inflight_timeout(c.st)]
            if not late:
                continue
            log.warning("%s did not answer %d call(s) in time; dropping the connection", link, len(late))
            for mid in late:
                call = link.pending.pop(mid)
                timeout = self.inflight_timeout(call.st)
                _fail_call(call, 504, f"API {call.st.name!r}: {link} did not answer within {timeout:g} s")
            link.close()

    # --- HTTP (the server's side: runtime/answer.py) -------------------------------

    def start_api(self, st: ApiState, headers: Headers, body: bytes, sink: Sink) -> None:
        """Validate one API request and queue it; ``sink`` is answered once, at once for a
        refusal, else when the worker answers."""
        if st.codec.json_in:
            for k, v in headers:
                if k == b"content-type" and not is_json_type(v):
                    sink.answer(error(415, f"content-type {v.decode('latin-1')!r}: this API takes application/json"))
                    return
        try:
            items, value = st.codec.decode(body)
        except InputError as e:
            sink.answer(error(e.status, str(e)))
            return
        d = st.dispatcher
        if items > d.max_queue_items:  # the hard cap: such a request could never be queued
            sink.answer(error(413, f"body: at most {d.max_queue_items} items per request, got {items}"))
            return
        budget = None
        for k, v in headers:
            if k == DEADLINE_HEADER:
                try:
                    budget = float(v) / 1000.0
                except ValueError:
                    sink.answer(error(400, f"header {DEADLINE_HEADER.decode()}: not a number"))
                    return
        if items > d.max_batch_size:
            r: Any = d.submit_many(*_split(st.codec, items, value, sink, d.max_batch_size), budget)
        else:
            r = d.submit(items, Queued(value, sink), budget)
        if isinstance(r, Refusal):
            retry = b"%d" % max(1, math.ceil(r.retry_after))
            sink.answer(error(503, f"overloaded: {r.reason}; retry", [(b"retry-after", retry)]))
            return
        self.kick(st)

    async def respond(self, method: str, path: str, headers: Headers) -> Answer:
        """Every route but ``POST /<api>``: probes, metrics, docs, static content. ``path``
        is percent-decoded. A HEAD answer keeps its body: the server leaves it out and
        sends the content-length a GET would have."""
        local = self.local_path(path)
        if not local:
            return error(404, f"no route {path}; see {self.root}/docs")
        if local == "/livez":
            return Answer(200, b"ok\n", _PLAIN)
        if local == "/readyz":
            return Answer(200, b"ready\n", _PLAIN) if self.ready else Answer(503, b"no worker ready\n", _PLAIN)
        if local == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return Answer(200, generate_latest(self.m.registry), CONTENT_TYPE_LATEST.encode())
        if local in self.routes:
            return error(405, f"use POST {local}", [(b"allow", b"POST")])
        if self.static is not None and self.static.owns(local):  # after every route of the proxy's own
            return Answer(*await self.static.respond(method, local, headers, self.root))
        from . import openapi

        if self._docs is None:
            self._docs = openapi.Docs(self.manifest, self.root)
        found = self._docs.get(local) if method in ("GET", "HEAD") else None
        if found is None:
            return error(404, f"no route {local}; see /docs")
        return Answer(200, found[0], found[1])


def _split(codec: ApiCodec, items: int, value: Any, sink: Sink, m: int) -> tuple[list[int], list[Queued]]:
    """A request of more than a batch (``m`` items): its parts and their payloads, each
    answering into one :class:`_Gather` that answers the request once all are back."""
    starts = range(0, items, m)
    sizes = [min(m, items - a) for a in starts]
    if codec.tensor_in:
        chunks = [value[a : a + m] for a in starts]
    else:  # JSON items travel as the client's bytes: re-encode each part's slice
        parsed = orjson.loads(value)
        chunks = [orjson.dumps(parsed[a : a + m]) for a in starts]
    gather = _Gather(sink, len(sizes))
    return sizes, [Queued(chunk, _Part(gather, i)) for i, chunk in enumerate(chunks)]


class _Gather:
    """Joins the answers of a split request's parts: the first failure answers it (its
    other parts are then ignored), else the JSON arrays are concatenated in order."""

    __slots__ = ("sink", "bodies", "left")

    def __init__(self, sink: Sink, n: int):
        self.sink = sink
        self.bodies: list[bytes] = [b""] * n
        self.left = n

    def answer(self, i: int, a: Answer) -> None:
        if self.sink.done():
            return
        if a.status != 200:
            self.sink.answer(a)
            return
        self.bodies[i] = a.body
        self.left -= 1
        if self.left == 0:  # each body is a compact JSON array (orjson): splice them
            inner = [b[1:-1] for b in self.bodies if len(b) > 2]
            self.sink.answer(Answer(200, b"[" + b",".join(inner) + b"]", a.content_type))


class _Part:
    """The sink of one part of a split request."""

    __slots__ = ("gather", "index", "answered")

    def __init__(self, gather: _Gather, index: int):
        self.gather, self.index, self.answered = gather, index, False

    def done(self) -> bool:
        return self.answered or self.gather.sink.done()

    def answer(self, a: Answer) -> None:
        if not self.answered:
            self.answered = True
            self.gather.answer(self.index, a)


def _fail_call(call: InFlight, status: int, message: str) -> None:
    a = error(status, message)
    for p in call.target.requests:
        p.payload.sink.answer(a)


def run(bento: str, port: int, workers: list[tuple[str, int]], host: str = "0.0.0.0") -> None:
    """Serve the proxy on the lean HTTP server (``runtime/http.py``) until SIGTERM."""
    from jubako.loader import open_bento

    from .http import HttpServer
    from .settings import batching

    logs.configure()  # JSON lines in pods, text on a terminal (JUBAKO_LOG_FORMAT / _LEVEL)
    bundle = open_bento(bento)
    manifest = bundle.manifest
    settings = ProxySettings.load()
    proxy = Proxy(manifest, workers, batching(manifest, settings), settings, StaticSite.of(bundle.path, manifest))
    log.info("proxy for %s on http://%s:%d (workers %s)", manifest.tag, host, port,
             ",".join(f"{h}:{p}" for h, p in workers))
    event_loop_policy()
    asyncio.run(HttpServer(proxy, settings.max_body_bytes).serve(host, port, timeout_graceful=30))
