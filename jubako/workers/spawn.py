"""Starting the runtime's worker processes: one command line and one environment for
``jubako serve`` (``runtime/serve.py``) and ``jubako run`` (``jubako/batch/workers.py``).

A child lives in its own session (Ctrl-C reaches only its supervisor, which stops it in
order) and gets SIGTERM from the kernel when its supervisor dies (Linux).
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

PR_SET_PDEATHSIG = 1
MAX_BACKOFF_S = 30.0


def restart_delay(start_failed: bool, failures_in_a_row: int) -> tuple[float, int]:
    """How long to wait before restarting a dead child, and the new count of failed starts
    in a row. A child that died while serving (SIGKILLed, out of memory) restarts at once;
    one that could not start waits 1, 2, 4 ... 30 s, doubling while its starts keep
    failing (as Kubernetes' CrashLoopBackOff does), instead of a restart every tick."""
    if not start_failed:
        return 0.0, 0
    return min(MAX_BACKOFF_S, 2.0 ** failures_in_a_row), failures_in_a_row + 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: children outlive a SIGKILLed supervisor
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to, for a child to listen on a moment later. Chosen below
    the kernel's ephemeral range: a port from that range (what binding port 0 gives) can
    meanwhile become the local port of any outgoing connection, and the child then cannot
    bind it (seen: a `jubako serve` worker that could not start while a test's client
    connections came and went). Below the range only an explicit bind competes."""
    low, _ = ephemeral_ports()
    candidates = range(max(1024, low - 20_000), low)
    for _ in range(200 if len(candidates) >= 1000 else 0):
        port = random.choice(candidates)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:  # an odd range: the kernel's pick
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default where
    it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def runtime_command(python: str = sys.executable) -> list[str]:
    """``python -P -m jubako.runtime``, the start of every runtime child's command line.
    -P: never the working directory on sys.path; from a checkout of this repository its
    operator/ folder would shadow the stdlib module (Python 3.12 imports it late)."""
    return [python, "-P", "-m", "jubako.runtime"]


def worker_command(bento: str, port: int, http_port: int, python: str = sys.executable,
                   host: str = "127.0.0.1") -> list[str]:
    """A worker serving ``bento``: batches on ``port``, probes and metrics on ``http_port``.
    ``python`` may be the bento's own venv (``jubako.environment.prepare``)."""
    return [*runtime_command(python), "worker", "--bento", bento, "--host", host, "--port", str(port),
            "--http-port", str(http_port)]


def worker_env(workers: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: ``base`` (this process's), with ``JUBAKO_NUM_THREADS`` =
    the CPUs this process can use / ``workers`` unless set, so N workers do not each spin a
    thread per core (or per core of the node, past a container's CPU quota)."""
    from jubako.devices import available_cpus

    env = dict(os.environ if base is None else base)
    if not env.get("JUBAKO_NUM_THREADS"):
        env["JUBAKO_NUM_THREADS"] = str(max(1, available_cpus() // workers))
    return env


class Child:
    """One supervised process: started, polled, stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started = 0.0
        self.failed_starts = 0  # in a row, for restart_delay
        self.restart_at: float | None = None  # when a dead child is due to start again

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, start_new_session=True, preexec_fn=_die_with_parent
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def stop(self, timeout: float) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
