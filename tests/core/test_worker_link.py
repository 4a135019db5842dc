"""The one worker link (jubako.workers): frames round-trip, calls are matched to their
results by id across the u32 wrap, and nothing is left waiting when the connection goes.

The far end is a real TCP server on 127.0.0.1 speaking the frame protocol, standing in
for a worker so each test can choose what the worker does (answer out of order, answer
an id nobody waits for, send garbage, hang up)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
import pytest

from jubako.workers import wire
from jubako.workers.link import WorkerLink, connect
from jubako.workers.spawn import worker_command, worker_env


def body(frame: bytes) -> memoryview:
    (n,) = wire._LEN.unpack_from(frame)
    assert n == len(frame) - 4
    return memoryview(frame)[4:]


# --- frames ---------------------------------------------------------------------------


def test_call_and_result_frames_round_trip() -> None:
    x = np.arange(12, dtype=">i4").reshape(4, 3)  # a non-native byte order survives too
    c = wire.decode_call(body(wire.encode_call(7, "predict", [1, 3], tensor=x)))
    assert (c.id, c.api, c.sizes, c.segments) == (7, "predict", (1, 3), None)
    assert c.tensor is not None and c.tensor.dtype == x.dtype and np.array_equal(c.tensor, x)
    c = wire.decode_call(body(wire.encode_call(wire.MAX_ID, "t", [1, 1], segments=[b'"a"', b""])))
    assert (c.id, c.tensor, c.segments) == (wire.MAX_ID, None, [b'"a"', b""])

    y = np.zeros((0, 2), dtype=np.float32)
    r = wire.decode_result(body(wire.encode_result(9, 0.5, 0.25, [200, 500], [b"", b"boom"], tensor=y)))
    assert (r.id, r.exec_seconds, r.wait_seconds, r.statuses, r.segments) == (9, 0.5, 0.25, (200, 500), [b"", b"boom"])
    assert r.tensor is not None and r.tensor.shape == (0, 2)
    assert wire.decode_hello(body(wire.encode_hello(b'{"pid": 1}'))) == b'{"pid": 1}'


def test_the_frame_reader_reassembles_frames_split_anywhere_in_the_stream() -> None:
    frames = [wire.encode_hello(b"{}"), wire.encode_result(1, 0, 0, [200], [b"[1]"]),
              wire.encode_call(2, "f", [2], segments=[b"[1,2]"])]
    stream = b"".join(frames)
    reader = wire.FrameReader()
    got: list[bytes] = []
    for i in range(0, len(stream), 3):  # 3 bytes at a time: lengths and bodies cut in two
        got += [bytes(b) for b in reader.feed(stream[i : i + 3])]
    assert got == [f[4:] for f in frames]


# --- the link against a worker --------------------------------------------------------


class Owner:
    """Records what the link tells its owner."""

    def __init__(self) -> None:
        self.up: list[dict[str, Any]] = []
        self.results: list[tuple[Any, wire.Result]] = []
        self.down: list[tuple[list[Any], bool]] = []
        self.changed = asyncio.Event()

    def link_up(self, link: WorkerLink[Any]) -> None:
        self.up.append(link.info)
        self.changed.set()

    def link_result(self, link: WorkerLink[Any], token: Any, result: wire.Result) -> None:
        self.results.append((token, result))
        self.changed.set()

    def link_down(self, link: WorkerLink[Any], unanswered: list[Any], was_up: bool) -> None:
        self.down.append((sorted(unanswered), was_up))
        self.changed.set()

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


Worker = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[wire.Call]], Awaitable[None]]


async def with_worker(worker: Worker, test: Callable[[WorkerLink[Any], Owner, list[wire.Call]], Awaitable[None]]) -> None:
    calls: list[wire.Call] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(wire.encode_hello(orjson.dumps({"pid": 42, "apis": ["f"]})))
        try:
            await worker(reader, writer, calls)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    owner = Owner()
    link: WorkerLink[Any] = await connect(owner, ("127.0.0.1", port))
    try:
        await owner.until(lambda: bool(owner.up))
        assert owner.up == [{"pid": 42, "apis": ["f"]}] and link.ready
        await test(link, owner, calls)
    finally:
        link.close()
        server.close()


async def read_calls(reader: asyncio.StreamReader, frames: wire.FrameReader, n: int) -> list[wire.Call]:
    out: list[wire.Call] = []
    while len(out) < n:
        data = await reader.read(1 << 16)
        if not data:
            break
        out += [wire.decode_call(b) for b in frames.feed(data)]
    return out


def test_results_reach_the_token_of_their_call_across_the_id_wrap() -> None:
    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, calls: list[wire.Call]) -> None:
        frames = wire.FrameReader()
        got = await read_calls(reader, frames, 3)
        calls += got
        for c in reversed(got):  # answered out of order, each echoing its input
            writer.write(wire.encode_result(c.id, 0.001, 0.0, [200], list(c.segments or [])))
        await reader.read()

    async def test(link: WorkerLink[Any], owner: Owner, calls: list[wire.Call]) -> None:
        link.ids = wire.MessageIds(start=wire.MAX_ID - 1)
        sent = [link.call(f"token-{i}", "f", [1], segments=[b"%d" % i]) for i in range(3)]
        assert sent == [wire.MAX_ID - 1, wire.MAX_ID, 1]  # wrapped, and never 0 (the HELLO's)
        await owner.until(lambda: len(owner.results) == 3)
        assert sorted((t, r.segments) for t, r in owner.results) == [
            ("token-0", [b"0"]), ("token-1", [b"1"]), ("token-2", [b"2"])]
        assert link.pending == {} and [c.id for c in calls] == sent

    asyncio.run(with_worker(worker, test))


def test_an_id_still_in_flight_is_not_reused_after_the_wrap() -> None:
    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, calls: list[wire.Call]) -> None:
        calls += await read_calls(reader, wire.FrameReader(), 2)
        await reader.read()

    async def test(link: WorkerLink[Any], owner: Owner, calls: list[wire.Call]) -> None:
        link.ids = wire.MessageIds(start=wire.MAX_ID)
        first = link.call("slow", "f", [1], segments=[b"1"])
        link.ids = wire.MessageIds(start=wire.MAX_ID)  # as if 4 billion calls later
        assert link.call("next", "f", [1], segments=[b"2"]) == 1 != first
        assert link.pending == {wire.MAX_ID: "slow", 1: "next"}

    asyncio.run(with_worker(worker, test))


def test_a_lost_connection_hands_back_every_unanswered_call() -> None:
    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, calls: list[wire.Call]) -> None:
        got = await read_calls(reader, wire.FrameReader(), 3)
        writer.write(wire.encode_result(got[1].id, 0.0, 0.0, [200], [b"ok"]))  # one answered, then gone

    async def test(link: WorkerLink[Any], owner: Owner, calls: list[wire.Call]) -> None:
        for t in ("a", "b", "c"):
            link.call(t, "f", [1], segments=[b"1"])
        await owner.until(lambda: bool(owner.down))
        assert [t for t, _ in owner.results] == ["b"]
        assert owner.down == [(["a", "c"], True)] and not link.ready and not link.alive

    asyncio.run(with_worker(worker, test))


def test_a_result_nobody_waits_for_is_dropped_and_the_link_keeps_serving() -> None:
    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, calls: list[wire.Call]) -> None:
        (c,) = await read_calls(reader, wire.FrameReader(), 1)
        writer.write(wire.encode_result(c.id + 1000, 0.0, 0.0, [200], [b"stray"]))  # e.g. timed out already
        writer.write(wire.encode_result(c.id, 0.0, 0.0, [200], [b"mine"]))
        await reader.read()

    async def test(link: WorkerLink[Any], owner: Owner, calls: list[wire.Call]) -> None:
        link.call("t", "f", [1], segments=[b"1"])
        await owner.until(lambda: bool(owner.results))
        assert [(t, r.segments) for t, r in owner.results] == [("t", [b"mine"])] and link.alive

    asyncio.run(with_worker(worker, test))


def test_a_bad_frame_drops_the_connection_and_fails_its_calls() -> None:
    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, calls: list[wire.Call]) -> None:
        await read_calls(reader, wire.FrameReader(), 1)
        writer.write(b"\xff\xff\xff\xff" + b"x" * 16)  # a length past MAX_FRAME
        await reader.read()

    async def test(link: WorkerLink[Any], owner: Owner, calls: list[wire.Call]) -> None:
        link.call("t", "f", [1], segments=[b"1"])
        await owner.until(lambda: bool(owner.down))
        assert owner.results == [] and owner.down == [(["t"], True)]

    asyncio.run(with_worker(worker, test))


# --- spawning -------------------------------------------------------------------------


def test_workers_share_the_cores_unless_threads_are_set() -> None:
    cores = os.cpu_count() or 1
    assert worker_env(2, {})["JUBAKO_NUM_THREADS"] == str(max(1, cores // 2))
    assert worker_env(64 * cores, {})["JUBAKO_NUM_THREADS"] == "1"
    assert worker_env(2, {"JUBAKO_NUM_THREADS": "3", "X": "y"}) == {"JUBAKO_NUM_THREADS": "3", "X": "y"}
    argv = worker_command("/b", 7000, 7001, python="/venv/bin/python")
    assert argv == ["/venv/bin/python", "-P", "-m", "jubako.runtime", "worker", "--bento", "/b",
                    "--host", "127.0.0.1", "--port", "7000", "--http-port", "7001"]


def test_restart_delay_backs_off_while_starts_keep_failing() -> None:
    from jubako.workers.spawn import MAX_BACKOFF_S, restart_delay

    delays, n = [], 0
    for _ in range(7):
        d, n = restart_delay(True, n)
        delays.append(d)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert restart_delay(False, n) == (0.0, 0)  # died while serving: at once, count reset


def test_a_child_port_is_never_one_an_outgoing_connection_can_take() -> None:
    """A port handed to a child to listen on comes from below the kernel's ephemeral
    range: from within it, any outgoing connection made before the child binds can take
    it as its local port, and the child then fails (EADDRINUSE, shown here)."""
    import socket

    from jubako.workers.spawn import ephemeral_ports, free_port

    low, high = ephemeral_ports()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.create_connection(srv.getsockname()) as c:  # its local port: the kernel's pick
            taken = c.getsockname()[1]
            assert low <= taken <= high
            with socket.socket() as child, pytest.raises(OSError):
                child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                child.bind(("127.0.0.1", taken))
    ports = {free_port() for _ in range(50)}
    assert all(1024 <= p < low for p in ports) and len(ports) > 40  # spread, not one port for all
    for p in ports:  # free: a child can bind each
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
