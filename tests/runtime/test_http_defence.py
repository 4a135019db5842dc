"""The proxy's own HTTP server under hostile or careless clients, through a real
`jubako serve`: slow headers (slow-loris), idle keep-alive connections by the thousand,
oversized URL and headers, and requests arriving while the proxy drains."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from jubako.store import Store

from .conftest import Server, serve, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

TIMEOUTS = {"JUBAKO_HTTP_HEADER_TIMEOUT_S": "1", "JUBAKO_HTTP_IDLE_TIMEOUT_S": "2"}


@pytest.fixture(scope="module")
def toy(runtime_store: Store) -> Iterator[Server]:
    with serve(runtime_store, "toy", env=TIMEOUTS) as server:
        yield server


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=15)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket timeout)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_slow_headers_get_408_and_do_not_starve_real_traffic(toy: Server) -> None:
    lorises = [connect(toy) for _ in range(50)]
    for s in lorises:
        s.sendall(b"POST /steady HTTP/1.1\r\nhost: x\r\ncontent-type: appl")  # and then nothing
    assert httpx.post(toy.url + "/steady", json=[1], timeout=10).json() == [2]
    for s in lorises:
        assert read_all(s).startswith(b"HTTP/1.1 408 ")
        s.close()


def test_thousands_of_idle_connections_are_closed_and_do_not_starve_real_traffic(toy: Server) -> None:
    idle = [connect(toy) for _ in range(10_000)]
    assert httpx.post(toy.url + "/steady", json=[1], timeout=10).json() == [2]
    for s in idle:
        assert read_all(s) == b""  # closed by the server after the idle timeout
        s.close()


def test_oversized_header_and_url_are_refused(toy: Server) -> None:
    s = connect(toy)
    s.sendall(b"POST /steady HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (1 << 20) + b"\r\n\r\n[1]")
    assert read_all(s).startswith(b"HTTP/1.1 431 ")
    s.close()
    s = connect(toy)
    s.sendall(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
    assert read_all(s).startswith(b"HTTP/1.1 414 ")
    s.close()
    assert httpx.post(toy.url + "/steady", json=[1], timeout=10).json() == [2]


def test_a_refusal_reaches_a_client_still_sending(toy: Server) -> None:
    """The server answers 431/414 before the client has sent everything: closing at once
    with the client's bytes unread makes the kernel reset the connection, and the reset
    destroys the answer before the client reads it (seen in CI). A lingering close (FIN
    after the answer, then drop what still comes) lets every one of them read it."""
    for head, status in ((b"GET /" + b"a" * (1 << 20), b"414"),
                         (b"POST /steady HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (1 << 20), b"431")):
        for _ in range(5):
            s = connect(toy)
            with contextlib.suppress(OSError):  # the server may stop reading: not our concern
                s.sendall(head)
            time.sleep(0.2)  # the refusal is out, and the rest of our bytes reached the server
            assert read_all(s).startswith(b"HTTP/1.1 " + status + b" ")
            s.close()


def test_requests_arriving_while_the_proxy_drains_get_503_and_connection_close(runtime_store: Store) -> None:
    with serve(runtime_store, "toy") as server:
        busy, late = connect(server), connect(server)
        busy.sendall(b"POST /linger HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n[5]")
        time.sleep(0.1)  # the linger request is in flight (300 ms): the proxy will drain it
        (proxy,) = server.children("proxy")
        os.kill(proxy, signal.SIGTERM)
        time.sleep(0.1)
        late.sendall(b"POST /steady HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n[1]")
        answer = read_all(late)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"connection: close" in answer.lower()
        assert read_all(busy).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: server.children("proxy") != [proxy] and httpx.get(server.url + "/readyz").status_code == 200,
                 60, "the proxy to be restarted")
