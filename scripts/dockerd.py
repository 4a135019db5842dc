#!/usr/bin/env python3
"""A private Docker engine for tests and image builds: `dockerd` with its own data-root.

The engine keeps its images in DIR (a cache: the base image and build layers survive
between runs), listens on DIR/docker.sock, and runs with `--bridge=none --iptables=false`
(these machines allow no private-range networks: every build and container uses
`--network host`). One engine per DIR: a second user waits on DIR/lock.

    scripts/dockerd.py [--dir DIR] -- COMMAND...   run COMMAND with DOCKER_HOST set, then stop

Tests use `Engine` directly (tests/images/docker_env.py). Needs root and Debian's docker.io.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jubako" / "dockerd"


class EngineError(RuntimeError):
    pass


@dataclass
class Engine:
    root: Path
    lock_timeout_s: float = 1800.0
    start_timeout_s: float = 120.0
    _lock: IO[str] | None = field(default=None, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        # The legacy builder: Debian's docker.io ships no buildx, and BuildKit without it fails.
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def _acquire(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / "lock", "w")
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(f"{self.root} is held by another engine user (lock: {self.root / 'lock'})") from None
                time.sleep(2)

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        out = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=self.env,
                             capture_output=True, text=True, timeout=30)
        return out.returncode == 0

    def _leftover_pid(self) -> int | None:
        try:
            pid = int((self.root / "dockerd.pid").read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self) -> Engine:
        for tool in ("dockerd", "docker", "containerd"):
            if not shutil.which(tool):
                raise EngineError(f"{tool} not found: run `make system-deps` (Debian's docker.io)")
        if os.geteuid() != 0:
            raise EngineError("dockerd needs root")
        self._acquire()
        # An engine left behind by a killed session (we hold the lock, so it is nobody's): stop it.
        pid = self._leftover_pid()
        if pid is not None:
            _terminate(pid)
        log = open(self.root / "dockerd.log", "ab")
        self._proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "--host", self.host,
             "--bridge=none", "--iptables=false", "--log-level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while not self._alive():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
                self.stop()
                raise EngineError(f"dockerd did not start (log {self.root / 'dockerd.log'}):\n{tail}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            _terminate(self._proc.pid)
            self._proc.wait(timeout=5)
            self._proc = None
        _unmount_under(self.root)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(pid: int, timeout_s: float = 60.0) -> None:
    """SIGTERM (dockerd stops its containers and containerd), SIGKILL after timeout_s."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            # Reap it when it is our child, so that kill(0) stops seeing a zombie.
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _unmount_under(root: Path) -> None:
    """dockerd can leave its network namespace file (exec/netns/default) mounted after it
    stops; such a mount keeps the folder from being deleted. Only mounts under `root`."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = f"{root.resolve()}/"
    for line in mounts:
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            subprocess.run(["umount", point], capture_output=True, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"engine state (default {DEFAULT_DIR})")
    parser.add_argument("command", nargs="+", help="what to run with DOCKER_HOST set")
    args = parser.parse_args()
    try:
        with Engine(args.dir) as engine:
            return subprocess.run(args.command, env=engine.env).returncode
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
