"""Start-up mistakes fail fast, once, with the reason: a port in use, a service whose
``__init__`` raises (``jubako serve`` and the worker role as a pod runs it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from jubako.runtime.serve import free_port

from jubako.build import build
from jubako.store import Store

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

BROKEN = '''
import jubako


@jubako.service(name="broken-init")
class Broken:
    def __init__(self):
        raise RuntimeError("the model file is missing")

    @jubako.api
    def echo(self, text: str) -> str:
        return text
'''


@pytest.fixture(scope="module")
def broken(runtime_store: Store, tmp_path_factory: pytest.TempPathFactory) -> str:
    src = tmp_path_factory.mktemp("broken")
    # a module name of its own: other tests leave a "service" module in sys.modules
    (src / "broken_service.py").write_text(BROKEN)
    (src / "jubako.yaml").write_text('service: broken_service:Broken\ninclude: ["broken_service.py"]\n')
    build(src, store=runtime_store)
    return "broken-init"


def jubako(store: Store, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from jubako.cli import main; main()", *args],
        env={**os.environ, "JUBAKO_HOME": str(store.home), "JUBAKO_NUM_THREADS": "1", **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


def test_serve_on_a_port_in_use_exits_with_the_reason_before_claiming_readiness(runtime_store: Store) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = jubako(runtime_store, "serve", "toy", "--port", str(port))
    assert r.returncode != 0
    assert f"error: port {port} is in use" in r.stderr
    assert "ready at" not in r.stderr and "restarting" not in r.stderr


def test_proxy_role_on_a_port_in_use_exits_with_the_reason(runtime_store: Store) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-P", "-m", "jubako.runtime", "proxy", "--bento", "toy", "--host", "127.0.0.1",
             "--port", str(port), "--workers", f"127.0.0.1:{free_port()}"],
            env={**os.environ, "JUBAKO_HOME": str(runtime_store.home)}, capture_output=True, text=True, timeout=60,
        )
    assert r.returncode != 0
    assert f"error: port {port} is in use" in r.stderr


def test_serve_whose_service_init_raises_exits_once_with_the_error(runtime_store: Store, broken: str) -> None:
    r = jubako(runtime_store, "serve", broken, "--port", str(free_port()), "--workers", "2")
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    assert "the model file is missing" in errors[0] and "worker" in errors[0]
    assert "restarting" not in r.stderr and "ready at" not in r.stderr


def test_worker_role_whose_service_init_raises_exits_and_writes_the_termination_log(
    runtime_store: Store, broken: str, tmp_path: Path
) -> None:
    log = tmp_path / "termination-log"
    log.write_text("")  # Kubernetes creates the file; the container writes it
    r = subprocess.run(
        [sys.executable, "-P", "-m", "jubako.runtime", "worker", "--bento", broken, "--host", "127.0.0.1",
         "--port", str(free_port()), "--http-port", str(free_port())],
        env={**os.environ, "JUBAKO_HOME": str(runtime_store.home), "JUBAKO_TERMINATION_LOG": str(log)},
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 1
    assert "worker could not start: RuntimeError: the model file is missing" in r.stderr
    assert "RuntimeError: the model file is missing" in log.read_text()


FLAKY = '''
import os
import jubako


@jubako.service(name="flaky-init")
class Flaky:
    def __init__(self):
        if os.path.exists(os.environ["FLAKY_MARKER"]):
            raise RuntimeError("the model file went away")

    @jubako.api
    def echo(self, text: str) -> str:
        return text
'''


def test_a_worker_crashing_after_serve_was_ready_restarts_with_backoff(
    runtime_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Once serve has been ready it keeps restarting a dead worker (a pod's container would
    be restarted too), but a worker dying at every start waits 1, 2, 4 ... s in between,
    not a restart (and a traceback) every tick."""
    import signal
    import threading
    import time

    from .conftest import serve

    src = tmp_path_factory.mktemp("flaky")
    (src / "flaky_service.py").write_text(FLAKY)
    (src / "jubako.yaml").write_text('service: flaky_service:Flaky\ninclude: ["flaky_service.py"]\n')
    build(src, store=runtime_store)
    marker = tmp_path_factory.mktemp("marker") / "gone"
    lines: list[tuple[float, str]] = []
    with serve(runtime_store, "flaky-init", env={"FLAKY_MARKER": str(marker)}, stderr=subprocess.PIPE) as server:
        def read() -> None:
            assert server.proc.stderr is not None
            for raw in server.proc.stderr:
                lines.append((time.monotonic(), raw.decode(errors="replace")))
        threading.Thread(target=read, daemon=True).start()
        # serve itself must have announced readiness (its /readyz poll can trail the
        # workers' metrics): before that, a dead worker is a failed start and serve exits
        end = time.monotonic() + 60
        while time.monotonic() < end and not any("ready at" in t for _, t in lines):
            time.sleep(0.1)
        marker.write_text("")
        (worker,) = server.children("worker")
        os.kill(worker, signal.SIGKILL)
        end = time.monotonic() + 90
        while time.monotonic() < end and sum("restarting in" in t for _, t in lines) < 3:
            time.sleep(0.2)
    restarts = [(at, t.strip()) for at, t in lines if "worker 0 exited" in t]
    assert [t.rsplit("restarting", 1)[1] for _, t in restarts[:4]] == ["", " in 1s", " in 2s", " in 4s"], restarts
    # no restart came sooner than announced: each announcement is at least the last delay after the previous
    for (a, _), (b, _), delay in zip(restarts[1:], restarts[2:], (1.0, 2.0), strict=False):
        assert b - a >= delay
