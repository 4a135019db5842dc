"""Adaptive micro-batching, as a pure state machine on an injected clock.

One :class:`Dispatcher` per batchable API, counted in items. It holds no timers and does
no IO: the asyncio glue (``proxy.py``) calls :meth:`Dispatcher.submit` on arrival,
:meth:`Dispatcher.poll` on arrival, on batch completion and at the single moment
:meth:`Dispatcher.next_wakeup` names, and :meth:`Dispatcher.complete` when a worker
answers. That keeps every decision testable on a fake clock.

The policy (docs/runtime.md has the long version):

- **No idle delay.** A batch goes out at once when a worker is idle. Waiting happens only
  while every worker is busy: the next batch for a worker is held in the proxy until the
  worker is about to free up (its learned finish time minus the learned transfer
  overhead), so it collects everything that arrives meanwhile. Holding it cannot delay the
  queued requests (the worker could not start them earlier) and lets more items share the
  fixed cost of a batch, so waiting happens only when it lowers latency overall.
- **Learned cost.** ``cost(n) = a + b*n`` is fitted online by least squares with
  exponential decay (:class:`CostModel`) from what the workers report.
- **Deadlines and admission.** Every request has a deadline. On arrival the dispatcher
  simulates the queue ahead of the request on the workers' expected free times with the
  learned cost; when the request would finish after its deadline, or the bounded queue is
  full, it is refused at once (the proxy answers 503 with Retry-After).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
_RATE_TAU = 0.5  # seconds: time constant of the arrival-rate estimate
_CLIP = 3.0  # an observed batch time counts for at most 3x the current prediction


class CostModel:
    """``seconds(n) ~ a + b*n`` fitted by weighted least squares with exponential decay.

    A faint prior (pseudo-observations at n=1 and n=``span``) keeps the fit defined while
    every batch so far had the same size; real observations outweigh it quickly.
    """

    def __init__(self, a: float = 1e-3, b: float = 1e-4, decay: float = 0.95, span: int = 64):
        self.decay = decay
        self._s0 = self._sn = self._snn = self._sy = self._sny = 0.0
        self._prior = [(1, a + b), (max(2, span), a + b * max(2, span))]
        self._prior_weight = 0.5
        self.a, self.b = a, b
        self.observations = 0

    def observe(self, n: int, seconds: float) -> None:
        # one stall (the process descheduled, a GC pause) must not make the model refuse
        # everything for the next dozens of batches: an observation counts for at most
        # _CLIP x the prediction; a real slow-down is still learned within a few batches
        if self.observations >= 4:
            seconds = min(seconds, _CLIP * self(n))
        d = self.decay
        self._s0 = self._s0 * d + 1.0
        self._sn = self._sn * d + n
        self._snn = self._snn * d + n * n
        self._sy = self._sy * d + seconds
        self._sny = self._sny * d + n * seconds
        self._prior_weight *= d  # the prior fades like any old observation
        self.observations += 1
        self._fit()

    def _fit(self) -> None:
        s0, sn, snn, sy, sny = self._s0, self._sn, self._snn, self._sy, self._sny
        w = self._prior_weight
        for n, y in self._prior:
            s0 += w
            sn += w * n
            snn += w * n * n
            sy += w * y
            sny += w * n * y
        det = s0 * snn - sn * sn
        if det <= 1e-12:
            return
        b = (s0 * sny - sn * sy) / det
        b = max(b, 0.0)
        a = max((sy - b * sn) / s0, 0.0)
        self.a, self.b = a, b

    def __call__(self, n: int) -> float:
        return self.a + self.b * n


@dataclass(eq=False, slots=True)
class Pending:
    """A queued request: ``items`` rows, due by ``deadline``; ``payload`` is the glue's."""

    items: int
    arrival: float
    deadline: float
    payload: Any = None


@dataclass(eq=False, slots=True)
class Batch:
    id: int
    worker: Hashable
    requests: list[Pending]
    items: int
    dispatched_at: float
    expected_finish: float


@dataclass(eq=False, slots=True)
class _Worker:
    key: Hashable
    inflight: list[Batch] = field(default_factory=list)
    free_at: float = 0.0  # when the proxy expects this worker's last batch back


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    retry_after: float  # seconds


_NO_WORKER = Refusal("no worker is ready", 1.0)


