"""The proxy's Prometheus metrics. Children are looked up once per API (and per status)
and cached, and gauges are computed at scrape time, so a request costs two cheap calls."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ProxyMetrics:
    def __init__(self, proxy: Any):
        r = self.registry = CollectorRegistry()
        buckets = proxy.settings.metrics_latency_buckets  # metrics_latency_buckets (configuration.md)
        self.requests = Counter("jubako_requests", "Requests by API and HTTP status", ["api", "status"], registry=r)
        self.latency = Histogram(
            "jubako_request_seconds", "Request latency in the proxy", ["api"], buckets=buckets, registry=r
        )
        self.queue = Gauge("jubako_queue_items", "Items waiting to be batched", ["api"], registry=r)
        self.inflight = Gauge("jubako_inflight_batches", "Batches sent, not yet answered", ["api"], registry=r)
        self.batch_size = Histogram(
            "jubako_batch_size", "Items per batch", ["api"], buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "jubako_batch_seconds", "Batch round trip, proxy to worker and back", ["api"],
            buckets=buckets, registry=r,
        )
        self.cost = Gauge("jubako_batch_cost_seconds", "Learned batch cost a + b*n", ["api", "term"], registry=r)
        workers = Gauge("jubako_workers_ready", "Workers connected with models loaded", registry=r)
        workers.set_function(lambda: sum(1 for w in proxy.links.values() if w.ready))
        shed = Gauge("jubako_proxy_shed_ratio",
                     "Share of API requests refused because the proxy's own event loop is behind", registry=r)
        shed.set_function(lambda: proxy.gate.lag.shed)
        self.worker_lost = Counter("jubako_worker_connections_lost", "Worker connections lost", registry=r)

    def attach(self, st: Any) -> None:
        st.latency = self.latency.labels(st.name)
        st.batch_size = self.batch_size.labels(st.name)
        st.batch_seconds = self.batch_seconds.labels(st.name)
        d = st.dispatcher
        if d is not None:
            self.queue.labels(st.name).set_function(lambda: d.queued_items)
            self.inflight.labels(st.name).set_function(lambda: d.inflight_batches)
            self.cost.labels(st.name, "a").set_function(lambda: d.cost.a)
            self.cost.labels(st.name, "b").set_function(lambda: d.cost.b)
