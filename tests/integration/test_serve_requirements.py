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
