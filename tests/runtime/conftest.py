"""Real runtime processes (``jubako serve``) over real HTTP for the integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from jubako.runtime.serve import free_port

from jubako.build import build
from jubako.store import Store

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def runtime_store(example_store: Store) -> Store:
    """The example store plus the model-free toy bento."""
    build(HERE / "toy", store=example_store)
    return example_store


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]

    def children(self, role: str) -> list[int]:
        """PIDs of the supervisor's children of one role (proxy / worker)."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and b"jubako.runtime" in cmd and role.encode() in cmd:
                out.append(int(d.name))
        return out

    def workers_ready(self) -> int:
        text = httpx.get(self.url + "/metrics").text
        for line in text.splitlines():
            if line.startswith("jubako_workers_ready "):
                return int(float(line.split()[1]))
        return 0


def wait_for(check, timeout: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def serve(store: Store, bento: str, workers: int = 1, env: dict[str, str] | None = None,
          args: tuple[str, ...] = (), stderr: int | None = None) -> Iterator[Server]:
    port = free_port()
    full_env = {**os.environ, "JUBAKO_HOME": str(store.home), "JUBAKO_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from jubako.cli import main; main()", "serve", bento,
         "--port", str(port), "--workers", str(workers), *args],
        env=full_env, stderr=stderr,
    )
    server = Server(f"http://127.0.0.1:{port}", proc)
    try:
        def ready() -> bool:
            if proc.poll() is not None:  # say so now, not after the wait
                raise AssertionError(f"jubako serve exited with code {proc.returncode} before it was ready")
            return server.workers_ready() == workers

        wait_for(ready, 90, "workers ready")
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
