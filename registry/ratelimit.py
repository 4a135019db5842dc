"""Brute-force protection: failed authentication attempts counted per key (a client address,
a user name) in a sliding window. Only failures count, so busy clients with valid tokens are
never throttled. The counts live in this process: with several registry replicas, each
replica allows the limit on its own."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_failures, self.window_s, self.max_keys = max_failures, window_s, max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # checks run in the threadpool

    def _prune(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, *keys: str) -> int:
        """0 when every key may try again now; else whole seconds until all of them may."""
        if self.max_failures <= 0:
            return 0
        now, wait = self.clock(), 0.0
        with self._lock:
            for key in keys:
                q = self._prune(key, now)
                if q is not None and len(q) >= self.max_failures:
                    # Free again once enough old failures leave the window.
                    wait = max(wait, q[len(q) - self.max_failures] + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, *keys: str) -> None:
        if self.max_failures <= 0:
            return
        now = self.clock()
        with self._lock:
            for key in keys:
                q = self._prune(key, now)
                if q is None:
                    q = self._failures[key] = deque(maxlen=self.max_failures)
                self._failures.move_to_end(key)
                q.append(now)
            while len(self._failures) > self.max_keys:  # bounded memory under a spray
                self._failures.popitem(last=False)
