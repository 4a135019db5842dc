"""Refusals that cost next to nothing: decided before a request's body is decoded.

Under overload the proxy answers most requests with 503, so a refusal must be cheap, or
refusing is itself what keeps the proxy busy and every answer, 503s included, waits
behind its event loop. :class:`Gate` decides right after the HTTP parser has a request's
headers and body, before the body is decoded or validated, and answers with a
pre-encoded response (no JSON encoding, no reply object; one write). It refuses when:

- the API's dispatcher would refuse even a one-item request (no worker, queue full, or
  the queue ahead could not finish within the latency budget: ``Dispatcher.admits``); a
  request refused at one item is refused at any size, so nothing is refused early that
  the dispatcher would have taken;
- or the proxy's own event loop is falling behind (:class:`LoopLag`): when the proxy
  itself is the bottleneck (a light model; its CPU is spent on HTTP), the dispatcher,
  which only knows the workers, would admit what the proxy cannot get to in time, and
  every request would wait in the socket buffers until the loop reached it. The proxy
  then refuses the share of requests that lets it keep up.

A consequence: under overload a malformed request gets the 503 (retry later), not the
400/422 its body would have earned.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable

from .codec import error_body
from .dispatcher import Dispatcher, Refusal

# The loop's lag is read from a timer due every PERIOD: how late it fires is about how long
# the loop's previous iteration ran, i.e. how long a request arriving now waits before the
# proxy even reads it. When requests come faster than the proxy can take them, that wait
# grows until every answer, 503s included, is late: refusing is the one way out, and only
# refusals cheaper than answers raise what the proxy gets through (a pre-encoded 503 costs
# about half of a served request's CPU, the MLP's).
#
# So the proxy sheds a share ``shed`` of the API requests it reads, set by an integral
# controller on the lag (as PIE, RFC 8033, sets a drop probability from queueing delay):
# each tick adds GAIN x (lateness - TARGET), so the share climbs while the loop runs later
# than TARGET and falls while it runs on time, settling where the loop keeps up with what
# it reads. A share, not all-or-nothing: refusing everything once behind made the loop
# idle, then admitting everything again overloaded it, and the queue in front of it (socket
# buffers, the clients') grew at every swing. A served request costs the proxy less when
# many arrive together (bigger batches, fewer wake-ups), so one loop lag can be had with a
# large share shed or a small one: a small LEAK each tick makes the share settle on the
# smaller. With the loop ~10 ms late (an MLP at 1.5x its capacity) the share passes 0.1
# within ~60 ms and 0.5 within ~0.3 s, and is gone ~0.2 s after the overload.
#
# A late tick counts only when the loop's own work made it late: since the previous tick
# its thread wanted the CPU (ran or waited to run) more than WANTED of the time and ran
# more than BUSY of it (on a crowded machine an overloaded proxy gets a third of a core or
# less, and a light load on a crowded machine waits to run but seldom has anything to
# run). A tick where the process was merely descheduled counts as on time. One tick's
# error is capped at ERROR_CAP: a stall (a GC pause) leaves a real backlog, shed from while
# it clears, and nothing once the loop is on time again.
PERIOD = 0.005
TARGET = 0.003  # at least; the proxy sets a sixteenth of its APIs' smallest latency budget
GAIN = 5.0  # share per second of lateness off TARGET, per tick
ERROR_CAP = 0.006
LEAK = 0.001  # share per tick
WANTED = 0.9
BUSY = 0.2
MAX_SHED = 0.95  # some requests always reach the dispatcher: its costs stay learned
MIN_SHED = 0.1  # a smaller share is noise (refuse())

BEHIND = Refusal("the proxy is behind", 1.0)


class LoopLag:
    """How late the proxy's event loop runs a timer while API requests come in, and the
    share of them to refuse for it (module comment). The timer runs only while requests
    arrive (:meth:`touch`) or a share is shed, so an idle proxy is not woken every few ms.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sched: Callable[[], tuple[float, float]] | None = None, target: float = TARGET):
        self.clock = clock
        self.sched = sched or thread_sched()
        self.target = target  # the lag the loop may run at before anything is shed
        self.shed = 0.0  # share of API requests to refuse now
        self._credit = 0.0  # refusals owed: spreads them evenly over the requests read
        self._due: float | None = None  # when the running timer should fire; None: not running
        self._last = 0.0
        self._last_sched = (0.0, 0.0)
        self._touched = False

    def observe(self, lateness: float, interval: float, ran: float, waited: float) -> None:
        """A tick ``lateness`` seconds late, ``interval`` seconds after the previous one;
        in between the loop's thread ran ``ran`` seconds and waited to run ``waited``."""
        own = ran + waited > WANTED * interval and ran > BUSY * interval
        target = self.target
        error = min(lateness, target + ERROR_CAP) - target if own else -min(target, ERROR_CAP)
        self.shed = min(max(self.shed + GAIN * error - LEAK, 0.0), MAX_SHED)
        if self.shed == 0.0:
            self._credit = 0.0

    def refuse(self) -> bool:
        """Whether to refuse the API request read now: ``shed`` of them, evenly spread,
        once the share is MIN_SHED or more (one late tick or two near capacity, a GC pause,
        leave a few percent for a few ticks: refusing those fails requests for nothing)."""
        if self.shed < MIN_SHED:
            return False
        self._credit += self.shed
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False

    def touch(self) -> None:
        """An API request arrived: keep the timer running."""
        self._touched = True
        if self._due is None:
            self._last, self._last_sched = self.clock(), self.sched()
            self._schedule(self._last)

    def _schedule(self, now: float) -> None:
        self._due = now + PERIOD
        asyncio.get_running_loop().call_later(PERIOD, self._tick)

    def _tick(self) -> None:
        now, sched = self.clock(), self.sched()
        assert self._due is not None
        (ran0, waited0), (ran, waited) = self._last_sched, sched
        self.observe(now - self._due, now - self._last, ran - ran0, waited - waited0)
        self._last, self._last_sched = now, sched
        if self._touched or self.shed > 0.0:
            self._touched = False
            self._schedule(now)
        else:  # no request since the last tick and nothing shed: stop until the next one
            self._due = None


