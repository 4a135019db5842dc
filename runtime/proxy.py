"""The proxy: the routes behind the HTTP server (``http.py``), in front of the workers.

``POST /<api>`` (:meth:`Proxy.start_api`) decodes and validates the body (``codec``),
then queues it in the API's :class:`~jubako.runtime.dispatcher.Dispatcher` (every API has
one; a non-batchable API's batches hold one request; a request of more than a batch is
split and gathered: ``split``). The dispatcher is driven by events only: arrivals,
results, and at most one timer per API for the moment it asked for; one sweep a second
fails calls a worker has not answered within the in-flight timeout. Each batch is one CALL
on a worker link (``jubako.workers.link``); ``upstream`` keeps those links. Every other
route is :meth:`Proxy.respond`. The server side of both is ``answer.py``'s interface.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jubako import logs
from jubako.manifest import BentoManifest
from jubako.runtime_settings import Batching, ProxySettings
from jubako.workers.link import Address, WorkerLink
from jubako.workers.wire import Result

from . import admission
from .admission import Gate
from .answer import Answer, Headers, Sink, error
from .codec import ApiCodec, InputError, is_json_type
from .dispatcher import Batch, CostModel, Dispatcher, Refusal
from .split import Queued, split
from .static import StaticSite
from .upstream import Upstream

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
        self.upstream: Upstream[InFlight] = Upstream(workers, self, self.settings.resolve_interval)
        self.batching = batching
        self.gate = Gate()  # the server asks it before decoding a request (admission.py)
        self.m = metrics.ProxyMetrics(self)
        self.upstream.on_lost = self.m.worker_lost.inc
        self.apis: dict[str, ApiState] = {}
        self.routes: dict[str, ApiState] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._docs: Any = None
        self.static = static  # the bento's static web content, under /ui/ (runtime/static.py)
        self.root = self.settings.root

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
        # the loop may lag a sixteenth of the tightest latency budget before the proxy sheds
        budgets = [d.max_latency for d in (st.dispatcher for st in self.apis.values())]
        self.gate.lag.target = max(admission.TARGET, min(budgets, default=0.0) / 16)
        self.upstream.start()
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def shutdown(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        self.upstream.stop()

    def local_path(self, path: str) -> str | None:
        """``path`` without the root path prefix; None for a path outside it (404), but
        the probes and /metrics answer at the root too (kubelet and Prometheus use it)."""
        root = self.root
        if not root:
            return path
        if path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
            return path[len(root):] or "/"
        return path if path in _ROOT_ROUTES else None

    def api(self, method: bytes, path: str) -> ApiState | None:
        if method != b"POST":
            return None
        local = self.local_path(path)
        return self.routes.get(local) if local is not None else None

    def record(self, st: ApiState, status: int, seconds: float) -> None:
        counter = st.counters.get(status)
        if counter is None:
            counter = st.counters[status] = self.m.requests.labels(st.name, str(status))
        counter.inc()
        st.latency.observe(seconds)

    @property
    def links(self) -> dict[Address, WorkerLink[InFlight]]:
        return self.upstream.links

    @property
    def ready(self) -> bool:
        return self.upstream.ready

    # --- workers: the links' owner (jubako.workers.link.LinkOwner) ------------------

    def link_up(self, link: WorkerLink[InFlight]) -> None:
        log.info("%s ready (pid %s)", link, link.info.get("pid"))
        for st in self.apis.values():
            st.dispatcher.add_worker(link)
            self.kick(st)

    def link_down(self, link: WorkerLink[InFlight], unanswered: list[InFlight], was_up: bool) -> None:
        for call in unanswered:
            _fail_call(call, 503, f"{link} was lost; retry")
        if not was_up:
            return
        log.warning("%s lost with %d batch(es) in flight", link, len(unanswered))
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
        link: WorkerLink[InFlight] = b.worker  # type: ignore[assignment]
        reqs = b.requests
        sizes = [p.items for p in reqs]
        call = InFlight(st, b, b.dispatched_at)
        if st.codec.tensor_in:
            arr = reqs[0].payload.value if len(reqs) == 1 else np.concatenate([p.payload.value for p in reqs])
            link.call(call, st.name, sizes, tensor=arr)
        else:
            link.call(call, st.name, sizes, segments=[p.payload.value for p in reqs])
        st.batch_size.observe(b.items)

    def link_result(self, link: WorkerLink[InFlight], call: InFlight, res: Result) -> None:
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

    # --- HTTP: what the server calls (answer.App) -------------------------------------

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
            r: Any = d.submit_many(*split(st.codec, items, value, sink, d.max_batch_size), budget)
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
        body, content_type = found
        return Answer(200, body, content_type)


def _fail_call(call: InFlight, status: int, message: str) -> None:
    a = error(status, message)
    for p in call.target.requests:
        p.payload.sink.answer(a)


def run(bento: str, port: int, workers: list[tuple[str, int]], host: str = "0.0.0.0") -> None:
    """Serve the proxy on the lean HTTP server (``runtime/http.py``) until SIGTERM."""
    from jubako.loader import open_bento
    from jubako.runtime_settings import batching

    from .http import HttpServer

    logs.configure()  # JSON lines in pods, text on a terminal (JUBAKO_LOG_FORMAT / _LEVEL)
    bundle = open_bento(bento)
    manifest = bundle.manifest
    settings = ProxySettings.load()
    proxy = Proxy(manifest, workers, batching(manifest, settings), settings, StaticSite.of(bundle.path, manifest))
    log.info("proxy for %s on http://%s:%d (workers %s)", manifest.tag, host, port,
             ",".join(f"{h}:{p}" for h, p in workers))
    event_loop_policy()
    asyncio.run(HttpServer(proxy, settings.max_body_bytes).serve(host, port, timeout_graceful=30))
