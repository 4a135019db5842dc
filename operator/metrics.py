"""The operator's Prometheus metrics, served on JUBAKO_OPERATOR_METRICS_PORT (off when 0).

Its own registry (not the process-wide default), so two operators in one process (tests)
never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from jubako.errors import JubakoError


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "jubako_operator_reconciles", "Reconcile passes, by result (ok, error)",
            ["result"], registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "jubako_operator_reconcile_seconds", "Duration of one reconcile pass",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.api_requests = Counter(
            "jubako_operator_api_requests", "Kubernetes API requests made by reconciles, by verb",
            ["verb"], registry=self.registry,
        )
        self.child_writes = Counter(
            "jubako_operator_child_writes", "Children created, patched or deleted",
            ["action"], registry=self.registry,
        )

    def count_writes(self, created: list[str], patched: list[str], deleted: list[str]) -> None:
        for action, names in (("create", created), ("patch", patched), ("delete", deleted)):
            if names:
                self.child_writes.labels(action).inc(len(names))

    def api_request(self, verb: str) -> None:
        self.api_requests.labels(verb).inc()

    @contextmanager
    def reconcile(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.reconciles.labels("error").inc()
            raise
        else:
            self.reconciles.labels("ok").inc()
        finally:
            self.reconcile_seconds.observe(time.perf_counter() - start)

    def serve(self, port: int, host: str = "0.0.0.0") -> Callable[[], None]:  # noqa: S104 - a pod's port
        """Serve /metrics in a thread; returns the function that stops it."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:  # the operator must not run half-configured
            raise JubakoError(f"cannot serve metrics on {host}:{port}: {exc}") from None

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return stop
