"""Prometheus metrics, one registry per app so several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "jubako_registry_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "jubako_registry_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.bytes_in = Counter(
            "jubako_registry_upload_bytes", "Bytes streamed into the registry", registry=r
        )
        self.bytes_out = Counter(
            "jubako_registry_download_bytes", "Bytes streamed out of the registry", registry=r
        )
        self.pushes = Counter(
            "jubako_registry_versions_ready", "Versions that became ready", ["kind"], registry=r
        )
        self.swept = Counter(
            "jubako_registry_swept",
            "Uploads failed and blobs collected by the sweeper",
            ["what"],
            registry=r,
        )
        self.in_flight = Gauge(
            "jubako_registry_requests_in_flight", "Requests being served", registry=r
        )
