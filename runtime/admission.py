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
  every request would wait in the socket buffers until the loop reached it.

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

# The loop's lag is read from a timer due every PERIOD. One late tick says little: a
# shared machine deschedules a process for a few ms now and then, and at high load the
# backlog of one stall takes a while to clear, during which requests still make their
# SLO. A loop late because the process was not running (other processes had the CPU)
# is not one the proxy's own work overloads either. So a tick counts as late when it is
# more than LATE late and, since the last tick, the loop's thread wanted the CPU (ran or
# waited to run) more than WANTED of the time, and ran more than BUSY of it: it had work
# waiting all along, a good part of it done (on a crowded machine an overloaded proxy gets
# a third of a core or less, so "ran most of the time" would never hold; and a light load
# on a crowded machine waits to run, but seldom has anything to run). The proxy counts as
# overloaded only when it was late so for most
# of the last TAU seconds (a decayed share over ENTER; it leaves that state when the
# share falls under EXIT). While overloaded, every request read right after a tick later
# than SHED_LATE is refused, which keeps the wait of every answer, 503s included, at a
# few ms instead of growing until the dispatcher's deadlines refuse.
PERIOD = 0.005
LATE = 0.005
WANTED = 0.9
BUSY = 0.2
SHED_LATE = 0.002
TAU = 0.5
ENTER, EXIT = 0.6, 0.2

BEHIND = Refusal("the proxy is behind", 1.0)


class LoopLag:
    """How late the proxy's event loop runs a timer, while API requests come in.

    The timer fires at the start of a loop iteration, so its lateness is about how long
    the previous iteration ran: how long a request arriving now waits before the proxy
    even reads it. It runs only while requests arrive (:meth:`touch`), so an idle proxy
    is not woken every few ms.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sched: Callable[[], tuple[float, float]] | None = None):
        self.clock = clock
        self.sched = sched or thread_sched()
        self.late_share = 0.0  # decayed share of recent time the loop ran more than LATE late
        self.overloaded = False
        self.behind = False  # refuse what is read now
        self._due: float | None = None  # when the running timer should fire; None: not running
        self._last = 0.0
        self._last_sched = (0.0, 0.0)
        self._touched = False

    def observe(self, lateness: float, interval: float, ran: float, waited: float) -> None:
        """A tick ``lateness`` seconds late, ``interval`` seconds after the previous one;
        in between the loop's thread ran ``ran`` seconds and waited to run ``waited``."""
        w = 1.0 - math.exp(-interval / TAU)
        late = lateness > LATE and ran + waited > WANTED * interval and ran > BUSY * interval
        self.late_share += w * (late - self.late_share)
        self.overloaded = self.late_share > (EXIT if self.overloaded else ENTER)
        self.behind = self.overloaded and lateness > SHED_LATE

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
        if self._touched or self.overloaded:
            self._touched = False
            self._schedule(now)
        else:  # no request since the last tick: stop until the next one
            self._due = None
            self.late_share = 0.0
            self.behind = False


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
        if lag.behind:
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
