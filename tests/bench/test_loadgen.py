"""The benchmark's load generator: bisection, window rules, and the open loop measuring
from scheduled send times (pure functions, plus one short loopback run). No timing asserts."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "runtime"))

import loadgen  # noqa: E402


def search(capacity: float, guess: float, **kw: float) -> tuple[float, list[float]]:
    b = loadgen.Bisection(guess, **kw)  # type: ignore[arg-type]
    probed = []
    while b.next is not None:
        r = b.next
        probed.append(r)
        b.record(r, r <= capacity)
    return b.lo, probed


def test_bisection_converges_from_below_and_above() -> None:
    for capacity, guess in ((1000.0, 500.0), (1000.0, 1800.0), (1000.0, 990.0), (37.0, 900.0)):
        lo, probed = search(capacity, guess, max_probes=12)
        assert lo <= capacity
        assert lo >= capacity / 1.05 - 1e-9, (capacity, guess, lo, probed)


def test_bisection_respects_its_probe_budget_and_floor() -> None:
    _, probed = search(1000.0, 10.0, max_probes=5)
    assert len(probed) == 5
    lo, probed = search(0.0, 8.0, floor=1.0)  # nothing passes: halves down to the floor, reports 0
    assert lo == 0.0 and min(probed) >= 1.0


def window(p99_ms: float, error_rate: float = 0.0, good_ratio: float = 1.0) -> dict[str, float]:
    return {"offered": 100, "p99_ms": p99_ms, "error_rate": error_rate, "good_ratio": good_ratio}


def test_a_rate_counts_only_when_three_windows_pass_and_agree() -> None:
    slo = 0.05
    assert loadgen.rate_counts([window(10), window(20), window(49)], slo)
    assert not loadgen.rate_counts([window(10), window(20)], slo)  # fewer than 3 windows
    assert not loadgen.rate_counts([window(10), window(20), window(51)], slo)  # p99 over the SLO
    assert not loadgen.rate_counts([window(10), window(10, error_rate=0.001), window(10)], slo)  # 0.1 % errors
    assert not loadgen.rate_counts([window(10, good_ratio=1.0), window(10, good_ratio=0.85), window(10)], slo)


def test_window_stats_counts_by_scheduled_time_and_unanswered_as_errors() -> None:
    sched = np.array([0.1, 0.2, 0.3, 1.1, 1.2])
    lat = np.array([0.010, 0.060, 0.020, 0.010, 3.0])
    status = np.array([200, 200, 503, 200, 0])
    w = loadgen.window_stats(sched, lat, status, 0.0, 1.0, 0.05)
    assert w["offered"] == 3 and w["errors"] == 1 and w["served_within_slo"] == 1
    w2 = loadgen.window_stats(sched, lat, status, 1.0, 2.0, 0.05)
    assert w2["offered"] == 2 and w2["errors"] == 1 and w2["p99_ms"] > 2000


async def _slow_server(delay: float) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(n)
                await asyncio.sleep(delay)  # one request at a time per connection
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_open_loop_latency_includes_waiting_for_a_connection() -> None:
    # one connection, a server taking 20 ms, 100 req/s offered: the generator's own queue
    # grows, and latency measured from the schedule shows it (no coordinated omission)
    async def main() -> dict[str, np.ndarray]:
        server, port = await _slow_server(0.02)
        t = loadgen.Target("127.0.0.1", port, "/x", [b"[1]"])
        try:
            return await loadgen.open_loop(t, 100.0, 0.5, max_conns=1, preopen=1, drain=2.0)
        finally:
            server.close()

    r = asyncio.run(main())
    assert (r["status"] == 200).all()
    lat = r["lat"]
    assert lat[-1] > 3 * lat[0]  # later requests waited behind earlier ones
    # from the write, the generator's own wait is left out: the server's 20 ms
    assert (r["lat_sent"] >= 0.02).all() and (r["lat_sent"] <= lat).all()
    assert r["lat_sent"][-1] < lat[-1] / 2


def test_closed_loop_counts_statuses() -> None:
    async def main() -> dict[str, object]:
        server, port = await _slow_server(0.001)
        t = loadgen.Target("127.0.0.1", port, "/x", [b"[1]"])
        try:
            return await loadgen.closed_loop(t, 2, 0.3, warmup=0.05)
        finally:
            server.close()

    r = asyncio.run(main())
    assert r["errors"] == 0 and r["codes"] == {"200": r["requests"]}


def test_open_loop_reaches_the_server_with_more_than_512_connections() -> None:
    """A server holding each request 0.5 s, 2000 req/s offered: ~1000 requests at once must
    reach it (512 connections capped the offered load: the excess waited in the generator,
    where a server cannot refuse it)."""
    at_once = 0
    now = 0

    async def main() -> dict[str, np.ndarray]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal at_once, now
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(n)
                    now += 1
                    at_once = max(at_once, now)
                    await asyncio.sleep(0.5)
                    now -= 1
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        t = loadgen.Target("127.0.0.1", server.sockets[0].getsockname()[1], "/x", [b"[1]"])
        try:
            return await loadgen.open_loop(t, 2000.0, 0.8, drain=3.0)
        finally:
            server.close()

    r = asyncio.run(main())
    assert (r["status"] == 200).mean() > 0.99
    assert at_once > 700
