"""The proxy behind a path prefix (JUBAKO_ROOT_PATH, as the operator's ingress routes it),
and a proxy with no worker connected: every API request is refused at once (503)."""

from __future__ import annotations

import os
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
