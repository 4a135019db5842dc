"""`jubako serve --proxies N`: N proxy processes on one port (SO_REUSEPORT), each owning
its share of the workers; every request is answered whichever proxy the kernel picks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from jubako.runtime.serve import free_port

from jubako.store import Store

from .conftest import Server, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

SERVE = [sys.executable, "-c", "from jubako.cli import main; main()", "serve", "toy"]


def listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (each proxy has its own with SO_REUSEPORT)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def served_by_each(url: str, scrapes: int = 40) -> set[float]:
    """The 200 count of /steady as each proxy reports it (each scrape a new connection,
    so it reaches whichever proxy the kernel picks)."""
    seen = set()
    for _ in range(scrapes):
        m = re.search(r'^jubako_requests_total\{api="steady",status="200"\} (\S+)$',
                      httpx.get(url + "/metrics").text, re.M)
        seen.add(float(m.group(1)) if m else 0.0)
    return seen


def test_several_proxies_share_one_port_and_answer_every_request(runtime_store: Store) -> None:
    port = free_port()
    env = {**os.environ, "JUBAKO_HOME": str(runtime_store.home), "JUBAKO_NUM_THREADS": "1"}
    proc = subprocess.Popen([*SERVE, "--port", str(port), "--workers", "2", "--proxies", "2"], env=env)
    server = Server(f"http://127.0.0.1:{port}", proc)
    try:
        wait_for(lambda: len(server.children("proxy")) == 2 and listeners(port) == 2
                 and all(httpx.get(server.url + "/readyz").status_code == 200 for _ in range(10)), 120, "2 proxies")
        for i in range(200):  # a new connection each: spread over both proxies
            r = httpx.post(server.url + "/steady", json=[i], timeout=30)
            assert r.status_code == 200 and r.json() == [i + 1], r.text
        counts = served_by_each(server.url)
        assert len(counts) == 2 and sum(counts) == 200, counts  # both proxies served some
        assert server.workers_ready() == 1  # each proxy owns one of the two workers
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert listeners(port) == 0


def test_more_proxies_than_workers_is_refused(runtime_store: Store) -> None:
    env = {**os.environ, "JUBAKO_HOME": str(runtime_store.home)}
    r = subprocess.run([*SERVE, "--port", str(free_port()), "--workers", "1", "--proxies", "2"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--proxies must be between 1 and --workers (1)" in r.stderr, r.stderr
