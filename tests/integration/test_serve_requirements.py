"""`jubako serve` and a bento's requirements, with real processes, offline.

The bento imports tinydep (a local wheel, see tests/core/test_requirements_wheels.py), which
the serving environment lacks: serve refuses it with the missing list; with --install (or
JUBAKO_INSTALL=1) its workers run in a venv made from the wheels the bento carries, reused on
the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jubako.runtime.serve import free_port

from tests.core.test_requirements_wheels import JUBAKO, build, local_index, project  # noqa: F401

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def serving(tag: str, env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    port = free_port()
    with open(log, "w") as err:
        proc = subprocess.Popen([JUBAKO, "serve", tag, "--port", str(port), *args], env=env, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # bounded: 120 s for pip install + start
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}: {log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
        else:
            raise AssertionError(f"not ready: {log.read_text()}")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_refuses_what_is_missing_and_installs_it_on_request(
    tmp_path: Path, local_index: tuple[Path, Path]  # noqa: F811
) -> None:
    home = tmp_path / "home"
    out = build(project(tmp_path / "p", "service: service:Tiny\n"), home, local_index, "--wheels")
    assert out.returncode == 0, out.stderr
    tag = json.loads(out.stdout)["tag"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUBAKO_INSTALL")}
    env.update(JUBAKO_HOME=str(home), JUBAKO_NUM_THREADS="1", PIP_NO_INDEX="1")

    refused = subprocess.run([JUBAKO, "serve", tag, "--port", str(free_port())], env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "needs packages this environment lacks: tinydep==1.0 (not installed)." in refused.stderr
    assert "PyYAML" not in refused.stderr  # installed here at the pinned version

    with serving(tag, env, tmp_path / "first.log", "--install") as url:
        r = httpx.post(url + "/version", content="x", headers={"content-type": "text/plain"}, timeout=30)
        assert r.status_code == 200 and "1.0" in r.text
    venvs = list((home / "venvs").iterdir())
    assert len(venvs) == 1 and f"workers run in {venvs[0]}" in (tmp_path / "first.log").read_text()
    made = (venvs[0] / ".jubako-ready").stat().st_mtime_ns

    # JUBAKO_INSTALL=1 does the same; the venv is reused (same digest), not made again
    with serving(tag, {**env, "JUBAKO_INSTALL": "1"}, tmp_path / "second.log") as url:
        r = httpx.post(url + "/version", content="x", headers={"content-type": "text/plain"}, timeout=30)
        assert r.status_code == 200 and "1.0" in r.text
    assert list((home / "venvs").iterdir()) == venvs
    assert (venvs[0] / ".jubako-ready").stat().st_mtime_ns == made


def test_pod_init_container_installs_and_the_worker_runs_from_the_shared_volume(
    tmp_path: Path, local_index: tuple[Path, Path]  # noqa: F811
) -> None:
    """The operator's worker pod, as processes: `jubako runtime install` into a deps folder,
    then the worker with exactly the command and arguments render.py gives it."""
    from jubako.operator.config import OperatorSettings
    from jubako.operator.render import DEPS_DIR, Owner, render
    from jubako.operator.spec import parse_spec

    from jubako.store import Store
    from jubako.tags import Tag

    home, deps = tmp_path / "home", tmp_path / "deps"
    out = build(project(tmp_path / "p", "service: service:Tiny\n"), home, local_index, "--wheels")
    assert out.returncode == 0, out.stderr
    bento = Store(home).bentos.get(json.loads(out.stdout)["tag"]).path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUBAKO_INSTALL")}
    env.update(PIP_NO_INDEX="1", JUBAKO_NUM_THREADS="1")

    pod = [c for c in render(Owner("t", "ns", "u"), parse_spec("t", {"bento": "tiny:v1"}), Tag("tiny", "v1"),
                             OperatorSettings(priority=1)) if c["metadata"]["name"] == "t-worker-default"][0]
    pod = pod["spec"]["template"]["spec"]
    init, worker = pod["initContainers"][1], pod["containers"][0]
    port, http_port = free_port(), free_port()

    def local(args: list[str]) -> list[str]:
        swap = {"/bento": str(bento), "7000": str(port), "7001": str(http_port)}
        return [swap.get(a, a.replace(DEPS_DIR, str(deps), 1) if a.startswith(DEPS_DIR) else a) for a in args]

    def install() -> None:
        done = subprocess.run([JUBAKO, *local(init["args"]), "--termination-log", str(tmp_path / "log")],
                              env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr

    install()
    (venv,) = [p for p in deps.iterdir() if not p.name.startswith(".") and p.name != "env"]
    assert (deps / "env").resolve() == venv.resolve()
    made = (venv / ".jubako-ready").stat().st_mtime_ns
    install()  # a restarted init container reuses the venv (same digest)
    assert (venv / ".jubako-ready").stat().st_mtime_ns == made

    proc = subprocess.Popen(local(worker["command"]) + local(worker["args"]), env=env,
                            stderr=open(tmp_path / "worker.log", "w"))
    try:
        for _ in range(600):  # bounded: 60 s
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                    break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
        else:
            raise AssertionError((tmp_path / "worker.log").read_text())
    finally:
        proc.terminate()
        proc.wait(30)
