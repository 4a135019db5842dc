"""A worker started under a CPU quota (a pod's resources.limits.cpu, `docker run --cpus`)
sizes its intra-op threads to the quota, not to the node's cores: torch and onnxruntime
default to every core, and threads past the quota only get the process throttled. The
quota is a real cgroup made here (root, as on the CI machine; cgroup v1 or v2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from jubako.runtime.serve import free_port

from jubako.store import Store

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def one_cpu_cgroup() -> Iterator[Path]:
    """A cgroup allowed one CPU's worth of time per period."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    parent = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/cpu")
    assert os.access(parent, os.W_OK), f"{parent} is not writable: run the tests as root (CI does)"
    cg = parent / f"jubako-test-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        if v2:
            (cg / "cpu.max").write_text("100000 100000")
        else:
            (cg / "cpu.cfs_period_us").write_text("100000")
            (cg / "cpu.cfs_quota_us").write_text("100000")
        yield cg
    finally:
        for _ in range(50):  # the processes it held are gone once they are reaped
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def worker_threads(store: Store, cgroup: Path | None) -> int:
    """Start a worker (in ``cgroup``), read the thread count its ready line reports, stop it."""
    argv = [sys.executable, "-P", "-m", "jubako.runtime", "worker", "--bento", "toy", "--host", "127.0.0.1",
            "--port", str(free_port())]
    enter = f'echo $$ > {cgroup / "cgroup.procs"}; ' if cgroup is not None else ""
    env = {**os.environ, "JUBAKO_HOME": str(store.home), "JUBAKO_LOG_FORMAT": "text"}
    env.pop("JUBAKO_NUM_THREADS", None)
    proc = subprocess.Popen(["sh", "-c", enter + 'exec "$@"', "sh", *argv], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if " ready in " in line:
                return int(line.split("intra-op threads")[0].rsplit(" ", 2)[-2])
        raise AssertionError(f"the worker exited ({proc.wait()}) without a ready line")
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_worker_under_a_cpu_quota_uses_as_many_threads(runtime_store: Store, one_cpu_cgroup: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert cores >= 2, "needs 2 cores to tell the quota from the machine"
    assert worker_threads(runtime_store, None) == cores
    assert worker_threads(runtime_store, one_cpu_cgroup) == 1
