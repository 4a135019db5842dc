"""``jubako serve``: one proxy and N workers on this machine, supervised.

The children are the same processes the operator's pods run (``python -m
jubako.runtime proxy|worker``), talking TCP on 127.0.0.1, started as
``jubako.workers.spawn`` starts every worker. Ctrl-C reaches only this supervisor, which
then stops them in order: the proxy first (it drains the requests it holds), then the
workers. A child that dies is restarted: at once if it died while serving, after 1, 2, 4 ...
30 s while its starts keep failing (``jubako.workers.spawn.restart_delay``).
"""

from __future__ import annotations

import errno
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from jubako.errors import JubakoError
from jubako.manifest import STATIC_ROUTE
from jubako.workers.spawn import (
    Child,
    free_port,
    restart_delay,
    runtime_command,
    worker_command,
    worker_env,
)


def ensure_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, before anything claims readiness (the
    readiness poll would otherwise ask whoever owns the port)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds: TIME_WAIT is fine
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise JubakoError(f"port {port} is in use") from None
            raise JubakoError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def serve(bento: str, port: int = 3000, workers: int = 1, host: str = "127.0.0.1",
          ready_timeout: float = 120.0, install: bool = False, proxies: int = 1) -> None:
    from jubako.loader import open_bento

    bundle = open_bento(bento)  # fail here, with a clear message, not in every child
    if workers < 1:
        raise JubakoError("--workers must be >= 1")
    if not 1 <= proxies <= workers:
        # each proxy admits against the workers it owns (docs/runtime.md, "Several proxies")
        raise JubakoError(f"--proxies must be between 1 and --workers ({workers}): each proxy owns its own workers")
    ensure_port_free(host, port)
    worker_python = _worker_python(bundle, install)
    env = worker_env(workers)
    path = str(bundle.path)
    wports = [(free_port(), free_port()) for _ in range(workers)]
    # each worker writes why it could not start here, as a pod's container writes
    # /dev/termination-log; serve reports it once instead of restarting the worker forever
    notes = Path(tempfile.mkdtemp(prefix="jubako-serve-"))
    children = [
        Child(f"worker {i}", worker_command(path, p, h, worker_python),
              {**env, "JUBAKO_TERMINATION_LOG": str(_note(notes, i))})
        for i, (p, h) in enumerate(wports)
    ]
    addrs = [f"127.0.0.1:{p}" for p, _ in wports]
    # several proxies share the port (SO_REUSEPORT: the kernel spreads connections over
    # them); proxy i owns workers i, i+N, ...
    penv = {**env, "JUBAKO_REUSE_PORT": "1"} if proxies > 1 else env
    fronts = [Child("proxy" if proxies == 1 else f"proxy {i}",
                    [*runtime_command(), "proxy", "--bento", path, "--host", host, "--port", str(port),
                     "--workers", ",".join(addrs[i::proxies])], penv)
              for i in range(proxies)]
    stop = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for c in children:
            c.start()
        for f in fronts:
            f.start()
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        announced = False
        deadline = time.monotonic() + ready_timeout
        while not stop["flag"]:
            for c in [*children, *fronts]:
                if not c.alive() and not stop["flag"]:
                    code = c.proc.returncode if c.proc else None
                    if not announced:  # never served: restarting would fail the same way, forever
                        if c in fronts:
                            raise JubakoError(f"the {c.name} exited (code {code}) before it was ready; see above")
                        why = (notes / f"worker-{children.index(c)}").read_text().strip()
                        raise JubakoError(f"{c.name} could not start: {why or f'exited with code {code}'}")
                    now = time.monotonic()
                    if c.restart_at is None:
                        # a worker that could not start wrote why in its note (its termination log)
                        note = _note(notes, children.index(c)) if c in children else None
                        failed = note is not None and note.stat().st_size > 0
                        delay, c.failed_starts = restart_delay(failed, c.failed_starts)
                        c.restart_at = now + delay
                        print(f"jubako serve: {c.name} exited ({code}); restarting"
                              + (f" in {delay:.0f}s" if delay else ""), file=sys.stderr, flush=True)
                    if now >= c.restart_at:
                        c.restart_at = None
                        if c in children:
                            _note(notes, children.index(c)).write_text("")  # this start's own
                        c.restarts += 1
                        c.start()
            if not announced:
                # with several proxies each poll reaches one of them (a new connection each):
                # ready once a run of polls, a few per proxy, all say so
                if all(f.alive() for f in fronts) and all(_ready(url) for _ in range(1 if proxies == 1 else 4 * proxies)):
                    announced = True
                    ui = f", web UI at {url}{STATIC_ROUTE}/" if bundle.manifest.static else ""
                    front = "" if proxies == 1 else f", {proxies} proxies"
                    print(f"jubako serve: {bundle.manifest.tag} ready at {url} "
                          f"({workers} worker(s){front}; docs at {url}/docs{ui})", file=sys.stderr, flush=True)
                elif time.monotonic() > deadline:
                    raise JubakoError(f"not ready after {ready_timeout:.0f}s; see the messages above")
            time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for f in fronts:
            f.stop(35)
        for c in children:
            c.stop(35)
        shutil.rmtree(notes, ignore_errors=True)
    print("jubako serve: stopped", file=sys.stderr, flush=True)


def _worker_python(bundle: object, install: bool) -> str:
    """Requirements (docs/requirements.md), before any worker starts: this python when it has
    what the bento needs; with ``install`` (or JUBAKO_INSTALL=1) the python of the bento's own
    venv, layered on this environment; otherwise refuse, naming each missing package."""
    from jubako.config import home, settings
    from jubako.environment import prepare

    cfg = settings()
    python = prepare(bundle, install or cfg.install, cfg.venvs or home() / "venvs")  # type: ignore[arg-type]
    if python != sys.executable:
        print(f"jubako serve: workers run in {Path(python).parent.parent}", file=sys.stderr, flush=True)
    return python


def _note(folder: Path, i: int) -> Path:
    path = folder / f"worker-{i}"
    path.touch()
    return path


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def bento_arg(value: str) -> str:
    p = Path(value)
    return str(p.resolve()) if p.exists() else value
