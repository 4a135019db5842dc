"""Byte progress bars (bytes, rate, ETA) on stderr; silent when disabled."""

from __future__ import annotations

import threading
from typing import Any


class Progress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def task(self, description: str, total: int) -> int | None:
        if self._bar is None:
            return None
        with self._lock:
            return self._bar.add_task(description, total=total)

    def advance(self, task: int | None, n: int) -> None:
        if self._bar is not None and task is not None:
            with self._lock:
                self._bar.advance(task, n)
