"""Every request gets an answer: faults injected between the user's function and the
RESULT frame, and workers that never answer, through real runtime processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest
from jubako.runtime.serve import free_port

from jubako.store import Store
from jubako.workers import wire

from .conftest import serve, wait_for
from .test_serve import post_all

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_unserialisable_output_fails_only_its_request_and_the_api_keeps_serving(runtime_store: Store) -> None:
    with serve(runtime_store, "toy") as server:
        url = server.url + "/scale"
        # more bad batches than the pipelining depth (2): slots must not leak
        for _ in range(4):
            r = httpx.post(url, json=[7], timeout=10)
            assert r.status_code == 500, r.text
            msg = r.json()["error"]
            assert "scale" in msg and "PydanticSerializationError" in msg, msg
        assert httpx.post(url, json=[3], timeout=10).json() == [6.0]
        # mixed in batches with good requests: exactly the bad ones fail
        bodies = [[float(i % 10)] for i in range(200)]
        responses = post_all(url, bodies, concurrency=32)
        for x, r in zip(bodies, responses, strict=True):
            if x[0] == 7:
                assert r.status_code == 500, r.text
            else:
                assert r.status_code == 200, r.text
                assert r.json() == [2 * x[0]]


def test_tensor_output_of_the_wrong_shape_or_dtype_is_a_clear_500(runtime_store: Store) -> None:
    with serve(runtime_store, "toy") as server:
        url = server.url + "/pairs"
        for rows in ([[99.0, 1.0], [2.0, 3.0]], [[99.0, 1.0]]):
            r = httpx.post(url, json=rows, timeout=10)
            assert r.status_code == 500, r.text
            msg = r.json()["error"]
            assert "pairs" in msg and "shape" in msg and "(n, 2)" in msg, msg
        r = httpx.post(url, json=[[98.0, 1.0]], timeout=10)
        assert r.status_code == 500 and "dtype" in r.json()["error"] and "float64" in r.json()["error"], r.text
        bodies = [[[float(i % 100), 1.0]] for i in range(120)]
        responses = post_all(url, bodies, concurrency=32)
        for x, r in zip(bodies, responses, strict=True):
            if x[0][0] in (98.0, 99.0):
                assert r.status_code == 500, r.text
            else:
                assert r.status_code == 200, r.text
                assert r.json() == [[x[0][0] + 1, 2.0]]


class SilentWorker:
    """A fake worker: says HELLO, then never answers a CALL (a wedged or partitioned
    worker whose connection stays open)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.calls = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        hello = wire.encode_hello(b'{"pid": 0, "bento": "toy", "apis": [], "device": null}')
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.sendall(hello)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        frames = wire.FrameReader()
        while True:
            try:
                data = conn.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            self.calls += len(frames.feed(data))

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def silent_proxy(runtime_store: Store) -> Iterator[str]:
    worker = SilentWorker()
    port = free_port()
    env = {**os.environ, "JUBAKO_HOME": str(runtime_store.home), "JUBAKO_INFLIGHT_TIMEOUT_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "jubako.runtime", "proxy", "--bento", "toy", "--host", "127.0.0.1",
         "--port", str(port), "--workers", f"127.0.0.1:{worker.port}"], env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, 60, "the proxy to see the worker")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        worker.close()


def test_a_worker_that_never_answers_fails_its_requests_within_the_inflight_timeout(silent_proxy: str) -> None:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as client:
            # batchable and non-batchable; more batches than the pipelining depth
            calls = [client.post(silent_proxy + "/steady", json=[i]) for i in range(6)]
            calls.append(client.post(silent_proxy + "/shout", content=b"hi"))
            return await asyncio.gather(*calls)

    responses = asyncio.run(go())
    # the late calls fail with 504; the calls queued behind them on the dropped
    # connection with 503 (retry): every one gets an answer
    for r in responses:
        assert (r.status_code, r.status_code == 504) in ((504, True), (503, False)), r.text
        assert ("did not answer" if r.status_code == 504 else "retry") in r.json()["error"]
    assert any(r.status_code == 504 for r in responses)
    # the proxy reconnects to the worker and stays ready; a later request is answered too
    wait_for(lambda: httpx.get(silent_proxy + "/readyz").status_code == 200, 30, "reconnection")
    assert httpx.post(silent_proxy + "/steady", json=[1], timeout=20).status_code == 504
