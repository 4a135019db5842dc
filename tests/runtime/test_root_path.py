"""The proxy behind a path prefix (JUBAKO_ROOT_PATH, as the operator's ingress routes it),
and a proxy with no worker connected: every API request is refused at once (503)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from jubako.runtime.serve import free_port

from jubako.store import Store

from .conftest import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture(scope="module")
def lonely_proxy(runtime_store: Store) -> Iterator[str]:
    """A proxy under /v1 whose only worker address has nobody listening."""
    port = free_port()
    env = {**os.environ, "JUBAKO_HOME": str(runtime_store.home), "JUBAKO_ROOT_PATH": "/v1/"}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "jubako.runtime", "proxy", "--bento", "toy", "--host", "127.0.0.1",
         "--port", str(port), "--workers", f"127.0.0.1:{free_port()}"], env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/livez").status_code == 200, 60, "the proxy")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_routes_live_under_the_root_path(lonely_proxy: str) -> None:
    u = lonely_proxy
    for probe in ("/livez", "/readyz", "/metrics"):  # at the root and under the prefix
        assert httpx.get(u + probe).status_code == httpx.get(u + "/v1" + probe).status_code
    assert httpx.get(u + "/v1/livez").status_code == 200
    assert httpx.get(u + "/v1/readyz").status_code == 503
    spec = httpx.get(u + "/v1/openapi.json").json()
    assert spec["servers"] == [{"url": "/v1"}] and "/steady" in spec["paths"]
    page = httpx.get(u + "/v1/docs").text
    assert "/v1/openapi.json" in page
    # an API has one address: under the prefix
    assert httpx.post(u + "/steady", json=[1]).status_code == 404


@pytest.mark.parametrize(("route", "kw"), [("/steady", {"json": [1]}), ("/shout", {"content": b"hi"})])
def test_with_no_worker_connected_api_requests_get_503_at_once(lonely_proxy: str, route: str, kw: dict) -> None:
    r = httpx.post(lonely_proxy + "/v1" + route, timeout=5, **kw)
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1 and "no worker" in r.json()["error"]


def test_overload_refusals_come_before_the_body_is_decoded_and_keep_order(lonely_proxy: str) -> None:
    """A refusal is decided before the body is decoded (runtime/admission.py): a malformed
    body gets the 503 too, and the pre-encoded answer is the same bytes as the one framed
    for a request answered behind another (pipelined), in request order."""
    r = httpx.post(lonely_proxy + "/v1/steady", content=b"[1, oops", timeout=5)
    assert r.status_code == 503 and "no worker" in r.json()["error"], r.text
    port = int(lonely_proxy.rsplit(":", 1)[1])
    post = b"POST /v1/steady HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3\r\n%s\r\n[1]"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(post % b"")  # nothing in flight on the connection: the pre-encoded answer
        first = _read_response(s)
        # behind a pending answer (a probe), then one that closes the connection
        s.sendall(b"GET /v1/livez HTTP/1.1\r\nhost: x\r\n\r\n" + post % b"" + post % b"connection: close\r\n")
        probe, queued, last = _read_response(s), _read_response(s), _read_response(s)
    assert first.startswith(b"HTTP/1.1 503 ") and b"\r\nretry-after: 1\r\n" in first
    assert probe.startswith(b"HTTP/1.1 200 ") and probe.endswith(b"ok\n")
    assert queued == first
    assert last.startswith(b"HTTP/1.1 503 ") and b"\r\nconnection: close\r\n" in last


def _read_response(s: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(1)
    head = buf.lower()
    i = head.index(b"content-length: ") + len(b"content-length: ")
    length = int(head[i : head.index(b"\r\n", i)])
    while len(buf) < head.index(b"\r\n\r\n") + 4 + length:
        buf += s.recv(1)
    return buf