def thread_sched() -> Callable[[], tuple[float, float]]:
    """Seconds the calling thread has run, and waited on a run queue (Linux schedstat);
    where that cannot be read, its CPU time and no wait."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        ran, waited = (int(x) / 1e9 for x in os.pread(fd, 128, 0).split()[:2])
    except (OSError, ValueError):
        return lambda: (time.thread_time(), 0.0)

    def read() -> tuple[float, float]:
        ran, waited = os.pread(fd, 128, 0).split()[:2]
        return int(ran) / 1e9, int(waited) / 1e9

    return read


class Gate:
    """The early refusal of API requests (module docstring); one per HTTP server."""

    def __init__(self, lag: LoopLag | None = None):
        self.lag = lag or LoopLag()
        self._responses: dict[tuple[str, int], bytes] = {}

    def check(self, d: Dispatcher) -> Refusal | None:
        """The refusal for a request to the API ``d`` dispatches, or None to go on."""
        lag = self.lag
        lag.touch()
        if lag.shed and lag.refuse():
            return BEHIND
        return d.admits(1)

    def response(self, r: Refusal) -> bytes:
        """The whole HTTP response (keep-alive) for ``r``: built once per reason and
        Retry-After value, then reused."""
        retry = min(max(1, math.ceil(r.retry_after)), 60)
        key = (r.reason, retry)
        raw = self._responses.get(key)
        if raw is None:
            if len(self._responses) > 256:  # reasons are a few constants; bound it anyway
                self._responses.clear()
            body = error_body(f"overloaded: {r.reason}; retry")
            raw = self._responses[key] = (
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nretry-after: %d\r\n\r\n%s" % (len(body), retry, body))
        return raw
