"""One asyncio load generator process: raw HTTP/1.1 keep-alive sockets, no client library.

- ``closed_loop``: ``c`` connections, each sends its next request when the previous one
  is answered.
- ``open_loop``: Poisson arrivals at ``rate``; each request's latency is measured from its
  *scheduled* send time, so a slow server cannot slow the generator down and hide its own
  queueing (no coordinated omission). Requests beyond ``max_conns`` open connections wait
  in the generator, and that wait counts as latency too; ``max_conns`` is large (4096) so
  that an overload reaches the server as the many clients of a real one would: with 512,
  a server holding requests near its latency budget capped what the generator could send
  (512 / 50 ms ~ 10 000 req/s) and the excess queued here, unseen, never refused. Each
  request's latency from when it was written is kept too: how late the generator itself
  was (its own CPU share, on a machine it shares with the server) is not the server's.
- ``find_max_rate``: bisection for the highest rate whose 3 measurement windows each have
  p99 <= SLO and errors < 0.1 %, and agree within 10 % (their served/offered ratios).

The analysis helpers (``window_stats``, ``rate_counts``, ``Bisection``) are pure, for tests.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ERROR_BUDGET = 0.001  # errors < 0.1 %
AGREEMENT = 0.10  # windows agree within 10 %
PAUSE = 1.5  # seconds of quiet between probes


# --- HTTP ----------------------------------------------------------------------------


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time; resolves to the status (0 = lost)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.need = -1
        self.chunked = False
        self.fut: asyncio.Future[int] | None = None
        self.status = 0
        self.dead = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.fut

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                i = self.buf.find(b"\r\n\r\n")
                if i < 0:
                    return
                head = self.buf[:i].lower()
                self.status = int(head[9:12])
                self.close_after = b"\r\nconnection: close" in head
                j = head.find(b"\r\ncontent-length:")
                if j >= 0:
                    k = head.find(b"\r\n", j + 2)
                    self.need = i + 4 + int(head[j + 17 : k if k >= 0 else len(head)])
                    self.chunked = False
                else:
                    self.chunked = b"transfer-encoding: chunked" in head
                    self.need = i + 4
            if self.chunked:
                end = self.buf.find(b"0\r\n\r\n", self.need)
                if end < 0:
                    return
                self.need = end + 5
                self.chunked = False
            if len(self.buf) < self.need:
                return
            self.buf = self.buf[self.need :]
            self.need = -1
            fut, self.fut = self.fut, None
            if fut is not None and not fut.done():
                fut.set_result(self.status)
            if self.close_after:
                self.dead = True
                if self.transport:
                    self.transport.close()
            if not self.buf:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_result(0)

    def close(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.close()


@dataclass
class Target:
    host: str
    port: int
    path: str
    bodies: list[bytes]
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.requests = [
            (f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
             f"content-length: {len(b)}\r\n\r\n").encode() + b
            for b in self.bodies
        ]

    async def connect(self) -> Conn:
        _, conn = await asyncio.get_running_loop().create_connection(Conn, self.host, self.port)
        return conn


# --- analysis (pure) -------------------------------------------------------------------


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else math.nan


def window_stats(sched: np.ndarray, lat: np.ndarray, status: np.ndarray, t0: float, t1: float,
                 slo: float) -> dict[str, Any]:
    """Requests *scheduled* in [t0, t1): offered, errors, p50/p99 (ms), served within SLO.
    Unanswered requests carry status 0 (their latency is censored at the end of the run)."""
    m = (sched >= t0) & (sched < t1)
    st, la = status[m], lat[m]
    n = int(m.sum())
    ok = st == 200
    errors = int(n - ok.sum())
    good = int((ok & (la <= slo)).sum())
    answered = la[st != 0]
    return {
        "offered": n, "seconds": t1 - t0, "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "p50_ms": pct(answered, 50) * 1000, "p99_ms": pct(la, 99) * 1000 if n else math.nan,
        "served_within_slo": good, "good_ratio": good / n if n else 0.0,
    }


def window_passes(w: dict[str, Any], slo: float) -> bool:
    return w["offered"] > 0 and w["error_rate"] < ERROR_BUDGET and w["p99_ms"] <= slo * 1000


def rate_counts(windows: Sequence[dict[str, Any]], slo: float) -> bool:
    """A rate counts when every window passes and the windows agree within 10 %."""
    if len(windows) < 3 or not all(window_passes(w, slo) for w in windows):
        return False
    ratios = [w["good_ratio"] for w in windows]
    return min(ratios) >= (1 - AGREEMENT) * max(ratios)


class Bisection:
    """Highest passing rate: start near a capacity guess, grow by 1.25x until a rate fails,
    then bisect until hi/lo <= 1 + ``tolerance`` or ``max_probes`` are spent."""

    def __init__(self, guess: float, *, tolerance: float = 0.05, max_probes: int = 7, floor: float = 1.0):
        self.lo = 0.0
        self.hi: float | None = None
        self.next: float | None = max(guess, floor)
        self.tolerance, self.max_probes, self.floor = tolerance, max_probes, floor
        self.probes = 0

    def record(self, rate: float, ok: bool) -> None:
        self.probes += 1
        if ok:
            self.lo = max(self.lo, rate)
        else:
            self.hi = rate if self.hi is None else min(self.hi, rate)
        if self.probes >= self.max_probes:
            self.next = None
        elif self.hi is None:
            self.next = self.lo * 1.25
        elif self.lo <= 0:
            self.next = self.hi / 2 if self.hi / 2 >= self.floor else None
        elif self.hi / self.lo <= 1 + self.tolerance:
            self.next = None
        else:
            self.next = (self.lo + self.hi) / 2


# --- load ----------------------------------------------------------------------------


async def closed_loop(target: Target, concurrency: int, seconds: float, warmup: float = 0.5) -> dict[str, Any]:
    conns = [await target.connect() for _ in range(concurrency)]
    lat: list[float] = []
    codes: dict[int, int] = {}
    t_start = time.perf_counter()
    t_measure, t_stop = t_start + warmup, t_start + warmup + seconds

    async def client(k: int, conn: Conn) -> None:
        i = k
        while True:
            t0 = time.perf_counter()
            if t0 >= t_stop:
                break
            if conn.dead:
                conn = await target.connect()
            status = await conn.request(target.requests[i % len(target.requests)])
            t1 = time.perf_counter()
            i += concurrency
            if t0 >= t_measure:
                lat.append(t1 - t0)
                codes[status] = codes.get(status, 0) + 1
        conn.close()

    await asyncio.gather(*(client(k, c) for k, c in enumerate(conns)))
    a = np.array(lat)
    ok = codes.get(200, 0)
    total = sum(codes.values())
    return {
        "concurrency": concurrency, "seconds": seconds, "requests": total,
        "rps": total / seconds, "ok_rps": ok / seconds,
        "p50_ms": pct(a, 50) * 1000, "p99_ms": pct(a, 99) * 1000,
        "errors": total - ok, "codes": {str(k): v for k, v in sorted(codes.items())},
    }


def _open_files(want: int) -> int:
    """Raise this process's open-file limit towards ``want`` (+ a margin); the connections
    it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want + 256:
        soft = want + 256 if hard == resource.RLIM_INFINITY else min(want + 256, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return want if soft == resource.RLIM_INFINITY else max(1, min(want, soft - 256))


async def open_loop(target: Target, rate: float, seconds: float, *, seed: int = 0, drain: float = 3.0,
                    max_conns: int = 4096, preopen: int = 32) -> dict[str, np.ndarray]:
    """Poisson arrivals for ``seconds``; returns per request: scheduled offset, latency
    (from the scheduled time; for the unanswered, the time until ``drain`` s after the end), status (0 = none),
    the generator's own lag (when it got to each request, after its scheduled time) and
    the latency from when the request was written (``lat_sent``; inf when never answered)."""
    loop = asyncio.get_running_loop()
    max_conns = _open_files(max_conns)
    rng = np.random.default_rng(seed)
    n_max = int(rate * seconds * 1.3) + 20
    sched = np.cumsum(rng.exponential(1.0 / rate, n_max))
    sched = sched[sched < seconds]
    n = len(sched)
    lat = np.full(n, np.inf)
    lat_sent = np.full(n, np.inf)
    lag = np.zeros(n)  # how late the generator itself got to each request (its own CPU share)
    status = np.zeros(n, dtype=np.int32)
    idle: list[Conn] = []
    for _ in range(min(preopen, max_conns)):
        idle.append(await target.connect())
    opened = len(idle)
    waiting: deque[int] = deque()
    reqs = target.requests
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def fire(i: int, conn: Conn | None) -> None:
        nonlocal opened
        while True:
            try:
                if conn is None or conn.dead:
                    conn = await target.connect()
                sent = time.perf_counter()
                st = await conn.request(reqs[i % len(reqs)])
            except OSError:
                st = 0
                conn = None
            done = time.perf_counter()
            lat[i] = done - (start + sched[i])
            if st:
                lat_sent[i] = done - sent
            status[i] = st
            if conn is not None and conn.dead:
                conn = None
            if waiting:
                i = waiting.popleft()
                continue
            if conn is not None:
                idle.append(conn)
            else:
                opened -= 1
            return

    def launch(i: int) -> None:
        nonlocal opened
        if idle:
            conn: Conn | None = idle.pop()
        elif opened < max_conns:
            conn = None
            opened += 1
        else:
            waiting.append(i)
            return
        t = loop.create_task(fire(i, conn))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    i = 0
    while i < n:
        now = time.perf_counter() - start
        while i < n and sched[i] <= now:
            lag[i] = now - sched[i]
            launch(i)
            i += 1
        if i < n:
            await asyncio.sleep(max(sched[i] - (time.perf_counter() - start), 0))
    end = time.perf_counter() + drain
    while (tasks or waiting) and time.perf_counter() < end:
        await asyncio.sleep(0.01)
    for t in list(tasks):
        t.cancel()
    # unanswered (status 0): censored at the end of the drain, so percentiles stay finite
    missing = ~np.isfinite(lat)
    lat[missing] = time.perf_counter() - (start + sched[missing])
    for c in idle:
        c.close()
    return {"sched": sched, "lat": lat, "status": status, "lag": lag, "lat_sent": lat_sent}


async def probe(target: Target, rate: float, slo: float, *, windows: int = 3, warmup: float = 1.0,
                seed: int = 0) -> dict[str, Any]:
    """One open-loop run at ``rate``: a warm-up, then ``windows`` measurement windows."""
    win = min(max(500.0 / rate, 1.5), 3.0)
    r = await open_loop(target, rate, warmup + windows * win, seed=seed, drain=max(3 * slo, 2.0))
    ws = [window_stats(r["sched"], r["lat"], r["status"], warmup + k * win, warmup + (k + 1) * win, slo)
          for k in range(windows)]
    whole = window_stats(r["sched"], r["lat"], r["status"], warmup, warmup + windows * win, slo)
    return {"rate": rate, "window_s": win, "windows": ws, "counts": rate_counts(ws, slo), **{
        k: whole[k] for k in ("p50_ms", "p99_ms", "error_rate", "good_ratio")}}


async def find_max_rate(target: Target, guess: float, slo: float, log: Callable[[str], None] = print,
                        reset: Callable[[], Awaitable[None]] | None = None) -> tuple[float, list[dict[str, Any]]]:
    """``reset`` runs after a failed probe (the harness restarts the server), so that no
    system carries a failed probe's state (queues, learned costs) into the next one."""
    b = Bisection(guess)
    probes: list[dict[str, Any]] = []
    while b.next is not None:
        rate = b.next
        if probes:
            if reset is not None and not probes[-1]["counts"]:
                await reset()
            await asyncio.sleep(PAUSE)  # every probe starts from a drained, idle server
        p = await probe(target, rate, slo, seed=b.probes)
        probes.append(p)
        b.record(rate, p["counts"])
        log(f"    {rate:8.1f} req/s: p50 {p['p50_ms']:7.1f} ms  p99 {p['p99_ms']:7.1f} ms  "
            f"errors {p['error_rate'] * 100:5.2f}%  -> {'counts' if p['counts'] else 'fails'}")
    return b.lo, probes


async def overload(target: Target, rate: float, slo: float, seconds: float = 5.0) -> dict[str, Any]:
    """Offer ``rate`` (150 % of capacity) and see what is served within the SLO, and how the
    rest is refused (status codes; latency of the errors)."""
    r = await open_loop(target, rate, seconds + 1.0, seed=99, drain=max(3 * slo, 2.0))
    m = r["sched"] >= 1.0
    st, la = r["status"][m], r["lat"][m]
    ok = st == 200
    good = int((ok & (la <= slo)).sum())
    codes: dict[str, int] = {}
    for s, c in zip(*np.unique(st, return_counts=True), strict=True):
        codes[str(int(s))] = int(c)
    err = la[~ok]
    refused = r["lat_sent"][m][st == 503]  # from the write: what the server (and loopback) took
    return {
        "offered_rate": rate, "seconds": seconds, "requests": int(m.sum()),
        "served_within_slo_per_s": good / seconds, "codes": codes,
        "ok_p99_ms": pct(la[ok], 99) * 1000, "error_p50_ms": pct(err, 50) * 1000,
        "error_p99_ms": pct(err, 99) * 1000 if len(err) else math.nan,
        "lag_p99_ms": pct(r["lag"][m], 99) * 1000,
        "refused_p50_from_send_ms": pct(refused, 50) * 1000 if len(refused) else math.nan,
        "refused_p99_from_send_ms": pct(refused, 99) * 1000 if len(refused) else math.nan,
    }