class Dispatcher:
    def __init__(
        self,
        max_batch_size: int,
        max_latency: float,
        *,
        max_queue_items: int | None = None,
        max_inflight_per_worker: int = 2,
        cost: CostModel | None = None,
        clock: Clock = time.monotonic,
    ):
        if max_batch_size < 1 or max_latency <= 0 or max_inflight_per_worker < 1:
            raise ValueError("max_batch_size, max_latency and max_inflight_per_worker must be > 0")
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self.max_queue_items = max_queue_items or 16 * max_batch_size
        self.max_inflight = max_inflight_per_worker
        self.cost = cost or CostModel(span=max_batch_size)
        self.overhead = 0.0  # learned: proxy-seen service time minus worker execution time
        self.clock = clock
        self.queue: deque[Pending] = deque()
        self.queued_items = 0
        # accepted items per second, decayed with a ~0.5 s time constant: how fast a
        # batch held for a busy worker fills up (admission costs it at that size)
        self._arrivals = 0.0
        self._last_arrival = clock()
        self._workers: dict[Hashable, _Worker] = {}
        self._ids = itertools.count(1)

    # --- workers -------------------------------------------------------------------

    @property
    def workers(self) -> list[Hashable]:
        return list(self._workers)

    @property
    def inflight_batches(self) -> int:
        return sum(len(w.inflight) for w in self._workers.values())

    def add_worker(self, key: Hashable) -> None:
        self._workers.setdefault(key, _Worker(key, free_at=self.clock()))

    def remove_worker(self, key: Hashable) -> tuple[list[Batch], list[Pending]]:
        """Forget a worker: its in-flight batches to fail, and, when it was the last one,
        every queued request (nothing could serve them)."""
        w = self._workers.pop(key, None)
        lost = list(w.inflight) if w else []
        stranded: list[Pending] = []
        if not self._workers:
            stranded = list(self.queue)
            self.queue.clear()
            self.queued_items = 0
        return lost, stranded

    # --- requests ------------------------------------------------------------------

    def deadline_for(self, now: float, budget: float | None = None) -> float:
        """Arrival + max_latency; a request's own budget may only shorten it."""
        b = self.max_latency if budget is None else min(max(budget, 0.0), self.max_latency)
        return now + b

    def admits(self, items: int = 1, budget: float | None = None) -> Refusal | None:
        """The refusal a request of ``items`` rows would get now, or None if it would be
        queued: :meth:`submit`'s rule without queueing anything. The proxy asks it for one
        item before it decodes a body: a request refused at one item is refused at any
        size (the queue bound and the finish estimate only grow with the items), so under
        overload a refusal costs no decoding."""
        return self._admission(self.clock(), items, budget)[0]

    def _admission(self, now: float, items: int, budget: float | None) -> tuple[Refusal | None, float]:
        """(the refusal or None, the deadline) of ``items`` more rows arriving ``now``."""
        if not self._workers:
            return _NO_WORKER, 0.0
        if self.queued_items + items > self.max_queue_items:
            return Refusal("queue full", self._drain_time(now, self.queued_items)), 0.0
        deadline = self.deadline_for(now, budget)
        # With nothing queued and a worker idle, refusing helps no one, and a refused
        # request teaches the cost model nothing: a cost learned from a slow first batch
        # (CUDA warm-up, a stall) would then refuse every request forever. So admit it;
        # it runs at once and its timing corrects the estimate.
        if not self.queue and any(not w.inflight for w in self._workers.values()):
            return None, deadline
        finish = self.estimate_finish(now, self.queued_items + items)
        if finish > deadline:
            return Refusal("cannot finish within the latency budget", max(finish - deadline, 0.001)), deadline
        return None, deadline

    def submit(self, items: int, payload: Any = None, budget: float | None = None) -> Pending | Refusal:
        """Queue a request of ``items`` rows, or refuse it now if it cannot make its deadline."""
        now = self.clock()
        if items < 1 or items > self.max_batch_size:
            raise ValueError(f"a request carries 1..{self.max_batch_size} items, not {items}")
        refusal, deadline = self._admission(now, items, budget)
        if refusal is not None:
            return refusal
        p = Pending(items, now, deadline, payload)
        self.queue.append(p)
        self.queued_items += items
        self._arrivals = self._arrivals * math.exp(-(now - self._last_arrival) / _RATE_TAU) + items
        self._last_arrival = now
        return p

    def submit_many(self, sizes: list[int], payloads: list[Any], budget: float | None = None) -> list[Pending] | Refusal:
        """Queue one request split in parts of at most a batch each (``sizes``), admitted or
        refused as a whole: the queue bound and the deadline are checked for all its items,
        so no part is queued for a request that is refused."""
        now = self.clock()
        total = sum(sizes)
        if not sizes or any(n < 1 or n > self.max_batch_size for n in sizes):
            raise ValueError(f"each part carries 1..{self.max_batch_size} items, not {sizes}")
        if not self._workers:
            return _NO_WORKER
        if self.queued_items + total > self.max_queue_items:
            return Refusal("queue full", self._drain_time(now, self.queued_items))
        deadline = self.deadline_for(now, budget)
        finish = self.estimate_finish(now, self.queued_items + total)
        if finish > deadline:  # no idle exception: a split request is never one quick probe
            return Refusal("cannot finish within the latency budget", max(finish - deadline, 0.001))
        parts = [Pending(n, now, deadline, payload) for n, payload in zip(sizes, payloads, strict=True)]
        self.queue.extend(parts)
        self.queued_items += total
        self._arrivals = self._arrivals * math.exp(-(now - self._last_arrival) / _RATE_TAU) + total
        self._last_arrival = now
        return parts

    @property
    def arrival_rate(self) -> float:
        """Accepted items per second, recently."""
        return self._arrivals / _RATE_TAU

    def estimate_finish(self, now: float, items: int) -> float:
        """When the last of ``items`` queued items would come back, if all were sent in
        full batches to whichever worker frees first. The last, partial batch goes at once
        to an idle worker; bound for a busy one it keeps filling with the requests that
        arrive until that worker frees up, so it is costed at the size the recent arrival
        rate gives it then (at most a full batch)."""
        frees = [max(w.free_at, now) for w in self._workers.values()]
        heapq.heapify(frees)
        finish = now
        m = self.max_batch_size
        rate = self._arrivals / _RATE_TAU
        while items > 0:
            t = heapq.heappop(frees)
            if items >= m:
                n = m
            elif t <= now:
                n = items
            else:
                n = min(m, items + math.ceil(rate * (t - now)))
            finish = t + self.cost(n)
            heapq.heappush(frees, finish)
            items -= m
        return finish

    def _drain_time(self, now: float, items: int) -> float:
        return max(self.estimate_finish(now, items) - now, 0.001)

    # --- batching ------------------------------------------------------------------

    def _free_worker(self) -> _Worker | None:
        """The worker to send to: an idle one if any (the one that finished last, whose
        caches still hold the model: alternating idle workers at low load costs each
        request cold caches), else the one expected to free up first."""
        best: _Worker | None = None
        idle: _Worker | None = None
        for w in self._workers.values():
            if not w.inflight:
                if idle is None or w.free_at > idle.free_at:
                    idle = w
                continue
            if len(w.inflight) >= self.max_inflight:
                continue
            if best is None or (w.free_at, len(w.inflight)) < (best.free_at, len(best.inflight)):
                best = w
        return idle or best

    def _send_at(self, w: _Worker) -> float:
        """Sending earlier than this only parks the batch behind the worker's current one."""
        return w.free_at - self.overhead if w.inflight else -math.inf

    def poll(self) -> tuple[list[Batch], list[Pending]]:
        """Batches to send now (already assigned to workers) and requests past deadline."""
        now = self.clock()
        batches: list[Batch] = []
        expired: list[Pending] = []
        m = self.max_batch_size
        while self.queue:
            w = self._free_worker()
            if w is None:
                break
            if self.queued_items < m and now < self._send_at(w):
                break  # the worker is busy: let the batch grow until it is about to free up
            requests: list[Pending] = []
            n = 0
            start = max(now, w.free_at)
            due = math.inf  # the batch may grow only while its earliest deadline holds
            while self.queue and n + self.queue[0].items <= m:
                p = self.queue[0]
                if p.deadline < now:
                    self.queue.popleft()
                    self.queued_items -= p.items
                    expired.append(p)
                    continue
                if requests and start + self.cost(n + p.items) > min(due, p.deadline):
                    break
                self.queue.popleft()
                self.queued_items -= p.items
                requests.append(p)
                n += p.items
                due = min(due, p.deadline)
            if not requests:
                continue
            batch = Batch(next(self._ids), w.key, requests, n, now, start + self.cost(n))
            w.free_at = batch.expected_finish
            w.inflight.append(batch)
            batches.append(batch)
        return batches, expired

    def next_wakeup(self) -> float | None:
        """The one moment the glue must call :meth:`poll` again if nothing else happens
        first (arrivals and completions call it anyway); None when only those can help."""
        if not self.queue:
            return None
        w = self._free_worker()
        if w is None:
            return None
        return self._send_at(w)

    def complete(self, batch: Batch, exec_seconds: float | None = None, wait_seconds: float = 0.0) -> None:
        """A batch came back (or failed). Learn its cost when the worker timed it."""
        now = self.clock()
        if exec_seconds is not None:  # first, so the free time below uses what was learned
            service = max(now - batch.dispatched_at - wait_seconds, exec_seconds)
            self.cost.observe(batch.items, service)
            extra = min(service - exec_seconds, max(_CLIP * self.overhead, 0.001))
            self.overhead = 0.8 * self.overhead + 0.2 * extra
        w = self._workers.get(batch.worker)
        if w is not None and batch in w.inflight:
            w.inflight.remove(batch)
            # the worker runs its batches one after another: the next one starts now, so it
            # is free once every batch still in flight has run (all of them: leaving out the
            # one starting now made admission optimistic exactly under overload, when
            # batches come back late), whether this one came back early or late
            w.free_at = now + sum(self.cost(b.items) for b in w.inflight)
